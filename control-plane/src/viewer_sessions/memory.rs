//! The in-process session store: sessions and revocations in this process's memory, for
//! `floodlight up`, where one process runs both the control plane and the origin.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};

use floodlight_media::sync::lock;

use super::{NewSession, Registration, ViewerSession, is_active};

#[derive(Default)]
pub(super) struct LocalSessions {
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

    pub(super) fn register(
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

    pub(super) fn active(&self, account_id: &str, now_ms: i64, ttl_ms: i64) -> Vec<ViewerSession> {
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

    pub(super) fn revoke(&self, sid: &str, now_ms: i64) -> Option<ViewerSession> {
        let mut state = lock(&self.state);
        self.prune(&mut state, now_ms);
        let session = state.remove(sid)?;
        self.revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid.to_string(), session.expires_at);
        Some(session)
    }

    pub(super) fn heartbeat(&self, sid: &str, now_ms: i64) {
        if let Some(session) = lock(&self.state).sessions.get_mut(sid) {
            session.last_seen_ms = session.last_seen_ms.max(now_ms);
        }
    }

    pub(super) fn is_revoked(&self, sid: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viewer_sessions::tests::{T0, session};

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
}
