//! `[control.entitlement]` in floodlight.toml: playback token signing, the CDN's country
//! header, and the payment provider's webhook secret.

use floodlight_media::token::TokenKey;
use serde::Deserialize;

use crate::config_error::ConfigError;
use crate::secret::{MIN_SECRET_CHARS, Secret};

/// `[control.entitlement]` in floodlight.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntitlementConfig {
    /// Keys that sign playback tokens, `<key id>:<secret>` (secret ≥ 32 characters), the
    /// current one first: tokens are signed with it, and origins accept it and the one
    /// after it (the previous key, during a rotation). Unset: a key generated once and
    /// kept in `{data_dir}/playback.keys`, so tokens survive a restart. Origins must hold
    /// the same keys (`origin.playback_keys`; `floodlight up` passes them itself).
    pub playback_signing_keys: Vec<Secret>,
    /// How long a playback token is valid, seconds. The origin checks the expiry on every
    /// request and players cannot swap the token in a URL they are following, so it must
    /// outlast a viewing session; revoking the session ends one early.
    pub token_ttl_secs: u64,
    /// Query parameter of the playback URL that carries the token; must equal
    /// `origin.token_query_param`.
    pub token_query_param: String,
    /// Request header in which the CDN in front of the viewer service passes the viewer's
    /// country (ISO 3166-1 alpha-2), checked against an event's geo allow/deny lists.
    pub geo_country_header: String,
    /// Sessions one account may watch at once on an event it bought (pay-per-view)
    /// rather than through a plan; 0 = no limit.
    pub purchase_max_concurrent_sessions: u32,
    /// Secret of the payment provider's webhook signature (HMAC-SHA256). Unset: the
    /// webhook answers 503.
    pub webhook_secret: Option<Secret>,
    /// A webhook call whose signed timestamp is further from now than this is refused, so
    /// a captured call cannot be replayed later, seconds.
    pub webhook_tolerance_secs: u64,
}

impl Default for EntitlementConfig {
    fn default() -> Self {
        EntitlementConfig {
            playback_signing_keys: Vec::new(),
            token_ttl_secs: 4 * 3600,
            token_query_param: "token".to_string(),
            geo_country_header: "CloudFront-Viewer-Country".to_string(),
            purchase_max_concurrent_sessions: 2,
            webhook_secret: None,
            webhook_tolerance_secs: 300,
        }
    }
}

impl EntitlementConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        self.signing_keys()?;
        if !(60..=7 * 24 * 3600).contains(&self.token_ttl_secs) {
            return invalid(
                "entitlement.token_ttl_secs",
                format!("{} is outside 60..=604800", self.token_ttl_secs),
            );
        }
        let param_ok = (1..=64).contains(&self.token_query_param.len())
            && self
                .token_query_param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !self.token_query_param.starts_with("_HLS_");
        if !param_ok {
            return invalid(
                "entitlement.token_query_param",
                format!(
                    "{:?} must be 1 to 64 letters, digits, - or _, not starting with _HLS_",
                    self.token_query_param
                ),
            );
        }
        if axum::http::HeaderName::from_bytes(self.geo_country_header.as_bytes()).is_err() {
            return invalid(
                "entitlement.geo_country_header",
                format!("{:?} is not an HTTP header name", self.geo_country_header),
            );
        }
        if let Some(secret) = &self.webhook_secret {
            let chars = secret.expose_secret().chars().count();
            if chars < MIN_SECRET_CHARS {
                return invalid(
                    "entitlement.webhook_secret",
                    format!("is {chars} characters long; at least {MIN_SECRET_CHARS}, random"),
                );
            }
        }
        if self.webhook_tolerance_secs == 0 {
            return invalid(
                "entitlement.webhook_tolerance_secs",
                "must be at least 1".to_string(),
            );
        }
        Ok(())
    }

    /// The configured signing keys, parsed (empty when unset).
    pub(crate) fn signing_keys(&self) -> Result<Vec<TokenKey>, ConfigError> {
        let mut keys: Vec<TokenKey> = Vec::new();
        for (index, spec) in self.playback_signing_keys.iter().enumerate() {
            // The reason names the entry by position, never its secret.
            let key =
                TokenKey::parse(spec.expose_secret()).map_err(|error| ConfigError::Invalid {
                    key: "entitlement.playback_signing_keys",
                    reason: format!("entry {index}: {error}"),
                })?;
            if keys.iter().any(|k| k.id() == key.id()) {
                return Err(ConfigError::Invalid {
                    key: "entitlement.playback_signing_keys",
                    reason: format!("entry {index}: key id {:?} appears twice", key.id()),
                });
            }
            keys.push(key);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_key() {
        EntitlementConfig::default().validate().unwrap();
        let secret = "0123456789abcdef0123456789abcdef";
        let cases = [
            (
                EntitlementConfig {
                    playback_signing_keys: vec![Secret::new(format!("bad id:{secret}"))],
                    ..EntitlementConfig::default()
                },
                "control.entitlement.playback_signing_keys",
            ),
            (
                EntitlementConfig {
                    playback_signing_keys: vec![
                        Secret::new(format!("k:{secret}")),
                        Secret::new(format!("k:{secret}x")),
                    ],
                    ..EntitlementConfig::default()
                },
                "control.entitlement.playback_signing_keys",
            ),
            (
                EntitlementConfig {
                    token_ttl_secs: 10,
                    ..EntitlementConfig::default()
                },
                "control.entitlement.token_ttl_secs",
            ),
            (
                EntitlementConfig {
                    token_query_param: "_HLS_x".to_string(),
                    ..EntitlementConfig::default()
                },
                "control.entitlement.token_query_param",
            ),
            (
                EntitlementConfig {
                    geo_country_header: "bad header".to_string(),
                    ..EntitlementConfig::default()
                },
                "control.entitlement.geo_country_header",
            ),
            (
                EntitlementConfig {
                    webhook_secret: Some(Secret::new("short")),
                    ..EntitlementConfig::default()
                },
                "control.entitlement.webhook_secret",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
            assert!(!error.contains(secret), "{error}");
        }
        let config = EntitlementConfig {
            playback_signing_keys: vec![Secret::new(format!("k:{secret}"))],
            ..EntitlementConfig::default()
        };
        config.validate().unwrap();
        assert!(!format!("{config:?}").contains(secret));
    }
}
