//! All routes: each domain contributes a `Router<AppState>`; they are merged here with
//! the OpenAPI document and the routes that need no API key (`/healthz`, `/readyz`,
//! `/metrics`), and given the state once.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::openapi;
use super::problem::ApiError;
use super::state::AppState;
use crate::{api_keys, assets, audit, entitlement, events};

/// All routes, with the state.
pub(crate) fn router(state: AppState) -> Router {
    let max_body_bytes = state.config().max_body_bytes;
    Router::new()
        .merge(events::api::routes())
        .merge(events::stream_keys_api::routes())
        .merge(api_keys::api::routes())
        .merge(audit::api::routes())
        .merge(entitlement::api::routes())
        .merge(assets::api::routes())
        .merge(openapi::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(route_not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
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
        state.render_metrics(),
    )
        .into_response()
}

async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
