//! Floodlight control plane: events and their stream keys, stored with sqlx, served as a
//! JSON API under `/v1` (ARCHITECTURE.md, "The public contract": port 8090).
//!
//! What it needs from its neighbours is one small trait, [`LiveStatusSource`] (is an
//! event publishing, with which renditions), which the binary implements from ingest and
//! origin state. What the neighbours need from it is [`Store::authorize_stream_key`],
//! which the binary wires into ingest's key check.
//!
//! Stream keys are secrets: they are shown once in the `POST /v1/events` answer, stored
//! only as a SHA-256 digest, and never logged.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod api;
mod config;
mod live;
mod rfc3339;
mod store;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{ConfigError, ControlConfig, PublicUrls};
pub use live::{IngestProtocol, LiveStatus, LiveStatusSource, RenditionStatus};
pub use store::{
    CreatedEvent, Event, EventCursor, EventId, EventPage, EventState, InvalidCursor, Store,
    StoreError, StreamKey,
};

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The control-plane service: its store and the neighbours its answers draw on.
/// Cheap to clone; clones share the database pool.
#[derive(Clone)]
pub struct Control {
    state: api::AppState,
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
        config.validate()?;
        let store = Store::open(&config, data_dir).await?;
        store::describe_metrics();
        Ok(Control {
            state: api::AppState::new(config, store, urls, live, Box::new(render_metrics)),
        })
    }

    /// The store, for the binary to wire [`Store::authorize_stream_key`] into ingest.
    pub fn store(&self) -> &Store {
        self.state.store()
    }

    /// The HTTP API: `/v1/events…`, `/healthz`, `/readyz`, `/metrics`.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }
}

/// Serves the control API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn run(
    listener: TcpListener,
    control: Control,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "control API listening");
    }
    axum::serve(listener, control.router())
        .with_graceful_shutdown(shutdown)
        .await
}
