//! The entitlement API through the router (`Router::oneshot`, no socket): accounts, plans,
//! subscriptions, purchases, the payment webhook, playback tokens and viewer sessions,
//! every route with every role. Requests carry the admin key unless a test says otherwise.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{ADMIN_KEY, Harness, harness, harness_with};
use floodlight_control::{ControlConfig, EntitlementConfig, Secret};
use floodlight_media::token::{TokenKey, TokenVerifier};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef0123456789abcdef";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The `reason` member of a problem document with this status.
fn reason(answer: &common::Answer, status: StatusCode) -> String {
    answer.problem(status);
    answer.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn post(h: &Harness, key: Option<&str>, uri: &str, body: Value) -> common::Answer {
    h.call(key.or(Some(ADMIN_KEY)), Method::POST, uri, Some(body))
        .await
}

async fn account(h: &Harness, email: &str) -> String {
    post(h, None, "/v1/accounts", json!({ "email": email }))
        .await
        .expect(StatusCode::CREATED)["account_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn plan(h: &Harness, categories: &[&str], max: Option<u32>) -> String {
    post(
        h,
        None,
        "/v1/plans",
        json!({ "name": "Sports", "categories": categories, "max_concurrent_sessions": max }),
    )
    .await
    .expect(StatusCode::CREATED)["plan_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn subscribe(h: &Harness, account: &str, body: Value) -> Value {
    post(
        h,
        None,
        &format!("/v1/accounts/{account}/subscriptions"),
        body,
    )
    .await
    .expect(StatusCode::CREATED)
}

async fn entitled_event(h: &Harness, category: &str) -> String {
    h.create_with(json!({ "title": "Final", "visibility": "entitled", "category": category }))
        .await["event_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn playback(h: &Harness, event: &str, account: &str) -> common::Answer {
    post(
        h,
        None,
        &format!("/v1/events/{event}/playback"),
        json!({ "account_id": account }),
    )
    .await
}

/// The keys `floodlight up` would give the origin: those the control plane generated.
fn verifier(h: &Harness) -> TokenVerifier {
    let text = std::fs::read_to_string(h.db.data_dir.path().join("data/playback.keys")).unwrap();
    let keys: Vec<TokenKey> = text
        .lines()
        .map(|line| TokenKey::parse(line.trim()).unwrap())
        .collect();
    TokenVerifier::new(&keys)
}

#[tokio::test]
async fn an_entitled_account_gets_a_token_for_the_event_and_its_session() {
    let h = harness().await;
    let event = entitled_event(&h, "football").await;
    let viewer = account(&h, "fan@example.com").await;
    let plan = plan(&h, &["football", "tennis"], Some(2)).await;
    let subscription = subscribe(&h, &viewer, json!({ "plan_id": plan })).await;
    assert_eq!(subscription["state"], "active");

    let body = playback(&h, &event, &viewer).await.expect(StatusCode::OK);
    let token = body["token"].as_str().unwrap();
    let session = body["session_id"].as_str().unwrap();
    assert_eq!(
        body["playback_url"],
        format!("http://media.example.net:8081/live/{event}/master.m3u8?token={token}")
    );
    let claims = verifier(&h).verify(token, unix_now()).unwrap();
    assert_eq!(claims.evt, event);
    assert_eq!(claims.sub, viewer);
    assert_eq!(claims.sid, session);
    // Default TTL: 4 hours.
    assert!((claims.exp - claims.iat - 4 * 3600).abs() <= 1);
    let expires_at = time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires_at.unix_timestamp(), claims.exp);

    // The session is active and listed.
    let sessions = h
        .get(&format!("/v1/accounts/{viewer}/sessions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(sessions["items"][0]["session_id"], session);
    assert_eq!(sessions["items"][0]["event_id"], event.as_str());
}

#[tokio::test]
async fn public_events_need_no_token() {
    let h = harness().await;
    let (event, _) = h.create("Open training").await;
    let body = post(&h, None, &format!("/v1/events/{event}/playback"), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "playback_url": format!("http://media.example.net:8081/live/{event}/master.m3u8"),
            "token": null,
            "expires_at": null,
            "session_id": null,
        })
    );
}

#[tokio::test]
async fn refusals_name_the_reason() {
    let h = harness().await;
    let event = entitled_event(&h, "football").await;
    let viewer = account(&h, "fan@example.com").await;
    let answer = playback(&h, &event, &viewer).await;
    assert_eq!(reason(&answer, StatusCode::FORBIDDEN), "no_subscription");

    let tennis = plan(&h, &["tennis"], None).await;
    subscribe(&h, &viewer, json!({ "plan_id": tennis })).await;
    let answer = playback(&h, &event, &viewer).await;
    assert_eq!(reason(&answer, StatusCode::FORBIDDEN), "not_in_plan");

    let other = account(&h, "lapsed@example.com").await;
    let football = plan(&h, &["football"], None).await;
    let now = unix_now();
    subscribe(
        &h,
        &other,
        json!({
            "plan_id": football,
            "valid_from": rfc3339(now - 7200),
            "valid_until": rfc3339(now - 3600),
        }),
    )
    .await;
    let answer = playback(&h, &event, &other).await;
    assert_eq!(
        reason(&answer, StatusCode::FORBIDDEN),
        "subscription_expired"
    );

    let late = account(&h, "late@example.com").await;
    subscribe(
        &h,
        &late,
        json!({ "plan_id": football, "state": "past_due" }),
    )
    .await;
    let answer = playback(&h, &event, &late).await;
    assert_eq!(
        reason(&answer, StatusCode::FORBIDDEN),
        "subscription_past_due"
    );

    // The account is required, and must exist.
    let answer = post(&h, None, &format!("/v1/events/{event}/playback"), json!({})).await;
    assert_eq!(
        answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
        Some("account_id")
    );
    let answer = playback(&h, &event, "nosuchaccount000").await;
    assert_eq!(
        answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
        Some("account_id")
    );
    let answer = playback(&h, "0000000000000000", &viewer).await;
    answer.problem(StatusCode::NOT_FOUND);

    // A cancelled event plays for nobody.
    h.post_empty(&format!("/v1/events/{event}/cancel"))
        .await
        .expect(StatusCode::OK);
    let answer = playback(&h, &event, &viewer).await;
    assert_eq!(reason(&answer, StatusCode::FORBIDDEN), "event_unavailable");
}

#[tokio::test]
async fn a_purchase_entitles_to_that_event_only() {
    let h = harness().await;
    let event = entitled_event(&h, "boxing").await;
    let other_event = entitled_event(&h, "boxing").await;
    let viewer = account(&h, "ppv@example.com").await;
    let uri = format!("/v1/accounts/{viewer}/purchases");
    let first = post(&h, None, &uri, json!({ "event_id": event }))
        .await
        .expect(StatusCode::CREATED);
    // Buying again answers the earlier purchase.
    let again = post(&h, None, &uri, json!({ "event_id": event }))
        .await
        .expect(StatusCode::OK);
    assert_eq!(first["purchase_id"], again["purchase_id"]);
    playback(&h, &event, &viewer).await.expect(StatusCode::OK);
    let answer = playback(&h, &other_event, &viewer).await;
    assert_eq!(reason(&answer, StatusCode::FORBIDDEN), "no_subscription");

    // A reference to nothing: 404 naming the field (the document's own rule).
    let answer = post(&h, None, &uri, json!({ "event_id": "0000000000000000" })).await;
    assert_eq!(
        answer.problem(StatusCode::NOT_FOUND).as_deref(),
        Some("event_id")
    );
    let answer = post(
        &h,
        None,
        "/v1/accounts/nosuchaccount000/purchases",
        json!({ "event_id": event }),
    )
    .await;
    answer.problem(StatusCode::NOT_FOUND);

    let detail = h
        .get(&format!("/v1/accounts/{viewer}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(detail["email"], "ppv@example.com");
    assert_eq!(detail["purchases"][0]["event_id"], event.as_str());
    assert_eq!(detail["subscriptions"], json!([]));
}

#[tokio::test]
async fn the_concurrency_limit_refuses_the_extra_session_until_one_is_revoked() {
    let h = harness().await;
    let event = entitled_event(&h, "football").await;
    let viewer = account(&h, "one@example.com").await;
    let plan = plan(&h, &["football"], Some(1)).await;
    subscribe(&h, &viewer, json!({ "plan_id": plan })).await;

    let first = playback(&h, &event, &viewer).await.expect(StatusCode::OK);
    let answer = playback(&h, &event, &viewer).await;
    assert_eq!(reason(&answer, StatusCode::CONFLICT), "concurrency_limit");
    assert!(answer.json()["detail"].as_str().unwrap().contains("(1)"));

    let session = first["session_id"].as_str().unwrap();
    let uri = format!("/v1/sessions/{session}");
    let answer = h.call(Some(ADMIN_KEY), Method::DELETE, &uri, None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let answer = h.call(Some(ADMIN_KEY), Method::DELETE, &uri, None).await;
    answer.problem(StatusCode::NOT_FOUND);
    let sessions = h
        .get(&format!("/v1/accounts/{viewer}/sessions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(sessions["items"], json!([]));
    playback(&h, &event, &viewer).await.expect(StatusCode::OK);

    // Revocations are audited.
    let audit = h
        .get(&format!("/v1/audit?target_id={session}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit["items"][0]["action"], "session.revoke");
}

#[tokio::test]
async fn geo_lists_are_checked_against_the_cdn_header() {
    let h = harness_with(ControlConfig {
        entitlement: EntitlementConfig {
            geo_country_header: "X-Country".to_string(),
            ..EntitlementConfig::default()
        },
        ..ControlConfig::default()
    })
    .await;
    let event = h
        .create_with(json!({ "title": "Derby", "geo": { "allow": ["US", "CA"] } }))
        .await["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ask = |country: Option<&'static str>| {
        let mut request = Request::post(format!("/v1/events/{event}/playback"))
            .header("content-type", "application/json");
        if let Some(country) = country {
            request = request.header("x-country", country);
        }
        h.send(request.body(Body::from("{}")).unwrap())
    };
    ask(Some("us")).await.expect(StatusCode::OK);
    assert_eq!(
        reason(&ask(Some("FR")).await, StatusCode::FORBIDDEN),
        "geo_blocked"
    );
    // Without a country, an allow list cannot be satisfied.
    assert_eq!(
        reason(&ask(None).await, StatusCode::FORBIDDEN),
        "geo_blocked"
    );
}

#[tokio::test]
async fn accounts_plans_and_subscriptions_are_validated() {
    let h = harness().await;
    let viewer = account(&h, "Mixed@Example.COM").await;
    // Checked as sent, as the OpenAPI schema's pattern says.
    let answer = post(
        &h,
        None,
        "/v1/accounts",
        json!({ "email": " a@example.com" }),
    )
    .await;
    assert_eq!(
        answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
        Some("email")
    );
    let answer = post(
        &h,
        None,
        "/v1/accounts",
        json!({ "email": "mixed@example.com" }),
    )
    .await;
    assert_eq!(reason(&answer, StatusCode::CONFLICT), "email_taken");
    let answer = post(
        &h,
        None,
        "/v1/accounts",
        json!({ "email": "not-an-address" }),
    )
    .await;
    assert_eq!(
        answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
        Some("email")
    );
    let answer = post(&h, None, "/v1/accounts", json!({ "mail": "a@b.c" })).await;
    answer.problem(StatusCode::UNPROCESSABLE_ENTITY);

    // Lookup by address, and cursor pagination.
    account(&h, "second@example.com").await;
    let found = h
        .get("/v1/accounts?email=MIXED@example.com")
        .await
        .expect(StatusCode::OK);
    assert_eq!(found["items"][0]["account_id"], viewer.as_str());
    let page = h.get("/v1/accounts?limit=1").await.expect(StatusCode::OK);
    assert_eq!(page["items"][0]["email"], "second@example.com");
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = h
        .get(&format!("/v1/accounts?limit=1&cursor={cursor}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(page["items"][0]["email"], "mixed@example.com");
    assert_eq!(page["next_cursor"], Value::Null);
    h.get("/v1/accounts?cursor=garbage")
        .await
        .problem(StatusCode::BAD_REQUEST);
    h.get("/v1/accounts/nosuchaccount000")
        .await
        .problem(StatusCode::NOT_FOUND);

    for (body, field) in [
        (json!({ "name": "", "categories": [] }), "name"),
        (
            json!({ "name": "P", "categories": ["ok", "Not ok!"] }),
            "categories[1]",
        ),
        (
            json!({ "name": "P", "categories": [], "max_concurrent_sessions": 0 }),
            "max_concurrent_sessions",
        ),
    ] {
        let answer = post(&h, None, "/v1/plans", body).await;
        assert_eq!(
            answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
            Some(field)
        );
    }
    let plan_id = plan(&h, &["Football", "football", "cup"], None).await;
    let plan = h
        .get(&format!("/v1/plans/{plan_id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(plan["categories"], json!(["cup", "football"]));
    assert_eq!(plan["max_concurrent_sessions"], Value::Null);
    let plans = h.get("/v1/plans").await.expect(StatusCode::OK);
    assert_eq!(plans["items"][0]["plan_id"], plan_id.as_str());
    h.get("/v1/plans/nosuchplan000000")
        .await
        .problem(StatusCode::NOT_FOUND);

    let uri = format!("/v1/accounts/{viewer}/subscriptions");
    let now = unix_now();
    // A reference to nothing: 404 naming the field.
    let answer = post(&h, None, &uri, json!({ "plan_id": "nosuchplan000000" })).await;
    assert_eq!(
        answer.problem(StatusCode::NOT_FOUND).as_deref(),
        Some("plan_id")
    );
    for (body, field) in [
        (
            json!({ "plan_id": plan_id, "valid_from": "yesterday" }),
            "valid_from",
        ),
        (
            json!({ "plan_id": plan_id, "valid_from": rfc3339(now), "valid_until": rfc3339(now) }),
            "valid_until",
        ),
        (json!({ "plan_id": plan_id, "state": "trial" }), "state"),
    ] {
        let answer = post(&h, None, &uri, body).await;
        assert_eq!(
            answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
            Some(field)
        );
    }
    let answer = post(
        &h,
        None,
        "/v1/accounts/nosuchaccount000/subscriptions",
        json!({ "plan_id": plan_id }),
    )
    .await;
    answer.problem(StatusCode::NOT_FOUND);
}

fn webhook_request(body: &str, timestamp: i64, secret: &str) -> Request<Body> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    Request::post("/v1/webhooks/payments")
        .header("content-type", "application/json")
        .header(
            "floodlight-signature",
            format!("t={timestamp},v1={signature}"),
        )
        // A webhook carries no API key; an empty header is none (see Harness::call).
        .header("authorization", "")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn the_signed_webhook_moves_a_subscription_and_entitlement_follows() {
    let h = harness_with(ControlConfig {
        entitlement: EntitlementConfig {
            webhook_secret: Some(Secret::new(WEBHOOK_SECRET)),
            ..EntitlementConfig::default()
        },
        ..ControlConfig::default()
    })
    .await;
    let event = entitled_event(&h, "football").await;
    let viewer = account(&h, "payer@example.com").await;
    let plan = plan(&h, &["football"], None).await;
    let subscription = subscribe(&h, &viewer, json!({ "plan_id": plan })).await;
    let id = subscription["subscription_id"].as_str().unwrap();
    playback(&h, &event, &viewer).await.expect(StatusCode::OK);

    let body = json!({ "subscription_id": id, "state": "past_due" }).to_string();
    let now = unix_now();
    // Wrong secret, stale timestamp, no signature: 401.
    for request in [
        webhook_request(&body, now, "another secret of at least thirty-two chars"),
        webhook_request(&body, now - 3600, WEBHOOK_SECRET),
    ] {
        let answer = h.send(request).await;
        assert_eq!(reason(&answer, StatusCode::UNAUTHORIZED), "bad_signature");
    }
    let mut unsigned = webhook_request(&body, now, WEBHOOK_SECRET);
    unsigned.headers_mut().remove("floodlight-signature");
    h.send(unsigned).await.problem(StatusCode::UNAUTHORIZED);

    let updated = h
        .send(webhook_request(&body, now, WEBHOOK_SECRET))
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["state"], "past_due");
    let answer = playback(&h, &event, &viewer).await;
    assert_eq!(
        reason(&answer, StatusCode::FORBIDDEN),
        "subscription_past_due"
    );

    // Active again, with an end date; then cancelled.
    let until = rfc3339(now + 86_400);
    let body =
        json!({ "subscription_id": id, "state": "active", "valid_until": until }).to_string();
    let updated = h
        .send(webhook_request(&body, now, WEBHOOK_SECRET))
        .await
        .expect(StatusCode::OK);
    assert_eq!(updated["valid_until"], until.as_str());
    playback(&h, &event, &viewer).await.expect(StatusCode::OK);
    let body = json!({ "subscription_id": id, "state": "cancelled" }).to_string();
    h.send(webhook_request(&body, now, WEBHOOK_SECRET))
        .await
        .expect(StatusCode::OK);
    let answer = playback(&h, &event, &viewer).await;
    assert_eq!(
        reason(&answer, StatusCode::FORBIDDEN),
        "subscription_expired"
    );

    let body = json!({ "subscription_id": "nosuch0000000000", "state": "active" }).to_string();
    h.send(webhook_request(&body, now, WEBHOOK_SECRET))
        .await
        .problem(StatusCode::NOT_FOUND);
    let body = json!({ "subscription_id": id, "state": "frozen" }).to_string();
    h.send(webhook_request(&body, now, WEBHOOK_SECRET))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);

    // Audited as the webhook did it.
    let audit = h
        .get(&format!("/v1/audit?target_id={id}"))
        .await
        .expect(StatusCode::OK);
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert!(
        actions.contains(&("subscription.update", "payment-webhook")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|(a, _)| *a == "subscription.create"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn the_webhook_is_off_without_a_secret() {
    let h = harness().await;
    let body = json!({ "subscription_id": "x", "state": "active" }).to_string();
    let answer = h
        .send(webhook_request(&body, unix_now(), WEBHOOK_SECRET))
        .await;
    assert_eq!(
        // Off is absent to a client: 404, not a server error (issue 10).
        reason(&answer, StatusCode::NOT_FOUND),
        "webhook_not_configured"
    );
}

/// Every route with every role: who may call what.
#[tokio::test]
async fn routes_admit_only_their_roles() {
    let h = harness().await;
    let ops = h.api_key("ops", None).await;
    let broadcaster = h.api_key("broadcaster", Some("acme")).await;
    let viewer_service = h.api_key("viewer-service", None).await;
    let event = entitled_event(&h, "football").await;
    let plan_id = plan(&h, &["football"], None).await;
    let account_id = account(&h, "roles@example.com").await;

    // (method, uri, body, roles allowed besides admin)
    let routes: Vec<(Method, String, Option<Value>, &[&str])> = vec![
        (
            Method::POST,
            "/v1/accounts".into(),
            Some(json!({ "email": "x@example.com" })),
            &["viewer-service"],
        ),
        (
            Method::GET,
            "/v1/accounts".into(),
            None,
            &["viewer-service"],
        ),
        (
            Method::GET,
            format!("/v1/accounts/{account_id}"),
            None,
            &["viewer-service"],
        ),
        (
            Method::POST,
            format!("/v1/accounts/{account_id}/subscriptions"),
            Some(json!({ "plan_id": plan_id })),
            &["viewer-service"],
        ),
        (
            Method::POST,
            format!("/v1/accounts/{account_id}/purchases"),
            Some(json!({ "event_id": event })),
            &["viewer-service"],
        ),
        (
            Method::GET,
            format!("/v1/accounts/{account_id}/sessions"),
            None,
            &["viewer-service"],
        ),
        (
            Method::POST,
            "/v1/plans".into(),
            Some(json!({ "name": "P", "categories": [] })),
            &["ops"],
        ),
        (
            Method::GET,
            "/v1/plans".into(),
            None,
            &["ops", "viewer-service"],
        ),
        (
            Method::GET,
            format!("/v1/plans/{plan_id}"),
            None,
            &["ops", "viewer-service"],
        ),
        (
            Method::POST,
            format!("/v1/events/{event}/playback"),
            Some(json!({ "account_id": account_id })),
            &["viewer-service"],
        ),
        (
            Method::DELETE,
            "/v1/sessions/ses_unknown".into(),
            None,
            &["viewer-service"],
        ),
    ];
    for (method, uri, body, allowed) in routes {
        for (role, key) in [
            ("ops", ops.as_str()),
            ("broadcaster", broadcaster.as_str()),
            ("viewer-service", viewer_service.as_str()),
            ("admin", ADMIN_KEY),
        ] {
            let answer = h.call(Some(key), method.clone(), &uri, body.clone()).await;
            if role == "admin" || allowed.contains(&role) {
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&answer.status)
                        || answer.json()["reason"].is_string(),
                    "{role} {method} {uri}: {}",
                    answer.text()
                );
            } else {
                answer.problem(StatusCode::FORBIDDEN);
                assert!(answer.json()["reason"].is_null(), "{role} {method} {uri}");
            }
        }
        // No key at all: 401.
        h.call(None, method.clone(), &uri, body.clone())
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_entitlement_routes() {
    let h = harness().await;
    let document = h.get("/v1/openapi.json").await.expect(StatusCode::OK);
    for (path, method) in [
        ("/v1/accounts", "post"),
        ("/v1/accounts/{account_id}/subscriptions", "post"),
        ("/v1/accounts/{account_id}/purchases", "post"),
        ("/v1/accounts/{account_id}/sessions", "get"),
        ("/v1/plans", "post"),
        ("/v1/webhooks/payments", "post"),
        ("/v1/events/{event_id}/playback", "post"),
        ("/v1/sessions/{session_id}", "delete"),
    ] {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} missing");
        assert_eq!(operation["tags"][0], "entitlement", "{method} {path}");
    }
    // The webhook is authenticated by its signature, not the bearer scheme.
    assert_eq!(
        document["paths"]["/v1/webhooks/payments"]["post"]["security"],
        json!([{}])
    );
    assert!(document["components"]["schemas"]["PlaybackBody"].is_object());
}
