//! `floodlight transcoder`'s media transport listener: ingest connects once per publisher
//! session (`floodlight_media::transport`), says which stream it is and where its
//! numbering stands, and streams the session's events; the transcoder answers with the
//! last part packaged, so ingest can hand a later transcoder the resume point if this
//! one dies. A lost connection is the session's `Ended` (the pipeline then waits its
//! reconnect grace period, as for a publisher that drops).

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use floodlight_media::transport::{Decoder, Hello, Message, TransportError};
use floodlight_media::{StampedEvent, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tracing::{Instrument, info, warn};

use crate::config::TranscoderConfig;
use crate::pipeline::Transcoder;

/// The transport limits a connection is served with.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_message: usize,
    keepalive: Duration,
}

/// Accepts ingest connections until `shutdown` resolves.
pub async fn serve_transport(
    transcoder: Transcoder,
    listener: TcpListener,
    config: &TranscoderConfig,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        max_message: config.max_message_bytes,
        keepalive: Duration::from_millis(config.keepalive_ms),
    };
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off rather than spin.
                    warn!(error = %e, "media transport accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let transcoder = transcoder.clone();
        let span = tracing::info_span!("transport", %peer);
        tokio::spawn(
            async move {
                metrics::gauge!("floodlight_transcoder_transport_connections").increment(1);
                if let Err(e) = serve_connection(transcoder, socket, peer, limits).await {
                    metrics::counter!("floodlight_transcoder_transport_errors_total").increment(1);
                    warn!(error = %e, "media transport connection failed");
                }
                metrics::gauge!("floodlight_transcoder_transport_connections").decrement(1);
            }
            .instrument(span),
        );
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("no Hello within {0:?}")]
    NoHello(Duration),
    #[error("expected Hello, got {0}")]
    Unexpected(&'static str),
    #[error("silent for {0:?}")]
    Silent(Duration),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn send(socket: &mut TcpStream, message: &Message) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    message.encode(&mut out);
    socket.write_all(&out).await
}

/// Reads until the decoder has a message; `Ok(None)` at a clean end of stream.
async fn read_message(
    socket: &mut TcpStream,
    decoder: &mut Decoder,
) -> Result<Option<Message>, ConnectionError> {
    loop {
        if let Some(message) = decoder.next_message()? {
            return Ok(Some(message));
        }
        if socket.read_buf(decoder.buffer()).await? == 0 {
            return Ok(None);
        }
    }
}

/// Sends each new progress and, every `keepalive`, a keepalive; ends when the connection
/// fails.
async fn talk(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut progress: tokio::sync::watch::Receiver<Option<floodlight_media::push::LastPart>>,
    keepalive: Duration,
) {
    let mut tick = tokio::time::interval(keepalive);
    let mut progress_open = true;
    loop {
        let message = tokio::select! {
            changed = progress.changed(), if progress_open => {
                if changed.is_err() {
                    progress_open = false;
                    continue;
                }
                match progress.borrow_and_update().clone() {
                    Some(last) => Message::Progress(last),
                    None => continue,
                }
            }
            _ = tick.tick() => Message::Keepalive,
        };
        let mut out = BytesMut::new();
        message.encode(&mut out);
        if writer.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn serve_connection(
    transcoder: Transcoder,
    mut socket: TcpStream,
    peer: SocketAddr,
    limits: Limits,
) -> Result<(), ConnectionError> {
    let mut decoder = Decoder::new(limits.max_message);
    let wait = limits.keepalive * 10;
    let hello = match timeout(wait, read_message(&mut socket, &mut decoder)).await {
        Err(_) => return Err(ConnectionError::NoHello(wait)),
        Ok(Err(ConnectionError::Transport(e))) => {
            // Tell the peer why (another version, say) before closing.
            let _ = send(
                &mut socket,
                &Message::Refused {
                    reason: e.to_string(),
                },
            )
            .await;
            return Err(e.into());
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(Message::Hello(hello)))) => hello,
        Ok(Ok(Some(_))) => return Err(ConnectionError::Unexpected("another message")),
    };
    let Hello {
        event_id,
        settings,
        resume,
        session_id,
    } = hello;
    info!(event = %event_id, session = %session_id, ?resume, %peer, "stream assigned");
    let session = transcoder.begin_session(&event_id, &settings, resume);
    send(&mut socket, &Message::Accepted).await?;
    let events = session.events;
    let mut progress = session.progress;
    // A progress that exists already (the session joined a running pipeline) goes out
    // at once.
    progress.mark_changed();
    let (mut reader, writer) = socket.into_split();
    // Progress and keepalives go out from a task of their own, so a pipeline slow to take
    // events (back-pressure on the reads below) never looks like a dead transcoder.
    let talker = tokio::spawn(talk(writer, progress, limits.keepalive));
    let silent_after = limits.keepalive * 3;
    let mut ended = false;
    let result = loop {
        let read = match timeout(silent_after, reader.read_buf(decoder.buffer())).await {
            Err(_) => break Err(ConnectionError::Silent(silent_after)),
            Ok(read) => read,
        };
        match read {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e.into()),
        }
        let mut failed = None;
        loop {
            match decoder.next_message() {
                Ok(Some(Message::Event(stamped))) => {
                    ended = matches!(stamped.event, StreamEvent::Ended);
                    // Back-pressure: the pipeline's queue full means this connection
                    // stops reading; ingest drops frames on its side.
                    if events.send(stamped).await.is_err() {
                        failed = Some(ConnectionError::Unexpected(
                            "events after the pipeline stopped",
                        ));
                        break;
                    }
                }
                Ok(Some(Message::Keepalive)) => {}
                Ok(Some(_)) => {
                    failed = Some(ConnectionError::Unexpected("a control message mid-stream"));
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e.into());
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
    };
    talker.abort();
    if !ended {
        // The connection is gone without the session's end: that is its end.
        let _ = events
            .send(StampedEvent {
                event: StreamEvent::Ended,
                received_at_ms: now_ms(),
            })
            .await;
    }
    info!(event = %event_id, session = %session_id, "stream connection closed");
    result
}

#[cfg(test)]
mod tests {
    use floodlight_media::StreamSettings;

    use super::*;

    async fn serve() -> SocketAddr {
        let config = TranscoderConfig {
            // Never reached: no stream gets far enough to push.
            origins: vec!["http://127.0.0.1:9".to_string()],
            ..TranscoderConfig::default()
        };
        let transcoder = Transcoder::new(config.clone()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            serve_transport(transcoder, listener, &config, std::future::pending()).await
        });
        addr
    }

    async fn answer(socket: &mut TcpStream) -> Option<Message> {
        let mut decoder = Decoder::new(1 << 20);
        timeout(Duration::from_secs(5), read_message(socket, &mut decoder))
            .await
            .expect("answered in time")
            .unwrap()
    }

    fn hello() -> Vec<u8> {
        Message::Hello(Hello {
            event_id: "evt".into(),
            settings: StreamSettings::default(),
            resume: None,
            session_id: "s".into(),
        })
        .to_bytes()
        .to_vec()
    }

    #[tokio::test]
    async fn another_protocol_version_is_refused_with_the_reason() {
        let addr = serve().await;
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let mut bumped = hello();
        // After length (4), type (1) and magic (4): the version.
        bumped[9..11].copy_from_slice(&2u16.to_be_bytes());
        socket.write_all(&bumped).await.unwrap();
        match answer(&mut socket).await {
            Some(Message::Refused { reason }) => assert!(reason.contains("version 2"), "{reason}"),
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn garbage_closes_that_connection_only() {
        let addr = serve().await;
        let mut bad = TcpStream::connect(addr).await.unwrap();
        // An oversized length prefix: refused before any body is buffered.
        bad.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            answer(&mut bad).await,
            Some(Message::Refused { .. })
        ));
        let mut good = TcpStream::connect(addr).await.unwrap();
        good.write_all(&hello()).await.unwrap();
        assert_eq!(answer(&mut good).await, Some(Message::Accepted));
        // A silent peer is dropped after three keepalive intervals; keepalives come first.
        let mut decoder = Decoder::new(1 << 20);
        let next = timeout(
            Duration::from_secs(5),
            read_message(&mut good, &mut decoder),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(next, Some(Message::Keepalive));
    }
}
