//! Who may call what: API keys (missing, unknown, revoked), every route under every role,
//! broadcasters confined to their own events, the API-key routes and the audit log.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use common::{ADMIN_KEY, Harness, harness, harness_with};
use floodlight_control::ControlConfig;
use serde_json::{Value, json};

/// Keys of every role: admin (the bootstrap key), ops, a broadcaster for "acme", the
/// viewer service.
struct Keys {
    admin: String,
    ops: String,
    broadcaster: String,
    viewer: String,
}

async fn keys(h: &Harness) -> Keys {
    Keys {
        admin: ADMIN_KEY.to_string(),
        ops: h.api_key("ops", None).await,
        broadcaster: h.api_key("broadcaster", Some("acme")).await,
        viewer: h.api_key("viewer-service", None).await,
    }
}

#[tokio::test]
async fn every_v1_route_needs_a_valid_key() {
    let h = harness().await;
    let (id, _) = h.create("Locked").await;
    let routes = [
        (Method::POST, "/v1/events".to_string()),
        (Method::GET, "/v1/events".to_string()),
        (Method::GET, format!("/v1/events/{id}")),
        (Method::PATCH, format!("/v1/events/{id}")),
        (Method::POST, format!("/v1/events/{id}/cancel")),
        (Method::POST, format!("/v1/events/{id}/archive")),
        (Method::GET, format!("/v1/events/{id}/transitions")),
        (Method::POST, format!("/v1/events/{id}/keys")),
        (Method::GET, format!("/v1/events/{id}/keys")),
        (Method::POST, format!("/v1/events/{id}/keys/k/rotate")),
        (Method::DELETE, format!("/v1/events/{id}/keys/k")),
        (Method::POST, "/v1/api-keys".to_string()),
        (Method::GET, "/v1/api-keys".to_string()),
        (Method::GET, "/v1/api-keys/k".to_string()),
        (Method::DELETE, "/v1/api-keys/k".to_string()),
        (Method::GET, "/v1/audit".to_string()),
    ];
    for (method, uri) in &routes {
        for key in [None, Some("fl_api_unknown"), Some("")] {
            let answer = h
                .call(key, method.clone(), uri, Some(json!({ "title": "x" })))
                .await;
            answer.problem(StatusCode::UNAUTHORIZED);
            // RFC 6750 §3: say which scheme to use.
            assert_eq!(
                answer.headers[header::WWW_AUTHENTICATE],
                "Bearer",
                "{method} {uri}"
            );
        }
    }
    // Another scheme is no key either.
    let answer = h
        .send(
            axum::http::Request::get("/v1/events")
                .header(header::AUTHORIZATION, format!("Basic {ADMIN_KEY}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    answer.problem(StatusCode::UNAUTHORIZED);
    // Health, readiness, metrics and the API description stay open.
    for uri in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/openapi.json",
        "/v1/docs",
    ] {
        let answer = h.call(None, Method::GET, uri, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn each_route_serves_the_roles_it_names_and_403s_the_rest() {
    let h = harness().await;
    let k = keys(&h).await;
    // What each role may do, route by route ("A" admin, "O" ops, "B" broadcaster, "V"
    // viewer service). The broadcaster acts on its own event.
    let own = h
        .call(
            Some(&k.broadcaster),
            Method::POST,
            "/v1/events",
            Some(json!({ "title": "own" })),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = own["event_id"].as_str().unwrap().to_string();
    let key_id = own["stream_key_id"].as_str().unwrap().to_string();
    let routes: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, "/v1/events".into(), None, "AOBV"),
        (
            Method::POST,
            "/v1/events".into(),
            Some(json!({ "title": "t" })),
            "AOB",
        ),
        (Method::GET, format!("/v1/events/{id}"), None, "AOBV"),
        (
            Method::PATCH,
            format!("/v1/events/{id}"),
            Some(json!({ "description": "d" })),
            "AOB",
        ),
        (
            Method::GET,
            format!("/v1/events/{id}/transitions"),
            None,
            "AOBV",
        ),
        (Method::GET, format!("/v1/events/{id}/keys"), None, "AOB"),
        (
            Method::POST,
            format!("/v1/events/{id}/keys"),
            Some(json!({})),
            "AOB",
        ),
        (Method::GET, "/v1/api-keys".into(), None, "A"),
        (
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({ "role": "ops" })),
            "A",
        ),
        (
            Method::GET,
            "/v1/api-keys/bootstrap-admin".into(),
            None,
            "A",
        ),
        (Method::GET, "/v1/audit".into(), None, "AO"),
    ];
    let roles = [
        ('A', &k.admin, "admin"),
        ('O', &k.ops, "ops"),
        ('B', &k.broadcaster, "broadcaster"),
        ('V', &k.viewer, "viewer-service"),
    ];
    for (method, uri, body, allowed) in &routes {
        for (letter, key, role) in roles {
            let answer = h.call(Some(key), method.clone(), uri, body.clone()).await;
            if allowed.contains(letter) {
                assert!(
                    answer.status.is_success(),
                    "{role} {method} {uri}: {} {}",
                    answer.status,
                    answer.text()
                );
            } else {
                answer.problem(StatusCode::FORBIDDEN);
                let detail = answer.json()["detail"].as_str().unwrap().to_string();
                assert!(detail.contains(role), "{role} {method} {uri}: {detail}");
            }
        }
    }
    // The state-changing routes last, each once per allowed role on a fresh target.
    for (letter, key, role) in roles {
        let allowed = "AOB".contains(letter);
        let target = h
            .call(
                Some(&k.broadcaster),
                Method::POST,
                "/v1/events",
                Some(json!({ "title": "t" })),
            )
            .await
            .expect(StatusCode::CREATED);
        let tid = target["event_id"].as_str().unwrap();
        let tkey = target["stream_key_id"].as_str().unwrap();
        for (method, uri) in [
            (Method::POST, format!("/v1/events/{tid}/keys/{tkey}/rotate")),
            (Method::DELETE, format!("/v1/events/{tid}/keys/{tkey}")),
            (Method::POST, format!("/v1/events/{tid}/cancel")),
            (Method::POST, format!("/v1/events/{tid}/archive")),
        ] {
            let answer = h.call(Some(key), method.clone(), &uri, None).await;
            if allowed {
                // Rotating first leaves the key revoked for DELETE: both succeed.
                assert!(
                    answer.status.is_success(),
                    "{role} {method} {uri}: {}",
                    answer.text()
                );
            } else {
                answer.problem(StatusCode::FORBIDDEN);
            }
        }
        let revoke = h
            .call(
                Some(key),
                Method::DELETE,
                "/v1/api-keys/nosuchkey0000000",
                None,
            )
            .await;
        if letter == 'A' {
            revoke.problem(StatusCode::NOT_FOUND);
        } else {
            revoke.problem(StatusCode::FORBIDDEN);
        }
    }
    assert!(!key_id.is_empty());
}

#[tokio::test]
async fn broadcasters_see_and_change_only_their_own_events() {
    let h = harness().await;
    let acme = h.api_key("broadcaster", Some("acme")).await;
    let rival = h.api_key("broadcaster", Some("rival")).await;
    let mine = h
        .call(
            Some(&acme),
            Method::POST,
            "/v1/events",
            Some(json!({ "title": "acme live" })),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(mine["owner"], "acme");
    let id = mine["event_id"].as_str().unwrap();
    let (ops_event, _) = h.create("ops event").await;

    // The rival learns nothing: 404 on every route of acme's event.
    for (method, uri, body) in [
        (Method::GET, format!("/v1/events/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/events/{id}"),
            Some(json!({ "title": "mine" })),
        ),
        (Method::POST, format!("/v1/events/{id}/cancel"), None),
        (Method::GET, format!("/v1/events/{id}/transitions"), None),
        (Method::GET, format!("/v1/events/{id}/keys"), None),
        (
            Method::POST,
            format!("/v1/events/{id}/keys"),
            Some(json!({})),
        ),
    ] {
        h.call(Some(&rival), method.clone(), &uri, body)
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    // Lists: each broadcaster its own; admin everything.
    let list = |key: String| {
        let h = &h;
        async move {
            let body = h
                .call(Some(&key), Method::GET, "/v1/events", None)
                .await
                .expect(StatusCode::OK);
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(acme.clone()).await, [id.to_string()]);
    assert!(list(rival.clone()).await.is_empty());
    assert_eq!(list(ADMIN_KEY.to_string()).await.len(), 2);
    h.call(
        Some(&acme),
        Method::GET,
        &format!("/v1/events/{ops_event}"),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    // Only admin and ops assign owners; a broadcaster cannot give its event away.
    h.call(
        Some(&acme),
        Method::PATCH,
        &format!("/v1/events/{id}"),
        Some(json!({ "owner": "rival" })),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let moved = h
        .patch_json(&format!("/v1/events/{id}"), json!({ "owner": "rival" }))
        .await
        .expect(StatusCode::OK);
    assert_eq!(moved["owner"], "rival");
    assert_eq!(list(rival).await, [id.to_string()]);
    assert!(list(acme).await.is_empty());
}

#[tokio::test]
async fn api_keys_are_issued_listed_and_revoked_by_admins() {
    let h = harness().await;
    let created = h
        .post_json(
            "/v1/api-keys",
            json!({ "role": "broadcaster", "principal": "acme", "label": "OBS truck" }).to_string(),
        )
        .await;
    let location = created.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let created = created.expect(StatusCode::CREATED);
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("fl_api_"));
    assert_eq!(location, format!("/v1/api-keys/{id}"));
    assert_eq!(created["role"], "broadcaster");
    assert_eq!(created["principal"], "acme");
    assert_eq!(created["label"], "OBS truck");
    assert_eq!(created["created_by"], "bootstrap-admin");

    // The key works at once, and is never shown again.
    h.call(Some(&key), Method::GET, "/v1/events", None)
        .await
        .expect(StatusCode::OK);
    let list = h.get("/v1/api-keys").await;
    assert!(!list.text().contains(&key));
    let list = list.expect(StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let one = h
        .get(&format!("/v1/api-keys/{id}"))
        .await
        .expect(StatusCode::OK);
    assert!(one.get("key").is_none());
    let paged = h.get("/v1/api-keys?limit=1").await.expect(StatusCode::OK);
    let cursor = paged["next_cursor"].as_str().unwrap();
    let rest = h
        .get(&format!("/v1/api-keys?limit=1&cursor={cursor}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_ne!(paged["items"][0]["id"], rest["items"][0]["id"]);

    // Revoked: refused on its next request.
    let revoked = h
        .call(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("/v1/api-keys/{id}"),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    h.call(Some(&key), Method::GET, "/v1/events", None)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // The revoked key is gone as a resource; the list keeps it for the record.
    h.get(&format!("/v1/api-keys/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND);

    // The only admin key cannot be revoked; with a second admin, it can.
    h.call(
        Some(ADMIN_KEY),
        Method::DELETE,
        "/v1/api-keys/bootstrap-admin",
        None,
    )
    .await
    .problem(StatusCode::CONFLICT);
    let second_admin = h.api_key("admin", None).await;
    h.call(
        Some(&second_admin),
        Method::DELETE,
        "/v1/api-keys/bootstrap-admin",
        None,
    )
    .await
    .expect(StatusCode::OK);
    h.call(Some(ADMIN_KEY), Method::GET, "/v1/events", None)
        .await
        .problem(StatusCode::UNAUTHORIZED);

    for (body, field) in [
        (json!({ "role": "root" }), "role"),
        (json!({}), "role"),
        (json!({ "role": "ops", "principal": "a b" }), "principal"),
        (json!({ "role": "ops", "label": "x".repeat(201) }), "label"),
        (json!({ "role": "ops", "scopes": [] }), "scopes"),
    ] {
        let answer = h
            .call(
                Some(&second_admin),
                Method::POST,
                "/v1/api-keys",
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
            Some(field),
            "{body}"
        );
    }
    h.call(
        Some(&second_admin),
        Method::GET,
        "/v1/api-keys/nosuchkey0000000",
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    h.call(
        Some(&second_admin),
        Method::GET,
        "/v1/api-keys?cursor=zzz",
        None,
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_audit_log_names_who_did_what_newest_first() {
    let h = harness().await;
    let ops = h.api_key("ops", None).await;
    let created = h
        .call(
            Some(&ops),
            Method::POST,
            "/v1/events",
            Some(json!({ "title": "Audited" })),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created["event_id"].as_str().unwrap();
    h.call(
        Some(&ops),
        Method::POST,
        &format!("/v1/events/{id}/cancel"),
        None,
    )
    .await
    .expect(StatusCode::OK);

    let audit = h
        .call(Some(&ops), Method::GET, "/v1/audit", None)
        .await
        .expect(StatusCode::OK);
    let entries = audit["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "event.cancel",
            "event.create",
            "api_key.create",
            "api_key.bootstrap"
        ]
    );
    let cancel = &entries[0];
    assert_eq!(cancel["actor_role"], "ops");
    assert_eq!(cancel["target_kind"], "event");
    assert_eq!(cancel["target_id"], id);
    assert_eq!(cancel["detail"]["to"], "cancelled");
    assert_eq!(entries[2]["actor"], "bootstrap-admin");
    assert_eq!(entries[2]["actor_role"], "admin");
    // The ops key created by the admin is the actor of the event changes.
    assert_eq!(cancel["actor"], entries[2]["target_id"]);
    assert!(entries.iter().all(|e| e["at"].is_string()));
    assert!(!audit.to_string().contains(&ops), "never a key");

    let about = h
        .get(&format!("/v1/audit?target_id={id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(about["items"].as_array().unwrap().len(), 2);
    let page = h.get("/v1/audit?limit=3").await.expect(StatusCode::OK);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = h
        .get(&format!("/v1/audit?limit=3&cursor={cursor}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["action"], "api_key.bootstrap");
    assert_eq!(rest["next_cursor"], Value::Null);
    h.get("/v1/audit?cursor=nope")
        .await
        .problem(StatusCode::BAD_REQUEST);
    h.get("/v1/audit?limit=0")
        .await
        .problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_fresh_database_without_a_configured_key_bootstraps_one_to_print() {
    let db = common::TestDb::new(common::Backend::Sqlite).await;
    let data = db.data_dir.path().join("data");
    let open = || {
        floodlight_control::Control::new(
            floodlight_control::ControlConfig::default(),
            &data,
            floodlight_control::PublicUrls::default(),
            std::sync::Arc::new(common::FakeLive::default()),
            String::new,
        )
    };
    let control = open().await.unwrap();
    let key = control.bootstrap_admin_key().expect("a key to print");
    assert!(control.bootstrap_admin_key().is_none(), "handed out once");
    drop(control);
    let again = open().await.unwrap();
    assert!(again.bootstrap_admin_key().is_none(), "not on a restart");
    let caller = again.store().authenticate(&key).await.unwrap().unwrap();
    assert_eq!(caller.role, floodlight_control::Role::Admin);
}

/// Failed API keys are throttled per address, never locked out (issue 10): past
/// `api_key_failures_max`, an unknown key is answered 429 after the delay; a valid key
/// from the same address still works, and other addresses are untouched.
#[tokio::test]
async fn failed_api_keys_are_throttled_per_address_not_locked_out() {
    let h = harness_with(ControlConfig {
        api_key_failures_max: 3,
        credential_failure_delay_ms: 200,
        ..ControlConfig::default()
    })
    .await;
    let from = |key: &str, ip: [u8; 4]| {
        let mut request = Request::get("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        request
    };
    let venue = [192, 0, 2, 1];
    for _ in 0..3 {
        h.send(from("fl_api_guess", venue))
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    let started = Instant::now();
    let throttled = h.send(from("fl_api_guess", venue)).await;
    throttled.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(throttled.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(throttled.json()["reason"], "rate_limited");
    h.send(from(ADMIN_KEY, venue)).await.expect(StatusCode::OK);
    h.send(from("fl_api_guess", [198, 51, 100, 7]))
        .await
        .problem(StatusCode::UNAUTHORIZED);
}
