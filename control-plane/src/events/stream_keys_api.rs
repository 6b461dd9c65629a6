//! `/v1/events/{event_id}/keys`: an event's stream keys (primary and backup). A key is
//! shown once, in the answer that creates it (create, rotate); lists show metadata only.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{OpenApi, ToSchema};

use super::api::{MANAGERS, visible_event};
use super::stream_keys::{StreamKey, StreamKeyError, StreamKeyInfo, StreamKeyRole};
use crate::http::{ApiError, ApiJson, ApiPath, AppState, Caller, Problem};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/events/{event_id}/keys",
            post(create_key).get(list_keys),
        )
        .route(
            "/v1/events/{event_id}/keys/{key_id}",
            axum::routing::delete(revoke_key),
        )
        .route(
            "/v1/events/{event_id}/keys/{key_id}/rotate",
            post(rotate_key),
        )
}

/// The stream keys' part of the OpenAPI document (under the `events` tag).
#[derive(OpenApi)]
#[openapi(paths(create_key, list_keys, rotate_key, revoke_key))]
pub(crate) struct StreamKeysApi;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    /// Default `primary`; `backup` needs the event's `ingest.backup`.
    role: Option<StreamKeyRole>,
}

/// A stream key's metadata; `stream_key` only in the answer that creates it.
#[derive(Serialize, ToSchema)]
struct StreamKeyBody {
    id: String,
    event_id: String,
    role: StreamKeyRole,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<OffsetDateTime>,
    /// The key itself: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<String>,
    /// `rtmp://HOST/live/{stream_key}`, with the key: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    rtmp_url: Option<String>,
}

impl StreamKeyBody {
    fn new(info: StreamKeyInfo) -> StreamKeyBody {
        StreamKeyBody {
            id: info.id,
            event_id: info.event_id.into_string(),
            role: info.role,
            created_at: info.created_at,
            last_used_at: info.last_used_at,
            revoked_at: info.revoked_at,
            stream_key: None,
            rtmp_url: None,
        }
    }

    fn with_key(info: StreamKeyInfo, key: &StreamKey, state: &AppState) -> StreamKeyBody {
        let mut body = StreamKeyBody::new(info);
        body.stream_key = Some(key.expose_secret().to_string());
        body.rtmp_url = Some(state.urls().rtmp_publish_url(key.expose_secret()));
        body
    }
}

#[derive(Serialize, ToSchema)]
struct StreamKeyListBody {
    /// Oldest first, revoked ones too.
    items: Vec<StreamKeyBody>,
}

fn key_error(error: StreamKeyError, event_id: &str, key_id: &str) -> ApiError {
    match error {
        StreamKeyError::EventNotFound => {
            ApiError::not_found(format!("no event with id {event_id:?}"))
        }
        StreamKeyError::KeyNotFound => ApiError::not_found(format!(
            "event {event_id:?} has no stream key with id {key_id:?}"
        )),
        StreamKeyError::KeyRevoked => ApiError::conflict(StreamKeyError::KeyRevoked.to_string()),
        StreamKeyError::Store(error) => error.into(),
    }
}

#[utoipa::path(post, path = "/v1/events/{event_id}/keys", tag = "events",
    params(("event_id" = String, Path)),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The key, shown this once", body = StreamKeyBody),
        (status = 404, body = Problem),
        (status = 409, description = "Too many active keys, or backup ingest is off", body = Problem),
    ))]
/// Issues another stream key for the event (a backup, or a second primary).
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
    ApiJson(request): ApiJson<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let role = request.role.unwrap_or_default();
    if role == StreamKeyRole::Backup && !event.settings.ingest.backup {
        return Err(ApiError::conflict(
            "the event has no backup ingest; PATCH ingest.backup to true first",
        ));
    }
    let max = state.config().max_stream_keys_per_event;
    let active = state
        .store()
        .stream_keys(&event.id)
        .await?
        .iter()
        .filter(|key| key.revoked_at.is_none())
        .count();
    if active >= max {
        return Err(ApiError::conflict(format!(
            "the event has {active} active stream keys, the most \
             control.max_stream_keys_per_event allows; revoke one first"
        )));
    }
    let (info, key) = state
        .store()
        .create_stream_key(&event.id, role, &caller.actor(), OffsetDateTime::now_utc())
        .await
        .map_err(|error| key_error(error, &event_id, ""))?;
    let location = format!("/v1/events/{event_id}/keys/{}", info.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(StreamKeyBody::with_key(info, &key, &state)),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/events/{event_id}/keys", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "Metadata only, never a key", body = StreamKeyListBody),
        (status = 404, body = Problem),
    ))]
/// The event's stream keys: metadata only.
async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<StreamKeyListBody>, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let keys = state.store().stream_keys(&event.id).await?;
    Ok(Json(StreamKeyListBody {
        items: keys.into_iter().map(StreamKeyBody::new).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/events/{event_id}/keys/{key_id}/rotate", tag = "events",
    params(("event_id" = String, Path), ("key_id" = String, Path)),
    responses(
        (status = 201, description = "The replacement key, shown this once", body = StreamKeyBody),
        (status = 404, body = Problem),
        (status = 409, description = "The key is already revoked", body = Problem),
    ))]
/// Replaces a key with a new one of the same role; the old one stops working at once.
async fn rotate_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((event_id, key_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let (info, key) = state
        .store()
        .rotate_stream_key(
            &event.id,
            &key_id,
            &caller.actor(),
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|error| key_error(error, &event_id, &key_id))?;
    state
        .lifecycle()
        .announce_key_revoked(&event.id, &key_id, "rotated");
    let location = format!("/v1/events/{event_id}/keys/{}", info.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(StreamKeyBody::with_key(info, &key, &state)),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/events/{event_id}/keys/{key_id}", tag = "events",
    params(("event_id" = String, Path), ("key_id" = String, Path)),
    responses(
        (status = 200, description = "The key, now revoked", body = StreamKeyBody),
        (status = 404, body = Problem),
    ))]
/// Revokes a key at once; ingest refuses it from the next publish attempt.
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((event_id, key_id)): ApiPath<(String, String)>,
) -> Result<Json<StreamKeyBody>, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let (info, revoked) = state
        .store()
        .revoke_stream_key(
            &event.id,
            &key_id,
            &caller.actor(),
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|error| key_error(error, &event_id, &key_id))?;
    if revoked {
        state
            .lifecycle()
            .announce_key_revoked(&event.id, &key_id, "api");
    }
    Ok(Json(StreamKeyBody::new(info)))
}
