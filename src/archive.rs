//! The archive as the binary wires it: the store `[archive]` names, the writer the origin
//! archives through, the store start-over, VOD playback and VOD jobs read, and the
//! writer's report as the control API shows it.

use std::sync::Arc;
use std::time::Duration;

use floodlight_archive::{
    ArchiveWriter, EventArchiveStatus, MissingReason, ObjectStore, RetentionConfig, open_store,
    sweep,
};
use floodlight_control::{ArchiveGap, ArchiveHealth, ArchiveState};
use floodlight_media::clock::unix_millis;
use tracing::{info, warn};

use crate::config::Config;

/// How long shutdown waits for the archive to store what is queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The archive's store and its writer; both absent when `archive.enabled = false`.
pub(crate) struct Archive(Option<(Arc<dyn ObjectStore>, ArchiveWriter)>);

impl Archive {
    /// Opens the store `[archive]` names and starts the writer on it.
    pub(crate) fn open(config: &Config) -> anyhow::Result<Archive> {
        if !config.archive.enabled {
            info!(
                "archive.enabled = false: segments are not archived (no start-over, no VOD assets)"
            );
            return Ok(Archive(None));
        }
        let store = open_store(&config.archive.store, &config.data_dir)?;
        // The store's Display names the bucket or directory, never a credential.
        info!(%store, "archiving complete segments and init versions");
        let writer = ArchiveWriter::spawn(store.clone(), config.archive.store.writer.clone())?;
        let retention = &config.archive.store.retention;
        if retention.enabled {
            tokio::spawn(sweep_forever(store.clone(), retention.clone()));
        } else {
            info!("archive.retention.enabled = false: archived media is never deleted");
        }
        Ok(Archive(Some((store, writer))))
    }

    pub(crate) fn writer(&self) -> Option<ArchiveWriter> {
        self.0.as_ref().map(|(_, writer)| writer.clone())
    }

    pub(crate) fn store(&self) -> Option<Arc<dyn ObjectStore>> {
        self.0.as_ref().map(|(store, _)| store.clone())
    }

    /// At shutdown: waits, at most [`FLUSH_TIMEOUT`], until what is queued is stored.
    pub(crate) async fn flush(&self) {
        let Some((_, writer)) = &self.0 else {
            return;
        };
        if tokio::time::timeout(FLUSH_TIMEOUT, writer.flush())
            .await
            .is_err()
        {
            warn!(
                queued_segments = writer.queued_segments(),
                timeout_secs = FLUSH_TIMEOUT.as_secs(),
                "archive: the store did not take every queued segment before shutdown; those are not archived"
            );
        }
    }
}

/// Runs retention every `interval_secs`, the first a minute after start-up (the process
/// serves first). A failed sweep is logged and tried again at the next interval.
async fn sweep_forever(store: Arc<dyn ObjectStore>, retention: RetentionConfig) {
    let after_ms = i64::try_from(retention.after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut next = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep_until(next).await;
        next += Duration::from_secs(retention.interval_secs);
        match sweep(store.as_ref(), unix_millis(), after_ms).await {
            Ok(report) if report.events_swept > 0 => info!(
                events = report.events_swept,
                objects_deleted = report.objects_deleted,
                bytes_deleted = report.bytes_deleted,
                kept_for_assets = report.objects_kept_for_assets,
                "archive retention sweep"
            ),
            Ok(_) => {}
            Err(error) => {
                warn!(%error, "archive retention sweep failed; next try in archive.retention.interval_secs")
            }
        }
    }
}

/// The archive writer's report on a stream, as the control API shows it.
pub(crate) fn health(archive: &EventArchiveStatus) -> ArchiveHealth {
    ArchiveHealth {
        state: if archive.degraded {
            ArchiveState::Degraded
        } else {
            ArchiveState::Ok
        },
        detail: archive.to_string(),
        missing: archive
            .renditions
            .iter()
            .flat_map(|r| {
                r.missing.iter().map(|m| ArchiveGap {
                    rendition: r.rendition.clone(),
                    first_msn: m.first_msn,
                    last_msn: m.last_msn,
                    reason: match m.reason {
                        MissingReason::QueueFull => "queue_full",
                        MissingReason::StoreFailed => "store_failed",
                    }
                    .to_owned(),
                })
            })
            .collect(),
    }
}
