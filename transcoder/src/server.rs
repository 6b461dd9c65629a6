//! `floodlight transcoder`'s media transport listener: ingest connects once per publisher
//! session (`floodlight_media::transport`), says which stream it is and where its
//! numbering stands, and streams the session's events; the transcoder answers with the
//! last part packaged, so ingest can hand a later transcoder the resume point if this
//! one dies. A lost connection is the session's `Ended` (the pipeline then waits its
//! reconnect grace period, as for a publisher that drops).
//!
//! The port takes video into the deployment's playback URLs, so a Hello must carry the
//! deployment's internal service token (`[transcoder] push_token`, compared in constant
//! time) and sane settings, and the transcoder must have capacity for a new stream;
//! otherwise it is refused with the reason (ingest then tries another transcoder).
//!
//! Only the latest connection of a stream feeds its pipeline: once a newer one has begun
//! (ingest moved the stream, or the publisher came back), an older connection's remaining
//! events, and the `Ended` its loss would mean, are dropped, so they cannot end or
//! disturb the new session. The newer connection ends a session the older one left open
//! before its own events, so the pipeline still sees one session end before the next.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use floodlight_media::clock::unix_millis;
use floodlight_media::transport::{Decoder, Hello, Message, TransportError};
use floodlight_media::{StampedEvent, StreamEvent};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{Instrument, info, warn};

use crate::config::TranscoderConfig;
use crate::pipeline::Transcoder;
use floodlight_media::sync::lock;

/// The transport limits a connection is served with. (No `Debug`: it holds the token.)
#[derive(Clone)]
struct Limits {
    max_message: usize,
    keepalive: Duration,
    /// `capacity_rungs`: a new stream is refused once the load's cost reaches it.
    capacity: usize,
    /// The token a Hello must carry; `None` (no push_token configured): every Hello is
    /// refused, rather than the port being open to anyone.
    token: Option<Arc<str>>,
}

/// Hello fields as the control plane and ingest make them. An event id is a path segment
/// of every playback and push URL (the control plane's are 16 of `[0-9a-z]`).
const MAX_EVENT_ID: usize = 64;
/// Ladder profile names and session ids: short printable tokens, they go into logs.
const MAX_NAME: usize = 64;
const MAX_SESSION_ID: usize = 128;
/// The control plane's bound on an event's DVR window.
const MAX_DVR_WINDOW_SECS: u32 = 86_400;
/// A resume point beyond this is not a real stream's (2^48 segments of 100 ms is ~900
/// thousand years); it also keeps `msn + 1` far from overflow.
const MAX_RESUME_MSN: u64 = 1 << 48;

/// The latest connection of each stream, by a number that only grows.
#[derive(Default)]
struct Generations {
    next: AtomicU64,
    latest: Mutex<HashMap<String, Latest>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Latest {
    generation: u64,
    /// It has passed on a session's events and not (yet) that session's `Ended`.
    open: bool,
}

impl Generations {
    /// A new connection of `event_id`: from now on it is the stream's latest. If the one
    /// it supersedes left a session open (ingest moved the stream before this side saw
    /// the old connection go), that session's `Ended` goes through `permit` first, under
    /// the lock: the pipeline sees a session end before the next begins (the new one
    /// replays the tracks and GOP, which then start a new timeline, not a step back).
    fn begin(&self, event_id: &str, permit: mpsc::Permit<'_, StampedEvent>) -> u64 {
        let generation = self.next.fetch_add(1, Ordering::SeqCst);
        let fresh = Latest {
            generation,
            open: false,
        };
        let mut latest = lock(&self.latest);
        if let Some(Latest { open: true, .. }) = latest.insert(event_id.to_string(), fresh) {
            permit.send(StampedEvent {
                event: StreamEvent::Ended,
                received_at_ms: unix_millis(),
            });
        }
        generation
    }

    /// Sends `stamped` through `permit` if `generation` is still the latest connection of
    /// `event_id`; decided and sent under the lock, so nothing of an older connection can
    /// follow the first event of a newer one.
    fn send_if_latest(
        &self,
        event_id: &str,
        generation: u64,
        permit: mpsc::Permit<'_, StampedEvent>,
        stamped: StampedEvent,
    ) -> bool {
        let mut latest = lock(&self.latest);
        let Some(entry) = latest
            .get_mut(event_id)
            .filter(|e| e.generation == generation)
        else {
            return false;
        };
        entry.open = !matches!(stamped.event, StreamEvent::Ended);
        permit.send(stamped);
        true
    }

    /// The connection is gone: forget it, unless a newer one has begun.
    fn end(&self, event_id: &str, generation: u64) {
        let mut latest = lock(&self.latest);
        if latest
            .get(event_id)
            .is_some_and(|e| e.generation == generation)
        {
            latest.remove(event_id);
        }
    }
}

/// A path token: 1–`max` of `[A-Za-z0-9_-]`.
fn is_token(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why `hello` is refused, if it is. The token is checked first: a peer without it
/// learns nothing else about this transcoder.
fn refusal(hello: &Hello, limits: &Limits, transcoder: &Transcoder) -> Option<String> {
    let Some(expected) = &limits.token else {
        return Some("this transcoder has no push_token configured: it takes no streams".into());
    };
    if !bool::from(hello.token.as_bytes().ct_eq(expected.as_bytes())) {
        return Some("wrong token (transcoder.push_token)".into());
    }
    if !is_token(&hello.event_id, MAX_EVENT_ID) {
        return Some(format!("event id is not 1-{MAX_EVENT_ID} of [A-Za-z0-9_-]"));
    }
    if hello.session_id.len() > MAX_SESSION_ID
        || !hello.session_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Some(format!(
            "session id is not up to {MAX_SESSION_ID} printable ASCII characters"
        ));
    }
    let settings = &hello.settings;
    // ARCHITECTURE.md: part target 100 ms - 1 s.
    if let Some(ms) = settings.part_target_ms
        && !(100..=1000).contains(&ms)
    {
        return Some(format!("part_target_ms {ms} is outside 100..=1000"));
    }
    if let Some(secs) = settings.dvr_window_secs
        && !(0..=MAX_DVR_WINDOW_SECS).contains(&secs)
    {
        return Some(format!(
            "dvr_window_secs {secs} is outside 0..={MAX_DVR_WINDOW_SECS}"
        ));
    }
    if let Some(ladder) = &settings.ladder
        && !is_token(ladder, MAX_NAME)
    {
        return Some(format!("ladder name is not 1-{MAX_NAME} of [A-Za-z0-9_-]"));
    }
    if let Some(last) = &hello.resume
        && (last.msn >= MAX_RESUME_MSN || last.init_version == u32::MAX)
    {
        return Some("resume point out of range".into());
    }
    // A session of a stream this transcoder already runs joins its pipeline at no cost.
    if !transcoder.is_running(&hello.event_id) && transcoder.load().cost >= limits.capacity {
        return Some("at capacity".into());
    }
    None
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
        capacity: config.capacity_rungs as usize,
        token: config.push_token.as_deref().map(Arc::from),
    };
    let generations = Arc::new(Generations::default());
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
        let (limits, generations) = (limits.clone(), generations.clone());
        let span = tracing::info_span!("transport", %peer);
        tokio::spawn(
            async move {
                metrics::gauge!("floodlight_transcoder_transport_connections").increment(1);
                let served = serve_connection(transcoder, socket, peer, limits, &generations);
                if let Err(e) = served.await {
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

async fn send(socket: &mut TcpStream, message: &Message) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    message.encode(&mut out).map_err(std::io::Error::other)?;
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
        // Progress and keepalives have no variable-length field: encoding cannot fail.
        if message.encode(&mut out).is_err() || writer.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn serve_connection(
    transcoder: Transcoder,
    mut socket: TcpStream,
    peer: SocketAddr,
    limits: Limits,
    generations: &Generations,
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
    if let Some(reason) = refusal(&hello, &limits, &transcoder) {
        metrics::counter!("floodlight_transcoder_transport_refused_total").increment(1);
        // Debug formatting: the event id may be anything the peer sent.
        warn!(event = ?hello.event_id, %reason, %peer, "stream refused");
        send(&mut socket, &Message::Refused { reason }).await?;
        return Ok(());
    }
    let Hello {
        event_id,
        settings,
        resume,
        session_id,
        token: _,
    } = hello;
    info!(event = %event_id, session = %session_id, ?resume, %peer, "stream assigned");
    let session = transcoder.begin_session(&event_id, &settings, resume);
    let Ok(permit) = session.events.reserve().await else {
        return Err(ConnectionError::Unexpected(
            "a stream whose pipeline stopped",
        ));
    };
    let generation = generations.begin(&event_id, permit);
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
    let mut superseded = false;
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
                    let Ok(permit) = events.reserve().await else {
                        failed = Some(ConnectionError::Unexpected(
                            "events after the pipeline stopped",
                        ));
                        break;
                    };
                    if !generations.send_if_latest(&event_id, generation, permit, stamped) {
                        superseded = true;
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
        if superseded {
            info!(event = %event_id, session = %session_id, "a newer connection has the stream: this one is closed");
            break Ok(());
        }
    };
    talker.abort();
    if !ended
        && !superseded
        && let Ok(permit) = events.reserve().await
    {
        // The connection is gone without the session's end: that is its end, unless a
        // newer connection has the stream by now.
        let end = StampedEvent {
            event: StreamEvent::Ended,
            received_at_ms: unix_millis(),
        };
        generations.send_if_latest(&event_id, generation, permit, end);
    }
    generations.end(&event_id, generation);
    info!(event = %event_id, session = %session_id, "stream connection closed");
    result
}

#[cfg(test)]
mod tests {
    use floodlight_media::StreamSettings;

    use super::*;

    const TOKEN: &str = "s3cret-internal-token";

    async fn serve() -> SocketAddr {
        serve_with(TranscoderConfig::default()).await.0
    }

    async fn serve_with(config: TranscoderConfig) -> (SocketAddr, Transcoder) {
        let config = TranscoderConfig {
            // Never reached: no stream gets far enough to push.
            origins: vec!["http://127.0.0.1:9".to_string()],
            push_token: Some(TOKEN.to_string()),
            ..config
        };
        let transcoder = Transcoder::new(config.clone()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = transcoder.clone();
        tokio::spawn(async move {
            serve_transport(serving, listener, &config, std::future::pending()).await
        });
        (addr, transcoder)
    }

    fn hello_for(event_id: &str, token: &str) -> Hello {
        Hello {
            event_id: event_id.into(),
            settings: StreamSettings::default(),
            resume: None,
            session_id: "s".into(),
            token: token.into(),
        }
    }

    /// Connects and says `hello`; the transcoder's answer.
    async fn greet(addr: SocketAddr, hello: Hello) -> (TcpStream, Option<Message>) {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let bytes = Message::Hello(hello).to_bytes().unwrap();
        socket.write_all(&bytes).await.unwrap();
        let answer = answer(&mut socket).await;
        (socket, answer)
    }

    fn refused(answer: Option<Message>) -> String {
        match answer {
            Some(Message::Refused { reason }) => reason,
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    async fn answer(socket: &mut TcpStream) -> Option<Message> {
        let mut decoder = Decoder::new(1 << 20);
        timeout(Duration::from_secs(5), read_message(socket, &mut decoder))
            .await
            .expect("answered in time")
            .unwrap()
    }

    fn hello() -> Vec<u8> {
        Message::Hello(hello_for("evt", TOKEN))
            .to_bytes()
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn a_hello_without_the_token_or_with_bad_fields_is_refused() {
        let addr = serve().await;
        for token in [
            "",
            "s3cret-internal-tokeN",
            "s3cret-internal-token-and-more",
        ] {
            let reason = refused(greet(addr, hello_for("evt", token)).await.1);
            assert!(reason.contains("wrong token"), "{reason}");
            assert!(!reason.contains(TOKEN));
        }
        for event_id in ["", "../evt", "evt é", &"e".repeat(65)] {
            let reason = refused(greet(addr, hello_for(event_id, TOKEN)).await.1);
            assert!(reason.contains("event id"), "{reason}");
        }
        let mut hello = hello_for("evt", TOKEN);
        hello.settings.part_target_ms = Some(50);
        assert!(refused(greet(addr, hello.clone()).await.1).contains("part_target_ms"));
        hello.settings.part_target_ms = Some(300);
        hello.settings.ladder = Some("sports/../x".into());
        assert!(refused(greet(addr, hello.clone()).await.1).contains("ladder"));
        hello.settings.ladder = Some("sports".into());
        hello.settings.dvr_window_secs = Some(86_401);
        assert!(refused(greet(addr, hello.clone()).await.1).contains("dvr_window_secs"));
        hello.settings.dvr_window_secs = Some(3600);
        hello.resume = Some(floodlight_media::push::LastPart {
            msn: u64::MAX,
            part: 0,
            ends_segment: true,
            init_version: 0,
        });
        assert!(refused(greet(addr, hello.clone()).await.1).contains("resume"));
        hello.resume = None;
        assert_eq!(greet(addr, hello).await.1, Some(Message::Accepted));
    }

    #[tokio::test]
    async fn a_new_stream_is_refused_at_capacity_but_a_running_one_joins() {
        let (addr, transcoder) = serve_with(TranscoderConfig {
            capacity_rungs: 1,
            ..TranscoderConfig::default()
        })
        .await;
        let (_first, answer) = greet(addr, hello_for("one", TOKEN)).await;
        assert_eq!(answer, Some(Message::Accepted));
        assert_eq!(
            transcoder.load().cost,
            1,
            "a stream costs at least one rung"
        );
        let reason = refused(greet(addr, hello_for("two", TOKEN)).await.1);
        assert_eq!(reason, "at capacity");
        // A publisher of the running stream coming back (or ingest moving it) joins its
        // pipeline: no new load.
        let (_again, answer) = greet(addr, hello_for("one", TOKEN)).await;
        assert_eq!(answer, Some(Message::Accepted));
    }

    fn stamped(event: StreamEvent) -> StampedEvent {
        StampedEvent {
            event,
            received_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn a_newer_connection_ends_the_session_an_older_one_left_open_first() {
        let generations = Generations::default();
        let (tx, mut rx) = mpsc::channel(8);
        let frame = || {
            stamped(StreamEvent::Frame(floodlight_media::Frame {
                track: floodlight_media::TrackKind::Video,
                dts: 0,
                pts: 0,
                keyframe: true,
                data: bytes::Bytes::new(),
            }))
        };
        let old = generations.begin("evt", tx.reserve().await.unwrap());
        assert!(generations.send_if_latest("evt", old, tx.reserve().await.unwrap(), frame()));
        // The old connection is still open here when ingest's next one arrives.
        let new = generations.begin("evt", tx.reserve().await.unwrap());
        assert!(!generations.send_if_latest("evt", old, tx.reserve().await.unwrap(), frame()));
        assert!(generations.send_if_latest("evt", new, tx.reserve().await.unwrap(), frame()));
        let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|s| matches!(s.event, StreamEvent::Ended))
            .collect();
        assert_eq!(kinds, [false, true, false], "frame, Ended, the new frame");
        // A session that ended cleanly is not ended twice.
        let end = stamped(StreamEvent::Ended);
        assert!(generations.send_if_latest("evt", new, tx.reserve().await.unwrap(), end));
        generations.begin("evt", tx.reserve().await.unwrap());
        let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|s| matches!(s.event, StreamEvent::Ended))
            .collect();
        assert_eq!(kinds, [true]);
    }

    #[tokio::test]
    async fn a_superseded_connection_does_not_end_the_newer_session() {
        // No grace period: an `Ended` ends the pipeline as soon as it is taken.
        let (addr, transcoder) = serve_with(TranscoderConfig {
            reconnect_grace_secs: 0,
            ..TranscoderConfig::default()
        })
        .await;
        let (old, answer) = greet(addr, hello_for("evt", TOKEN)).await;
        assert_eq!(answer, Some(Message::Accepted));
        let (mut new, answer) = greet(addr, hello_for("evt", TOKEN)).await;
        assert_eq!(answer, Some(Message::Accepted));
        // The old connection goes (ingest moved the stream): its loss is no `Ended`.
        drop(old);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(transcoder.is_running("evt"), "the newer session was ended");
        // The newer connection's own end does end the stream.
        let end = Message::Event(StampedEvent {
            event: StreamEvent::Ended,
            received_at_ms: 1,
        });
        new.write_all(&end.to_bytes().unwrap()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while transcoder.is_running("evt") {
            assert!(tokio::time::Instant::now() < deadline, "never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn an_older_connection_s_events_are_dropped_once_a_newer_one_began() {
        let addr = serve().await;
        let (mut old, _) = greet(addr, hello_for("evt", TOKEN)).await;
        let (_new, _) = greet(addr, hello_for("evt", TOKEN)).await;
        let end = Message::Event(StampedEvent {
            event: StreamEvent::Ended,
            received_at_ms: 1,
        });
        old.write_all(&end.to_bytes().unwrap()).await.unwrap();
        // The transcoder closes the superseded connection (after any keepalives).
        let mut decoder = Decoder::new(1 << 20);
        let closed = timeout(Duration::from_secs(5), async {
            loop {
                match read_message(&mut old, &mut decoder).await {
                    Ok(Some(Message::Keepalive | Message::Progress(_))) => continue,
                    other => return other.ok().flatten(),
                }
            }
        })
        .await
        .expect("closed in time");
        assert_eq!(closed, None);
    }

    #[tokio::test]
    async fn another_protocol_version_is_refused_with_the_reason() {
        let addr = serve().await;
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let mut bumped = hello();
        // After length (4), type (1) and magic (4): the version.
        let other = floodlight_media::transport::VERSION + 1;
        bumped[9..11].copy_from_slice(&other.to_be_bytes());
        socket.write_all(&bumped).await.unwrap();
        match answer(&mut socket).await {
            Some(Message::Refused { reason }) => {
                assert!(reason.contains(&format!("version {other}")), "{reason}")
            }
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
