//! `GET /v1/audit`: who did what, when (admin, ops).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{OpenApi, ToSchema};

use super::store::{AuditCursor, AuditEntry};
use crate::http::{ApiError, ApiQuery, AppState, Caller, Problem, Role, page_cursor, page_limit};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list_audit))
}

/// The audit log's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_audit),
    tags((name = "audit", description = "Who did what, when (admin, ops)"))
)]
pub(crate) struct AuditApi;

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<String>,
    cursor: Option<String>,
    /// Only entries about this thing (an event, stream key or API key id).
    target_id: Option<String>,
}

/// One audit entry.
#[derive(Serialize, ToSchema)]
struct AuditEntryBody {
    id: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    /// API key id, or `system`.
    actor: String,
    /// The key's role then, or `system`.
    actor_role: String,
    /// `event.create`, `event.update`, `event.cancel`, `event.archive`, `event.live`,
    /// `event.ended`, `stream_key.create`, `stream_key.rotate`, `stream_key.revoke`,
    /// `api_key.create`, `api_key.revoke`, `api_key.bootstrap`, …
    action: String,
    target_kind: String,
    target_id: String,
    #[schema(value_type = Option<Object>)]
    detail: Option<serde_json::Value>,
}

impl From<AuditEntry> for AuditEntryBody {
    fn from(entry: AuditEntry) -> AuditEntryBody {
        AuditEntryBody {
            id: entry.id,
            at: entry.at,
            actor: entry.actor,
            actor_role: entry.actor_role,
            action: entry.action,
            target_kind: entry.target_kind,
            target_id: entry.target_id,
            detail: entry.detail,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct AuditListBody {
    items: Vec<AuditEntryBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("target_id" = Option<String>, Query, description = "Only entries about this id"),
    ),
    responses(
        (status = 200, body = AuditListBody),
        (status = 400, description = "Bad limit or cursor", body = Problem),
        (status = 403, description = "Not an admin or ops key", body = Problem),
    ))]
/// The audit log, newest first (admin, ops).
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditListBody>, ApiError> {
    caller.require(&[Role::Admin, Role::Ops])?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<AuditCursor>(query.cursor.as_deref())?;
    let page = state
        .store()
        .audit_log(query.target_id.as_deref(), limit, cursor.as_ref())
        .await?;
    Ok(Json(AuditListBody {
        items: page.entries.into_iter().map(AuditEntryBody::from).collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    }))
}
