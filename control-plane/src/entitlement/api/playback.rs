//! `POST /v1/events/{event_id}/playback`: whether an account may watch an event and, if
//! so, a signed playback token for a new viewer session; and those sessions, listed per
//! account and revoked (admin, viewer-service).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use floodlight_media::token::PlaybackClaims;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::accounts::account_not_found;
use super::shared::{VIEWER_SERVICE, now, refused};
use crate::db::random_id;
use crate::entitlement::decision::{self, NotEntitled};
use crate::events::{EventId, EventState, Visibility};
use crate::http::{ApiError, ApiJson, ApiPath, AppState, Caller, Problem};
use crate::viewer_sessions::{NewSession, Registration, SessionError, ViewerSession};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PlaybackRequest {
    /// The viewer's account; required for an entitled event, ignored for a public one.
    account_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct PlaybackGrantBody {
    /// The master playlist URL; for an entitled event it carries the token.
    playback_url: String,
    /// The signed playback token (JWT, HS256); `null` for a public event.
    token: Option<String>,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<OffsetDateTime>,
    /// The viewer session the token belongs to (what `DELETE /v1/sessions/{id}` revokes);
    /// `null` for a public event.
    session_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct SessionBody {
    session_id: String,
    account_id: String,
    event_id: String,
    /// When the session's token expires.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: OffsetDateTime,
    /// The last playlist request an origin served it (or the token's issue).
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: OffsetDateTime,
}

impl From<ViewerSession> for SessionBody {
    fn from(s: ViewerSession) -> SessionBody {
        let at = |secs: i64| {
            OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
        };
        SessionBody {
            session_id: s.sid,
            account_id: s.account_id,
            event_id: s.event_id,
            expires_at: at(s.expires_at),
            last_seen_at: OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(s.last_seen_ms) * 1_000_000,
            )
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct SessionListBody {
    /// The account's active sessions (those the concurrency limit counts).
    items: Vec<SessionBody>,
}

fn sessions_unavailable(error: SessionError) -> ApiError {
    tracing::warn!(%error, "viewer-session store unavailable");
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "sessions_unavailable",
        "the viewer-session store does not answer; retry shortly",
    )
}

#[utoipa::path(post, path = "/v1/events/{event_id}/playback", tag = "entitlement",
    params(("event_id" = String, Path)),
    request_body = PlaybackRequest,
    responses(
        (status = 200, description = "Entitled (or a public event): where to play, with the token", body = PlaybackGrantBody),
        (status = 403, description = "Not entitled; reason: no_subscription, subscription_expired, \
            subscription_past_due, not_in_plan, geo_blocked, event_unavailable", body = Problem),
        (status = 404, description = "No such event", body = Problem),
        (status = 409, description = "The account already watches as many sessions as it may \
            (reason concurrency_limit)", body = Problem),
        (status = 422, description = "account_id missing or unknown", body = Problem),
        (status = 503, description = "The session store does not answer", body = Problem),
    ))]
/// Decides whether an account may watch an event and, if so, issues a playback token for a
/// new viewer session (admin, viewer-service). The viewer's country comes from the CDN
/// header `control.entitlement.geo_country_header`.
pub(super) async fn playback(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(event_id): ApiPath<String>,
    ApiJson(request): ApiJson<PlaybackRequest>,
) -> Result<Json<PlaybackGrantBody>, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    let not_found = || ApiError::not_found(format!("no event with id {event_id:?}"));
    let id = EventId::parse(&event_id).ok_or_else(not_found)?;
    let event = state
        .store()
        .event_access(&id)
        .await?
        .ok_or_else(not_found)?;
    if matches!(event.state, EventState::Cancelled | EventState::Archived) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "event_unavailable",
            format!("the event is {}", event.state.as_str()),
        ));
    }
    let entitlement = state.entitlement();
    let country = headers
        .get(&entitlement.geo_header)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if !event.geo.permits(country) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "geo_blocked",
            match country {
                Some(country) => format!("the event is not available in {country}"),
                None => format!(
                    "the event is available only in some countries and the request has no \
                     {} header",
                    entitlement.config.geo_country_header
                ),
            },
        ));
    }
    let master = state.urls().hls_master_playlist(id.as_str());
    if event.visibility == Visibility::Public {
        return Ok(Json(PlaybackGrantBody {
            playback_url: master,
            token: None,
            expires_at: None,
            session_id: None,
        }));
    }
    let account_id = request
        .account_id
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_field("account_id", "account_id is required for an entitled event")
        })?;
    if state.store().account(&account_id).await?.is_none() {
        return Err(ApiError::invalid_field(
            "account_id",
            format!("no account with id {account_id:?}"),
        ));
    }
    let now = now();
    let grants = state.store().grants(&account_id, id.as_str()).await?;
    let purchase_limit =
        Some(entitlement.config.purchase_max_concurrent_sessions).filter(|n| *n > 0);
    let entitled = decision::decide(event.category.as_deref(), &grants, now, purchase_limit)
        .map_err(|refusal: NotEntitled| {
            refused(
                StatusCode::FORBIDDEN,
                refusal.reason(),
                refusal.detail(event.category.as_deref()),
            )
        })?;
    let ttl = i64::try_from(entitlement.config.token_ttl_secs).unwrap_or(i64::MAX);
    let claims = PlaybackClaims {
        evt: id.as_str().to_string(),
        sub: account_id.clone(),
        sid: format!("ses_{}", random_id()),
        iat: now.unix_timestamp(),
        exp: now.unix_timestamp().saturating_add(ttl),
    };
    let registration = entitlement
        .sessions()
        .register(
            NewSession {
                sid: claims.sid.clone(),
                account_id: account_id.clone(),
                event_id: claims.evt.clone(),
                expires_at: claims.exp,
            },
            entitled.max_sessions,
        )
        .await
        .map_err(sessions_unavailable)?;
    if let Registration::LimitReached { active } = registration {
        return Err(refused(
            StatusCode::CONFLICT,
            "concurrency_limit",
            format!(
                "the account already watches {active} session(s), the most it may at once{}; \
                 stop one (DELETE /v1/sessions/{{session_id}}) or wait until it has been idle \
                 for sessions.ttl_secs",
                entitled
                    .max_sessions
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
        ));
    }
    let token = entitlement.signing_key.sign(&claims);
    let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp).ok();
    Ok(Json(PlaybackGrantBody {
        playback_url: format!("{master}?{}={token}", entitlement.config.token_query_param),
        token: Some(token),
        expires_at,
        session_id: Some(claims.sid),
    }))
}

#[utoipa::path(get, path = "/v1/accounts/{account_id}/sessions", tag = "entitlement",
    params(("account_id" = String, Path)),
    responses(
        (status = 200, body = SessionListBody),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 503, description = "The session store does not answer", body = Problem),
    ))]
/// The account's active viewer sessions (admin, viewer-service).
pub(super) async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(account_id): ApiPath<String>,
) -> Result<Json<SessionListBody>, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    if state.store().account(&account_id).await?.is_none() {
        return Err(account_not_found(&account_id));
    }
    let sessions = state
        .entitlement()
        .sessions()
        .active_sessions(&account_id)
        .await
        .map_err(sessions_unavailable)?;
    Ok(Json(SessionListBody {
        items: sessions.into_iter().map(SessionBody::from).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/sessions/{session_id}", tag = "entitlement",
    params(("session_id" = String, Path)),
    responses(
        (status = 204, description = "Revoked: origins refuse it within sessions.revocation_refresh_ms"),
        (status = 403, body = Problem),
        (status = 404, description = "No such session (never issued, expired, or revoked already)", body = Problem),
        (status = 503, description = "The session store does not answer", body = Problem),
    ))]
/// Revokes a viewer session (admin, viewer-service).
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(session_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    let revoked = state
        .entitlement()
        .sessions()
        .revoke(&session_id)
        .await
        .map_err(sessions_unavailable)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no active session with id {session_id:?} (never issued, expired, or revoked \
                 already)"
            ))
        })?;
    state
        .store()
        .audit_session_revoked(&caller.actor(), &revoked.sid, &revoked.account_id, now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
