//! What a build job writes to its asset: processing when it starts, its progress, and
//! its end (ready, waiting to retry, failed, given back at shutdown, cancelled), each end
//! in one transaction with the job's own, fenced by the job's lease so that a runner
//! that lost its job writes nothing.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::AssetRendition;
use crate::audit::{Actor, AuditRecord, record_audit};
use crate::db::{Store, StoreError, query_failed, stored_time, unix_micros};
use crate::jobs::{
    self, AssetSpec, BuiltAsset, Job, JobEnd, Precision, finish_job, release_job, retry_job_later,
};

/// Longest stage or error text kept: a builder's message, not a log.
const MAX_TEXT_CHARS: usize = 1000;

fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Unix µs as the builder's Unix ms (rounded down; the API keeps ranges to the ms).
fn millis(micros: i64) -> i64 {
    micros.div_euclid(1000)
}

impl Store {
    /// A claimed build starts: the asset becomes `processing` (from the start again after
    /// an interrupted attempt). `None` when the asset is no longer to be built (cancelled
    /// or deleted meanwhile).
    pub(crate) async fn start_asset_build(
        &self,
        asset_id: &str,
        attempt: u32,
        now: OffsetDateTime,
    ) -> Result<Option<AssetSpec>, StoreError> {
        let stage = if attempt > 1 {
            format!("starting (attempt {attempt})")
        } else {
            "starting".to_string()
        };
        let at = unix_micros(stored_time(now));
        let done = sqlx::query(
            "UPDATE assets SET state = 'processing', progress_permille = 0, stage = $1, \
             started_at = COALESCE(started_at, $2), updated_at = $2 \
             WHERE id = $3 AND deleted_at IS NULL AND state IN ('queued', 'processing')",
        )
        .bind(stage.as_str())
        .bind(at)
        .bind(asset_id)
        .execute(self.pool())
        .await
        .map_err(query_failed("start asset build"))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let row: Option<(String, Option<i64>, Option<i64>, String)> = sqlx::query_as(
            "SELECT event_id, source_start, source_end, precision FROM assets WHERE id = $1",
        )
        .bind(asset_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select asset spec"))?;
        let Some((event_id, start, end, precision)) = row else {
            return Ok(None);
        };
        Ok(Some(AssetSpec {
            asset_id: asset_id.to_string(),
            event_id,
            start_ms: start.map(millis),
            end_ms: end.map(millis),
            precision: Precision::from_column(&precision).ok_or(StoreError::CorruptRow {
                what: "asset precision",
                value: precision,
            })?,
        }))
    }

    /// The latest progress of a processing asset (0 to 1, and the stage).
    pub(crate) async fn write_asset_progress(
        &self,
        asset_id: &str,
        stage: &str,
        progress: f64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let permille = (progress.clamp(0.0, 1.0) * 1000.0).round() as i64;
        sqlx::query(
            "UPDATE assets SET progress_permille = $1, stage = $2, updated_at = $3 \
             WHERE id = $4 AND state = 'processing'",
        )
        .bind(permille)
        .bind(bounded(stage))
        .bind(unix_micros(stored_time(now)))
        .bind(asset_id)
        .execute(self.pool())
        .await
        .map_err(query_failed("write asset progress"))?;
        Ok(())
    }

    /// The build finished: the asset is ready with what was built. `false` (nothing
    /// written) when the asset is no longer processing or the job no longer this
    /// runner's.
    pub(crate) async fn asset_built(
        &self,
        job: &Job,
        owner: &str,
        built: &BuiltAsset,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = stored_time(now);
        let at = unix_micros(now);
        let renditions: Vec<AssetRendition> =
            built.renditions.iter().map(AssetRendition::from).collect();
        let renditions =
            serde_json::to_string(&renditions).map_err(|_| StoreError::CorruptRow {
                what: "asset renditions",
                value: job.asset_id.clone(),
            })?;
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE assets SET state = 'ready', progress_permille = 1000, stage = 'ready', \
             error = NULL, duration_ms = $1, range_start = $2, range_end = $3, \
             renditions = $4, poster = $5, finished_at = $6, updated_at = $6 \
             WHERE id = $7 AND state = 'processing' AND deleted_at IS NULL",
        )
        .bind(built.duration_ms)
        .bind(built.start_ms.saturating_mul(1000))
        .bind(built.end_ms.saturating_mul(1000))
        .bind(renditions)
        .bind(i64::from(built.poster))
        .bind(at)
        .bind(job.asset_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("asset ready"))?;
        if done.rows_affected() == 0 || !finish_job(&mut tx, job, owner, &JobEnd::Done, now).await?
        {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(false);
        }
        record_audit(
            &mut tx,
            &AuditRecord {
                actor: &Actor::system(),
                action: "asset.ready",
                target_kind: "asset",
                target_id: &job.asset_id,
                detail: Some(serde_json::json!({ "duration_ms": built.duration_ms })),
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(true)
    }

    /// A retryable failure: the job waits until `not_before` and the asset's stage says
    /// what it waits for; its state stays as it is.
    pub(crate) async fn asset_build_waits(
        &self,
        job: &Job,
        owner: &str,
        reason: &str,
        not_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = stored_time(now);
        let retry_at = not_before
            .format(&Rfc3339)
            .unwrap_or_else(|_| not_before.to_string());
        let stage = format!("waiting: {}; retrying at {retry_at}", bounded(reason));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE assets SET stage = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'processing' AND deleted_at IS NULL",
        )
        .bind(stage)
        .bind(unix_micros(now))
        .bind(job.asset_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("asset waits"))?;
        if done.rows_affected() == 0
            || !retry_job_later(&mut tx, job, owner, not_before, &bounded(reason), now).await?
        {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(false);
        }
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(true)
    }

    /// The build failed for good: the asset is failed with `reason`.
    pub(crate) async fn asset_build_failed(
        &self,
        job: &Job,
        owner: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = stored_time(now);
        let at = unix_micros(now);
        let reason = bounded(reason);
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE assets SET state = 'failed', stage = 'failed', error = $1, \
             finished_at = $2, updated_at = $2 \
             WHERE id = $3 AND state = 'processing' AND deleted_at IS NULL",
        )
        .bind(reason.as_str())
        .bind(at)
        .bind(job.asset_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("asset failed"))?;
        let end = JobEnd::Failed(reason.clone());
        if done.rows_affected() == 0 || !finish_job(&mut tx, job, owner, &end, now).await? {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(false);
        }
        record_audit(
            &mut tx,
            &AuditRecord {
                actor: &Actor::system(),
                action: "asset.fail",
                target_kind: "asset",
                target_id: &job.asset_id,
                detail: Some(serde_json::json!({ "error": reason })),
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(true)
    }

    /// Shutdown: the job goes back to the queue and the asset back to `queued`, so the
    /// next runner (any process) starts it at once.
    pub(crate) async fn asset_build_released(
        &self,
        job: &Job,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = stored_time(now);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE assets SET state = 'queued', progress_permille = 0, \
             stage = 'interrupted: the control plane stopped; it starts again when a job \
             runner is free', updated_at = $1 \
             WHERE id = $2 AND state = 'processing' AND deleted_at IS NULL",
        )
        .bind(unix_micros(now))
        .bind(job.asset_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("asset released"))?;
        if !release_job(&mut tx, job, owner, now).await? {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(false);
        }
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(true)
    }

    /// A cancelled build has stopped: its job is recorded cancelled, and a job queued to
    /// remove whatever it wrote. (The asset itself was cancelled by the request.)
    pub(crate) async fn asset_build_cancelled(
        &self,
        job: &Job,
        owner: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let now = stored_time(now);
        let mut tx = self.write_tx().await?;
        if !finish_job(&mut tx, job, owner, &JobEnd::Cancelled, now).await? {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(false);
        }
        jobs::enqueue_cleanup(&mut tx, &job.asset_id, now).await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_bounded_in_characters_and_times_kept_to_the_ms() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_TEXT_CHARS + 5);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(millis(1_700_000_000_123_456), 1_700_000_000_123);
        assert_eq!(millis(-1), -1);
    }
}
