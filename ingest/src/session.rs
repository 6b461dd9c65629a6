//! Publisher sessions: who is publishing to which event, their counters, and the two
//! traits through which ingest talks to its neighbours.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use floodlight_media::StampedEvent;
use tokio::sync::mpsc;

use crate::config::IngestConfig;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The control plane's side of publishing: may this stream key publish, and to which event?
pub trait StreamKeyAuthorizer: Send + Sync + 'static {
    /// `Ok(Some(event_id))` when the key is valid. Implementations must not log the key.
    fn authorize<'a>(
        &'a self,
        stream_key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AuthorizeError>>;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizeError {
    #[error("stream key check unavailable: {0}")]
    Unavailable(String),
}

/// The transcoder's side: where a publisher session's events go.
pub trait StreamHandler: Send + Sync + 'static {
    /// A publisher session for `event_id` begins. A session that follows an earlier one
    /// within the reconnect grace period continues the same stream (same numbering, a
    /// discontinuity); that is the handler's business.
    fn begin_session(&self, event_id: &str) -> mpsc::Sender<StampedEvent>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Rtmp,
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
    pub(crate) authorizer: Arc<dyn StreamKeyAuthorizer>,
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
        authorizer: Arc<dyn StreamKeyAuthorizer>,
        handler: Arc<dyn StreamHandler>,
    ) -> Self {
        Ingest {
            config: Arc::new(config),
            authorizer,
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
