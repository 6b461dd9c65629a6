//! The archive writer: archives every complete segment and every new init version off the
//! live path. [`ArchiveWriter::try_archive`] never waits: it takes a permit of a bounded
//! queue or drops the job, counts it, and remembers the missing MSNs so the event's status
//! can say `archive: degraded` with the range. A background task writes each rendition's
//! objects in order (renditions side by side, up to `max_concurrent_puts`), retrying each
//! put with exponential backoff, and keeps the rendition's index (see `crate::index`).
//!
//! Writes are idempotent, so a retry, a restart or a second origin replica archiving the
//! same event never corrupts what is stored: segments and init versions are created once
//! (`PutMode::Create`; "already exists" is success, because the packager cuts and numbers
//! deterministically, every replica holds the same bytes for an MSN), and index objects
//! are merged with what is stored before they are replaced (conditional on the stored
//! version where the store supports it). See `docs/archive.md`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use floodlight_media::push::RenditionDescriptor;
use floodlight_media::sync::lock;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::config_error::{ConfigError, invalid};
use crate::index::{IndexError, SegmentRecord};
use crate::layout::{EventId, RenditionKey};
use crate::metrics as m;

mod lane;

/// `[archive.writer]` in floodlight.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterConfig {
    /// Segments accepted and not yet written, at most; past it `try_archive` drops. The
    /// bound on what a crash loses, and on memory: 256 segments of a 6 Mbit/s rung are
    /// about 400 MB. At 5 renditions of 2 s segments it rides out ~100 s of outage.
    pub queue_segments: usize,
    /// Object store requests in flight at once, across renditions (each rendition's own
    /// writes stay in order).
    pub max_concurrent_puts: usize,
    /// Attempts per object before the writer gives up on it (a segment becomes a gap).
    pub max_attempts: u32,
    /// The first retry waits about this long, doubling per attempt up to
    /// `max_backoff_ms`; each wait is jittered (50-100%) so replicas and renditions that
    /// failed together do not retry in step.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Dropped and failed segments are logged at most once per this many seconds, with
    /// the count since the last line.
    pub log_interval_secs: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_segments: DEFAULT_QUEUE_SEGMENTS,
            max_concurrent_puts: 8,
            max_attempts: 6,
            initial_backoff_ms: 200,
            max_backoff_ms: 5_000,
            log_interval_secs: 30,
        }
    }
}

/// The default queue capacity, in segments.
pub const DEFAULT_QUEUE_SEGMENTS: usize = 256;

/// Init versions waiting at most. They do not count against `queue_segments`: there is one
/// per publisher session, and without it every segment of the session is unplayable.
const MAX_QUEUED_INITS: usize = 256;

/// Missing ranges a rendition's status lists; older ones are only counted.
const MAX_MISSING_RANGES: usize = 64;

/// Dropped runs waiting to be indexed as gaps per rendition; past it the last run grows
/// over the MSNs between (a real record later beats a gap, so over-covering is harmless).
const MAX_PENDING_GAP_RUNS: usize = 1024;

impl WriterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_segments == 0 {
            return invalid("writer.queue_segments", "must be at least 1");
        }
        if self.max_concurrent_puts == 0 {
            return invalid("writer.max_concurrent_puts", "must be at least 1");
        }
        if self.max_attempts == 0 {
            return invalid("writer.max_attempts", "must be at least 1");
        }
        if self.initial_backoff_ms == 0 {
            return invalid("writer.initial_backoff_ms", "must be at least 1");
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return invalid(
                "writer.max_backoff_ms",
                format!(
                    "must be at least initial_backoff_ms ({})",
                    self.initial_backoff_ms
                ),
            );
        }
        if self.log_interval_secs == 0 {
            return invalid("writer.log_interval_secs", "must be at least 1");
        }
        Ok(())
    }

    /// The wait before attempt `failures + 1`: exponential, capped, jittered.
    fn backoff(&self, failures: u32) -> Duration {
        let doubling = 1u64 << failures.saturating_sub(1).min(20);
        let ms = self
            .initial_backoff_ms
            .saturating_mul(doubling)
            .min(self.max_backoff_ms);
        Duration::from_millis(rand::random_range(ms / 2..=ms))
    }
}

/// A new init segment version of a rendition is ready.
#[derive(Debug, Clone)]
pub struct InitVersion {
    pub rendition: RenditionKey,
    pub version: u32,
    pub bytes: Bytes,
}

/// A segment is complete: its parts concatenated, and its index record (`bytes` and
/// `gap` are filled in from the segment).
#[derive(Debug, Clone)]
pub struct Segment {
    pub rendition: RenditionKey,
    pub record: SegmentRecord,
    pub bytes: Bytes,
}

/// A rendition's descriptor (codecs, resolution, access, DVR window) as pushed: what a
/// playlist of the archive says of the rendition. Replaced when it changes.
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub rendition: RenditionKey,
    pub descriptor: RenditionDescriptor,
}

#[derive(Debug, Clone)]
pub enum ArchiveJob {
    Descriptor(Descriptor),
    Init(InitVersion),
    Segment(Segment),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriterError {
    #[error("{rendition}: archive queue full, MSN {msn} dropped")]
    QueueFull { rendition: String, msn: u64 },
    #[error("{rendition}: archive init queue full, init version {version} dropped")]
    InitQueueFull { rendition: String, version: u32 },
    #[error("{rendition}: archive init queue full, rendition descriptor dropped")]
    DescriptorQueueFull { rendition: String },
    #[error("{rendition}: {source}")]
    InvalidRecord {
        rendition: String,
        source: IndexError,
    },
    #[error("the archive writer has stopped")]
    Stopped,
}

/// Why MSNs of a rendition are not in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingReason {
    /// The queue was full: the store was too slow or down for longer than it holds.
    QueueFull,
    /// Every attempt to store the segment failed.
    StoreFailed,
}

/// A run of consecutive MSNs missing from the archive (indexed as gaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MissingRange {
    pub first_msn: u64,
    pub last_msn: u64,
    pub reason: MissingReason,
}

/// What the archive holds of one rendition: what a status page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenditionArchiveStatus {
    pub rendition: String,
    /// The highest MSN whose segment is stored.
    pub last_archived_msn: Option<u64>,
    /// Segments accepted and not yet written: the lag behind the live edge, in segments.
    pub queued_segments: u64,
    /// From the last archived segment's completion to its being stored.
    pub last_lag_ms: Option<u64>,
    /// Missing runs, oldest first (the latest 64).
    pub missing: Vec<MissingRange>,
    /// Missing segments in runs older than those listed.
    pub earlier_missing_segments: u64,
    /// Init versions that could not be stored (segments using them do not play).
    pub failed_init_versions: Vec<u32>,
    /// The last index write failed; it is retried, and the index catches up when it
    /// succeeds (the writer keeps the records).
    pub index_behind: bool,
}

impl RenditionArchiveStatus {
    pub fn degraded(&self) -> bool {
        !self.missing.is_empty()
            || self.earlier_missing_segments > 0
            || !self.failed_init_versions.is_empty()
            || self.index_behind
    }
}

/// The archive's state for one event: `archive: ok`, or `archive: degraded` with what is
/// missing (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventArchiveStatus {
    pub degraded: bool,
    pub renditions: Vec<RenditionArchiveStatus>,
}

impl fmt::Display for EventArchiveStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.degraded {
            return f.write_str("archive: ok");
        }
        f.write_str("archive: degraded")?;
        let mut separator = " (";
        for r in self.renditions.iter().filter(|r| r.degraded()) {
            write!(f, "{separator}{}:", r.rendition)?;
            for range in &r.missing {
                write!(f, " MSN {}-{} missing", range.first_msn, range.last_msn)?;
            }
            if r.earlier_missing_segments > 0 {
                write!(
                    f,
                    " {} earlier segments missing",
                    r.earlier_missing_segments
                )?;
            }
            for version in &r.failed_init_versions {
                write!(f, " init {version} missing")?;
            }
            if r.index_behind {
                f.write_str(" index behind")?;
            }
            separator = "; ";
        }
        f.write_str(")")
    }
}

/// A run of dropped segments the background task has not indexed yet.
#[derive(Debug, Clone, Copy)]
struct GapRun {
    /// The first dropped record, as a gap.
    first: SegmentRecord,
    last_msn: u64,
    /// Where the last dropped segment ended (PDT + duration).
    end_ms: i64,
    /// One of the dropped segments followed a discontinuity.
    discontinuity: bool,
}

impl GapRun {
    /// One gap record per MSN, the run's time spread evenly over them (as the origin
    /// spreads EXT-X-GAP segments), so a time lookup still lands in the right place.
    fn records(&self) -> Vec<SegmentRecord> {
        let count = self.last_msn - self.first.msn + 1;
        let span_ms = (self.end_ms - self.first.program_date_time_ms).max(1) as u64;
        let ticks = (span_ms * 90).div_ceil(count).max(1);
        (0..count)
            .map(|i| SegmentRecord {
                msn: self.first.msn + i,
                duration_90k: ticks,
                program_date_time_ms: self.first.program_date_time_ms
                    + (span_ms * i / count) as i64,
                discontinuity: i == 0 && self.discontinuity,
                ..self.first
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct RenditionState {
    last_archived_msn: Option<u64>,
    queued: u64,
    last_lag: Option<Duration>,
    missing: VecDeque<MissingRange>,
    earlier_missing: u64,
    failed_inits: Vec<u32>,
    index_behind: bool,
    pending_gaps: Vec<GapRun>,
}

impl RenditionState {
    fn note_missing(&mut self, msn: u64, reason: MissingReason) {
        if let Some(last) = self.missing.back_mut()
            && last.reason == reason
            && last.last_msn + 1 == msn
        {
            last.last_msn = msn;
            return;
        }
        self.missing.push_back(MissingRange {
            first_msn: msn,
            last_msn: msn,
            reason,
        });
        if self.missing.len() > MAX_MISSING_RANGES
            && let Some(old) = self.missing.pop_front()
        {
            self.earlier_missing += old.last_msn - old.first_msn + 1;
        }
    }

    fn note_dropped(&mut self, record: SegmentRecord) {
        self.note_missing(record.msn, MissingReason::QueueFull);
        let end_ms = record.end_ms();
        let full = self.pending_gaps.len() >= MAX_PENDING_GAP_RUNS;
        if let Some(run) = self.pending_gaps.last_mut()
            && (run.last_msn + 1 == record.msn || full)
            && run.last_msn < record.msn
        {
            run.last_msn = record.msn;
            run.end_ms = end_ms;
            run.discontinuity |= record.discontinuity;
            return;
        }
        self.pending_gaps.push(GapRun {
            first: record.into_gap(),
            last_msn: record.msn,
            end_ms,
            discontinuity: record.discontinuity,
        });
    }

    /// Gap records of the runs that end before `msn` (all runs with `None`).
    fn take_gaps(&mut self, before: Option<u64>) -> Vec<SegmentRecord> {
        let (ready, later): (Vec<GapRun>, Vec<GapRun>) = self
            .pending_gaps
            .drain(..)
            .partition(|run| before.is_none_or(|msn| run.last_msn < msn));
        self.pending_gaps = later;
        ready.iter().flat_map(GapRun::records).collect()
    }

    fn status(&self, rendition: &RenditionKey) -> RenditionArchiveStatus {
        RenditionArchiveStatus {
            rendition: rendition.rendition.to_string(),
            last_archived_msn: self.last_archived_msn,
            queued_segments: self.queued,
            last_lag_ms: self.last_lag.map(|d| d.as_millis() as u64),
            missing: self.missing.iter().copied().collect(),
            earlier_missing_segments: self.earlier_missing,
            failed_init_versions: self.failed_inits.clone(),
            index_behind: self.index_behind,
        }
    }
}

/// Counts events that are logged at most once per interval (mediamtx's errordumper).
#[derive(Debug, Default)]
struct RollUp {
    since_log: u64,
    last_log: Option<Instant>,
}

impl RollUp {
    /// Counts one; returns the count to log when a line is due.
    fn note(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        self.since_log += 1;
        self.due(now, interval)
    }

    fn due(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        let due = self.since_log > 0 && self.last_log.is_none_or(|t| now - t >= interval);
        due.then(|| {
            self.last_log = Some(now);
            std::mem::take(&mut self.since_log)
        })
    }
}

#[derive(Debug, Default)]
struct SharedState {
    renditions: HashMap<RenditionKey, RenditionState>,
    dropped: RollUp,
    failed: RollUp,
}

/// What the handle and the background task share.
struct Shared {
    config: WriterConfig,
    state: Mutex<SharedState>,
    segment_permits: Arc<Semaphore>,
    init_permits: Arc<Semaphore>,
}

impl Shared {
    fn rendition<R>(&self, key: &RenditionKey, f: impl FnOnce(&mut RenditionState) -> R) -> R {
        let mut state = lock(&self.state);
        f(state.renditions.entry(key.clone()).or_default())
    }

    fn log_interval(&self) -> Duration {
        Duration::from_secs(self.config.log_interval_secs)
    }

    fn update_queue_gauge(&self) {
        let queued = self.config.queue_segments - self.segment_permits.available_permits();
        metrics::gauge!(m::QUEUE_SEGMENTS).set(queued as f64);
    }
}

enum Command {
    Work(RenditionKey, Work),
    Flush(oneshot::Sender<()>),
    Forget(EventId),
}

/// One unit of a rendition's work, done in order by its lane.
enum Work {
    Descriptor {
        bytes: Bytes,
        _permit: OwnedSemaphorePermit,
    },
    Init {
        version: u32,
        bytes: Bytes,
        _permit: OwnedSemaphorePermit,
    },
    Segment {
        record: SegmentRecord,
        bytes: Bytes,
        enqueued_at: Instant,
        _permit: OwnedSemaphorePermit,
    },
    /// Index dropped runs and retry index writes that failed.
    Settle,
}

/// The handle: cheap to clone, shared by every stream of a service. Dropping the last
/// clone lets the background task finish what is queued and stop.
#[derive(Clone)]
pub struct ArchiveWriter {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl ArchiveWriter {
    /// Starts the background task on the current tokio runtime.
    pub fn spawn(
        store: Arc<dyn ObjectStore>,
        config: WriterConfig,
    ) -> Result<ArchiveWriter, ConfigError> {
        config.validate()?;
        m::describe();
        let shared = Arc::new(Shared {
            segment_permits: Arc::new(Semaphore::new(config.queue_segments)),
            init_permits: Arc::new(Semaphore::new(MAX_QUEUED_INITS)),
            config,
            state: Mutex::default(),
        });
        // Unbounded, yet bounded by the permits every job holds: the channel is only the
        // hand-over to the task, which moves jobs to their rendition's lane at once.
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(lane::run(store, shared.clone(), receiver));
        Ok(ArchiveWriter { shared, commands })
    }

    /// Queues a job without waiting: the live path calls this. A full queue drops the
    /// segment (counted, logged once per interval, indexed as a gap, and listed in the
    /// rendition's status); nothing here blocks or awaits.
    pub fn try_archive(&self, job: ArchiveJob) -> Result<(), WriterError> {
        match job {
            ArchiveJob::Descriptor(descriptor) => self.try_archive_descriptor(descriptor),
            ArchiveJob::Init(init) => self.try_archive_init(init),
            ArchiveJob::Segment(segment) => self.try_archive_segment(segment),
        }
    }

    /// Descriptors share the init versions' allowance: one per rendition per publisher
    /// session, tiny, and without one the archive cannot be listed in a master playlist.
    fn try_archive_descriptor(&self, descriptor: Descriptor) -> Result<(), WriterError> {
        let Ok(permit) = self.shared.init_permits.clone().try_acquire_owned() else {
            tracing::warn!(rendition = %descriptor.rendition,
                "archive: init queue full, rendition descriptor dropped");
            return Err(WriterError::DescriptorQueueFull {
                rendition: descriptor.rendition.to_string(),
            });
        };
        let bytes = Bytes::from(
            serde_json::to_vec(&descriptor.descriptor).expect("a descriptor serializes"),
        );
        let work = Work::Descriptor {
            bytes,
            _permit: permit,
        };
        self.commands
            .send(Command::Work(descriptor.rendition, work))
            .map_err(|_| WriterError::Stopped)
    }

    fn try_archive_init(&self, init: InitVersion) -> Result<(), WriterError> {
        let Ok(permit) = self.shared.init_permits.clone().try_acquire_owned() else {
            tracing::warn!(rendition = %init.rendition, version = init.version,
                "archive: init queue full, init version dropped");
            self.shared
                .rendition(&init.rendition, |s| s.failed_inits.push(init.version));
            return Err(WriterError::InitQueueFull {
                rendition: init.rendition.to_string(),
                version: init.version,
            });
        };
        let work = Work::Init {
            version: init.version,
            bytes: init.bytes,
            _permit: permit,
        };
        self.commands
            .send(Command::Work(init.rendition, work))
            .map_err(|_| WriterError::Stopped)
    }

    fn try_archive_segment(&self, segment: Segment) -> Result<(), WriterError> {
        let Segment {
            rendition,
            mut record,
            bytes,
        } = segment;
        record.bytes = bytes.len() as u64;
        record.gap = false;
        record
            .validate()
            .map_err(|source| WriterError::InvalidRecord {
                rendition: rendition.to_string(),
                source,
            })?;
        let Ok(permit) = self.shared.segment_permits.clone().try_acquire_owned() else {
            self.note_dropped(&rendition, record);
            return Err(WriterError::QueueFull {
                rendition: rendition.to_string(),
                msn: record.msn,
            });
        };
        self.shared.rendition(&rendition, |s| s.queued += 1);
        self.shared.update_queue_gauge();
        let work = Work::Segment {
            record,
            bytes,
            enqueued_at: Instant::now(),
            _permit: permit,
        };
        if self
            .commands
            .send(Command::Work(rendition.clone(), work))
            .is_err()
        {
            self.shared.rendition(&rendition, |s| s.queued -= 1);
            self.note_dropped(&rendition, record);
            return Err(WriterError::Stopped);
        }
        Ok(())
    }

    fn note_dropped(&self, rendition: &RenditionKey, record: SegmentRecord) {
        metrics::counter!(m::SEGMENTS_DROPPED).increment(1);
        let interval = self.shared.log_interval();
        let due = {
            let mut state = lock(&self.shared.state);
            state
                .renditions
                .entry(rendition.clone())
                .or_default()
                .note_dropped(record);
            state.dropped.note(Instant::now(), interval)
        };
        if let Some(count) = due {
            tracing::warn!(%rendition, msn = record.msn, dropped = count,
                queue_segments = self.shared.config.queue_segments,
                "archive: queue full (store slow or down), segments dropped since the last report; they are indexed as gaps");
        }
    }

    /// Waits until everything queued before this call has been attempted (stored, or
    /// given up after its retries), dropped runs included. For shutdown and tests.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Segments accepted and not yet written, across all renditions.
    pub fn queued_segments(&self) -> usize {
        self.shared.config.queue_segments - self.shared.segment_permits.available_permits()
    }

    /// The archive status of every rendition of `event_id` seen since it was last
    /// forgotten, by rendition name.
    pub fn event_status(&self, event_id: &EventId) -> EventArchiveStatus {
        let state = lock(&self.shared.state);
        let mut renditions: Vec<RenditionArchiveStatus> = state
            .renditions
            .iter()
            .filter(|(key, _)| key.event_id == *event_id)
            .map(|(key, s)| s.status(key))
            .collect();
        renditions.sort_by(|a, b| a.rendition.cmp(&b.rendition));
        EventArchiveStatus {
            degraded: renditions.iter().any(RenditionArchiveStatus::degraded),
            renditions,
        }
    }

    /// Drops what the writer remembers of an event (status, idle lanes) once nothing of
    /// it is queued: for a stream that left the origin. Nothing stored changes.
    pub fn forget_event(&self, event_id: &EventId) {
        lock(&self.shared.state)
            .renditions
            .retain(|key, s| key.event_id != *event_id || s.queued > 0);
        let _ = self.commands.send(Command::Forget(event_id.clone()));
    }
}

#[cfg(test)]
mod tests;
