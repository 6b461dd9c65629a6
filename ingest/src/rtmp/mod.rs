//! RTMP publish (`rtmp://HOST:1935/live/{stream_key}`, or OBS's server URL
//! `rtmp://HOST/live` plus a stream key field: both arrive as app `live` + a publish name).
//! `rml_rtmp` does the handshake and chunk/command protocol; this module does the I/O,
//! authorization and the hand-off of `StreamEvent`s.

mod to_stream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use floodlight_media::StreamEvent;
use floodlight_media::flv::FlvError;
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, warn};

use crate::neighbours::{Protocol, PublishRefusal, PublishRequest};
use crate::publisher::{Ingest, PublishStopped, Publisher};
use crate::rollup::SharedRollup;
use to_stream::FlvToStream;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RtmpError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0:?}")]
    Handshake(HandshakeError),
    #[error("rtmp session: {0:?}")]
    Session(ServerSessionError),
    #[error("handshake and publish not done within {0} s")]
    HandshakeTimeout(u64),
    #[error("no data for {0} s")]
    Idle(u64),
    #[error("{track} message at {timestamp_ms} ms: {source}")]
    Media {
        track: &'static str,
        timestamp_ms: u32,
        source: FlvError,
    },
    #[error("refused: {0}")]
    Refused(String),
    #[error("malformed RTMP message within bytes {offset}..{end} of the connection")]
    Malformed { offset: u64, end: u64 },
    #[error(transparent)]
    PublishStopped(#[from] PublishStopped),
}

impl RtmpError {
    /// What kind of error this is, for rolling the log up.
    fn kind(&self) -> &'static str {
        match self {
            RtmpError::Io(_) => "io",
            RtmpError::Handshake(_) => "handshake",
            RtmpError::Session(_) => "session",
            RtmpError::HandshakeTimeout(_) => "handshake_timeout",
            RtmpError::Idle(_) => "idle",
            RtmpError::Media { .. } => "media",
            RtmpError::Refused(_) => "refused",
            RtmpError::Malformed { .. } => "malformed",
            RtmpError::PublishStopped(_) => "publish_stopped",
        }
    }
}

impl From<HandshakeError> for RtmpError {
    fn from(e: HandshakeError) -> Self {
        RtmpError::Handshake(e)
    }
}

impl From<ServerSessionError> for RtmpError {
    fn from(e: ServerSessionError) -> Self {
        RtmpError::Session(e)
    }
}

/// Accepts RTMP publishers on `listener` until `shutdown` resolves. Each connection runs
/// in its own task: one bad publisher never affects another.
pub async fn serve_rtmp(ingest: Ingest, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let limit = Arc::new(Semaphore::new(ingest.config.rtmp.max_connections));
    let next_id = AtomicU64::new(1);
    let errors = SharedRollup::new("rtmp errors", ingest.config.error_log_interval());
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "rtmp accept failed");
                    continue;
                }
            },
        };
        metrics::counter!("floodlight_ingest_connections_total", "protocol" => "rtmp").increment(1);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            if errors.admit(peer.ip(), "max_connections") {
                warn!(%peer, "rtmp connection refused: max_connections reached");
            }
            reject("max_connections");
            continue;
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("rtmp", conn = id, %peer, event = tracing::field::Empty);
        let ingest = ingest.clone();
        let errors = errors.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                match Connection::new(ingest, peer, errors.clone())
                    .run(socket)
                    .await
                {
                    Ok(()) => info!("rtmp connection closed"),
                    Err(e) => {
                        if errors.admit(peer.ip(), e.kind()) {
                            warn!(error = %e, "rtmp connection closed");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
}

/// Feeds `bytes` (which start at `offset` of the connection's post-handshake stream) to
/// the RTMP session. rml_rtmp 0.8 panics on some malformed input (an AMF0 command with
/// fewer than three values, found by fuzz/rtmp_chunks); the panic is contained here and
/// closes this connection like any other protocol error.
pub(crate) fn handle_input(
    session: &mut ServerSession,
    bytes: &[u8],
    offset: &mut u64,
) -> Result<Vec<ServerSessionResult>, RtmpError> {
    let start = *offset;
    *offset += bytes.len() as u64;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.handle_input(bytes)))
        .map_err(|_| RtmpError::Malformed {
            offset: start,
            end: *offset,
        })?
        .map_err(RtmpError::from)
}

fn reject(reason: &'static str) {
    metrics::counter!("floodlight_ingest_rejected_total", "protocol" => "rtmp", "reason" => reason)
        .increment(1);
}

/// Why a connect, publish or play request is refused: the metric label, the NetStatus
/// code and description the client sees, and the connection closes after sending it.
struct Refusal {
    metric: &'static str,
    code: &'static str,
    description: String,
}

struct Publishing {
    publisher: Publisher,
    flv: FlvToStream,
}

struct Connection {
    ingest: Ingest,
    peer: SocketAddr,
    /// Refusals and errors are logged rolled up per address (a flood of bad publishers
    /// costs a few lines).
    errors: SharedRollup,
    publishing: Option<Publishing>,
    /// Set when the connection must close after flushing its last responses.
    closing: Option<RtmpError>,
    finished: bool,
}

impl Connection {
    fn new(ingest: Ingest, peer: SocketAddr, errors: SharedRollup) -> Self {
        Connection {
            ingest,
            peer,
            errors,
            publishing: None,
            closing: None,
            finished: false,
        }
    }

    async fn run(mut self, mut socket: TcpStream) -> Result<(), RtmpError> {
        let config = self.ingest.config.rtmp.clone();
        let handshake_deadline = tokio::time::Instant::now() + config.handshake_timeout();
        let mut buf = vec![0u8; 64 * 1024];

        let leftover =
            tokio::time::timeout_at(handshake_deadline, handshake(&mut socket, &mut buf))
                .await
                .map_err(|_| RtmpError::HandshakeTimeout(config.handshake_timeout_secs))??;

        let (mut session, results) = ServerSession::new(ServerSessionConfig::new())?;
        let result = async {
            self.process(&mut session, &mut socket, results).await?;
            let mut offset = 0u64;
            let results = handle_input(&mut session, &leftover, &mut offset)?;
            self.process(&mut session, &mut socket, results).await?;
            while !self.finished {
                let read = if self.publishing.is_some() {
                    tokio::time::timeout(config.idle_timeout(), socket.read(&mut buf))
                        .await
                        .map_err(|_| RtmpError::Idle(config.idle_timeout_secs))?
                } else {
                    tokio::time::timeout_at(handshake_deadline, socket.read(&mut buf))
                        .await
                        .map_err(|_| RtmpError::HandshakeTimeout(config.handshake_timeout_secs))?
                };
                let n = read?;
                if n == 0 {
                    break;
                }
                let results = handle_input(&mut session, &buf[..n], &mut offset)?;
                self.process(&mut session, &mut socket, results).await?;
            }
            Ok(())
        }
        .await;
        if let Some(p) = self.publishing.take() {
            info!(event = %p.publisher.event_id(), "publish ended");
            // The transcoder holds the stream open for the reconnect grace period.
            p.publisher.end().await;
        }
        result
    }

    /// Sends outbound packets and reacts to raised events, in order.
    async fn process(
        &mut self,
        session: &mut ServerSession,
        socket: &mut TcpStream,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), RtmpError> {
        let mut queue = std::collections::VecDeque::from(results);
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    socket.write_all(&packet.bytes).await?
                }
                ServerSessionResult::RaisedEvent(event) => {
                    let more = self.on_event(session, event).await?;
                    // Responses to this event go out before anything queued after it.
                    for r in more.into_iter().rev() {
                        queue.push_front(r);
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    debug!(type_id = payload.type_id, "ignoring unhandled rtmp message");
                }
            }
        }
        if let Some(err) = self.closing.take() {
            return Err(err);
        }
        Ok(())
    }

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, RtmpError> {
        match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                let app = strip_query(&app_name);
                if app != self.ingest.config.rtmp.app {
                    if self.errors.admit(self.peer.ip(), "unknown_app") {
                        warn!(app, "rtmp connect to unknown application refused");
                    }
                    return self.refuse(
                        session,
                        request_id,
                        Refusal {
                            metric: "unknown_app",
                            code: "NetConnection.Connect.Rejected",
                            description:
                                "unknown application: publish to rtmp://HOST:1935/live/{stream_key}"
                                    .to_string(),
                        },
                    );
                }
                Ok(session.accept_request(request_id)?)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                self.on_publish(session, request_id, strip_query(&stream_key))
                    .await
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.on_media(true, &data, timestamp.value).await?;
                Ok(vec![])
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.on_media(false, &data, timestamp.value).await?;
                Ok(vec![])
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                debug!(
                    encoder = metadata.encoder.as_deref().unwrap_or("unknown"),
                    video_codec_id = metadata.video_codec_id,
                    audio_codec_id = metadata.audio_codec_id,
                    width = metadata.video_width,
                    height = metadata.video_height,
                    "publisher metadata"
                );
                Ok(vec![])
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                self.finished = true;
                Ok(vec![])
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => self.refuse(
                session,
                request_id,
                Refusal {
                    metric: "play_requested",
                    code: "NetStream.Play.Failed",
                    description: "playback over RTMP is not offered; watch over HLS".to_string(),
                },
            ),
            _ => Ok(vec![]),
        }
    }

    /// Answers `request_id` with an error status and closes the connection after it.
    fn refuse(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        refusal: Refusal,
    ) -> Result<Vec<ServerSessionResult>, RtmpError> {
        reject(refusal.metric);
        let result = session.reject_request(request_id, refusal.code, &refusal.description);
        self.closing = Some(RtmpError::Refused(refusal.description));
        Ok(result?)
    }

    async fn on_publish(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        stream_key: &str,
    ) -> Result<Vec<ServerSessionResult>, RtmpError> {
        if self.publishing.is_some() {
            return self.refuse(
                session,
                request_id,
                Refusal {
                    metric: "second_publish",
                    code: "NetStream.Publish.BadName",
                    description: "this connection is already publishing".to_string(),
                },
            );
        }
        // Never log the key itself: it is a publishing credential.
        let request = PublishRequest {
            stream_key,
            protocol: Protocol::Rtmp,
            remote_addr: self.peer,
            event_id: None,
        };
        let grant = match self.ingest.authority.authorize(request).await {
            Ok(grant) => grant,
            Err(refusal) => {
                // Never log the key itself: it is a publishing credential.
                let (metric, code) = match refusal {
                    PublishRefusal::UnknownKey => ("unknown_key", "NetStream.Publish.BadName"),
                    PublishRefusal::Forbidden(_) => ("forbidden", "NetStream.Publish.Denied"),
                    PublishRefusal::RateLimited => ("rate_limited", "NetStream.Publish.Denied"),
                    _ => ("auth_unavailable", "NetStream.Publish.Failed"),
                };
                if self.errors.admit(self.peer.ip(), metric) {
                    warn!(key_len = stream_key.len(), %refusal, "publish refused");
                }
                return self.refuse(
                    session,
                    request_id,
                    Refusal {
                        metric,
                        code,
                        description: refusal.to_string(),
                    },
                );
            }
        };
        tracing::Span::current().record("event", grant.event_id.as_str());
        let publisher = match self.ingest.start_publish(&grant, Protocol::Rtmp, self.peer) {
            Ok(publisher) => publisher,
            Err(taken) => {
                if self.errors.admit(self.peer.ip(), "already_publishing") {
                    warn!(%taken, "publish refused");
                }
                return self.refuse(
                    session,
                    request_id,
                    Refusal {
                        metric: "already_publishing",
                        code: "NetStream.Publish.BadName",
                        description: taken.to_string(),
                    },
                );
            }
        };
        info!("publish started");
        self.publishing = Some(Publishing {
            publisher,
            flv: FlvToStream::default(),
        });
        Ok(session.accept_request(request_id)?)
    }

    async fn on_media(
        &mut self,
        video: bool,
        body: &[u8],
        timestamp: u32,
    ) -> Result<(), RtmpError> {
        // Media before an accepted publish is not ours to look at.
        let Some(p) = self.publishing.as_mut() else {
            return Ok(());
        };
        let track = if video { "video" } else { "audio" };
        let converted = if video {
            p.flv.video(body, timestamp)
        } else {
            p.flv.audio(body, timestamp)
        };
        let converted = converted.map_err(|source| {
            let reason = match source {
                FlvError::UnsupportedCodec { .. } => "unsupported_codec",
                _ => "malformed_media",
            };
            reject(reason);
            RtmpError::Media {
                track,
                timestamp_ms: timestamp,
                source,
            }
        })?;
        p.publisher.record_bytes(body.len());
        p.publisher.record_dropped(converted.dropped);
        for event in converted.events {
            match event {
                StreamEvent::Tracks(tracks) => p.publisher.send_tracks(tracks).await?,
                StreamEvent::Frame(frame) => p.publisher.send_frame(frame).await?,
                StreamEvent::Ended => {}
            }
        }
        Ok(())
    }
}

async fn handshake(socket: &mut TcpStream, buf: &mut [u8]) -> Result<Vec<u8>, RtmpError> {
    let mut handshake = Handshake::new(PeerType::Server);
    loop {
        let n = socket.read(buf).await?;
        if n == 0 {
            return Err(RtmpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        match handshake.process_bytes(&buf[..n])? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}

/// Some encoders append `?query` to the app or the stream name (tokens for other servers);
/// the path part is what names the app and the key.
fn strip_query(s: &str) -> &str {
    s.split('?').next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/README.md's reproducer: an AMF0 command message with fewer than three
    /// values, on which rml_rtmp 0.8 panics. It must end as this connection's error.
    #[test]
    fn rml_rtmp_panic_on_a_short_amf0_command_is_a_connection_error() {
        let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        let input = [
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x09,
            0x01, 0x04, 0x40, 0x2b, 0x2b,
        ];
        let mut offset = 100;
        let mut result = Ok(Vec::new());
        for piece in input.chunks(4) {
            result = handle_input(&mut session, piece, &mut offset);
            if result.is_err() {
                break;
            }
        }
        match result {
            Err(RtmpError::Malformed { offset, end }) => assert!(100 <= offset && offset < end),
            other => panic!("expected a contained panic, got {other:?}"),
        }
    }
}
