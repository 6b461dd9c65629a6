//! The Redis session store, shared by the control plane and every origin when
//! distributed: registration, revocation and the active sessions as Lua scripts (each
//! one atomic step), heartbeats sent in batches, and a local copy of the revocation list
//! refreshed in the background.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use floodlight_media::clock::unix_millis;
use floodlight_media::sync::lock;
use redis::Script;
use redis::aio::ConnectionManager;
use tracing::{info, warn};

use super::{
    NewSession, REDIS_ERRORS, Registration, SessionError, SessionsConfig, ViewerSession, is_active,
    ttl_ms,
};

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

pub(super) struct RedisSessions {
    connection: ConnectionManager,
    prefix: String,
    register: Script,
    heartbeat: Script,
    revoke: Script,
    active: Script,
    /// The local copy of the revocation list: sid → token expiry (s).
    revoked: RwLock<HashMap<String, i64>>,
    /// Sids seen since the last flush.
    pub(super) pending_heartbeats: Mutex<HashSet<String>>,
    ttl_ms: i64,
}

impl RedisSessions {
    pub(super) async fn connect(
        url: &str,
        config: &SessionsConfig,
    ) -> Result<Arc<Self>, SessionError> {
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
        sessions.refresh_revocations(unix_millis()).await?;
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

    pub(super) async fn register(
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

    pub(super) async fn active(
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

    pub(super) async fn revoke(
        &self,
        sid: &str,
        now_ms: i64,
    ) -> Result<Option<ViewerSession>, SessionError> {
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

    pub(super) fn queue_heartbeat(&self, sid: &str) {
        let mut pending = lock(&self.pending_heartbeats);
        if !pending.contains(sid) {
            pending.insert(sid.to_string());
        }
    }

    pub(super) fn is_revoked(&self, sid: &str) -> bool {
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
    pub(super) async fn flush_heartbeats(&self, now_ms: i64) -> Result<(), SessionError> {
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
        let now = unix_millis();
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
