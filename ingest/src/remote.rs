//! Handing publisher sessions to remote transcoders over the media transport
//! (`floodlight_media::transport`), with failover.
//!
//! Each session gets a task that asks a [`TranscoderDirectory`] for the least-loaded live
//! transcoder, connects, and forwards the session's events. It keeps what a new
//! transcoder needs to start mid-stream: the current `Tracks`, the frames since the last
//! video keyframe (bounded), and the last part the transcoder reported packaged. When the
//! connection dies (the transcoder was killed, its machine is gone), the task picks
//! another one at once (after one quick retry of the same one, if the connection had been
//! stable: a live transcoder keeps the stream's pipeline), opens with `resume` = that last
//! part (so numbering continues, after an EXT-X-DISCONTINUITY), replays the tracks and
//! the GOP, then the live events.
//!
//! The publisher is never held up by a transcoder: events go to the connection through a
//! bounded queue; when it is full, frames are dropped (counted) until the next video
//! keyframe, as the origin pushers drop parts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use floodlight_media::push::LastPart;
use floodlight_media::transport::{Decoder, Hello, Message};
use floodlight_media::{StampedEvent, StreamEvent, StreamSettings, TrackKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{Instrument, info, warn};

use crate::session::{BoxFuture, StreamHandler};
use floodlight_media::sync::lock;

/// Where transcoders are found: the assignment registry (Redis when distributed).
pub trait TranscoderDirectory: Send + Sync + 'static {
    /// The media transport address (`host:port`) of the live transcoder with the most
    /// spare capacity, other than those in `exclude` (which just failed this stream).
    fn pick<'a>(
        &'a self,
        event_id: &'a str,
        exclude: &'a [String],
    ) -> BoxFuture<'a, Result<String, DirectoryError>>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    #[error("no live transcoder with spare capacity is registered")]
    NoneAvailable,
    #[error("the transcoder registry is unavailable: {0}")]
    Unavailable(String),
}

/// Limits of the sessions handed to remote transcoders. (No `Debug`: it holds the token.)
#[derive(Clone)]
pub struct RemoteSettings {
    /// Largest transport message accepted from a transcoder, and sent to one (the same
    /// `[transcoder] max_message_bytes` on both sides): a larger frame is dropped.
    pub max_message_bytes: usize,
    /// The deployment's internal service token (`[transcoder] push_token`), sent in every
    /// Hello: transcoders refuse streams without it.
    pub token: String,
    /// Keepalive interval; a transcoder silent for three is dead.
    pub keepalive: Duration,
    /// Time to connect and be accepted by a transcoder.
    pub connect_timeout: Duration,
    /// Bytes of frames kept since the last video keyframe for replay to a new
    /// transcoder; beyond it the cache restarts at the next keyframe.
    pub gop_cache_bytes: usize,
    /// Events queued to a transcoder connection before frames are dropped.
    pub send_queue_events: usize,
}

/// [`StreamHandler`] over the network: each publisher session goes to a transcoder the
/// directory picks, and moves to another when that one dies.
#[derive(Clone)]
pub struct RemoteTranscoders {
    directory: Arc<dyn TranscoderDirectory>,
    settings: RemoteSettings,
    streams: Arc<Mutex<HashMap<String, StreamMemory>>>,
}

/// What outlives a publisher session, so a reconnecting publisher goes back to the same
/// transcoder (its pipeline is in its grace period) or, if that one is gone, the next
/// one continues the numbering.
#[derive(Debug, Clone)]
struct StreamMemory {
    addr: Option<String>,
    last: Option<LastPart>,
    touched: Instant,
}

/// Stream memories unused this long are forgotten (far beyond any reconnect grace).
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Pause between failed attempts to find a transcoder.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// A transcoder that failed a stream is not picked for it again for this long (its
/// registry entry expires meanwhile if it is dead).
const EXCLUDE_FOR: Duration = Duration::from_secs(10);
/// A lost connection that had lived this long is retried on the same transcoder first.
const STABLE_CONNECTION: Duration = Duration::from_secs(5);
/// Events between a publisher connection and its session task.
const SESSION_QUEUE: usize = 256;
/// Failed attempts to find a transcoder are logged the first time and every this many
/// (one in 10 s at [`RETRY_BACKOFF`]), not every attempt of every stream.
const LOG_FAILED_ATTEMPTS_EVERY: u64 = 50;

impl RemoteTranscoders {
    pub fn new(directory: Arc<dyn TranscoderDirectory>, settings: RemoteSettings) -> Self {
        RemoteTranscoders {
            directory,
            settings,
            streams: Arc::default(),
        }
    }
}

impl StreamHandler for RemoteTranscoders {
    fn begin_session(
        &self,
        event_id: &str,
        settings: &StreamSettings,
    ) -> mpsc::Sender<StampedEvent> {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        {
            let mut streams = lock(&self.streams);
            streams.retain(|_, m| m.touched.elapsed() < FORGET_AFTER);
        }
        let session = RemoteSession {
            shared: self.clone(),
            event_id: event_id.to_string(),
            settings: settings.clone(),
            session_id: uuid::Uuid::new_v4().to_string(),
        };
        let span = tracing::info_span!("remote", event = event_id);
        tokio::spawn(session.run(rx).instrument(span));
        tx
    }
}

struct RemoteSession {
    shared: RemoteTranscoders,
    event_id: String,
    settings: StreamSettings,
    session_id: String,
}

/// The tracks and the frames since the last video keyframe: what a transcoder taking
/// over mid-stream needs to start decoding and packaging.
#[derive(Default)]
struct Replay {
    tracks: Option<StampedEvent>,
    gop: VecDeque<StampedEvent>,
    gop_bytes: usize,
}

impl Replay {
    fn record(&mut self, stamped: &StampedEvent, limit: usize) {
        match &stamped.event {
            StreamEvent::Tracks(_) => {
                self.tracks = Some(stamped.clone());
                self.clear();
            }
            StreamEvent::Frame(frame) => {
                if frame.track == TrackKind::Video && frame.keyframe {
                    self.clear();
                } else if self.gop.is_empty() {
                    // Nothing decodable to replay before a keyframe (audio-only streams
                    // resume from the live edge).
                    return;
                }
                self.gop_bytes += frame.data.len();
                if self.gop_bytes > limit {
                    self.clear();
                    return;
                }
                self.gop.push_back(stamped.clone());
            }
            StreamEvent::Ended => {
                self.tracks = None;
                self.clear();
            }
        }
    }

    fn clear(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
    }

    fn events(&self) -> impl Iterator<Item = &StampedEvent> {
        self.tracks.iter().chain(&self.gop)
    }
}

/// An accepted connection to a transcoder, driven by its own I/O task.
struct Connection {
    addr: String,
    outbound: mpsc::Sender<Bytes>,
    /// Progress reports; closes when the connection is gone.
    inbound: mpsc::Receiver<LastPart>,
    /// Dropping frames until the next video keyframe (the queue was full).
    resync: bool,
    /// When it was accepted.
    since: Instant,
}

/// A connection attempt; its error names the transcoder that failed, if one was picked.
type Connecting = BoxFuture<'static, Result<Connection, (Option<String>, String)>>;

enum Forward {
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
    fn forward(&mut self, stamped: &StampedEvent, max_message: usize) -> Forward {
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

impl RemoteSession {
    async fn run(self, mut rx: mpsc::Receiver<StampedEvent>) {
        let settings = self.shared.settings.clone();
        let (mut preferred, mut last) = {
            let streams = lock(&self.shared.streams);
            streams
                .get(&self.event_id)
                .map(|m| (m.addr.clone(), m.last.clone()))
                .unwrap_or_default()
        };
        let mut replay = Replay::default();
        let mut conn: Option<Connection> = None;
        let mut connecting: Option<Connecting> = None;
        let mut retry_at = tokio::time::Instant::now();
        let mut excluded: Vec<(String, Instant)> = Vec::new();
        let mut dropped: u64 = 0;
        let mut unsendable: u64 = 0;
        let mut failed_attempts: u64 = 0;
        loop {
            if conn.is_none() && connecting.is_none() && tokio::time::Instant::now() >= retry_at {
                excluded.retain(|(_, at)| at.elapsed() < EXCLUDE_FOR);
                let exclude: Vec<String> = excluded.iter().map(|(a, _)| a.clone()).collect();
                connecting = Some(Box::pin(connect(
                    self.shared.directory.clone(),
                    settings.clone(),
                    Hello {
                        event_id: self.event_id.clone(),
                        settings: self.settings.clone(),
                        resume: last.clone(),
                        session_id: self.session_id.clone(),
                        token: settings.token.clone(),
                    },
                    preferred.take(),
                    exclude,
                )));
            }
            tokio::select! {
                received = rx.recv() => {
                    let Some(stamped) = received else { break };
                    let ended = matches!(stamped.event, StreamEvent::Ended);
                    replay.record(&stamped, settings.gop_cache_bytes);
                    if let Some(c) = &mut conn {
                        match c.forward(&stamped, settings.max_message_bytes) {
                            Forward::Sent => {}
                            Forward::Unsendable(reason) => {
                                unsendable += 1;
                                metrics::counter!("floodlight_ingest_transport_unsendable_events_total").increment(1);
                                if unsendable % 100 == 1 {
                                    warn!(unsendable, %reason, "event does not fit the media transport: dropped");
                                }
                                if !matches!(stamped.event, StreamEvent::Frame(_)) {
                                    // Tracks no transcoder can be told about: the stream
                                    // cannot be transcoded (a bad stream drops that stream).
                                    warn!(%reason, "the stream's tracks do not fit the media transport: stream dropped");
                                    break;
                                }
                            }
                            Forward::Dropped => {
                                dropped += 1;
                                metrics::counter!("floodlight_ingest_transport_dropped_events_total").increment(1);
                                if dropped % 100 == 1 {
                                    warn!(dropped, transcoder = %c.addr, "transcoder connection full: frames dropped");
                                }
                            }
                            Forward::Stuck => {
                                warn!(transcoder = %c.addr, "transcoder connection stuck: moving the stream");
                                excluded.push((c.addr.clone(), Instant::now()));
                                conn = None;
                                metrics::counter!("floodlight_ingest_transcoder_reassignments_total").increment(1);
                            }
                        }
                    }
                    if ended {
                        break;
                    }
                }
                result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                    connecting = None;
                    match result {
                        Ok(mut c) => {
                            info!(transcoder = %c.addr, resume = ?last, failed_attempts, "stream handed to transcoder");
                            failed_attempts = 0;
                            self.remember(Some(c.addr.clone()), last.clone());
                            // Everything a new transcoder needs, then live events (an
                            // unsendable frame was counted when it came in).
                            let mut stuck = false;
                            let mut untellable = None;
                            for stamped in replay.events() {
                                match c.forward(stamped, settings.max_message_bytes) {
                                    Forward::Stuck => stuck = true,
                                    Forward::Unsendable(reason) if !matches!(stamped.event, StreamEvent::Frame(_)) => {
                                        untellable = Some(reason);
                                    }
                                    _ => {}
                                }
                            }
                            if let Some(reason) = untellable {
                                warn!(%reason, "the stream's tracks do not fit the media transport: stream dropped");
                                break;
                            }
                            if stuck {
                                excluded.push((c.addr.clone(), Instant::now()));
                                retry_at = tokio::time::Instant::now() + RETRY_BACKOFF;
                            } else {
                                conn = Some(c);
                            }
                        }
                        Err((addr, error)) => {
                            metrics::counter!("floodlight_ingest_transcoder_connection_errors_total").increment(1);
                            failed_attempts += 1;
                            if failed_attempts % LOG_FAILED_ATTEMPTS_EVERY == 1 {
                                warn!(transcoder = ?addr, %error, failed_attempts, "no transcoder for the stream yet");
                            }
                            if let Some(addr) = addr {
                                excluded.push((addr, Instant::now()));
                            }
                            retry_at = tokio::time::Instant::now() + RETRY_BACKOFF;
                        }
                    }
                }
                progress = async { conn.as_mut().expect("guarded").inbound.recv().await }, if conn.is_some() => {
                    match progress {
                        Some(part) => {
                            last = Some(part);
                            self.remember(conn.as_ref().map(|c| c.addr.clone()), last.clone());
                        }
                        None => {
                            let lost = conn.take().expect("guarded");
                            metrics::counter!("floodlight_ingest_transcoder_connection_errors_total").increment(1);
                            metrics::counter!("floodlight_ingest_transcoder_reassignments_total").increment(1);
                            warn!(transcoder = %lost.addr, resume = ?last, "transcoder connection lost: reassigning the stream");
                            // A transcoder that is still up (the connection broke, not the
                            // process) keeps the stream's pipeline: try it once first, so
                            // two transcoders do not push the same stream. A dead one
                            // refuses the connection at once, and is excluded then. One
                            // that keeps dropping the stream is not tried again.
                            if lost.since.elapsed() >= STABLE_CONNECTION {
                                preferred = Some(lost.addr);
                            } else {
                                excluded.push((lost.addr, Instant::now()));
                            }
                            retry_at = tokio::time::Instant::now();
                        }
                    }
                }
                _ = tokio::time::sleep_until(retry_at), if conn.is_none() && connecting.is_none() => {}
            }
        }
        // Dropping the connection's queue lets its I/O task send what is queued (the
        // `Ended`) and close.
        drop(conn);
    }

    fn remember(&self, addr: Option<String>, last: Option<LastPart>) {
        lock(&self.shared.streams).insert(
            self.event_id.clone(),
            StreamMemory {
                addr,
                last,
                touched: Instant::now(),
            },
        );
    }
}

/// Picks a transcoder (`preferred` first, when the stream had one), connects, says
/// Hello and waits for Accepted. The error names the transcoder that failed, if any.
async fn connect(
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use floodlight_media::{AacConfig, Frame, TrackParams};
    use tokio::net::TcpListener;

    use super::*;

    /// Hands out the listed addresses in order, skipping excluded ones, as a registry
    /// with equal loads would.
    struct Fixed(Vec<String>);

    impl TranscoderDirectory for Fixed {
        fn pick<'a>(
            &'a self,
            _: &'a str,
            exclude: &'a [String],
        ) -> BoxFuture<'a, Result<String, DirectoryError>> {
            Box::pin(async move {
                self.0
                    .iter()
                    .find(|a| !exclude.contains(a))
                    .cloned()
                    .ok_or(DirectoryError::NoneAvailable)
            })
        }
    }

    fn settings() -> RemoteSettings {
        RemoteSettings {
            max_message_bytes: 1 << 20,
            token: "tok".to_string(),
            keepalive: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(500),
            gop_cache_bytes: 1 << 20,
            send_queue_events: 64,
        }
    }

    fn stamped(event: StreamEvent) -> StampedEvent {
        StampedEvent {
            event,
            received_at_ms: 1,
        }
    }

    fn frame(track: TrackKind, dts: i64, keyframe: bool) -> StampedEvent {
        stamped(StreamEvent::Frame(Frame {
            track,
            dts,
            pts: dts,
            keyframe,
            data: Bytes::from(vec![0u8; 100]),
        }))
    }

    fn tracks() -> StampedEvent {
        let aac = AacConfig::from_asc(Bytes::from_static(&[0x12, 0x10])).unwrap();
        stamped(StreamEvent::Tracks(vec![TrackParams::audio(aac)]))
    }

    /// A transcoder's side of one connection: the Hello, then messages until `stop`.
    async fn accept(listener: &TcpListener) -> (TcpStream, Decoder, Hello) {
        answer_hello(listener, Message::Accepted).await
    }

    /// Takes a connection's Hello and answers it with `answer`.
    async fn answer_hello(listener: &TcpListener, answer: Message) -> (TcpStream, Decoder, Hello) {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut decoder = Decoder::new(1 << 20);
        let hello = loop {
            if let Some(m) = decoder.next_message().unwrap() {
                match m {
                    Message::Hello(h) => break h,
                    other => panic!("expected Hello, got {other:?}"),
                }
            }
            assert!(socket.read_buf(decoder.buffer()).await.unwrap() > 0);
        };
        socket.write_all(&answer.to_bytes().unwrap()).await.unwrap();
        (socket, decoder, hello)
    }

    #[tokio::test]
    async fn a_refusing_transcoder_is_passed_over_for_the_next() {
        let full = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let spare = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = vec![
            full.local_addr().unwrap().to_string(),
            spare.local_addr().unwrap().to_string(),
        ];
        let remote = RemoteTranscoders::new(Arc::new(Fixed(addrs)), settings());
        let tx = remote.begin_session("evt", &StreamSettings::default());
        tx.send(tracks()).await.unwrap();
        let started = Instant::now();
        let refusal = Message::Refused {
            reason: "at capacity".into(),
        };
        let (_refused, _, hello) = answer_hello(&full, refusal).await;
        assert_eq!(
            hello.token, "tok",
            "the deployment's token goes with every Hello"
        );
        let (mut socket, mut decoder, _) = timeout(Duration::from_secs(2), accept(&spare))
            .await
            .expect("the next transcoder is asked at once");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            next_event(&mut socket, &mut decoder).await,
            StreamEvent::Tracks(_)
        ));
        // The refusing one is not asked again for this stream meanwhile.
        assert!(
            timeout(Duration::from_millis(500), full.accept())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_frame_too_large_for_the_transport_is_dropped_not_a_reconnect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let limited = RemoteSettings {
            max_message_bytes: 1000,
            ..settings()
        };
        let remote = RemoteTranscoders::new(Arc::new(Fixed(vec![addr])), limited);
        let tx = remote.begin_session("evt", &StreamSettings::default());
        tx.send(tracks()).await.unwrap();
        let (mut socket, mut decoder, _) = accept(&listener).await;
        assert!(matches!(
            next_event(&mut socket, &mut decoder).await,
            StreamEvent::Tracks(_)
        ));
        let video = TrackKind::Video;
        let mut huge = frame(video, 0, true);
        if let StreamEvent::Frame(f) = &mut huge.event {
            f.data = Bytes::from(vec![0u8; 5000]);
        }
        tx.send(huge).await.unwrap();
        // Its GOP goes with it; the next keyframe comes through on the same connection.
        tx.send(frame(video, 3000, false)).await.unwrap();
        tx.send(frame(video, 6000, true)).await.unwrap();
        assert!(matches!(
            next_event(&mut socket, &mut decoder).await,
            StreamEvent::Frame(Frame { dts: 6000, .. })
        ));
        assert!(
            timeout(Duration::from_millis(500), listener.accept())
                .await
                .is_err(),
            "no reconnect"
        );
    }

    /// The next session event from the connection (keepalives skipped).
    async fn next_event(socket: &mut TcpStream, decoder: &mut Decoder) -> StreamEvent {
        loop {
            match decoder.next_message().unwrap() {
                Some(Message::Event(e)) => return e.event,
                Some(Message::Keepalive) => continue,
                Some(other) => panic!("unexpected {other:?}"),
                None => {}
            }
            assert!(socket.read_buf(decoder.buffer()).await.unwrap() > 0);
        }
    }

    #[tokio::test]
    async fn a_dead_transcoder_is_replaced_with_the_resume_point_tracks_and_gop() {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = vec![
            first.local_addr().unwrap().to_string(),
            second.local_addr().unwrap().to_string(),
        ];
        let remote = RemoteTranscoders::new(Arc::new(Fixed(addrs)), settings());
        let tx = remote.begin_session("evt", &StreamSettings::default());
        let video = TrackKind::Video;
        for event in [
            tracks(),
            frame(video, 0, true),
            frame(TrackKind::Audio, 10, true),
            frame(video, 3000, false),
        ] {
            tx.send(event).await.unwrap();
        }
        let (mut socket, mut decoder, hello) = accept(&first).await;
        assert_eq!(hello.event_id, "evt");
        assert_eq!(hello.resume, None);
        assert!(matches!(
            next_event(&mut socket, &mut decoder).await,
            StreamEvent::Tracks(_)
        ));
        let last = LastPart {
            msn: 7,
            part: 2,
            ends_segment: false,
            init_version: 1,
        };
        socket
            .write_all(&Message::Progress(last.clone()).to_bytes().unwrap())
            .await
            .unwrap();
        // A new GOP starts; then the transcoder dies.
        tx.send(frame(video, 6000, true)).await.unwrap();
        tx.send(frame(video, 9000, false)).await.unwrap();
        for _ in 0..4 {
            next_event(&mut socket, &mut decoder).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The transcoder process dies: its listener and connection go.
        drop(first);
        drop(socket);

        let started = Instant::now();
        let (mut socket, mut decoder, hello) = accept(&second).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(
            hello.resume,
            Some(last),
            "numbering continues after the last part"
        );
        assert!(matches!(
            next_event(&mut socket, &mut decoder).await,
            StreamEvent::Tracks(_)
        ));
        let replayed: Vec<i64> = [
            next_event(&mut socket, &mut decoder).await,
            next_event(&mut socket, &mut decoder).await,
        ]
        .into_iter()
        .map(|e| match e {
            StreamEvent::Frame(f) => f.dts,
            other => panic!("{other:?}"),
        })
        .collect();
        assert_eq!(replayed, [6000, 9000], "the GOP since the last keyframe");
        tx.send(frame(video, 12000, false)).await.unwrap();
        assert!(matches!(
            next_event(&mut socket, &mut decoder).await,
            StreamEvent::Frame(Frame { dts: 12000, .. })
        ));
        tx.send(stamped(StreamEvent::Ended)).await.unwrap();
        assert_eq!(
            next_event(&mut socket, &mut decoder).await,
            StreamEvent::Ended
        );
    }

    #[tokio::test]
    async fn a_publisher_is_never_held_up_by_a_transcoder_that_does_not_read() {
        let stalled = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = stalled.local_addr().unwrap().to_string();
        let remote = RemoteTranscoders::new(Arc::new(Fixed(vec![addr])), settings());
        let tx = remote.begin_session("evt", &StreamSettings::default());
        tx.send(tracks()).await.unwrap();
        let (_socket, _decoder, _) = accept(&stalled).await;
        // Far more than the socket buffers and the queue hold, sent without a reader.
        let sent = tokio::time::timeout(Duration::from_secs(5), async {
            for i in 0..5000 {
                let big = StampedEvent {
                    event: StreamEvent::Frame(Frame {
                        track: TrackKind::Video,
                        dts: i * 3000,
                        pts: i * 3000,
                        keyframe: i % 60 == 0,
                        data: Bytes::from(vec![0u8; 20_000]),
                    }),
                    received_at_ms: 1,
                };
                tx.send(big).await.unwrap();
            }
        })
        .await;
        assert!(sent.is_ok(), "the publisher's sends must not block");
    }
}
