//! End-to-end: the real `floodlight up` pulling an event's RTSP source (GStreamer's RTSP
//! server with a live H.264 + AAC test pattern, behind Basic authentication), the LL-HLS
//! player following the result across a restart of the RTSP server.

mod common;
#[path = "support/rtsp_server.rs"]
mod rtsp_server;

use std::time::{Duration, Instant};

use common::{ADMIN_KEY, Server};
use floodlight_player::{PlayerConfig, follow};
use rtsp_server::RtspServer;
use serde_json::{Value, json};

const PASSWORD: &str = "cam-secret-Pw9";

/// When, after `since`, the event's source was first seen playing (the event shows
/// `live.publishing`) and its media playlist first listed a part.
struct Startup {
    playing: Duration,
    first_part: Duration,
}

async fn startup(server: &Server, event_id: &str, since: Instant) -> Option<Startup> {
    let event = server.api(&format!("/v1/events/{event_id}"));
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    let http = reqwest::Client::new();
    let mut playing = None;
    while since.elapsed() < Duration::from_secs(30) {
        if playing.is_none()
            && let Ok(r) = http.get(&event).bearer_auth(ADMIN_KEY).send().await
            && let Ok(body) = r.json::<Value>().await
            && body["live"]["publishing"] == true
        {
            playing = Some(since.elapsed());
        }
        if let Ok(r) = http.get(&media).send().await
            && r.status().is_success()
            && r.text().await.is_ok_and(|t| t.contains("#EXT-X-PART:"))
        {
            let first_part = since.elapsed();
            return Some(Startup {
                playing: playing.unwrap_or(first_part),
                first_part,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_source_is_pulled_and_survives_a_server_restart() {
    let mut camera = RtspServer::start(Some(("viewer", PASSWORD)));
    let server = Server::start(&[
        ("FLOODLIGHT_INGEST__RTSP__POLL_INTERVAL_SECS", "1"),
        ("FLOODLIGHT_INGEST__RTSP__RECONNECT_INITIAL_MS", "200"),
        ("FLOODLIGHT_INGEST__RTSP__RECONNECT_MAX_MS", "2000"),
    ])
    .await;
    let http = reqwest::Client::new();

    // An event whose media comes from the camera: no publisher, no stream key in use.
    let resp = http
        .post(server.api("/v1/events"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({
            "title": "camera",
            "ingest": { "rtsp_source": { "url": camera.url(), "transport": "tcp" } }
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(status, 201, "{created}");
    let event_id = created["event_id"].as_str().unwrap().to_string();
    assert!(
        !created.to_string().contains(PASSWORD),
        "the answer never shows the source's password: {created}"
    );

    // Pulled within a poll interval; the first part follows the camera's first keyframe.
    let created_at = Instant::now();
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    let times = startup(&server, &event_id, created_at)
        .await
        .unwrap_or_else(|| panic!("no part from the RTSP source:\n{}", server.log()));
    println!(
        "RTSP pull: event created → playing {} ms (source polling + DESCRIBE/SETUP/PLAY); \
         playing → first part listed {} ms",
        times.playing.as_millis(),
        (times.first_part - times.playing).as_millis()
    );

    let event: Value = http
        .get(server.api(&format!("/v1/events/{event_id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(event["live"]["publishing"], true, "{event}");
    assert_eq!(event["live"]["protocol"], "rtsp", "{event}");
    let shown = event["ingest"]["rtsp_source"]["url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        shown.contains(&format!("127.0.0.1:{}/test", camera.port)) && !shown.contains(PASSWORD),
        "GET shows the source without its credentials: {event}"
    );

    // The player follows across a restart of the camera's server.
    let mut config = PlayerConfig::new(server.http(&format!("/live/{event_id}/master.m3u8")));
    config.duration = Duration::from_secs(20);
    let player = tokio::spawn(follow(config));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = http.get(&media).send().await.unwrap().text().await.unwrap();
    assert!(!before.contains("#EXT-X-DISCONTINUITY\n"), "{before}");
    camera.restart();

    let report = player
        .await
        .unwrap()
        .expect("player follows across the restart");
    println!("{report}");
    assert!(
        report.is_clean(),
        "player found errors: {:#?}",
        report.errors
    );
    assert!(report.discontinuities >= 1, "player saw the discontinuity");
    assert!(
        report.parts_fetched >= 40,
        "parts fetched: {}",
        report.parts_fetched
    );
    assert_eq!(report.tfdt_gaps, 0, "continuous tfdt");
    let after = http.get(&media).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("#EXT-X-DISCONTINUITY\n"), "{after}");
    assert!(
        after.contains("#EXT-X-MEDIA-SEQUENCE:0\n"),
        "same numbering, not a new stream:\n{after}"
    );

    let log = server.log();
    assert!(log.contains("rtsp pull dropped"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the source's password is never logged"
    );
}
