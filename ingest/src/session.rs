//! Publisher sessions: who is publishing to which event, their counters, and the two
//! traits through which ingest talks to its neighbours.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use floodlight_media::{StampedEvent, StreamSettings};
use tokio::sync::mpsc;

use crate::config::IngestConfig;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a publisher presents when it asks to publish.
#[derive(Debug, Clone, Copy)]
pub struct PublishRequest<'a> {
    /// The secret stream key. Implementations must never log it.
    pub stream_key: &'a str,
    pub protocol: Protocol,
    pub remote_addr: SocketAddr,
    /// The event the publisher named besides its key (WHIP's `/whip/{event_id}`); `None`
    /// when the key alone names the event (RTMP, SRT).
    pub event_id: Option<&'a str>,
}

/// A yes from the control plane: the event, and how it wants to be published and served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishGrant {
    pub event_id: String,
    /// Packaging and playback settings the stream is handed downstream with.
    pub settings: StreamSettings,
    /// The event accepts a second (backup) publisher beside the live one; it takes over
    /// when the live one stops sending.
    pub backup_ingest: bool,
    /// SRT only: the AES passphrase the publisher must use (10 to 79 characters).
    pub srt_passphrase: Option<String>,
    /// SRT only: the receiver latency, overriding `ingest.srt.latency_ms`.
    pub srt_latency_ms: Option<u32>,
}

/// A no from the control plane, or no answer at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishRefusal {
    /// No event has this key (or it was revoked), or it belongs to another event than the
    /// one named.
    #[error("unknown stream key")]
    UnknownKey,
    /// The key is valid but publishing is not allowed now; the reason is safe to show the
    /// publisher (outside the event's window, event cancelled, protocol not allowed…).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed key attempts from this address; try again later.
    #[error("too many failed stream key attempts, retry later")]
    RateLimited,
    /// The control plane could not be asked.
    #[error("stream key check unavailable: {0}")]
    Unavailable(String),
}

/// A change in an event's publishing, reported to the control plane (which moves the
/// event `live` on the first publish and `ended` after the reconnect grace period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChange {
    Started { protocol: Protocol },
    Stopped { protocol: Protocol },
}

/// How an RTSP source is pulled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP interleaved in the RTSP TCP connection (RFC 7826 §14), the default: it crosses
    /// NATs and firewalls.
    #[default]
    Tcp,
    Udp,
}

/// An event whose media ingest pulls from an RTSP server, to pull now.
#[derive(Clone, PartialEq, Eq)]
pub struct PullSource {
    pub event_id: String,
    /// `rtsp://[user:password@]host[:port]/path`. Holds credentials: never log it whole.
    pub url: String,
    pub transport: RtspTransport,
    pub settings: StreamSettings,
}

impl std::fmt::Debug for PullSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullSource")
            .field("event_id", &self.event_id)
            .field("url", &"<redacted>")
            .field("transport", &self.transport)
            .finish()
    }
}

/// The control plane as ingest needs it: may this key publish, what happened to an
/// event's publishing, and which RTSP sources to pull.
pub trait IngestAuthority: Send + Sync + 'static {
    /// Decides a publish request. Implementations must not log the key.
    fn authorize<'a>(
        &'a self,
        request: PublishRequest<'a>,
    ) -> BoxFuture<'a, Result<PublishGrant, PublishRefusal>>;

    /// Reports a publisher session starting or stopping. Must not block: implementations
    /// record it in the background.
    fn session_changed(&self, event_id: &str, change: SessionChange);

    /// The RTSP sources to pull now: events with an `rtsp://` source inside their
    /// publishing window. Ingest polls it; a source that disappears is stopped.
    fn pull_sources(&self) -> BoxFuture<'_, Result<Vec<PullSource>, PublishRefusal>>;
}

/// The transcoder's side: where a publisher session's events go.
pub trait StreamHandler: Send + Sync + 'static {
    /// A publisher session for `event_id` begins. A session that follows an earlier one
    /// within the reconnect grace period continues the same stream (same numbering, a
    /// discontinuity); that is the handler's business.
    fn begin_session(
        &self,
        event_id: &str,
        settings: &StreamSettings,
    ) -> mpsc::Sender<StampedEvent>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Rtmp,
    Srt,
    Whip,
    Rtsp,
}

/// A live publisher session as the control plane shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionStatus {
    pub event_id: String,
    pub protocol: Protocol,
    pub remote_addr: SocketAddr,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    pub bytes: u64,
    pub frames: u64,
    pub dropped_frames: u64,
    /// Average media bit rate since the session started.
    pub bitrate_bps: u64,
}

#[derive(Default)]
pub(crate) struct SessionCounters {
    pub(crate) bytes: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) dropped_frames: AtomicU64,
}

struct ActiveSession {
    protocol: Protocol,
    remote_addr: SocketAddr,
    started_at_ms: i64,
    started: Instant,
    counters: Arc<SessionCounters>,
}

/// The ingest service: configuration, neighbours and the table of live sessions.
#[derive(Clone)]
pub struct Ingest {
    pub(crate) config: Arc<IngestConfig>,
    pub(crate) authority: Arc<dyn IngestAuthority>,
    pub(crate) handler: Arc<dyn StreamHandler>,
    sessions: Arc<Mutex<HashMap<String, ActiveSession>>>,
}

/// Holds an event's publishing slot; dropping it frees the slot.
pub(crate) struct SessionGuard {
    ingest: Ingest,
    event_id: String,
    pub(crate) counters: Arc<SessionCounters>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        lock(&self.ingest.sessions).remove(&self.event_id);
        metrics::gauge!("floodlight_ingest_active_sessions").decrement(1);
    }
}

impl Ingest {
    pub fn new(
        config: IngestConfig,
        authority: Arc<dyn IngestAuthority>,
        handler: Arc<dyn StreamHandler>,
    ) -> Self {
        Ingest {
            config: Arc::new(config),
            authority,
            handler,
            sessions: Arc::default(),
        }
    }

    /// The live publisher session of an event, if any.
    pub fn session(&self, event_id: &str) -> Option<SessionStatus> {
        lock(&self.sessions)
            .get(event_id)
            .map(|s| s.status(event_id))
    }

    pub fn sessions(&self) -> Vec<SessionStatus> {
        lock(&self.sessions)
            .iter()
            .map(|(id, s)| s.status(id))
            .collect()
    }

    /// Claims the event's publishing slot; `None` if another publisher holds it.
    pub(crate) fn claim(
        &self,
        event_id: &str,
        protocol: Protocol,
        remote_addr: SocketAddr,
    ) -> Option<SessionGuard> {
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(event_id) {
            return None;
        }
        let counters = Arc::new(SessionCounters::default());
        sessions.insert(
            event_id.to_string(),
            ActiveSession {
                protocol,
                remote_addr,
                started_at_ms: unix_millis(),
                started: Instant::now(),
                counters: counters.clone(),
            },
        );
        metrics::gauge!("floodlight_ingest_active_sessions").increment(1);
        Some(SessionGuard {
            ingest: self.clone(),
            event_id: event_id.to_string(),
            counters,
        })
    }
}

impl ActiveSession {
    fn status(&self, event_id: &str) -> SessionStatus {
        let bytes = self.counters.bytes.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        SessionStatus {
            event_id: event_id.to_string(),
            protocol: self.protocol,
            remote_addr: self.remote_addr,
            started_at_ms: self.started_at_ms,
            bytes,
            frames: self.counters.frames.load(Ordering::Relaxed),
            dropped_frames: self.counters.dropped_frames.load(Ordering::Relaxed),
            bitrate_bps: (bytes as f64 * 8.0 / elapsed) as u64,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map half-updated (single
    // insert/remove), so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
