//! The control API through its router (`Router::oneshot`, no socket), against a real
//! SQLite file in a temporary data dir, with a fake live-status neighbour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use floodlight_control::{
    Control, ControlConfig, EventId, IngestProtocol, LiveStatus, LiveStatusSource, PublicUrls,
    RenditionStatus,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

/// Live status as the test sets it, per event id.
#[derive(Default)]
struct FakeLive(Mutex<HashMap<String, LiveStatus>>);

impl LiveStatusSource for FakeLive {
    fn live_status(&self, event_id: &EventId) -> LiveStatus {
        self.0
            .lock()
            .unwrap()
            .get(event_id.as_str())
            .cloned()
            .unwrap_or_default()
    }
}

struct Harness {
    data_dir: tempfile::TempDir,
    control: Control,
    router: Router,
    live: Arc<FakeLive>,
    recorder: PrometheusRecorder,
}

async fn harness() -> Harness {
    harness_with(ControlConfig::default()).await
}

async fn harness_with(config: ControlConfig) -> Harness {
    let data_dir = tempfile::tempdir().unwrap();
    let live = Arc::new(FakeLive::default());
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let control = Control::new(
        config,
        // A directory that does not exist yet: the store creates it.
        &data_dir.path().join("data"),
        PublicUrls::new("media.example.net", 1936, 8081),
        live.clone(),
        move || handle.render(),
    )
    .await
    .unwrap();
    let router = control.router();
    Harness {
        data_dir,
        control,
        router,
        live,
        recorder,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// An RFC 9457 problem document with this status; returns its `field` member.
    fn problem(&self, status: StatusCode) -> Option<String> {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let problem = self.json();
        // RFC 9457 §3.1: type, title, status, detail.
        assert_eq!(problem["type"], "about:blank");
        assert_eq!(problem["title"], status.canonical_reason().unwrap());
        assert_eq!(problem["status"], status.as_u16());
        assert!(
            !problem["detail"].as_str().unwrap().is_empty(),
            "a detail a person can act on"
        );
        problem["field"].as_str().map(str::to_string)
    }
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post_json(&self, uri: &str, body: impl Into<Body>) -> Answer {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    /// Creates an event; returns (event_id, stream_key).
    async fn create(&self, title: &str) -> (String, String) {
        let answer = self
            .post_json("/v1/events", json!({ "title": title }).to_string())
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        let body = answer.json();
        (
            body["event_id"].as_str().unwrap().to_string(),
            body["stream_key"].as_str().unwrap().to_string(),
        )
    }
}

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
    assert_eq!(body["state"], "created");
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
    assert_eq!(
        store
            .authorize_stream_key(&key)
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        id
    );
    assert_eq!(
        store
            .authorize_stream_key(&other_key)
            .await
            .unwrap()
            .unwrap()
            .as_str(),
        other_id
    );
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
        assert_eq!(store.authorize_stream_key(wrong).await.unwrap(), None);
    }
}

#[tokio::test]
async fn the_database_holds_only_the_keys_sha256() {
    let h = harness().await;
    let (_, key) = h.create("Final").await;
    let digest = hex::encode(Sha256::digest(key.as_bytes()));

    // The row holds the digest.
    let db = h.data_dir.path().join("data/floodlight.db");
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
    };
    h.live.0.lock().unwrap().insert(id.clone(), status.clone());

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
