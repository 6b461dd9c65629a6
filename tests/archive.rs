//! End-to-end: `floodlight up` archives every complete segment and init version of every
//! rendition of a live event to `{data_dir}/archive` (docs/archive.md), and the index
//! reads back in order.

mod common;

use std::time::{Duration, Instant};

use common::{Server, ffmpeg_publish, wait_for_ok};
use floodlight_archive::reader::read_head;
use floodlight_archive::{EventId, RenditionKey, RenditionName, SegmentRecord, read_range};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_publish_is_archived_with_its_index() {
    let server = Server::start(&[]).await;
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
    let event: serde_json::Value = reqwest::Client::new()
        .get(server.api(&format!("/v1/events/{event_id}")))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["live"]["archive"]["state"], "ok", "{event:#}");
    assert_eq!(event["live"]["archive"]["missing"], serde_json::json!([]));
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg failed");

    let root = server.data_dir().join("archive");
    let store = LocalFileSystem::new_with_prefix(&root).expect("the archive directory exists");
    let event = EventId::new(event_id.as_str()).unwrap();
    // Segments complete as the packager closes them; ~8 s of media make at least two of
    // 2 s per rendition, stored off the live path within moments.
    let deadline = Instant::now() + Duration::from_secs(15);
    for name in &names {
        let key = RenditionKey::new(event.clone(), RenditionName::new(name.as_str()).unwrap());
        let records = loop {
            match archived(&store, &key).await {
                Some(records) if records.len() >= 2 => break records,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => panic!("{name}: not archived: {other:?}\n{}", server.log()),
            }
        };
        let dir = root.join(format!("v1/events/{event_id}/renditions/{name}"));
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
            let segment = std::fs::read(dir.join(format!("segments/{}.m4s", record.msn)))
                .unwrap_or_else(|e| panic!("{name}: segment {}: {e}", record.msn));
            assert_eq!(segment.len() as u64, record.bytes, "{name}: {record:?}");
            // A CMAF segment: its parts' boxes, a moof (or styp) first.
            assert!(
                matches!(&segment[4..8], b"moof" | b"styp"),
                "{name}: segment {} starts with {:?}",
                record.msn,
                &segment[4..8]
            );
            let init = dir.join(format!("init/{}.mp4", record.init_version));
            assert!(init.is_file(), "{name}: {} missing", init.display());
        }
    }
}
