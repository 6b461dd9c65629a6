//! `/v1/api-keys`: admins issue, list and revoke the keys that call this API.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{OpenApi, ToSchema};

use super::store::{ApiKeyCursor, ApiKeyInfo, NewApiKey, RevokeApiKeyError};
use crate::http::{
    ApiError, ApiJson, ApiQuery, AppState, Caller, PageQuery, Problem, Role, fields, page_cursor,
    page_limit,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/api-keys", get(list_api_keys).post(create_api_key))
        .route(
            "/v1/api-keys/{key_id}",
            delete(revoke_api_key).get(get_api_key),
        )
}

/// The API keys' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(create_api_key, list_api_keys, get_api_key, revoke_api_key),
    tags((name = "api-keys", description = "Keys that call this API (admin)"))
)]
pub(crate) struct ApiKeysApi;

/// `POST /v1/api-keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateApiKeyRequest {
    role: Role,
    /// Who the key acts for: a broadcaster's events belong to it. Default: the key's id.
    /// 1 to 64 characters of letters, digits, '.', '_', '@' and '-'.
    #[schema(pattern = r"^[0-9A-Za-z._@-]{1,64}$")]
    principal: Option<String>,
    /// A note for people, e.g. "OBS at the stadium"; up to 200 characters.
    #[schema(max_length = 200)]
    label: Option<String>,
}

/// An API key as lists show it. `key` appears only in the creation answer.
#[derive(Serialize, ToSchema)]
struct ApiKeyBody {
    id: String,
    role: Role,
    principal: String,
    label: Option<String>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    created_by: Option<String>,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    revoked_at: Option<OffsetDateTime>,
    /// The key itself: shown once, in the creation answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl From<ApiKeyInfo> for ApiKeyBody {
    fn from(info: ApiKeyInfo) -> ApiKeyBody {
        ApiKeyBody {
            id: info.id.as_str().to_string(),
            role: info.role,
            principal: info.principal,
            label: info.label,
            created_at: info.created_at,
            created_by: info.created_by,
            revoked_at: info.revoked_at,
            key: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct ApiKeyListBody {
    items: Vec<ApiKeyBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

const LABEL_MAX_CHARS: usize = 200;

#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "The key, shown this once", body = ApiKeyBody),
        (status = 401, description = "No or unknown API key", body = Problem),
        (status = 403, description = "Not an admin key", body = Problem),
        (status = 422, description = "A field is invalid", body = Problem),
    ))]
/// Issues an API key (admin).
async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateApiKeyRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let principal = request
        .principal
        .as_deref()
        .map(|p| fields::principal("principal", p))
        .transpose()?;
    // Counted as sent (the schema's maxLength), stored trimmed.
    if let Some(label) = &request.label
        && label.chars().count() > LABEL_MAX_CHARS
    {
        return Err(ApiError::invalid_field(
            "label",
            format!("label is longer than {LABEL_MAX_CHARS} characters"),
        ));
    }
    let label = request.label.map(|l| l.trim().to_string());
    let new = NewApiKey {
        role: request.role,
        principal,
        label: label.filter(|l| !l.is_empty()),
    };
    let (info, key) = state
        .store()
        .create_api_key(&new, &caller.actor(), OffsetDateTime::now_utc())
        .await?;
    let location = format!("/v1/api-keys/{}", info.id);
    let mut body = ApiKeyBody::from(info);
    body.key = Some(key.expose_secret().to_string());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = ApiKeyListBody),
        (status = 400, description = "Bad limit or cursor", body = Problem),
        (status = 403, description = "Not an admin key", body = Problem),
    ))]
/// Lists API keys, revoked ones too, newest first (admin).
async fn list_api_keys(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<ApiKeyListBody>, ApiError> {
    caller.require(&[Role::Admin])?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<ApiKeyCursor>(query.cursor.as_deref())?;
    let (keys, next) = state.store().list_api_keys(limit, cursor.as_ref()).await?;
    Ok(Json(ApiKeyListBody {
        items: keys.into_iter().map(ApiKeyBody::from).collect(),
        next_cursor: next.map(|cursor| cursor.to_string()),
    }))
}

#[utoipa::path(get, path = "/v1/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = String, Path)),
    responses(
        (status = 200, body = ApiKeyBody),
        (status = 404, description = "No such key, or it was revoked (reason `revoked`)", body = Problem),
    ))]
/// One API key (admin).
async fn get_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<Json<ApiKeyBody>, ApiError> {
    caller.require(&[Role::Admin])?;
    let info = state
        .store()
        .api_key(&key_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API key with id {key_id:?}")))?;
    // Revoking is the DELETE of this resource: afterwards it is not found here, though
    // the list still shows it with `revoked_at`, for the record.
    if let Some(revoked_at) = info.revoked_at {
        return Err(ApiError::Refused {
            status: axum::http::StatusCode::NOT_FOUND,
            reason: Some("revoked"),
            detail: format!(
                "API key {key_id:?} was revoked at {}; GET /v1/api-keys lists it",
                revoked_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ),
        });
    }
    Ok(Json(info.into()))
}

#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = String, Path)),
    responses(
        (status = 200, description = "The key, now revoked", body = ApiKeyBody),
        (status = 404, body = Problem),
        (status = 409, description = "The last active admin key", body = Problem),
    ))]
/// Revokes an API key at once (admin). The last active admin key cannot be revoked.
async fn revoke_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<Json<ApiKeyBody>, ApiError> {
    caller.require(&[Role::Admin])?;
    match state
        .store()
        .revoke_api_key(&key_id, &caller.actor(), OffsetDateTime::now_utc())
        .await
    {
        Ok(info) => Ok(Json(info.into())),
        Err(RevokeApiKeyError::NotFound) => Err(ApiError::not_found(format!(
            "no API key with id {key_id:?}"
        ))),
        Err(error @ RevokeApiKeyError::LastAdmin) => Err(ApiError::conflict(error.to_string())),
        Err(RevokeApiKeyError::Store(error)) => Err(error.into()),
    }
}
