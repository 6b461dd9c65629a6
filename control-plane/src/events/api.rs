//! `/v1/events`: scheduling events (create, read, list with filters, change), their
//! lifecycle (cancel, archive, the transition record).
//!
//! Who may do what: admin and ops act on every event; a broadcaster creates events that
//! belong to its principal and sees and changes only those (others' are 404 to it, so it
//! learns nothing about them); the viewer service reads the schedule.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{OpenApi, ToSchema};

use super::bus::LifecycleKind;
use super::live::LiveStatus;
use super::model::{
    Event, EventState, GeoRules, IngestProtocol, NewEvent, RtspTransport, Transition,
    TransitionError, Visibility,
};
use super::request::{EventRequest, apply, without_credentials};
use super::store::{EventCursor, EventFilter};
use crate::config::PublicUrls;
use crate::http::{
    ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Problem, Role, fields, page_cursor,
    page_limit,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(create_event).get(list_events))
        .route("/v1/events/{event_id}", get(get_event).patch(update_event))
        .route("/v1/events/{event_id}/cancel", post(cancel_event))
        .route("/v1/events/{event_id}/archive", post(archive_event))
        .route("/v1/events/{event_id}/transitions", get(list_transitions))
}

/// The events' part of the OpenAPI document (their stream keys' is `StreamKeysApi`).
#[derive(OpenApi)]
#[openapi(
    paths(
        create_event,
        list_events,
        get_event,
        update_event,
        cancel_event,
        archive_event,
        list_transitions,
    ),
    tags((name = "events", description = "Scheduling, lifecycle and stream keys"))
)]
pub(crate) struct EventsApi;

/// Roles that manage events (broadcasters only their own).
pub(super) const MANAGERS: &[Role] = &[Role::Admin, Role::Ops, Role::Broadcaster];
/// Roles that may read events (the viewer service shows the schedule).
const READERS: &[Role] = &[
    Role::Admin,
    Role::Ops,
    Role::Broadcaster,
    Role::ViewerService,
];

/// An event as the API shows it. The stream key appears only in the creation answer;
/// the SRT passphrase and RTSP credentials never.
#[derive(Serialize, ToSchema)]
struct EventBody {
    event_id: String,
    title: String,
    description: Option<String>,
    state: EventState,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    starts_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    ends_at: Option<OffsetDateTime>,
    visibility: Visibility,
    category: Option<String>,
    tags: Vec<String>,
    ladder: Option<String>,
    part_target_ms: Option<u32>,
    dvr_window_secs: Option<u32>,
    ingest: IngestBody,
    geo: GeoBody,
    owner: Option<String>,
    /// A whole-event VOD asset is made of it when it ends after going live.
    record: bool,
    /// Creation answer only: the primary stream key, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key_id: Option<String>,
    playback: PlaybackBody,
    /// `GET /v1/events/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<LiveStatus>,
}

#[derive(Serialize, ToSchema)]
struct IngestBody {
    /// Allowed protocols (all when unrestricted).
    protocols: Vec<IngestProtocol>,
    backup: bool,
    srt_passphrase_set: bool,
    srt_latency_ms: Option<u32>,
    rtsp_source: Option<RtspSourceBody>,
    rtmp: RtmpIngestBody,
}

#[derive(Serialize, ToSchema)]
struct RtspSourceBody {
    /// Without credentials.
    url: String,
    transport: RtspTransport,
}

/// OBS takes `url` as "Server" and the key separately; ffmpeg takes `full_url`.
#[derive(Serialize, ToSchema)]
struct RtmpIngestBody {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct GeoBody {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl From<&GeoRules> for GeoBody {
    fn from(geo: &GeoRules) -> GeoBody {
        GeoBody {
            allow: geo.allow.clone(),
            deny: geo.deny.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct PlaybackBody {
    /// The master playlist.
    hls: String,
}

impl EventBody {
    fn new(event: &Event, urls: &PublicUrls) -> EventBody {
        let s = &event.settings;
        let ingest = &s.ingest;
        EventBody {
            event_id: event.id.as_str().to_string(),
            title: s.title.clone(),
            description: s.description.clone(),
            state: event.state,
            created_at: event.created_at,
            updated_at: event.updated_at,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            visibility: s.visibility,
            category: s.category.clone(),
            tags: s.tags.clone(),
            ladder: s.ladder.clone(),
            part_target_ms: s.part_target_ms,
            dvr_window_secs: s.dvr_window_secs,
            ingest: IngestBody {
                protocols: ingest
                    .protocols
                    .clone()
                    .unwrap_or_else(|| IngestProtocol::ALL.to_vec()),
                backup: ingest.backup,
                srt_passphrase_set: ingest.srt_passphrase.is_some(),
                srt_latency_ms: ingest.srt_latency_ms,
                rtsp_source: ingest.rtsp_source.as_ref().map(|source| RtspSourceBody {
                    url: without_credentials(&source.url),
                    transport: source.transport,
                }),
                rtmp: RtmpIngestBody {
                    url: urls.rtmp_url().to_string(),
                    stream_key: None,
                    full_url: None,
                },
            },
            geo: GeoBody::from(&s.geo),
            owner: s.owner.clone(),
            record: s.record,
            stream_key: None,
            stream_key_id: None,
            playback: PlaybackBody {
                hls: urls.hls_master_playlist(event.id.as_str()),
            },
            live: None,
        }
    }
}

#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body = EventRequest,
    responses(
        (status = 201, description = "The event with its primary stream key, shown this once", body = EventBody),
        (status = 400, description = "Malformed JSON", body = Problem),
        (status = 401, description = "No or unknown API key", body = Problem),
        (status = 403, description = "Role not allowed", body = Problem),
        (status = 415, description = "Not application/json", body = Problem),
        (status = 422, description = "A field is invalid; `field` names it", body = Problem),
    ))]
/// Schedules an event (admin, ops, broadcaster). A broadcaster's event belongs to its
/// principal.
async fn create_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<EventRequest>,
) -> Result<Response, ApiError> {
    caller.require(MANAGERS)?;
    let now = OffsetDateTime::now_utc();
    let mut base = NewEvent::titled("");
    if !caller.sees_all() {
        base.owner = Some(caller.principal.clone());
    }
    let settings = apply(request, base, &caller, true, now)?;
    let created = state
        .store()
        .create_event(&settings, &caller.actor(), now)
        .await?;
    state
        .lifecycle()
        .announce(LifecycleKind::EventScheduled, &created.event.id, "api");
    let key = created.stream_key.expose_secret();
    let urls = state.urls();
    let mut body = EventBody::new(&created.event, urls);
    body.stream_key = Some(key.to_string());
    body.stream_key_id = Some(created.key.id.clone());
    body.ingest.rtmp.stream_key = Some(key.to_string());
    body.ingest.rtmp.full_url = Some(urls.rtmp_publish_url(key));
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
    state: Option<String>,
    starts_from: Option<String>,
    starts_to: Option<String>,
    tags: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct EventListBody {
    items: Vec<EventBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

fn comma_list(text: &str) -> impl Iterator<Item = &str> {
    // As sent, like the documented pattern: no spaces, no empty items.
    text.split(',')
}

fn list_filter(query: &ListQuery, caller: &Caller) -> Result<EventFilter, ApiError> {
    let mut filter = EventFilter {
        owner: (caller.role == Role::Broadcaster).then(|| caller.principal.clone()),
        ..EventFilter::default()
    };
    if let Some(states) = &query.state {
        for name in comma_list(states) {
            let state = name.parse::<EventState>().map_err(|()| {
                ApiError::bad_parameter(
                    "state",
                    format!(
                        "state {name:?} is not one of scheduled, live, ended, archived, cancelled"
                    ),
                )
            })?;
            filter.states.push(state);
        }
    }
    let time = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                crate::rfc3339::parse(t).ok_or_else(|| {
                    ApiError::bad_parameter(
                        name,
                        format!(
                            "{name} must be an RFC 3339 date-time such as 2026-12-01T18:00:00Z"
                        ),
                    )
                })
            })
            .transpose()
    };
    filter.starts_from = time("starts_from", &query.starts_from)?;
    filter.starts_to = time("starts_to", &query.starts_to)?;
    if let Some(tags) = &query.tags {
        for tag in comma_list(tags) {
            filter.tags.push(
                fields::label("tags", tag)
                    .map_err(|error| ApiError::bad_parameter("tags", error.to_string()))?,
            );
        }
    }
    Ok(filter)
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("state" = Option<String>, Query, description = "Comma-separated states, any of them",
            pattern = r"^(scheduled|live|ended|archived|cancelled)(,(scheduled|live|ended|archived|cancelled))*$"),
        ("starts_from" = Option<String>, Query, format = DateTime, description = "starts_at at or after (RFC 3339)"),
        ("starts_to" = Option<String>, Query, format = DateTime, description = "starts_at before (RFC 3339)"),
        ("tags" = Option<String>, Query, description = "Comma-separated tags, all of them",
            pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(,[A-Za-z0-9][A-Za-z0-9_-]{0,63})*$"),
    ),
    responses(
        (status = 200, body = EventListBody),
        (status = 400, description = "A bad parameter; `field` names it", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
    ))]
/// Lists events, newest first, filtered by state, start time and tags; broadcasters see
/// only their own.
async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<EventListBody>, ApiError> {
    caller.require(READERS)?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<EventCursor>(query.cursor.as_deref())?;
    let filter = list_filter(&query, &caller)?;
    let page = state
        .store()
        .list_events(&filter, limit, cursor.as_ref())
        .await?;
    Ok(Json(EventListBody {
        items: page
            .events
            .iter()
            .map(|event| EventBody::new(event, state.urls()))
            .collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// The event `event_id` if the caller may see it; 404 otherwise (a broadcaster learns
/// nothing about other broadcasters' events).
pub(super) async fn visible_event(
    state: &AppState,
    caller: &Caller,
    event_id: &str,
) -> Result<Event, ApiError> {
    let not_found = || ApiError::not_found(format!("no event with id {event_id:?}"));
    let event = state.store().event(event_id).await?.ok_or_else(not_found)?;
    if caller.role == Role::Broadcaster
        && event.settings.owner.as_deref() != Some(caller.principal.as_str())
    {
        return Err(not_found());
    }
    Ok(event)
}

#[utoipa::path(get, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "The event with its live status", body = EventBody),
        (status = 404, body = Problem),
    ))]
/// One event with its live status.
async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<EventBody>, ApiError> {
    caller.require(READERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let mut body = EventBody::new(&event, state.urls());
    body.live = Some(state.live().live_status(&event.id));
    Ok(Json(body))
}

#[utoipa::path(patch, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path)),
    request_body = EventRequest,
    responses(
        (status = 200, description = "The changed event", body = EventBody),
        (status = 404, body = Problem),
        (status = 409, description = "The event is over, or changed meanwhile", body = Problem),
        (status = 422, description = "A field is invalid; `field` names it", body = Problem),
    ))]
/// Changes a scheduled or live event's settings (any subset; `null` clears).
async fn update_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
    ApiJson(request): ApiJson<EventRequest>,
) -> Result<Json<EventBody>, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    if !event.state.is_open() {
        return Err(ApiError::conflict(format!(
            "the event is {}; only scheduled or live events change",
            event.state
        )));
    }
    let now = OffsetDateTime::now_utc();
    let settings = apply(request, event.settings.clone(), &caller, false, now)?;
    let updated = state
        .store()
        .update_event(&event.id, event.updated_at, &settings, &caller.actor(), now)
        .await?
        .ok_or_else(|| {
            ApiError::conflict("the event changed meanwhile; read it again and retry")
        })?;
    Ok(Json(EventBody::new(&updated, state.urls())))
}

/// Moves an event to `to` through the API, announcing it on the bus.
async fn transition(
    state: &AppState,
    caller: &Caller,
    event_id: &str,
    to: EventState,
    kind: LifecycleKind,
    action: &str,
) -> Result<Json<EventBody>, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(state, caller, event_id).await?;
    let moved = state
        .store()
        .transition(
            &event.id,
            to,
            "api",
            &caller.actor(),
            Some(action),
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|error| match error {
            TransitionError::NotFound => {
                ApiError::not_found(format!("no event with id {event_id:?}"))
            }
            TransitionError::NotAllowed { .. } => ApiError::conflict(error.to_string()),
            TransitionError::Store(error) => error.into(),
        })?;
    state.lifecycle().announce(kind, &moved.id, "api");
    Ok(Json(EventBody::new(&moved, state.urls())))
}

#[utoipa::path(post, path = "/v1/events/{event_id}/cancel", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "The event, now cancelled", body = EventBody),
        (status = 404, body = Problem),
        (status = 409, description = "Not scheduled or live", body = Problem),
    ))]
/// Calls a scheduled or live event off: publishing is refused from now on.
async fn cancel_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<EventBody>, ApiError> {
    transition(
        &state,
        &caller,
        &event_id,
        EventState::Cancelled,
        LifecycleKind::EventCancelled,
        "event.cancel",
    )
    .await
}

#[utoipa::path(post, path = "/v1/events/{event_id}/archive", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "The event, now archived", body = EventBody),
        (status = 404, body = Problem),
        (status = 409, description = "Not ended or cancelled", body = Problem),
    ))]
/// Puts an ended or cancelled event away.
async fn archive_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<EventBody>, ApiError> {
    transition(
        &state,
        &caller,
        &event_id,
        EventState::Archived,
        LifecycleKind::EventArchived,
        "event.archive",
    )
    .await
}

/// One recorded state change.
#[derive(Serialize, ToSchema)]
struct TransitionBody {
    seq: i64,
    /// `null` for the creation.
    from: Option<EventState>,
    to: EventState,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    /// `created`, `api`, `publish`, `publisher_gone`, `window_closed`.
    cause: String,
    /// API key id, or `system`.
    actor: String,
}

impl From<Transition> for TransitionBody {
    fn from(t: Transition) -> TransitionBody {
        TransitionBody {
            seq: t.seq,
            from: t.from,
            to: t.to,
            at: t.at,
            cause: t.cause,
            actor: t.actor,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct TransitionListBody {
    /// Oldest first.
    items: Vec<TransitionBody>,
}

#[utoipa::path(get, path = "/v1/events/{event_id}/transitions", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, body = TransitionListBody),
        (status = 404, body = Problem),
    ))]
/// Every state change of the event: from, to, when, why, who.
async fn list_transitions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<TransitionListBody>, ApiError> {
    caller.require(READERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let transitions = state.store().transitions(&event.id).await?;
    Ok(Json(TransitionListBody {
        items: transitions.into_iter().map(TransitionBody::from).collect(),
    }))
}

/// `POST /v1/events` and `PATCH /v1/events/{id}` share one body type (every field
/// optional, `null` clears); creating needs a title, which the shared schema cannot say.
/// Applied to the assembled document (`http/openapi.rs`).
pub(crate) fn require_title_to_create(document: &mut serde_json::Value) {
    let schema = document
        .pointer_mut("/paths/~1v1~1events/post/requestBody/content/application~1json/schema");
    if let Some(schema) = schema {
        let shared = schema.take();
        *schema = serde_json::json!({
            "allOf": [
                shared,
                { "required": ["title"], "properties": { "title": { "type": "string" } } }
            ]
        });
    }
}
