//! The entitlement routes: accounts, plans, subscriptions, purchases, the payment
//! provider's webhook, playback tokens and viewer sessions.
//!
//! Roles: `viewer-service` (the viewer-facing backend) and `admin` manage accounts,
//! subscriptions and purchases, ask for playback and revoke sessions; `ops` and `admin`
//! manage plans, which the viewer service may read. The webhook carries no API key: its
//! signature authenticates it.
//!
//! One file per area: `accounts.rs` (accounts, their subscriptions and purchases),
//! `plans.rs`, `payments.rs` (the webhook), `playback.rs` (playback grants and the viewer
//! sessions they open); `shared.rs` holds what several use.

mod accounts;
mod payments;
mod plans;
mod playback;
mod shared;

use axum::Router;
use axum::routing::{delete, get, post};
use utoipa::OpenApi;

use crate::http::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/accounts",
            get(accounts::list_accounts).post(accounts::create_account),
        )
        .route("/v1/accounts/{account_id}", get(accounts::get_account))
        .route(
            "/v1/accounts/{account_id}/subscriptions",
            post(accounts::create_subscription),
        )
        .route(
            "/v1/accounts/{account_id}/purchases",
            post(accounts::create_purchase),
        )
        .route(
            "/v1/accounts/{account_id}/sessions",
            get(playback::list_sessions),
        )
        .route("/v1/plans", get(plans::list_plans).post(plans::create_plan))
        .route("/v1/plans/{plan_id}", get(plans::get_plan))
        .route("/v1/webhooks/payments", post(payments::payment_webhook))
        .route("/v1/events/{event_id}/playback", post(playback::playback))
        .route(
            "/v1/sessions/{session_id}",
            delete(playback::revoke_session),
        )
}

/// Entitlement's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        accounts::create_account,
        accounts::list_accounts,
        accounts::get_account,
        accounts::create_subscription,
        accounts::create_purchase,
        playback::list_sessions,
        plans::create_plan,
        plans::list_plans,
        plans::get_plan,
        payments::payment_webhook,
        playback::playback,
        playback::revoke_session,
    ),
    tags(
        (name = "entitlement", description = "Accounts, plans, subscriptions, purchases; \
         playback tokens and viewer sessions"),
    )
)]
pub(crate) struct EntitlementApi;
