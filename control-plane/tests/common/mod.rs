//! Shared test harness: databases for store tests (a SQLite file in a temp dir, or a
//! fresh, uniquely named PostgreSQL database on the dev machine's server, dropped when
//! the test ends), and the control API through its router (`Router::oneshot`, no socket)
//! with a fake live-status neighbour, and, for the asset tests, an archive of their own
//! (`archive.rs`) and the job runner.
#![allow(dead_code)] // each test file uses a different part

pub mod archive;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use floodlight_control::{
    AssetBuilder, Control, ControlConfig, EventId, IngestProtocol, LiveStatus, LiveStatusSource,
    PublicUrls, Secret, Store,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

/// The server the PostgreSQL store tests run against (`.ci/run` starts it). Override
/// with `FLOODLIGHT_TEST_POSTGRES`.
pub fn postgres_server() -> String {
    std::env::var("FLOODLIGHT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test, with a data dir for the key secret. Dropping it drops the
/// PostgreSQL database.
pub struct TestDb {
    pub data_dir: tempfile::TempDir,
    pub config: ControlConfig,
    postgres_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = ControlConfig {
            key_secret: Some(Secret::new("a test key secret of more than 32 characters")),
            ..ControlConfig::default()
        };
        let postgres_name = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let name = format!("fl_test_{}", hex::encode(rand::random::<[u8; 8]>()));
                let server = postgres_server();
                let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .unwrap_or_else(|error| {
                        panic!(
                            "PostgreSQL store tests need a server at {server} (set \
                             FLOODLIGHT_TEST_POSTGRES to use another): {error}"
                        )
                    });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                config.database_url = Some(format!("{server}/{name}"));
                Some(name)
            }
        };
        TestDb {
            data_dir,
            config,
            postgres_name,
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.config, self.data_dir.path())
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself: drop the
        // database from a thread with its own runtime.
        let server = postgres_server();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .ok()?;
                // FORCE (PostgreSQL 13+) ends the test pool's connections still open.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                tokio::time::timeout(Duration::from_secs(5), admin.close())
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(Ok(())))) {
            eprintln!("could not drop the test database (left behind, harmless)");
        }
    }
}

/// Runs a store test on SQLite and on PostgreSQL: `store_test!(name, |db: TestDb| async
/// move { … })` makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! store_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let db = common::TestDb::new(common::Backend::Sqlite).await;
                ($body)(db).await;
            }

            #[tokio::test]
            async fn postgres() {
                let db = common::TestDb::new(common::Backend::Postgres).await;
                ($body)(db).await;
            }
        }
    };
}

/// Live status as the test sets it, per event id.
#[derive(Default)]
pub struct FakeLive(pub Mutex<HashMap<String, LiveStatus>>);

impl FakeLive {
    pub fn set(&self, event_id: &str, status: LiveStatus) {
        self.0.lock().unwrap().insert(event_id.to_string(), status);
    }
}

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

/// The bootstrap admin key the harness configures (`control.admin_key`).
pub const ADMIN_KEY: &str = "fl_api_test_admin_key_0123456789abcdefghijklmnop";

pub struct Harness {
    /// Holds the PostgreSQL database (if any) and the data dir.
    pub db: TestDb,
    pub control: Control,
    pub router: Router,
    pub live: Arc<FakeLive>,
    pub recorder: PrometheusRecorder,
    /// What `control` was made with, for a second control plane on the same database.
    pub config: ControlConfig,
}

pub async fn harness() -> Harness {
    harness_with(ControlConfig::default()).await
}

pub async fn harness_with(config: ControlConfig) -> Harness {
    harness_on(Backend::Sqlite, config).await
}

/// A control plane on `backend` with `config` (its database and key secret replaced by
/// the test database's, its admin key by [`ADMIN_KEY`]).
pub async fn harness_on(backend: Backend, config: ControlConfig) -> Harness {
    harness_with_assets(backend, config, None).await
}

/// [`harness_on`] with an asset builder (`Control::with_assets`); the job runner is not
/// started ([`JobRunner::start`]).
pub async fn harness_with_assets(
    backend: Backend,
    mut config: ControlConfig,
    builder: Option<Arc<dyn AssetBuilder>>,
) -> Harness {
    let db = TestDb::new(backend).await;
    config.admin_key = Some(Secret::new(ADMIN_KEY));
    config.database_url = db.config.database_url.clone();
    // SQLite tests use the generated key secret in the data dir, as `floodlight up` does.
    if backend == Backend::Postgres {
        config.key_secret = db.config.key_secret.clone();
    }
    let live = Arc::new(FakeLive::default());
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut control = Control::new(
        config.clone(),
        // A directory that does not exist yet: the store creates it.
        &db.data_dir.path().join("data"),
        PublicUrls::new("media.example.net", 1936, 8081),
        live.clone(),
        move || handle.render(),
    )
    .await
    .unwrap();
    if let Some(builder) = builder {
        control = control.with_assets(builder);
    }
    let router = control.router();
    Harness {
        db,
        control,
        router,
        live,
        recorder,
        config,
    }
}

impl Harness {
    /// Another control plane on the same database and data dir (another process, as far
    /// as the store can tell), with `builder`.
    pub async fn second_control(&self, builder: Arc<dyn AssetBuilder>) -> Control {
        Control::new(
            self.config.clone(),
            &self.db.data_dir.path().join("data"),
            PublicUrls::new("media.example.net", 1936, 8081),
            self.live.clone(),
            String::new,
        )
        .await
        .unwrap()
        .with_assets(builder)
    }
}

/// A control plane's job runner (`Control::run_jobs`) on its own task.
pub struct JobRunner {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl JobRunner {
    pub fn start(control: &Control) -> JobRunner {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let control = control.clone();
        let task = tokio::spawn(async move {
            control
                .run_jobs(async move {
                    let _ = stopped.await;
                })
                .await
        });
        JobRunner {
            stop: Some(stop),
            task,
        }
    }

    /// Shuts the runner down as the process would on a signal, and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("the job runner stops within its shutdown grace")
            .unwrap();
    }

    /// Kills the runner as kill -9 would its process: its jobs' futures are dropped
    /// mid-run and nothing more is written; their leases stay until they expire.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// Asserts the status, showing the body when it differs; returns the JSON body.
    pub fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// An RFC 9457 problem document with this status; returns its `field` member.
    pub fn problem(&self, status: StatusCode) -> Option<String> {
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
    /// Sends `request` with the admin key unless it carries an Authorization header.
    pub async fn send(&self, mut request: Request<Body>) -> Answer {
        if !request.headers().contains_key(header::AUTHORIZATION) {
            request.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {ADMIN_KEY}").parse().unwrap(),
            );
        }
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

    /// `method uri` with `key` (`None`: no Authorization header at all) and an optional
    /// JSON body.
    pub async fn call(
        &self,
        key: Option<&str>,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        request = match key {
            Some(key) => request.header(header::AUTHORIZATION, format!("Bearer {key}")),
            // An empty value: send() leaves a present header alone, and it is no key.
            None => request.header(header::AUTHORIZATION, ""),
        };
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_json(&self, uri: &str, body: impl Into<Body>) -> Answer {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    pub async fn patch_json(&self, uri: &str, body: Value) -> Answer {
        self.call(Some(ADMIN_KEY), Method::PATCH, uri, Some(body))
            .await
    }

    pub async fn post_empty(&self, uri: &str) -> Answer {
        self.call(Some(ADMIN_KEY), Method::POST, uri, None).await
    }

    /// Creates an event; returns (event_id, stream_key).
    pub async fn create(&self, title: &str) -> (String, String) {
        let body = self.create_with(json!({ "title": title })).await;
        (
            body["event_id"].as_str().unwrap().to_string(),
            body["stream_key"].as_str().unwrap().to_string(),
        )
    }

    /// Creates an event from `body` as admin; returns the answer's JSON.
    pub async fn create_with(&self, body: Value) -> Value {
        let answer = self.post_json("/v1/events", body.to_string()).await;
        answer.expect(StatusCode::CREATED)
    }

    /// Polls `GET uri` (as admin) until `done` holds for its JSON answer; returns it.
    /// Fails after 15 s, showing the last answer.
    pub async fn wait_until(&self, uri: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let answer = self.get(uri).await;
            let body = answer.json();
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting on {uri}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An event that went live (and so published), owned by `owner` when given.
    pub async fn published(&self, title: &str, owner: Option<&str>) -> String {
        let mut body = json!({ "title": title });
        if let Some(owner) = owner {
            body["owner"] = json!(owner);
        }
        self.published_with(body).await
    }

    /// An event created from `body` that went live.
    pub async fn published_with(&self, body: Value) -> String {
        let id = self.create_with(body).await["event_id"]
            .as_str()
            .unwrap()
            .to_string();
        self.control
            .publish_started(&id, IngestProtocol::Rtmp)
            .await
            .unwrap();
        id
    }

    /// Ends a live event as the reconciler does once its publisher has been gone longer
    /// than the grace period.
    pub async fn end(&self, event_id: &str) {
        self.control
            .publish_stopped(event_id, IngestProtocol::Rtmp)
            .await
            .unwrap();
        // Later passes too, in case an earlier one (ending another event) marked this
        // one gone at its own time.
        for minutes in [1, 10, 100] {
            let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
            self.control.reconcile(later).await.unwrap();
            let event = self.control.store().event(event_id).await.unwrap().unwrap();
            if event.state == floodlight_control::EventState::Ended {
                return;
            }
        }
        panic!("event {event_id} did not end");
    }

    /// Creates an API key with `role` (and `principal`); returns the key.
    pub async fn api_key(&self, role: &str, principal: Option<&str>) -> String {
        let answer = self
            .post_json(
                "/v1/api-keys",
                json!({ "role": role, "principal": principal }).to_string(),
            )
            .await;
        answer.expect(StatusCode::CREATED)["key"]
            .as_str()
            .unwrap()
            .to_string()
    }
}
