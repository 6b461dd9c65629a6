//! The control API through its router (`Router::oneshot`, no socket), against a real
//! SQLite file in a temporary data dir, with a fake live-status neighbour. Requests carry
//! the configured admin key unless a test says otherwise.

mod common;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{harness, harness_with};
use floodlight_control::{
    ArchiveGap, ArchiveHealth, ArchiveState, ControlConfig, IngestProtocol, LiveStatus,
    PublisherStatus, RenditionStatus, ShedRendition,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

#[tokio::test]
async fn create_answers_201_with_the_key_and_where_to_publish_and_watch() {
    let h = harness().await;
    let answer = h
        .post_json("/v1/events", r#"{"title": "  Cup final  "}"#)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let body = answer.json();
    let id = body["event_id"].as_str().unwrap();
    let key = body["stream_key"].as_str().unwrap();
    assert_eq!(
        answer.headers[header::LOCATION],
        format!("/v1/events/{id}").as_str()
    );
    assert_eq!(id.len(), 16);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    );
    assert!(key.starts_with("fl_live_"), "{key}");
    assert_eq!(body["title"], "Cup final");
    assert_eq!(body["state"], "scheduled");
    let created_at = body["created_at"].as_str().unwrap();
    time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
        .unwrap();
    // ARCHITECTURE.md, "The public contract": rtmp://HOST:PORT/live/{stream_key} and
    // http://HOST:PORT/live/{event_id}/master.m3u8, from the URLs the binary passes in.
    assert_eq!(
        body["ingest"]["rtmp"],
        json!({
            "url": "rtmp://media.example.net:1936/live",
            "stream_key": key,
            "full_url": format!("rtmp://media.example.net:1936/live/{key}"),
        })
    );
    assert_eq!(
        body["playback"]["hls"],
        format!("http://media.example.net:8081/live/{id}/master.m3u8")
    );
    assert!(body.get("live").is_none());
}

#[tokio::test]
async fn the_issued_key_authorizes_its_event_and_no_other_key_does() {
    let h = harness().await;
    let (id, key) = h.create("Derby").await;
    let (other_id, other_key) = h.create("Semi-final").await;
    let store = h.control.store();
    let event_of = |key: String| async move {
        store
            .stream_key_event(&key)
            .await
            .unwrap()
            .map(|keyed| keyed.event.id.into_string())
    };
    assert_eq!(event_of(key.clone()).await.unwrap(), id);
    assert_eq!(event_of(other_key.clone()).await.unwrap(), other_id);
    let mut altered = key.clone().into_bytes();
    let last = altered.last_mut().unwrap();
    *last = if *last == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    for wrong in [
        altered.as_str(),
        "",
        "fl_live_",
        id.as_str(),
        &key[..key.len() - 1],
    ] {
        assert!(store.stream_key_event(wrong).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn the_database_holds_only_the_keys_keyed_hash() {
    let h = harness().await;
    let (_, key) = h.create("Final").await;
    // HMAC-SHA256 under the key secret the control plane generated in the data dir.
    let secret = std::fs::read_to_string(h.db.data_dir.path().join("data/control.key")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.trim().as_bytes()).unwrap();
    mac.update(key.as_bytes());
    let digest = hex::encode(mac.finalize().into_bytes());

    // The row holds the digest.
    let db = h.db.data_dir.path().join("data/floodlight.db");
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, event_id, key_hash FROM stream_keys")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, digest);
    assert!(!rows[0].0.contains(&key) && !rows[0].1.contains(&key));
    pool.close().await;

    // No file under the data dir (database, WAL, shared memory) holds the key or its
    // random part; the digest is found there, so the scan does see what was written.
    let random_part = key.strip_prefix("fl_live_").unwrap();
    let mut digest_seen = false;
    for entry in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!contains(&bytes, random_part.as_bytes()));
        digest_seen |= contains(&bytes, digest.as_bytes());
    }
    assert!(digest_seen);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn list_pages_newest_first_with_a_cursor_and_never_shows_keys() {
    let h = harness().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(h.create(&format!("Match {i}")).await);
    }

    let mut ids = Vec::new();
    let mut created_ats = Vec::new();
    let mut uri = "/v1/events?limit=2".to_string();
    let mut pages = 0;
    loop {
        let answer = h.get(&uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let text = answer.text();
        for (_, key) in &created {
            assert!(
                !text.contains(key.as_str()),
                "a stream key in a list answer"
            );
        }
        let body = answer.json();
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            assert!(item.get("stream_key").is_none());
            assert!(item["ingest"]["rtmp"].get("stream_key").is_none());
            ids.push(item["event_id"].as_str().unwrap().to_string());
            created_ats.push(
                time::OffsetDateTime::parse(
                    item["created_at"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap(),
            );
        }
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/v1/events?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
    let mut got = ids.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "every event exactly once");
    assert!(
        created_ats.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first"
    );
    // Created one after another, so newest first is the reverse creation order unless
    // two landed in the same microsecond.
    let first = &created.last().unwrap().0;
    assert!(ids[0] == *first || created_ats[0] == created_ats[1]);

    // Without a limit, the configured default page size applies.
    let body = h.get("/v1/events").await.json();
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
    assert_eq!(body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn list_parameters_out_of_range_name_the_parameter() {
    let h = harness_with(ControlConfig {
        max_page_size: 10,
        default_page_size: 5,
        ..ControlConfig::default()
    })
    .await;
    for uri in [
        "/v1/events?limit=0",
        "/v1/events?limit=11",
        "/v1/events?limit=ten",
        "/v1/events?limit=-1",
        "/v1/events?limit=",
    ] {
        let field = h.get(uri).await.problem(StatusCode::BAD_REQUEST);
        assert_eq!(field.as_deref(), Some("limit"), "{uri}");
    }
    for uri in [
        "/v1/events?cursor=nonsense",
        "/v1/events?cursor=",
        "/v1/events?cursor=12-0123456789ABCDEF",
    ] {
        let field = h.get(uri).await.problem(StatusCode::BAD_REQUEST);
        assert_eq!(field.as_deref(), Some("cursor"), "{uri}");
    }
    assert_eq!(h.get("/v1/events?limit=10").await.status, StatusCode::OK);
}

#[tokio::test]
async fn get_shows_the_event_with_its_live_status_and_without_the_key() {
    let h = harness().await;
    let (id, key) = h.create("Grand prix").await;
    let (idle_id, _) = h.create("Qualifying").await;
    let status = LiveStatus {
        publishing: true,
        since: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_750_000_000_250)),
        protocol: Some(IngestProtocol::Rtmp),
        ingest_bitrate_bps: Some(4_500_000),
        renditions: vec![
            RenditionStatus {
                name: "source".to_string(),
                codecs: "avc1.64001f".to_string(),
                width: Some(1280),
                height: Some(720),
                bandwidth_bps: 4_800_000,
            },
            RenditionStatus {
                name: "audio".to_string(),
                codecs: "mp4a.40.2".to_string(),
                width: None,
                height: None,
                bandwidth_bps: 130_000,
            },
        ],
        publishers: vec![PublisherStatus {
            protocol: IngestProtocol::Rtmp,
            live: true,
            since: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_750_000_000_250)),
            bitrate_bps: 4_400_000,
            frames: 9000,
            dropped_frames: 3,
            keyframe_interval_ms: Some(2000),
            idle_ms: 12,
        }],
        shed_renditions: vec![ShedRendition {
            name: "240p".to_string(),
            reason: "cpu".to_string(),
            at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_750_000_010_000)),
        }],
        archive: Some(ArchiveHealth {
            state: ArchiveState::Degraded,
            detail: "archive: degraded (720p: MSN 4-9 missing)".to_string(),
            missing: vec![ArchiveGap {
                rendition: "720p".to_string(),
                first_msn: 4,
                last_msn: 9,
                reason: "queue_full".to_string(),
            }],
        }),
    };
    h.live.set(&id, status.clone());

    let answer = h.get(&format!("/v1/events/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    assert!(!answer.text().contains(&key), "the key is shown once only");
    let body = answer.json();
    assert_eq!(body["event_id"], id.as_str());
    assert_eq!(body["title"], "Grand prix");
    assert!(body.get("stream_key").is_none());
    assert_eq!(
        body["ingest"]["rtmp"],
        json!({ "url": "rtmp://media.example.net:1936/live" })
    );
    assert_eq!(body["live"]["since"], "2025-06-15T15:06:40.25Z");
    assert_eq!(body["live"]["protocol"], "rtmp");
    assert_eq!(
        body["live"]["shed_renditions"],
        json!([{ "name": "240p", "reason": "cpu", "at": "2025-06-15T15:06:50Z" }])
    );
    assert_eq!(body["live"]["archive"]["state"], "degraded");
    assert_eq!(
        body["live"]["archive"]["missing"],
        json!([{ "rendition": "720p", "first_msn": 4, "last_msn": 9, "reason": "queue_full" }])
    );
    let live: LiveStatus = serde_json::from_value(body["live"].clone()).unwrap();
    assert_eq!(live, status);

    let idle = h.get(&format!("/v1/events/{idle_id}")).await.json();
    assert_eq!(
        idle["live"],
        json!({
            "publishing": false,
            "since": null,
            "protocol": null,
            "ingest_bitrate_bps": null,
            "renditions": [],
            "publishers": [],
        })
    );
}

#[tokio::test]
async fn unknown_events_and_routes_are_problem_documents() {
    let h = harness().await;
    h.create("Exists").await;
    assert_eq!(
        h.get("/v1/events/0123456789abcdef")
            .await
            .problem(StatusCode::NOT_FOUND),
        None
    );
    h.get("/v1/nothing-here")
        .await
        .problem(StatusCode::NOT_FOUND);
    let answer = h
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/v1/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    answer.problem(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bad_create_bodies_are_refused_naming_the_field() {
    let h = harness().await;
    let long_title = "x".repeat(201);
    let cases: [(&str, String, StatusCode, Option<&str>); 9] = [
        (
            "missing title",
            "{}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
        (
            "empty title",
            r#"{"title": ""}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
        (
            "blank title",
            r#"{"title": " \t\n"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
        (
            "title too long",
            json!({ "title": long_title }).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
        (
            "wrong type",
            r#"{"title": 42}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
        (
            "null title",
            r#"{"title": null}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("title"),
        ),
        (
            "unknown field",
            r#"{"title": "a", "visibilty": "public"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("visibilty"),
        ),
        (
            "invalid JSON",
            r#"{"title": "a",}"#.into(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "truncated JSON",
            r#"{"title": "#.into(),
            StatusCode::BAD_REQUEST,
            Some("title"),
        ),
    ];
    for (case, body, status, field) in cases {
        let answer = h.post_json("/v1/events", body).await;
        assert_eq!(answer.problem(status).as_deref(), field, "{case}");
        let detail = answer.json()["detail"].as_str().unwrap().to_string();
        if let Some(field) = field {
            assert!(
                detail.contains(field),
                "{case}: detail {detail:?} names the field"
            );
        }
    }

    // Not JSON at all: 415.
    let answer = h
        .send(
            Request::post("/v1/events")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(r#"{"title": "a"}"#))
                .unwrap(),
        )
        .await;
    answer.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Over control.max_body_bytes: 413.
    let huge = json!({ "title": "x".repeat(70 * 1024) }).to_string();
    h.post_json("/v1/events", huge)
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing was created by any of them.
    let list = h.get("/v1/events").await.json();
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = harness().await;
    let health = h.get("/healthz").await;
    assert_eq!(
        (health.status, health.text().as_str()),
        (StatusCode::OK, "ok\n")
    );
    let ready = h.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.text().as_str()),
        (StatusCode::OK, "ready\n")
    );

    metrics::with_local_recorder(&h.recorder, || {
        metrics::counter!("floodlight_test_renders_total").increment(3);
    });
    let answer = h.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        answer.text().contains("floodlight_test_renders_total 3"),
        "{}",
        answer.text()
    );
}

#[tokio::test]
async fn run_serves_on_a_socket_and_stops_on_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let h = harness().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(floodlight_control::run(
        listener,
        h.control.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_the_docs_page_serves_offline() {
    let h = harness().await;
    let doc = h.get("/v1/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    let expected = [
        ("/v1/events", "post"),
        ("/v1/events", "get"),
        ("/v1/events/{event_id}", "get"),
        ("/v1/events/{event_id}", "patch"),
        ("/v1/events/{event_id}/cancel", "post"),
        ("/v1/events/{event_id}/archive", "post"),
        ("/v1/events/{event_id}/transitions", "get"),
        ("/v1/events/{event_id}/keys", "post"),
        ("/v1/events/{event_id}/keys", "get"),
        ("/v1/events/{event_id}/keys/{key_id}/rotate", "post"),
        ("/v1/events/{event_id}/keys/{key_id}", "delete"),
        ("/v1/api-keys", "post"),
        ("/v1/api-keys", "get"),
        ("/v1/api-keys/{key_id}", "get"),
        ("/v1/api-keys/{key_id}", "delete"),
        ("/v1/audit", "get"),
        ("/v1/assets", "post"),
        ("/v1/assets", "get"),
        ("/v1/assets/{asset_id}", "get"),
        ("/v1/assets/{asset_id}", "delete"),
        ("/v1/assets/{asset_id}/cancel", "post"),
    ];
    for (path, method) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"].as_object().unwrap().len() >= 2,
            "{method} {path} documents its errors"
        );
    }
    // The request body's fields, as event_api.md fixes them.
    let request = &doc["components"]["schemas"]["EventRequest"]["properties"];
    for field in [
        "title",
        "starts_at",
        "ends_at",
        "visibility",
        "category",
        "tags",
        "ingest",
        "geo",
    ] {
        assert!(request[field].is_object(), "EventRequest.{field}");
    }

    // Issue 11: an event's recording setting, and the asset request's fields.
    assert_eq!(
        request["record"]["type"],
        json!(["boolean", "null"]),
        "{request}"
    );
    let asset = &doc["components"]["schemas"]["AssetRequest"]["properties"];
    for field in ["title", "source", "precision"] {
        assert!(asset[field].is_object(), "AssetRequest.{field}");
    }
    let source = &doc["components"]["schemas"]["AssetSourceRequest"]["properties"];
    for field in ["event_id", "start", "end"] {
        assert!(source[field].is_object(), "AssetSourceRequest.{field}");
    }

    // The event's live status, shed renditions included.
    let live = &doc["components"]["schemas"]["LiveStatus"]["properties"];
    for field in ["publishing", "renditions", "publishers", "shed_renditions"] {
        assert!(live[field].is_object(), "LiveStatus.{field}: {live}");
    }
    let shed = &doc["components"]["schemas"]["ShedRendition"]["properties"];
    assert_eq!(shed["at"]["format"], "date-time", "{shed}");

    // The browsable UI: a page and the vendored assets it loads, all from this server.
    let page = h.get("/v1/docs").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    for asset in [
        "/v1/docs/swagger-ui.css",
        "/v1/docs/swagger-ui-bundle.js",
        "/v1/docs/init.js",
    ] {
        assert!(html.contains(asset), "{asset}");
        let answer = h.get(asset).await;
        assert_eq!(answer.status, StatusCode::OK, "{asset}");
        assert!(answer.body.len() > 100, "{asset}");
    }
    assert!(!html.contains("://"), "no external resources: {html}");
    assert!(
        h.get("/v1/docs/init.js")
            .await
            .text()
            .contains("/v1/openapi.json")
    );
}
