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
//!
//! Here is the link's decision making (`TranscoderLink`, one task per session, its main
//! loop in named steps); opening and driving one connection is `connection.rs`.

mod connection;

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floodlight_media::push::LastPart;
use floodlight_media::transport::Hello;
use floodlight_media::{StampedEvent, StreamEvent, StreamSettings, TrackKind};
use tokio::sync::mpsc;
use tracing::{Instrument, info, warn};

use crate::neighbours::{BoxFuture, StreamHandler};
use connection::{Connecting, Connection, Forward, connect};
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
        let link = TranscoderLink::new(
            self.clone(),
            event_id.to_string(),
            settings.clone(),
            uuid::Uuid::new_v4().to_string(),
        );
        let span = tracing::info_span!("remote", event = event_id);
        tokio::spawn(link.run(rx).instrument(span));
        tx
    }
}

/// One publisher session's link to a transcoder: the task that forwards its events to
/// the transcoder it is connected to, and connects it to another when that one fails.
struct TranscoderLink {
    shared: RemoteTranscoders,
    event_id: String,
    settings: StreamSettings,
    session_id: String,
    /// The transcoder to try first at the next connection attempt.
    preferred: Option<String>,
    /// The last part the transcoder reported packaged: where the next one resumes.
    last: Option<LastPart>,
    replay: Replay,
    conn: Option<Connection>,
    connecting: Option<Connecting>,
    /// When the next connection attempt may start.
    retry_at: tokio::time::Instant,
    /// Transcoders that just failed the stream, and since when.
    excluded: Vec<(String, Instant)>,
    dropped: u64,
    unsendable: u64,
    failed_attempts: u64,
}

/// What the link wakes up to.
enum Wake {
    /// An event of the publisher session; `None` once the session is gone.
    Event(Option<StampedEvent>),
    /// The connection attempt is over.
    Connected(Result<Connection, (Option<String>, String)>),
    /// A progress report of the transcoder; `None` once its connection is gone.
    Progress(Option<LastPart>),
    /// Time for the next connection attempt.
    RetryDue,
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

impl TranscoderLink {
    fn new(
        shared: RemoteTranscoders,
        event_id: String,
        settings: StreamSettings,
        session_id: String,
    ) -> Self {
        TranscoderLink {
            shared,
            event_id,
            settings,
            session_id,
            preferred: None,
            last: None,
            replay: Replay::default(),
            conn: None,
            connecting: None,
            retry_at: tokio::time::Instant::now(),
            excluded: Vec::new(),
            dropped: 0,
            unsendable: 0,
            failed_attempts: 0,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<StampedEvent>) {
        self.recall_stream();
        loop {
            self.connect_if_due();
            let next = match self.wait(&mut rx).await {
                Wake::Event(None) => break,
                Wake::Event(Some(stamped)) => self.pass_on(stamped),
                Wake::Connected(Ok(conn)) => self.hand_over(conn),
                Wake::Connected(Err((addr, error))) => {
                    self.connect_failed(addr, error);
                    ControlFlow::Continue(())
                }
                Wake::Progress(Some(part)) => {
                    self.record_progress(part);
                    ControlFlow::Continue(())
                }
                Wake::Progress(None) => {
                    self.reassign_lost_connection();
                    ControlFlow::Continue(())
                }
                Wake::RetryDue => ControlFlow::Continue(()),
            };
            if next.is_break() {
                break;
            }
        }
        // Dropping the connection's queue lets its I/O task send what is queued (the
        // `Ended`) and close.
        drop(self.conn.take());
    }

    /// Where an earlier session of the stream left off: its transcoder, to try first,
    /// and its last part, to resume after.
    fn recall_stream(&mut self) {
        let streams = lock(&self.shared.streams);
        (self.preferred, self.last) = streams
            .get(&self.event_id)
            .map(|m| (m.addr.clone(), m.last.clone()))
            .unwrap_or_default();
    }

    /// Starts a connection attempt when there is no connection, none under way, and
    /// the pause after the last failure is over.
    fn connect_if_due(&mut self) {
        if self.conn.is_some()
            || self.connecting.is_some()
            || tokio::time::Instant::now() < self.retry_at
        {
            return;
        }
        self.excluded.retain(|(_, at)| at.elapsed() < EXCLUDE_FOR);
        let exclude: Vec<String> = self.excluded.iter().map(|(a, _)| a.clone()).collect();
        let settings = self.shared.settings.clone();
        let hello = Hello {
            event_id: self.event_id.clone(),
            settings: self.settings.clone(),
            resume: self.last.clone(),
            session_id: self.session_id.clone(),
            token: settings.token.clone(),
        };
        self.connecting = Some(Box::pin(connect(
            self.shared.directory.clone(),
            settings,
            hello,
            self.preferred.take(),
            exclude,
        )));
    }

    /// Waits for the next thing to do: an event, the end of a connection attempt, a
    /// progress report or a lost connection, or the time for the next attempt.
    async fn wait(&mut self, rx: &mut mpsc::Receiver<StampedEvent>) -> Wake {
        let TranscoderLink {
            conn,
            connecting,
            retry_at,
            ..
        } = self;
        tokio::select! {
            received = rx.recv() => Wake::Event(received),
            result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                *connecting = None;
                Wake::Connected(result)
            }
            progress = async { conn.as_mut().expect("guarded").inbound.recv().await }, if conn.is_some() => {
                Wake::Progress(progress)
            }
            _ = tokio::time::sleep_until(*retry_at), if conn.is_none() && connecting.is_none() => Wake::RetryDue,
        }
    }

    /// Keeps the event for a replay and forwards it to the transcoder, if connected.
    /// Breaks when the stream is over: it ended, or its tracks fit no transcoder.
    fn pass_on(&mut self, stamped: StampedEvent) -> ControlFlow<()> {
        let ended = matches!(stamped.event, StreamEvent::Ended);
        let settings = &self.shared.settings;
        self.replay.record(&stamped, settings.gop_cache_bytes);
        if let Some(c) = &mut self.conn {
            let forwarded = c.forward(&stamped, settings.max_message_bytes);
            let is_frame = matches!(stamped.event, StreamEvent::Frame(_));
            self.settle_forward(forwarded, is_frame)?;
        }
        if ended {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Counts and logs what became of a forwarded event; a stuck connection is given up
    /// (the stream moves to another transcoder). Breaks when the event was tracks no
    /// transcoder can be told about.
    fn settle_forward(&mut self, forwarded: Forward, is_frame: bool) -> ControlFlow<()> {
        match forwarded {
            Forward::Sent => {}
            Forward::Unsendable(reason) => {
                self.unsendable += 1;
                let unsendable = self.unsendable;
                metrics::counter!("floodlight_ingest_transport_unsendable_events_total")
                    .increment(1);
                if unsendable % 100 == 1 {
                    warn!(unsendable, %reason, "event does not fit the media transport: dropped");
                }
                if !is_frame {
                    // Tracks no transcoder can be told about: the stream cannot be
                    // transcoded (a bad stream drops that stream).
                    warn!(%reason, "the stream's tracks do not fit the media transport: stream dropped");
                    return ControlFlow::Break(());
                }
            }
            Forward::Dropped => {
                self.dropped += 1;
                let dropped = self.dropped;
                metrics::counter!("floodlight_ingest_transport_dropped_events_total").increment(1);
                if dropped % 100 == 1
                    && let Some(c) = &self.conn
                {
                    warn!(dropped, transcoder = %c.addr, "transcoder connection full: frames dropped");
                }
            }
            Forward::Stuck => {
                let c = self.conn.take().expect("forwarded on it");
                warn!(transcoder = %c.addr, "transcoder connection stuck: moving the stream");
                self.excluded.push((c.addr, Instant::now()));
                metrics::counter!("floodlight_ingest_transcoder_reassignments_total").increment(1);
            }
        }
        ControlFlow::Continue(())
    }

    /// A transcoder accepted the stream: it gets everything a new transcoder needs (the
    /// tracks and the GOP), then the live events. One that cannot take the replay is
    /// excluded and another tried after a pause. Breaks when the stream's tracks fit no
    /// transcoder.
    fn hand_over(&mut self, mut c: Connection) -> ControlFlow<()> {
        let failed_attempts = self.failed_attempts;
        info!(transcoder = %c.addr, resume = ?self.last, failed_attempts, "stream handed to transcoder");
        self.failed_attempts = 0;
        self.remember(Some(c.addr.clone()), self.last.clone());
        // Everything a new transcoder needs, then live events (an unsendable frame was
        // counted when it came in).
        let mut stuck = false;
        let mut untellable = None;
        for stamped in self.replay.events() {
            match c.forward(stamped, self.shared.settings.max_message_bytes) {
                Forward::Stuck => stuck = true,
                Forward::Unsendable(reason) if !matches!(stamped.event, StreamEvent::Frame(_)) => {
                    untellable = Some(reason);
                }
                _ => {}
            }
        }
        if let Some(reason) = untellable {
            warn!(%reason, "the stream's tracks do not fit the media transport: stream dropped");
            return ControlFlow::Break(());
        }
        if stuck {
            self.excluded.push((c.addr.clone(), Instant::now()));
            self.retry_at = tokio::time::Instant::now() + RETRY_BACKOFF;
        } else {
            self.conn = Some(c);
        }
        ControlFlow::Continue(())
    }

    /// A connection attempt failed: the transcoder that failed, if one was picked, is
    /// excluded for a while, and the next attempt waits a little.
    fn connect_failed(&mut self, addr: Option<String>, error: String) {
        metrics::counter!("floodlight_ingest_transcoder_connection_errors_total").increment(1);
        self.failed_attempts += 1;
        let failed_attempts = self.failed_attempts;
        if failed_attempts % LOG_FAILED_ATTEMPTS_EVERY == 1 {
            warn!(transcoder = ?addr, %error, failed_attempts, "no transcoder for the stream yet");
        }
        if let Some(addr) = addr {
            self.excluded.push((addr, Instant::now()));
        }
        self.retry_at = tokio::time::Instant::now() + RETRY_BACKOFF;
    }

    /// The transcoder packaged up to `part`: a transcoder after it resumes there.
    fn record_progress(&mut self, part: LastPart) {
        self.last = Some(part);
        self.remember(
            self.conn.as_ref().map(|c| c.addr.clone()),
            self.last.clone(),
        );
    }

    /// The connection to the transcoder is gone: the stream is reassigned at once.
    fn reassign_lost_connection(&mut self) {
        let lost = self.conn.take().expect("guarded");
        metrics::counter!("floodlight_ingest_transcoder_connection_errors_total").increment(1);
        metrics::counter!("floodlight_ingest_transcoder_reassignments_total").increment(1);
        warn!(transcoder = %lost.addr, resume = ?self.last, "transcoder connection lost: reassigning the stream");
        // A transcoder that is still up (the connection broke, not the process) keeps
        // the stream's pipeline: try it once first, so two transcoders do not push the
        // same stream. A dead one refuses the connection at once, and is excluded then.
        // One that keeps dropping the stream is not tried again.
        if lost.since.elapsed() >= STABLE_CONNECTION {
            self.preferred = Some(lost.addr);
        } else {
            self.excluded.push((lost.addr, Instant::now()));
        }
        self.retry_at = tokio::time::Instant::now();
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use floodlight_media::transport::{Decoder, Message};
    use floodlight_media::{AacConfig, Frame, TrackParams};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

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
