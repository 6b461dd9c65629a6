//! The entitlement routes: accounts, plans, subscriptions, purchases, the payment
//! provider's webhook, playback tokens and viewer sessions.
//!
//! Roles: `viewer-service` (the viewer-facing backend) and `admin` manage accounts,
//! subscriptions and purchases, ask for playback and revoke sessions; `ops` and `admin`
//! manage plans, which the viewer service may read. The webhook carries no API key: its
//! signature authenticates it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use floodlight_media::token::PlaybackClaims;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::{OpenApi, ToSchema};

use super::decision::{self, NotEntitled};
use super::store::{
    Account, EntitlementStoreError, ListCursor, NewPlan, NewSubscription, Plan, Purchase,
    Subscription, SubscriptionState,
};
use super::webhook;
use crate::api::fields::{self, Label};
use crate::api::openapi::Problem;
use crate::api::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, page_cursor, page_limit};
use crate::store::{Actor, EventId, EventState, Role, Visibility, random_id};
use crate::viewer_sessions::{NewSession, Registration, ViewerSession};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", get(list_accounts).post(create_account))
        .route("/v1/accounts/{account_id}", get(get_account))
        .route(
            "/v1/accounts/{account_id}/subscriptions",
            post(create_subscription),
        )
        .route("/v1/accounts/{account_id}/purchases", post(create_purchase))
        .route("/v1/accounts/{account_id}/sessions", get(list_sessions))
        .route("/v1/plans", get(list_plans).post(create_plan))
        .route("/v1/plans/{plan_id}", get(get_plan))
        .route("/v1/webhooks/payments", post(payment_webhook))
        .route("/v1/events/{event_id}/playback", post(playback))
        .route("/v1/sessions/{session_id}", delete(revoke_session))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        create_account,
        list_accounts,
        get_account,
        create_subscription,
        create_purchase,
        list_sessions,
        create_plan,
        list_plans,
        get_plan,
        payment_webhook,
        playback,
        revoke_session,
    ),
    tags(
        (name = "entitlement", description = "Accounts, plans, subscriptions, purchases; \
         playback tokens and viewer sessions"),
    )
)]
pub(crate) struct EntitlementApi;

const VIEWER_SERVICE: &[Role] = &[Role::Admin, Role::ViewerService];
const PLAN_WRITERS: &[Role] = &[Role::Admin, Role::Ops];
const PLAN_READERS: &[Role] = &[Role::Admin, Role::Ops, Role::ViewerService];

// ---------------------------------------------------------------------------------------
// Bodies.

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAccountRequest {
    /// The viewer's email address (at most 254 characters, stored lowercased); one
    /// account per address.
    #[schema(
        pattern = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        max_length = 254
    )]
    email: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccountBody {
    account_id: String,
    email: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<Account> for AccountBody {
    fn from(account: Account) -> AccountBody {
        AccountBody {
            account_id: account.id,
            email: account.email,
            created_at: account.created_at,
        }
    }
}

/// An account with what entitles it.
#[derive(Serialize, ToSchema)]
pub(crate) struct AccountDetailBody {
    #[serde(flatten)]
    account: AccountBody,
    subscriptions: Vec<SubscriptionBody>,
    purchases: Vec<PurchaseBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AccountListBody {
    items: Vec<AccountBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePlanRequest {
    /// 1 to 200 characters, not all spaces (stored trimmed).
    #[schema(
        max_length = 200,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    name: String,
    /// Event categories the plan includes (like events' `category`, lowercased).
    #[schema(max_items = 100, value_type = Vec<Label>)]
    categories: Vec<String>,
    /// Sessions one account may watch at once, 1 to 10000; `null` or absent: no limit.
    #[schema(minimum = 1, maximum = 10000)]
    max_concurrent_sessions: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PlanBody {
    plan_id: String,
    name: String,
    categories: Vec<String>,
    max_concurrent_sessions: Option<u32>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<Plan> for PlanBody {
    fn from(plan: Plan) -> PlanBody {
        PlanBody {
            plan_id: plan.id,
            name: plan.name,
            categories: plan.categories,
            max_concurrent_sessions: plan.max_concurrent_sessions,
            created_at: plan.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PlanListBody {
    items: Vec<PlanBody>,
    next_cursor: Option<String>,
}

/// `active`, `past_due` or `cancelled`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SubscriptionStateBody {
    Active,
    PastDue,
    Cancelled,
}

impl From<SubscriptionStateBody> for SubscriptionState {
    fn from(state: SubscriptionStateBody) -> SubscriptionState {
        match state {
            SubscriptionStateBody::Active => SubscriptionState::Active,
            SubscriptionStateBody::PastDue => SubscriptionState::PastDue,
            SubscriptionStateBody::Cancelled => SubscriptionState::Cancelled,
        }
    }
}

impl From<SubscriptionState> for SubscriptionStateBody {
    fn from(state: SubscriptionState) -> SubscriptionStateBody {
        match state {
            SubscriptionState::Active => SubscriptionStateBody::Active,
            SubscriptionState::PastDue => SubscriptionStateBody::PastDue,
            SubscriptionState::Cancelled => SubscriptionStateBody::Cancelled,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSubscriptionRequest {
    plan_id: String,
    /// Default `active`.
    state: Option<SubscriptionStateBody>,
    /// RFC 3339; default now.
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_from: Option<String>,
    /// RFC 3339, after `valid_from`; absent or `null`: open-ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SubscriptionBody {
    subscription_id: String,
    account_id: String,
    plan_id: String,
    state: SubscriptionStateBody,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    valid_from: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_until: Option<OffsetDateTime>,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
}

impl From<Subscription> for SubscriptionBody {
    fn from(s: Subscription) -> SubscriptionBody {
        SubscriptionBody {
            subscription_id: s.id,
            account_id: s.account_id,
            plan_id: s.plan_id,
            state: s.state.into(),
            valid_from: s.valid_from,
            valid_until: s.valid_until,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePurchaseRequest {
    event_id: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PurchaseBody {
    purchase_id: String,
    account_id: String,
    event_id: String,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
}

impl From<Purchase> for PurchaseBody {
    fn from(p: Purchase) -> PurchaseBody {
        PurchaseBody {
            purchase_id: p.id,
            account_id: p.account_id,
            event_id: p.event_id,
            created_at: p.created_at,
        }
    }
}

/// What the payment provider reports about a subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PaymentWebhookRequest {
    subscription_id: String,
    state: SubscriptionStateBody,
    /// RFC 3339 new end of validity, `null` for open-ended; absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_until: Option<Option<String>>,
}

/// A field that is present (maybe `null`), as opposed to absent (`None` by default).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaybackRequest {
    /// The viewer's account; required for an entitled event, ignored for a public one.
    account_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PlaybackGrantBody {
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
pub(crate) struct SessionBody {
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
pub(crate) struct SessionListBody {
    /// The account's active sessions (those the concurrency limit counts).
    items: Vec<SessionBody>,
}

#[derive(Deserialize)]
pub(crate) struct AccountQuery {
    email: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validation.

const NAME_MAX_CHARS: usize = 200;
const MAX_PLAN_CATEGORIES: usize = 100;
const MAX_CONCURRENT_SESSIONS: u32 = 10_000;

fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    crate::rfc3339::parse(text).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            format!("{field} must be an RFC 3339 date-time such as 2026-12-01T18:00:00Z"),
        )
    })
}

fn account_not_found(account_id: &str) -> ApiError {
    ApiError::not_found(format!("no account with id {account_id:?}"))
}

/// A refusal with a machine-readable `reason`.
fn refused(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::Refused {
        status,
        reason: Some(reason),
        detail: detail.into(),
    }
}

fn sessions_unavailable(error: crate::viewer_sessions::SessionError) -> ApiError {
    tracing::warn!(%error, "viewer-session store unavailable");
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "sessions_unavailable",
        "the viewer-session store does not answer; retry shortly",
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

// ---------------------------------------------------------------------------------------
// Accounts.

#[utoipa::path(post, path = "/v1/accounts", tag = "entitlement",
    request_body = CreateAccountRequest,
    responses(
        (status = 201, body = AccountBody),
        (status = 403, description = "Not an admin or viewer-service key", body = Problem),
        (status = 409, description = "An account with this email exists (reason email_taken)", body = Problem),
        (status = 422, description = "A field is invalid", body = Problem),
    ))]
/// Creates a viewer account (admin, viewer-service).
pub(crate) async fn create_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateAccountRequest>,
) -> Result<Response, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    let email = fields::email(&request.email)?;
    let account = match state
        .store()
        .create_account(&email, &caller.actor(), now())
        .await
    {
        Ok(account) => account,
        Err(EntitlementStoreError::EmailTaken) => {
            return Err(refused(
                StatusCode::CONFLICT,
                "email_taken",
                "an account with this email exists; find it with GET /v1/accounts?email=",
            ));
        }
        Err(error) => return Err(store_error(error)),
    };
    let location = format!("/v1/accounts/{}", account.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(AccountBody::from(account)),
    )
        .into_response())
}

/// Store errors that a handler did not expect: 500, logged once by `ApiError`.
fn store_error(error: EntitlementStoreError) -> ApiError {
    match error {
        EntitlementStoreError::Store(error) => ApiError::Internal(error),
        other => ApiError::conflict(other.to_string()),
    }
}

#[utoipa::path(get, path = "/v1/accounts", tag = "entitlement",
    params(
        ("email" = Option<String>, Query, description = "Find the account with this address"),
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = AccountListBody),
        (status = 400, description = "Bad limit or cursor", body = Problem),
        (status = 403, body = Problem),
    ))]
/// Lists accounts, newest first (admin, viewer-service).
pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> Result<Json<AccountListBody>, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<ListCursor>(query.cursor.as_deref())?;
    let email = query.email.map(|e| e.trim().to_lowercase());
    let page = state
        .store()
        .list_accounts(email.as_deref(), limit, cursor.as_ref())
        .await?;
    Ok(Json(AccountListBody {
        items: page.items.into_iter().map(AccountBody::from).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

#[utoipa::path(get, path = "/v1/accounts/{account_id}", tag = "entitlement",
    params(("account_id" = String, Path)),
    responses(
        (status = 200, body = AccountDetailBody),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    ))]
/// An account with its subscriptions and purchases (admin, viewer-service).
pub(crate) async fn get_account(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(account_id): ApiPath<String>,
) -> Result<Json<AccountDetailBody>, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    let store = state.store();
    let account = store
        .account(&account_id)
        .await?
        .ok_or_else(|| account_not_found(&account_id))?;
    Ok(Json(AccountDetailBody {
        subscriptions: store
            .subscriptions_of(&account_id)
            .await?
            .into_iter()
            .map(SubscriptionBody::from)
            .collect(),
        purchases: store
            .purchases_of(&account_id)
            .await?
            .into_iter()
            .map(PurchaseBody::from)
            .collect(),
        account: account.into(),
    }))
}

#[utoipa::path(post, path = "/v1/accounts/{account_id}/subscriptions", tag = "entitlement",
    params(("account_id" = String, Path)),
    request_body = CreateSubscriptionRequest,
    responses(
        (status = 201, body = SubscriptionBody),
        (status = 403, body = Problem),
        (status = 404, description = "No such account", body = Problem),
        (status = 422, description = "A field is invalid, or plan_id names no plan", body = Problem),
    ))]
/// Subscribes an account to a plan (admin, viewer-service).
pub(crate) async fn create_subscription(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(account_id): ApiPath<String>,
    ApiJson(request): ApiJson<CreateSubscriptionRequest>,
) -> Result<Response, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    let now = now();
    let valid_from = match request.valid_from.as_deref() {
        Some(text) => parse_time("valid_from", text)?,
        None => now,
    };
    let valid_until = request
        .valid_until
        .as_deref()
        .map(|text| parse_time("valid_until", text))
        .transpose()?;
    if valid_until.is_some_and(|until| until <= valid_from) {
        return Err(ApiError::invalid_field(
            "valid_until",
            "valid_until must be after valid_from",
        ));
    }
    let new = NewSubscription {
        plan_id: request.plan_id.trim().to_string(),
        state: request
            .state
            .unwrap_or(SubscriptionStateBody::Active)
            .into(),
        valid_from,
        valid_until,
    };
    let subscription = match state
        .store()
        .create_subscription(&account_id, &new, &caller.actor(), now)
        .await
    {
        Ok(subscription) => subscription,
        Err(EntitlementStoreError::UnknownAccount(_)) => {
            return Err(account_not_found(&account_id));
        }
        Err(EntitlementStoreError::UnknownPlan(plan_id)) => {
            return Err(ApiError::missing_reference(
                "plan_id",
                format!("no plan with id {plan_id:?}"),
            ));
        }
        Err(error) => return Err(store_error(error)),
    };
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionBody::from(subscription)),
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/accounts/{account_id}/purchases", tag = "entitlement",
    params(("account_id" = String, Path)),
    request_body = CreatePurchaseRequest,
    responses(
        (status = 201, description = "Bought", body = PurchaseBody),
        (status = 200, description = "Bought before: the earlier purchase", body = PurchaseBody),
        (status = 403, body = Problem),
        (status = 404, description = "No such account, or event_id names no event (`field`)", body = Problem),
    ))]
/// Records a purchase of one event, pay-per-view (admin, viewer-service).
pub(crate) async fn create_purchase(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(account_id): ApiPath<String>,
    ApiJson(request): ApiJson<CreatePurchaseRequest>,
) -> Result<Response, ApiError> {
    caller.require(VIEWER_SERVICE)?;
    let event_id = EventId::parse(request.event_id.trim()).ok_or_else(|| {
        ApiError::missing_reference(
            "event_id",
            format!("no event with id {:?}", request.event_id),
        )
    })?;
    match state
        .store()
        .create_purchase(&account_id, &event_id, &caller.actor(), now())
        .await
    {
        Ok((purchase, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(PurchaseBody::from(purchase))).into_response())
        }
        Err(EntitlementStoreError::UnknownAccount(_)) => Err(account_not_found(&account_id)),
        Err(EntitlementStoreError::UnknownEvent(id)) => Err(ApiError::missing_reference(
            "event_id",
            format!("no event with id {id:?}"),
        )),
        Err(error) => Err(store_error(error)),
    }
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
pub(crate) async fn list_sessions(
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
pub(crate) async fn revoke_session(
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

// ---------------------------------------------------------------------------------------
// Plans.

#[utoipa::path(post, path = "/v1/plans", tag = "entitlement",
    request_body = CreatePlanRequest,
    responses(
        (status = 201, body = PlanBody),
        (status = 403, description = "Not an admin or ops key", body = Problem),
        (status = 422, description = "A field is invalid", body = Problem),
    ))]
/// Creates a subscription plan (admin, ops).
pub(crate) async fn create_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<CreatePlanRequest>,
) -> Result<Response, ApiError> {
    caller.require(PLAN_WRITERS)?;
    let name = fields::display_text("name", &request.name, NAME_MAX_CHARS)?.to_string();
    if request.categories.len() > MAX_PLAN_CATEGORIES {
        return Err(ApiError::invalid_field(
            "categories",
            format!("at most {MAX_PLAN_CATEGORIES} categories"),
        ));
    }
    let categories = request
        .categories
        .iter()
        .enumerate()
        .map(|(i, c)| fields::label(&format!("categories[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    if request
        .max_concurrent_sessions
        .is_some_and(|n| !(1..=MAX_CONCURRENT_SESSIONS).contains(&n))
    {
        return Err(ApiError::invalid_field(
            "max_concurrent_sessions",
            format!(
                "max_concurrent_sessions must be 1 to {MAX_CONCURRENT_SESSIONS}, or null for no limit"
            ),
        ));
    }
    let plan = state
        .store()
        .create_plan(
            &NewPlan {
                name,
                categories,
                max_concurrent_sessions: request.max_concurrent_sessions,
            },
            &caller.actor(),
            now(),
        )
        .await?;
    let location = format!("/v1/plans/{}", plan.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(PlanBody::from(plan)),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/plans", tag = "entitlement",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = PlanListBody),
        (status = 400, description = "Bad limit or cursor", body = Problem),
        (status = 403, body = Problem),
    ))]
/// Lists plans, newest first (admin, ops, viewer-service).
pub(crate) async fn list_plans(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PlanListBody>, ApiError> {
    caller.require(PLAN_READERS)?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<ListCursor>(query.cursor.as_deref())?;
    let page = state.store().list_plans(limit, cursor.as_ref()).await?;
    Ok(Json(PlanListBody {
        items: page.items.into_iter().map(PlanBody::from).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

#[utoipa::path(get, path = "/v1/plans/{plan_id}", tag = "entitlement",
    params(("plan_id" = String, Path)),
    responses(
        (status = 200, body = PlanBody),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    ))]
/// One plan (admin, ops, viewer-service).
pub(crate) async fn get_plan(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(plan_id): ApiPath<String>,
) -> Result<Json<PlanBody>, ApiError> {
    caller.require(PLAN_READERS)?;
    let plan = state
        .store()
        .plan(&plan_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no plan with id {plan_id:?}")))?;
    Ok(Json(plan.into()))
}

// ---------------------------------------------------------------------------------------
// The payment provider's webhook.

#[utoipa::path(post, path = "/v1/webhooks/payments", tag = "entitlement",
    request_body = PaymentWebhookRequest,
    params(("Floodlight-Signature" = String, Header,
        description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\" under control.entitlement.webhook_secret>")),
    security(()),
    responses(
        (status = 200, description = "The subscription as it is now", body = SubscriptionBody),
        (status = 401, description = "Missing, malformed, stale or wrong signature", body = Problem),
        (status = 404, description = "No such subscription", body = Problem),
        (status = 422, description = "A field is invalid", body = Problem),
        (status = 503, description = "control.entitlement.webhook_secret is not set", body = Problem),
    ))]
/// Sets a subscription's state, as the payment provider reports it. Authenticated by its
/// signature, not an API key.
pub(crate) async fn payment_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let config = &state.entitlement().config;
    let Some(secret) = &config.webhook_secret else {
        // Off is absent: a client's request must not meet a server error (issue 10).
        return Err(refused(
            StatusCode::NOT_FOUND,
            "webhook_not_configured",
            "the payment webhook is off: control.entitlement.webhook_secret is not set",
        ));
    };
    let signature = headers
        .get(webhook::SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    let now = now();
    if let Err(error) = webhook::verify(
        secret.expose_secret().as_bytes(),
        signature,
        &body,
        now.unix_timestamp(),
        config.webhook_tolerance_secs,
    ) {
        tracing::warn!(%error, "payment webhook refused");
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            error.to_string(),
        ));
    }
    let request: PaymentWebhookRequest =
        serde_json::from_slice(&body).map_err(|error| ApiError::Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            field: None,
            detail: format!("the body is not a payment notification: {error}"),
        })?;
    let valid_until = request
        .valid_until
        .map(|until| {
            until
                .map(|text| parse_time("valid_until", &text))
                .transpose()
        })
        .transpose()?;
    let actor = Actor {
        id: "payment-webhook".to_string(),
        role: "system".to_string(),
    };
    let subscription = state
        .store()
        .update_subscription(
            &request.subscription_id,
            request.state.into(),
            valid_until,
            &actor,
            now,
        )
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no subscription with id {:?}",
                request.subscription_id
            ))
        })?;
    tracing::info!(
        subscription_id = subscription.id,
        state = subscription.state.as_str(),
        "subscription updated by the payment webhook"
    );
    Ok(Json(subscription.into()))
}

// ---------------------------------------------------------------------------------------
// Playback.

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
pub(crate) async fn playback(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            fields::email("Viewer@Example.COM").unwrap(),
            "viewer@example.com"
        );
        // Checked as sent, as the schema's pattern says.
        for bad in [
            "", "a", "@x.y", "a@", "a@b", "a@.b", "a@b.", "a b@c.d", "a@b@c.d", " a@b.c",
        ] {
            assert!(fields::email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn categories_follow_the_events_rule() {
        assert_eq!(fields::label("c", "Football").unwrap(), "football");
        assert!(fields::label("c", " Football ").is_err());
        assert!(fields::label("c", "-x").is_err());
        assert!(fields::label("c", "a b").is_err());
    }
}
