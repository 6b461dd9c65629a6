//! The tokio layer around the sans-IO windows: shared state, change notification for
//! blocking requests, the idle-stream sweeper and the server loop (routes: `router.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use axum::http::HeaderMap;
use floodlight_archive::ArchiveWriter;
use floodlight_media::push::RenditionDescriptor;
use object_store::ObjectStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{error, info, warn};

use crate::access::{PlaybackGate, ViewerSessions};
use crate::archive::StreamArchive;
use crate::auth::PushCredential;
use crate::config::OriginConfig;
use crate::error::ApiError;
use crate::metrics;
use crate::recorded::Recorded;
use crate::stream::{Declared, StreamCore, StreamLimits, StreamStatus};
use crate::window::{PushError, WindowLimits};
use floodlight_media::sync::lock;

/// How often the sweeper looks for idle streams and expired ended ones.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The origin service. Cheap to clone: every clone shares one set of live windows.
#[derive(Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

struct Inner {
    config: OriginConfig,
    /// `None`: the push API is open (no `push_token` configured).
    push_credential: Option<PushCredential>,
    /// The playback token check of token streams.
    gate: PlaybackGate,
    /// `origin.playback_keys` holds at least one key.
    has_playback_keys: bool,
    render_metrics: Box<dyn Fn() -> String + Send + Sync>,
    streams: Mutex<HashMap<String, Arc<LiveStream>>>,
    /// Where complete segments and init versions go, when an archive is configured.
    archive: Option<ArchiveWriter>,
    /// The archive's reader for start-over and VOD, when an archive is configured.
    recorded: Option<Recorded>,
    /// Flips to `true` when the server begins shutting down: blocked requests answer 503
    /// at once instead of holding the shutdown up.
    shutdown: watch::Sender<bool>,
}

/// One event's stream and what blocked requests wait on.
pub(crate) struct LiveStream {
    pub(crate) event_id: String,
    pub(crate) span: tracing::Span,
    /// `None` without an archive (or for an event id it cannot hold).
    pub(crate) archive: Option<StreamArchive>,
    state: Mutex<StreamState>,
    /// Bumped on every change to any rendition of the stream, and at its end.
    changed: watch::Sender<()>,
}

pub(crate) struct StreamState {
    pub(crate) core: StreamCore,
    /// Per rendition, bumped when a part lands or the stream ends: blocking requests for
    /// one rendition wake only for it.
    rendition_changed: HashMap<String, watch::Sender<()>>,
    /// When a push was last accepted: the idle end's clock.
    last_push_at: Instant,
    /// When the stream ended (`None` while live): the retention's clock.
    ended_at: Option<Instant>,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EndReason {
    /// `POST .../end`.
    Pushed,
    /// No push for `idle_end_secs`.
    Idle(Duration),
}

impl StreamState {
    /// Wakes whoever waits on `rendition` (all renditions when `None`).
    pub(crate) fn notify(&self, rendition: Option<&str>) {
        for (name, changed) in &self.rendition_changed {
            if rendition.is_none_or(|r| r == name) {
                changed.send_replace(());
            }
        }
    }

    pub(crate) fn track_rendition(&mut self, rendition: &str) {
        if !self.rendition_changed.contains_key(rendition) {
            self.rendition_changed
                .insert(rendition.to_string(), watch::channel(()).0);
        }
    }

    /// A push was accepted: the stream is not idle.
    pub(crate) fn touch(&mut self) {
        self.last_push_at = Instant::now();
    }

    /// Declares a rendition (see [`StreamCore::declare`]); a new session is live again.
    pub(crate) fn declare(
        &mut self,
        descriptor: RenditionDescriptor,
    ) -> Result<Declared, PushError> {
        let declared = self.core.declare(descriptor)?;
        if declared == Declared::NewSession {
            self.ended_at = None;
        }
        self.touch();
        Ok(declared)
    }

    /// Counts the segments that completed longer than the target duration allows since
    /// the count was `before`. Rolled up: the stream's first one is logged, with what to
    /// do about it; the rest only counted.
    pub(crate) fn report_over_target(&self, event_id: &str, before: u64) {
        let now = self.core.segments_over_target();
        if now <= before {
            return;
        }
        ::metrics::counter!(metrics::SEGMENTS_OVER_TARGET).increment(now - before);
        if before == 0
            && let Some((rendition, over)) = self.core.first_over_target()
        {
            warn!(
                event_id,
                rendition,
                msn = over.msn,
                duration_secs = over.duration,
                target_duration = self.core.target_duration(),
                "segment longer than EXT-X-TARGETDURATION allows (RFC 8216bis §4.4.3.1): players \
                 may stall; set the publisher's keyframe interval to 2 s. Further ones in this \
                 stream are only counted (floodlight_origin_segments_over_target_duration_total)"
            );
        }
    }
}

impl LiveStream {
    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        lock(&self.state)
    }

    pub(crate) fn notify_stream(&self) {
        self.changed.send_replace(());
    }

    /// Hands the segments completed since the last call to the archive (or lets them go
    /// without one). Called after every change that can complete a segment: a part, the
    /// end, a shed rendition.
    pub(crate) fn archive_completed(&self, state: &mut StreamState) {
        let completed = state.core.take_completed();
        if let Some(archive) = &self.archive {
            archive.segments(completed);
        }
    }

    /// Ends the stream for good, as `POST .../end` does: EXT-X-ENDLIST, every blocked
    /// request answered, removal after the retention. `false` if it had ended already.
    pub(crate) fn end(&self, state: &mut StreamState, reason: EndReason) -> bool {
        if state.core.is_ended() {
            return false;
        }
        let _span = self.span.enter();
        let before = state.core.segments_over_target();
        state.core.end();
        self.archive_completed(state);
        // Closing the segment in progress may close an over-long one.
        state.report_over_target(&self.event_id, before);
        state.ended_at = Some(Instant::now());
        state.notify(None);
        self.notify_stream();
        ::metrics::gauge!(metrics::ACTIVE_STREAMS).decrement(1.0);
        let segments_over_target = state.core.segments_over_target();
        match reason {
            EndReason::Pushed => info!(segments_over_target, "stream ended"),
            EndReason::Idle(idle) => {
                ::metrics::counter!(metrics::STREAMS_ENDED_IDLE).increment(1);
                warn!(
                    idle_secs = idle.as_secs(),
                    segments_over_target,
                    "no push for origin.idle_end_secs: stream ended as if by POST end (the transcoder stopped without ending it)"
                );
            }
        }
        true
    }
}

/// What the sweeper does with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sweep {
    Keep,
    /// Live, but no push for the idle limit: end it.
    End,
    /// Ended, and its retention has passed: drop it from memory.
    Remove,
}

/// The sweeper's decision for one stream, from its clocks alone.
pub(crate) fn sweep_verdict(
    last_push_at: Instant,
    ended_at: Option<Instant>,
    now: Instant,
    idle_end: Duration,
    retention: Duration,
) -> Sweep {
    match ended_at {
        Some(ended_at) if now.saturating_duration_since(ended_at) >= retention => Sweep::Remove,
        Some(_) => Sweep::Keep,
        None if now.saturating_duration_since(last_push_at) >= idle_end => Sweep::End,
        None => Sweep::Keep,
    }
}

/// What a blocked request is waiting on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WaitFor<'a> {
    /// A part of this rendition (playlist reload or part request).
    Rendition(&'a str),
    /// Any change to the stream (the master playlist).
    Stream,
}

impl Origin {
    /// `render_metrics` renders the process's Prometheus exposition for `/metrics` (the
    /// binary passes its `PrometheusHandle::render`). Idle streams are ended, and ended
    /// ones dropped, by [`run`]. Token streams are checked against `playback_keys` with no
    /// session store: revocation is not seen and no heartbeat is sent (see
    /// [`Origin::with_viewer_sessions`]).
    pub fn new(
        config: OriginConfig,
        render_metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        Origin::build(config, render_metrics, None)
    }

    /// An origin whose token streams also consult `sessions`: a revoked session is refused
    /// on its next request, and playlist requests refresh the session's heartbeat.
    pub fn with_viewer_sessions(
        config: OriginConfig,
        render_metrics: impl Fn() -> String + Send + Sync + 'static,
        sessions: Arc<dyn ViewerSessions>,
    ) -> Self {
        Origin::build(config, render_metrics, Some(sessions))
    }

    fn build(
        config: OriginConfig,
        render_metrics: impl Fn() -> String + Send + Sync + 'static,
        sessions: Option<Arc<dyn ViewerSessions>>,
    ) -> Self {
        metrics::describe();
        // `validate` refuses a bad key at load; one that reaches here anyway is left out
        // (it names no key a token could be signed with), loudly.
        let keys = config.playback_token_keys().unwrap_or_else(|error| {
            error!("{error}; token streams will refuse every request");
            Vec::new()
        });
        Origin {
            inner: Arc::new(Inner {
                push_credential: config.push_token.as_deref().map(PushCredential::new),
                gate: PlaybackGate::new(
                    &keys,
                    &config.token_query_param,
                    config.token_cache_entries,
                    sessions,
                ),
                has_playback_keys: !keys.is_empty(),
                config,
                render_metrics: Box::new(render_metrics),
                streams: Mutex::new(HashMap::new()),
                archive: None,
                recorded: None,
                shutdown: watch::channel(false).0,
            }),
        }
    }

    /// Archives every init version pushed and every segment completed through `archive`
    /// (`None`: no archive, the default). Call it on a new origin, before it is cloned
    /// or serves.
    pub fn with_archive(mut self, archive: Option<ArchiveWriter>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_archive is called on a new origin, before it is cloned")
            .archive = archive;
        self
    }

    /// Serves start-over (`?start=T`) and VOD (`/vod/{asset_id}/…`) from `store`, the
    /// archive's object store (`None`: neither, the default). Call it on a new origin,
    /// before it is cloned or serves.
    pub fn with_archive_store(mut self, store: Option<Arc<dyn ObjectStore>>) -> Self {
        let cache_bytes = self.inner.config.archive_cache_bytes;
        Arc::get_mut(&mut self.inner)
            .expect("with_archive_store is called on a new origin, before it is cloned")
            .recorded = store.map(|store| Recorded::new(store, cache_bytes));
        self
    }

    pub(crate) fn recorded(&self) -> Option<&Recorded> {
        self.inner.recorded.as_ref()
    }

    pub(crate) fn config(&self) -> &OriginConfig {
        &self.inner.config
    }

    pub(crate) fn gate(&self) -> &PlaybackGate {
        &self.inner.gate
    }

    /// Whether any playback key is configured, so token streams can be played at all.
    pub(crate) fn has_playback_keys(&self) -> bool {
        self.inner.has_playback_keys
    }

    /// The stream's live status, or `None` if this origin has no stream for the event.
    pub fn stream_status(&self, event_id: &str) -> Option<StreamStatus> {
        let stream = self.stream(event_id).ok()?;
        let mut status = stream.lock().core.status();
        status.archive = stream.archive.as_ref().map(StreamArchive::status);
        Some(status)
    }

    /// The process's Prometheus exposition, for `GET /metrics`.
    pub(crate) fn render_metrics(&self) -> String {
        (self.inner.render_metrics)()
    }

    /// Shutdown has begun: `/readyz` answers 503 so a load balancer drains this origin.
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Accepts a push request: it carries the push token, or none is configured.
    pub(crate) fn check_push_credential(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        self.inner
            .push_credential
            .as_ref()
            .map_or(Ok(()), |credential| credential.check(headers))
    }

    /// Blocked requests answer 503 from now on; called when the server shuts down.
    fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub(crate) fn stream(&self, event_id: &str) -> Result<Arc<LiveStream>, ApiError> {
        lock(&self.inner.streams)
            .get(event_id)
            .cloned()
            .ok_or_else(|| ApiError::unknown_event(event_id))
    }

    /// The event's stream, created on its first rendition descriptor unless the origin
    /// already holds `max_streams`.
    pub(crate) fn stream_or_create(&self, event_id: &str) -> Result<Arc<LiveStream>, ApiError> {
        let config = &self.inner.config;
        let mut streams = lock(&self.inner.streams);
        if let Some(stream) = streams.get(event_id) {
            return Ok(Arc::clone(stream));
        }
        if streams.len() >= config.max_streams {
            return Err(ApiError::Unavailable(format!(
                "this origin already holds its maximum of {} streams (origin.max_streams); \
                 retry later or push to another origin",
                config.max_streams
            )));
        }
        let limits = StreamLimits {
            window: WindowLimits {
                dvr_window_secs: config.dvr_window_secs,
                max_segments: config.max_window_segments,
                max_init_versions: config.max_init_versions_per_rendition,
            },
            max_renditions: config.max_renditions_per_stream,
            target_duration_factor: config.target_duration_factor,
            start_variant_max_bandwidth_bps: config.start_variant_max_bandwidth_bps,
        };
        let span = tracing::info_span!("stream", event_id);
        span.in_scope(|| info!("stream created"));
        ::metrics::gauge!(metrics::ACTIVE_STREAMS).increment(1.0);
        let stream = Arc::new(LiveStream {
            event_id: event_id.to_string(),
            archive: self
                .inner
                .archive
                .as_ref()
                .and_then(|writer| span.in_scope(|| StreamArchive::new(writer, event_id))),
            span,
            state: Mutex::new(StreamState {
                core: StreamCore::new(limits),
                rendition_changed: HashMap::new(),
                last_push_at: Instant::now(),
                ended_at: None,
            }),
            changed: watch::channel(()).0,
        });
        streams.insert(event_id.to_string(), Arc::clone(&stream));
        Ok(stream)
    }

    /// Ends the streams that had no push for `idle_end_secs`, and drops the ended ones
    /// whose `ended_stream_retention_secs` has passed.
    pub(crate) fn sweep(&self, now: Instant) {
        let idle_end = Duration::from_secs(self.inner.config.idle_end_secs);
        let retention = Duration::from_secs(self.inner.config.ended_stream_retention_secs);
        let verdict = |state: &StreamState| {
            sweep_verdict(state.last_push_at, state.ended_at, now, idle_end, retention)
        };
        let streams: Vec<Arc<LiveStream>> = lock(&self.inner.streams).values().cloned().collect();
        for stream in streams {
            let mut state = stream.lock();
            match verdict(&state) {
                Sweep::Keep => {}
                Sweep::End => {
                    stream.end(&mut state, EndReason::Idle(idle_end));
                }
                Sweep::Remove => {
                    // The map's lock before the stream's, as everywhere; a descriptor may
                    // start a new session in between, so decide again under both.
                    drop(state);
                    let mut streams = lock(&self.inner.streams);
                    let expired = streams.get(&stream.event_id).is_some_and(|current| {
                        Arc::ptr_eq(current, &stream) && verdict(&current.lock()) == Sweep::Remove
                    });
                    if expired {
                        streams.remove(&stream.event_id);
                        if let Some(archive) = &stream.archive {
                            archive.forget();
                        }
                        stream
                            .span
                            .in_scope(|| info!("ended stream dropped from memory"));
                    }
                }
            }
        }
    }

    /// Answers once `check` has an answer (it runs under the stream's lock each time the
    /// awaited rendition or stream changes; no polling), or 503 after `timeout`
    /// (RFC 8216bis §6.2.5.2: three target durations) or at shutdown.
    pub(crate) async fn wait_until<T>(
        &self,
        stream: &LiveStream,
        wait_for: WaitFor<'_>,
        timeout: Duration,
        kind: &'static str,
        mut check: impl FnMut(&mut StreamCore) -> Result<Option<T>, ApiError>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        // No deadline only if the timeout is beyond the clock's range.
        let deadline = started.checked_add(timeout);
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut waited = false;
        let outcome = loop {
            // Subscribe before checking, under the same lock the pusher takes: a part that
            // lands after the check bumps the version this receiver has not seen yet.
            let mut changed = {
                let mut state = stream.lock();
                let changed = match wait_for {
                    WaitFor::Rendition(name) => match state.rendition_changed.get(name) {
                        Some(changed) => changed.subscribe(),
                        None => break Err(ApiError::unknown_rendition(&stream.event_id, name)),
                    },
                    WaitFor::Stream => stream.changed.subscribe(),
                };
                match check(&mut state.core) {
                    Ok(Some(answer)) => break Ok(answer),
                    Ok(None) => changed,
                    Err(error) => break Err(error),
                }
            };
            if *shutdown.borrow_and_update() {
                break Err(ApiError::Unavailable(
                    "the origin is shutting down; retry on another".to_string(),
                ));
            }
            waited = true;
            let timed_out = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = changed.changed() => {}
                _ = shutdown.changed() => {}
                () = timed_out => {
                    break Err(ApiError::Unavailable(format!(
                        "not available after blocking {:.1} s (RFC 8216bis §6.2.5.2); the stream may have stalled",
                        timeout.as_secs_f64()
                    )));
                }
            }
        };
        if waited {
            let result = match &outcome {
                Ok(_) => "answered",
                Err(ApiError::Unavailable(_)) => "timed_out",
                Err(_) => "refused",
            };
            ::metrics::histogram!(metrics::BLOCKING_WAIT, "resource" => kind, "result" => result)
                .record(started.elapsed().as_secs_f64());
        }
        outcome
    }
}

/// Serves `origin` on `listener` until `shutdown` resolves, then stops accepting, answers
/// blocked requests 503 and lets in-flight responses finish. Meanwhile one sweeper task
/// ends idle streams and drops ended ones past their retention.
pub async fn run(
    listener: TcpListener,
    origin: Origin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = origin.router();
    let sweeper = tokio::spawn(sweep_streams(Arc::downgrade(&origin.inner)));
    let closing = origin.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.begin_shutdown();
        })
        .await;
    sweeper.abort();
    served
}

/// Sweeps every [`SWEEP_INTERVAL`] while the origin exists.
async fn sweep_streams(inner: Weak<Inner>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Origin { inner }.sweep(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweeper_ends_idle_streams_and_drops_expired_ones() {
        let t0 = Instant::now();
        let idle = Duration::from_secs(60);
        let retention = Duration::from_secs(300);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(
            sweep_verdict(t0, None, at(59), idle, retention),
            Sweep::Keep
        );
        assert_eq!(sweep_verdict(t0, None, at(60), idle, retention), Sweep::End);
        // A later push resets the idle clock.
        assert_eq!(
            sweep_verdict(at(30), None, at(60), idle, retention),
            Sweep::Keep
        );
        // Once ended, only the retention counts, whatever the last push.
        assert_eq!(
            sweep_verdict(t0, Some(at(60)), at(359), idle, retention),
            Sweep::Keep
        );
        assert_eq!(
            sweep_verdict(t0, Some(at(60)), at(360), idle, retention),
            Sweep::Remove
        );
        // A clock read before the event (another thread's) is not negative time.
        assert_eq!(
            sweep_verdict(at(10), None, t0, idle, retention),
            Sweep::Keep
        );
    }
}
