//! Viewer sessions: the live state the control plane and the origins share about who is
//! watching (ARCHITECTURE.md, "State and where it lives": in-process in `floodlight up`,
//! Redis when distributed).
//!
//! - A session is registered when a playback token is issued (its `sid` is the token's),
//!   and counts as active while its last heartbeat is within `sessions.ttl_secs` and its
//!   token has not expired. Registration counts as the first heartbeat, so tokens fetched
//!   and not yet played still count.
//! - Origins send a heartbeat on every playlist request of the session (players reload
//!   playlists every part); the Redis store batches them.
//! - Registration and the concurrency check are one atomic step, so two token requests
//!   racing for an account's last slot cannot both win.
//! - A revoked session is remembered until its token expires (after that the token is
//!   refused anyway). `is_revoked` answers from a local copy: immediate in-process, and
//!   refreshed from Redis every `sessions.revocation_refresh_ms`, so every origin refuses
//!   a revoked session within that time (the issue asks for 5 s).
//!
//! `store.rs` holds the [`SessionStore`] the rest of the crate and the origins use; it
//! keeps its sessions in this process (`memory.rs`) or in Redis (`redis.rs`).

mod memory;
mod redis;
mod store;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use store::SessionStore;

/// `[sessions]` in floodlight.toml: the viewer-session store the control plane and the
/// origins share.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session counts toward its account's concurrency limit while its last heartbeat
    /// (a playlist request, or the token's issue) is at most this old, seconds. Players
    /// reload playlists every part, so a few seconds would do; longer tolerates a stalled
    /// player without freeing its slot at once.
    pub ttl_secs: u64,
    /// Redis connection URL (`redis://[user:password@]host:port/db`). Unset: the sessions
    /// live in this process, which is right only when one process runs both the control
    /// plane and the origin (`floodlight up`). The password is never logged.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// How often the local copy of the revocation list is refreshed from Redis, ms. A
    /// revoked session is refused by every origin within this time.
    pub revocation_refresh_ms: u64,
    /// Heartbeats are sent to Redis in batches this often, ms. Must stay well below
    /// `ttl_secs`.
    pub heartbeat_flush_ms: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            ttl_secs: 30,
            redis_url: None,
            key_prefix: "floodlight:".to_string(),
            revocation_refresh_ms: 1000,
            heartbeat_flush_ms: 1000,
        }
    }
}

/// The Redis URL may carry a password: `Debug` shows the URL without its credentials.
impl fmt::Debug for SessionsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionsConfig")
            .field("ttl_secs", &self.ttl_secs)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(without_credentials),
            )
            .field("key_prefix", &self.key_prefix)
            .field("revocation_refresh_ms", &self.revocation_refresh_ms)
            .field("heartbeat_flush_ms", &self.heartbeat_flush_ms)
            .finish()
    }
}

/// `redis://user:secret@host/0` → `redis://<redacted>@host/0`.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}<redacted>{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A `[sessions]` value that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionsConfigError {
    #[error("sessions.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The bound: a revoked session is refused within 5 s.
const MAX_REVOCATION_REFRESH_MS: u64 = 4000;

impl SessionsConfig {
    pub fn validate(&self) -> Result<(), SessionsConfigError> {
        let invalid = |key, reason: String| Err(SessionsConfigError::Invalid { key, reason });
        if self.ttl_secs == 0 {
            return invalid("ttl_secs", "must be at least 1".to_string());
        }
        if !(100..=MAX_REVOCATION_REFRESH_MS).contains(&self.revocation_refresh_ms) {
            return invalid(
                "revocation_refresh_ms",
                format!(
                    "{} is outside 100..={MAX_REVOCATION_REFRESH_MS}: a revoked session must be \
                     refused within 5 s",
                    self.revocation_refresh_ms
                ),
            );
        }
        if self.heartbeat_flush_ms < 100 || self.heartbeat_flush_ms * 2 > self.ttl_secs * 1000 {
            return invalid(
                "heartbeat_flush_ms",
                format!(
                    "{} must be at least 100 and at most half of ttl_secs ({} s), or watching \
                     sessions would lapse between flushes",
                    self.heartbeat_flush_ms, self.ttl_secs
                ),
            );
        }
        if self.key_prefix.chars().any(char::is_whitespace) {
            return invalid("key_prefix", "must not contain whitespace".to_string());
        }
        if let Some(url) = &self.redis_url
            && let Err(error) = ::redis::Client::open(url.as_str())
        {
            // The reason names the error kind, never the URL (it may hold a password).
            return invalid("redis_url", format!("not a Redis URL: {:?}", error.kind()));
        }
        Ok(())
    }
}

/// A session to register when a token is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The token's `sid`.
    pub sid: String,
    pub account_id: String,
    pub event_id: String,
    /// The token's expiry, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// An active session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewerSession {
    pub sid: String,
    pub account_id: String,
    pub event_id: String,
    /// The token's expiry, seconds since the Unix epoch.
    pub expires_at: i64,
    /// The last heartbeat (or the registration), milliseconds since the Unix epoch.
    pub last_seen_ms: i64,
}

/// What [`SessionStore::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The session is registered and counts as active.
    Registered,
    /// The account already has `active` sessions, at or over the limit: nothing changed.
    LimitReached { active: u32 },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The shared store cannot be reached; the operation did not happen.
    #[error("the viewer-session store is unavailable: {0}")]
    Unavailable(String),
}

impl From<::redis::RedisError> for SessionError {
    fn from(error: ::redis::RedisError) -> Self {
        // Redis errors carry the kind and the server's message, never the URL.
        SessionError::Unavailable(error.to_string())
    }
}

fn ttl_ms(config: &SessionsConfig) -> i64 {
    i64::try_from(config.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

const REGISTRATIONS: &str = "floodlight_sessions_registrations_total";
const REVOCATIONS: &str = "floodlight_sessions_revocations_total";
const REDIS_ERRORS: &str = "floodlight_sessions_redis_errors_total";

/// Registers the metrics' help texts.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(
        REGISTRATIONS,
        "Viewer session registrations at token issue, by outcome (registered, limit_reached)"
    );
    metrics::describe_counter!(REVOCATIONS, "Viewer sessions revoked");
    metrics::describe_counter!(
        REDIS_ERRORS,
        "Background Redis operations of the session store that failed, by operation (refresh_revocations, flush_heartbeats)"
    );
}

/// Whether `session` counts as active at `now_ms`: seen within `ttl_ms`, its token not
/// yet expired.
fn is_active(session: &ViewerSession, now_ms: i64, ttl_ms: i64) -> bool {
    session.last_seen_ms >= now_ms.saturating_sub(ttl_ms)
        && session.expires_at.saturating_mul(1000) > now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' clock, ms since the Unix epoch.
    pub(super) const T0: i64 = 1_800_000_000_000;

    pub(super) fn session(sid: &str, account: &str) -> NewSession {
        NewSession {
            sid: sid.to_string(),
            account_id: account.to_string(),
            event_id: "ev1".to_string(),
            expires_at: T0 / 1000 + 3600,
        }
    }

    #[test]
    fn config_is_validated_and_the_password_never_shown() {
        SessionsConfig::default().validate().unwrap();
        let config = SessionsConfig {
            redis_url: Some("redis://user:hunter2hunter2@redis.internal:6379/0".to_string()),
            ..SessionsConfig::default()
        };
        config.validate().unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("redis://<redacted>@redis.internal:6379/0"),
            "{debug}"
        );
        for (config, key) in [
            (
                SessionsConfig {
                    ttl_secs: 0,
                    ..SessionsConfig::default()
                },
                "sessions.ttl_secs",
            ),
            (
                SessionsConfig {
                    revocation_refresh_ms: 5000,
                    ..SessionsConfig::default()
                },
                "sessions.revocation_refresh_ms",
            ),
            (
                SessionsConfig {
                    heartbeat_flush_ms: 20_000,
                    ..SessionsConfig::default()
                },
                "sessions.heartbeat_flush_ms",
            ),
            (
                SessionsConfig {
                    redis_url: Some("http://x:hunter2@h".to_string()),
                    ..SessionsConfig::default()
                },
                "sessions.redis_url",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
