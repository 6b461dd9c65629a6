//! The archive against a real S3-compatible server: moto on 127.0.0.1:9400, which
//! `scripts/services.sh` (and so `.ci/run`) starts; `FLOODLIGHT_TEST_S3` names another.
//! Without a server these tests fail, never skip. Each test makes its own bucket.

use std::sync::Arc;

use bytes::Bytes;
use floodlight_archive::reader::read_head;
use floodlight_archive::{
    ArchiveConfig, ArchiveJob, ArchiveWriter, EventId, InitVersion, RenditionKey, RenditionName,
    S3Config, Segment, SegmentRecord, StoreKind, WriterConfig, open_store, read_range,
};
use object_store::{ObjectStore, ObjectStoreExt};

const T0: i64 = 1_765_137_600_000;

fn endpoint() -> String {
    std::env::var("FLOODLIGHT_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:9400".to_string())
}

/// A fresh bucket on the test server, and the store opened on it through the config.
async fn bucket() -> Arc<dyn ObjectStore> {
    let endpoint = endpoint();
    let name = format!("fl-test-{:016x}", rand::random::<u64>());
    // moto creates a bucket on an unsigned PUT; the archive itself never creates one.
    let response = reqwest::Client::new()
        .put(format!("{endpoint}/{name}"))
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the archive's S3 tests need an S3-compatible server at {endpoint} \
                 (scripts/services.sh starts moto; FLOODLIGHT_TEST_S3 names another): {error}"
            )
        });
    assert!(
        response.status().is_success(),
        "creating bucket {name}: {}",
        response.status()
    );
    let config = ArchiveConfig {
        kind: StoreKind::S3,
        s3: S3Config {
            endpoint: Some(endpoint),
            bucket: name,
            path_style: true,
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            ..S3Config::default()
        },
        ..ArchiveConfig::default()
    };
    open_store(&config, std::path::Path::new("/nonexistent")).unwrap()
}

fn key(rendition: &str) -> RenditionKey {
    RenditionKey::new(
        EventId::new("s3-final").unwrap(),
        RenditionName::new(rendition).unwrap(),
    )
}

fn media(msn: u64) -> Bytes {
    Bytes::from(format!("moof+mdat of segment {msn}").into_bytes())
}

fn segment(key: &RenditionKey, msn: u64) -> ArchiveJob {
    ArchiveJob::Segment(Segment {
        rendition: key.clone(),
        record: SegmentRecord {
            msn,
            duration_90k: 180_000,
            program_date_time_ms: T0 + msn as i64 * 2000,
            bytes: 0,
            iframe_bytes: None,
            init_version: 0,
            discontinuity: false,
            gap: false,
        },
        bytes: media(msn),
    })
}

fn writer(store: &Arc<dyn ObjectStore>) -> ArchiveWriter {
    let config = WriterConfig {
        queue_segments: 1000,
        ..WriterConfig::default()
    };
    ArchiveWriter::spawn(store.clone(), config).unwrap()
}

async fn msns(store: &Arc<dyn ObjectStore>, key: &RenditionKey, segments: i64) -> Vec<u64> {
    read_range(&**store, key, T0, T0 + segments * 2000)
        .await
        .unwrap()
        .iter()
        .map(|c| {
            assert!(!c.record.gap, "{:?}", c.record);
            c.record.msn
        })
        .collect()
}

#[tokio::test]
async fn segments_init_versions_and_the_index_round_trip_through_s3() {
    let store = bucket().await;
    let video = key("720p");
    let writer = writer(&store);
    writer
        .try_archive(ArchiveJob::Init(InitVersion {
            rendition: video.clone(),
            version: 0,
            bytes: Bytes::from_static(b"ftyp+moov"),
        }))
        .unwrap();
    for msn in 0..260 {
        writer.try_archive(segment(&video, msn)).unwrap();
    }
    writer.flush().await;

    let init = store
        .get(&video.init(0))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(init, Bytes::from_static(b"ftyp+moov"));
    let stored = store
        .get(&video.segment(42))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored, media(42));
    let head = read_head(&*store, &video).await.unwrap();
    assert_eq!(head.chunks().map(|c| c.chunk).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(
        msns(&store, &video, 260).await,
        (0..260).collect::<Vec<_>>()
    );
    let status = writer.event_status(&video.event_id);
    assert_eq!(status.to_string(), "archive: ok");
    assert_eq!(status.renditions[0].last_archived_msn, Some(259));
}

#[tokio::test]
async fn a_restarted_writer_and_a_second_replica_merge_with_the_stored_index() {
    let store = bucket().await;
    let video = key("480p");
    let first = writer(&store);
    for msn in 0..10 {
        first.try_archive(segment(&video, msn)).unwrap();
    }
    first.flush().await;
    drop(first);

    // A restarted origin: its index starts empty and must not replace the stored one.
    let restarted = writer(&store);
    for msn in 10..20 {
        restarted.try_archive(segment(&video, msn)).unwrap();
    }
    restarted.flush().await;
    assert_eq!(msns(&store, &video, 20).await, (0..20).collect::<Vec<_>>());

    // Two replicas archiving the same segments at once.
    let replica = writer(&store);
    for msn in 20..60 {
        restarted.try_archive(segment(&video, msn)).unwrap();
        replica.try_archive(segment(&video, msn)).unwrap();
    }
    tokio::join!(restarted.flush(), replica.flush());
    assert_eq!(msns(&store, &video, 60).await, (0..60).collect::<Vec<_>>());
    for msn in [0, 25, 59] {
        let stored = store
            .get(&video.segment(msn))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(stored, media(msn));
    }
    assert!(!replica.event_status(&video.event_id).degraded);
}
