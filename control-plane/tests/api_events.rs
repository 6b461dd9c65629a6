//! The event model through the API: every field, its validation, PATCH, list filters,
//! the lifecycle routes and stream keys.

mod common;

use axum::http::{Method, StatusCode};
use common::{ADMIN_KEY, harness};
use floodlight_control::LifecycleKind;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn in_hours(hours: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::hours(hours))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn every_field_round_trips_and_secrets_stay_write_only() {
    let h = harness().await;
    let (starts, ends) = (in_hours(24), in_hours(27));
    let body = h
        .create_with(json!({
            "title": "Cup final",
            "description": "The big one",
            "starts_at": starts,
            "ends_at": ends,
            "visibility": "entitled",
            "category": "Football",
            "tags": ["cup", "final", "cup"],
            "ladder": "sports_1080",
            "part_target_ms": 300,
            "dvr_window_secs": 7200,
            "record": false,
            "ingest": {
                "protocols": ["srt", "rtsp"],
                "backup": true,
                "srt_passphrase": "correct horse battery",
                "srt_latency_ms": 200,
                "rtsp_source": { "url": "rtsp://cam:s3cret@10.0.0.7:554/main", "transport": "udp" }
            },
            "geo": { "allow": ["us", "CA"], "deny": [] }
        }))
        .await;
    let text = body.to_string();
    assert!(
        !text.contains("correct horse") && !text.contains("s3cret"),
        "{text}"
    );
    assert_eq!(body["state"], "scheduled");
    assert_eq!(body["description"], "The big one");
    assert_eq!(body["starts_at"], starts.as_str());
    assert_eq!(body["ends_at"], ends.as_str());
    assert_eq!(body["visibility"], "entitled");
    assert_eq!(body["category"], "football");
    assert_eq!(body["tags"], json!(["cup", "final"]));
    assert_eq!(body["ladder"], "sports_1080");
    assert_eq!(body["part_target_ms"], 300);
    assert_eq!(body["dvr_window_secs"], 7200);
    assert_eq!(body["record"], false);
    assert_eq!(body["ingest"]["protocols"], json!(["srt", "rtsp"]));
    assert_eq!(body["ingest"]["backup"], true);
    assert_eq!(body["ingest"]["srt_passphrase_set"], true);
    assert_eq!(body["ingest"]["srt_latency_ms"], 200);
    assert_eq!(
        body["ingest"]["rtsp_source"],
        json!({ "url": "rtsp://10.0.0.7:554/main", "transport": "udp" })
    );
    assert_eq!(body["geo"], json!({ "allow": ["US", "CA"], "deny": [] }));
    assert!(body["stream_key"].as_str().unwrap().starts_with("fl_live_"));
    assert!(body["stream_key_id"].is_string());

    let id = body["event_id"].as_str().unwrap();
    let got = h
        .get(&format!("/v1/events/{id}"))
        .await
        .expect(StatusCode::OK);
    assert!(got.get("stream_key").is_none());
    for field in [
        "title",
        "starts_at",
        "tags",
        "ingest",
        "geo",
        "category",
        "record",
    ] {
        if field == "ingest" {
            assert_eq!(got["ingest"]["rtsp_source"], body["ingest"]["rtsp_source"]);
            assert_eq!(got["ingest"]["protocols"], body["ingest"]["protocols"]);
        } else {
            assert_eq!(got[field], body[field], "{field}");
        }
    }

    // Defaults: public, every protocol, no backup, no window, recorded when it ends.
    let plain = h.create_with(json!({ "title": "Friendly" })).await;
    assert_eq!(plain["visibility"], "public");
    assert_eq!(plain["record"], true);
    assert_eq!(
        plain["ingest"]["protocols"],
        json!(["rtmp", "srt", "whip", "rtsp"])
    );
    assert_eq!(plain["ingest"]["srt_passphrase_set"], false);
    assert_eq!(plain["starts_at"], Value::Null);
    assert_eq!(plain["tags"], json!([]));
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let h = harness().await;
    let start = in_hours(2);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "title": "a", "starts_at": "tomorrow" }),
            "starts_at",
        ),
        (
            json!({ "title": "a", "starts_at": start, "ends_at": start }),
            "ends_at",
        ),
        (json!({ "title": "a", "ends_at": in_hours(-1) }), "ends_at"),
        (
            json!({ "title": "a", "visibility": "private" }),
            "visibility",
        ),
        (json!({ "title": "a", "category": "foot ball" }), "category"),
        (json!({ "title": "a", "tags": ["ok", "-bad"] }), "tags[1]"),
        (json!({ "title": "a", "tags": vec!["t"; 21] }), "tags"),
        (json!({ "title": "a", "ladder": "a/b" }), "ladder"),
        (
            json!({ "title": "a", "part_target_ms": 50 }),
            "part_target_ms",
        ),
        (
            json!({ "title": "a", "part_target_ms": 1001 }),
            "part_target_ms",
        ),
        (
            json!({ "title": "a", "part_target_ms": "200" }),
            "part_target_ms",
        ),
        (
            json!({ "title": "a", "dvr_window_secs": 86_401 }),
            "dvr_window_secs",
        ),
        (json!({ "title": "a", "record": "no" }), "record"),
        (
            json!({ "title": "a", "dvr_window_secs": -5 }),
            "dvr_window_secs",
        ),
        (
            json!({ "title": "a", "ingest": { "protocols": [] } }),
            "ingest.protocols",
        ),
        (
            json!({ "title": "a", "ingest": { "protocols": ["rtp"] } }),
            "ingest.protocols[0]",
        ),
        (
            json!({ "title": "a", "ingest": { "srt_passphrase": "short" } }),
            "ingest.srt_passphrase",
        ),
        (
            json!({ "title": "a", "ingest": { "srt_latency_ms": 0 } }),
            "ingest.srt_latency_ms",
        ),
        (
            json!({ "title": "a", "ingest": { "rtsp_source": { "url": "http://cam/x" } } }),
            "ingest.rtsp_source.url",
        ),
        (
            json!({ "title": "a", "ingest": { "protocols": ["rtmp"], "rtsp_source": { "url": "rtsp://cam/x" } } }),
            "ingest.rtsp_source",
        ),
        (
            json!({ "title": "a", "ingest": { "bakup": true } }),
            "ingest.bakup",
        ),
        (
            json!({ "title": "a", "geo": { "allow": ["USA"] } }),
            "geo.allow[0]",
        ),
        (
            json!({ "title": "a", "geo": { "allow": ["US"], "deny": ["us"] } }),
            "geo.deny",
        ),
        (json!({ "title": "a", "owner": "has space" }), "owner"),
    ];
    for (body, field) in cases {
        let answer = h.post_json("/v1/events", body.to_string()).await;
        assert_eq!(
            answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
            Some(field),
            "{body}: {}",
            answer.text()
        );
    }
    assert_eq!(
        h.get("/v1/events").await.expect(StatusCode::OK)["items"],
        json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn patch_changes_a_subset_and_null_clears() {
    let h = harness().await;
    let body = h
        .create_with(json!({
            "title": "Derby", "description": "old", "tags": ["a"], "category": "football",
            "ingest": { "srt_passphrase": "0123456789" }
        }))
        .await;
    let id = body["event_id"].as_str().unwrap();
    let uri = format!("/v1/events/{id}");
    let patched = h
        .patch_json(
            &uri,
            json!({ "title": "Derby (replay)", "description": null, "tags": ["b", "c"],
                    "ingest": { "backup": true } }),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(patched["title"], "Derby (replay)");
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(patched["tags"], json!(["b", "c"]));
    assert_eq!(patched["category"], "football", "untouched");
    assert_eq!(patched["ingest"]["backup"], true);
    assert_eq!(patched["ingest"]["srt_passphrase_set"], true, "untouched");
    assert!(patched["updated_at"].as_str().unwrap() >= body["updated_at"].as_str().unwrap());

    let cleared = h
        .patch_json(&uri, json!({ "ingest": { "srt_passphrase": null } }))
        .await
        .expect(StatusCode::OK);
    assert_eq!(cleared["ingest"]["srt_passphrase_set"], false);

    // Issue 11: a DVR window of 0 turns start-over off; recording can be turned off.
    let patched = h
        .patch_json(&uri, json!({ "dvr_window_secs": 0, "record": false }))
        .await
        .expect(StatusCode::OK);
    assert_eq!(patched["dvr_window_secs"], 0);
    assert_eq!(patched["record"], false);
    assert_eq!(patched["title"], "Derby (replay)", "untouched");

    for (body, field) in [
        (json!({ "title": null }), "title"),
        (json!({ "title": "" }), "title"),
        (json!({ "part_target_ms": 5 }), "part_target_ms"),
        (json!({ "colour": "red" }), "colour"),
    ] {
        let answer = h.patch_json(&uri, body.clone()).await;
        assert_eq!(
            answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
            Some(field),
            "{body}"
        );
    }
    h.patch_json("/v1/events/0123456789abcdef", json!({ "title": "x" }))
        .await
        .problem(StatusCode::NOT_FOUND);

    // A cancelled event does not change any more.
    h.post_empty(&format!("{uri}/cancel"))
        .await
        .expect(StatusCode::OK);
    h.patch_json(&uri, json!({ "title": "x" }))
        .await
        .problem(StatusCode::CONFLICT);
}

#[tokio::test]
async fn list_filters_on_state_start_time_and_tags() {
    let h = harness().await;
    let id = |body: &Value| body["event_id"].as_str().unwrap().to_string();
    let early = id(&h
        .create_with(json!({ "title": "early", "starts_at": in_hours(1), "tags": ["cup"] }))
        .await);
    let late = id(&h
        .create_with(
            json!({ "title": "late", "starts_at": in_hours(48), "tags": ["cup", "final"] }),
        )
        .await);
    let open = id(&h
        .create_with(json!({ "title": "open", "tags": ["final"] }))
        .await);
    h.post_empty(&format!("/v1/events/{open}/cancel"))
        .await
        .expect(StatusCode::OK);

    let ids = |uri: String| {
        let h = &h;
        async move {
            let body = h.get(&uri).await.expect(StatusCode::OK);
            let mut ids: Vec<String> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["event_id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        ids("/v1/events?state=cancelled".into()).await,
        vec![open.clone()]
    );
    assert_eq!(
        ids("/v1/events?state=scheduled,cancelled".into()).await,
        sorted(vec![early.clone(), late.clone(), open.clone()])
    );
    assert_eq!(
        ids(format!("/v1/events?starts_from={}", in_hours(24))).await,
        vec![late.clone()]
    );
    assert_eq!(
        ids(format!("/v1/events?starts_to={}", in_hours(24))).await,
        vec![early.clone()]
    );
    assert_eq!(
        ids("/v1/events?tags=cup".into()).await,
        sorted(vec![early.clone(), late.clone()])
    );
    assert_eq!(
        ids("/v1/events?tags=cup,final".into()).await,
        vec![late.clone()]
    );
    assert_eq!(
        ids("/v1/events?tags=final&state=scheduled".into()).await,
        vec![late.clone()]
    );
    // Filters and pages together: one per page, every match once.
    let first = h
        .get("/v1/events?tags=cup&limit=1")
        .await
        .expect(StatusCode::OK);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = h
        .get(&format!("/v1/events?tags=cup&limit=1&cursor={cursor}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_ne!(
        first["items"][0]["event_id"],
        second["items"][0]["event_id"]
    );

    for (uri, field) in [
        ("/v1/events?state=running", "state"),
        ("/v1/events?starts_from=yesterday", "starts_from"),
        ("/v1/events?starts_to=2026-13-01T00:00:00Z", "starts_to"),
        ("/v1/events?tags=a%20b", "tags"),
    ] {
        assert_eq!(
            h.get(uri).await.problem(StatusCode::BAD_REQUEST).as_deref(),
            Some(field),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn cancel_archive_and_the_transition_record() {
    let h = harness().await;
    let mut bus = h.control.subscribe();
    let (id, _) = h.create("Semi-final").await;
    let scheduled = bus.recv().await.unwrap();
    assert_eq!(scheduled.kind, LifecycleKind::EventScheduled);
    assert_eq!(scheduled.event_id.as_str(), id);

    let base = format!("/v1/events/{id}");
    // Only ended or cancelled events archive.
    h.post_empty(&format!("{base}/archive"))
        .await
        .problem(StatusCode::CONFLICT);
    let cancelled = h
        .post_empty(&format!("{base}/cancel"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(
        bus.recv().await.unwrap().kind,
        LifecycleKind::EventCancelled
    );
    let again = h.post_empty(&format!("{base}/cancel")).await;
    again.problem(StatusCode::CONFLICT);
    assert!(
        again.json()["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled")
    );
    let archived = h
        .post_empty(&format!("{base}/archive"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(archived["state"], "archived");
    assert_eq!(bus.recv().await.unwrap().kind, LifecycleKind::EventArchived);

    let transitions = h
        .get(&format!("{base}/transitions"))
        .await
        .expect(StatusCode::OK);
    let items = transitions["items"].as_array().unwrap();
    let steps: Vec<(Value, Value, Value)> = items
        .iter()
        .map(|t| (t["from"].clone(), t["to"].clone(), t["cause"].clone()))
        .collect();
    assert_eq!(
        steps,
        [
            (Value::Null, json!("scheduled"), json!("created")),
            (json!("scheduled"), json!("cancelled"), json!("api")),
            (json!("cancelled"), json!("archived"), json!("api")),
        ]
    );
    // Who: the bootstrap admin key.
    assert!(items.iter().all(|t| t["actor"] == "bootstrap-admin"));
    assert_eq!(
        items
            .iter()
            .map(|t| t["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for uri in [
        "/v1/events/0123456789abcdef/cancel",
        "/v1/events/0123456789abcdef/archive",
    ] {
        h.post_empty(uri).await.problem(StatusCode::NOT_FOUND);
    }
    h.get("/v1/events/0123456789abcdef/transitions")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stream_keys_are_shown_once_rotated_and_revoked() {
    let h = harness().await;
    let mut bus = h.control.subscribe();
    let created = h.create_with(json!({ "title": "Keys" })).await;
    let id = created["event_id"].as_str().unwrap();
    let primary = created["stream_key"].as_str().unwrap().to_string();
    let primary_id = created["stream_key_id"].as_str().unwrap().to_string();
    let keys_uri = format!("/v1/events/{id}/keys");
    let store = h.control.store();
    let works = |key: String| async move { store.stream_key_event(&key).await.unwrap().is_some() };

    // A backup key needs backup ingest.
    h.post_json(&keys_uri, json!({ "role": "backup" }).to_string())
        .await
        .problem(StatusCode::CONFLICT);
    h.patch_json(
        &format!("/v1/events/{id}"),
        json!({ "ingest": { "backup": true } }),
    )
    .await
    .expect(StatusCode::OK);
    let backup = h
        .post_json(&keys_uri, json!({ "role": "backup" }).to_string())
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(backup["role"], "backup");
    let backup_key = backup["stream_key"].as_str().unwrap().to_string();
    assert!(backup_key.starts_with("fl_live_"));
    assert_eq!(
        backup["rtmp_url"],
        format!("rtmp://media.example.net:1936/live/{backup_key}")
    );
    assert!(works(backup_key.clone()).await);
    h.post_json(&keys_uri, json!({ "role": "spare" }).to_string())
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);

    // The list shows metadata, never a key.
    let list = h.get(&keys_uri).await;
    let text = list.text();
    assert!(!text.contains(&primary) && !text.contains(&backup_key));
    let items = list.expect(StatusCode::OK)["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], primary_id.as_str());
    assert_eq!(items[0]["role"], "primary");
    assert!(items[0].get("stream_key").is_none());

    // Rotate: a new key of the same role; the old one stops working at once.
    let rotated = h
        .post_empty(&format!("{keys_uri}/{primary_id}/rotate"))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(rotated["role"], "primary");
    let new_primary = rotated["stream_key"].as_str().unwrap().to_string();
    assert!(works(new_primary).await);
    assert!(!works(primary.clone()).await);
    let message = bus.recv().await.unwrap();
    assert_eq!(message.kind, LifecycleKind::EventScheduled);
    let message = bus.recv().await.unwrap();
    assert_eq!(message.kind, LifecycleKind::KeyRevoked);
    assert_eq!(message.key_id.as_deref(), Some(primary_id.as_str()));
    h.post_empty(&format!("{keys_uri}/{primary_id}/rotate"))
        .await
        .problem(StatusCode::CONFLICT);

    // Revoke.
    let backup_id = backup["id"].as_str().unwrap();
    let revoked = h
        .call(
            Some(ADMIN_KEY),
            Method::DELETE,
            &format!("{keys_uri}/{backup_id}"),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(revoked["revoked_at"].is_string());
    assert!(!works(backup_key).await);
    assert_eq!(bus.recv().await.unwrap().kind, LifecycleKind::KeyRevoked);
    // Revoking again changes nothing and announces nothing.
    h.call(
        Some(ADMIN_KEY),
        Method::DELETE,
        &format!("{keys_uri}/{backup_id}"),
        None,
    )
    .await
    .expect(StatusCode::OK);
    assert!(bus.try_recv().is_err());
    h.call(
        Some(ADMIN_KEY),
        Method::DELETE,
        &format!("{keys_uri}/nosuchkey0000000"),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    h.get("/v1/events/0123456789abcdef/keys")
        .await
        .problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn active_stream_keys_per_event_are_limited() {
    let h = common::harness_with(floodlight_control::ControlConfig {
        max_stream_keys_per_event: 2,
        ..Default::default()
    })
    .await;
    let (id, _) = h.create("Busy").await;
    let uri = format!("/v1/events/{id}/keys");
    h.post_json(&uri, "{}").await.expect(StatusCode::CREATED);
    let refused = h.post_json(&uri, "{}").await;
    refused.problem(StatusCode::CONFLICT);
    assert!(refused.text().contains("max_stream_keys_per_event"));
}

/// Issue 10, finding 6: a NUL character in a title was stored on SQLite and a server
/// error on PostgreSQL. Now both answer 4xx naming the field or parameter.
#[tokio::test]
async fn nul_characters_are_refused_on_both_backends() {
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let h = common::harness_on(backend, Default::default()).await;
        let answer = h
            .post_json("/v1/events", r#"{"title": "Cup\u0000final"}"#)
            .await;
        assert_eq!(
            answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
            Some("title")
        );
        let answer = h
            .post_json("/v1/events", r#"{"title": "Cup", "tags": ["a", "\u0000"]}"#)
            .await;
        assert_eq!(
            answer.problem(StatusCode::UNPROCESSABLE_ENTITY).as_deref(),
            Some("tags[1]")
        );
        let answer = h.get("/v1/events?tag=%00").await;
        assert_eq!(
            answer.problem(StatusCode::BAD_REQUEST).as_deref(),
            Some("tag")
        );
    }
}
