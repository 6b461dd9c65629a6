//! The `jobs` table: a durable queue that several control-plane processes on one
//! PostgreSQL database share safely.
//!
//! A job is claimed with a compare-and-set on its row (state and attempt count as read),
//! so exactly one process wins it, and held through a lease (`lease_owner`,
//! `lease_until`) that its runner renews while it runs. Every write that ends a run is
//! fenced by the lease: a process that lost its job (its lease expired and another took
//! over) can no longer change it. A job whose lease expired is claimed again and run from
//! the start (`attempts` counts the runs).
//!
//! ```text
//! queued ──claim──▶ running ──▶ done | failed | cancelled
//!   ▲                 │  │
//!   └─retry later─────┘  └─cancel──▶ cancelling ──(the runner stops it)──▶ cancelled
//! ```
//!
//! One job per asset runs at a time: a job waits while another job of its asset is
//! running (an asset's delete waits for its cancelled build to stop writing).

use std::fmt;

use time::OffsetDateTime;

use crate::db::{Store, StoreError, query_failed, random_id, unix_micros};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// Builds an asset's manifest from the archive ([`super::AssetBuilder::build`]).
    AssetBuild,
    /// Removes what only an asset uses from the object store
    /// ([`super::AssetBuilder::delete`]): after a delete, or the leftovers of a cancelled
    /// build.
    AssetDelete,
}

impl JobKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobKind::AssetBuild => "asset_build",
            JobKind::AssetDelete => "asset_delete",
        }
    }

    fn from_column(text: &str) -> Result<JobKind, StoreError> {
        match text {
            "asset_build" => Ok(JobKind::AssetBuild),
            "asset_delete" => Ok(JobKind::AssetDelete),
            other => Err(StoreError::CorruptRow {
                what: "job kind",
                value: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job this process claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) kind: JobKind,
    pub(crate) asset_id: String,
    /// Runs so far, this one included.
    pub(crate) attempts: u32,
    /// It was cancelled while another process ran it, and that process died: all that is
    /// left is to record it cancelled.
    pub(crate) cancelling: bool,
}

/// How a run ended, for [`finish_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobEnd {
    Done,
    Failed(String),
    Cancelled,
}

/// What a heartbeat finds of the lease on a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    /// Still this process's; `cancelling` when the job was cancelled meanwhile.
    Held { cancelling: bool },
    /// Another process took the job over, or it ended: stop without writing.
    Lost,
}

/// Queues a job to run as soon as a runner is free, on `conn` (the transaction that
/// makes the change needing it). Returns the job's id.
pub(crate) async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    kind: JobKind,
    asset_id: &str,
    now: OffsetDateTime,
) -> Result<String, StoreError> {
    let id = random_id();
    let at = unix_micros(now);
    sqlx::query(
        "INSERT INTO jobs (id, kind, asset_id, state, attempts, not_before, created_at, \
         updated_at) VALUES ($1, $2, $3, 'queued', 0, $4, $4, $4)",
    )
    .bind(id.as_str())
    .bind(kind.as_str())
    .bind(asset_id)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("insert job"))?;
    Ok(id)
}

/// Queues the removal of an asset's objects unless one is already queued or running.
pub(crate) async fn enqueue_cleanup(
    conn: &mut sqlx::AnyConnection,
    asset_id: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let at = unix_micros(now);
    sqlx::query(
        "INSERT INTO jobs (id, kind, asset_id, state, attempts, not_before, created_at, \
         updated_at) SELECT $1, 'asset_delete', $2, 'queued', 0, $3, $3, $3 \
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE asset_id = $2 AND kind = 'asset_delete' \
         AND state IN ('queued', 'running'))",
    )
    .bind(random_id())
    .bind(asset_id)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("insert cleanup job"))?;
    Ok(())
}

/// What cancelling an asset's build did to its jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CancelledBuild {
    /// A build was running: it was asked to stop (`cancelling`), and its runner queues
    /// the cleanup once it has.
    pub(crate) running: bool,
    /// A queued build had run before (it was waiting to retry), so it may have left
    /// objects behind.
    pub(crate) ran_before: bool,
}

/// Cancels the asset's build, on `conn`: a queued build is cancelled at once, a running
/// one is marked `cancelling` for its runner to stop.
pub(crate) async fn cancel_build(
    conn: &mut sqlx::AnyConnection,
    asset_id: &str,
    now: OffsetDateTime,
) -> Result<CancelledBuild, StoreError> {
    let at = unix_micros(now);
    let jobs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, attempts FROM jobs WHERE asset_id = $1 AND kind = 'asset_build' \
         AND state IN ('queued', 'running')",
    )
    .bind(asset_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(query_failed("select build jobs"))?;
    let mut cancelled = CancelledBuild::default();
    for (state, attempts) in &jobs {
        match state.as_str() {
            "running" => cancelled.running = true,
            _ => cancelled.ran_before |= *attempts > 0,
        }
    }
    sqlx::query(
        "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_until = NULL, \
         updated_at = $1, finished_at = $1 \
         WHERE asset_id = $2 AND kind = 'asset_build' AND state = 'queued'",
    )
    .bind(at)
    .bind(asset_id)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("cancel queued build"))?;
    sqlx::query(
        "UPDATE jobs SET state = 'cancelling', updated_at = $1 \
         WHERE asset_id = $2 AND kind = 'asset_build' AND state = 'running'",
    )
    .bind(at)
    .bind(asset_id)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("cancel running build"))?;
    Ok(cancelled)
}

/// Ends a run, fenced by the lease: `false` (nothing written) when `owner` no longer
/// holds the job, or when it is `cancelling` and the end is not [`JobEnd::Cancelled`].
pub(crate) async fn finish_job(
    conn: &mut sqlx::AnyConnection,
    job: &Job,
    owner: &str,
    end: &JobEnd,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let at = unix_micros(now);
    let (state, error, from): (&str, Option<&str>, &str) = match end {
        JobEnd::Done => ("done", None, "('running')"),
        JobEnd::Failed(reason) => ("failed", Some(reason.as_str()), "('running')"),
        JobEnd::Cancelled => ("cancelled", None, "('running', 'cancelling')"),
    };
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET state = $1, last_error = COALESCE($2, last_error), \
         lease_owner = NULL, lease_until = NULL, updated_at = $3, finished_at = $3 \
         WHERE id = $4 AND lease_owner = $5 AND state IN {from}"
    )))
    .bind(state)
    .bind(error)
    .bind(at)
    .bind(job.id.as_str())
    .bind(owner)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("finish job"))?;
    Ok(done.rows_affected() == 1)
}

/// Puts a running job back in the queue until `not_before` (a retryable failure), fenced
/// by the lease.
pub(crate) async fn retry_job_later(
    conn: &mut sqlx::AnyConnection,
    job: &Job,
    owner: &str,
    not_before: OffsetDateTime,
    reason: &str,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'queued', not_before = $1, last_error = $2, \
         lease_owner = NULL, lease_until = NULL, updated_at = $3 \
         WHERE id = $4 AND lease_owner = $5 AND state = 'running'",
    )
    .bind(unix_micros(not_before))
    .bind(reason)
    .bind(unix_micros(now))
    .bind(job.id.as_str())
    .bind(owner)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("retry job later"))?;
    Ok(done.rows_affected() == 1)
}

/// Gives a job back at shutdown so that the next runner (any process) starts it at once:
/// a running one is queued again, a cancelling one is left for another runner to record.
pub(crate) async fn release_job(
    conn: &mut sqlx::AnyConnection,
    job: &Job,
    owner: &str,
    now: OffsetDateTime,
) -> Result<bool, StoreError> {
    let at = unix_micros(now);
    let done = sqlx::query(
        "UPDATE jobs SET state = CASE WHEN state = 'running' THEN 'queued' ELSE state END, \
         not_before = $1, lease_owner = NULL, lease_until = NULL, updated_at = $1 \
         WHERE id = $2 AND lease_owner = $3 AND state IN ('running', 'cancelling')",
    )
    .bind(at)
    .bind(job.id.as_str())
    .bind(owner)
    .execute(&mut *conn)
    .await
    .map_err(query_failed("release job"))?;
    Ok(done.rows_affected() == 1)
}

/// Candidates a claim looks at per poll; more than one so that losing a race to another
/// process still leaves something to try.
const CLAIM_CANDIDATES: i64 = 8;

impl Store {
    /// Claims the next due job for `owner` with a lease until `lease_until`: a queued
    /// job whose `not_before` has come, or a running or cancelling one whose lease
    /// expired (its process died). `None` when nothing is due.
    pub(crate) async fn claim_job(
        &self,
        owner: &str,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<Job>, StoreError> {
        let now_us = unix_micros(now);
        let candidates: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT j.id, j.kind, j.asset_id, j.state, j.attempts FROM jobs j \
             WHERE ((j.state = 'queued' AND j.not_before <= $1) \
                 OR (j.state IN ('running', 'cancelling') \
                     AND (j.lease_until IS NULL OR j.lease_until < $1))) \
             AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.asset_id = j.asset_id \
                 AND o.id <> j.id AND o.state IN ('running', 'cancelling')) \
             ORDER BY j.not_before, j.created_at, j.id LIMIT $2",
        )
        .bind(now_us)
        .bind(CLAIM_CANDIDATES)
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("select due jobs"))?;
        for (id, kind, asset_id, state, attempts) in candidates {
            let cancelling = state == "cancelling";
            let claimed_state = if cancelling { "cancelling" } else { "running" };
            // Compare-and-set on what was read: of several processes reading the same
            // row, the first to write wins; the others match nothing and move on.
            let done = sqlx::query(
                "UPDATE jobs SET state = $1, attempts = attempts + 1, lease_owner = $2, \
                 lease_until = $3, updated_at = $4 \
                 WHERE id = $5 AND state = $6 AND attempts = $7",
            )
            .bind(claimed_state)
            .bind(owner)
            .bind(unix_micros(lease_until))
            .bind(now_us)
            .bind(id.as_str())
            .bind(state.as_str())
            .bind(attempts)
            .execute(self.pool())
            .await
            .map_err(query_failed("claim job"))?;
            if done.rows_affected() == 1 {
                return Ok(Some(Job {
                    kind: JobKind::from_column(&kind)?,
                    id,
                    asset_id,
                    attempts: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                    cancelling,
                }));
            }
        }
        Ok(None)
    }

    /// Whether `owner` still holds `job_id`, and whether it was cancelled meanwhile.
    pub(crate) async fn check_lease(&self, job_id: &str, owner: &str) -> Result<Lease, StoreError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, lease_owner FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_failed("check job lease"))?;
        Ok(match row {
            Some((state, Some(holder))) if holder == owner => match state.as_str() {
                "running" => Lease::Held { cancelling: false },
                "cancelling" => Lease::Held { cancelling: true },
                _ => Lease::Lost,
            },
            _ => Lease::Lost,
        })
    }

    /// Extends `owner`'s lease on `job_id` to `until`; `false` when it no longer holds it.
    pub(crate) async fn renew_lease(
        &self,
        job_id: &str,
        owner: &str,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 \
             AND state IN ('running', 'cancelling')",
        )
        .bind(unix_micros(until))
        .bind(job_id)
        .bind(owner)
        .execute(self.pool())
        .await
        .map_err(query_failed("renew job lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Jobs waiting in the queue (due or backing off), for the gauge.
    pub(crate) async fn queued_jobs(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
            .fetch_one(self.pool())
            .await
            .map_err(query_failed("count queued jobs"))
    }
}

impl Store {
    /// [`finish_job`] in a transaction of its own (a job that changes no other row).
    pub(crate) async fn end_job(
        &self,
        job: &Job,
        owner: &str,
        end: &JobEnd,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_failed("acquire"))?;
        finish_job(&mut conn, job, owner, end, now).await
    }

    /// [`retry_job_later`] in a transaction of its own.
    pub(crate) async fn retry_later(
        &self,
        job: &Job,
        owner: &str,
        not_before: OffsetDateTime,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_failed("acquire"))?;
        retry_job_later(&mut conn, job, owner, not_before, reason, now).await
    }
}
