use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::rtsp::config::RtspConfig;
use crate::srt::config::SrtConfig;
use crate::whip::config::WhipConfig;

/// `[ingest]` in floodlight.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub rtmp: RtmpConfig,
    pub rtsp: RtspConfig,
    pub srt: SrtConfig,
    pub whip: WhipConfig,
    /// With backup ingest allowed for an event, its standby publisher takes over when the
    /// live one has sent nothing for this long.
    pub backup_takeover_secs: u64,
    /// Events buffered between a publisher connection and its transcoder before the
    /// connection stops reading (TCP back-pressure to that publisher only).
    pub session_queue_events: usize,
    /// Errors caused by outside input (junk datagrams, refused keys, malformed streams)
    /// are logged once per source address per this many seconds; the rest of an
    /// interval's are summed up in one line (metrics count every one).
    pub error_log_interval_secs: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            rtmp: RtmpConfig::default(),
            rtsp: RtspConfig::default(),
            srt: SrtConfig::default(),
            whip: WhipConfig::default(),
            backup_takeover_secs: 3,
            session_queue_events: 2048,
            error_log_interval_secs: 10,
        }
    }
}

/// `[ingest.rtmp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    /// The RTMP application publishers connect to: `rtmp://HOST:1935/{app}/{stream_key}`.
    pub app: String,
    /// Time a new connection has to finish the handshake and be authorized to publish.
    pub handshake_timeout_secs: u64,
    /// A publishing connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// Connections beyond this are closed right after accept.
    pub max_connections: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            app: "live".to_string(),
            handshake_timeout_secs: 10,
            idle_timeout_secs: 30,
            max_connections: 1000,
        }
    }
}

impl IngestConfig {
    pub(crate) fn error_log_interval(&self) -> Duration {
        Duration::from_secs(self.error_log_interval_secs.max(1))
    }
}

impl RtmpConfig {
    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}
