//! What ingest needs from its neighbours and what it tells them: the control plane
//! ([`IngestAuthority`]: may this key publish, what happened to an event's publishing,
//! which RTSP sources to pull) and the transcoder ([`StreamHandler`]: where a publisher's
//! events go), with the requests, grants and protocol names that cross those borders.
//! The binary wires them in-process or over the network; these types are the crate's
//! public API, re-exported from `lib.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use floodlight_media::{StampedEvent, StreamSettings};
use tokio::sync::mpsc;

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

pub use floodlight_media::publish::PublishRefusal;

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

impl Protocol {
    /// The protocol's name as metrics label and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Srt => "srt",
            Protocol::Whip => "whip",
            Protocol::Rtsp => "rtsp",
        }
    }
}
