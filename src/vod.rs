//! VOD asset jobs as the binary runs them: the control plane's [`AssetBuilder`] over the
//! archive (`segment` assets: the archived segments of a range, referenced) and the
//! transcoder's smart renderer (`frame` assets: the boundary GOPs re-rendered; posters).
//! The control plane keeps the jobs (queue, leases, progress, cancel); this is only what
//! one job does to the object store.

use std::sync::Arc;

use floodlight_archive::{
    AssetId, AssetManifest, AssetSource, EventId, ObjectStore, ReadError, archived_event_span,
    delete_asset, segment_asset, write_manifest,
};
use floodlight_control::{
    ArchivedRange, AssetBuilder, AssetSpec, BoxFuture, BuildError, BuiltAsset, BuiltRendition,
    CancelToken, Precision, ProgressSink,
};
use floodlight_media::push::RenditionKind;
use floodlight_transcoder::vod::{VodError, VodSettings, render_frame_precise, render_poster};
use tracing::{info, warn};

/// Builds assets from the archive in `store`.
pub(crate) struct ArchiveAssets {
    store: Arc<dyn ObjectStore>,
    settings: VodSettings,
}

impl ArchiveAssets {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, settings: VodSettings) -> ArchiveAssets {
        ArchiveAssets { store, settings }
    }

    async fn build_asset(
        &self,
        spec: &AssetSpec,
        progress: &dyn ProgressSink,
        cancel: &CancelToken,
    ) -> Result<BuiltAsset, BuildError> {
        let asset_id = AssetId::new(spec.asset_id.as_str())
            .map_err(|e| BuildError::Fatal(format!("asset id: {e}")))?;
        let event_id = EventId::new(spec.event_id.as_str())
            .map_err(|e| BuildError::Fatal(format!("event id: {e}")))?;
        progress.report("reading the archive index", 0.0);
        let (start_ms, end_ms) = match (spec.start_ms, spec.end_ms) {
            (Some(start), Some(end)) => (start, end),
            (start, end) => {
                let (first, last) = archived_event_span(self.store.as_ref(), &event_id)
                    .await
                    .map_err(read_error)?
                    .ok_or_else(|| {
                        BuildError::Fatal(format!("event {event_id} has nothing archived"))
                    })?;
                (start.unwrap_or(first), end.unwrap_or(last))
            }
        };
        let source = AssetSource {
            event_id,
            start_ms,
            end_ms,
        };
        let mut manifest = segment_asset(self.store.as_ref(), asset_id, source)
            .await
            .map_err(read_error)?;
        if manifest.renditions.is_empty() {
            return Err(BuildError::Fatal(format!(
                "event {} has no archived media between {start_ms} and {end_ms} ms",
                spec.event_id
            )));
        }
        if cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        if spec.precision == Precision::Frame {
            let report =
                |p: f64| progress.report("re-rendering the first and last GOPs", 0.05 + 0.85 * p);
            let cancelled = || cancel.is_cancelled();
            manifest = render_frame_precise(
                self.store.clone(),
                &self.settings,
                manifest,
                &report,
                &cancelled,
            )
            .await
            .map_err(vod_error)?;
        }
        progress.report("making the poster", 0.92);
        match render_poster(self.store.clone(), &self.settings, &manifest).await {
            Ok(key) => manifest.poster = Some(key),
            Err(error) if error.is_retryable() => return Err(vod_error(error)),
            // An audio-only asset has no picture; a poster is not worth failing for.
            Err(error) => warn!(asset_id = spec.asset_id, %error, "asset has no poster"),
        }
        if cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        progress.report("writing the manifest", 0.97);
        write_manifest(self.store.as_ref(), &manifest)
            .await
            .map_err(read_error)?;
        let built = built(&manifest);
        info!(
            asset_id = spec.asset_id,
            event_id = spec.event_id,
            precision = spec.precision.as_str(),
            duration_ms = built.duration_ms,
            renditions = built.renditions.len(),
            "asset ready"
        );
        Ok(built)
    }
}

impl AssetBuilder for ArchiveAssets {
    fn archived_range<'a>(
        &'a self,
        event_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ArchivedRange>, BuildError>> {
        Box::pin(async move {
            // An id the archive's keys cannot hold was never archived.
            let Ok(event_id) = EventId::new(event_id) else {
                return Ok(None);
            };
            let span = archived_event_span(self.store.as_ref(), &event_id)
                .await
                .map_err(read_error)?;
            Ok(span.map(|(start_ms, end_ms)| ArchivedRange { start_ms, end_ms }))
        })
    }

    fn build<'a>(
        &'a self,
        spec: &'a AssetSpec,
        progress: &'a dyn ProgressSink,
        cancel: &'a CancelToken,
    ) -> BoxFuture<'a, Result<BuiltAsset, BuildError>> {
        Box::pin(self.build_asset(spec, progress, cancel))
    }

    fn delete<'a>(&'a self, asset_id: &'a str) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            let Ok(asset_id) = AssetId::new(asset_id) else {
                return Ok(());
            };
            delete_asset(self.store.as_ref(), &asset_id)
                .await
                .map_err(read_error)
        })
    }
}

/// What the control plane records of a built asset.
fn built(manifest: &AssetManifest) -> BuiltAsset {
    let ms = |ticks: u64| i64::try_from(ticks / 90).unwrap_or(i64::MAX);
    let start_ms = manifest
        .renditions
        .iter()
        .filter_map(|r| r.segments.first())
        .map(|s| s.program_date_time_ms)
        .min()
        .unwrap_or(manifest.source.start_ms);
    let end_ms = manifest
        .renditions
        .iter()
        .filter_map(|r| r.segments.last())
        .map(|s| s.program_date_time_ms + ms(s.duration_90k))
        .max()
        .unwrap_or(manifest.source.end_ms);
    let renditions = manifest
        .renditions
        .iter()
        .map(|r| {
            let d = &r.descriptor;
            let peak = r
                .segments
                .iter()
                .filter(|s| !s.gap && s.duration_90k > 0)
                .map(|s| (s.bytes as f64 * 8.0 / s.duration_secs()).ceil() as u64)
                .max();
            BuiltRendition {
                name: d.name.clone(),
                kind: match d.kind {
                    RenditionKind::Video => "video",
                    RenditionKind::Audio => "audio",
                }
                .to_string(),
                codecs: d.codecs.clone(),
                width: d.width,
                height: d.height,
                bandwidth_bps: peak.or(d.bandwidth_hint_bps),
                duration_ms: ms(r.duration_90k()),
            }
        })
        .collect();
    BuiltAsset {
        duration_ms: (manifest.duration_secs() * 1000.0).round() as i64,
        start_ms,
        end_ms,
        renditions,
        poster: manifest.poster.is_some(),
    }
}

/// A store failure is worth retrying; a corrupt index object fails the job, named.
fn read_error(error: ReadError) -> BuildError {
    match error {
        ReadError::Store { .. } => BuildError::Retryable(format!("object store: {error}")),
        other => BuildError::Fatal(other.to_string()),
    }
}

fn vod_error(error: VodError) -> BuildError {
    match error {
        VodError::Cancelled => BuildError::Cancelled,
        error if error.is_retryable() => BuildError::Retryable(error.to_string()),
        error => BuildError::Fatal(error.to_string()),
    }
}
