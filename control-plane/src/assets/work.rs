//! What the asset jobs do ([`JobWork`] for the job runner): build an asset through the
//! [`AssetBuilder`] and record how it ended, remove a deleted or cancelled asset's
//! objects, and turn owed recordings into assets.
//!
//! Every end is written fenced by the job's lease (`build_store.rs`): when the write
//! finds the job no longer this runner's, or cancelled meanwhile, [`AssetWork::stopped`]
//! decides what happened from why the run was stopped and what the store says.

use std::sync::Arc;

use time::OffsetDateTime;

use super::recording::OwedRecording;
use crate::db::{Store, StoreError};
use crate::jobs::{
    AssetBuilder, BoxFuture, BuildError, Job, JobEnd, JobKind, JobOutcome, JobWork, Lease,
    RunningJob, Stop,
};

/// The asset domain's jobs, run by the job runner.
pub(crate) struct AssetWork {
    store: Store,
    builder: Arc<dyn AssetBuilder>,
}

impl AssetWork {
    pub(crate) fn new(store: Store, builder: Arc<dyn AssetBuilder>) -> AssetWork {
        AssetWork { store, builder }
    }

    async fn build(&self, running: &RunningJob) -> JobOutcome {
        let job = &running.job;
        if job.cancelling {
            // Cancelled while a runner that died had it: nothing runs any more.
            return self.cancelled(running).await;
        }
        let spec = match self
            .store
            .start_asset_build(&job.asset_id, job.attempts, OffsetDateTime::now_utc())
            .await
        {
            Ok(Some(spec)) => spec,
            // Cancelled or deleted between the claim and now.
            Ok(None) => return self.cancelled(running).await,
            Err(error) => return store_failed(job, &error),
        };
        let result = self.builder.build(&spec, running, &running.cancel).await;
        let now = OffsetDateTime::now_utc();
        let owner = running.owner.as_str();
        let written = match &result {
            Ok(built) => self.store.asset_built(job, owner, built, now).await,
            Err(BuildError::Retryable(reason)) => {
                let not_before = now + running.retry_delay;
                self.store
                    .asset_build_waits(job, owner, reason, not_before, now)
                    .await
            }
            Err(BuildError::Fatal(reason)) => {
                self.store.asset_build_failed(job, owner, reason, now).await
            }
            Err(BuildError::Cancelled) => return self.stopped(running).await,
        };
        match written {
            Ok(true) => {}
            // Cancelled or taken over meanwhile: the build's result does not count.
            Ok(false) => return self.stopped(running).await,
            Err(error) => return store_failed(job, &error),
        }
        match result {
            Ok(built) => {
                tracing::info!(
                    asset_id = %job.asset_id,
                    event_id = %spec.event_id,
                    duration_ms = built.duration_ms,
                    renditions = built.renditions.len(),
                    "asset ready"
                );
                JobOutcome::Done
            }
            Err(BuildError::Retryable(reason)) => {
                tracing::warn!(
                    asset_id = %job.asset_id,
                    %reason,
                    retry_in_ms = running.retry_delay.as_millis() as u64,
                    "asset build waits to retry"
                );
                JobOutcome::RetryLater
            }
            Err(error) => {
                tracing::warn!(asset_id = %job.asset_id, reason = %error, "asset build failed");
                JobOutcome::Failed
            }
        }
    }

    /// The run stopped (or its end could not be written): why, and what is left to do.
    async fn stopped(&self, running: &RunningJob) -> JobOutcome {
        let job = &running.job;
        let now = OffsetDateTime::now_utc();
        match running.stopped() {
            Some(Stop::LeaseLost) => JobOutcome::Lost,
            Some(Stop::Shutdown) => {
                let released = match job.kind {
                    JobKind::AssetBuild => {
                        self.store
                            .asset_build_released(job, &running.owner, now)
                            .await
                    }
                    JobKind::AssetDelete => {
                        // A delete is never cancelled: a stopped one just runs again.
                        return JobOutcome::Lost;
                    }
                };
                match released {
                    Ok(true) => JobOutcome::Released,
                    Ok(false) => JobOutcome::Lost,
                    Err(error) => store_failed(job, &error),
                }
            }
            // Cancelled here, or the store says so (a cancel not yet seen by a heartbeat
            // when the build's end was written).
            Some(Stop::Cancelled) | None => {
                match self.store.check_lease(&job.id, &running.owner).await {
                    Ok(Lease::Held { cancelling: true }) => self.cancelled(running).await,
                    Ok(Lease::Held { cancelling: false }) => {
                        // The builder gave up without being asked to.
                        let reason = "the build stopped without being cancelled".to_string();
                        self.fail_job(job, &running.owner, reason).await
                    }
                    Ok(Lease::Lost) => JobOutcome::Lost,
                    Err(error) => store_failed(job, &error),
                }
            }
        }
    }

    /// Records a cancelled build as cancelled, queueing the removal of what it wrote.
    async fn cancelled(&self, running: &RunningJob) -> JobOutcome {
        let job = &running.job;
        match self
            .store
            .asset_build_cancelled(job, &running.owner, OffsetDateTime::now_utc())
            .await
        {
            Ok(true) => {
                tracing::info!(asset_id = %job.asset_id, "asset build stopped: cancelled");
                JobOutcome::Cancelled
            }
            Ok(false) => JobOutcome::Lost,
            Err(error) => store_failed(job, &error),
        }
    }

    async fn delete(&self, running: &RunningJob) -> JobOutcome {
        let job = &running.job;
        let owner = running.owner.as_str();
        let result = self.builder.delete(&job.asset_id).await;
        let now = OffsetDateTime::now_utc();
        let (written, outcome) = match &result {
            Ok(()) => (
                self.store.end_job(job, owner, &JobEnd::Done, now).await,
                JobOutcome::Done,
            ),
            Err(BuildError::Retryable(reason)) => (
                self.store
                    .retry_later(job, owner, now + running.retry_delay, reason, now)
                    .await,
                JobOutcome::RetryLater,
            ),
            Err(BuildError::Fatal(reason)) => (
                self.store
                    .end_job(job, owner, &JobEnd::Failed(reason.clone()), now)
                    .await,
                JobOutcome::Failed,
            ),
            Err(BuildError::Cancelled) => return self.stopped(running).await,
        };
        match written {
            Ok(true) => {}
            Ok(false) => return JobOutcome::Lost,
            Err(error) => return store_failed(job, &error),
        }
        match result {
            Ok(()) => tracing::info!(asset_id = %job.asset_id, "asset objects removed"),
            Err(BuildError::Fatal(reason)) => tracing::error!(
                asset_id = %job.asset_id,
                %reason,
                "could not remove the asset's objects; they stay in the object store"
            ),
            Err(error) => tracing::warn!(
                asset_id = %job.asset_id,
                reason = %error,
                "removing the asset's objects waits to retry"
            ),
        }
        outcome
    }

    async fn fail_job(&self, job: &Job, owner: &str, reason: String) -> JobOutcome {
        let now = OffsetDateTime::now_utc();
        let failed = match job.kind {
            JobKind::AssetBuild => match self
                .store
                .asset_build_failed(job, owner, &reason, now)
                .await
            {
                // The asset is not processing any more: end the job alone.
                Ok(false) => {
                    self.store
                        .end_job(job, owner, &JobEnd::Failed(reason), now)
                        .await
                }
                other => other,
            },
            JobKind::AssetDelete => {
                self.store
                    .end_job(job, owner, &JobEnd::Failed(reason), now)
                    .await
            }
        };
        match failed {
            Ok(true) => JobOutcome::Failed,
            Ok(false) => JobOutcome::Lost,
            Err(error) => store_failed(job, &error),
        }
    }

    /// Turns owed recordings into assets. An event with nothing archived (it never got a
    /// segment to the archive) has nothing to record; when the archive does not answer,
    /// the recording waits for a later poll.
    async fn enqueue_recordings(&self) {
        let owed = match self.store.owed_recordings().await {
            Ok(owed) => owed,
            Err(error) => {
                tracing::debug!(%error, "could not look for owed recordings");
                return;
            }
        };
        for recording in owed {
            self.enqueue_recording(&recording).await;
        }
    }

    async fn enqueue_recording(&self, owed: &OwedRecording) {
        let event_id = owed.event_id.as_str();
        match super::archived_range(self.builder.as_ref(), event_id).await {
            Ok(None) => match self.store.forgo_recording(event_id).await {
                Ok(()) => tracing::info!(
                    event_id,
                    "event ended with nothing archived: no recording made"
                ),
                Err(error) => tracing::debug!(event_id, %error, "could not forgo recording"),
            },
            // A broken archive still gets an asset, which fails saying why.
            Ok(Some(_)) | Err(BuildError::Fatal(_)) => {
                match self
                    .store
                    .record_event(owed, OffsetDateTime::now_utc())
                    .await
                {
                    Ok(Some(asset_id)) => {
                        tracing::info!(event_id, %asset_id, "event recording queued")
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::debug!(event_id, %error, "could not queue the event's recording")
                    }
                }
            }
            Err(error) => tracing::debug!(
                event_id,
                reason = %error,
                "the archive does not answer; the event's recording waits"
            ),
        }
    }
}

/// The store did not take a job's end: leave the job to its lease, after which a runner
/// runs it again.
fn store_failed(job: &Job, error: &StoreError) -> JobOutcome {
    tracing::warn!(
        job_id = %job.id,
        asset_id = %job.asset_id,
        %error,
        "could not record the job's end; it runs again once its lease expires"
    );
    JobOutcome::Lost
}

impl JobWork for AssetWork {
    fn enqueue_due(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.enqueue_recordings())
    }

    fn run<'a>(&'a self, job: &'a RunningJob) -> BoxFuture<'a, JobOutcome> {
        Box::pin(async move {
            match job.job.kind {
                JobKind::AssetBuild => self.build(job).await,
                JobKind::AssetDelete => self.delete(job).await,
            }
        })
    }

    fn write_progress<'a>(
        &'a self,
        job: &'a Job,
        stage: &'a str,
        progress: f64,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self
                .store
                .write_asset_progress(&job.asset_id, stage, progress, OffsetDateTime::now_utc())
                .await
            {
                tracing::debug!(asset_id = %job.asset_id, %error, "could not write progress");
            }
        })
    }

    fn fail<'a>(&'a self, job: &'a Job, owner: &'a str, reason: String) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.fail_job(job, owner, reason).await;
        })
    }
}
