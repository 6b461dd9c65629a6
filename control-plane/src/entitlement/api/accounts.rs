//! `/v1/accounts…`: viewer accounts, their subscriptions to plans and their purchases of
//! events (admin, viewer-service).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::shared::{VIEWER_SERVICE, now, parse_time, refused};
use crate::entitlement::{
    Account, EntitlementStoreError, ListCursor, NewSubscription, Purchase, Subscription,
    SubscriptionState,
};
use crate::events::EventId;
use crate::http::{
    ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Problem, fields, page_cursor,
    page_limit,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateAccountRequest {
    /// The viewer's email address (at most 254 characters, stored lowercased); one
    /// account per address.
    #[schema(
        pattern = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        max_length = 254
    )]
    email: String,
}

#[derive(Serialize, ToSchema)]
struct AccountBody {
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
pub(super) struct AccountDetailBody {
    #[serde(flatten)]
    account: AccountBody,
    subscriptions: Vec<SubscriptionBody>,
    purchases: Vec<PurchaseBody>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AccountListBody {
    items: Vec<AccountBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `active`, `past_due` or `cancelled`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum SubscriptionStateBody {
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
pub(super) struct CreateSubscriptionRequest {
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
pub(super) struct SubscriptionBody {
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
pub(super) struct CreatePurchaseRequest {
    event_id: String,
}

#[derive(Serialize, ToSchema)]
struct PurchaseBody {
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

#[derive(Deserialize)]
pub(super) struct AccountQuery {
    email: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

pub(super) fn account_not_found(account_id: &str) -> ApiError {
    ApiError::not_found(format!("no account with id {account_id:?}"))
}

#[utoipa::path(post, path = "/v1/accounts", tag = "entitlement",
    request_body = CreateAccountRequest,
    responses(
        (status = 201, body = AccountBody),
        (status = 403, description = "Not an admin or viewer-service key", body = Problem),
        (status = 409, description = "An account with this email exists (reason email_taken)", body = Problem),
        (status = 422, description = "A field is invalid", body = Problem),
    ))]
/// Creates a viewer account (admin, viewer-service).
pub(super) async fn create_account(
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
pub(super) async fn list_accounts(
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
pub(super) async fn get_account(
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
pub(super) async fn create_subscription(
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
pub(super) async fn create_purchase(
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
}
