//! [`SessionStore`]: the viewer-session store the control plane and the origins use, in
//! this process or in Redis, whichever `[sessions]` names. It counts registrations and
//! revocations, whichever keeps the sessions.

use std::sync::Arc;

use tracing::info;

use floodlight_media::clock::unix_millis;

use super::memory::LocalSessions;
use super::redis::RedisSessions;
use super::{
    NewSession, REGISTRATIONS, REVOCATIONS, Registration, SessionError, SessionsConfig,
    ViewerSession, ttl_ms,
};

/// The viewer-session store: in-process or Redis. Cheap to clone.
#[derive(Clone)]
pub struct SessionStore {
    backend: Backend,
    ttl_ms: i64,
}

#[derive(Clone)]
enum Backend {
    Local(Arc<LocalSessions>),
    Redis(Arc<RedisSessions>),
}

impl SessionStore {
    /// The store `config` names: Redis when `redis_url` is set (connected before this
    /// returns, with the revocation list loaded), in-process otherwise.
    pub async fn open(config: &SessionsConfig) -> Result<SessionStore, SessionError> {
        let backend = match &config.redis_url {
            Some(url) => Backend::Redis(RedisSessions::connect(url, config).await?),
            None => Backend::Local(Arc::new(LocalSessions::default())),
        };
        Ok(SessionStore {
            backend,
            ttl_ms: ttl_ms(config),
        })
    }

    /// An in-process store, whatever `config.redis_url` says.
    pub fn in_process(config: &SessionsConfig) -> SessionStore {
        SessionStore {
            backend: Backend::Local(Arc::new(LocalSessions::default())),
            ttl_ms: ttl_ms(config),
        }
    }

    /// Registers `session` unless its account already has `limit` active sessions.
    pub async fn register(
        &self,
        session: NewSession,
        limit: Option<u32>,
    ) -> Result<Registration, SessionError> {
        self.register_at(session, limit, unix_millis()).await
    }

    async fn register_at(
        &self,
        session: NewSession,
        limit: Option<u32>,
        now_ms: i64,
    ) -> Result<Registration, SessionError> {
        let registration = match &self.backend {
            Backend::Local(local) => Ok(local.register(session, limit, now_ms, self.ttl_ms)),
            Backend::Redis(redis) => redis.register(session, limit, now_ms, self.ttl_ms).await,
        }?;
        let outcome = match registration {
            Registration::Registered => "registered",
            Registration::LimitReached { .. } => "limit_reached",
        };
        metrics::counter!(REGISTRATIONS, "outcome" => outcome).increment(1);
        Ok(registration)
    }

    /// The account's active sessions.
    pub async fn active_sessions(
        &self,
        account_id: &str,
    ) -> Result<Vec<ViewerSession>, SessionError> {
        self.active_sessions_at(account_id, unix_millis()).await
    }

    async fn active_sessions_at(
        &self,
        account_id: &str,
        now_ms: i64,
    ) -> Result<Vec<ViewerSession>, SessionError> {
        match &self.backend {
            Backend::Local(local) => Ok(local.active(account_id, now_ms, self.ttl_ms)),
            Backend::Redis(redis) => redis.active(account_id, now_ms, self.ttl_ms).await,
        }
    }

    /// How many sessions of the account are active.
    pub async fn active_count(&self, account_id: &str) -> Result<u32, SessionError> {
        let sessions = self.active_sessions(account_id).await?;
        Ok(u32::try_from(sessions.len()).unwrap_or(u32::MAX))
    }

    /// Revokes a session: origins refuse it from their next refresh on, and it no longer
    /// counts toward its account's limit. `None` if no such session is known (never
    /// issued, expired, or revoked already).
    pub async fn revoke(&self, sid: &str) -> Result<Option<ViewerSession>, SessionError> {
        self.revoke_at(sid, unix_millis()).await
    }

    async fn revoke_at(
        &self,
        sid: &str,
        now_ms: i64,
    ) -> Result<Option<ViewerSession>, SessionError> {
        let revoked = match &self.backend {
            Backend::Local(local) => Ok(local.revoke(sid, now_ms)),
            Backend::Redis(redis) => redis.revoke(sid, now_ms).await,
        }?;
        if let Some(session) = &revoked {
            metrics::counter!(REVOCATIONS).increment(1);
            info!(
                sid,
                account_id = session.account_id,
                event_id = session.event_id,
                "viewer session revoked"
            );
        }
        Ok(revoked)
    }

    /// The session is watching (an origin served it a playlist). Returns at once: the
    /// Redis store sends heartbeats in batches.
    pub fn heartbeat(&self, sid: &str) {
        match &self.backend {
            Backend::Local(local) => local.heartbeat(sid, unix_millis()),
            Backend::Redis(redis) => redis.queue_heartbeat(sid),
        }
    }

    /// Whether the session was revoked, from the local copy of the revocation list.
    pub fn is_revoked(&self, sid: &str) -> bool {
        match &self.backend {
            Backend::Local(local) => local.is_revoked(sid),
            Backend::Redis(redis) => redis.is_revoked(sid),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use floodlight_media::sync::lock;

    use super::*;
    use crate::viewer_sessions::tests::{T0, session};

    fn config() -> SessionsConfig {
        SessionsConfig {
            ttl_secs: 30,
            ..SessionsConfig::default()
        }
    }

    /// The same scenario for both stores, on their clock `T0 + …`.
    async fn concurrency_heartbeat_and_revocation(store: &SessionStore) {
        let at = |secs: i64| T0 + secs * 1000;
        assert_eq!(
            store
                .register_at(session("s1", "a1"), Some(2), at(0))
                .await
                .unwrap(),
            Registration::Registered
        );
        assert_eq!(
            store
                .register_at(session("s2", "a1"), Some(2), at(1))
                .await
                .unwrap(),
            Registration::Registered
        );
        assert_eq!(
            store
                .register_at(session("s3", "a1"), Some(2), at(2))
                .await
                .unwrap(),
            Registration::LimitReached { active: 2 }
        );
        // Another account is not affected; no limit means none.
        assert_eq!(
            store
                .register_at(session("s9", "a2"), None, at(2))
                .await
                .unwrap(),
            Registration::Registered
        );
        let active = store.active_sessions_at("a1", at(2)).await.unwrap();
        assert_eq!(
            active.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(),
            ["s1", "s2"]
        );
        assert_eq!(active[0].event_id, "ev1");
        assert_eq!(active[0].last_seen_ms, at(0));

        // s1 lapses 30 s after its registration unless it heartbeats; s2 is not seen again.
        match &store.backend {
            Backend::Local(local) => local.heartbeat("s1", at(25)),
            Backend::Redis(redis) => {
                redis.queue_heartbeat("s1");
                redis.flush_heartbeats(at(25)).await.unwrap();
            }
        }
        let active = store.active_sessions_at("a1", at(40)).await.unwrap();
        assert_eq!(
            active.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(),
            ["s1"]
        );
        assert_eq!(active[0].last_seen_ms, at(25));
        assert_eq!(
            store
                .register_at(session("s3", "a1"), Some(2), at(40))
                .await
                .unwrap(),
            Registration::Registered
        );

        // Revocation: refused at once here, no longer counted, remembered.
        assert!(!store.is_revoked("s1"));
        let revoked = store.revoke_at("s1", at(41)).await.unwrap().unwrap();
        assert_eq!(revoked.account_id, "a1");
        assert_eq!(revoked.expires_at, T0 / 1000 + 3600);
        assert!(store.is_revoked("s1"));
        assert!(!store.is_revoked("s3"));
        assert!(store.revoke_at("s1", at(42)).await.unwrap().is_none());
        assert!(store.revoke_at("nosuch", at(42)).await.unwrap().is_none());
        let active = store.active_sessions_at("a1", at(42)).await.unwrap();
        assert_eq!(
            active.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(),
            ["s3"]
        );
        // A heartbeat of the revoked session does not bring it back.
        match &store.backend {
            Backend::Local(local) => local.heartbeat("s1", at(43)),
            Backend::Redis(redis) => {
                redis.queue_heartbeat("s1");
                redis.flush_heartbeats(at(43)).await.unwrap();
            }
        }
        assert_eq!(
            store.active_sessions_at("a1", at(43)).await.unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn in_process_sessions() {
        let store = SessionStore::in_process(&config());
        concurrency_heartbeat_and_revocation(&store).await;
    }

    /// A Redis store on 127.0.0.1:6379 under a prefix of its own; the test fails when
    /// Redis is not there (the dev machine and `.ci/run` provide it).
    async fn redis_store(test: &str) -> (SessionStore, SessionsConfig) {
        let config = SessionsConfig {
            redis_url: Some("redis://127.0.0.1:6379/0".to_string()),
            key_prefix: format!("floodlight-test:{test}:{}:", random_suffix()),
            revocation_refresh_ms: 200,
            heartbeat_flush_ms: 200,
            ..config()
        };
        let store = tokio::time::timeout(Duration::from_secs(10), SessionStore::open(&config))
            .await
            .map_err(|_| "timed out".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .unwrap_or_else(|error| {
                panic!(
                    "these tests need Redis at 127.0.0.1:6379 (scripts/install-deps.sh installs \
                     redis-server; .ci/run starts it): {error}"
                )
            });
        (store, config)
    }

    fn random_suffix() -> String {
        let bytes: [u8; 8] = rand::random();
        hex::encode(bytes)
    }

    /// Deletes every key under the test's prefix.
    async fn cleanup(config: &SessionsConfig) {
        let client = redis::Client::open(config.redis_url.as_deref().unwrap()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", config.key_prefix))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn redis_sessions() {
        let (store, config) = redis_store("scenario").await;
        concurrency_heartbeat_and_revocation(&store).await;
        cleanup(&config).await;
    }

    #[tokio::test]
    async fn redis_revocations_reach_other_processes_within_the_refresh() {
        // Two stores on one Redis: the control plane's and an origin's.
        let (control, config) = redis_store("revocation").await;
        let origin = SessionStore::open(&config).await.unwrap();
        let expires_at = unix_millis() / 1000 + 600;
        let new = NewSession {
            expires_at,
            ..session("s1", "a1")
        };
        assert_eq!(
            control.register(new, Some(1)).await.unwrap(),
            Registration::Registered
        );
        // The origin's heartbeats, batched, keep the session active.
        origin.heartbeat("s1");
        let Backend::Redis(redis) = &origin.backend else {
            unreachable!()
        };
        assert!(lock(&redis.pending_heartbeats).contains("s1"));
        let flushed = tokio::time::timeout(Duration::from_secs(10), async {
            while !lock(&redis.pending_heartbeats).is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(flushed.is_ok(), "heartbeats were not flushed");
        assert_eq!(control.active_count("a1").await.unwrap(), 1);

        assert!(control.revoke("s1").await.unwrap().is_some());
        assert!(
            control.is_revoked("s1"),
            "the revoking process knows at once"
        );
        let started = std::time::Instant::now();
        while !origin.is_revoked("s1") {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the origin did not see the revocation within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!origin.is_revoked("s2"));
        assert_eq!(control.active_count("a1").await.unwrap(), 0);
        // A new store loads the list as it connects.
        let late = SessionStore::open(&config).await.unwrap();
        assert!(late.is_revoked("s1"));
        cleanup(&config).await;
    }

    #[tokio::test]
    async fn redis_registration_is_atomic_under_races() {
        let (store, config) = redis_store("race").await;
        let expires_at = unix_millis() / 1000 + 600;
        let attempts = (0..20).map(|i| {
            let store = store.clone();
            let new = NewSession {
                expires_at,
                ..session(&format!("s{i}"), "a1")
            };
            tokio::spawn(async move { store.register(new, Some(3)).await.unwrap() })
        });
        let mut registered = 0;
        for attempt in attempts {
            if attempt.await.unwrap() == Registration::Registered {
                registered += 1;
            }
        }
        assert_eq!(registered, 3);
        assert_eq!(store.active_count("a1").await.unwrap(), 3);
        cleanup(&config).await;
    }
}
