//! Publisher sessions: who is publishing to which event, their counters, and the two
//! traits through which ingest talks to its neighbours.
//!
//! Every protocol ends the same way: once the [`IngestAuthority`] grants a publish, the
//! connection claims a place with `Ingest::start_publish` and feeds the `Publisher` it
//! gets `Tracks` and `Frame`s. The publisher decides where they go: an event has one
//! downstream ([`StreamHandler::begin_session`]) and at most two publishers, the live one
//! and, where the event allows backup ingest, a standby that takes over when the live one
//! goes quiet for `ingest.backup_takeover_secs` or disconnects. A takeover looks like a
//! reconnect downstream (`Ended`, then the new publisher's `Tracks`), which the packager
//! continues with a discontinuity.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use floodlight_media::{
    Frame, StampedEvent, StreamEvent, StreamSettings, TIMESCALE, TrackKind, TrackParams,
};
use tokio::sync::mpsc;
use tracing::info;

use crate::config::IngestConfig;
use floodlight_media::sync::lock;

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

/// One publisher connection of an event, as the control plane shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionStatus {
    pub event_id: String,
    pub protocol: Protocol,
    pub remote_addr: SocketAddr,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// `true` for the publisher whose media goes downstream; `false` for a standby
    /// (backup ingest) waiting to take over.
    pub live: bool,
    pub bytes: u64,
    pub frames: u64,
    pub dropped_frames: u64,
    /// Bit rate received over the last couple of seconds.
    pub bitrate_bps: u64,
    /// Media time between the last two video keyframes.
    pub keyframe_interval_ms: Option<u64>,
    /// Time since the publisher last sent a frame or track change.
    pub idle_ms: u64,
}

/// Why a second (or third) publisher cannot have an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotTaken {
    /// The event does not accept a backup publisher.
    #[error("this event already has a live publisher")]
    Live,
    /// Both the live and the backup slot are in use.
    #[error("this event already has a live and a backup publisher")]
    LiveAndBackup,
}

/// Why a publisher's media can go nowhere: its protocol closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PublishStopped {
    /// The transcoder side of the stream went away (it stopped reading the events).
    #[error("the transcoder for this stream is gone")]
    DownstreamGone,
    /// The control plane stopped the event's publishing ([`Ingest::stop_publishing`]).
    #[error("publishing stopped: {0}")]
    Stopped(&'static str),
}

/// Frames a standby publisher keeps for a takeover (its GOP since the last video
/// keyframe); past this it keeps nothing until its next keyframe.
const STANDBY_MAX_FRAMES: usize = 2000;
/// Bytes of frames a standby publisher keeps, as `STANDBY_MAX_FRAMES`.
const STANDBY_MAX_BYTES: usize = 64 << 20;
/// Length of the window the bit rate is measured over.
const BITRATE_WINDOW: Duration = Duration::from_secs(2);

/// The ingest service: configuration, neighbours and the table of live events.
#[derive(Clone)]
pub struct Ingest {
    pub(crate) config: Arc<IngestConfig>,
    pub(crate) authority: Arc<dyn IngestAuthority>,
    pub(crate) handler: Arc<dyn StreamHandler>,
    feeds: Arc<Mutex<HashMap<String, Arc<EventFeed>>>>,
    next_publisher: Arc<AtomicU64>,
}

/// One event's publishers and the single downstream they share.
struct EventFeed {
    event_id: String,
    settings: StreamSettings,
    /// The publishers connected now: the live one first (normally), at most two.
    members: Mutex<Vec<Arc<PublisherState>>>,
    /// Id of the publisher whose media goes downstream; 0 for none. Written only with
    /// `downstream` locked, so a publisher that finds itself live there stays live
    /// until it unlocks.
    live: AtomicU64,
    downstream: tokio::sync::Mutex<Downstream>,
}

struct Downstream {
    tx: Option<mpsc::Sender<StampedEvent>>,
    /// `Tracks` went down without an `Ended` after them.
    open: bool,
}

/// What a publisher's connection reports, shared with the session table.
struct PublisherState {
    id: u64,
    protocol: Protocol,
    remote_addr: SocketAddr,
    started_at_ms: i64,
    stats: Mutex<PublisherStats>,
    /// Set when the control plane stops the event's publishing: why.
    stopped: OnceLock<&'static str>,
}

struct PublisherStats {
    bytes: u64,
    frames: u64,
    dropped_frames: u64,
    last_event: Instant,
    last_keyframe_dts: Option<i64>,
    keyframe_interval: Option<i64>,
    window_start: Instant,
    window_bytes: u64,
    bitrate_bps: u64,
}

/// Per-publisher metric handles, resolved once rather than looked up on every frame.
struct PublisherMetrics {
    bytes: metrics::Counter,
    dropped_frames: metrics::Counter,
    video_frames: metrics::Counter,
    audio_frames: metrics::Counter,
    keyframe_interval: metrics::Histogram,
    bitrate: metrics::Gauge,
}

impl PublisherMetrics {
    fn new(protocol: Protocol) -> Self {
        let p = protocol.as_str();
        PublisherMetrics {
            bytes: metrics::counter!("floodlight_ingest_bytes_total", "protocol" => p),
            dropped_frames: metrics::counter!("floodlight_ingest_dropped_frames_total", "protocol" => p),
            video_frames: metrics::counter!("floodlight_ingest_frames_total", "protocol" => p, "track" => "video"),
            audio_frames: metrics::counter!("floodlight_ingest_frames_total", "protocol" => p, "track" => "audio"),
            keyframe_interval: metrics::histogram!("floodlight_ingest_keyframe_interval_seconds", "protocol" => p),
            bitrate: metrics::gauge!("floodlight_ingest_bitrate_bps", "protocol" => p),
        }
    }
}

/// What a standby publisher holds back for the moment it takes over.
#[derive(Default)]
struct StandbyBuffer {
    /// Frames since the last video keyframe, in arrival order, with their arrival (ms
    /// since the Unix epoch); empty until a keyframe arrives.
    gop: Vec<(Frame, i64)>,
    bytes: usize,
}

impl StandbyBuffer {
    fn clear(&mut self) {
        self.gop.clear();
        self.bytes = 0;
    }

    fn push(&mut self, frame: Frame, received_at_ms: i64) {
        if frame.track == TrackKind::Video && frame.keyframe {
            self.clear();
        } else if self.gop.is_empty() {
            return;
        }
        self.bytes += frame.data.len();
        self.gop.push((frame, received_at_ms));
        if self.gop.len() > STANDBY_MAX_FRAMES || self.bytes > STANDBY_MAX_BYTES {
            self.clear();
        }
    }
}

/// An authorized publisher connection, from [`Ingest::start_publish`] to
/// [`Publisher::end`]: its protocol feeds it `Tracks` and `Frame`s, and it decides where
/// they go (downstream when it is the event's live publisher, held back when standby),
/// counts them, and reports the event's publishing to the control plane.
pub(crate) struct Publisher {
    ingest: Ingest,
    feed: Arc<EventFeed>,
    state: Arc<PublisherState>,
    metrics: PublisherMetrics,
    /// The tracks this publisher announced last, live or not.
    tracks: Option<Vec<TrackParams>>,
    standby: StandbyBuffer,
    ended: bool,
}

impl Ingest {
    pub fn new(
        config: IngestConfig,
        authority: Arc<dyn IngestAuthority>,
        handler: Arc<dyn StreamHandler>,
    ) -> Self {
        Ingest {
            config: Arc::new(config),
            authority,
            handler,
            feeds: Arc::default(),
            next_publisher: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The publisher of an event whose media goes downstream, else the first connected.
    pub fn session(&self, event_id: &str) -> Option<SessionStatus> {
        let mut publishers = self.publishers(event_id);
        let live = publishers.iter().position(|p| p.live).unwrap_or(0);
        (!publishers.is_empty()).then(|| publishers.swap_remove(live))
    }

    /// Every publisher connected to an event (the live one and a standby).
    pub fn publishers(&self, event_id: &str) -> Vec<SessionStatus> {
        let feed = lock(&self.feeds).get(event_id).cloned();
        feed.map(|f| f.statuses()).unwrap_or_default()
    }

    /// Every publisher connected, of every event.
    pub fn sessions(&self) -> Vec<SessionStatus> {
        let feeds: Vec<Arc<EventFeed>> = lock(&self.feeds).values().cloned().collect();
        feeds.iter().flat_map(|f| f.statuses()).collect()
    }

    /// Stops the event's publishers (the event was cancelled, or ended at its scheduled
    /// end): each one's connection closes at its next frame, with `reason` in its log
    /// line. Returns how many were stopped.
    pub fn stop_publishing(&self, event_id: &str, reason: &'static str) -> usize {
        let Some(feed) = lock(&self.feeds).get(event_id).cloned() else {
            return 0;
        };
        let members = lock(&feed.members);
        for member in members.iter() {
            let _ = member.stopped.set(reason);
        }
        if !members.is_empty() {
            tracing::info!(
                event = event_id,
                reason,
                publishers = members.len(),
                "publishing stopped"
            );
        }
        members.len()
    }

    /// Whether [`Ingest::start_publish`] would find a place for `grant` now: lets a
    /// protocol refuse in its handshake before it accepts the connection (SRT). The
    /// place is only taken by `start_publish`, which may still refuse.
    pub(crate) fn check_room(&self, grant: &PublishGrant) -> Result<(), SlotTaken> {
        let feeds = lock(&self.feeds);
        let members = feeds
            .get(&grant.event_id)
            .map_or(0, |feed| lock(&feed.members).len());
        room(members, grant.backup_ingest)
    }

    /// Claims a place among the publishers of the event `grant` names. The first
    /// publisher of an event is live at once (its media goes downstream); with
    /// `grant.backup_ingest` a second one is accepted as standby and takes over when the
    /// live one stops sending for `backup_takeover_secs` or ends.
    pub(crate) fn start_publish(
        &self,
        grant: &PublishGrant,
        protocol: Protocol,
        remote_addr: SocketAddr,
    ) -> Result<Publisher, SlotTaken> {
        let id = self.next_publisher.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let state = Arc::new(PublisherState {
            id,
            protocol,
            remote_addr,
            started_at_ms: unix_millis(),
            stopped: OnceLock::new(),
            stats: Mutex::new(PublisherStats {
                bytes: 0,
                frames: 0,
                dropped_frames: 0,
                last_event: now,
                last_keyframe_dts: None,
                keyframe_interval: None,
                window_start: now,
                window_bytes: 0,
                bitrate_bps: 0,
            }),
        });
        let mut feeds = lock(&self.feeds);
        let feed = feeds
            .entry(grant.event_id.clone())
            .or_insert_with(|| {
                Arc::new(EventFeed {
                    event_id: grant.event_id.clone(),
                    settings: grant.settings.clone(),
                    members: Mutex::default(),
                    live: AtomicU64::new(0),
                    downstream: tokio::sync::Mutex::new(Downstream {
                        tx: None,
                        open: false,
                    }),
                })
            })
            .clone();
        let mut members = lock(&feed.members);
        room(members.len(), grant.backup_ingest)?;
        if members.is_empty() {
            // Nobody else can reach the feed while `feeds` is locked.
            feed.live.store(id, Ordering::SeqCst);
            self.authority
                .session_changed(&grant.event_id, SessionChange::Started { protocol });
        }
        members.push(state.clone());
        drop(members);
        drop(feeds);
        metrics::counter!("floodlight_ingest_publisher_connects_total", "protocol" => protocol.as_str())
            .increment(1);
        metrics::gauge!("floodlight_ingest_active_sessions", "protocol" => protocol.as_str())
            .increment(1);
        Ok(Publisher {
            ingest: self.clone(),
            feed,
            state,
            metrics: PublisherMetrics::new(protocol),
            tracks: None,
            standby: StandbyBuffer::default(),
            ended: false,
        })
    }
}

/// Whether an event with `members` publishers takes one more.
fn room(members: usize, backup_ingest: bool) -> Result<(), SlotTaken> {
    match members {
        0 => Ok(()),
        1 if backup_ingest => Ok(()),
        1 => Err(SlotTaken::Live),
        _ => Err(SlotTaken::LiveAndBackup),
    }
}

impl EventFeed {
    fn statuses(&self) -> Vec<SessionStatus> {
        let live = self.live.load(Ordering::SeqCst);
        lock(&self.members)
            .iter()
            .map(|p| p.status(&self.event_id, p.id == live))
            .collect()
    }

    /// Whether `candidate` may take the feed over now: nobody is live, or the live
    /// publisher has sent nothing for `after`.
    fn takeover_due(&self, candidate: u64, after: Duration) -> bool {
        let live = self.live.load(Ordering::SeqCst);
        if live == candidate {
            return false;
        }
        if live == 0 {
            return true;
        }
        let members = lock(&self.members);
        members
            .iter()
            .find(|p| p.id == live)
            .is_none_or(|p| lock(&p.stats).last_event.elapsed() >= after)
    }
}

impl PublisherState {
    fn status(&self, event_id: &str, live: bool) -> SessionStatus {
        let stats = lock(&self.stats);
        SessionStatus {
            event_id: event_id.to_string(),
            protocol: self.protocol,
            remote_addr: self.remote_addr,
            started_at_ms: self.started_at_ms,
            live,
            bytes: stats.bytes,
            frames: stats.frames,
            dropped_frames: stats.dropped_frames,
            bitrate_bps: stats.current_bitrate(),
            keyframe_interval_ms: stats
                .keyframe_interval
                .map(|ticks| (ticks.max(0) as u64) * 1000 / u64::from(TIMESCALE)),
            idle_ms: stats.last_event.elapsed().as_millis() as u64,
        }
    }
}

impl PublisherStats {
    /// The last full window's rate; once that is stale (the publisher went quiet), the
    /// rate of the window in progress, which falls towards 0.
    fn current_bitrate(&self) -> u64 {
        let elapsed = self.window_start.elapsed();
        if elapsed < BITRATE_WINDOW * 2 {
            self.bitrate_bps
        } else {
            (self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64
        }
    }
}

impl Publisher {
    pub(crate) fn event_id(&self) -> &str {
        &self.feed.event_id
    }

    /// Counts bytes received from the publisher (media payload as the protocol sees it):
    /// the bit rate and byte counters.
    pub(crate) fn record_bytes(&self, n: usize) {
        let n = n as u64;
        self.metrics.bytes.increment(n);
        let mut stats = lock(&self.state.stats);
        stats.bytes += n;
        stats.window_bytes += n;
        let elapsed = stats.window_start.elapsed();
        if elapsed >= BITRATE_WINDOW {
            let rate = (stats.window_bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.metrics
                .bitrate
                .increment(rate as f64 - stats.bitrate_bps as f64);
            stats.bitrate_bps = rate;
            stats.window_bytes = 0;
            stats.window_start = Instant::now();
        }
    }

    /// Counts frames the protocol dropped before they became events (broken, or video
    /// before the first keyframe).
    pub(crate) fn record_dropped(&self, n: u64) {
        if n > 0 {
            self.metrics.dropped_frames.increment(n);
            lock(&self.state.stats).dropped_frames += n;
        }
    }

    /// Announces the publisher's tracks: before its first frame, and again whenever
    /// their parameters change.
    pub(crate) async fn send_tracks(
        &mut self,
        tracks: Vec<TrackParams>,
    ) -> Result<(), PublishStopped> {
        lock(&self.state.stats).last_event = Instant::now();
        let video = |t: &Option<Vec<TrackParams>>| {
            t.as_ref()
                .and_then(|t| t.iter().find(|p| p.kind == TrackKind::Video).cloned())
        };
        if video(&self.tracks) != video(&Some(tracks.clone())) {
            // Frames held for a takeover cannot follow new video parameters.
            self.standby.clear();
        }
        self.tracks = Some(tracks.clone());
        self.deliver(StreamEvent::Tracks(tracks), unix_millis())
            .await
    }

    /// Hands one frame on, received now: downstream when this publisher is live, else
    /// into the standby buffer.
    pub(crate) async fn send_frame(&mut self, frame: Frame) -> Result<(), PublishStopped> {
        self.send_frame_at(frame, unix_millis()).await
    }

    /// As [`Publisher::send_frame`], for a frame whose first byte arrived at
    /// `received_at_ms` (ms since the Unix epoch) and that the protocol held back since
    /// (a demuxer that only knows a frame whole when the next begins): the packager dates
    /// segments from the arrival of the stream's first frame.
    pub(crate) async fn send_frame_at(
        &mut self,
        frame: Frame,
        received_at_ms: i64,
    ) -> Result<(), PublishStopped> {
        {
            let mut stats = lock(&self.state.stats);
            stats.last_event = Instant::now();
            stats.frames += 1;
            if frame.track == TrackKind::Video && frame.keyframe {
                if let Some(last) = stats.last_keyframe_dts.filter(|&l| frame.dts > l) {
                    let interval = frame.dts - last;
                    stats.keyframe_interval = Some(interval);
                    self.metrics
                        .keyframe_interval
                        .record(interval as f64 / f64::from(TIMESCALE));
                }
                stats.last_keyframe_dts = Some(frame.dts);
            }
        }
        match frame.track {
            TrackKind::Video => self.metrics.video_frames.increment(1),
            TrackKind::Audio => self.metrics.audio_frames.increment(1),
        }
        self.deliver(StreamEvent::Frame(frame), received_at_ms)
            .await
    }

    async fn deliver(
        &mut self,
        event: StreamEvent,
        received_at_ms: i64,
    ) -> Result<(), PublishStopped> {
        if let Some(reason) = self.state.stopped.get() {
            return Err(PublishStopped::Stopped(reason));
        }
        let me = self.state.id;
        if self.feed.live.load(Ordering::SeqCst) == me {
            let mut downstream = self.feed.downstream.lock().await;
            // `live` changes only under this lock: checked again, it holds until unlock.
            if self.feed.live.load(Ordering::SeqCst) == me {
                self.standby.clear();
                return self.send_down(&mut downstream, event, received_at_ms).await;
            }
        }
        if let StreamEvent::Frame(frame) = event {
            self.standby.push(frame, received_at_ms);
        }
        self.take_over_if_due().await
    }

    /// A standby that holds a decodable start (its tracks, and a keyframe when it has
    /// video) takes the stream over when the live publisher is gone or has gone quiet:
    /// downstream sees the old session end and this one begin, the reconnect path, which
    /// continues the stream with a discontinuity.
    async fn take_over_if_due(&mut self) -> Result<(), PublishStopped> {
        let Some(tracks) = self.tracks.clone() else {
            return Ok(());
        };
        let has_video = tracks.iter().any(|t| t.kind == TrackKind::Video);
        if has_video && self.standby.gop.is_empty() {
            return Ok(());
        }
        let after = Duration::from_secs(self.ingest.config.backup_takeover_secs);
        let me = self.state.id;
        if !self.feed.takeover_due(me, after) {
            return Ok(());
        }
        let mut downstream = self.feed.downstream.lock().await;
        if !self.feed.takeover_due(me, after) {
            return Ok(());
        }
        let previous = self.feed.live.swap(me, Ordering::SeqCst);
        if downstream.open {
            downstream.open = false;
            if let Some(tx) = downstream.tx.take() {
                // The old session's pipeline may be gone: a new one is begun below.
                let _ = tx.send(stamped(StreamEvent::Ended)).await;
            }
        }
        metrics::counter!("floodlight_ingest_takeovers_total", "protocol" => self.state.protocol.as_str())
            .increment(1);
        info!(
            event = %self.feed.event_id,
            previous_live = previous != 0,
            frames = self.standby.gop.len(),
            "backup publisher takes over"
        );
        let gop = std::mem::take(&mut self.standby.gop);
        self.standby.clear();
        let first_arrival = gop.first().map_or_else(unix_millis, |&(_, at)| at);
        self.send_down(&mut downstream, StreamEvent::Tracks(tracks), first_arrival)
            .await?;
        for (frame, received_at_ms) in gop {
            self.send_down(&mut downstream, StreamEvent::Frame(frame), received_at_ms)
                .await?;
        }
        Ok(())
    }

    async fn send_down(
        &self,
        downstream: &mut Downstream,
        event: StreamEvent,
        received_at_ms: i64,
    ) -> Result<(), PublishStopped> {
        let tx = downstream.tx.get_or_insert_with(|| {
            self.ingest
                .handler
                .begin_session(&self.feed.event_id, &self.feed.settings)
        });
        if matches!(event, StreamEvent::Tracks(_)) {
            downstream.open = true;
        }
        tx.send(StampedEvent {
            event,
            received_at_ms,
        })
        .await
        .map_err(|_| PublishStopped::DownstreamGone)
    }

    /// Ends this publisher's session: downstream gets `Ended` if it was live, its place
    /// is freed, and the control plane hears `Stopped` when it was the event's last.
    pub(crate) async fn end(mut self) {
        self.ended = true;
        leave(self.ingest.clone(), self.feed.clone(), self.state.clone()).await;
        self.settle_metrics();
    }

    fn settle_metrics(&self) {
        let bitrate = lock(&self.state.stats).bitrate_bps;
        self.metrics.bitrate.decrement(bitrate as f64);
        let protocol = self.state.protocol.as_str();
        metrics::counter!("floodlight_ingest_publisher_disconnects_total", "protocol" => protocol)
            .increment(1);
        metrics::gauge!("floodlight_ingest_active_sessions", "protocol" => protocol).decrement(1);
    }
}

impl Drop for Publisher {
    /// A connection task that ends without [`Publisher::end`] (an early return, a panic)
    /// still leaves: in a background task, since leaving may wait for downstream.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        self.settle_metrics();
        let (ingest, feed, state) = (self.ingest.clone(), self.feed.clone(), self.state.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(leave(ingest, feed, state));
            }
            Err(_) => remove_member(&ingest, &feed, &state),
        }
    }
}

async fn leave(ingest: Ingest, feed: Arc<EventFeed>, state: Arc<PublisherState>) {
    {
        let mut downstream = feed.downstream.lock().await;
        if feed.live.load(Ordering::SeqCst) == state.id {
            // `Ended` goes down before the place is freed, so a publisher that comes next
            // (reconnect, standby) always follows it.
            if downstream.open
                && let Some(tx) = &downstream.tx
            {
                let _ = tx.send(stamped(StreamEvent::Ended)).await;
            }
            downstream.open = false;
            downstream.tx = None;
            feed.live.store(0, Ordering::SeqCst);
        }
    }
    remove_member(&ingest, &feed, &state);
}

fn remove_member(ingest: &Ingest, feed: &Arc<EventFeed>, state: &PublisherState) {
    let mut feeds = lock(&ingest.feeds);
    let mut members = lock(&feed.members);
    members.retain(|p| p.id != state.id);
    if members.is_empty() {
        if feeds
            .get(&feed.event_id)
            .is_some_and(|f| Arc::ptr_eq(f, feed))
        {
            feeds.remove(&feed.event_id);
        }
        ingest.authority.session_changed(
            &feed.event_id,
            SessionChange::Stopped {
                protocol: state.protocol,
            },
        );
    }
}

fn stamped(event: StreamEvent) -> StampedEvent {
    StampedEvent {
        event,
        received_at_ms: unix_millis(),
    }
}

pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use floodlight_media::avc::annexb_nal_units;
    use floodlight_media::{AacConfig, AvcConfig};

    use super::*;

    #[derive(Default)]
    struct RecordingAuthority {
        changes: Mutex<Vec<(String, SessionChange)>>,
    }

    impl IngestAuthority for RecordingAuthority {
        fn authorize<'a>(
            &'a self,
            _request: PublishRequest<'a>,
        ) -> BoxFuture<'a, Result<PublishGrant, PublishRefusal>> {
            Box::pin(async { Err(PublishRefusal::UnknownKey) })
        }

        fn session_changed(&self, event_id: &str, change: SessionChange) {
            lock(&self.changes).push((event_id.to_string(), change));
        }

        fn pull_sources(&self) -> BoxFuture<'_, Result<Vec<PullSource>, PublishRefusal>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    /// The transcoder's side, one channel for every session begun.
    struct ChannelHandler {
        tx: mpsc::Sender<StampedEvent>,
        sessions: AtomicUsize,
    }

    impl StreamHandler for ChannelHandler {
        fn begin_session(&self, _: &str, _: &StreamSettings) -> mpsc::Sender<StampedEvent> {
            self.sessions.fetch_add(1, Ordering::SeqCst);
            self.tx.clone()
        }
    }

    struct Harness {
        ingest: Ingest,
        authority: Arc<RecordingAuthority>,
        handler: Arc<ChannelHandler>,
        rx: mpsc::Receiver<StampedEvent>,
    }

    impl Harness {
        fn new(takeover_secs: u64) -> Self {
            let (tx, rx) = mpsc::channel(1024);
            let authority = Arc::new(RecordingAuthority::default());
            let handler = Arc::new(ChannelHandler {
                tx,
                sessions: AtomicUsize::new(0),
            });
            let config = IngestConfig {
                backup_takeover_secs: takeover_secs,
                ..IngestConfig::default()
            };
            Harness {
                ingest: Ingest::new(config, authority.clone(), handler.clone()),
                authority,
                handler,
                rx,
            }
        }

        fn publish(&self, backup_ingest: bool) -> Result<Publisher, SlotTaken> {
            let grant = PublishGrant {
                event_id: "ev1".to_string(),
                backup_ingest,
                ..PublishGrant::default()
            };
            self.ingest
                .start_publish(&grant, Protocol::Srt, "127.0.0.1:5000".parse().unwrap())
        }

        /// Events downstream so far, in a form easy to compare.
        fn drain(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.rx.try_recv().ok())
                .map(|e| match e.event {
                    StreamEvent::Tracks(t) => format!("tracks{}", t.len()),
                    StreamEvent::Frame(f) if f.track == TrackKind::Audio => format!("a{}", f.dts),
                    StreamEvent::Frame(f) => {
                        format!("v{}{}", f.dts, if f.keyframe { "k" } else { "" })
                    }
                    StreamEvent::Ended => "ended".to_string(),
                })
                .collect()
        }

        fn changes(&self) -> Vec<SessionChange> {
            lock(&self.authority.changes)
                .iter()
                .map(|(_, c)| *c)
                .collect()
        }
    }

    fn tracks() -> Vec<TrackParams> {
        let stream = include_bytes!("../../media/testdata/ffmpeg_h264_320x240_annexb.h264");
        let find = |t: u8| annexb_nal_units(stream).find(|n| n[0] & 0x1f == t).unwrap();
        let video = AvcConfig::from_parameter_sets(find(7), find(8)).unwrap();
        let audio = AacConfig::from_asc(Bytes::from_static(&[0x11, 0x90])).unwrap();
        vec![TrackParams::video(video), TrackParams::audio(audio)]
    }

    fn video(dts: i64, keyframe: bool) -> Frame {
        Frame {
            track: TrackKind::Video,
            dts,
            pts: dts,
            keyframe,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        }
    }

    fn audio(dts: i64) -> Frame {
        Frame {
            track: TrackKind::Audio,
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::from_static(&[0x21]),
        }
    }

    #[tokio::test]
    async fn a_second_publisher_needs_backup_ingest_and_a_third_is_refused() {
        let h = Harness::new(3);
        let first = h.publish(false).unwrap();
        assert!(matches!(h.publish(false), Err(SlotTaken::Live)));
        let grant = |backup_ingest| PublishGrant {
            event_id: "ev1".into(),
            backup_ingest,
            ..PublishGrant::default()
        };
        assert_eq!(h.ingest.check_room(&grant(false)), Err(SlotTaken::Live));
        assert_eq!(h.ingest.check_room(&grant(true)), Ok(()));
        let second = h.publish(true).unwrap();
        assert!(matches!(h.publish(true), Err(SlotTaken::LiveAndBackup)));
        let statuses = h.ingest.publishers("ev1");
        assert_eq!(statuses.iter().filter(|s| s.live).count(), 1);
        assert_eq!(statuses.len(), 2);
        assert!(h.ingest.session("ev1").unwrap().live);
        first.end().await;
        second.end().await;
        assert!(h.ingest.session("ev1").is_none());
        assert!(h.publish(false).is_ok(), "the place is free again");
    }

    #[tokio::test]
    async fn the_event_starts_with_its_first_publisher_and_stops_with_its_last() {
        let mut h = Harness::new(3);
        let mut first = h.publish(true).unwrap();
        let second = h.publish(true).unwrap();
        first.send_tracks(tracks()).await.unwrap();
        first.send_frame(video(0, true)).await.unwrap();
        first.end().await;
        assert_eq!(
            h.changes(),
            [SessionChange::Started {
                protocol: Protocol::Srt
            }]
        );
        second.end().await;
        assert_eq!(
            h.changes(),
            [
                SessionChange::Started {
                    protocol: Protocol::Srt
                },
                SessionChange::Stopped {
                    protocol: Protocol::Srt
                }
            ]
        );
        assert_eq!(h.drain(), ["tracks2", "v0k", "ended"]);
    }

    #[tokio::test]
    async fn the_standby_takes_over_with_its_gop_when_the_live_one_goes_quiet() {
        let mut h = Harness::new(1);
        let mut primary = h.publish(true).unwrap();
        let mut backup = h.publish(true).unwrap();
        primary.send_tracks(tracks()).await.unwrap();
        primary.send_frame(video(0, true)).await.unwrap();
        primary.send_frame(audio(10)).await.unwrap();
        backup.send_tracks(tracks()).await.unwrap();
        // Before its keyframe nothing is kept; from it, its GOP is.
        backup.send_frame(video(90, false)).await.unwrap();
        backup.send_frame(video(100, true)).await.unwrap();
        backup.send_frame(audio(105)).await.unwrap();
        assert_eq!(
            h.drain(),
            ["tracks2", "v0k", "a10"],
            "the standby is held back"
        );

        tokio::time::sleep(Duration::from_millis(1100)).await;
        backup.send_frame(video(110, false)).await.unwrap();
        assert_eq!(
            h.drain(),
            ["ended", "tracks2", "v100k", "a105", "v110"],
            "a reconnect downstream, starting at the standby's keyframe"
        );
        assert_eq!(h.handler.sessions.load(Ordering::SeqCst), 2);
        let live = h.ingest.session("ev1").unwrap();
        assert!(live.live && live.frames == 4);

        // The old live publisher comes back: it is the standby now.
        primary.send_frame(video(3000, true)).await.unwrap();
        backup.send_frame(video(120, false)).await.unwrap();
        assert_eq!(h.drain(), ["v120"]);
        primary.end().await;
        backup.end().await;
        assert_eq!(h.drain(), ["ended"]);
    }

    #[tokio::test]
    async fn the_standby_takes_over_at_once_when_the_live_one_disconnects() {
        let mut h = Harness::new(3600);
        let mut primary = h.publish(true).unwrap();
        let mut backup = h.publish(true).unwrap();
        primary.send_tracks(tracks()).await.unwrap();
        primary.send_frame(video(0, true)).await.unwrap();
        backup.send_tracks(tracks()).await.unwrap();
        primary.end().await;
        assert_eq!(h.drain(), ["tracks2", "v0k", "ended"]);
        // No keyframe yet: nothing to start from.
        backup.send_frame(video(50, false)).await.unwrap();
        assert!(h.drain().is_empty());
        backup.send_frame(video(60, true)).await.unwrap();
        assert_eq!(h.drain(), ["tracks2", "v60k"]);
        assert_eq!(h.changes().len(), 1, "the event stayed live");
        drop(backup);
        // Dropped without end(): it still leaves, in the background.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.drain(), ["ended"]);
        assert!(h.ingest.session("ev1").is_none());
        assert_eq!(h.changes().len(), 2);
    }

    #[tokio::test]
    async fn counters_and_keyframe_interval() {
        let h = Harness::new(3);
        let mut p = h.publish(false).unwrap();
        p.send_tracks(tracks()).await.unwrap();
        p.record_bytes(1000);
        p.record_dropped(2);
        p.send_frame(video(0, true)).await.unwrap();
        p.send_frame(video(3000, false)).await.unwrap();
        p.send_frame(video(180_000, true)).await.unwrap();
        let status = h.ingest.session("ev1").unwrap();
        assert_eq!(
            (status.bytes, status.frames, status.dropped_frames),
            (1000, 3, 2)
        );
        assert_eq!(status.keyframe_interval_ms, Some(2000));
        assert_eq!(status.protocol, Protocol::Srt);
        p.end().await;
    }
}
