//! Frame-precise live→VOD assets (issue 11, `"precision": "frame"`): a `segment` asset
//! (the archived segments that overlap a range, referenced by key) turned into one that
//! starts and ends on the exact frames asked, and the asset's poster.
//!
//! Smart rendering: per rendition, only the boundary segments are read, and in them only
//! the GOPs the range cuts are re-encoded (decoded with libav from the archived init,
//! encoded with the rung's own x264 settings); every other GOP is copied, and the middle
//! segments stay referenced as archived, never read. Audio loses whole AAC frames, never
//! re-encoded. The rules, with their reasons, are in [`cut`]; the codec work in
//! [`render`]; the store reads and writes, and the new manifest, in [`rendition`].
//!
//! Re-encoded pictures keep their presentation times, so the timeline runs on into the
//! archived segments, and no discontinuity is needed where the encoding changes:
//! - an x264 rung re-encoded with its own settings gets its own SPS/PPS back, byte for
//!   byte: the archived init stays;
//! - a publisher's video (`source`) gets x264's parameter sets numbered apart from the
//!   publisher's, at the publisher's level, and one init of the asset's own lists both
//!   ([`params`]); every segment of the rendition, referenced ones included, points at
//!   it. With no EXT-X-MAP change at all, players that would keep the first init's
//!   parameter sets across one (the ffmpeg CLI's HLS demuxer does) decode it too;
//! - only when one record cannot describe both (a 10-bit or 4:2:2 publisher, 2-byte NAL
//!   unit lengths) does the re-encoded GOP get an init of its own, with
//!   EXT-X-DISCONTINUITY where the init changes (RFC 8216bis §4.4.4.3: it SHOULD be there
//!   at a change of encoding parameters).
//!
//! Objects are written with plain overwrites under keys numbered in render order, so a
//! job that restarts writes the same keys with the same bytes. Codec work runs on
//! `spawn_blocking`, never on the async runtime.

mod cut;
mod params;
mod poster;
mod render;
mod rendition;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use floodlight_archive::{AssetManifest, Precision};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::av::RungEncoding;
use crate::config::TranscoderConfig;
pub use poster::render_poster;

/// What re-encoding and the poster take from the transcoder's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VodSettings {
    /// libx264 preset of re-encoded GOPs: the live rungs' (`[transcoder] x264_preset`),
    /// so a re-encoded GOP of a rung gets that rung's parameter sets.
    pub x264_preset: String,
    /// Encoder threads per re-encoded GOP (`threads_per_rung`).
    pub threads: u32,
    /// VBV buffer, milliseconds of the rung's bit rate (`vbv_buffer_ms`).
    pub vbv_buffer_ms: u32,
    /// Width of the poster JPEG, pixels (`thumbnail_width`); never above the picture's.
    pub poster_width: u32,
}

impl VodSettings {
    pub fn from_config(config: &TranscoderConfig) -> VodSettings {
        VodSettings {
            x264_preset: config.x264_preset.clone(),
            threads: config.threads_per_rung,
            vbv_buffer_ms: config.vbv_buffer_ms,
            poster_width: config.thumbnail_width,
        }
    }

    fn encoding(&self) -> RungEncoding {
        RungEncoding {
            preset: self.x264_preset.clone(),
            threads: self.threads,
            vbv_buffer_ms: self.vbv_buffer_ms,
        }
    }
}

impl Default for VodSettings {
    fn default() -> Self {
        VodSettings::from_config(&TranscoderConfig::default())
    }
}

/// Why rendering failed. Only [`VodError::Store`] is worth retrying
/// ([`VodError::is_retryable`]); the others fail the job, naming what is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VodError {
    /// The store failed to read or write `object` (down, throttled, timed out): nothing is
    /// wrong with the asset, the job can run again later.
    #[error("object store, {object}: {source}")]
    Store {
        object: String,
        #[source]
        source: object_store::Error,
    },
    /// An object the manifest names does not exist.
    #[error("{object}: not in the object store")]
    Missing { object: String },
    /// `object` holds bytes that are not media we can cut (a torn or corrupt segment or
    /// init, a segment that does not start with a sync sample, pictures that do not
    /// decode).
    #[error("{object}: corrupt media: {reason}")]
    Corrupt { object: String, reason: String },
    /// libx264 failed on media that decoded.
    #[error("rendition {rendition}: re-encoding failed: {reason}")]
    Encode { rendition: String, reason: String },
    /// The manifest cannot be rendered (not `segment` precision, a reversed range, a
    /// rendition name that is no key component, no frame in the range).
    #[error("asset {asset_id}: {reason}")]
    Manifest { asset_id: String, reason: String },
    /// `cancelled()` said so; what was written stays and is overwritten by a rerun.
    #[error("cancelled")]
    Cancelled,
}

impl VodError {
    /// Whether running the job again later may succeed: only a store failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, VodError::Store { .. })
    }
}

/// The frame-precise version of `asset`, a `segment`-precision manifest of the range
/// `asset.source` names: per rendition, the first segment starts on the first frame
/// presented at or after `source.start_ms`, the last ends with the last frame presented
/// before `source.end_ms` (audio: within half an AAC frame of each), the segments between
/// referenced as they are. New objects go under `v1/assets/{asset_id}/renditions/…`. The
/// manifest returned is for the caller to store; its `poster` is left as given
/// ([`render_poster`] makes one).
///
/// `progress` gets 0 to 1 as boundary segments are done; `cancelled` is asked before each.
pub async fn render_frame_precise(
    store: Arc<dyn ObjectStore>,
    settings: &VodSettings,
    asset: AssetManifest,
    progress: &(dyn Fn(f64) + Send + Sync),
    cancelled: &(dyn Fn() -> bool + Send + Sync),
) -> Result<AssetManifest, VodError> {
    let manifest_error = |reason: String| VodError::Manifest {
        asset_id: asset.asset_id.to_string(),
        reason,
    };
    if asset.precision != Precision::Segment {
        return Err(manifest_error(format!(
            "precision {:?}: frame-precise rendering starts from a segment asset",
            asset.precision
        )));
    }
    if asset.source.start_ms >= asset.source.end_ms {
        return Err(manifest_error(format!(
            "range {}..{} ms is empty or reversed",
            asset.source.start_ms, asset.source.end_ms
        )));
    }
    // Two boundary segments per rendition, more only when a boundary segment holds no
    // frame of the range.
    let steps = (asset.renditions.len() * 2).max(1) as f64;
    let mut done = 0.0;
    progress(0.0);
    let job = rendition::Job {
        store: &store,
        asset_id: &asset.asset_id,
        source: &asset.source,
        encoding: settings.encoding(),
        cancelled,
    };
    let mut renditions = Vec::with_capacity(asset.renditions.len());
    for rendition in &asset.renditions {
        let mut step = || {
            done += 1.0;
            progress((done / steps).min(0.99));
        };
        renditions.push(job.render(rendition, &mut step).await?);
    }
    progress(1.0);
    Ok(AssetManifest {
        precision: Precision::Frame,
        renditions,
        ..asset
    })
}

/// The bytes of `object`; the error names it, and tells a missing object (fatal) from a
/// failing store (retryable).
async fn get(store: &dyn ObjectStore, object: &str) -> Result<Bytes, VodError> {
    let path = Path::parse(object).map_err(|e| VodError::Missing {
        object: format!("{object} ({e})"),
    })?;
    let store_error = |source| match source {
        object_store::Error::NotFound { .. } => VodError::Missing {
            object: object.to_string(),
        },
        source => VodError::Store {
            object: object.to_string(),
            source,
        },
    };
    let result = store.get(&path).await.map_err(store_error)?;
    result.bytes().await.map_err(store_error)
}

/// Writes one of the asset's own objects. A plain overwrite: a rerun of the job writes
/// the same bytes under the same key.
async fn put(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<(), VodError> {
    store
        .put(path, PutPayload::from(bytes))
        .await
        .map(drop)
        .map_err(|source| VodError::Store {
            object: path.to_string(),
            source,
        })
}
