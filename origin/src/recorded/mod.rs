//! Playback of recorded media, from the archive's object store (`floodlight-archive`):
//! start-over and time-shift of a live or ended event (`/live/{event_id}/…?start=T`,
//! [`start_over`]) and VOD assets (`/vod/{asset_id}/…`, [`vod`]). Playlists are whole
//! segments, no parts: the media is already stored. Objects come through a bounded
//! cache ([`cache`]) so a crowd costs the store one read per object.

mod cache;
mod master;
mod range;
pub(crate) mod start_over;
pub(crate) mod vod;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use floodlight_archive::index::{IndexChunk, IndexHead, MAX_CHUNK_BYTES, MAX_HEAD_BYTES};
use floodlight_archive::{
    AssetId, AssetManifest, Covered, EventId, IndexError, ReadError, RenditionKey, SegmentRecord,
    covering, read_renditions,
};
use floodlight_media::push::RenditionDescriptor;
use floodlight_media::sync::lock;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::time::{Duration, Instant};
use tracing::warn;

use crate::error::ApiError;
use crate::metrics;
pub(crate) use range::ranged;

/// How long index objects, rendition lists and manifests are trusted: the last index
/// chunk grows with the live edge (a segment every ~2 s), so a start-over playlist is at
/// most this much behind what is archived.
const SHORT_LIVED: Duration = Duration::from_secs(1);
/// Manifests change only when an asset is rebuilt or deleted.
const MANIFEST_TTL: Duration = Duration::from_secs(10);
/// Largest segment or init object served from the archive.
const MAX_MEDIA_BYTES: u64 = 64 * 1024 * 1024;

/// An event's archived renditions with their descriptors.
type Renditions = Vec<(RenditionKey, RenditionDescriptor)>;

/// The origin's reader of the archive.
pub(crate) struct Recorded {
    store: Arc<dyn ObjectStore>,
    cache: cache::ObjectCache,
    /// Each event's renditions and when they were read.
    renditions: Mutex<HashMap<EventId, (Instant, Renditions)>>,
}

impl Recorded {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, cache_bytes: usize) -> Recorded {
        Recorded {
            store,
            cache: cache::ObjectCache::new(cache_bytes),
            renditions: Mutex::default(),
        }
    }

    /// An object's bytes through the cache; `None` when the store has none. `ttl`
    /// `None` caches until evicted (segments and init versions never change).
    async fn object(
        &self,
        path: &Path,
        max_bytes: u64,
        ttl: Option<Duration>,
    ) -> Result<Option<Bytes>, ApiError> {
        if let Some(bytes) = self.cache.get(path.as_ref()) {
            ::metrics::counter!(metrics::ARCHIVE_READS, "result" => "hit").increment(1);
            return Ok(Some(bytes));
        }
        let result = match self.store.get(path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                ::metrics::counter!(metrics::ARCHIVE_READS, "result" => "absent").increment(1);
                return Ok(None);
            }
            Err(error) => return Err(unavailable(path.as_ref(), &error)),
        };
        if result.meta.size > max_bytes {
            return Err(ApiError::Unavailable(format!(
                "archive object {path} is {} bytes, over the {max_bytes} this origin serves",
                result.meta.size
            )));
        }
        let bytes = result
            .bytes()
            .await
            .map_err(|error| unavailable(path.as_ref(), &error))?;
        ::metrics::counter!(metrics::ARCHIVE_READS, "result" => "read").increment(1);
        self.cache.insert(path.as_ref(), bytes.clone(), ttl);
        Ok(Some(bytes))
    }

    /// A segment or init object, immutable once stored.
    pub(crate) async fn media(&self, path: &Path) -> Result<Option<Bytes>, ApiError> {
        self.object(path, MAX_MEDIA_BYTES, None).await
    }

    /// The event's archived renditions with their descriptors (a second old at most).
    pub(crate) async fn renditions(&self, event_id: &EventId) -> Result<Renditions, ApiError> {
        if let Some((at, renditions)) = lock(&self.renditions).get(event_id)
            && at.elapsed() < SHORT_LIVED
        {
            return Ok(renditions.clone());
        }
        let renditions = read_renditions(self.store.as_ref(), event_id)
            .await
            .map_err(read_error)?;
        let mut cached = lock(&self.renditions);
        cached.retain(|_, (at, _)| at.elapsed() < SHORT_LIVED);
        cached.insert(event_id.clone(), (Instant::now(), renditions.clone()));
        Ok(renditions)
    }

    /// The rendition's index head; `None` when nothing is archived.
    async fn head(&self, key: &RenditionKey) -> Result<Option<IndexHead>, ApiError> {
        let path = key.index_head();
        let Some(bytes) = self
            .object(&path, MAX_HEAD_BYTES as u64, Some(SHORT_LIVED))
            .await?
        else {
            return Ok(None);
        };
        IndexHead::decode(path.as_ref(), &bytes)
            .map(Some)
            .map_err(index_error)
    }

    async fn chunk(&self, key: &RenditionKey, number: u64) -> Result<IndexChunk, ApiError> {
        let path = key.index_chunk(number);
        let bytes = self
            .object(&path, MAX_CHUNK_BYTES as u64, Some(SHORT_LIVED))
            .await?
            .ok_or_else(|| {
                index_error(IndexError::Corrupt {
                    object: path.to_string(),
                    line: 0,
                    reason: "listed in the index head but not stored".into(),
                })
            })?;
        IndexChunk::decode(path.as_ref(), number, &bytes).map_err(index_error)
    }

    /// The archived segments of `[start_ms, end_ms)` (see `floodlight_archive::covering`).
    pub(crate) async fn range(
        &self,
        key: &RenditionKey,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Covered>, ApiError> {
        let Some(head) = self.head(key).await? else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        for number in head.chunks_for_range(start_ms, end_ms) {
            records.extend_from_slice(self.chunk(key, number).await?.records());
        }
        Ok(covering(&records, start_ms, end_ms))
    }

    /// `[first segment's PDT, last segment's end)` of a rendition; `None` when empty.
    pub(crate) async fn span(&self, key: &RenditionKey) -> Result<Option<(i64, i64)>, ApiError> {
        let Some(head) = self.head(key).await? else {
            return Ok(None);
        };
        let (Some(first), Some(last)) = (head.chunks().next(), head.chunks().last()) else {
            return Ok(None);
        };
        let first_chunk = self.chunk(key, first.chunk).await?;
        let last_chunk = self.chunk(key, last.chunk).await?;
        let start = first_chunk.records().iter().find(|r| !r.gap);
        let end = last_chunk.records().iter().rev().find(|r| !r.gap);
        Ok(start
            .zip(end)
            .map(|(s, e)| (s.program_date_time_ms, e.end_ms())))
    }

    /// The last archived segment of a rendition (a gap's record counts: its MSN was
    /// used); `None` when nothing is.
    pub(crate) async fn last_record(
        &self,
        key: &RenditionKey,
    ) -> Result<Option<SegmentRecord>, ApiError> {
        let Some(head) = self.head(key).await? else {
            return Ok(None);
        };
        let Some(last) = head.chunks().last() else {
            return Ok(None);
        };
        Ok(self.chunk(key, last.chunk).await?.records().last().copied())
    }

    /// An asset's manifest; `None` when it has none (unknown, not ready, or deleted).
    pub(crate) async fn manifest(
        &self,
        asset_id: &AssetId,
    ) -> Result<Option<AssetManifest>, ApiError> {
        let path = asset_id.manifest();
        let Some(bytes) = self
            .object(
                &path,
                floodlight_archive::asset::MAX_MANIFEST_BYTES as u64,
                Some(MANIFEST_TTL),
            )
            .await?
        else {
            return Ok(None);
        };
        AssetManifest::decode(path.as_ref(), &bytes)
            .map(Some)
            .map_err(index_error)
    }
}

fn unavailable(object: &str, error: &object_store::Error) -> ApiError {
    warn!(object, %error, "archive read failed");
    ApiError::Unavailable(format!(
        "the archive is unavailable ({object}); retry in a moment"
    ))
}

/// A corrupt index object or manifest: logged with its name, answered 500 without it.
fn index_error(error: IndexError) -> ApiError {
    warn!(%error, "archive object unreadable");
    ApiError::Internal("an archive object of this media is unreadable".to_string())
}

fn read_error(error: ReadError) -> ApiError {
    match error {
        ReadError::Store { object, source } => unavailable(&object, &source),
        ReadError::Index(error) => index_error(error),
        other => index_error(IndexError::Corrupt {
            object: String::new(),
            line: 0,
            reason: other.to_string(),
        }),
    }
}
