//! The job runner: one tokio task per control-plane process that claims due jobs from
//! the `jobs` table, runs up to `control.jobs.max_concurrent` of them at once, keeps
//! their leases, writes their progress at most once a second, and stops them when they
//! are cancelled, when another process took them over, or at shutdown.
//!
//! What a job *does* is the asset domain's ([`JobWork`]); the runner only knows that a
//! job runs, heartbeats and ends. Its state lives in the store, so a runner that dies
//! loses nothing: the lease expires and any runner (another process, or this one after a
//! restart) runs the job again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::builder::{BoxFuture, CancelToken, ProgressSink};
use super::config::JobsConfig;
use super::metrics::{
    JOB_DURATION, JOB_RETRIES, JOBS_CANCELLED, JOBS_COMPLETED, JOBS_FAILED, JOBS_QUEUED,
    JOBS_RUNNING,
};
use super::store::{Job, JobKind, Lease};
use crate::db::{Store, random_id};
use floodlight_media::sync::lock;

/// How often a running job's progress is written to the store at most.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How long shutdown waits for running jobs to stop and give themselves back; past it
/// they are dropped and their leases left to expire.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the runner runs: implemented by the asset domain for its builds and deletes.
pub(crate) trait JobWork: Send + Sync + 'static {
    /// Turns work that is owed into jobs (an ended event's recording); called before
    /// every poll of the queue.
    fn enqueue_due(&self) -> BoxFuture<'_, ()>;

    /// Runs a claimed job to its end and records the end in the store (fenced by the
    /// lease): done, retry later, failed, cancelled, or given back at shutdown.
    fn run<'a>(&'a self, job: &'a RunningJob) -> BoxFuture<'a, JobOutcome>;

    /// Writes a running job's latest progress report.
    fn write_progress<'a>(
        &'a self,
        job: &'a Job,
        stage: &'a str,
        progress: f64,
    ) -> BoxFuture<'a, ()>;

    /// Records a job whose run ended without an outcome (it panicked) as failed.
    fn fail<'a>(&'a self, job: &'a Job, owner: &'a str, reason: String) -> BoxFuture<'a, ()>;
}

/// How a run ended, for metrics and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    Done,
    /// A retryable failure: queued again for later.
    RetryLater,
    Failed,
    Cancelled,
    /// Given back to the queue at shutdown.
    Released,
    /// Another process holds the job now (or it ended meanwhile): nothing was written.
    Lost,
}

impl JobOutcome {
    fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Done => "done",
            JobOutcome::RetryLater => "retry_later",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::Released => "released",
            JobOutcome::Lost => "lost",
        }
    }
}

/// Why a running job was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Its asset was cancelled or deleted.
    Cancelled,
    /// This process is shutting down: give the job back.
    Shutdown,
    /// Another process took it over: stop without writing.
    LeaseLost,
}

/// A job this process runs: the claim, its cancel token, why it was stopped, and its
/// latest progress report.
pub(crate) struct RunningJob {
    pub(crate) job: Job,
    /// The lease's id (this process's id and the claim's), which fences every write
    /// that ends the run.
    pub(crate) owner: String,
    pub(crate) cancel: CancelToken,
    /// How long to wait before the next try if this one fails retryably.
    pub(crate) retry_delay: Duration,
    stop: Mutex<Option<Stop>>,
    progress: Mutex<Option<(String, f64)>>,
}

impl RunningJob {
    fn new(job: Job, owner: String, config: &JobsConfig) -> RunningJob {
        RunningJob {
            retry_delay: config.retry_delay(job.attempts),
            job,
            owner,
            cancel: CancelToken::new(),
            stop: Mutex::new(None),
            progress: Mutex::new(None),
        }
    }

    /// Stops the job for `why` (the first reason given stays) and fires its token.
    fn stop(&self, why: Stop) {
        lock(&self.stop).get_or_insert(why);
        self.cancel.cancel();
    }

    /// Why the job was told to stop, if it was.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        *lock(&self.stop)
    }

    /// The report not yet written, if any.
    fn take_progress(&self) -> Option<(String, f64)> {
        lock(&self.progress).take()
    }
}

impl ProgressSink for RunningJob {
    fn report(&self, stage: &str, progress: f64) {
        if progress.is_finite() {
            *lock(&self.progress) = Some((stage.to_string(), progress.clamp(0.0, 1.0)));
        }
    }
}

/// The in-process side of the job queue: this process's id (its leases start with it,
/// so the store shows who holds a job), the jobs it runs (so the API can stop one at
/// once), and the runner's wake-up. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Jobs(Arc<Inner>);

struct Inner {
    config: JobsConfig,
    owner: String,
    wake: Notify,
    running: Mutex<HashMap<String, Arc<RunningJob>>>,
}

impl Jobs {
    pub(crate) fn new(config: JobsConfig) -> Jobs {
        Jobs(Arc::new(Inner {
            config,
            owner: random_id(),
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
        }))
    }

    /// Makes the runner look at the queue now rather than at its next poll.
    pub(crate) fn wake(&self) {
        self.0.wake.notify_one();
    }

    /// Stops the asset's build if it runs in this process (the store already says it is
    /// cancelled; a build in another process notices at its next heartbeat).
    pub(crate) fn interrupt(&self, asset_id: &str) {
        for running in lock(&self.0.running).values() {
            if running.job.kind == JobKind::AssetBuild && running.job.asset_id == asset_id {
                running.stop(Stop::Cancelled);
            }
        }
    }

    /// Runs the queue until `shutdown` resolves, then stops the running jobs, which give
    /// themselves back to the queue (waiting [`SHUTDOWN_GRACE`] at most).
    pub(crate) async fn run(
        &self,
        store: Store,
        work: Arc<dyn JobWork>,
        shutdown: impl Future<Output = ()>,
    ) {
        let config = &self.0.config;
        let owner = self.0.owner.as_str();
        tracing::info!(
            owner,
            max_concurrent = config.max_concurrent,
            "job runner started"
        );
        let mut tasks = JoinSet::new();
        let mut by_task = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(config.poll_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
                _ = self.0.wake.notified() => {}
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.reap(joined, &mut by_task, work.as_ref()).await;
                }
            }
            work.enqueue_due().await;
            match store.queued_jobs().await {
                Ok(queued) => metrics::gauge!(JOBS_QUEUED).set(queued as f64),
                Err(error) => tracing::debug!(%error, "could not count queued jobs"),
            }
            while tasks.len() < config.max_concurrent {
                let now = OffsetDateTime::now_utc();
                // A lease id of its own per claim: should this process claim a job again
                // whose lease it let lapse (the database was out of reach), the earlier
                // run sees the lease lost and stops.
                let lease_id = format!("{owner}.{}", random_id());
                let job = match store.claim_job(&lease_id, now + config.lease(), now).await {
                    Ok(Some(job)) => job,
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "could not claim a job; retrying at the next poll");
                        break;
                    }
                };
                let running = Arc::new(RunningJob::new(job, lease_id, config));
                lock(&self.0.running).insert(running.job.id.clone(), running.clone());
                let task = tasks.spawn(self.clone().execute(
                    store.clone(),
                    work.clone(),
                    running.clone(),
                ));
                by_task.insert(task.id(), running);
            }
        }
        let running: Vec<Arc<RunningJob>> = lock(&self.0.running).values().cloned().collect();
        for job in &running {
            job.stop(Stop::Shutdown);
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(joined) = tasks.join_next_with_id().await {
                self.reap(joined, &mut by_task, work.as_ref()).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                jobs = tasks.len(),
                "jobs still running at shutdown were dropped; their leases expire and \
                 another runner starts them again"
            );
            tasks.abort_all();
        }
        tracing::info!(owner, "job runner stopped");
    }

    /// A job task ended: a panic fails its job (it would otherwise be claimed again and
    /// again as its lease expired).
    async fn reap(
        &self,
        joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
        by_task: &mut HashMap<tokio::task::Id, Arc<RunningJob>>,
        work: &dyn JobWork,
    ) {
        let (id, panic) = match joined {
            Ok((id, ())) => (id, None),
            Err(error) => (error.id(), error.try_into_panic().ok()),
        };
        let Some(running) = by_task.remove(&id) else {
            return;
        };
        if let Some(payload) = panic {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            tracing::error!(
                job_id = %running.job.id,
                asset_id = %running.job.asset_id,
                %message,
                "job panicked"
            );
            let reason = format!("the job stopped unexpectedly (panic: {message})");
            work.fail(&running.job, &running.owner, reason).await;
        }
    }

    /// One job, from claim to end: runs the work, heartbeats beside it, and counts how
    /// it ended.
    async fn execute(self, store: Store, work: Arc<dyn JobWork>, running: Arc<RunningJob>) {
        let job = &running.job;
        let started = Instant::now();
        // Decrements the gauge and leaves the registry even if the run panics.
        let _registered = Registered {
            jobs: self.clone(),
            job_id: job.id.clone(),
        };
        metrics::gauge!(JOBS_RUNNING).increment(1.0);
        tracing::info!(
            job_id = %job.id,
            kind = %job.kind,
            asset_id = %job.asset_id,
            attempt = job.attempts,
            "job started"
        );
        let lease = self.0.config.lease();
        let heartbeat = PROGRESS_INTERVAL.min(lease / 3);
        let mut progress_tick = every(PROGRESS_INTERVAL);
        let mut lease_tick = every(heartbeat);
        let mut renewed = Instant::now();
        let run = work.run(&running);
        tokio::pin!(run);
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = progress_tick.tick() => {
                    if let Some((stage, progress)) = running.take_progress() {
                        work.write_progress(job, &stage, progress).await;
                    }
                }
                _ = lease_tick.tick() => {
                    self.heartbeat(&store, &running, lease, &mut renewed).await;
                }
            }
        };
        let kind = job.kind.as_str();
        let counter = match outcome {
            JobOutcome::Done => Some(JOBS_COMPLETED),
            JobOutcome::Failed => Some(JOBS_FAILED),
            JobOutcome::RetryLater => Some(JOB_RETRIES),
            JobOutcome::Cancelled => Some(JOBS_CANCELLED),
            JobOutcome::Released | JobOutcome::Lost => None,
        };
        if let Some(counter) = counter {
            metrics::counter!(counter, "kind" => kind).increment(1);
        }
        metrics::histogram!(JOB_DURATION, "kind" => kind, "outcome" => outcome.as_str())
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            job_id = %job.id,
            kind,
            asset_id = %job.asset_id,
            outcome = outcome.as_str(),
            seconds = started.elapsed().as_secs_f64(),
            "job ended"
        );
    }

    /// Checks the lease (lost? cancelled meanwhile?) and renews it every third of its
    /// length. A store that does not answer changes nothing: the run goes on, and its
    /// end is fenced by the lease anyway.
    async fn heartbeat(
        &self,
        store: &Store,
        running: &RunningJob,
        lease: Duration,
        renewed: &mut Instant,
    ) {
        let job = &running.job;
        match store.check_lease(&job.id, &running.owner).await {
            Ok(Lease::Lost) => {
                if running.stopped().is_none() {
                    tracing::warn!(job_id = %job.id, "job lease lost: another runner has it");
                }
                running.stop(Stop::LeaseLost);
                return;
            }
            Ok(Lease::Held { cancelling: true }) => running.stop(Stop::Cancelled),
            Ok(Lease::Held { cancelling: false }) => {}
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "could not check the job's lease");
                return;
            }
        }
        if renewed.elapsed() < lease / 3 {
            return;
        }
        let until = OffsetDateTime::now_utc() + lease;
        match store.renew_lease(&job.id, &running.owner, until).await {
            Ok(true) => *renewed = Instant::now(),
            Ok(false) => running.stop(Stop::LeaseLost),
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "could not renew the job's lease")
            }
        }
    }
}

/// An interval whose first tick is one period from now (tokio's fires at once).
fn every(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// A job in this process's registry and running gauge, until dropped.
struct Registered {
    jobs: Jobs,
    job_id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.jobs.0.running).remove(&self.job_id);
        metrics::gauge!(JOBS_RUNNING).decrement(1.0);
    }
}
