//! `[control]` in floodlight.toml, with the sections the domains own inside it
//! (`[control.entitlement]`), and the public URLs the API hands out.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config_error::ConfigError;
use crate::entitlement::EntitlementConfig;
use crate::jobs::JobsConfig;
use crate::secret::{MIN_SECRET_CHARS, Secret};

/// `[control]` in floodlight.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Address the binary binds the control API's HTTP listener to.
    pub listen: SocketAddr,
    /// sqlx connection URL. Unset: `sqlite://{data_dir}/floodlight.db?mode=rwc`, the
    /// embedded default that needs no other server.
    pub database_url: Option<String>,
    /// Largest request body the API reads; larger ones get 413.
    pub max_body_bytes: usize,
    /// Items per page of `GET /v1/events` when the request gives no `limit`.
    pub default_page_size: u32,
    /// Largest `limit` a list request may ask for.
    pub max_page_size: u32,
    /// Most database connections the pool opens.
    pub database_max_connections: u32,
    /// How long a request waits for a free database connection before failing.
    pub database_acquire_timeout_secs: u64,
    /// The bootstrap admin API key (env `FLOODLIGHT_ADMIN_KEY`), for automation. It only
    /// bootstraps an empty API key table: set, it becomes the admin key (stored hashed);
    /// unset, a random admin key is generated and `floodlight up` prints it once. Once the
    /// table has keys they are managed through the API: a configured key that was revoked
    /// stays revoked (start-up warns that it is ignored).
    pub admin_key: Option<Secret>,
    /// Secret of the keyed hash (HMAC-SHA256) that stream and API keys are stored as.
    /// Unset: a random one kept in `{data_dir}/control.key`. Control planes sharing one
    /// PostgreSQL database must share this value.
    pub key_secret: Option<Secret>,
    /// Publishing opens this long before an event's `starts_at`, so crews can test.
    pub early_open_secs: u64,
    /// Publishing closes this long after an event's `ends_at`; a live event still on air
    /// then is ended.
    pub late_close_secs: u64,
    /// A live event whose publisher has been gone this long is ended (match
    /// `transcoder.reconnect_grace_secs`, after which the playlists end too).
    pub reconnect_grace_secs: u64,
    /// How often the lifecycle reconciler looks for events to end.
    pub reconcile_interval_ms: u64,
    /// Failed stream key attempts one source address may make per window. Past it the
    /// address is throttled, not locked out: a valid key is still accepted at once, and
    /// each further failure is answered `rate_limited` after `credential_failure_delay_ms`.
    pub publish_failures_max: u32,
    /// The window of `publish_failures_max`, seconds.
    pub publish_failures_window_secs: u64,
    /// Most source addresses whose failures are counted at once (memory bound); when
    /// full, a new failing address goes uncounted until windows expire.
    pub publish_failures_tracked_max: usize,
    /// Failed API key attempts (401) one source address may make per window
    /// (`publish_failures_window_secs`), throttled like stream keys: past it, each
    /// further failure is answered 429 after `credential_failure_delay_ms`.
    pub api_key_failures_max: u32,
    /// How long an over-the-limit address waits for each failed credential's answer, ms.
    pub credential_failure_delay_ms: u64,
    /// Most active (unrevoked) stream keys one event may have.
    pub max_stream_keys_per_event: usize,
    /// Lifecycle messages buffered per event-bus subscriber; a slower subscriber misses
    /// the oldest ones (and is told how many).
    pub event_bus_capacity: usize,
    /// `[control.entitlement]`: playback token signing, geo header, payment webhook.
    pub entitlement: EntitlementConfig,
    /// `[control.jobs]`: the runner of asset builds and deletes.
    pub jobs: JobsConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8090)),
            database_url: None,
            max_body_bytes: 64 * 1024,
            default_page_size: 50,
            max_page_size: 200,
            database_max_connections: 10,
            database_acquire_timeout_secs: 10,
            admin_key: None,
            key_secret: None,
            early_open_secs: 1800,
            late_close_secs: 1800,
            reconnect_grace_secs: 30,
            reconcile_interval_ms: 1000,
            publish_failures_max: 10,
            publish_failures_window_secs: 60,
            publish_failures_tracked_max: 100_000,
            api_key_failures_max: 20,
            credential_failure_delay_ms: 1000,
            max_stream_keys_per_event: 10,
            event_bus_capacity: 1024,
            entitlement: EntitlementConfig::default(),
            jobs: JobsConfig::default(),
        }
    }
}
impl ControlConfig {
    /// Checks the values against each other; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.entitlement.validate()?;
        self.jobs.validate()?;
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                reason: format!("{} is too small; at least 1024", self.max_body_bytes),
            });
        }
        if self.max_page_size == 0 {
            return Err(ConfigError::Invalid {
                key: "max_page_size",
                reason: "must be at least 1".to_string(),
            });
        }
        if self.default_page_size == 0 || self.default_page_size > self.max_page_size {
            return Err(ConfigError::Invalid {
                key: "default_page_size",
                reason: format!(
                    "{} is outside 1..={} (max_page_size)",
                    self.default_page_size, self.max_page_size
                ),
            });
        }
        for (key, secret) in [
            ("admin_key", &self.admin_key),
            ("key_secret", &self.key_secret),
        ] {
            if let Some(secret) = secret {
                let chars = secret.expose_secret().chars().count();
                if chars < MIN_SECRET_CHARS {
                    return Err(ConfigError::Invalid {
                        key,
                        reason: format!(
                            "is {chars} characters long; at least {MIN_SECRET_CHARS}, random"
                        ),
                    });
                }
            }
        }
        let nonzero = [
            (
                "database_max_connections",
                u64::from(self.database_max_connections),
            ),
            (
                "database_acquire_timeout_secs",
                self.database_acquire_timeout_secs,
            ),
            ("reconnect_grace_secs", self.reconnect_grace_secs),
            ("reconcile_interval_ms", self.reconcile_interval_ms),
            ("publish_failures_max", u64::from(self.publish_failures_max)),
            (
                "publish_failures_window_secs",
                self.publish_failures_window_secs,
            ),
            (
                "publish_failures_tracked_max",
                self.publish_failures_tracked_max as u64,
            ),
            ("api_key_failures_max", u64::from(self.api_key_failures_max)),
            (
                "max_stream_keys_per_event",
                self.max_stream_keys_per_event as u64,
            ),
            ("event_bus_capacity", self.event_bus_capacity as u64),
        ];
        for (key, value) in nonzero {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be at least 1".to_string(),
                });
            }
        }
        if self.database_url.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Invalid {
                key: "database_url",
                reason: "is empty; leave it unset for the SQLite file in the data dir".to_string(),
            });
        }
        Ok(())
    }
}

/// The SQLite file in the data dir when no `database_url` is set.
pub(crate) const DEFAULT_DATABASE_FILE: &str = "floodlight.db";

/// Where publishers and viewers reach this deployment, as the API answers put it. The
/// binary builds it from the ingest and origin listeners and the public host name, since
/// only it knows all services (ARCHITECTURE.md, "The public contract").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrls {
    /// RTMP application URL without the stream key, e.g. `rtmp://localhost:1935/live`:
    /// OBS's "Server" field.
    pub rtmp_base: String,
    /// Origin live path, e.g. `http://localhost:8080/live`; an event's master playlist is
    /// `{hls_base}/{event_id}/master.m3u8`.
    pub hls_base: String,
    /// Origin VOD path, e.g. `http://localhost:8080/vod`; an asset's master playlist is
    /// `{vod_base}/{asset_id}/master.m3u8`, its poster `{vod_base}/{asset_id}/poster.jpg`.
    pub vod_base: String,
}

impl Default for PublicUrls {
    fn default() -> Self {
        PublicUrls::new("localhost", 1935, 8080)
    }
}

impl PublicUrls {
    /// The default paths (`/live` for RTMP and playback) on `host`. An IPv6 literal is
    /// put in brackets (RFC 3986 §3.2.2).
    pub fn new(host: &str, rtmp_port: u16, http_port: u16) -> PublicUrls {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        PublicUrls {
            rtmp_base: format!("rtmp://{host}:{rtmp_port}/live"),
            hls_base: format!("http://{host}:{http_port}/live"),
            vod_base: format!("http://{host}:{http_port}/vod"),
        }
    }

    pub(crate) fn rtmp_url(&self) -> &str {
        self.rtmp_base.trim_end_matches('/')
    }

    /// The ffmpeg form: `rtmp://HOST:1935/live/{stream_key}`.
    pub(crate) fn rtmp_publish_url(&self, stream_key: &str) -> String {
        format!("{}/{stream_key}", self.rtmp_url())
    }

    pub(crate) fn hls_master_playlist(&self, event_id: &str) -> String {
        format!(
            "{}/{event_id}/master.m3u8",
            self.hls_base.trim_end_matches('/')
        )
    }

    pub(crate) fn vod_master_playlist(&self, asset_id: &str) -> String {
        format!(
            "{}/{asset_id}/master.m3u8",
            self.vod_base.trim_end_matches('/')
        )
    }

    pub(crate) fn vod_poster(&self, asset_id: &str) -> String {
        format!(
            "{}/{asset_id}/poster.jpg",
            self.vod_base.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_public_contract() {
        // ARCHITECTURE.md, "The public contract": RTMP on 1935 under /live, playback on
        // 8080 under /live/{event_id}/master.m3u8.
        let urls = PublicUrls::default();
        assert_eq!(urls.rtmp_url(), "rtmp://localhost:1935/live");
        assert_eq!(
            urls.rtmp_publish_url("fl_live_abc"),
            "rtmp://localhost:1935/live/fl_live_abc"
        );
        assert_eq!(
            urls.hls_master_playlist("ev1"),
            "http://localhost:8080/live/ev1/master.m3u8"
        );
        // ... and VOD under /vod/{asset_id}/master.m3u8.
        assert_eq!(
            urls.vod_master_playlist("as1"),
            "http://localhost:8080/vod/as1/master.m3u8"
        );
        assert_eq!(
            urls.vod_poster("as1"),
            "http://localhost:8080/vod/as1/poster.jpg"
        );
        ControlConfig::default().validate().unwrap();
    }

    #[test]
    fn ipv6_hosts_are_bracketed_and_trailing_slashes_ignored() {
        let urls = PublicUrls::new("::1", 1935, 8080);
        assert_eq!(urls.rtmp_base, "rtmp://[::1]:1935/live");
        let urls = PublicUrls {
            rtmp_base: "rtmp://example.net/live/".to_string(),
            hls_base: "https://cdn.example.net/live/".to_string(),
            vod_base: "https://cdn.example.net/vod/".to_string(),
        };
        assert_eq!(urls.rtmp_publish_url("k"), "rtmp://example.net/live/k");
        assert_eq!(
            urls.hls_master_playlist("e"),
            "https://cdn.example.net/live/e/master.m3u8"
        );
        assert_eq!(
            urls.vod_master_playlist("a"),
            "https://cdn.example.net/vod/a/master.m3u8"
        );
    }

    #[test]
    fn toml_overrides_and_validation_name_the_key() {
        // The binary reads this section from TOML; serde_json drives the same derive.
        let config: ControlConfig =
            serde_json::from_str(r#"{"default_page_size": 500, "max_page_size": 100}"#).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("control.default_page_size:"), "{err}");

        let err = ControlConfig {
            max_body_bytes: 10,
            ..ControlConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("control.max_body_bytes:"), "{err}");

        let unknown = serde_json::from_str::<ControlConfig>(r#"{"max_page_sise": 1}"#);
        assert!(unknown.unwrap_err().to_string().contains("max_page_sise"));
    }
}
