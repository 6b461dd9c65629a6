//! Assignment: which transcoder serves a stream. Transcoders register their media
//! transport address, capacity and current load, and renew it every heartbeat; an entry
//! not renewed expires, so a dead transcoder stops being picked. Ingest picks the live
//! transcoder with the lowest load over capacity, skipping those that just failed the
//! stream.
//!
//! Distributed, the registry is Redis: `{prefix}id:{id}` holds one transcoder's entry
//! (JSON) with a PX expiry, and the set `{prefix}index` lists the ids, so listing needs no
//! KEYS/SCAN; ids whose entry has expired are pruned from the set when seen. Every
//! heartbeat also renews the set's own expiry, so a prefix whose transcoders are all gone
//! leaves nothing behind in Redis. In
//! `floodlight up` the one transcoder of the process is the assignment (`LocalTranscoder`
//! in up.rs): no registry.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use floodlight_ingest::{
    BoxFuture, DirectoryError, RemoteSettings, RemoteTranscoders, TranscoderDirectory,
};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The transcoder registry in Redis (`assignment.redis_url`), for `who`.
pub(crate) async fn registry(config: &Config, who: &str) -> anyhow::Result<RedisRegistry> {
    let Some(url) = &config.assignment.redis_url else {
        bail!(
            "assignment.redis_url: {who} needs the transcoder registry in Redis; set it \
             (FLOODLIGHT_ASSIGNMENT__REDIS_URL=redis://127.0.0.1:6379/0)"
        );
    };
    RedisRegistry::connect(
        url,
        &config.assignment.key_prefix,
        Duration::from_millis(config.assignment.expiry_ms),
    )
    .await
}

/// Ingest's side of remote transcoding: the Redis registry and the transport limits.
pub(crate) async fn remote_transcoders(config: &Config) -> anyhow::Result<RemoteTranscoders> {
    let Some(token) = config.transcoder.push_token.clone() else {
        bail!(
            "transcoder.push_token: ingest sends it to the transcoders, which take streams \
             only with it; give it the transcoders' value (FLOODLIGHT_TRANSCODER__PUSH_TOKEN)"
        );
    };
    let registry = registry(config, "remote transcoding").await?;
    let a = &config.assignment;
    Ok(RemoteTranscoders::new(
        Arc::new(registry),
        RemoteSettings {
            max_message_bytes: config.transcoder.max_message_bytes,
            token,
            keepalive: Duration::from_millis(config.transcoder.keepalive_ms),
            connect_timeout: Duration::from_millis(a.connect_timeout_ms),
            gop_cache_bytes: a.gop_cache_bytes,
            send_queue_events: a.send_queue_events,
        },
    ))
}

/// One transcoder as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TranscoderEntry {
    pub(crate) id: String,
    /// Media transport address, `host:port`.
    pub(crate) addr: String,
    /// Rungs it may run at once.
    pub(crate) capacity: u32,
    /// Rungs it runs now (at least one per stream).
    pub(crate) load: u32,
    /// Streams it runs now.
    #[serde(default)]
    pub(crate) streams: u32,
}

/// The transcoder for a new stream: spare capacity, not excluded, lowest load/capacity
/// (ties: fewer streams, then the id, so the choice is stable).
pub(crate) fn least_loaded<'a>(
    entries: &'a [TranscoderEntry],
    exclude: &[String],
) -> Option<&'a TranscoderEntry> {
    entries
        .iter()
        .filter(|e| e.load < e.capacity && !exclude.contains(&e.addr))
        .min_by(|a, b| {
            let ra = a.load as f64 / a.capacity as f64;
            let rb = b.load as f64 / b.capacity as f64;
            ra.total_cmp(&rb)
                .then(a.streams.cmp(&b.streams))
                .then(a.id.cmp(&b.id))
        })
}

/// The registry in Redis.
#[derive(Clone)]
pub(crate) struct RedisRegistry {
    redis: ConnectionManager,
    prefix: String,
    expiry: Duration,
}

impl RedisRegistry {
    /// Connects; fails at once when Redis does not answer, so a misconfigured service
    /// says so at start.
    pub(crate) async fn connect(
        url: &str,
        prefix: &str,
        expiry: Duration,
    ) -> anyhow::Result<RedisRegistry> {
        let client = redis::Client::open(url).map_err(|e| {
            anyhow::anyhow!("assignment.redis_url: not a Redis URL ({:?})", e.kind())
        })?;
        let redis = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
            .await
            .context("assignment.redis_url: Redis did not answer within 5 s")?
            .context("assignment.redis_url: cannot connect to Redis")?;
        Ok(RedisRegistry {
            redis,
            prefix: prefix.to_string(),
            expiry,
        })
    }

    fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    fn entry_key(&self, id: &str) -> String {
        format!("{}id:{id}", self.prefix)
    }

    /// Registers or renews `entry` for one expiry period.
    pub(crate) async fn heartbeat(&self, entry: &TranscoderEntry) -> redis::RedisResult<()> {
        let value = serde_json::to_string(entry).expect("plain struct serializes");
        let mut redis = self.redis.clone();
        redis::pipe()
            .cmd("SET")
            .arg(self.entry_key(&entry.id))
            .arg(value)
            .arg("PX")
            .arg(self.expiry.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(self.index_key())
            .arg(&entry.id)
            .ignore()
            .cmd("PEXPIRE")
            .arg(self.index_key())
            .arg(self.expiry.as_millis() as u64)
            .ignore()
            .query_async(&mut redis)
            .await
    }

    /// Leaves the registry at once (a clean shutdown), rather than after the expiry.
    pub(crate) async fn deregister(&self, id: &str) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        redis::pipe()
            .cmd("DEL")
            .arg(self.entry_key(id))
            .ignore()
            .cmd("SREM")
            .arg(self.index_key())
            .arg(id)
            .ignore()
            .query_async(&mut redis)
            .await
    }

    /// Every transcoder whose registration has not expired.
    pub(crate) async fn live(&self) -> redis::RedisResult<Vec<TranscoderEntry>> {
        let mut redis = self.redis.clone();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.index_key())
            .query_async(&mut redis)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.entry_key(id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut redis)
            .await?;
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<TranscoderEntry>(&v).ok()) {
                Some(entry) => live.push(entry),
                None => expired.push(id),
            }
        }
        if !expired.is_empty() {
            // A renewal between MGET and SREM re-adds its id with its next heartbeat.
            let _: redis::RedisResult<()> = redis::cmd("SREM")
                .arg(self.index_key())
                .arg(&expired)
                .query_async(&mut redis)
                .await;
        }
        Ok(live)
    }
}

impl TranscoderDirectory for RedisRegistry {
    fn pick<'a>(
        &'a self,
        _event_id: &'a str,
        exclude: &'a [String],
    ) -> BoxFuture<'a, Result<String, DirectoryError>> {
        Box::pin(async move {
            let live = self
                .live()
                .await
                .map_err(|e| DirectoryError::Unavailable(e.to_string()))?;
            least_loaded(&live, exclude)
                .map(|e| e.addr.clone())
                .ok_or(DirectoryError::NoneAvailable)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, capacity: u32, load: u32) -> TranscoderEntry {
        TranscoderEntry {
            id: id.to_string(),
            addr: format!("{id}:9100"),
            capacity,
            load,
            streams: load,
        }
    }

    #[test]
    fn picks_the_lowest_share_of_capacity_with_room_left() {
        let entries = [entry("a", 10, 5), entry("b", 4, 1), entry("c", 2, 2)];
        assert_eq!(least_loaded(&entries, &[]).unwrap().id, "b");
        // Excluded (it just failed the stream): the next best.
        assert_eq!(
            least_loaded(&entries, &["b:9100".to_string()]).unwrap().id,
            "a"
        );
        // Full ones are never picked.
        assert!(least_loaded(&entries[2..], &[]).is_none());
    }
}
