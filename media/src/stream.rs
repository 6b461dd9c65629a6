//! What an ingest session hands downstream: the unit of the ingest → transcoder contract,
//! whether that is an in-process channel (`floodlight up`) or the media transport.

use serde::{Deserialize, Serialize};

use crate::frame::Frame;
use crate::track::TrackParams;

/// Who may play a stream. The control plane decides it per event; it travels with the
/// stream (ingest grant → transcoder → the origin's rendition descriptor), so the origin
/// enforces it without asking the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackAccess {
    /// Anyone with the URL.
    #[default]
    Public,
    /// Every playlist, init, part and segment request needs a valid playback token
    /// ([`crate::token`]).
    Token,
}

/// Per-event settings a stream is packaged and served with, chosen in the control plane.
/// `None` means the service's configured default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSettings {
    pub access: PlaybackAccess,
    /// PART-TARGET in milliseconds (100 – 1000).
    pub part_target_ms: Option<u32>,
    /// DVR window length, seconds.
    pub dvr_window_secs: Option<u32>,
    /// Name of the ladder profile to transcode with.
    pub ladder: Option<String>,
}

/// Events of one publisher session, in order. A session starts with `Tracks` before the
/// first `Frame`; `Tracks` may repeat when the publisher changes codec parameters
/// (a new SPS, say); `Ended` is the last event of a session (disconnect or error).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Tracks(Vec<TrackParams>),
    Frame(Frame),
    Ended,
}

/// A [`StreamEvent`] with the wall clock at which ingest received it: the packager stamps
/// EXT-X-PROGRAM-DATE-TIME and measures ingest-to-playable latency from it.
#[derive(Debug, Clone, PartialEq)]
pub struct StampedEvent {
    pub event: StreamEvent,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// One rendition of a transcoded stream, as the transcoder hands it to the packager.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionTrack {
    /// Rendition name: its path segment in playback URLs (`source`, `720p`, `audio`).
    pub name: String,
    pub params: TrackParams,
    /// The bit rate it is encoded at (a rung's profile), bits per second; `None` for the
    /// publisher's own tracks passed through.
    pub bandwidth_hint_bps: Option<u64>,
}

/// What the transcoder hands the packager for one live stream: the renditions of its
/// ABR ladder and their frames. The ladder form of [`StreamEvent`].
#[derive(Debug, Clone, PartialEq)]
pub enum LadderEvent {
    /// Starts a session, or changes the renditions within one: every rendition the stream
    /// has from now on, video first, in ladder order (the first video rendition leads:
    /// audio follows its segment boundaries). A rendition listed before and missing now
    /// has stopped (a rung shed under load): its last part is closed. A rendition whose
    /// parameters changed gets a new init segment at its next segment start.
    Renditions(Vec<RenditionTrack>),
    /// A frame of the rendition at `rendition`, an index into the latest `Renditions`.
    /// Video renditions of a ladder carry sync samples at the same presentation times.
    Frame { rendition: usize, frame: Frame },
    /// The publisher session ended (as [`StreamEvent::Ended`]).
    Ended,
}

/// A [`LadderEvent`] with the wall clock at which ingest received what it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StampedLadderEvent {
    pub event: LadderEvent,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}
