//! What the control plane needs to know about an event's live stream, and from whom.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::model::{EventId, IngestProtocol};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveStatus {
    /// A publisher is connected and authorized for the event.
    pub publishing: bool,
    /// When the current publisher session began (RFC 3339 in JSON).
    #[serde(with = "crate::rfc3339::option_system_time", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<SystemTime>,
    /// How the publisher is connected.
    pub protocol: Option<IngestProtocol>,
    /// Media bit rate the live publisher is sending, over the last couple of seconds.
    pub ingest_bitrate_bps: Option<u64>,
    /// Renditions the origin is serving, as the master playlist lists them.
    pub renditions: Vec<RenditionStatus>,
    /// Every connected publisher (the live one and a backup standing by), with the health
    /// of its feed.
    #[serde(default)]
    pub publishers: Vec<PublisherStatus>,
    /// Renditions the transcoder stopped producing this session (ladder rungs shed
    /// because the machine could not keep up), oldest first; left out while none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shed_renditions: Vec<ShedRendition>,
    /// The archive of this stream (DVR start-over and VOD assets read from it), as the
    /// origin's archive writer reports it; left out when no archive is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveHealth>,
}

/// Whether every complete segment and init version of the stream reached the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveHealth {
    /// `ok`, or `degraded`: some segments or init versions could not be archived (the
    /// live stream is not affected; those ranges will be missing from start-over and
    /// assets).
    pub state: ArchiveState,
    /// The same in words, e.g. `archive: degraded (720p: MSN 4-9 missing)`.
    pub detail: String,
    /// Runs of segments missing from the archive, oldest first.
    pub missing: Vec<ArchiveGap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveState {
    Ok,
    Degraded,
}

/// Consecutive segments of one rendition that are not in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArchiveGap {
    pub rendition: String,
    pub first_msn: u64,
    pub last_msn: u64,
    /// `queue_full` (the store was too slow or down for longer than the queue holds) or
    /// `store_failed` (every attempt to store them failed).
    pub reason: String,
}

/// A rendition taken out of the ladder: gone from the master playlist, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShedRendition {
    /// Rendition name as it appeared in the playback path (`240p`, …).
    pub name: String,
    /// What the transcoder said, e.g. `cpu`.
    pub reason: String,
    /// When the origin was told (RFC 3339 in JSON).
    #[serde(with = "crate::rfc3339::option_system_time", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub at: Option<SystemTime>,
}

/// One connected publisher and the health of its feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublisherStatus {
    pub protocol: IngestProtocol,
    /// `true` for the publisher whose media goes downstream, `false` for a standby.
    pub live: bool,
    #[serde(with = "crate::rfc3339::option_system_time", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<SystemTime>,
    /// Bit rate received over the last couple of seconds.
    pub bitrate_bps: u64,
    pub frames: u64,
    /// Frames ingest dropped: broken on arrival, or video before the first keyframe.
    pub dropped_frames: u64,
    /// Media time between the last two video keyframes; segments need it near the
    /// segment target (2 s).
    pub keyframe_interval_ms: Option<u64>,
    /// Time since the publisher last sent anything.
    pub idle_ms: u64,
}

/// One rendition, with the attributes its master-playlist entry carries
/// (RFC 8216bis §4.4.6.2: CODECS, RESOLUTION, BANDWIDTH).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
