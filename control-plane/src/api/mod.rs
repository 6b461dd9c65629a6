//! The HTTP API: routes, request validation and the JSON shapes of the answers.

mod json;
mod problem;

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::{ControlConfig, PublicUrls};
use crate::live::{LiveStatus, LiveStatusSource};
use crate::store::{Event, EventCursor, EventId, EventState, Store};
use json::ApiJson;
use problem::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

struct Shared {
    config: ControlConfig,
    store: Store,
    urls: PublicUrls,
    live: Arc<dyn LiveStatusSource>,
    render_metrics: RenderMetrics,
}

/// Renders the process's Prometheus text exposition.
pub(crate) type RenderMetrics = Box<dyn Fn() -> String + Send + Sync>;

impl AppState {
    pub(crate) fn new(
        config: ControlConfig,
        store: Store,
        urls: PublicUrls,
        live: Arc<dyn LiveStatusSource>,
        render_metrics: RenderMetrics,
    ) -> AppState {
        AppState(Arc::new(Shared {
            config,
            store,
            urls,
            live,
            render_metrics,
        }))
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }
}

pub(crate) fn router(state: AppState) -> Router {
    let max_body_bytes = state.0.config.max_body_bytes;
    Router::new()
        .route("/v1/events", post(create_event).get(list_events))
        .route("/v1/events/{event_id}", get(get_event))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(route_not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// `POST /v1/events`. Unknown members are refused rather than ignored, so a misspelt
/// field is an error the caller sees, not a setting silently lost.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEventRequest {
    title: String,
}

const TITLE_MAX_CHARS: usize = 200;

/// The title as stored: trimmed, non-empty, at most 200 characters.
fn validate_title(raw: &str) -> Result<&str, ApiError> {
    let title = raw.trim();
    let invalid = |detail: String| ApiError::Invalid {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        field: Some("title".to_string()),
        detail,
    };
    if title.is_empty() {
        return Err(invalid("title must not be empty".to_string()));
    }
    let chars = title.chars().count();
    if chars > TITLE_MAX_CHARS {
        return Err(invalid(format!(
            "title is {chars} characters long; the limit is {TITLE_MAX_CHARS}"
        )));
    }
    Ok(title)
}

/// An event as the API shows it. The stream key appears only in the creation answer.
#[derive(Serialize)]
struct EventBody<'a> {
    event_id: &'a EventId,
    title: &'a str,
    state: EventState,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    created_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<&'a str>,
    ingest: IngestBody,
    playback: PlaybackBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<LiveStatus>,
}

#[derive(Serialize)]
struct IngestBody {
    rtmp: RtmpIngestBody,
}

/// OBS takes `url` as "Server" and the key separately; ffmpeg takes `full_url`.
#[derive(Serialize)]
struct RtmpIngestBody {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
}

#[derive(Serialize)]
struct PlaybackBody {
    /// The master playlist.
    hls: String,
}

impl<'a> EventBody<'a> {
    fn new(event: &'a Event, urls: &PublicUrls) -> EventBody<'a> {
        EventBody {
            event_id: &event.id,
            title: &event.title,
            state: event.state,
            created_at: event.created_at,
            stream_key: None,
            ingest: IngestBody {
                rtmp: RtmpIngestBody {
                    url: urls.rtmp_url().to_string(),
                    stream_key: None,
                    full_url: None,
                },
            },
            playback: PlaybackBody {
                hls: urls.hls_master_playlist(event.id.as_str()),
            },
            live: None,
        }
    }
}

async fn create_event(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateEventRequest>,
) -> Result<Response, ApiError> {
    let title = validate_title(&request.title)?;
    let created = state
        .0
        .store
        .create_event(title, OffsetDateTime::now_utc())
        .await?;
    let key = created.stream_key.expose_secret();
    let mut body = EventBody::new(&created.event, &state.0.urls);
    body.stream_key = Some(key);
    body.ingest.rtmp.stream_key = Some(key.to_string());
    body.ingest.rtmp.full_url = Some(state.0.urls.rtmp_publish_url(key));
    let location = format!("/v1/events/{}", created.event.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Query parameters as text, so that a bad value gets an error naming its parameter.
#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct EventListBody<'a> {
    items: Vec<EventBody<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /v1/events?limit=&cursor=`: newest first.
async fn list_events(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::Invalid {
        status: StatusCode::BAD_REQUEST,
        field: None,
        detail: rejection.body_text(),
    })?;
    let config = &state.0.config;
    let limit = match query.limit {
        None => config.default_page_size,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=config.max_page_size).contains(limit))
            .ok_or_else(|| ApiError::Invalid {
                status: StatusCode::BAD_REQUEST,
                field: Some("limit".to_string()),
                detail: format!(
                    "limit must be a whole number from 1 to {}",
                    config.max_page_size
                ),
            })?,
    };
    let cursor = query
        .cursor
        .map(|text| text.parse::<EventCursor>())
        .transpose()
        .map_err(|error| ApiError::Invalid {
            status: StatusCode::BAD_REQUEST,
            field: Some("cursor".to_string()),
            detail: format!("cursor is {error}"),
        })?;
    let page = state.0.store.list_events(limit, cursor.as_ref()).await?;
    let body = EventListBody {
        items: page
            .events
            .iter()
            .map(|event| EventBody::new(event, &state.0.urls))
            .collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    };
    Ok(Json(body).into_response())
}

/// `GET /v1/events/{event_id}`: the event with its live status.
async fn get_event(
    State(state): State<AppState>,
    event_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(event_id) = event_id.map_err(|rejection| ApiError::Invalid {
        status: StatusCode::BAD_REQUEST,
        field: None,
        detail: rejection.body_text(),
    })?;
    let event = state
        .0
        .store
        .event(&event_id)
        .await?
        .ok_or(ApiError::EventNotFound(event_id))?;
    let mut body = EventBody::new(&event, &state.0.urls);
    body.live = Some(state.0.live.live_status(&event.id));
    Ok(Json(body).into_response())
}

/// The process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The process can do its job: the database answers.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.0.store.ping().await.map_err(ApiError::Unavailable)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters() {
        assert_eq!(validate_title("  Cup final \n").unwrap(), "Cup final");
        assert!(validate_title(" \t ").is_err());
        // 200 two-byte characters are within the limit: it counts characters, not bytes.
        let long = "é".repeat(TITLE_MAX_CHARS);
        assert_eq!(validate_title(&long).unwrap(), long);
        assert!(validate_title(&format!("{long}e")).is_err());
    }
}
