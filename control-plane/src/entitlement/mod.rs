//! Entitlement: who may watch which event, and the playback tokens that say so.
//!
//! - Accounts (viewers), plans (event categories, a concurrency limit), subscriptions
//!   (active / past_due / cancelled, with validity dates; the payment provider moves them
//!   through a signed webhook) and per-event purchases, in the control plane's SQL store.
//! - `POST /v1/events/{id}/playback` decides ([`decision`]), registers a viewer session
//!   against the account's concurrency limit ([`crate::viewer_sessions`]) and signs a playback
//!   token (`floodlight_media::token`) that the origins check on every request with no
//!   call back here. A public event needs no token: the answer is its plain URL.
//! - Sessions are listed and revoked here; origins refuse a revoked session within
//!   `sessions.revocation_refresh_ms`.

pub(crate) mod api;
mod config;
mod decision;
mod keys;
mod store;
mod webhook;

use std::path::Path;

use axum::http::HeaderName;
use floodlight_media::token::TokenKey;

use crate::config_error::ConfigError;
use crate::viewer_sessions::SessionStore;

pub use config::EntitlementConfig;
pub use keys::{SigningKeyError, playback_signing_keys};
pub use store::{
    Account, EntitlementStoreError, Grants, ListCursor, NewPlan, NewSubscription, Page, Plan,
    Purchase, Subscription, SubscriptionState,
};

/// What the entitlement handlers share: the config, the current signing key and the
/// viewer-session store.
pub(crate) struct Entitlement {
    config: EntitlementConfig,
    /// The current key: tokens are signed with it.
    signing_key: TokenKey,
    sessions: SessionStore,
    geo_header: HeaderName,
}

impl Entitlement {
    /// Loads the signing keys (configured, or kept in the data dir) and takes the session
    /// store the origins share.
    pub(crate) async fn new(
        config: EntitlementConfig,
        data_dir: &Path,
        sessions: SessionStore,
    ) -> Result<Entitlement, SigningKeyError> {
        let specs = playback_signing_keys(&config, data_dir).await?;
        // Parsed once already by `playback_signing_keys`; the first is the current key.
        let signing_key = specs
            .first()
            .and_then(|spec| TokenKey::parse(spec.expose_secret()).ok())
            .ok_or_else(|| SigningKeyError::Empty {
                path: data_dir.join(keys::PLAYBACK_KEYS_FILE),
            })?;
        let geo_header =
            HeaderName::from_bytes(config.geo_country_header.as_bytes()).map_err(|_| {
                ConfigError::Invalid {
                    key: "entitlement.geo_country_header",
                    reason: "not an HTTP header name".to_string(),
                }
            })?;
        Ok(Entitlement {
            config,
            signing_key,
            sessions,
            geo_header,
        })
    }

    pub(crate) fn sessions(&self) -> &SessionStore {
        &self.sessions
    }
}
