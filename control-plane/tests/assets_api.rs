//! `/v1/assets` through the API, on SQLite and PostgreSQL: what a new asset needs (each
//! refusal names its field), the answer's shape, who sees what, and the list's paging
//! and filters. No job runner here: assets stay queued (`asset_jobs.rs` runs them).

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::archive::{T0, TestArchive, at};
use common::{Backend, Harness, harness_on, harness_with_assets};
use floodlight_control::ControlConfig;
use serde_json::{Value, json};

async fn assets(backend: Backend) -> (Harness, Arc<TestArchive>) {
    let archive = Arc::new(TestArchive::default());
    let h = harness_with_assets(backend, ControlConfig::default(), Some(archive.clone())).await;
    (h, archive)
}

macro_rules! both_backends {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                run(Backend::Postgres).await;
            }
        }
    };
}

both_backends!(
    a_new_asset_is_queued_and_shows_where_it_will_play,
    |backend| {
        let (h, archive) = assets(backend).await;
        let event = h.published("Cup final", None).await;
        h.end(&event).await;
        archive.holds(&event, T0, T0 + 3_600_000);

        let answer = h
        .post_json(
            "/v1/assets",
            json!({
                "title": "Second half",
                "source": { "event_id": event, "start": at(T0 + 60_000), "end": at(T0 + 80_500) },
                "precision": "frame"
            })
            .to_string(),
        )
        .await;
        let asset = answer.expect(StatusCode::ACCEPTED);
        let id = asset["asset_id"].as_str().unwrap();
        assert_eq!(answer.headers["location"], format!("/v1/assets/{id}"));
        assert_eq!(asset["title"], "Second half");
        assert_eq!(asset["state"], "queued");
        assert_eq!(asset["progress"], 0.0);
        assert_eq!(asset["precision"], "frame");
        assert_eq!(asset["visibility"], "public");
        assert_eq!(asset["recording"], false);
        assert_eq!(
            asset["source"],
            json!({ "event_id": event, "start": at(T0 + 60_000), "end": at(T0 + 80_500) })
        );
        assert_eq!(asset["range"], Value::Null);
        assert_eq!(asset["duration_s"], Value::Null);
        assert_eq!(asset["renditions"], json!([]));
        assert_eq!(asset["error"], Value::Null);
        assert_eq!(asset["started_at"], Value::Null);
        assert_eq!(
            asset["playback"],
            json!({ "hls": format!("http://media.example.net:8081/vod/{id}/master.m3u8"), "poster": null })
        );
        let got = h
            .get(&format!("/v1/assets/{id}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(got, asset);

        // Without start and end: the whole event, titled like it; precision segment.
        let whole = h
            .post_json(
                "/v1/assets",
                json!({ "source": { "event_id": event } }).to_string(),
            )
            .await
            .expect(StatusCode::ACCEPTED);
        assert_eq!(whole["title"], "Cup final");
        assert_eq!(whole["precision"], "segment");
        assert_eq!(whole["source"]["start"], Value::Null);
        assert_eq!(whole["source"]["end"], Value::Null);

        // Audited.
        let audit = h
            .get(&format!("/v1/audit?target_id={id}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(audit["items"][0]["action"], "asset.create");
    }
);

both_backends!(every_refusal_names_its_field, |backend| {
    let (h, archive) = assets(backend).await;
    let event = h.published("Derby", None).await;
    h.end(&event).await;
    archive.holds(&event, T0, T0 + 600_000);
    let never = h.create_with(json!({ "title": "Tomorrow" })).await["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let empty = h.published("Nothing archived", None).await;
    h.end(&empty).await;
    let live = h.published("On air", None).await;
    archive.holds(&live, T0, T0 + 600_000);

    let source =
        |start: i64, end: i64| json!({ "event_id": event, "start": at(start), "end": at(end) });
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({ "title": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source",
        ),
        (
            json!({ "title": " ", "source": { "event_id": event } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "title",
        ),
        (
            json!({ "title": "x".repeat(201), "source": { "event_id": event } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "title",
        ),
        (
            json!({ "source": { "event_id": event }, "precision": "pixel" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "precision",
        ),
        (
            json!({ "source": { "event_id": event, "colour": 1 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.colour",
        ),
        (
            json!({ "source": { "event_id": "nope" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.event_id",
        ),
        (
            json!({ "source": { "event_id": "0123456789abcdef" } }),
            StatusCode::NOT_FOUND,
            "source.event_id",
        ),
        (
            json!({ "source": { "event_id": never } }),
            StatusCode::CONFLICT,
            "source.event_id",
        ),
        (
            json!({ "source": { "event_id": empty } }),
            StatusCode::CONFLICT,
            "source.event_id",
        ),
        (
            json!({ "source": { "event_id": event, "start": "yesterday" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.start",
        ),
        (
            json!({ "source": { "event_id": event, "end": 5 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.end",
        ),
        (
            json!({ "source": source(T0 + 10_000, T0 + 10_000) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.end",
        ),
        (
            json!({ "source": source(T0 + 20_000, T0 + 10_000) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.end",
        ),
        (
            json!({ "source": source(T0 - 1, T0 + 10_000) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.start",
        ),
        (
            json!({ "source": source(T0 + 10_000, T0 + 600_001) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.end",
        ),
        (
            json!({ "source": { "event_id": live } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "source.end",
        ),
    ];
    for (body, status, field) in cases {
        let answer = h.post_json("/v1/assets", body.to_string()).await;
        assert_eq!(answer.problem(status).as_deref(), Some(field), "{body}");
    }
    // The range refusal says what the archive holds.
    let answer = h
        .post_json(
            "/v1/assets",
            json!({ "source": source(T0 - 1, T0 + 5) }).to_string(),
        )
        .await;
    answer.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer.json()["detail"].as_str().unwrap().contains(&format!(
            "the archive holds event {event} from {} to {}",
            at(T0),
            at(T0 + 600_000)
        )),
        "{}",
        answer.text()
    );
    // A live event with an end inside what is archived so far is fine.
    h.post_json(
        "/v1/assets",
        json!({ "source": { "event_id": live, "start": at(T0), "end": at(T0 + 30_000) } })
            .to_string(),
    )
    .await
    .expect(StatusCode::ACCEPTED);
    // Malformed JSON: 400.
    h.post_json("/v1/assets", "{\"source\": ")
        .await
        .problem(StatusCode::BAD_REQUEST);

    // The archive's store is down: 503 saying so, nothing made.
    archive.set_down(Some("connection refused"));
    let answer = h
        .post_json(
            "/v1/assets",
            json!({ "source": { "event_id": event } }).to_string(),
        )
        .await;
    answer.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["reason"], "archive_unavailable");
    assert!(answer.text().contains("connection refused"));
});

both_backends!(without_an_archive_assets_are_refused_not_faked, |backend| {
    let h = harness_on(backend, ControlConfig::default()).await;
    let event = h.published("No archive here", None).await;
    h.end(&event).await;
    let answer = h
        .post_json(
            "/v1/assets",
            json!({ "source": { "event_id": event } }).to_string(),
        )
        .await;
    answer.problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["reason"], "archive_not_configured");
    let list = h.get("/v1/assets").await.expect(StatusCode::OK);
    assert_eq!(list["items"], json!([]));
});

both_backends!(roles_and_ownership, |backend| {
    let (h, archive) = assets(backend).await;
    let mine = h.published("Mine", Some("acme")).await;
    let theirs = h.published("Theirs", Some("other")).await;
    for event in [&mine, &theirs] {
        h.end(event).await;
        archive.holds(event, T0, T0 + 60_000);
    }
    let broadcaster = h.api_key("broadcaster", Some("acme")).await;
    let viewer = h.api_key("viewer-service", None).await;
    let create = |event: &str| json!({ "source": { "event_id": event } });

    let answer = h
        .call(
            Some(&broadcaster),
            Method::POST,
            "/v1/assets",
            Some(create(&theirs)),
        )
        .await;
    assert_eq!(
        answer.problem(StatusCode::NOT_FOUND).as_deref(),
        Some("source.event_id")
    );
    let own = h
        .call(
            Some(&broadcaster),
            Method::POST,
            "/v1/assets",
            Some(create(&mine)),
        )
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(own["owner"], "acme");
    let other = h
        .post_json("/v1/assets", create(&theirs).to_string())
        .await
        .expect(StatusCode::ACCEPTED);
    let other_uri = format!("/v1/assets/{}", other["asset_id"].as_str().unwrap());

    h.call(
        Some(&viewer),
        Method::POST,
        "/v1/assets",
        Some(create(&mine)),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let listed = h
        .call(Some(&viewer), Method::GET, "/v1/assets", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    // A broadcaster sees only its own.
    let listed = h
        .call(Some(&broadcaster), Method::GET, "/v1/assets", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["asset_id"], own["asset_id"]);
    for method in [Method::GET, Method::DELETE] {
        h.call(Some(&broadcaster), method, &other_uri, None)
            .await
            .problem(StatusCode::NOT_FOUND);
    }
    h.call(Some(&viewer), Method::DELETE, &other_uri, None)
        .await
        .problem(StatusCode::FORBIDDEN);
    h.call(
        Some(&broadcaster),
        Method::POST,
        &format!("{other_uri}/cancel"),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
});

both_backends!(lists_page_newest_first_and_filter, |backend| {
    let (h, archive) = assets(backend).await;
    let first = h.published("First", None).await;
    let second = h.published("Second", None).await;
    for event in [&first, &second] {
        h.end(event).await;
        archive.holds(event, T0, T0 + 60_000);
    }
    let mut made = Vec::new();
    for event in [&first, &second, &first] {
        let asset = h
            .post_json(
                "/v1/assets",
                json!({ "source": { "event_id": event } }).to_string(),
            )
            .await
            .expect(StatusCode::ACCEPTED);
        made.push(asset["asset_id"].as_str().unwrap().to_string());
    }
    // Newest first, one per page.
    let mut seen = Vec::new();
    let mut uri = "/v1/assets?limit=1".to_string();
    loop {
        let page = h.get(&uri).await.expect(StatusCode::OK);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["asset_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/assets?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made);

    let of_first = h
        .get(&format!("/v1/assets?event_id={first}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(of_first["items"].as_array().unwrap().len(), 2);
    let both = h
        .get(&format!(
            "/v1/assets?event_id={first},{second}&state=queued,processing"
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(both["items"].as_array().unwrap().len(), 3);
    let ready = h.get("/v1/assets?state=ready").await.expect(StatusCode::OK);
    assert_eq!(ready["items"], json!([]));

    // A cancelled asset stays listed as cancelled; a deleted one is gone at once.
    let cancelled = h
        .post_empty(&format!("/v1/assets/{}/cancel", made[0]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["finished_at"].is_string());
    let again = h
        .post_empty(&format!("/v1/assets/{}/cancel", made[0]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again["state"], "cancelled");
    let answer = h
        .call(
            Some(common::ADMIN_KEY),
            Method::DELETE,
            &format!("/v1/assets/{}", made[1]),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    h.get(&format!("/v1/assets/{}", made[1]))
        .await
        .problem(StatusCode::NOT_FOUND);
    let all = h.get("/v1/assets").await.expect(StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let audit = h
        .get(&format!("/v1/audit?target_id={}", made[1]))
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit["items"][0]["action"], "asset.delete");

    for (uri, field) in [
        ("/v1/assets?state=done", "state"),
        ("/v1/assets?event_id=nope", "event_id"),
        ("/v1/assets?limit=0", "limit"),
        ("/v1/assets?cursor=x", "cursor"),
    ] {
        assert_eq!(
            h.get(uri).await.problem(StatusCode::BAD_REQUEST).as_deref(),
            Some(field),
            "{uri}"
        );
    }
    for uri in ["/v1/assets/0123456789abcdef", "/v1/assets/nope"] {
        h.get(uri).await.problem(StatusCode::NOT_FOUND);
    }
    h.post_empty("/v1/assets/0123456789abcdef/cancel")
        .await
        .problem(StatusCode::NOT_FOUND);
});
