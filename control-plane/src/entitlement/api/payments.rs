//! `POST /v1/webhooks/payments`: the payment provider reports a subscription's state.
//! It carries no API key: its signature (`entitlement/webhook.rs`) authenticates it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::accounts::{SubscriptionBody, SubscriptionStateBody};
use super::shared::{now, parse_time, refused};
use crate::audit::Actor;
use crate::entitlement::webhook;
use crate::http::{ApiError, AppState, Problem, nullable};

/// What the payment provider reports about a subscription.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PaymentWebhookRequest {
    subscription_id: String,
    state: SubscriptionStateBody,
    /// RFC 3339 new end of validity, `null` for open-ended; absent: unchanged.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_until: Option<Option<String>>,
}

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
pub(super) async fn payment_webhook(
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
