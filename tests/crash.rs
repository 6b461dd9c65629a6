//! End-to-end: `kill -9` of `floodlight up` while it archives a live event and while VOD
//! jobs run. After the restart the job completes and its asset plays, and the archive
//! holds every segment completed before the kill except at most the writer's queue
//! (`archive.writer.queue_segments`, docs/archive.md "What a crash loses"): here, with a
//! healthy local disk, at most the segment being stored at the moment of the kill.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ADMIN_KEY, Server, ffmpeg_publish, wait_for_ok};
use floodlight_archive::{
    EventId, ObjectStore, RenditionKey, RenditionName, archived_span, read_range,
};
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use serde_json::{Value, json};

async fn asset(server: &Server, asset_id: &str) -> Value {
    reqwest::Client::new()
        .get(server.api(&format!("/v1/assets/{asset_id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The log without its ANSI colour sequences (`ESC [ … m`).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last complete segment each rendition's live playlist lists.
async fn last_complete(server: &Server, event_id: &str, renditions: &[&str]) -> Vec<u64> {
    let mut last = Vec::new();
    for rendition in renditions {
        let playlist =
            reqwest::get(server.http(&format!("/live/{event_id}/{rendition}/index.m3u8")))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        let msn = playlist
            .lines()
            .filter_map(|l| l.strip_suffix(".m4s"))
            .filter(|l| !l.contains('.') && !l.contains('"'))
            .filter_map(|l| l.parse::<u64>().ok())
            .max()
            .unwrap_or_else(|| panic!("{rendition}: no complete segment: {playlist}"));
        last.push(msn);
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_job_and_at_most_the_archive_queue() {
    // A running job's lease lapses 3 s after its process died, not 30.
    let mut server = Server::start(&[
        ("FLOODLIGHT_CONTROL__JOBS__LEASE_SECS", "3"),
        ("FLOODLIGHT_CONTROL__JOBS__MAX_CONCURRENT", "1"),
        ("FLOODLIGHT_TRANSCODER__LADDER", "publisher"),
        (
            "FLOODLIGHT_TRANSCODER__LADDERS__PUBLISHER",
            "{ source = true, rungs = [] }",
        ),
    ])
    .await;
    let (event_id, key, _) = server.create_event("crash").await;
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 60);
    let live = server.http(&format!("/live/{event_id}/master.m3u8"));
    assert!(
        wait_for_ok(&live, Duration::from_secs(20)).await,
        "{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_secs(16)).await;

    // A frame-precise asset of 8 s of what is archived, killed while it builds.
    let span_of = |store: Arc<dyn ObjectStore>, name: &'static str, event: String| async move {
        let key = RenditionKey::new(
            EventId::new(event).unwrap(),
            RenditionName::new(name).unwrap(),
        );
        archived_span(store.as_ref(), &key).await.unwrap().unwrap()
    };
    let root = server.data_dir().join("archive");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    let (first_ms, _) = span_of(store.clone(), "source", event_id.clone()).await;
    let start = first_ms + 2_000;
    let to_rfc3339 = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // Six frame-precise assets of 8 s, asked for at once; one builds at a time
    // (control.jobs.max_concurrent = 1), the others wait; the kill comes while one builds.
    let mut posts = Vec::new();
    for i in 0..6 {
        let from = start + i * 1_000;
        let body = json!({
            "title": format!("crash {i}"),
            "source": {"event_id": event_id, "start": to_rfc3339(from), "end": to_rfc3339(from + 8_000)},
            "precision": "frame",
        });
        let url = server.api("/v1/assets");
        posts.push(tokio::spawn(async move {
            let created: Value = reqwest::Client::new()
                .post(url)
                .bearer_auth(ADMIN_KEY)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            created["asset_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{created:#}"))
                .to_string()
        }));
    }
    let mut asset_ids = Vec::new();
    for post in posts {
        asset_ids.push(post.await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    'building: loop {
        for id in &asset_ids {
            if asset(&server, id).await["state"] == "processing" {
                break 'building;
            }
        }
        assert!(Instant::now() < deadline, "no job ran:\n{}", server.log());
    }
    let completed = last_complete(&server, &event_id, &["source", "audio"]).await;
    server.kill_hard();
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();

    // What the kill left: every segment completed before it, but the one being stored.
    let event = EventId::new(event_id.as_str()).unwrap();
    for (name, last) in ["source", "audio"].into_iter().zip(completed) {
        let key = RenditionKey::new(event.clone(), RenditionName::new(name).unwrap());
        let records = read_range(store.as_ref(), &key, 0, i64::MAX / 2)
            .await
            .unwrap();
        let msns: Vec<u64> = records.iter().map(|c| c.record.msn).collect();
        assert_eq!(msns.first(), Some(&0), "{name}: {msns:?}");
        assert!(
            msns.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: a hole in the archive: {msns:?}"
        );
        let archived = *msns.last().unwrap();
        assert!(
            archived + 1 >= last,
            "{name}: MSN {last} was complete before the kill, the archive ends at {archived}"
        );
        for msn in &msns {
            let path = key.segment(*msn);
            assert!(
                store.head(&path).await.is_ok(),
                "{name}: {path} indexed but not stored"
            );
        }
    }

    // After the restart every job completes: the one that was building is taken over
    // once its lease lapses, the queued ones run.
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready = Vec::new();
    for id in &asset_ids {
        let body = loop {
            let body = asset(&server, id).await;
            match body["state"].as_str() {
                Some("ready") => break body,
                Some("queued" | "processing") if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => panic!("asset after the restart: {body:#}\n{}", server.log()),
            }
        };
        ready.push(body);
    }
    let ready = &ready[0];
    // A job the kill interrupted (started, not ended before it) ran a second time. The
    // kill follows an answer saying a job was building, so there is one unless that job
    // finished in the milliseconds between.
    let log = without_colours(&server.log());
    let (before, after) = log
        .split_once("Floodlight is up")
        .and_then(|(_, rest)| rest.split_once("Floodlight is up"))
        .map(|(before, after)| (before.to_string(), after.to_string()))
        .expect("the log of both runs");
    let job_of = |line: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("job_id="))
            .map(str::to_string)
    };
    let ended: Vec<String> = before
        .lines()
        .filter(|l| l.contains("job ended"))
        .filter_map(job_of)
        .collect();
    let interrupted: Vec<String> = before
        .lines()
        .filter(|l| l.contains("job started"))
        .filter_map(job_of)
        .filter(|job| !ended.contains(job))
        .collect();
    for job in &interrupted {
        assert!(
            after.lines().any(|l| l.contains("job started")
                && l.contains(&format!("job_id={job}"))
                && l.contains("attempt=2")),
            "job {job} was building at the kill and was not taken over:\n{log}"
        );
    }
    println!(
        "{} job(s) interrupted by the kill and taken over",
        interrupted.len()
    );
    let duration = ready["duration_s"].as_f64().unwrap();
    assert!((duration - 8.0).abs() < 0.05, "{ready:#}");
    let hls = ready["playback"]["hls"].as_str().unwrap();
    let rendition = hls.replace("master.m3u8", "source/index.m3u8");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", &rendition, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
