//! Assets as stored: creating one with its build job, reading and listing them, and
//! cancelling or deleting one (which stops its build job). What the jobs write to an
//! asset as its build goes is in `build_store.rs`.
//!
//! Every transaction that touches an asset and its jobs writes the asset's row first,
//! then the jobs': one order everywhere, so two transactions on PostgreSQL never wait on
//! each other in a circle.

use time::OffsetDateTime;

use super::model::{
    Asset, AssetCursor, AssetFilter, AssetPage, AssetRendition, AssetState, CancelOutcome, NewAsset,
};
use crate::audit::{Actor, AuditRecord, record_audit};
use crate::db::{
    Sql, Store, StoreError, from_unix_micros, query_failed, random_id, stored_time, unix_micros,
};
use crate::events::Visibility;
use crate::jobs::{self, JobKind, Precision};

/// The columns [`AssetRow`] reads; the event's visibility through a subquery, so that the
/// paging clauses' `created_at` and `id` stay the asset's own.
pub(super) const ASSET_COLUMNS: &str = "id, title, event_id, source_start, source_end, \
     precision, state, progress_permille, stage, error, duration_ms, range_start, \
     range_end, renditions, poster, owner, recording_of, created_at, updated_at, \
     started_at, finished_at, \
     (SELECT visibility FROM events WHERE events.id = assets.event_id) AS visibility";

#[derive(sqlx::FromRow)]
pub(super) struct AssetRow {
    id: String,
    title: String,
    event_id: String,
    source_start: Option<i64>,
    source_end: Option<i64>,
    precision: String,
    state: String,
    progress_permille: i64,
    stage: Option<String>,
    error: Option<String>,
    duration_ms: Option<i64>,
    range_start: Option<i64>,
    range_end: Option<i64>,
    renditions: Option<String>,
    poster: i64,
    owner: Option<String>,
    recording_of: Option<String>,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    visibility: Option<String>,
}

fn optional_time(micros: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    micros.map(from_unix_micros).transpose()
}

impl AssetRow {
    fn into_asset(self) -> Result<Asset, StoreError> {
        let renditions: Vec<AssetRendition> = match self.renditions.as_deref() {
            Some(json) => serde_json::from_str(json).map_err(|_| StoreError::CorruptRow {
                what: "asset renditions",
                value: self.id.clone(),
            })?,
            None => Vec::new(),
        };
        let range = match (self.range_start, self.range_end) {
            (Some(start), Some(end)) => Some((from_unix_micros(start)?, from_unix_micros(end)?)),
            _ => None,
        };
        Ok(Asset {
            precision: Precision::from_column(&self.precision).ok_or_else(|| {
                StoreError::CorruptRow {
                    what: "asset precision",
                    value: self.precision.clone(),
                }
            })?,
            state: AssetState::from_column(&self.state)?,
            progress: (self.progress_permille.clamp(0, 1000) as f64) / 1000.0,
            start: optional_time(self.source_start)?,
            end: optional_time(self.source_end)?,
            range,
            renditions,
            poster: self.poster != 0,
            recording: self.recording_of.is_some(),
            visibility: match self.visibility.as_deref() {
                Some(text) => Visibility::from_column(text)?,
                None => Visibility::Public,
            },
            created_at: from_unix_micros(self.created_at)?,
            updated_at: from_unix_micros(self.updated_at)?,
            started_at: optional_time(self.started_at)?,
            finished_at: optional_time(self.finished_at)?,
            id: self.id,
            title: self.title,
            event_id: self.event_id,
            stage: self.stage,
            error: self.error,
            duration_ms: self.duration_ms,
            owner: self.owner,
        })
    }
}

/// Inserts a queued asset, its build job and the audit entry on `conn` (the caller's
/// transaction). `recording_of`: the event whose automatic recording this is; at most
/// one asset per event is (a unique column), and a second insert for the same event
/// inserts nothing and returns `None`.
pub(super) async fn insert_asset(
    conn: &mut sqlx::AnyConnection,
    new: &NewAsset,
    recording_of: Option<&str>,
    actor: &Actor,
    now: OffsetDateTime,
) -> Result<Option<String>, StoreError> {
    let id = random_id();
    let at = unix_micros(now);
    let done = sqlx::query(
        "INSERT INTO assets (id, title, event_id, source_start, source_end, precision, state, \
         progress_permille, stage, poster, owner, recording_of, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, 'queued', 0, $7, $8, $9, $9) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id.as_str())
    .bind(new.title.as_str())
    .bind(new.event_id.as_str())
    .bind(new.start.map(unix_micros))
    .bind(new.end.map(unix_micros))
    .bind(new.precision.as_str())
    .bind(new.owner.as_deref())
    .bind(recording_of)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("insert asset"))?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    jobs::enqueue(conn, JobKind::AssetBuild, &id, now).await?;
    record_audit(
        conn,
        &AuditRecord {
            actor,
            action: "asset.create",
            target_kind: "asset",
            target_id: &id,
            detail: Some(serde_json::json!({
                "title": new.title,
                "event_id": new.event_id,
                "precision": new.precision.as_str(),
                "recording": recording_of.is_some(),
            })),
        },
        at,
    )
    .await?;
    Ok(Some(id))
}

impl Store {
    /// Creates a queued asset and its build job.
    pub(crate) async fn create_asset(
        &self,
        new: &NewAsset,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Asset, StoreError> {
        let now = stored_time(now);
        let mut tx = self.write_tx().await?;
        let id = insert_asset(&mut tx, new, None, actor, now)
            .await?
            .ok_or_else(|| StoreError::CorruptRow {
                what: "new asset id",
                value: "already taken".to_string(),
            })?;
        tx.commit().await.map_err(query_failed("commit"))?;
        self.asset(&id).await?.ok_or(StoreError::CorruptRow {
            what: "asset just created",
            value: id,
        })
    }

    /// The asset with this id, unless it was deleted.
    pub(crate) async fn asset(&self, id: &str) -> Result<Option<Asset>, StoreError> {
        let row: Option<AssetRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ASSET_COLUMNS} FROM assets WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select asset"))?;
        row.map(AssetRow::into_asset).transpose()
    }

    /// Up to `limit` assets matching `filter`, newest first, after `after` (keyset
    /// pagination on `(created_at, id)`). Deleted assets are left out.
    pub(crate) async fn list_assets(
        &self,
        filter: &AssetFilter,
        limit: u32,
        after: Option<&AssetCursor>,
    ) -> Result<AssetPage, StoreError> {
        let mut sql = Sql::new(&format!(
            "SELECT {ASSET_COLUMNS} FROM assets WHERE deleted_at IS NULL"
        ));
        if !filter.event_ids.is_empty() {
            sql.push(" AND event_id IN (")
                .bind_list(filter.event_ids.iter().cloned())
                .push(")");
        }
        if !filter.states.is_empty() {
            sql.push(" AND state IN (")
                .bind_list(filter.states.iter().map(|s| s.as_str()))
                .push(")");
        }
        if let Some(owner) = &filter.owner {
            sql.push(" AND owner = ").bind(owner.clone());
        }
        sql.newest_first_page(after.map(|c| (c.created_at_us, c.id.clone())), limit);
        let rows: Vec<AssetRow> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("list assets"))?;
        let more = rows.len() > limit as usize;
        let assets = rows
            .into_iter()
            .take(limit as usize)
            .map(AssetRow::into_asset)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            assets.last().map(AssetCursor::after)
        } else {
            None
        };
        Ok(AssetPage { assets, next })
    }

    /// Cancels a queued or processing asset: its build job is cancelled (queued) or
    /// asked to stop (running; its runner notices at once in this process, at its next
    /// heartbeat in another). Cancelling a cancelled asset changes nothing.
    pub(crate) async fn cancel_asset(
        &self,
        id: &str,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, StoreError> {
        let at = unix_micros(stored_time(now));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE assets SET state = 'cancelled', stage = 'cancelled', finished_at = $1, \
             updated_at = $1 WHERE id = $2 AND deleted_at IS NULL \
             AND state IN ('queued', 'processing')",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(query_failed("cancel asset"))?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(match self.asset(id).await? {
                None => CancelOutcome::NotFound,
                Some(asset) if asset.state == AssetState::Cancelled => {
                    CancelOutcome::Cancelled(Box::new(asset))
                }
                Some(asset) => CancelOutcome::Finished(asset.state),
            });
        }
        let build = jobs::cancel_build(&mut tx, id, now).await?;
        if build.ran_before {
            jobs::enqueue_cleanup(&mut tx, id, now).await?;
        }
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "asset.cancel",
                target_kind: "asset",
                target_id: id,
                detail: None,
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        tracing::info!(asset_id = id, "asset cancelled");
        Ok(match self.asset(id).await? {
            Some(asset) => CancelOutcome::Cancelled(Box::new(asset)),
            None => CancelOutcome::NotFound,
        })
    }

    /// Deletes an asset: it leaves the API at once (the row stays, with `deleted_at`, for
    /// the record), its build stops, and a job removes its objects from the store.
    /// `false`: no such asset.
    pub(crate) async fn delete_asset(
        &self,
        id: &str,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let at = unix_micros(stored_time(now));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE assets SET deleted_at = $1, updated_at = $1, \
             state = CASE WHEN state IN ('queued', 'processing') THEN 'cancelled' \
                 ELSE state END, \
             finished_at = COALESCE(finished_at, $1) \
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(query_failed("delete asset"))?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(false);
        }
        jobs::cancel_build(&mut tx, id, now).await?;
        jobs::enqueue_cleanup(&mut tx, id, now).await?;
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "asset.delete",
                target_kind: "asset",
                target_id: id,
                detail: None,
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        tracing::info!(
            asset_id = id,
            "asset deleted; its objects are being removed"
        );
        Ok(true)
    }
}
