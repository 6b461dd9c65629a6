//! The origin's part push API: the contract between a transcoder and every origin replica
//! (HTTP in distributed mode and in `floodlight up` alike). Shared here so neither service
//! crate depends on the other.
//!
//! Routes (origin HTTP listener):
//! - `PUT  /push/v1/{event_id}/{rendition}` — JSON [`RenditionDescriptor`]; declares or
//!   updates a rendition before its init segment.
//! - `PUT  /push/v1/{event_id}/{rendition}/init/{version}` — body: the init segment.
//! - `PUT  /push/v1/{event_id}/{rendition}/part/{msn}/{part}?{PartMeta as query}` — body:
//!   one CMAF part (moof + mdat).
//! - `POST /push/v1/{event_id}/end` — the stream has ended for good (no reconnect came in
//!   the grace period): playlists get EXT-X-ENDLIST.
//! - `GET  /push/v1/{event_id}/{rendition}/last` — JSON [`LastPart`], so a transcoder
//!   taking over continues the numbering.

use serde::{Deserialize, Serialize};

use crate::stream::PlaybackAccess;

/// Path prefix of the push API on the origin.
pub const PUSH_PREFIX: &str = "/push/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RenditionKind {
    Video,
    Audio,
}

/// Everything the origin needs to list a rendition in the master playlist and render its
/// media playlist, besides the parts themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionDescriptor {
    pub name: String,
    pub kind: RenditionKind,
    /// RFC 6381 codec string, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codecs: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frame_rate: Option<f64>,
    /// Audio channel count (EXT-X-MEDIA CHANNELS).
    pub channels: Option<u8>,
    /// PART-TARGET in milliseconds; fixed for the stream's life.
    pub part_target_ms: u32,
    /// The segment duration the packager aims for, milliseconds.
    pub segment_target_ms: u32,
    /// Who may play the stream; the latest descriptor pushed for any rendition decides.
    #[serde(default)]
    pub access: PlaybackAccess,
}

/// Metadata of one pushed part, sent as the query string of its PUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartMeta {
    pub msn: u64,
    pub part: u32,
    /// Part duration, seconds (exact sample durations summed, over the track timescale).
    pub duration: f64,
    /// The part starts with a sync sample.
    pub independent: bool,
    /// Which init segment version this part decodes with.
    pub init_version: u32,
    /// Set on the first part of a segment: wall clock (ms since epoch) at ingest of the
    /// segment's first frame, for EXT-X-PROGRAM-DATE-TIME.
    pub program_date_time_ms: Option<i64>,
    /// Set on the first part of a segment that follows a discontinuity (reconnect).
    pub discontinuity: bool,
    /// This is the last part of its segment: the segment is complete.
    pub ends_segment: bool,
    /// Wall clock (ms since epoch) when the last frame of this part reached ingest; the
    /// origin measures ingest-to-playable latency from it.
    pub last_frame_arrival_ms: i64,
}

/// Answer of `GET .../last`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPart {
    pub msn: u64,
    pub part: u32,
    pub ends_segment: bool,
}
