//! What the control plane needs to know about an event's live stream, and from whom.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::store::EventId;

/// The neighbour that knows whether an event is on air: ingest (publisher, protocol,
/// bitrate) and the origin (renditions). The binary implements it from their state.
///
/// Synchronous on purpose: `GET /v1/events/{id}` answers from a snapshot the
/// implementation keeps current, and never waits on a neighbour. A distributed
/// implementation keeps that snapshot fed from the shared live state (Redis).
pub trait LiveStatusSource: Send + Sync {
    /// The event's live status now; [`LiveStatus::default`] (not publishing) when nothing
    /// is known about it.
    fn live_status(&self, event_id: &EventId) -> LiveStatus;
}

/// An event's live stream as `GET /v1/events/{id}` shows it under `live`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    /// A publisher is connected and authorized for the event.
    pub publishing: bool,
    /// When the current publisher session began (RFC 3339 in JSON).
    #[serde(with = "crate::rfc3339::option_system_time", default)]
    pub since: Option<SystemTime>,
    /// How the publisher is connected.
    pub protocol: Option<IngestProtocol>,
    /// Media bit rate the publisher is sending, averaged over its session.
    pub ingest_bitrate_bps: Option<u64>,
    /// Renditions the origin is serving, as the master playlist lists them.
    pub renditions: Vec<RenditionStatus>,
}

/// Publisher protocols (ARCHITECTURE.md, "The flow").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IngestProtocol {
    Rtmp,
    Srt,
    Whip,
    Rtsp,
}

/// One rendition, with the attributes its master-playlist entry carries
/// (RFC 8216bis §4.4.6.2: CODECS, RESOLUTION, BANDWIDTH).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionStatus {
    /// Rendition name as it appears in the playback path (`source`, `audio`, …).
    pub name: String,
    /// RFC 6381 codecs string, e.g. `avc1.64001f` or `mp4a.40.2`.
    pub codecs: String,
    /// Picture size for video renditions; `None` for audio.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Peak segment bit rate, the master playlist's BANDWIDTH.
    pub bandwidth_bps: u64,
}
