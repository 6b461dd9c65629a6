//! The one media unit every ingest protocol produces and every packager consumes.

use bytes::Bytes;

/// All `Frame` timestamps are on a 90 kHz clock (the MPEG-TS/RTP video clock), so
/// protocols with millisecond (FLV) or sample-rate (RTP audio) clocks convert once at
/// ingest and nothing downstream guesses units.
pub const TIMESCALE: u32 = 90_000;

/// Which elementary stream of a publisher's feed a frame belongs to. A feed carries at
/// most one of each; a rendition is one track (CMAF: one track per fMP4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One encoded access unit.
///
/// Video payloads are AVC samples in ISO/IEC 14496-15 form: NAL units each preceded by a
/// big-endian length of `AvcConfig::nal_length_size` bytes (what FLV carries and what
/// `mdat` wants). Audio payloads are raw AAC access units (no ADTS header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: TrackKind,
    /// Decode timestamp, 90 kHz.
    pub dts: i64,
    /// Presentation timestamp, 90 kHz; `pts - dts` is the composition offset (B-frames).
    pub pts: i64,
    /// A sync sample: an IDR access unit for video; every AAC frame is one.
    pub keyframe: bool,
    pub data: Bytes,
}

impl Frame {
    /// Composition time offset in 90 kHz ticks (may be negative for some encoders).
    pub fn cts(&self) -> i64 {
        self.pts - self.dts
    }
}
