//! `[ingest.srt]`: the SRT listener's settings, and the socket options they make.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use srt_tokio::options::{ByteCount, SocketOptions};

/// `[ingest.srt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtConfig {
    pub listen: SocketAddr,
    /// Receiver latency (SRTO_RCVLATENCY), ms: how long SRT holds packets to recover
    /// losses before handing them on. A connection runs at the larger of this and the
    /// caller's own latency setting.
    pub latency_ms: u64,
    /// A connection request must be authorized and its handshake done within this time.
    pub handshake_timeout_secs: u64,
    /// A publishing connection that delivers no payload for this long is closed (SRT
    /// keepalives do not count).
    pub idle_timeout_secs: u64,
    /// Connection requests beyond this many open connections are rejected (1402,
    /// overload) in the handshake.
    pub max_connections: usize,
    /// SRT messages (7 TS packets each from most encoders) queued between a connection
    /// and its demuxer. Past it messages are dropped and counted rather than stall the
    /// listener every connection shares; the demuxer then drops the broken frames.
    pub queue_messages: usize,
    /// The UDP socket's kernel receive buffer, bytes.
    pub udp_recv_buffer_bytes: u64,
}

impl Default for SrtConfig {
    fn default() -> Self {
        SrtConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9000)),
            latency_ms: 120,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 30,
            max_connections: 1000,
            queue_messages: 4096,
            udp_recv_buffer_bytes: 8 << 20,
        }
    }
}

impl SrtConfig {
    pub(super) fn options(&self) -> SocketOptions {
        let mut options = SocketOptions::default();
        options.connect.local = self.listen;
        options.connect.udp_recv_buffer_size = ByteCount(self.udp_recv_buffer_bytes);
        options.receiver.latency = Duration::from_millis(self.latency_ms);
        options.sender.peer_latency = Duration::from_millis(self.latency_ms);
        // The session idle timeout, below, applies to payload; SRT's own to any packet.
        options.session.peer_idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        options
    }
}
