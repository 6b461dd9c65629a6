//! Floodlight control plane: events, their schedule and stream keys, API keys and the
//! audit log, stored with sqlx (SQLite embedded, PostgreSQL distributed), served as a
//! JSON API under `/v1` (ARCHITECTURE.md, "The public contract": port 8090).
//!
//! What it needs from its neighbours is two small traits, which the binary implements:
//! [`LiveStatusSource`] (is an event publishing, with which renditions) from ingest and
//! origin state, and [`AssetBuilder`] (what the archive holds of an event; build and
//! delete a VOD asset) over the archive and the transcoder's renderer. What the
//! neighbours need from it is the publish check and the lifecycle calls on [`Control`],
//! which the binary wires into ingest.
//!
//! Stream keys and API keys are secrets: they are shown once, stored only as a keyed
//! hash, and never logged.
//!
//! Laid out by domain, each folder with its model, its store queries and its handlers:
//! `events/` (events, their stream keys and lifecycle), `assets/` (VOD assets made from
//! the archive), `jobs/` (the durable job queue and its runner), `api_keys/`, `audit/`,
//! `entitlement/` and `viewer_sessions/`. `http/` holds what the handlers share and
//! assembles the routes; `db.rs` is the database handle the domains' queries run on.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod api_keys;
mod assets;
mod audit;
mod config;
mod config_error;
mod db;
mod entitlement;
mod events;
mod failures;
mod http;
mod jobs;
mod rfc3339;
mod secret;
pub mod viewer_sessions;

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::net::TcpListener;

pub use api_keys::{
    ApiKey, ApiKeyCursor, ApiKeyId, ApiKeyInfo, Authenticated, Bootstrap, NewApiKey,
    RevokeApiKeyError,
};
pub use audit::{Actor, AuditCursor, AuditEntry, AuditPage};
pub use config::{ControlConfig, PublicUrls};
pub use config_error::ConfigError;
pub use db::{InvalidCursor, Store, StoreError};
pub use entitlement::{
    Account, EntitlementConfig, EntitlementStoreError, Grants, ListCursor, NewPlan,
    NewSubscription, Page, Plan, Purchase, SigningKeyError, Subscription, SubscriptionState,
    playback_signing_keys,
};
pub use events::{
    ArchiveGap, ArchiveHealth, ArchiveState, CreatedEvent, Event, EventAccess, EventCursor,
    EventFilter, EventId, EventPage, EventPatch, EventState, GeoRules, InProcessBus,
    IngestProtocol, IngestSettings, KeyedEvent, LifecycleKind, LifecycleMessage,
    LifecyclePublisher, LiveStatus, LiveStatusSource, NewEvent, PublishCheck, PublishPermit,
    PublishRefusal, PublisherStatus, PullSourceSpec, RenditionStatus, RtspSource, RtspTransport,
    ShedRendition, StreamKey, StreamKeyError, StreamKeyInfo, StreamKeyRole, Transition,
    TransitionError, Visibility,
};
pub use http::Role;
pub use jobs::{
    ArchivedRange, AssetBuilder, AssetSpec, BoxFuture, BuildError, BuiltAsset, BuiltRendition,
    CancelToken, JobsConfig, Precision, ProgressSink,
};
pub use secret::{KeySecretError, Secret};

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    SigningKeys(#[from] SigningKeyError),
}

/// The control-plane service: its store and the neighbours its answers draw on.
/// Cheap to clone; clones share the database pool.
#[derive(Clone)]
pub struct Control {
    state: http::AppState,
    /// The generated bootstrap admin key, until [`Control::bootstrap_admin_key`] takes it.
    bootstrap_key: Arc<Mutex<Option<ApiKey>>>,
}

impl Control {
    /// Validates `config`, opens the database (by default `floodlight.db` in `data_dir`,
    /// created with the directory when missing) and applies the embedded migrations.
    ///
    /// `render_metrics` renders the process's Prometheus exposition for `GET /metrics`
    /// (the binary installs one recorder and passes its `PrometheusHandle::render`, as it
    /// does for every listener).
    pub async fn new(
        config: ControlConfig,
        data_dir: &Path,
        urls: PublicUrls,
        live: Arc<dyn LiveStatusSource>,
        render_metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> Result<Control, ControlError> {
        let sessions =
            viewer_sessions::SessionStore::in_process(&viewer_sessions::SessionsConfig::default());
        Control::with_sessions(config, data_dir, urls, live, sessions, render_metrics).await
    }

    /// [`Control::new`] with the viewer-session store the origins share (`floodlight up`
    /// gives both the same in-process store; distributed, both open the same Redis).
    /// `Control::new` keeps its sessions in-process, seen by no origin.
    pub async fn with_sessions(
        config: ControlConfig,
        data_dir: &Path,
        urls: PublicUrls,
        live: Arc<dyn LiveStatusSource>,
        sessions: viewer_sessions::SessionStore,
        render_metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> Result<Control, ControlError> {
        config.validate()?;
        let store = Store::open(&config, data_dir).await?;
        events::describe_metrics();
        api_keys::describe_metrics();
        viewer_sessions::describe_metrics();
        jobs::describe_metrics();
        let entitlement =
            entitlement::Entitlement::new(config.entitlement.clone(), data_dir, sessions).await?;
        let bootstrap = store
            .bootstrap_admin_key(
                config.admin_key.as_ref().map(Secret::expose_secret),
                OffsetDateTime::now_utc(),
            )
            .await?;
        let bootstrap_key = match bootstrap {
            Bootstrap::Generated(key) => Some(key),
            Bootstrap::Configured => {
                tracing::info!("the API key table was empty: control.admin_key is the admin key");
                None
            }
            Bootstrap::ConfiguredIgnored => {
                tracing::warn!(
                    "control.admin_key (FLOODLIGHT_ADMIN_KEY) is set but not used: it only \
                     bootstraps an empty API key table, and this one has keys but not this \
                     one (it was revoked or replaced, and stays so). Manage keys with \
                     /v1/api-keys, or unset it"
                );
                None
            }
            _ => None,
        };
        Ok(Control {
            state: http::AppState::new(
                config,
                store,
                urls,
                live,
                entitlement,
                Box::new(render_metrics),
            ),
            bootstrap_key: Arc::new(Mutex::new(bootstrap_key)),
        })
    }

    /// Builds and deletes VOD assets with `builder` (the binary's, over the archive).
    /// Call it before serving, when an archive is configured: without a builder,
    /// `POST /v1/assets` answers 503 and [`run`] runs no asset jobs. A second builder is
    /// ignored (the first stays).
    pub fn with_assets(self, builder: Arc<dyn AssetBuilder>) -> Control {
        if !self.state.set_asset_builder(builder) {
            tracing::warn!("an asset builder was already set; the first one stays");
        }
        self
    }

    /// Runs the asset jobs (builds, deletes, the recordings of ended events) until
    /// `shutdown` resolves, then stops the running ones, which go back to the queue for
    /// the next runner ([`run`] does this beside the API). Returns at once without an
    /// asset builder ([`Control::with_assets`]).
    ///
    /// Several processes sharing one PostgreSQL database may each run it: a job runs in
    /// one of them at a time, and a job whose process died is taken over once its lease
    /// (`control.jobs.lease_secs`) expires.
    pub async fn run_jobs(&self, shutdown: impl Future<Output = ()>) {
        let Some(builder) = self.state.asset_builder().cloned() else {
            tracing::info!("no asset builder (no archive configured): asset jobs do not run");
            return;
        };
        let store = self.store().clone();
        let work = Arc::new(assets::AssetWork::new(store.clone(), builder));
        let waker = assets::wake_on_ended(self.subscribe(), self.state.jobs().clone());
        // One task for both, so that dropping it (a runtime going down) stops both.
        tokio::select! {
            () = self.state.jobs().run(store, work, shutdown) => {}
            () = waker => {}
        }
    }

    /// The admin API key generated for a fresh database (when `control.admin_key` is
    /// unset), handed out once for `floodlight up` to print; `None` afterwards, and
    /// whenever the database already had keys.
    pub fn bootstrap_admin_key(&self) -> Option<String> {
        floodlight_media::sync::lock(&self.bootstrap_key)
            .take()
            .map(|key| key.expose_secret().to_string())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.state.store()
    }

    /// Decides whether a publisher may publish: the key must be active (and belong to the
    /// event it names, if any), the event scheduled or live, the protocol allowed, a
    /// backup key allowed, and now inside the publishing window. Failed key attempts are
    /// limited per source address. Ingest calls this before accepting a media byte.
    pub async fn authorize_publish(
        &self,
        check: PublishCheck<'_>,
    ) -> Result<PublishPermit, PublishRefusal> {
        self.state.lifecycle().authorize_publish(check).await
    }

    /// The RTSP sources to pull now: scheduled or live events with an `rtsp_source`,
    /// inside their publishing window, allowing RTSP.
    pub async fn pull_sources(&self) -> Result<Vec<PullSourceSpec>, StoreError> {
        self.state.lifecycle().pull_sources().await
    }

    /// A publisher started on `event_id`: a scheduled event goes live (transition cause
    /// `publish`, `event.live` on the bus). Unknown ids are ignored.
    pub async fn publish_started(
        &self,
        event_id: &str,
        protocol: IngestProtocol,
    ) -> Result<(), StoreError> {
        match EventId::parse(event_id) {
            Some(id) => self.state.lifecycle().publish_started(&id, protocol).await,
            None => Ok(()),
        }
    }

    /// A publisher stopped on `event_id`: the reconnect grace period starts; the
    /// reconciler ends the event if nobody publishes again in time.
    pub async fn publish_stopped(
        &self,
        event_id: &str,
        protocol: IngestProtocol,
    ) -> Result<(), StoreError> {
        match EventId::parse(event_id) {
            Some(id) => self.state.lifecycle().publish_stopped(&id, protocol).await,
            None => Ok(()),
        }
    }

    /// One reconciler pass as of `now` ([`run`] runs it every
    /// `control.reconcile_interval_ms`): ends live events whose publisher has been gone
    /// longer than `control.reconnect_grace_secs` and events past `ends_at` +
    /// `control.late_close_secs`. Returns the events it ended.
    pub async fn reconcile(&self, now: OffsetDateTime) -> Result<Vec<EventId>, StoreError> {
        self.state.lifecycle().reconcile(now).await
    }

    /// Lifecycle messages from now on (`event.scheduled`, `event.live`, `event.ended`,
    /// `event.cancelled`, `event.archived`, `key.revoked`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LifecycleMessage> {
        self.state.lifecycle().bus().subscribe()
    }

    /// The HTTP API: `/v1/events…`, `/v1/assets…`, `/healthz`, `/readyz`, `/metrics`.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }
}

/// Serves the control API on `listener` and runs the lifecycle reconciler and the asset
/// jobs ([`Control::run_jobs`]) until `shutdown` resolves, then finishes the requests in
/// flight and gives the running jobs back to the queue.
pub async fn run(
    listener: TcpListener,
    control: Control,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "control API listening");
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    let lifecycle = control.state.lifecycle().clone();
    let reconciler = tokio::spawn({
        let stop = stop.clone();
        async move { lifecycle.run_reconciler(stop.notified()).await }
    });
    let stop_jobs = Arc::new(tokio::sync::Notify::new());
    let jobs = tokio::spawn({
        let (control, stop) = (control.clone(), stop_jobs.clone());
        async move { control.run_jobs(stop.notified()).await }
    });
    // Connect info: failed API keys are counted per client address.
    let app = control
        .router()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    // `notify_one` keeps the permit if the reconciler is between passes.
    stop.notify_one();
    stop_jobs.notify_one();
    let _ = reconciler.await;
    let _ = jobs.await;
    served
}
