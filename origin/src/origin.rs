//! The tokio layer around the sans-IO windows: shared state, change notification for
//! blocking requests, the router and the server loop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use floodlight_media::push::PUSH_PREFIX;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower_http::cors::{Any, CorsLayer};
use tracing::info;

use crate::config::OriginConfig;
use crate::error::ApiError;
use crate::metrics;
use crate::stream::{StreamCore, StreamStatus};
use crate::window::WindowLimits;
use crate::{playback, push};

/// The origin service. Cheap to clone: every clone shares one set of live windows.
#[derive(Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

struct Inner {
    config: OriginConfig,
    render_metrics: Box<dyn Fn() -> String + Send + Sync>,
    streams: Mutex<HashMap<String, Arc<LiveStream>>>,
    /// Flips to `true` when the server begins shutting down: blocked requests answer 503
    /// at once instead of holding the shutdown up.
    shutdown: watch::Sender<bool>,
}

/// One event's stream and what blocked requests wait on.
pub(crate) struct LiveStream {
    pub(crate) event_id: String,
    pub(crate) span: tracing::Span,
    state: Mutex<StreamState>,
    /// Bumped on every change to any rendition of the stream, and at its end.
    changed: watch::Sender<()>,
}

pub(crate) struct StreamState {
    pub(crate) core: StreamCore,
    /// Per rendition, bumped when a part lands or the stream ends: blocking requests for
    /// one rendition wake only for it.
    rendition_changed: HashMap<String, watch::Sender<()>>,
    ended_at: Option<Instant>,
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

    pub(crate) fn mark_ended(&mut self) {
        self.ended_at = Some(Instant::now());
    }
}

impl LiveStream {
    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        lock(&self.state)
    }

    pub(crate) fn notify_stream(&self) {
        self.changed.send_replace(());
    }
}

/// A poisoned lock only means another request panicked mid-update; the window is still
/// the best state there is, so serve on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// binary passes its `PrometheusHandle::render`).
    pub fn new(
        config: OriginConfig,
        render_metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        metrics::describe();
        Origin {
            inner: Arc::new(Inner {
                config,
                render_metrics: Box::new(render_metrics),
                streams: Mutex::new(HashMap::new()),
                shutdown: watch::channel(false).0,
            }),
        }
    }

    pub(crate) fn config(&self) -> &OriginConfig {
        &self.inner.config
    }

    /// The stream's live status, or `None` if this origin has no stream for the event.
    pub fn stream_status(&self, event_id: &str) -> Option<StreamStatus> {
        let stream = self.stream(event_id).ok()?;
        Some(stream.lock().core.status())
    }

    /// Every route: playback under `/live`, the push API under [`PUSH_PREFIX`],
    /// `/metrics`, `/healthz`, `/readyz`.
    pub fn router(&self) -> Router {
        // Players in browsers fetch from another origin than the page's (hls.js). The
        // answer is `*` whatever the request's Origin, so no `Vary`: a CDN keeps one copy
        // per URL, not one per embedding site.
        let cors = CorsLayer::new()
            .allow_origin(Any)
            .allow_methods([Method::GET, Method::HEAD])
            .vary(Vec::<HeaderName>::new());
        let playback = Router::new()
            .route("/live/{event_id}/master.m3u8", get(playback::master))
            .route(
                "/live/{event_id}/{rendition}/{file}",
                get(playback::rendition_file),
            )
            .layer(cors);
        let push = Router::new()
            .route(&format!("{PUSH_PREFIX}/{{event_id}}/end"), post(push::end))
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}"),
                put(push::rendition),
            )
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}/init/{{version}}"),
                put(push::init),
            )
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}/part/{{msn}}/{{part}}"),
                put(push::part),
            )
            .route(
                &format!("{PUSH_PREFIX}/{{event_id}}/{{rendition}}/last"),
                get(push::last),
            )
            .layer(DefaultBodyLimit::max(self.inner.config.max_push_body_bytes));
        Router::new()
            .merge(playback)
            .merge(push)
            .route("/metrics", get(render_metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .fallback(|| async {
                ApiError::NotFound("no such resource on this origin".to_string())
            })
            .layer(axum::middleware::map_response(count_response))
            .with_state(self.clone())
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

    /// The event's stream, created on its first rendition descriptor.
    pub(crate) fn stream_or_create(&self, event_id: &str) -> Arc<LiveStream> {
        let mut streams = lock(&self.inner.streams);
        let stream = streams.entry(event_id.to_string()).or_insert_with(|| {
            let limits = WindowLimits {
                dvr_window_secs: self.inner.config.dvr_window_secs,
                max_segments: self.inner.config.max_window_segments,
            };
            let span = tracing::info_span!("stream", event_id);
            span.in_scope(|| info!("stream created"));
            ::metrics::gauge!(metrics::ACTIVE_STREAMS).increment(1.0);
            Arc::new(LiveStream {
                event_id: event_id.to_string(),
                span,
                state: Mutex::new(StreamState {
                    core: StreamCore::new(limits),
                    rendition_changed: HashMap::new(),
                    ended_at: None,
                }),
                changed: watch::channel(()).0,
            })
        });
        Arc::clone(stream)
    }

    /// Drops an ended stream from memory once its retention has passed, unless it went
    /// live again meanwhile.
    pub(crate) fn schedule_removal(&self, event_id: &str) {
        let retention = Duration::from_secs(self.inner.config.ended_stream_retention_secs);
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        let event_id = event_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(retention).await;
            let Some(inner) = inner.upgrade() else { return };
            let mut streams = lock(&inner.streams);
            let expired = streams.get(&event_id).is_some_and(|stream| {
                let state = stream.lock();
                state.core.is_ended() && state.ended_at.is_some_and(|at| at.elapsed() >= retention)
            });
            if expired && let Some(stream) = streams.remove(&event_id) {
                stream
                    .span
                    .in_scope(|| info!("ended stream dropped from memory"));
            }
        });
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
        mut check: impl FnMut(&StreamCore) -> Result<Option<T>, ApiError>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut waited = false;
        let outcome = loop {
            // Subscribe before checking, under the same lock the pusher takes: a part that
            // lands after the check bumps the version this receiver has not seen yet.
            let mut changed = {
                let state = stream.lock();
                let changed = match wait_for {
                    WaitFor::Rendition(name) => match state.rendition_changed.get(name) {
                        Some(changed) => changed.subscribe(),
                        None => break Err(ApiError::unknown_rendition(&stream.event_id, name)),
                    },
                    WaitFor::Stream => stream.changed.subscribe(),
                };
                match check(&state.core) {
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
            tokio::select! {
                _ = changed.changed() => {}
                _ = shutdown.changed() => {}
                () = tokio::time::sleep_until(deadline) => {
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
/// blocked requests 503 and lets in-flight responses finish.
pub async fn run(
    listener: TcpListener,
    origin: Origin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = origin.router();
    let closing = origin.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closing.begin_shutdown();
        })
        .await
}

/// Milliseconds since the Unix epoch, the clock `PartMeta` times are on.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn render_metrics(State(origin): State<Origin>) -> Response {
    let text = (origin.inner.render_metrics)();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

/// Ready while serving; not ready once shutting down, so a load balancer drains us.
async fn ready(State(origin): State<Origin>) -> Response {
    if *origin.inner.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn count_response(response: Response) -> Response {
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    ::metrics::counter!(metrics::HTTP_RESPONSES, "class" => class).increment(1);
    response
}
