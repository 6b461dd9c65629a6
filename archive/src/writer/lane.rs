//! The writer's background task. Jobs go to their rendition's lane; a lane does its work
//! in order (an init version before the segments that use it, a segment before its index
//! record) while lanes run side by side, at most `max_concurrent_puts` at a time. A lane
//! owns its rendition's open index chunk and head, so index writes need no lock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use floodlight_media::sync::lock;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use super::{Command, MissingReason, Shared, Work};
use crate::index::{IndexChunk, IndexError, IndexHead, Insert, SegmentRecord};
use crate::layout::RenditionKey;
use crate::metrics as m;

/// How often idle lanes retry index writes that failed and index dropped runs.
const SETTLE_INTERVAL: Duration = Duration::from_secs(5);

/// A lane idle this long with nothing unwritten is dropped; a later job starts a new one,
/// which merges with the stored index on its first write.
const LANE_IDLE: Duration = Duration::from_secs(120);

/// Another writer replaced an index object between our read and our write this many times
/// in a row: give up for now (the records stay, and the next write tries again).
const MAX_INDEX_RACES: u32 = 8;

/// The store and what it was found to support.
struct Ctx {
    store: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
    /// `PutMode::Create` answered NotImplemented (an S3 server configured without
    /// conditional puts): objects are overwritten, index objects after a read and merge.
    no_create: AtomicBool,
    /// `PutMode::Update` answered NotImplemented (`LocalFileSystem`): index objects are
    /// overwritten once merged with the stored one, which is safe for one writer per
    /// store, the only way a local directory is used.
    no_update: AtomicBool,
}

struct Slot {
    /// `None` while the lane's work runs in its task.
    lane: Option<Box<Lane>>,
    queue: VecDeque<Work>,
    idle_since: Instant,
}

pub(super) async fn run(
    store: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let ctx = Arc::new(Ctx {
        store,
        shared,
        no_create: AtomicBool::new(false),
        no_update: AtomicBool::new(false),
    });
    let max_running = ctx.shared.config.max_concurrent_puts;
    let mut slots: HashMap<RenditionKey, Slot> = HashMap::new();
    let mut ready: VecDeque<RenditionKey> = VecDeque::new();
    let mut running: JoinSet<(RenditionKey, Box<Lane>)> = JoinSet::new();
    let mut running_keys: HashMap<Id, RenditionKey> = HashMap::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut forgotten: HashSet<crate::layout::EventId> = HashSet::new();
    let mut settle = tokio::time::interval(SETTLE_INTERVAL);
    settle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;

    loop {
        while running.len() < max_running {
            let Some(key) = ready.pop_front() else { break };
            let Some(slot) = slots.get_mut(&key) else {
                continue;
            };
            if slot.lane.is_none() || slot.queue.is_empty() {
                continue;
            }
            let (Some(lane), Some(work)) = (slot.lane.take(), slot.queue.pop_front()) else {
                continue;
            };
            let ctx = ctx.clone();
            let handle = running.spawn(async move {
                let mut lane = lane;
                lane.work(&ctx, work).await;
                (lane.key.clone(), lane)
            });
            running_keys.insert(handle.id(), key);
        }
        if running.is_empty() && ready.is_empty() {
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            if !open {
                return;
            }
        }

        tokio::select! {
            command = commands.recv(), if open => match command {
                Some(Command::Work(key, work)) => {
                    forgotten.remove(&key.event_id);
                    let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
                        lane: Some(Box::new(Lane::new(key.clone()))),
                        queue: VecDeque::new(),
                        idle_since: Instant::now(),
                    });
                    slot.queue.push_back(work);
                    if slot.lane.is_some() && slot.queue.len() == 1 {
                        ready.push_back(key);
                    }
                }
                Some(Command::Flush(done)) => {
                    // Dropped runs of idle lanes are part of what a flush waits for.
                    queue_settles(&ctx, &mut slots, &mut ready, false);
                    flushes.push(done);
                }
                Some(Command::Forget(event_id)) => {
                    forgotten.insert(event_id);
                }
                None => {
                    open = false;
                    queue_settles(&ctx, &mut slots, &mut ready, true);
                }
            },
            Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                let (key, lane) = match joined {
                    Ok((id, (key, lane))) => {
                        running_keys.remove(&id);
                        (key, lane)
                    }
                    Err(error) => {
                        // A panic in a lane loses its in-memory index state only: the
                        // next lane merges with what is stored.
                        let Some(key) = running_keys.remove(&error.id()) else { continue };
                        tracing::error!(rendition = %key, %error, "archive: lane task failed");
                        let lane = Box::new(Lane::new(key.clone()));
                        (key, lane)
                    }
                };
                let Some(slot) = slots.get_mut(&key) else { continue };
                // Runs dropped while this work ran are indexed as soon as the lane is idle.
                if slot.queue.is_empty() && ctx.shared.rendition(&key, |s| !s.pending_gaps.is_empty()) {
                    slot.queue.push_back(Work::Settle);
                }
                slot.lane = Some(lane);
                slot.idle_since = Instant::now();
                if !slot.queue.is_empty() {
                    ready.push_back(key);
                }
            }
            _ = settle.tick() => {
                let now = Instant::now();
                let interval = ctx.shared.log_interval();
                let (dropped, failed) = {
                    let mut state = lock(&ctx.shared.state);
                    (state.dropped.due(now, interval), state.failed.due(now, interval))
                };
                if let Some(count) = dropped {
                    tracing::warn!(segments = count, "archive: queue full (store slow or down), segments dropped since the last report; they are indexed as gaps");
                }
                if let Some(count) = failed {
                    tracing::warn!(segments = count, "archive: segments given up after every retry since the last report; they are indexed as gaps");
                }
                queue_settles(&ctx, &mut slots, &mut ready, true);
                slots.retain(|key, slot| {
                    let clean = slot.lane.as_ref().is_some_and(|lane| !lane.index.unwritten());
                    let idle = clean && slot.queue.is_empty();
                    !(idle && (now - slot.idle_since >= LANE_IDLE || forgotten.contains(&key.event_id)))
                });
                forgotten.retain(|event_id| slots.keys().any(|key| key.event_id == *event_id));
            }
        }
    }
}

/// Gives every idle lane with dropped runs to index (and, with `unwritten`, with index
/// writes that failed) a `Settle`.
fn queue_settles(
    ctx: &Ctx,
    slots: &mut HashMap<RenditionKey, Slot>,
    ready: &mut VecDeque<RenditionKey>,
    unwritten: bool,
) {
    for (key, slot) in slots.iter_mut() {
        let Some(lane) = &slot.lane else { continue };
        if !slot.queue.is_empty() {
            continue;
        }
        let pending = ctx.shared.rendition(key, |s| !s.pending_gaps.is_empty());
        if pending || (unwritten && lane.index.unwritten()) {
            slot.queue.push_back(Work::Settle);
            ready.push_back(key.clone());
        }
    }
}

/// One rendition's writer state.
struct Lane {
    key: RenditionKey,
    index: LaneIndex,
    conflict_logged: bool,
}

impl Lane {
    fn new(key: RenditionKey) -> Lane {
        Lane {
            index: LaneIndex::default(),
            key,
            conflict_logged: false,
        }
    }

    async fn work(&mut self, ctx: &Ctx, work: Work) {
        match work {
            Work::Descriptor { bytes, _permit } => {
                let path = self.key.descriptor();
                if let Err(error) = put(ctx, &path, bytes, "descriptor", Mutability::Replace).await
                {
                    tracing::error!(rendition = %self.key, %error,
                        "archive: rendition descriptor not stored after every retry; the archive's master playlist lacks it");
                }
            }
            Work::Init {
                version,
                bytes,
                _permit,
            } => {
                let path = self.key.init(version);
                if let Err(error) = put(ctx, &path, bytes, "init", Mutability::Immutable).await {
                    tracing::error!(rendition = %self.key, version, %error,
                        "archive: init version not stored after every retry; its segments will not play");
                    ctx.shared
                        .rendition(&self.key, |s| s.failed_inits.push(version));
                }
            }
            Work::Segment {
                record,
                bytes,
                enqueued_at,
                _permit,
            } => {
                let gaps = ctx
                    .shared
                    .rendition(&self.key, |s| s.take_gaps(Some(record.msn)));
                self.insert_all(gaps);
                let path = self.key.segment(record.msn);
                let stored = match put(ctx, &path, bytes, "segment", Mutability::Immutable).await {
                    Ok(()) => true,
                    Err(error) => {
                        metrics::counter!(m::SEGMENTS_FAILED).increment(1);
                        let interval = ctx.shared.log_interval();
                        let due = lock(&ctx.shared.state)
                            .failed
                            .note(Instant::now(), interval);
                        if let Some(count) = due {
                            tracing::warn!(rendition = %self.key, msn = record.msn, %error, segments = count,
                                "archive: segment not stored after every retry; indexed as a gap");
                        }
                        false
                    }
                };
                self.insert_all([if stored { record } else { record.into_gap() }]);
                let index_written = self.index.write(ctx, &self.key).await;
                let lag = enqueued_at.elapsed();
                if stored {
                    metrics::histogram!(m::LAG).record(lag.as_secs_f64());
                }
                ctx.shared.rendition(&self.key, |s| {
                    s.queued = s.queued.saturating_sub(1);
                    s.index_behind = !index_written;
                    if stored {
                        s.last_archived_msn = s.last_archived_msn.max(Some(record.msn));
                        s.last_lag = Some(lag);
                    } else {
                        s.note_missing(record.msn, MissingReason::StoreFailed);
                    }
                });
            }
            Work::Settle => {
                let gaps = ctx.shared.rendition(&self.key, |s| s.take_gaps(None));
                self.insert_all(gaps);
                let index_written = self.index.write(ctx, &self.key).await;
                ctx.shared
                    .rendition(&self.key, |s| s.index_behind = !index_written);
            }
        }
        ctx.shared.update_queue_gauge();
    }

    fn insert_all(&mut self, records: impl IntoIterator<Item = SegmentRecord>) {
        for record in records {
            match self.index.insert(record) {
                Ok(Insert::Conflict { kept }) => {
                    metrics::counter!(m::INDEX_CONFLICTS).increment(1);
                    if !std::mem::replace(&mut self.conflict_logged, true) {
                        tracing::error!(rendition = %self.key, msn = record.msn,
                            kept_pdt_ms = kept.program_date_time_ms, offered_pdt_ms = record.program_date_time_ms,
                            "archive: the index already holds another segment for this MSN (a numbering restart?); the stored one is kept");
                    }
                }
                Ok(_) => {}
                // Records were validated when queued; gap records are built valid.
                Err(error) => {
                    tracing::error!(rendition = %self.key, %error, "archive: record refused")
                }
            }
        }
    }
}

/// Whether a put may replace what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutability {
    /// A segment or an init version: created once, and "already exists" is success, since
    /// every writer holds the same bytes for a key.
    Immutable,
    /// A descriptor: the latest pushed wins.
    Replace,
}

/// Puts an object, retrying with backoff up to `max_attempts`.
async fn put(
    ctx: &Ctx,
    path: &Path,
    bytes: Bytes,
    kind: &'static str,
    mutability: Mutability,
) -> Result<(), object_store::Error> {
    let len = bytes.len() as u64;
    let payload = PutPayload::from(bytes);
    let mut failures = 0;
    loop {
        let mode = if mutability == Mutability::Replace || ctx.no_create.load(Ordering::Relaxed) {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        match ctx
            .store
            .put_opts(path, payload.clone(), mode.clone().into())
            .await
        {
            Ok(_) => {
                metrics::counter!(m::OBJECTS_WRITTEN, "kind" => kind).increment(1);
                metrics::counter!(m::BYTES_WRITTEN, "kind" => kind).increment(len);
                return Ok(());
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A cheap check that the stored object is the same one; sizes differ only
                // after a numbering restart or when replicas disagree.
                if let Ok(meta) = ctx.store.head(path).await
                    && meta.size != len
                {
                    metrics::counter!(m::DIVERGENT_OBJECTS).increment(1);
                    tracing::warn!(object = %path, stored_bytes = meta.size, offered_bytes = len,
                        "archive: object already stored with another size; the stored one is kept");
                }
                return Ok(());
            }
            Err(object_store::Error::NotImplemented { .. }) if mode == PutMode::Create => {
                if !ctx.no_create.swap(true, Ordering::Relaxed) {
                    tracing::info!(store = %ctx.store,
                        "archive: the store has no create-if-absent; identical objects are overwritten instead");
                }
            }
            Err(error) => {
                failures += 1;
                metrics::counter!(m::PUT_FAILURES).increment(1);
                if failures >= ctx.shared.config.max_attempts {
                    return Err(error);
                }
                tokio::time::sleep(ctx.shared.config.backoff(failures)).await;
            }
        }
    }
}

/// A lane's copy of its rendition's index: the head and the chunks not yet written (the
/// latest chunk is kept even when written: it is where the next records go).
#[derive(Default)]
struct LaneIndex {
    head: Synced<IndexHead>,
    chunks: BTreeMap<u64, Synced<IndexChunk>>,
}

impl LaneIndex {
    fn insert(&mut self, record: SegmentRecord) -> Result<Insert, IndexError> {
        let number = record.chunk();
        let chunk = self.chunks.entry(number).or_insert_with(|| Synced {
            doc: IndexChunk::new(number),
            version: Version::Unknown,
            dirty: false,
        });
        let outcome = chunk.doc.insert(record)?;
        if matches!(outcome, Insert::Added | Insert::FilledGap) {
            chunk.dirty = true;
        }
        if self.head.doc.note(&record) {
            self.head.dirty = true;
        }
        Ok(outcome)
    }

    fn unwritten(&self) -> bool {
        self.head.dirty || self.chunks.values().any(|c| c.dirty)
    }

    /// Writes what changed: chunks first, then the head, so a reader never finds a chunk
    /// in the head that is not stored. Returns whether everything is written.
    async fn write(&mut self, ctx: &Ctx, key: &RenditionKey) -> bool {
        let mut all = true;
        for (number, chunk) in self.chunks.iter_mut() {
            all &= sync(ctx, &key.index_chunk(*number), chunk).await;
        }
        if all {
            all = sync(ctx, &key.index_head(), &mut self.head).await;
        }
        let latest = self.chunks.keys().next_back().copied();
        self.chunks
            .retain(|number, chunk| chunk.dirty || Some(*number) == latest);
        all
    }
}

/// What a lane knows of the stored version of one of its index objects.
#[derive(Debug, Clone, Default)]
enum Version {
    /// Never read nor written by this lane: create it, or merge with what is there.
    #[default]
    Unknown,
    /// The version this lane last wrote or read (after merging it).
    Known(UpdateVersion),
}

#[derive(Default)]
struct Synced<T> {
    doc: T,
    version: Version,
    dirty: bool,
}

/// An index object that merges with its stored copy.
trait IndexObject: Clone + PartialEq {
    fn encode(&self) -> Vec<u8>;
    fn decode_stored(&self, object: &str, bytes: &[u8]) -> Result<Self, IndexError>;
    fn merge_stored(&mut self, stored: &Self);
}

impl IndexObject for IndexChunk {
    fn encode(&self) -> Vec<u8> {
        IndexChunk::encode(self)
    }
    fn decode_stored(&self, object: &str, bytes: &[u8]) -> Result<Self, IndexError> {
        IndexChunk::decode(object, self.number(), bytes)
    }
    fn merge_stored(&mut self, stored: &Self) {
        let conflicts = IndexChunk::merge_stored(self, stored);
        metrics::counter!(m::INDEX_CONFLICTS).increment(conflicts as u64);
    }
}

impl IndexObject for IndexHead {
    fn encode(&self) -> Vec<u8> {
        IndexHead::encode(self)
    }
    fn decode_stored(&self, object: &str, bytes: &[u8]) -> Result<Self, IndexError> {
        IndexHead::decode(object, bytes)
    }
    fn merge_stored(&mut self, stored: &Self) {
        IndexHead::merge_stored(self, stored);
    }
}

/// Writes an index object if it changed, merging with the stored copy first whenever
/// another writer (a replica, or this origin before a restart) may have written it: the
/// put is conditional on the version last seen (create-if-absent when none), and on a
/// conflict the stored copy is read, merged in, and the put tried again; if the merge
/// adds nothing to the stored copy, there is nothing to write. Returns whether the
/// object is written.
async fn sync<T: IndexObject>(ctx: &Ctx, path: &Path, synced: &mut Synced<T>) -> bool {
    let mut failures = 0;
    let mut races = 0;
    while synced.dirty {
        let known = match &synced.version {
            Version::Known(version) => Some(version.clone()),
            Version::Unknown => None,
        };
        let mode = match known {
            Some(_) if ctx.no_update.load(Ordering::Relaxed) => PutMode::Overwrite,
            Some(version) => PutMode::Update(version),
            None if !ctx.no_create.load(Ordering::Relaxed) => PutMode::Create,
            // No conditional puts at all: read and merge once, then overwrite.
            None => match merge_stored(ctx, path, synced).await {
                Ok(()) => continue,
                Err(error) => {
                    if !retry(ctx, &mut failures, path, &error).await {
                        return false;
                    }
                    continue;
                }
            },
        };
        let payload = PutPayload::from(synced.doc.encode());
        let len = payload.content_length() as u64;
        match ctx.store.put_opts(path, payload, mode.clone().into()).await {
            Ok(result) => {
                metrics::counter!(m::OBJECTS_WRITTEN, "kind" => "index").increment(1);
                metrics::counter!(m::BYTES_WRITTEN, "kind" => "index").increment(len);
                synced.version = Version::Known(result.into());
                synced.dirty = false;
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                races += 1;
                if races > MAX_INDEX_RACES {
                    tracing::warn!(object = %path, "archive: index object keeps changing under this writer; retrying later");
                    return false;
                }
                if let Err(error) = merge_stored(ctx, path, synced).await
                    && !retry(ctx, &mut failures, path, &error).await
                {
                    return false;
                }
            }
            Err(object_store::Error::NotImplemented { .. }) => {
                let flag = match mode {
                    PutMode::Create => &ctx.no_create,
                    _ => &ctx.no_update,
                };
                if !flag.swap(true, Ordering::Relaxed) {
                    tracing::info!(store = %ctx.store, ?mode,
                        "archive: the store has no conditional put of this kind; index objects are merged then overwritten");
                }
            }
            Err(error) => {
                if !retry(ctx, &mut failures, path, &error).await {
                    return false;
                }
            }
        }
    }
    true
}

/// Counts a failed request and waits before the next attempt; false when the attempts
/// are used up.
async fn retry(ctx: &Ctx, failures: &mut u32, path: &Path, error: &object_store::Error) -> bool {
    *failures += 1;
    metrics::counter!(m::PUT_FAILURES).increment(1);
    if *failures >= ctx.shared.config.max_attempts {
        tracing::debug!(object = %path, %error, "archive: index write failed; kept for the next write");
        return false;
    }
    tokio::time::sleep(ctx.shared.config.backoff(*failures)).await;
    true
}

/// Reads the stored copy and merges it into ours, remembering its version. A stored copy
/// that does not decode is logged and replaced by ours (what it held that we do not is
/// lost either way: nothing can read it). After a merge that adds nothing to the stored
/// copy, nothing is left to write.
async fn merge_stored<T: IndexObject>(
    ctx: &Ctx,
    path: &Path,
    synced: &mut Synced<T>,
) -> Result<(), object_store::Error> {
    let result = match ctx.store.get(path).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => {
            // Gone (or never there): create it, or with no conditional puts, overwrite.
            synced.version = if ctx.no_create.load(Ordering::Relaxed) {
                Version::Known(UpdateVersion {
                    e_tag: None,
                    version: None,
                })
            } else {
                Version::Unknown
            };
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let version = UpdateVersion {
        e_tag: result.meta.e_tag.clone(),
        version: result.meta.version.clone(),
    };
    let bytes = result.bytes().await?;
    synced.version = Version::Known(version);
    match synced.doc.decode_stored(path.as_ref(), &bytes) {
        Ok(stored) => {
            synced.doc.merge_stored(&stored);
            synced.dirty = synced.doc != stored;
        }
        Err(error) => {
            metrics::counter!(m::INDEX_REPAIRED).increment(1);
            tracing::error!(%error, "archive: stored index object is corrupt; replacing it with this writer's copy");
            synced.dirty = true;
        }
    }
    Ok(())
}
