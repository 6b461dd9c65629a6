//! A bounded cache of hot archive objects: segments and init versions (immutable, kept
//! until evicted), index objects and manifests (kept a short time: the last index chunk
//! grows with the live edge, a manifest goes when its asset is deleted). A crowd watching
//! the same start-over or VOD asset costs the object store one read per object, not one
//! per viewer.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use floodlight_media::sync::lock;
use tokio::time::{Duration, Instant};

struct Entry {
    bytes: Bytes,
    /// `None`: immutable.
    expires_at: Option<Instant>,
    last_used: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: usize,
    /// Bumped on every hit and insert: the eviction order (least recently used first).
    clock: u64,
}

pub(crate) struct ObjectCache {
    max_bytes: usize,
    state: Mutex<State>,
}

impl ObjectCache {
    pub(crate) fn new(max_bytes: usize) -> ObjectCache {
        ObjectCache {
            max_bytes,
            state: Mutex::default(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Bytes> {
        let mut state = lock(&self.state);
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(key)?;
        if entry.expires_at.is_some_and(|at| at <= Instant::now()) {
            let gone = state.entries.remove(key).map_or(0, |e| e.bytes.len());
            state.bytes -= gone;
            return None;
        }
        entry.last_used = now;
        Some(entry.bytes.clone())
    }

    /// Keeps `bytes` under `key`, for `ttl` (`None`: until evicted). An object larger than
    /// an eighth of the cache is not kept: one huge segment must not flush the hot set.
    pub(crate) fn insert(&self, key: &str, bytes: Bytes, ttl: Option<Duration>) {
        if bytes.len() > self.max_bytes / 8 {
            return;
        }
        let mut state = lock(&self.state);
        state.clock += 1;
        let entry = Entry {
            expires_at: ttl.map(|ttl| Instant::now() + ttl),
            last_used: state.clock,
            bytes,
        };
        state.bytes += entry.bytes.len();
        if let Some(old) = state.entries.insert(key.to_string(), entry) {
            state.bytes -= old.bytes.len();
        }
        while state.bytes > self.max_bytes {
            let Some(oldest) = state
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let gone = state.entries.remove(&oldest).map_or(0, |e| e.bytes.len());
            state.bytes -= gone;
        }
        metrics::gauge!(crate::metrics::ARCHIVE_CACHE_BYTES).set(state.bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_least_recently_used_goes_first_and_short_lived_entries_expire() {
        let cache = ObjectCache::new(800);
        cache.insert("a", Bytes::from(vec![0; 100]), None);
        cache.insert("b", Bytes::from(vec![0; 100]), None);
        assert!(cache.get("a").is_some());
        for n in 0..7 {
            cache.insert(&format!("c{n}"), Bytes::from(vec![0; 100]), None);
        }
        assert!(cache.get("b").is_none(), "b was the least recently used");
        assert!(cache.get("a").is_some());
        // Too large for the cache: not kept.
        cache.insert("huge", Bytes::from(vec![0; 101]), None);
        assert!(cache.get("huge").is_none());

        cache.insert(
            "head",
            Bytes::from_static(b"h"),
            Some(Duration::from_secs(1)),
        );
        assert!(cache.get("head").is_some());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(cache.get("head").is_none());
    }
}
