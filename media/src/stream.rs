//! What an ingest session hands downstream: the unit of the ingest → transcoder contract,
//! whether that is an in-process channel (`floodlight up`) or the media transport.

use crate::frame::Frame;
use crate::track::TrackParams;

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
