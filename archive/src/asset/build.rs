//! Reading and writing asset manifests, building a `segment` asset from the archive, and
//! deleting an asset's own objects.

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{AssetId, AssetManifest, AssetRendition, AssetSegment, AssetSource, Precision};
use crate::index::IndexError;
use crate::layout::RenditionKey;
use crate::reader::{ReadError, read_object, read_range, read_renditions};

/// A `segment` asset of `source`: per archived rendition, the archived segments that
/// overlap the range, referenced by key (never copied), with the discontinuities and init
/// changes [`crate::covering`] marks. Renditions with nothing in the range are left out.
/// Reads one head and a chunk per ~8.5 minutes of range per rendition, so an hour of a
/// ladder is a few dozen small reads.
pub async fn segment_asset(
    store: &dyn ObjectStore,
    asset_id: AssetId,
    source: AssetSource,
) -> Result<AssetManifest, ReadError> {
    let mut renditions = Vec::new();
    for (key, descriptor) in read_renditions(store, &source.event_id).await? {
        let covered = read_range(store, &key, source.start_ms, source.end_ms).await?;
        if covered.is_empty() {
            continue;
        }
        let segments = covered
            .iter()
            .map(|c| referenced(&key, c.record, c.discontinuity))
            .collect();
        renditions.push(AssetRendition {
            descriptor,
            segments,
        });
    }
    Ok(AssetManifest {
        asset_id,
        source,
        precision: Precision::Segment,
        renditions,
        poster: None,
    })
}

/// An archived segment as an asset plays it.
fn referenced(
    key: &RenditionKey,
    record: crate::SegmentRecord,
    discontinuity: bool,
) -> AssetSegment {
    AssetSegment {
        object: key.segment(record.msn).to_string(),
        init: key.init(record.init_version).to_string(),
        duration_90k: record.duration_90k,
        program_date_time_ms: record.program_date_time_ms,
        bytes: record.bytes,
        iframe_bytes: record.iframe_bytes,
        discontinuity,
        gap: record.gap,
    }
}

/// Stores `manifest` under its asset's key (replacing a previous one: a job that restarts
/// writes it again).
pub async fn write_manifest(
    store: &dyn ObjectStore,
    manifest: &AssetManifest,
) -> Result<(), ReadError> {
    let path = manifest.asset_id.manifest();
    store
        .put(&path, PutPayload::from(manifest.encode()))
        .await
        .map(|_| ())
        .map_err(|source| ReadError::Store {
            object: path.to_string(),
            source,
        })
}

/// The manifest of `asset_id`; `None` when it has none (not built, or deleted).
pub async fn read_manifest(
    store: &dyn ObjectStore,
    asset_id: &AssetId,
) -> Result<Option<AssetManifest>, ReadError> {
    let path = asset_id.manifest();
    let Some(bytes) = read_object(store, &path, super::MAX_MANIFEST_BYTES).await? else {
        return Ok(None);
    };
    let manifest = AssetManifest::decode(path.as_ref(), &bytes)?;
    if manifest.asset_id != *asset_id {
        return Err(IndexError::Corrupt {
            object: path.to_string(),
            line: 1,
            reason: format!("the manifest is asset {}'s", manifest.asset_id),
        }
        .into());
    }
    Ok(Some(manifest))
}

/// Deletes every object the asset owns (`v1/assets/{asset_id}/`: manifest, poster,
/// re-rendered segments), the manifest first so that playback stops before media goes.
/// Archived event segments it referenced are retention's business. Idempotent.
pub async fn delete_asset(store: &dyn ObjectStore, asset_id: &AssetId) -> Result<(), ReadError> {
    let store_error = |object: String| {
        move |source| ReadError::Store {
            object: object.clone(),
            source,
        }
    };
    let manifest = asset_id.manifest();
    match store.delete(&manifest).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(error) => return Err(store_error(manifest.to_string())(error)),
    }
    let prefix = asset_id.prefix();
    let paths = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .boxed();
    store
        .delete_stream(paths)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
        .or_else(|error| match error {
            object_store::Error::NotFound { .. } => Ok(()),
            error => Err(store_error(prefix.to_string())(error)),
        })
}
