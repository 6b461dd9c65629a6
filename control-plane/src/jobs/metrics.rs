//! The job runner's metrics: their names, and their help texts for whatever recorder the
//! binary installed.

pub(super) const JOBS_RUNNING: &str = "floodlight_control_jobs_running";
pub(super) const JOBS_QUEUED: &str = "floodlight_control_jobs_queued";
pub(super) const JOBS_COMPLETED: &str = "floodlight_control_jobs_completed_total";
pub(super) const JOBS_FAILED: &str = "floodlight_control_jobs_failed_total";
pub(super) const JOBS_CANCELLED: &str = "floodlight_control_jobs_cancelled_total";
pub(super) const JOB_RETRIES: &str = "floodlight_control_job_retries_total";
pub(super) const JOB_DURATION: &str = "floodlight_control_job_duration_seconds";

/// Registers the help texts.
pub(crate) fn describe_metrics() {
    metrics::describe_gauge!(JOBS_RUNNING, "Jobs this process is running now");
    metrics::describe_gauge!(
        JOBS_QUEUED,
        "Jobs waiting in the queue (due, or backing off after a retryable failure), all processes"
    );
    metrics::describe_counter!(JOBS_COMPLETED, "Jobs that finished their work, by kind");
    metrics::describe_counter!(
        JOBS_FAILED,
        "Jobs that failed for good (the asset says why), by kind"
    );
    metrics::describe_counter!(
        JOBS_CANCELLED,
        "Jobs stopped by a cancel or delete, by kind"
    );
    metrics::describe_counter!(
        JOB_RETRIES,
        "Retryable failures (the object store did not answer), each followed by a wait, by kind"
    );
    metrics::describe_histogram!(
        JOB_DURATION,
        metrics::Unit::Seconds,
        "How long one run of a job took, by kind and outcome"
    );
}
