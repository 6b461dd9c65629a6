//! Jobs: long work kept in the SQL store and run off the live path (ARCHITECTURE.md,
//! "State and where it lives"; STYLE.md, "New ground"). Today they build and delete VOD
//! assets.
//!
//! - [`AssetBuilder`] (`builder.rs`): what the jobs need from the archive, implemented
//!   by the binary; with the types that cross it and the [`CancelToken`].
//! - `store.rs`: the `jobs` table, a queue several processes share: atomic claims, leases
//!   renewed while a job runs, every end fenced by the lease.
//! - `runner.rs`: the tokio task that claims and runs them with bounded concurrency;
//!   what a job does is the asset domain's (`JobWork`).
//! - `config.rs`: `[control.jobs]`.
//!
//! It depends on no other domain; `assets` uses it.

mod builder;
mod config;
mod metrics;
mod runner;
mod store;

pub use builder::{
    ArchivedRange, AssetBuilder, AssetSpec, BoxFuture, BuildError, BuiltAsset, BuiltRendition,
    CancelToken, Precision, ProgressSink,
};
pub use config::JobsConfig;
pub(crate) use metrics::describe_metrics;
pub(crate) use runner::{JobOutcome, JobWork, Jobs, RunningJob, Stop};
pub(crate) use store::{
    Job, JobEnd, JobKind, Lease, cancel_build, enqueue, enqueue_cleanup, finish_job, release_job,
    retry_job_later,
};
