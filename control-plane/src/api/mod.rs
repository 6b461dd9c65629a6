//! The HTTP API: routes, authentication, request validation and the JSON shapes of the
//! answers. Every `/v1` route needs an API key ([`Caller`]); `/healthz`, `/readyz` and
//! `/metrics` do not.

mod api_keys;
mod audit;
pub(crate) mod auth;
mod events;
pub(crate) mod fields;
pub(crate) mod json;
pub(crate) mod openapi;
pub(crate) mod problem;
mod stream_keys;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::{ControlConfig, PublicUrls};
use crate::failures::FailureLimiter;
use crate::lifecycle::Lifecycle;
use crate::live::LiveStatusSource;
use crate::store::Store;
pub(crate) use auth::Caller;
pub(crate) use json::ApiJson;
pub(crate) use problem::ApiError;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

struct Shared {
    config: ControlConfig,
    store: Store,
    urls: PublicUrls,
    live: Arc<dyn LiveStatusSource>,
    lifecycle: Lifecycle,
    entitlement: crate::entitlement::Entitlement,
    render_metrics: RenderMetrics,
    /// Unknown API keys per source address (`control.api_key_failures_max`).
    api_key_failures: FailureLimiter,
}

/// Renders the process's Prometheus text exposition.
pub(crate) type RenderMetrics = Box<dyn Fn() -> String + Send + Sync>;

impl AppState {
    pub(crate) fn new(
        config: ControlConfig,
        store: Store,
        urls: PublicUrls,
        live: Arc<dyn LiveStatusSource>,
        entitlement: crate::entitlement::Entitlement,
        render_metrics: RenderMetrics,
    ) -> AppState {
        AppState(Arc::new(Shared {
            lifecycle: Lifecycle::new(store.clone(), config.clone(), live.clone()),
            api_key_failures: FailureLimiter::new(
                config.api_key_failures_max,
                Duration::from_secs(config.publish_failures_window_secs),
                config.publish_failures_tracked_max,
                "control.publish_failures_tracked_max",
            ),
            config,
            store,
            urls,
            live,
            entitlement,
            render_metrics,
        }))
    }

    /// The answer to an unknown or revoked API key from `peer`: 401, or, once the
    /// address is over `control.api_key_failures_max` in the window, 429 after
    /// `control.credential_failure_delay_ms` (a guesser gets one answer per delay).
    pub(crate) async fn api_key_failed(&self, peer: Option<IpAddr>) -> ApiError {
        let unknown = ApiError::Unauthenticated("unknown or revoked API key");
        let Some(peer) = peer else { return unknown };
        let failures = &self.0.api_key_failures;
        let now = Instant::now();
        let throttled = failures.over_limit(peer, now);
        failures.record_failure(peer, now);
        metrics::counter!("floodlight_control_api_key_failures_total").increment(1);
        if !throttled {
            return unknown;
        }
        tokio::time::sleep(Duration::from_millis(
            self.0.config.credential_failure_delay_ms,
        ))
        .await;
        ApiError::TooManyFailures {
            retry_after_secs: self.0.config.publish_failures_window_secs,
        }
    }

    /// Publish checks, state changes from publishing, the reconciler and the bus.
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.0.lifecycle
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }

    pub(crate) fn config(&self) -> &ControlConfig {
        &self.0.config
    }

    pub(crate) fn urls(&self) -> &PublicUrls {
        &self.0.urls
    }

    pub(crate) fn live(&self) -> &dyn LiveStatusSource {
        self.0.live.as_ref()
    }

    /// Signing keys, the session store and the entitlement config.
    pub(crate) fn entitlement(&self) -> &crate::entitlement::Entitlement {
        &self.0.entitlement
    }
}

/// All routes. Each area of the API contributes a `Router<AppState>`; they are merged
/// here and given the state once.
pub(crate) fn router(state: AppState) -> Router {
    let max_body_bytes = state.config().max_body_bytes;
    Router::new()
        .merge(events::routes())
        .merge(stream_keys::routes())
        .merge(api_keys::routes())
        .merge(audit::routes())
        .merge(crate::entitlement::routes())
        .merge(openapi::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(route_not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Query parameters, rejected as a 400 problem document when the query string does
/// not fit `T`.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs =
            serde_urlencoded::from_str::<Vec<(String, String)>>(query).map_err(|error| {
                ApiError::Invalid {
                    status: axum::http::StatusCode::BAD_REQUEST,
                    field: None,
                    detail: format!("the query string does not parse: {error}"),
                }
            })?;
        // A NUL in a parameter cannot reach the database (PostgreSQL refuses it).
        if let Some((name, _)) = pairs
            .iter()
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::bad_parameter(
                &name.replace('\0', "%00"),
                "query parameters must not contain the NUL character (%00)",
            ));
        }
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|error| ApiError::Invalid {
                status: axum::http::StatusCode::BAD_REQUEST,
                field: None,
                detail: format!("the query string does not parse: {error}"),
            })
    }
}

/// Path parameters, rejected as a 400 problem document (not axum's plain text) when a
/// segment does not decode.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::Invalid {
                status: axum::http::StatusCode::BAD_REQUEST,
                field: None,
                detail: rejection.body_text(),
            })
    }
}

/// The `limit` query parameter: the configured default when absent, else 1 to
/// `control.max_page_size`; 400 naming `limit` otherwise.
pub(crate) fn page_limit(config: &ControlConfig, limit: Option<&str>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(config.default_page_size),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=config.max_page_size).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    "limit",
                    format!(
                        "limit must be a whole number from 1 to {}",
                        config.max_page_size
                    ),
                )
            }),
    }
}

/// The `cursor` query parameter parsed as `T`; 400 naming `cursor` when it is not one
/// this API issued.
pub(crate) fn page_cursor<T: std::str::FromStr>(
    cursor: Option<&str>,
) -> Result<Option<T>, ApiError> {
    cursor
        .map(|text| {
            text.parse::<T>().map_err(|_| {
                ApiError::bad_parameter("cursor", "cursor is not a next_cursor this API issued")
            })
        })
        .transpose()
}

/// The process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The process can do its job: the database answers.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store().ping().await.map_err(ApiError::Unavailable)?;
    Ok("ready\n")
}

/// Prometheus text exposition format 0.0.4.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (state.0.render_metrics)(),
    )
        .into_response()
}

async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
