//! End-to-end: `floodlight up` archives every complete segment and init version of every
//! rendition of a live event (docs/archive.md), to `{data_dir}/archive` by default and to
//! a real S3-compatible server (moto on 127.0.0.1:9400, which scripts/services.sh starts;
//! `FLOODLIGHT_TEST_S3` names another), and the index reads back in order.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, ffmpeg_publish, wait_for_ok};
use floodlight_archive::reader::read_head;
use floodlight_archive::{
    ArchiveConfig, EventId, RenditionKey, RenditionName, S3Config, SegmentRecord, StoreKind,
    open_store, read_range,
};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};

/// The renditions a master playlist offers: its `{rendition}/index.m3u8` URIs.
fn renditions(master: &str) -> Vec<String> {
    let mut names: Vec<String> = master
        .lines()
        .flat_map(|line| line.split('"'))
        .filter_map(|uri| uri.trim().strip_suffix("/index.m3u8"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The rendition's index records, from its head's first chunk to now.
async fn archived(store: &dyn ObjectStore, key: &RenditionKey) -> Option<Vec<SegmentRecord>> {
    let head = read_head(store, key).await.ok()?;
    let start = head.chunks().next()?.first_program_date_time_ms;
    let covered = read_range(store, key, start, i64::MAX / 2).await.ok()?;
    Some(covered.into_iter().map(|c| c.record).collect())
}

/// Publishes 8 s over RTMP to `server`, checks the event's status shows the archive as
/// ok while live, then that every rendition's index and objects are in `store`.
async fn publish_and_check_the_archive(server: &Server, store: &dyn ObjectStore) {
    let (event_id, key, _) = server.create_event("archive").await;
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 8);
    let master = server.http(&format!("/live/{event_id}/master.m3u8"));
    assert!(
        wait_for_ok(&master, Duration::from_secs(15)).await,
        "no master playlist:\n{}",
        server.log()
    );
    let master = reqwest::get(&master).await.unwrap().text().await.unwrap();
    let names = renditions(&master);
    assert!(
        names.len() >= 2 && names.iter().any(|n| n == "audio"),
        "{master}"
    );
    // While it is live, the event's status reports the archive's health.
    let event = server.event(&event_id).await;
    assert_eq!(event["live"]["archive"]["state"], "ok", "{event:#}");
    assert_eq!(event["live"]["archive"]["missing"], serde_json::json!([]));
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg failed");

    let event = EventId::new(event_id.as_str()).unwrap();
    // Segments complete as the packager closes them; ~8 s of media make at least two of
    // 2 s per rendition, stored off the live path within moments.
    let deadline = Instant::now() + Duration::from_secs(15);
    for name in &names {
        let key = RenditionKey::new(event.clone(), RenditionName::new(name.as_str()).unwrap());
        let records = loop {
            match archived(store, &key).await {
                Some(records) if records.len() >= 2 => break records,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!("{name}: not archived: {other:?}\n{}", server.log()),
            }
        };
        for pair in records.windows(2) {
            assert!(pair[0].msn < pair[1].msn, "{name}: {records:?}");
            assert!(
                pair[0].program_date_time_ms < pair[1].program_date_time_ms,
                "{name}: PDTs out of order: {records:?}"
            );
        }
        for record in &records {
            assert!(!record.gap, "{name}: {record:?}");
            assert!(record.duration_90k > 0, "{name}: {record:?}");
            let segment = store
                .get(&key.segment(record.msn))
                .await
                .unwrap_or_else(|e| panic!("{name}: segment {}: {e}", record.msn))
                .bytes()
                .await
                .unwrap();
            assert_eq!(segment.len() as u64, record.bytes, "{name}: {record:?}");
            // A CMAF segment: its parts' boxes, a moof (or styp) first.
            assert!(
                matches!(&segment[4..8], b"moof" | b"styp"),
                "{name}: segment {} starts with {:?}",
                record.msn,
                &segment[4..8]
            );
            store
                .head(&key.init(record.init_version))
                .await
                .unwrap_or_else(|e| panic!("{name}: init {}: {e}", record.init_version));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_publish_is_archived_with_its_index_in_the_data_dir() {
    let server = Server::start(&[]).await;
    let root = server.data_dir().join("archive");
    std::fs::create_dir_all(&root).unwrap();
    let store = LocalFileSystem::new_with_prefix(&root).expect("the archive directory");
    publish_and_check_the_archive(&server, &store).await;
    // docs/archive.md's layout, on disk.
    let events = std::fs::read_dir(root.join("v1/events")).unwrap().count();
    assert_eq!(events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_publish_is_archived_to_an_s3_bucket() {
    let endpoint =
        std::env::var("FLOODLIGHT_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:9400".into());
    let bucket = format!("fl-e2e-{:016x}", rand::random::<u64>());
    // moto creates a bucket on an unsigned PUT; the archive itself never creates one.
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "this test needs an S3-compatible server at {endpoint} (scripts/services.sh \
                 starts moto; FLOODLIGHT_TEST_S3 names another): {e}"
            )
        });
    assert!(created.status().is_success(), "{}", created.status());
    let server = Server::start(&[
        ("FLOODLIGHT_ARCHIVE__KIND", "s3"),
        ("FLOODLIGHT_ARCHIVE__S3__ENDPOINT", &endpoint),
        ("FLOODLIGHT_ARCHIVE__S3__BUCKET", &bucket),
        ("FLOODLIGHT_ARCHIVE__S3__PATH_STYLE", "true"),
        ("FLOODLIGHT_ARCHIVE__S3__ACCESS_KEY_ID", "testing"),
        (
            "FLOODLIGHT_ARCHIVE__S3__SECRET_ACCESS_KEY",
            "testing-secret",
        ),
    ])
    .await;
    let store: Arc<dyn ObjectStore> = open_store(
        &ArchiveConfig {
            kind: StoreKind::S3,
            s3: S3Config {
                endpoint: Some(endpoint),
                bucket,
                path_style: true,
                access_key_id: Some("testing".into()),
                secret_access_key: Some("testing-secret".into()),
                ..S3Config::default()
            },
            ..ArchiveConfig::default()
        },
        server.data_dir(),
    )
    .unwrap();
    publish_and_check_the_archive(&server, store.as_ref()).await;
    assert!(
        !server.data_dir().join("archive").exists(),
        "nothing archived to the data dir"
    );
    assert!(
        !server.log().contains("testing-secret"),
        "the S3 secret was logged"
    );
}
