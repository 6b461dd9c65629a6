//! [`AppState`]: what every handler shares (the config, the store, the public URLs, the
//! live-status neighbour, the lifecycle, entitlement, the job queue and the asset
//! builder), and the API key failure limit.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::problem::ApiError;
use crate::config::{ControlConfig, PublicUrls};
use crate::db::Store;
use crate::entitlement::Entitlement;
use crate::events::{Lifecycle, LiveStatusSource};
use crate::failures::FailureLimiter;
use crate::jobs::{AssetBuilder, Jobs};

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

struct Shared {
    config: ControlConfig,
    store: Store,
    urls: PublicUrls,
    live: Arc<dyn LiveStatusSource>,
    lifecycle: Lifecycle,
    entitlement: Entitlement,
    render_metrics: RenderMetrics,
    /// Unknown API keys per source address (`control.api_key_failures_max`).
    api_key_failures: FailureLimiter,
    /// This process's side of the job queue.
    jobs: Jobs,
    /// Builds and deletes assets from the archive; set once, before serving, when an
    /// archive is configured (`Control::with_assets`).
    asset_builder: OnceLock<Arc<dyn AssetBuilder>>,
}

/// Renders the process's Prometheus text exposition.
pub(crate) type RenderMetrics = Box<dyn Fn() -> String + Send + Sync>;

impl AppState {
    pub(crate) fn new(
        config: ControlConfig,
        store: Store,
        urls: PublicUrls,
        live: Arc<dyn LiveStatusSource>,
        entitlement: Entitlement,
        render_metrics: RenderMetrics,
    ) -> AppState {
        AppState(Arc::new(Shared {
            lifecycle: Lifecycle::new(store.clone(), config.clone(), live.clone()),
            api_key_failures: FailureLimiter::new(
                config.api_key_failures_max,
                Duration::from_secs(config.publish_failures_window_secs),
                config.publish_failures_tracked_max,
                "control.publish_failures_tracked_max",
            ),
            jobs: Jobs::new(config.jobs.clone()),
            asset_builder: OnceLock::new(),
            config,
            store,
            urls,
            live,
            entitlement,
            render_metrics,
        }))
    }

    /// The answer to an unknown or revoked API key from `peer`: 401, or, once the
    /// address is over `control.api_key_failures_max` in the window, 429 after
    /// `control.credential_failure_delay_ms` (a guesser gets one answer per delay).
    pub(crate) async fn api_key_failed(&self, peer: Option<IpAddr>) -> ApiError {
        let unknown = ApiError::Unauthenticated("unknown or revoked API key");
        let Some(peer) = peer else { return unknown };
        let failures = &self.0.api_key_failures;
        let now = Instant::now();
        let throttled = failures.over_limit(peer, now);
        failures.record_failure(peer, now);
        metrics::counter!("floodlight_control_api_key_failures_total").increment(1);
        if !throttled {
            return unknown;
        }
        tokio::time::sleep(Duration::from_millis(
            self.0.config.credential_failure_delay_ms,
        ))
        .await;
        ApiError::TooManyFailures {
            retry_after_secs: self.0.config.publish_failures_window_secs,
        }
    }

    /// Publish checks, state changes from publishing, the reconciler and the bus.
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.0.lifecycle
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }

    pub(crate) fn config(&self) -> &ControlConfig {
        &self.0.config
    }

    pub(crate) fn urls(&self) -> &PublicUrls {
        &self.0.urls
    }

    pub(crate) fn live(&self) -> &dyn LiveStatusSource {
        self.0.live.as_ref()
    }

    /// The process's Prometheus text exposition, for `GET /metrics`.
    pub(crate) fn render_metrics(&self) -> String {
        (self.0.render_metrics)()
    }

    pub(crate) fn jobs(&self) -> &Jobs {
        &self.0.jobs
    }

    /// The asset builder, when an archive is configured.
    pub(crate) fn asset_builder(&self) -> Option<&Arc<dyn AssetBuilder>> {
        self.0.asset_builder.get()
    }

    /// Sets the asset builder; `false` when one was set already (it stays).
    pub(crate) fn set_asset_builder(&self, builder: Arc<dyn AssetBuilder>) -> bool {
        self.0.asset_builder.set(builder).is_ok()
    }

    /// Signing keys, the session store and the entitlement config.
    pub(crate) fn entitlement(&self) -> &Entitlement {
        &self.0.entitlement
    }
}
