//! One connection to a transcoder: how it is opened (pick, connect, Hello, Accepted),
//! how a stream's events are put on it without ever waiting (a bounded queue; when it is
//! full, frames are dropped until the next video keyframe), and the I/O task that drives
//! it (events out, progress in, keepalives both ways). The link (`mod.rs`) decides what
//! goes on which connection, and what to do when one is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use floodlight_media::push::LastPart;
use floodlight_media::transport::{Decoder, Hello, Message};
use floodlight_media::{StampedEvent, StreamEvent, TrackKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{Instrument, warn};

use super::{RemoteSettings, TranscoderDirectory};
use crate::neighbours::BoxFuture;

/// An accepted connection to a transcoder, driven by its own I/O task.
pub(super) struct Connection {
    pub(super) addr: String,
    outbound: mpsc::Sender<Bytes>,
    /// Progress reports; closes when the connection is gone.
    pub(super) inbound: mpsc::Receiver<LastPart>,
    /// Dropping frames until the next video keyframe (the queue was full).
    resync: bool,
    /// When it was accepted.
    pub(super) since: Instant,
}

/// A connection attempt; its error names the transcoder that failed, if one was picked.
pub(super) type Connecting = BoxFuture<'static, Result<Connection, (Option<String>, String)>>;

/// What became of an event put on a connection.
pub(super) enum Forward {
    Sent,
    Dropped,
    /// The queue is full with an event that must not be lost (tracks, the end): the
    /// connection cannot keep up.
    Stuck,
    /// The event does not fit the transport (a frame over `max_message_bytes`, tracks
    /// with more parameter sets than it carries): no transcoder would take it.
    Unsendable(String),
}

impl Connection {
    pub(super) fn forward(&mut self, stamped: &StampedEvent, max_message: usize) -> Forward {
        let frame = match &stamped.event {
            StreamEvent::Frame(frame) => Some(frame),
            _ => None,
        };
        if let Some(frame) = frame
            && self.resync
        {
            if frame.track == TrackKind::Video && frame.keyframe {
                self.resync = false;
            } else {
                return Forward::Dropped;
            }
        }
        let encoded = Message::Event(stamped.clone())
            .to_bytes()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                // The transcoder's decoder refuses a message over its limit by closing
                // the connection: better one frame lost here than a reconnect loop.
                let len = bytes.len() - 4;
                if len > max_message {
                    return Err(format!(
                        "message of {len} bytes exceeds max_message_bytes ({max_message})"
                    ));
                }
                Ok(bytes)
            });
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(reason) => {
                if frame.is_some() {
                    // The frames after it may refer to it: skip to the next keyframe.
                    self.resync = true;
                }
                return Forward::Unsendable(reason);
            }
        };
        match self.outbound.try_send(bytes) {
            Ok(()) => Forward::Sent,
            Err(mpsc::error::TrySendError::Full(_)) if frame.is_some() => {
                self.resync = true;
                Forward::Dropped
            }
            Err(_) => Forward::Stuck,
        }
    }
}

/// Picks a transcoder (`preferred` first, when the stream had one), connects, says
/// Hello and waits for Accepted. The error names the transcoder that failed, if any.
pub(super) async fn connect(
    directory: Arc<dyn TranscoderDirectory>,
    settings: RemoteSettings,
    hello: Hello,
    preferred: Option<String>,
    exclude: Vec<String>,
) -> Result<Connection, (Option<String>, String)> {
    let addr = match preferred {
        Some(addr) if !exclude.contains(&addr) => addr,
        _ => directory
            .pick(&hello.event_id, &exclude)
            .await
            .map_err(|e| (None, e.to_string()))?,
    };
    let fail = |e: String| (Some(addr.clone()), e);
    let mut socket = timeout(settings.connect_timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| fail("connect timed out".to_string()))?
        .map_err(|e| fail(format!("connect: {e}")))?;
    let _ = socket.set_nodelay(true);
    let hello = Message::Hello(hello)
        .to_bytes()
        .map_err(|e| fail(format!("encoding Hello: {e}")))?;
    socket
        .write_all(&hello)
        .await
        .map_err(|e| fail(format!("sending Hello: {e}")))?;
    let mut decoder = Decoder::new(settings.max_message_bytes);
    let answer = timeout(settings.connect_timeout, async {
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            match socket.read_buf(decoder.buffer()).await {
                Ok(0) => return Err("closed before answering Hello".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| fail("no answer to Hello".to_string()))?
    .map_err(&fail)?;
    match answer {
        Message::Accepted => {}
        Message::Refused { reason } => return Err(fail(format!("refused: {reason}"))),
        other => return Err(fail(format!("answered Hello with {other:?}"))),
    }
    let (outbound, queue) = mpsc::channel(settings.send_queue_events);
    let (progress, inbound) = mpsc::channel(16);
    metrics::gauge!("floodlight_ingest_transcoder_connections").increment(1);
    tokio::spawn(drive(socket, decoder, queue, progress, settings.keepalive).in_current_span());
    Ok(Connection {
        addr,
        outbound,
        inbound,
        resync: false,
        since: Instant::now(),
    })
}

/// The connection's I/O: queued events out, progress in, keepalives both ways. Ends
/// (closing `progress`) when the transcoder goes away or falls silent, or once the
/// session is over and everything queued is written.
async fn drive(
    socket: TcpStream,
    mut decoder: Decoder,
    mut queue: mpsc::Receiver<Bytes>,
    progress: mpsc::Sender<LastPart>,
    keepalive: Duration,
) {
    let (mut reader, mut writer) = socket.into_split();
    let silent_after = keepalive * 3;
    let mut tick = tokio::time::interval(keepalive);
    let mut heard = Instant::now();
    let error: Option<String> = loop {
        tokio::select! {
            next = queue.recv() => {
                let Some(bytes) = next else {
                    let _ = writer.shutdown().await;
                    break None;
                };
                match timeout(silent_after, writer.write_all(&bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Some(e.to_string()),
                    Err(_) => break Some(format!("not reading for {silent_after:?}")),
                }
            }
            read = reader.read_buf(decoder.buffer()) => {
                match read {
                    Ok(0) => break Some("closed by the transcoder".to_string()),
                    Ok(_) => heard = Instant::now(),
                    Err(e) => break Some(e.to_string()),
                }
                let mut failed = None;
                loop {
                    match decoder.next_message() {
                        Ok(Some(Message::Progress(last))) => {
                            // Only the latest matters: a full channel skips one.
                            let _ = progress.try_send(last);
                        }
                        Ok(Some(Message::Keepalive)) => {}
                        Ok(Some(other)) => {
                            failed = Some(format!("unexpected {other:?}"));
                            break;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                if failed.is_some() {
                    break failed;
                }
            }
            _ = tick.tick() => {
                if heard.elapsed() > silent_after {
                    break Some(format!("silent for {silent_after:?}"));
                }
                let mut out = BytesMut::new();
                if let Err(e) = Message::Keepalive.encode(&mut out) {
                    break Some(e.to_string());
                }
                if let Err(e) = writer.write_all(&out).await {
                    break Some(e.to_string());
                }
            }
        }
    };
    if let Some(error) = error {
        warn!(%error, "transcoder connection ended");
    }
    metrics::gauge!("floodlight_ingest_transcoder_connections").decrement(1);
}
