//! An event records itself: when a live event with `record: true` ends, a whole-event
//! `segment` asset titled like the event is made of it, once.
//!
//! Durable without a bus: the transition to `ended` marks the event's recording owed
//! (`events.recording_owed`) in its own transaction, and every job-runner poll turns owed
//! recordings into assets, clearing the mark in the same transaction that inserts the
//! asset and its job. A crash anywhere in between leaves the mark, so the next poll (any
//! process) does it; the mark is cleared once, and `assets.recording_of` is unique, so a
//! second end, a restart or two processes never make a second recording. The bus's
//! `event.ended` only wakes the runner early.

use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::model::NewAsset;
use super::store::insert_asset;
use crate::audit::Actor;
use crate::db::{Store, StoreError, query_failed, stored_time};
use crate::events::{LifecycleKind, LifecycleMessage};
use crate::jobs::{Jobs, Precision};

/// Owed recordings looked at per poll.
const RECORDINGS_PER_POLL: i64 = 16;

/// An ended event whose recording is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OwedRecording {
    pub(super) event_id: String,
    pub(super) title: String,
    pub(super) owner: Option<String>,
}

impl Store {
    /// Ended events whose recording has not been made yet.
    pub(super) async fn owed_recordings(&self) -> Result<Vec<OwedRecording>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, title, owner FROM events WHERE recording_owed = 1 ORDER BY id LIMIT $1",
        )
        .bind(RECORDINGS_PER_POLL)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("select owed recordings"))?;
        Ok(rows
            .into_iter()
            .map(|(event_id, title, owner)| OwedRecording {
                event_id,
                title,
                owner,
            })
            .collect())
    }

    /// Makes the event's recording: a queued whole-event asset and its build job, and the
    /// mark cleared, in one transaction. `None` when someone else already did.
    pub(super) async fn record_event(
        &self,
        owed: &OwedRecording,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let now = stored_time(now);
        let mut tx = self.write_tx().await?;
        let cleared = sqlx::query(
            "UPDATE events SET recording_owed = 0 WHERE id = $1 AND recording_owed = 1",
        )
        .bind(owed.event_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("clear owed recording"))?;
        if cleared.rows_affected() == 0 {
            tx.rollback().await.map_err(query_failed("rollback"))?;
            return Ok(None);
        }
        let new = NewAsset {
            title: owed.title.clone(),
            event_id: owed.event_id.clone(),
            start: None,
            end: None,
            precision: Precision::Segment,
            owner: owed.owner.clone(),
        };
        let asset_id =
            insert_asset(&mut tx, &new, Some(&owed.event_id), &Actor::system(), now).await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(asset_id)
    }

    /// The event ended with nothing archived: there is nothing to record.
    pub(super) async fn forgo_recording(&self, event_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE events SET recording_owed = 0 WHERE id = $1")
            .bind(event_id)
            .execute(self.pool())
            .await
            .map_err(query_failed("forgo recording"))?;
        Ok(())
    }
}

/// Wakes the job runner whenever an event ends, so its recording starts at once rather
/// than at the next poll. Never returns (a closed bus leaves the polls to find them).
pub(crate) async fn wake_on_ended(mut bus: broadcast::Receiver<LifecycleMessage>, jobs: Jobs) {
    loop {
        match bus.recv().await {
            Ok(message) if message.kind == LifecycleKind::EventEnded => jobs.wake(),
            Ok(_) => {}
            // Missed messages: the poll finds their recordings anyway.
            Err(broadcast::error::RecvError::Lagged(_)) => jobs.wake(),
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
