//! The publisher registry: who is publishing to which event, their counters and
//! metrics, and the `Publisher` each connection feeds.
//!
//! Every protocol ends the same way: once the [`IngestAuthority`] grants a publish, the
//! connection claims a place with `Ingest::start_publish` and feeds the `Publisher` it
//! gets `Tracks` and `Frame`s. An event has one downstream
//! ([`StreamHandler::begin_session`]) and at most two publishers, the live one and, where
//! the event allows backup ingest, a standby that takes over when the live one goes quiet
//! for `ingest.backup_takeover_secs` or disconnects. Who that is, is decided by the
//! event's [`Takeover`] (`takeover.rs`, sans-IO); the `Publisher` feeds it, with the
//! time, and carries out its actions. A takeover looks like a reconnect downstream
//! (`Ended`, then the new publisher's `Tracks`), which the packager continues with a
//! discontinuity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use floodlight_media::{
    Frame, StampedEvent, StreamEvent, StreamSettings, TIMESCALE, TrackKind, TrackParams,
};
use tokio::sync::{MutexGuard, mpsc};
use tokio::time::Instant;
use tracing::info;

use crate::config::IngestConfig;
use crate::neighbours::{IngestAuthority, Protocol, PublishGrant, SessionChange, StreamHandler};
use crate::takeover::{Action, Switch, Takeover};
use floodlight_media::clock::unix_millis;
use floodlight_media::sync::lock;

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
    /// Id of the publisher whose media goes downstream (0 for none), for the status: a
    /// copy of `Downstream::takeover`'s, written with `downstream` locked.
    live: AtomicU64,
    downstream: tokio::sync::Mutex<Downstream>,
}

/// The event's downstream and who decides what goes there. Every decision is made and
/// carried out with it locked, so downstream sees the decisions in their order.
struct Downstream {
    tx: Option<mpsc::Sender<StampedEvent>>,
    takeover: Takeover,
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

/// An authorized publisher connection, from [`Ingest::start_publish`] to
/// [`Publisher::end`]: its protocol feeds it `Tracks` and `Frame`s, and it decides where
/// they go (downstream when it is the event's live publisher, held back when standby),
/// counts them, and reports the event's publishing to the control plane.
pub(crate) struct Publisher {
    ingest: Ingest,
    feed: Arc<EventFeed>,
    state: Arc<PublisherState>,
    metrics: PublisherMetrics,
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
                    live: AtomicU64::new(id),
                    downstream: tokio::sync::Mutex::new(Downstream {
                        tx: None,
                        takeover: Takeover::new(
                            id,
                            Duration::from_secs(self.config.backup_takeover_secs),
                            now.into_std(),
                        ),
                    }),
                })
            })
            .clone();
        let mut members = lock(&feed.members);
        room(members.len(), grant.backup_ingest)?;
        if members.is_empty() {
            // A feed without members is one just made (the last member to leave removes
            // its feed, with `feeds` locked): this publisher is its live one.
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
        let now = Instant::now();
        lock(&self.state.stats).last_event = now;
        let mut downstream = self.downstream().await?;
        let action =
            downstream
                .takeover
                .tracks(self.state.id, tracks, unix_millis(), now.into_std());
        self.carry_out(&mut downstream, action).await
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
        let now = Instant::now();
        {
            let mut stats = lock(&self.state.stats);
            stats.last_event = now;
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
        let mut downstream = self.downstream().await?;
        let action =
            downstream
                .takeover
                .frame(self.state.id, frame, received_at_ms, now.into_std());
        self.carry_out(&mut downstream, action).await
    }

    /// The event's downstream, locked for one decision of its takeover and what follows
    /// from it; refused once the control plane stopped the event's publishing.
    async fn downstream(&self) -> Result<MutexGuard<'_, Downstream>, PublishStopped> {
        if let Some(reason) = self.state.stopped.get() {
            return Err(PublishStopped::Stopped(reason));
        }
        Ok(self.feed.downstream.lock().await)
    }

    /// Does what the takeover decided, with `downstream` still locked.
    async fn carry_out(
        &self,
        downstream: &mut Downstream,
        action: Action,
    ) -> Result<(), PublishStopped> {
        self.feed
            .live
            .store(downstream.takeover.live().unwrap_or(0), Ordering::SeqCst);
        match action {
            Action::Hold => Ok(()),
            Action::Forward {
                event,
                received_at_ms,
            } => self.send_down(downstream, event, received_at_ms).await,
            Action::TakeOver(switch) => self.take_over(downstream, switch).await,
        }
    }

    /// This standby takes the stream over: downstream sees the old session end and this
    /// one begin, the reconnect path, which continues the stream with a discontinuity.
    async fn take_over(
        &self,
        downstream: &mut Downstream,
        switch: Switch,
    ) -> Result<(), PublishStopped> {
        if switch.end_previous
            && let Some(tx) = downstream.tx.take()
        {
            // The old session's pipeline may be gone: a new one is begun below.
            let _ = tx.send(stamped(StreamEvent::Ended)).await;
        }
        metrics::counter!("floodlight_ingest_takeovers_total", "protocol" => self.state.protocol.as_str())
            .increment(1);
        info!(
            event = %self.feed.event_id,
            previous_live = switch.previous_live,
            frames = switch.gop.len(),
            "backup publisher takes over"
        );
        let first_arrival = switch.gop.first().map_or_else(unix_millis, |&(_, at)| at);
        self.send_down(
            downstream,
            StreamEvent::Tracks(switch.tracks),
            first_arrival,
        )
        .await?;
        for (frame, received_at_ms) in switch.gop {
            self.send_down(downstream, StreamEvent::Frame(frame), received_at_ms)
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
            Err(_) => {
                // Nothing can wait on downstream here: it stays as it is, and a standby
                // takes over at once (ending its session then).
                if let Ok(mut downstream) = feed.downstream.try_lock() {
                    downstream.takeover.vanish(state.id);
                }
                remove_member(&ingest, &feed, &state);
            }
        }
    }
}

async fn leave(ingest: Ingest, feed: Arc<EventFeed>, state: Arc<PublisherState>) {
    {
        let mut downstream = feed.downstream.lock().await;
        if let Some(close) = downstream.takeover.leave(state.id) {
            // `Ended` goes down before the place is freed, so a publisher that comes next
            // (reconnect, standby) always follows it.
            if close.send_ended
                && let Some(tx) = &downstream.tx
            {
                let _ = tx.send(stamped(StreamEvent::Ended)).await;
            }
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

#[cfg(test)]
mod tests;
