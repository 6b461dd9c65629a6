//! Retention: archived media that no asset and no start-over window still needs is
//! deleted `after_secs` after its event's archive ended. An event past retention loses
//! every object (index, descriptors, segments, init versions) except the segments and
//! init versions an asset manifest references; deleting an asset deletes its own objects
//! at once ([`crate::delete_asset`]), and the event segments only it referenced go at
//! the next sweep. Start-over of a swept event answers 404 (nothing archived).

use std::collections::{BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use serde::Deserialize;

use crate::asset::{AssetId, read_manifest};
use crate::config_error::{ConfigError, invalid};
use crate::layout::{EventId, LAYOUT_VERSION, RenditionKey};
use crate::metrics as m;
use crate::reader::{ReadError, archived_event_span};

/// `[archive.retention]` in floodlight.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Whether archived media is ever deleted.
    pub enabled: bool,
    /// How long after its archive ends an event's media stays (for start-over of the
    /// ended event, and for making assets of it), seconds. At least a day.
    pub after_secs: u64,
    /// How often the sweep runs, seconds.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            after_secs: 7 * 24 * 3600,
            interval_secs: 3600,
        }
    }
}

/// The shortest retention: a day, so an ended event's start-over window (24 h at most)
/// is never cut short.
pub const MIN_RETENTION_SECS: u64 = 24 * 3600;

impl RetentionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.after_secs < MIN_RETENTION_SECS {
            return invalid(
                "retention.after_secs",
                format!(
                    "{} is under a day ({MIN_RETENTION_SECS}): an ended event's start-over window may reach 24 h back",
                    self.after_secs
                ),
            );
        }
        if self.interval_secs == 0 {
            return invalid("retention.interval_secs", "must be positive".to_string());
        }
        Ok(())
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Events whose archive ended more than `after_ms` ago and were swept.
    pub events_swept: usize,
    pub objects_deleted: usize,
    pub bytes_deleted: u64,
    /// Objects of swept events kept because an asset references them.
    pub objects_kept_for_assets: usize,
}

/// Deletes what retention allows as of `now_ms`: for each archived event whose archive
/// ended `after_ms` or more ago, every object no asset manifest references. Reads every
/// asset manifest once per sweep.
pub async fn sweep(
    store: &dyn ObjectStore,
    now_ms: i64,
    after_ms: i64,
) -> Result<SweepReport, ReadError> {
    let mut report = SweepReport::default();
    let events = folders(store, &Path::from(format!("{LAYOUT_VERSION}/events"))).await?;
    // Events past retention, and events without an index (swept before, some objects
    // kept for assets then): those lose the objects no asset needs, by age.
    let mut candidates = Vec::new();
    for name in events {
        let Ok(event_id) = EventId::new(name) else {
            continue;
        };
        match archived_event_span(store, &event_id).await? {
            Some((_, end_ms)) if now_ms.saturating_sub(end_ms) >= after_ms => {
                candidates.push((event_id, Sweep::Whole));
            }
            Some(_) => {}
            None => candidates.push((event_id, Sweep::OlderThan(now_ms - after_ms))),
        }
    }
    if candidates.is_empty() {
        return Ok(report);
    }
    let referenced = referenced_objects(store).await?;
    for (event_id, how) in candidates {
        let prefix = RenditionKey::event_prefix(&event_id);
        let objects: Vec<ObjectMeta> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| store_error(&prefix, source))?;
        let (kept, doomed): (Vec<ObjectMeta>, Vec<ObjectMeta>) =
            objects.into_iter().partition(|meta| {
                referenced.contains(meta.location.as_ref())
                    || match how {
                        Sweep::Whole => false,
                        // An object of an event whose index is not written yet is new.
                        Sweep::OlderThan(ms) => meta.last_modified.timestamp_millis() > ms,
                    }
            });
        if doomed.is_empty() {
            continue;
        }
        report.events_swept += 1;
        report.objects_kept_for_assets += kept.len();
        let doomed_count = doomed.len();
        let doomed_bytes = doomed.iter().map(|m| m.size).sum::<u64>();
        report.bytes_deleted += doomed_bytes;
        report.objects_deleted += doomed_count;
        let paths = futures::stream::iter(doomed.into_iter().map(|m| Ok(m.location))).boxed();
        store
            .delete_stream(paths)
            .try_for_each(|_| futures::future::ready(Ok(())))
            .await
            .or_else(|error| match error {
                object_store::Error::NotFound { .. } => Ok(()),
                error => Err(store_error(&prefix, error)),
            })?;
        metrics::counter!(m::RETENTION_OBJECTS_DELETED).increment(doomed_count as u64);
        metrics::counter!(m::RETENTION_BYTES_DELETED).increment(doomed_bytes);
        tracing::info!(event_id = %event_id, objects_deleted = doomed_count, bytes_deleted = doomed_bytes,
            kept_for_assets = kept.len(), "archive retention: swept an event past retention");
    }
    Ok(report)
}

/// What a sweep deletes of an event (what no asset references, in either case).
#[derive(Debug, Clone, Copy)]
enum Sweep {
    /// Its archive ended long enough ago: everything.
    Whole,
    /// It has no index (swept before): objects last modified before this, Unix ms.
    OlderThan(i64),
}

/// Every event object (segment, init version) some asset manifest references.
async fn referenced_objects(store: &dyn ObjectStore) -> Result<HashSet<String>, ReadError> {
    let mut referenced = HashSet::new();
    for name in folders(store, &Path::from(format!("{LAYOUT_VERSION}/assets"))).await? {
        let Ok(asset_id) = AssetId::new(name) else {
            continue;
        };
        // An asset without a manifest (a build under way) references nothing yet.
        if let Some(manifest) = read_manifest(store, &asset_id).await? {
            for rendition in &manifest.renditions {
                for segment in &rendition.segments {
                    referenced.insert(segment.object.clone());
                    referenced.insert(segment.init.clone());
                }
            }
        }
    }
    Ok(referenced)
}

/// The names of the folders directly under `prefix`, in order.
async fn folders(store: &dyn ObjectStore, prefix: &Path) -> Result<BTreeSet<String>, ReadError> {
    let listing = store
        .list_with_delimiter(Some(prefix))
        .await
        .map_err(|source| store_error(prefix, source))?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}

fn store_error(path: &Path, source: object_store::Error) -> ReadError {
    ReadError::Store {
        object: path.to_string(),
        source,
    }
}
