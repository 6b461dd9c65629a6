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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floodlight_media::sync::lock;
use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

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

/// The issue's bound: a revoked session is refused within 5 s.
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
            && let Err(error) = redis::Client::open(url.as_str())
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

impl From<redis::RedisError> for SessionError {
    fn from(error: redis::RedisError) -> Self {
        // Redis errors carry the kind and the server's message, never the URL.
        SessionError::Unavailable(error.to_string())
    }
}

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
        self.register_at(session, limit, now_ms()).await
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
        self.active_sessions_at(account_id, now_ms()).await
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
        self.revoke_at(sid, now_ms()).await
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
            Backend::Local(local) => local.heartbeat(sid, now_ms()),
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

fn ttl_ms(config: &SessionsConfig) -> i64 {
    i64::try_from(config.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

// ---------------------------------------------------------------------------------------
// In-process store.

#[derive(Default)]
struct LocalSessions {
    state: Mutex<LocalState>,
    /// sid → token expiry (s): read on every request of a token stream, so apart.
    revoked: RwLock<HashMap<String, i64>>,
}

#[derive(Default)]
struct LocalState {
    sessions: HashMap<String, ViewerSession>,
    by_account: HashMap<String, HashSet<String>>,
    /// When expired sessions and revocations were last dropped, ms.
    pruned_at_ms: i64,
}

/// Expired entries are dropped at most this often, so a register does not scan every
/// session each time.
const LOCAL_PRUNE_INTERVAL_MS: i64 = 1000;

impl LocalState {
    fn remove(&mut self, sid: &str) -> Option<ViewerSession> {
        let session = self.sessions.remove(sid)?;
        if let Some(sids) = self.by_account.get_mut(&session.account_id) {
            sids.remove(sid);
            if sids.is_empty() {
                self.by_account.remove(&session.account_id);
            }
        }
        Some(session)
    }
}

fn is_active(session: &ViewerSession, now_ms: i64, ttl_ms: i64) -> bool {
    session.last_seen_ms >= now_ms.saturating_sub(ttl_ms)
        && session.expires_at.saturating_mul(1000) > now_ms
}

impl LocalSessions {
    fn prune(&self, state: &mut LocalState, now_ms: i64) {
        if now_ms - state.pruned_at_ms < LOCAL_PRUNE_INTERVAL_MS {
            return;
        }
        state.pruned_at_ms = now_ms;
        let expired: Vec<String> = state
            .sessions
            .values()
            .filter(|s| s.expires_at.saturating_mul(1000) <= now_ms)
            .map(|s| s.sid.clone())
            .collect();
        for sid in expired {
            state.remove(&sid);
        }
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, expires_at| expires_at.saturating_mul(1000) > now_ms);
    }

    fn register(
        &self,
        session: NewSession,
        limit: Option<u32>,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Registration {
        let mut state = lock(&self.state);
        self.prune(&mut state, now_ms);
        let active = state.by_account.get(&session.account_id).map_or(0, |sids| {
            sids.iter()
                .filter_map(|sid| state.sessions.get(sid))
                .filter(|s| is_active(s, now_ms, ttl_ms))
                .count()
        });
        let active = u32::try_from(active).unwrap_or(u32::MAX);
        if limit.is_some_and(|limit| active >= limit) {
            return Registration::LimitReached { active };
        }
        state
            .by_account
            .entry(session.account_id.clone())
            .or_default()
            .insert(session.sid.clone());
        state.sessions.insert(
            session.sid.clone(),
            ViewerSession {
                sid: session.sid,
                account_id: session.account_id,
                event_id: session.event_id,
                expires_at: session.expires_at,
                last_seen_ms: now_ms,
            },
        );
        Registration::Registered
    }

    fn active(&self, account_id: &str, now_ms: i64, ttl_ms: i64) -> Vec<ViewerSession> {
        let state = lock(&self.state);
        let mut sessions: Vec<ViewerSession> = state
            .by_account
            .get(account_id)
            .into_iter()
            .flatten()
            .filter_map(|sid| state.sessions.get(sid))
            .filter(|s| is_active(s, now_ms, ttl_ms))
            .cloned()
            .collect();
        sessions.sort_by(|a, b| a.sid.cmp(&b.sid));
        sessions
    }

    fn revoke(&self, sid: &str, now_ms: i64) -> Option<ViewerSession> {
        let mut state = lock(&self.state);
        self.prune(&mut state, now_ms);
        let session = state.remove(sid)?;
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid.to_string(), session.expires_at);
        Some(session)
    }

    fn heartbeat(&self, sid: &str, now_ms: i64) {
        if let Some(session) = lock(&self.state).sessions.get_mut(sid) {
            session.last_seen_ms = session.last_seen_ms.max(now_ms);
        }
    }

    fn is_revoked(&self, sid: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(sid)
    }
}

// ---------------------------------------------------------------------------------------
// Redis store.
//
// Keys (P = key_prefix):
// - `P session:{sid}`: hash {account, event, expires_at}, expiring with the token.
// - `P account:{account}:sessions`: sorted set sid → last heartbeat (ms), expiring
//   `ttl` after its last write (every member is inactive by then).
// - `P revoked`: sorted set sid → token expiry (s); members past it are dropped on the
//   next revocation.
//
// The scripts touch keys they derive from the prefix, which a single Redis (or a
// replicated primary) allows; Redis Cluster would need hash tags.

/// KEYS: account set, session hash. ARGV: now ms, ttl ms, limit (-1: none), sid, account,
/// event, expires_at, prefix. Returns {registered 0/1, active count}.
const REGISTER_SCRIPT: &str = r"
local zset, session = KEYS[1], KEYS[2]
local now, ttl, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. (now - ttl))
local active = 0
for _, sid in ipairs(redis.call('ZRANGE', zset, 0, -1)) do
  if redis.call('EXISTS', ARGV[8] .. 'session:' .. sid) == 1 then
    active = active + 1
  else
    redis.call('ZREM', zset, sid)
  end
end
if limit >= 0 and active >= limit then
  return {0, active}
end
redis.call('HSET', session, 'account', ARGV[5], 'event', ARGV[6], 'expires_at', ARGV[7])
redis.call('EXPIREAT', session, ARGV[7])
redis.call('ZADD', zset, now, ARGV[4])
redis.call('PEXPIRE', zset, ttl)
return {1, active + 1}
";

/// ARGV: prefix, now ms, ttl ms, then the sids that were seen. A sid without a session
/// hash (expired, revoked) is skipped, so a heartbeat cannot bring a revoked session back.
const HEARTBEAT_SCRIPT: &str = r"
for i = 4, #ARGV do
  local account = redis.call('HGET', ARGV[1] .. 'session:' .. ARGV[i], 'account')
  if account then
    local zset = ARGV[1] .. 'account:' .. account .. ':sessions'
    redis.call('ZADD', zset, 'GT', ARGV[2], ARGV[i])
    redis.call('PEXPIRE', zset, ARGV[3])
  end
end
return 0
";

/// KEYS: session hash, revoked set. ARGV: prefix, sid, now (s). Returns {account, event,
/// expires_at, last_seen ms} of the revoked session, or nil when there is none.
const REVOKE_SCRIPT: &str = r"
local fields = redis.call('HMGET', KEYS[1], 'account', 'event', 'expires_at')
if not fields[1] then
  return false
end
local zset = ARGV[1] .. 'account:' .. fields[1] .. ':sessions'
local last_seen = redis.call('ZSCORE', zset, ARGV[2]) or '0'
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('ZADD', KEYS[2], fields[3], ARGV[2])
redis.call('ZREM', zset, ARGV[2])
redis.call('DEL', KEYS[1])
return {fields[1], fields[2], fields[3], last_seen}
";

/// KEYS: account set. ARGV: prefix, cutoff ms. Returns sid, event, expires_at, last_seen
/// for each active session, flattened.
const ACTIVE_SCRIPT: &str = r"
local out = {}
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf', 'WITHSCORES')
for i = 1, #members, 2 do
  local fields = redis.call('HMGET', ARGV[1] .. 'session:' .. members[i], 'event', 'expires_at')
  if fields[1] then
    table.insert(out, members[i])
    table.insert(out, fields[1])
    table.insert(out, fields[2])
    table.insert(out, members[i + 1])
  end
end
return out
";

/// Sids per heartbeat script call.
const HEARTBEAT_BATCH: usize = 1000;

struct RedisSessions {
    connection: ConnectionManager,
    prefix: String,
    register: Script,
    heartbeat: Script,
    revoke: Script,
    active: Script,
    /// The local copy of the revocation list: sid → token expiry (s).
    revoked: RwLock<HashMap<String, i64>>,
    /// Sids seen since the last flush.
    pending_heartbeats: Mutex<HashSet<String>>,
    ttl_ms: i64,
}

impl RedisSessions {
    async fn connect(url: &str, config: &SessionsConfig) -> Result<Arc<Self>, SessionError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        let sessions = Arc::new(RedisSessions {
            connection,
            prefix: config.key_prefix.clone(),
            register: Script::new(REGISTER_SCRIPT),
            heartbeat: Script::new(HEARTBEAT_SCRIPT),
            revoke: Script::new(REVOKE_SCRIPT),
            active: Script::new(ACTIVE_SCRIPT),
            revoked: RwLock::new(HashMap::new()),
            pending_heartbeats: Mutex::new(HashSet::new()),
            ttl_ms: ttl_ms(config),
        });
        sessions.refresh_revocations(now_ms()).await?;
        tokio::spawn(background(
            Arc::downgrade(&sessions),
            Duration::from_millis(config.revocation_refresh_ms),
            Task::RefreshRevocations,
        ));
        tokio::spawn(background(
            Arc::downgrade(&sessions),
            Duration::from_millis(config.heartbeat_flush_ms),
            Task::FlushHeartbeats,
        ));
        info!(key_prefix = sessions.prefix, "viewer sessions in Redis");
        Ok(sessions)
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push_str(part);
        }
        key
    }

    fn account_key(&self, account_id: &str) -> String {
        self.key(&["account:", account_id, ":sessions"])
    }

    async fn register(
        &self,
        session: NewSession,
        limit: Option<u32>,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Registration, SessionError> {
        let (registered, active): (i64, i64) = self
            .register
            .key(self.account_key(&session.account_id))
            .key(self.key(&["session:", &session.sid]))
            .arg(now_ms)
            .arg(ttl_ms)
            .arg(limit.map_or(-1, i64::from))
            .arg(&session.sid)
            .arg(&session.account_id)
            .arg(&session.event_id)
            .arg(session.expires_at)
            .arg(&self.prefix)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(if registered == 1 {
            Registration::Registered
        } else {
            Registration::LimitReached {
                active: u32::try_from(active).unwrap_or(u32::MAX),
            }
        })
    }

    async fn active(
        &self,
        account_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<ViewerSession>, SessionError> {
        let flat: Vec<String> = self
            .active
            .key(self.account_key(account_id))
            .arg(&self.prefix)
            .arg(now_ms.saturating_sub(ttl_ms))
            .invoke_async(&mut self.connection.clone())
            .await?;
        let mut sessions: Vec<ViewerSession> = flat
            .chunks_exact(4)
            .map(|fields| ViewerSession {
                sid: fields[0].clone(),
                account_id: account_id.to_string(),
                event_id: fields[1].clone(),
                expires_at: fields[2].parse().unwrap_or(0),
                last_seen_ms: parse_score(&fields[3]),
            })
            .filter(|s| is_active(s, now_ms, ttl_ms))
            .collect();
        sessions.sort_by(|a, b| a.sid.cmp(&b.sid));
        Ok(sessions)
    }

    async fn revoke(&self, sid: &str, now_ms: i64) -> Result<Option<ViewerSession>, SessionError> {
        let fields: Option<(String, String, String, String)> = self
            .revoke
            .key(self.key(&["session:", sid]))
            .key(self.key(&["revoked"]))
            .arg(&self.prefix)
            .arg(sid)
            .arg(now_ms.div_euclid(1000))
            .invoke_async(&mut self.connection.clone())
            .await?;
        let Some((account_id, event_id, expires_at, last_seen)) = fields else {
            return Ok(None);
        };
        let expires_at = expires_at.parse().unwrap_or(0);
        // This process refuses it at once; the others at their next refresh.
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid.to_string(), expires_at);
        lock(&self.pending_heartbeats).remove(sid);
        Ok(Some(ViewerSession {
            sid: sid.to_string(),
            account_id,
            event_id,
            expires_at,
            last_seen_ms: parse_score(&last_seen),
        }))
    }

    fn queue_heartbeat(&self, sid: &str) {
        let mut pending = lock(&self.pending_heartbeats);
        if !pending.contains(sid) {
            pending.insert(sid.to_string());
        }
    }

    fn is_revoked(&self, sid: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(sid)
    }

    /// Replaces the local copy of the revocation list with Redis's current one.
    async fn refresh_revocations(&self, now_ms: i64) -> Result<(), SessionError> {
        let members: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(&["revoked"]))
            .arg(format!("({}", now_ms.div_euclid(1000)))
            .arg("+inf")
            .arg("WITHSCORES")
            .query_async(&mut self.connection.clone())
            .await?;
        let revoked: HashMap<String, i64> = members
            .into_iter()
            .map(|(sid, expires_at)| (sid, expires_at as i64))
            .collect();
        *self.revoked.write().unwrap_or_else(PoisonError::into_inner) = revoked;
        Ok(())
    }

    /// Sends the heartbeats queued since the last flush.
    async fn flush_heartbeats(&self, now_ms: i64) -> Result<(), SessionError> {
        let sids: Vec<String> = lock(&self.pending_heartbeats).drain().collect();
        for batch in sids.chunks(HEARTBEAT_BATCH) {
            let mut invocation = self.heartbeat.prepare_invoke();
            invocation.arg(&self.prefix).arg(now_ms).arg(self.ttl_ms);
            for sid in batch {
                invocation.arg(sid);
            }
            let _: i64 = invocation
                .invoke_async(&mut self.connection.clone())
                .await?;
        }
        Ok(())
    }
}

/// Scores come back as decimal strings, possibly in exponent form for large values.
fn parse_score(score: &str) -> i64 {
    score
        .parse::<i64>()
        .or_else(|_| score.parse::<f64>().map(|f| f as i64))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
enum Task {
    RefreshRevocations,
    FlushHeartbeats,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::RefreshRevocations => "refresh_revocations",
            Task::FlushHeartbeats => "flush_heartbeats",
        }
    }
}

/// Runs `task` every `every` while the store exists. Failures are rolled up: the first
/// of a run is logged, then only counted, and the recovery is logged.
async fn background(sessions: Weak<RedisSessions>, every: Duration, task: Task) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let Some(sessions) = sessions.upgrade() else {
            return;
        };
        let now = now_ms();
        let result = match task {
            Task::RefreshRevocations => sessions.refresh_revocations(now).await,
            Task::FlushHeartbeats => sessions.flush_heartbeats(now).await,
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                info!(task = task.name(), "viewer-session store reachable again");
            }
            Ok(()) => {}
            Err(error) => {
                metrics::counter!(REDIS_ERRORS, "op" => task.name()).increment(1);
                if !failing {
                    failing = true;
                    warn!(
                        task = task.name(),
                        "viewer-session store: {error}; keeping the last revocation list, \
                         retrying (further failures only counted in {REDIS_ERRORS})"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn config() -> SessionsConfig {
        SessionsConfig {
            ttl_secs: 30,
            ..SessionsConfig::default()
        }
    }

    fn session(sid: &str, account: &str) -> NewSession {
        NewSession {
            sid: sid.to_string(),
            account_id: account.to_string(),
            event_id: "ev1".to_string(),
            expires_at: T0 / 1000 + 3600,
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

    #[test]
    fn in_process_sessions_end_with_their_token() {
        let local = LocalSessions::default();
        let mut short = session("s1", "a1");
        short.expires_at = T0 / 1000 + 10;
        assert_eq!(
            local.register(short, Some(1), T0, 30_000),
            Registration::Registered
        );
        // The token expired at +10 s: the session no longer counts, even heartbeating.
        local.heartbeat("s1", T0 + 9_000);
        assert_eq!(local.active("a1", T0 + 10_000, 30_000).len(), 0);
        assert_eq!(
            local.register(session("s2", "a1"), Some(1), T0 + 11_000, 30_000),
            Registration::Registered
        );
        assert!(!lock(&local.state).sessions.contains_key("s1"), "pruned");
        // A revocation is forgotten once its token expired.
        local.revoke("s2", T0 + 12_000);
        assert!(local.is_revoked("s2"));
        local.register(session("s3", "a9"), None, T0 + 3_700_000, 30_000);
        assert!(!local.is_revoked("s2"));
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
        let expires_at = now_ms() / 1000 + 600;
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
        let expires_at = now_ms() / 1000 + 600;
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
