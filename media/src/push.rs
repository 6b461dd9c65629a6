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
//! - `DELETE /push/v1/{event_id}/{rendition}?reason=…` — the transcoder stopped producing
//!   a rendition (a rung shed under load): it leaves the master playlist and the
//!   rendition reports; the stream's status names it with the reason.
//! - `PUT  /push/v1/{event_id}/thumbnail.jpg` — body: a JPEG poster of the live picture,
//!   served at `/live/{event_id}/thumbnail.jpg`; replaced by each new one.

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
    /// The bit rate the rendition is encoded at (a ladder rung's profile), bits per
    /// second: the master playlist's BANDWIDTH until segments have been measured.
    #[serde(default)]
    pub bandwidth_hint_bps: Option<u64>,
    /// How far back start-over reaches behind the live edge, seconds: the event's
    /// `dvr_window_secs` (0: no start-over). `None`: the origin's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dvr_window_secs: Option<u32>,
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
    /// Video parts that start with a sync sample: bytes from the start of the part
    /// through the end of that sample (moof, mdat header, the sample). The origin's
    /// I-frame playlists address the sync sample of each segment with it
    /// (EXT-X-BYTERANGE, RFC 8216bis §4.4.4.4).
    #[serde(default)]
    pub sync_sample_bytes: Option<u32>,
}

/// Answer of `GET .../last`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPart {
    pub msn: u64,
    pub part: u32,
    pub ends_segment: bool,
    /// The init segment version that part decodes with: a transcoder taking over
    /// numbers its init segments after it (the origin refuses versions going back).
    #[serde(default)]
    pub init_version: u32,
}
