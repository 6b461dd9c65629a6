use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tokio::sync::watch;

use super::*;
use crate::index::IndexChunk;
use crate::layout::RenditionName;
use crate::reader::{read_chunk, read_head, read_range};
use crate::store::{ArchiveConfig, open_store};

const T0: i64 = 1_765_137_600_000;

fn key(event: &str, rendition: &str) -> RenditionKey {
    RenditionKey::new(
        EventId::new(event).unwrap(),
        RenditionName::new(rendition).unwrap(),
    )
}

fn record(msn: u64) -> SegmentRecord {
    SegmentRecord {
        msn,
        duration_90k: 180_000,
        program_date_time_ms: T0 + msn as i64 * 2000,
        bytes: 0,
        iframe_bytes: None,
        init_version: 0,
        discontinuity: false,
        gap: false,
    }
}

fn media(msn: u64) -> Bytes {
    Bytes::from(format!("moof+mdat of segment {msn}").into_bytes())
}

fn segment(key: &RenditionKey, msn: u64) -> ArchiveJob {
    ArchiveJob::Segment(Segment {
        rendition: key.clone(),
        record: record(msn),
        bytes: media(msn),
    })
}

fn init(key: &RenditionKey, version: u32) -> ArchiveJob {
    ArchiveJob::Init(InitVersion {
        rendition: key.clone(),
        version,
        bytes: Bytes::from(format!("ftyp+moov v{version}").into_bytes()),
    })
}

fn config() -> WriterConfig {
    WriterConfig {
        queue_segments: 1000,
        ..WriterConfig::default()
    }
}

async fn object(store: &dyn ObjectStore, path: &Path) -> Option<Bytes> {
    Some(store.get(path).await.ok()?.bytes().await.unwrap())
}

/// An in-memory store that fails the next `fail_puts` puts and holds puts while its gate
/// is closed: a store that is down, or too slow for the live edge.
#[derive(Debug)]
struct TestStore {
    inner: Arc<InMemory>,
    fail_puts: AtomicU32,
    open: watch::Sender<bool>,
}

impl TestStore {
    fn new(inner: Arc<InMemory>) -> Arc<TestStore> {
        Arc::new(TestStore {
            inner,
            fail_puts: AtomicU32::new(0),
            open: watch::Sender::new(true),
        })
    }
}

impl fmt::Display for TestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestStore")
    }
}

#[async_trait]
impl ObjectStore for TestStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let _ = self.open.subscribe().wait_for(|open| *open).await;
        let failing = self
            .fail_puts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(object_store::Error::Generic {
                store: "TestStore",
                source: "503 Slow Down".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn segments_and_init_versions_land_under_their_keys_and_the_index_reads_back() {
    let store = Arc::new(InMemory::new());
    let writer = ArchiveWriter::spawn(store.clone(), config()).unwrap();
    let video = key("final", "720p");
    let audio = key("final", "audio");
    writer.try_archive(init(&video, 0)).unwrap();
    writer.try_archive(init(&audio, 0)).unwrap();
    // Past the first chunk (256 MSNs), so the head lists two.
    for msn in 0..300 {
        writer.try_archive(segment(&video, msn)).unwrap();
        writer.try_archive(segment(&audio, msn)).unwrap();
    }
    writer.flush().await;

    assert_eq!(
        object(&*store, &video.init(0)).await.unwrap(),
        "ftyp+moov v0".as_bytes()
    );
    assert_eq!(
        object(&*store, &audio.segment(299)).await.unwrap(),
        media(299)
    );
    let path = "v1/events/final/renditions/720p/segments/17.m4s";
    assert_eq!(object(&*store, &Path::from(path)).await.unwrap(), media(17));

    let head = read_head(&*store, &video).await.unwrap();
    let chunks: Vec<(u64, u64)> = head.chunks().map(|c| (c.chunk, c.first_msn)).collect();
    assert_eq!(chunks, [(0, 0), (1, 256)]);
    let covered = read_range(&*store, &video, T0, T0 + 600_000).await.unwrap();
    assert_eq!(covered.len(), 300);
    let first = covered[0].record;
    assert_eq!(
        first.bytes,
        media(0).len() as u64,
        "bytes filled in from the segment"
    );
    assert!(covered.iter().all(|c| !c.record.gap && !c.discontinuity));
    // 10:00-10:10 into the event: segments 300.. do not exist, 295..299 do.
    let tail = read_range(&*store, &audio, T0 + 590_000, T0 + 610_000)
        .await
        .unwrap();
    let msns: Vec<u64> = tail.iter().map(|c| c.record.msn).collect();
    assert_eq!(msns, [295, 296, 297, 298, 299]);

    let status = writer.event_status(&video.event_id);
    assert!(!status.degraded, "{status}");
    assert_eq!(status.to_string(), "archive: ok");
    let names: Vec<&str> = status
        .renditions
        .iter()
        .map(|r| r.rendition.as_str())
        .collect();
    assert_eq!(names, ["720p", "audio"]);
    assert_eq!(status.renditions[0].last_archived_msn, Some(299));
    assert_eq!(status.renditions[0].queued_segments, 0);
    assert!(status.renditions[0].last_lag_ms.is_some());
    assert_eq!(writer.queued_segments(), 0);

    writer.forget_event(&video.event_id);
    assert!(writer.event_status(&video.event_id).renditions.is_empty());
}

#[tokio::test]
async fn a_full_queue_drops_without_blocking_and_reports_the_range() {
    let memory = Arc::new(InMemory::new());
    let store = TestStore::new(memory.clone());
    store.open.send_replace(false);
    let config = WriterConfig {
        queue_segments: 4,
        ..WriterConfig::default()
    };
    let writer = ArchiveWriter::spawn(store.clone(), config).unwrap();
    let video = key("derby", "1080p");
    // No await between these: a full queue answers at once.
    for msn in 0..4 {
        writer.try_archive(segment(&video, msn)).unwrap();
    }
    for msn in 4..10 {
        let err = writer.try_archive(segment(&video, msn)).unwrap_err();
        assert!(
            matches!(err, WriterError::QueueFull { msn: m, .. } if m == msn),
            "{err}"
        );
    }
    assert_eq!(writer.queued_segments(), 4);
    let status = writer.event_status(&video.event_id);
    assert!(status.degraded);
    assert_eq!(
        status.renditions[0].missing,
        [MissingRange {
            first_msn: 4,
            last_msn: 9,
            reason: MissingReason::QueueFull
        }]
    );
    assert_eq!(status.renditions[0].queued_segments, 4);
    assert_eq!(
        status.to_string(),
        "archive: degraded (1080p: MSN 4-9 missing)"
    );

    // The store comes back: what was queued is written, the dropped run is indexed as
    // gaps with its own timing, and the next segment goes through.
    store.open.send_replace(true);
    writer.flush().await;
    writer.try_archive(segment(&video, 10)).unwrap();
    writer.flush().await;
    let chunk = read_chunk(&*memory, &video, 0).await.unwrap();
    let expected: Vec<SegmentRecord> = (0..11)
        .map(|msn| {
            let stored = SegmentRecord {
                bytes: media(msn).len() as u64,
                iframe_bytes: None,
                ..record(msn)
            };
            if (4..10).contains(&msn) {
                stored.into_gap()
            } else {
                stored
            }
        })
        .collect();
    assert_eq!(chunk.records(), expected);
    assert!(object(&*memory, &video.segment(5)).await.is_none());
    let covered = read_range(&*memory, &video, T0, T0 + 22_000).await.unwrap();
    assert_eq!(covered.len(), 11);
    let status = writer.event_status(&video.event_id);
    assert_eq!(status.renditions[0].last_archived_msn, Some(10));
    assert!(status.degraded, "the missing range stays reported");
}

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_then_works_gets_the_object_after_retries() {
    let memory = Arc::new(InMemory::new());
    let store = TestStore::new(memory.clone());
    store.fail_puts.store(4, Ordering::SeqCst);
    let writer = ArchiveWriter::spawn(store.clone(), config()).unwrap();
    let video = key("match", "480p");
    writer.try_archive(init(&video, 2)).unwrap();
    writer.try_archive(segment(&video, 0)).unwrap();
    writer.flush().await;
    assert_eq!(
        store.fail_puts.load(Ordering::SeqCst),
        0,
        "every failure was used"
    );
    assert!(object(&*memory, &video.init(2)).await.is_some());
    assert_eq!(object(&*memory, &video.segment(0)).await.unwrap(), media(0));
    let status = writer.event_status(&video.event_id);
    assert!(!status.degraded, "{status}");
    assert_eq!(status.renditions[0].last_archived_msn, Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_store_down_past_every_retry_leaves_gaps_that_the_index_catches_up_on() {
    let memory = Arc::new(InMemory::new());
    let store = TestStore::new(memory.clone());
    store.fail_puts.store(u32::MAX, Ordering::SeqCst);
    let config = WriterConfig {
        max_attempts: 2,
        ..config()
    };
    let writer = ArchiveWriter::spawn(store.clone(), config).unwrap();
    let video = key("match", "480p");
    writer.try_archive(segment(&video, 0)).unwrap();
    writer.try_archive(segment(&video, 1)).unwrap();
    writer.flush().await;
    let status = writer.event_status(&video.event_id);
    let rendition = &status.renditions[0];
    assert_eq!(
        rendition.missing,
        [MissingRange {
            first_msn: 0,
            last_msn: 1,
            reason: MissingReason::StoreFailed
        }]
    );
    assert!(rendition.index_behind);
    assert_eq!(rendition.last_archived_msn, None);
    assert_eq!(
        status.to_string(),
        "archive: degraded (480p: MSN 0-1 missing index behind)"
    );

    store.fail_puts.store(0, Ordering::SeqCst);
    writer.try_archive(segment(&video, 2)).unwrap();
    writer.flush().await;
    let chunk = read_chunk(&*memory, &video, 0).await.unwrap();
    let gaps: Vec<(u64, bool)> = chunk.records().iter().map(|r| (r.msn, r.gap)).collect();
    assert_eq!(gaps, [(0, true), (1, true), (2, false)]);
    assert!(!writer.event_status(&video.event_id).renditions[0].index_behind);
}

#[tokio::test]
async fn a_second_writer_of_the_same_segments_corrupts_nothing() {
    let memory = Arc::new(InMemory::new());
    let video = key("final", "720p");

    // Replica B: its store stalled, so it dropped MSNs 1-5 (gaps in its index).
    let slow = TestStore::new(memory.clone());
    slow.open.send_replace(false);
    let b = ArchiveWriter::spawn(
        slow.clone(),
        WriterConfig {
            queue_segments: 1,
            ..WriterConfig::default()
        },
    )
    .unwrap();
    b.try_archive(segment(&video, 0)).unwrap();
    for msn in 1..6 {
        assert!(b.try_archive(segment(&video, msn)).is_err());
    }
    slow.open.send_replace(true);
    b.flush().await;
    for msn in 6..20 {
        b.try_archive(segment(&video, msn)).unwrap();
        b.flush().await;
    }
    let chunk = read_chunk(&*memory, &video, 0).await.unwrap();
    assert_eq!(chunk.records().iter().filter(|r| r.gap).count(), 5);

    // Replica A archived everything: its records fill B's gaps, B's segments stay.
    let a = ArchiveWriter::spawn(memory.clone(), config()).unwrap();
    for msn in 0..20 {
        a.try_archive(segment(&video, msn)).unwrap();
    }
    a.flush().await;
    let chunk = read_chunk(&*memory, &video, 0).await.unwrap();
    let expected: Vec<SegmentRecord> = (0..20)
        .map(|msn| SegmentRecord {
            bytes: media(msn).len() as u64,
            iframe_bytes: None,
            ..record(msn)
        })
        .collect();
    assert_eq!(chunk.records(), expected);
    for msn in 0..20 {
        assert_eq!(
            object(&*memory, &video.segment(msn)).await.unwrap(),
            media(msn)
        );
    }

    // Both at once, on a fresh rendition: conditional index writes merge their races.
    let audio = key("final", "audio");
    let c = ArchiveWriter::spawn(memory.clone(), config()).unwrap();
    for msn in 0..40 {
        a.try_archive(segment(&audio, msn)).unwrap();
        c.try_archive(segment(&audio, msn)).unwrap();
    }
    tokio::join!(a.flush(), c.flush());
    let covered = read_range(&*memory, &audio, T0, T0 + 80_000).await.unwrap();
    assert_eq!(covered.len(), 40);
    assert!(covered.iter().all(|c| !c.record.gap));
    assert!(!a.event_status(&audio.event_id).degraded);
    assert!(!c.event_status(&audio.event_id).degraded);
}

#[tokio::test]
async fn a_local_directory_survives_a_restart_of_the_writer() {
    let data = tempfile::tempdir().unwrap();
    let store = open_store(&ArchiveConfig::default(), data.path()).unwrap();
    let video = key("concert", "360p");
    let first = ArchiveWriter::spawn(store.clone(), config()).unwrap();
    first.try_archive(init(&video, 0)).unwrap();
    for msn in 0..10 {
        first.try_archive(segment(&video, msn)).unwrap();
    }
    first.flush().await;
    drop(first);

    // A new process: its index starts empty and merges with what is on disk (the local
    // store has no conditional update, so it overwrites after the merge).
    let second = ArchiveWriter::spawn(store.clone(), config()).unwrap();
    for msn in 10..20 {
        second.try_archive(segment(&video, msn)).unwrap();
    }
    second.flush().await;
    let covered = read_range(&*store, &video, T0, T0 + 40_000).await.unwrap();
    let msns: Vec<u64> = covered.iter().map(|c| c.record.msn).collect();
    assert_eq!(msns, (0..20).collect::<Vec<_>>());

    let on_disk = data
        .path()
        .join("archive/v1/events/concert/renditions/360p/segments/12.m4s");
    assert_eq!(std::fs::read(on_disk).unwrap(), media(12));
    let head = data
        .path()
        .join("archive/v1/events/concert/renditions/360p/index/head.json");
    assert!(
        std::fs::read_to_string(head)
            .unwrap()
            .contains("\"chunks\":[{\"chunk\":0")
    );
    assert!(
        data.path()
            .join("archive/v1/events/concert/renditions/360p/init/0.mp4")
            .is_file()
    );
}

#[tokio::test]
async fn a_corrupt_stored_chunk_is_replaced_by_the_writers_copy() {
    let store = Arc::new(InMemory::new());
    let video = key("final", "720p");
    store
        .put(
            &video.index_chunk(0),
            PutPayload::from(Bytes::from_static(b"{\"not\":\"an index\"}\n")),
        )
        .await
        .unwrap();
    let writer = ArchiveWriter::spawn(store.clone(), config()).unwrap();
    writer.try_archive(segment(&video, 3)).unwrap();
    writer.flush().await;
    let bytes = object(&*store, &video.index_chunk(0)).await.unwrap();
    let chunk = IndexChunk::decode("chunk", 0, &bytes).unwrap();
    assert_eq!(chunk.records().len(), 1);
}

#[tokio::test]
async fn bad_records_and_configs_are_refused() {
    let store = Arc::new(InMemory::new());
    let writer = ArchiveWriter::spawn(store.clone(), config()).unwrap();
    let video = key("final", "720p");
    let mut job = Segment {
        rendition: video.clone(),
        record: record(0),
        bytes: media(0),
    };
    job.record.duration_90k = 0;
    let err = writer.try_archive(ArchiveJob::Segment(job)).unwrap_err();
    assert!(err.to_string().contains("final/720p"), "{err}");
    assert_eq!(writer.queued_segments(), 0);

    for (config, key) in [
        (
            WriterConfig {
                max_concurrent_puts: 0,
                ..config()
            },
            "writer.max_concurrent_puts",
        ),
        (
            WriterConfig {
                max_attempts: 0,
                ..config()
            },
            "writer.max_attempts",
        ),
        (
            WriterConfig {
                max_backoff_ms: 1,
                ..config()
            },
            "writer.max_backoff_ms",
        ),
    ] {
        let err = ArchiveWriter::spawn(store.clone(), config)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("archive.{key}")), "{err}");
    }
}

#[test]
fn backoff_doubles_up_to_the_cap_with_jitter() {
    let config = WriterConfig::default();
    for (failures, max_ms) in [
        (1, 200),
        (2, 400),
        (3, 800),
        (5, 3200),
        (6, 5000),
        (60, 5000),
    ] {
        let wait = config.backoff(failures).as_millis() as u64;
        assert!((max_ms / 2..=max_ms).contains(&wait), "{failures}: {wait}");
    }
}
