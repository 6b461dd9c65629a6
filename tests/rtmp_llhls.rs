//! End-to-end: the real `floodlight up`, ffmpeg publishing over RTMP as OBS would, the
//! LL-HLS player following the stream, ffmpeg decoding the result.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_KEY, Server, ffmpeg_publish, wait_for_ok};
use floodlight_player::{PlayerConfig, follow};

/// The last (msn, part) listed in a media playlist, from its EXT-X-PART URIs
/// (`{msn}.{part}.m4s`, the origin's naming).
fn last_part(playlist: &str) -> (u64, u32) {
    playlist
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|attrs| attrs.split("URI=\"").nth(1)?.split('"').next())
        .find_map(|uri| {
            let mut it = uri.trim_end_matches(".m4s").split('.');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .expect("playlist lists parts")
}

fn has_part(playlist: &str, msn: u64, part: u32) -> bool {
    playlist.contains(&format!("URI=\"{msn}.{part}.m4s\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_publish_plays_as_ll_hls() {
    let server = Server::start(&[("FLOODLIGHT_TRANSCODER__RECONNECT_GRACE_SECS", "15")]).await;
    let (event_id, key, created) = server.create_event("e2e").await;
    assert_eq!(created["ingest"]["rtmp"]["stream_key"], key.as_str());
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 30);
    let master = server.http(&format!("/live/{event_id}/master.m3u8"));
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    assert!(
        wait_for_ok(&media, Duration::from_secs(15)).await,
        "no playlist:\n{}",
        server.log()
    );

    // The player follows most of the stream while the checks below run beside it.
    let mut config = PlayerConfig::new(master.clone());
    config.duration = Duration::from_secs(22);
    let player = tokio::spawn(follow(config));

    let http = reqwest::Client::new();
    // Live status while publishing.
    let status = server.event(&event_id).await;
    assert_eq!(status["live"]["publishing"], true, "{status}");
    assert_eq!(status["live"]["protocol"], "rtmp", "{status}");
    assert!(
        !status.to_string().contains(&key),
        "GET must never show the stream key"
    );

    // Master playlist: one video variant with its audio group (RFC 8216bis §4.4.6.2).
    let resp = http.get(&master).send().await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let text = resp.text().await.unwrap();
    assert!(text.contains("#EXT-X-MEDIA:TYPE=AUDIO"), "{text}");
    assert!(text.contains("CODECS=\"avc1.64"), "{text}");
    assert!(text.contains("mp4a.40.2"), "{text}");
    assert!(text.contains("RESOLUTION=640x360"), "{text}");

    // Blocking reload (§6.2.5.2): ask for the part after the last one listed. The answer
    // must list it, and must not come before the part exists: right after the answer the
    // part is fetchable at once.
    for _ in 0..3 {
        let playlist = http.get(&media).send().await.unwrap().text().await.unwrap();
        let (msn, part) = last_part(&playlist);
        let started = Instant::now();
        let url = format!("{media}?_HLS_msn={msn}&_HLS_part={}", part + 1);
        let answer = http.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let answer = answer.text().await.unwrap();
        let waited = started.elapsed();
        assert!(
            has_part(&answer, msn, part + 1) || has_part(&answer, msn + 1, 0),
            "answer lacks the awaited part {msn}.{}:\n{answer}",
            part + 1
        );
        assert!(
            waited < Duration::from_secs(6),
            "blocked {waited:?} for a part due within ~0.2 s"
        );
    }
    // A request for the preload-hinted part blocks until it exists, then serves it.
    let playlist = http.get(&media).send().await.unwrap().text().await.unwrap();
    let hint = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .map(|u| u.trim_end_matches('"').to_string())
        .expect("preload hint");
    let part = http
        .get(server.http(&format!("/live/{event_id}/source/{hint}")))
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 200);
    assert_eq!(part.headers()["content-type"], "video/mp4");
    assert!(
        part.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(!part.bytes().await.unwrap().is_empty());

    // §6.2.5.2: 400 for _HLS_part without _HLS_msn, and for a request too far ahead.
    let (msn, _) = last_part(&playlist);
    let r = http
        .get(format!("{media}?_HLS_part=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(format!("{media}?_HLS_msn={}", msn + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let report = player.await.unwrap().expect("player follows the stream");
    println!("{report}");
    assert!(
        report.is_clean(),
        "player found errors: {:#?}",
        report.errors
    );
    assert_eq!(
        report.parts_over_part_target, 0,
        "every part ≤ PART-TARGET (§4.4.4.9)"
    );
    assert_eq!(report.tfdt_gaps, 0, "continuous tfdt");
    assert!(
        report.parts_fetched >= 40,
        "parts fetched: {}",
        report.parts_fetched
    );
    let delta_updates: u64 = report.renditions.iter().map(|r| r.delta_updates).sum();
    assert!(delta_updates > 0, "player used delta updates");
    assert!(report.latency_ms.is_some() && report.startup_ms.is_some());

    // Delta update (§6.2.5.1): with more than CAN-SKIP-UNTIL (6 × TARGETDURATION 3 = 18 s) of segments, old ones
    // are replaced by EXT-X-SKIP, and the playlist says version 9.
    let delta = http
        .get(format!("{media}?_HLS_skip=YES"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
    assert!(delta.contains("#EXT-X-VERSION:9"), "{delta}");

    let status = ffmpeg.wait().unwrap();
    assert!(status.success(), "ffmpeg publisher failed");

    // The publisher is gone but the grace period runs: the next part never comes, and a
    // blocking reload for it answers 503 after 3 target durations, 9 s (§6.2.5.2).
    let playlist = http.get(&media).send().await.unwrap().text().await.unwrap();
    let (msn, _) = last_part(&playlist);
    let started = Instant::now();
    let r = http
        .get(format!("{media}?_HLS_msn={}", msn + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(13),
        "503 after {waited:?}"
    );

    // After the grace period the stream ends (EXT-X-ENDLIST) and ffmpeg decodes all of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http.get(&media).send().await.unwrap().text().await.unwrap();
        if text.contains("#EXT-X-ENDLIST") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ENDLIST after the grace period:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let decode = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            &master,
            "-map",
            "0",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&decode.stderr);
    assert!(
        decode.status.success() && stderr.trim().is_empty(),
        "ffmpeg decode errors:\n{stderr}"
    );

    assert!(
        !server.log().contains(&key),
        "the stream key must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_garbage_and_unsupported_codec_are_refused_without_harm() {
    let server = Server::start(&[]).await;
    let (event_id, key, _) = server.create_event("refusals").await;

    // Garbage on the RTMP port: that connection closes, nothing else notices.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut garbage = tokio::net::TcpStream::connect(("127.0.0.1", server.rtmp_port))
            .await
            .unwrap();
        let noise: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = garbage.write_all(&noise).await;
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            while let Ok(n) = garbage.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a garbage connection must be closed");
    }

    // A wrong stream key is refused before any media is accepted.
    let wrong = "fl_live_not-a-real-key-0123456789";
    let out = tokio::task::spawn_blocking({
        let url = server.rtmp(&format!("/live/{wrong}"));
        move || ffmpeg_publish(&url, 3).wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        !out.status.success(),
        "ffmpeg must fail to publish with a wrong key"
    );

    // An unsupported codec (FLV's Sorenson H.263) is refused with a clear log line.
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=15",
        ])
        .args([
            "-t",
            "3",
            "-c:v",
            "flv",
            "-an",
            "-f",
            "flv",
            &server.rtmp(&format!("/live/{key}")),
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an unsupported codec must be refused"
    );

    // And the server still serves a good publisher.
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 6);
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    assert!(
        wait_for_ok(&media, Duration::from_secs(15)).await,
        "good publisher after refusals:\n{}",
        server.log()
    );
    ffmpeg.wait().unwrap();

    let log = server.log();
    assert!(log.contains("unknown stream key"), "{log}");
    assert!(log.contains("unsupported"), "{log}");
    assert!(
        !log.contains(wrong) && !log.contains(&key),
        "stream keys must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_reconnect_continues_numbering_with_a_discontinuity() {
    let server = Server::start(&[]).await;
    let (event_id, key, _) = server.create_event("reconnect").await;
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    let url = server.rtmp(&format!("/live/{key}"));

    let mut first = ffmpeg_publish(&url, 5);
    assert!(
        wait_for_ok(&media, Duration::from_secs(15)).await,
        "{}",
        server.log()
    );
    let mut config = PlayerConfig::new(server.http(&format!("/live/{event_id}/master.m3u8")));
    config.duration = Duration::from_secs(11);
    let player = tokio::spawn(follow(config));
    first.wait().unwrap();
    let http = reqwest::Client::new();
    let before = http.get(&media).send().await.unwrap().text().await.unwrap();
    let (msn_before, _) = last_part(&before);

    // ffmpeg restarts its timestamps at 0; the stream must go on, not start over.
    let mut second = ffmpeg_publish(&url, 6);
    second.wait().unwrap();
    let after = http.get(&media).send().await.unwrap().text().await.unwrap();
    let (msn_after, _) = last_part(&after);
    assert!(
        msn_after > msn_before + 1,
        "numbering continues: {msn_before} then {msn_after}"
    );
    assert!(after.contains("#EXT-X-DISCONTINUITY\n"), "{after}");
    assert!(
        after.contains("#EXT-X-MEDIA-SEQUENCE:0\n"),
        "same numbering, not a new stream:\n{after}"
    );

    let report = player
        .await
        .unwrap()
        .expect("player follows across the reconnect");
    println!("{report}");
    assert!(
        report.is_clean(),
        "player found errors: {:#?}",
        report.errors
    );
    assert!(report.discontinuities >= 1, "player saw the discontinuity");
}

/// Cancelling an event while it is on air cuts its publisher: the connection closes at
/// the next frame, and the publisher cannot come back.
#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_live_event_disconnects_its_publisher() {
    let server = Server::start(&[]).await;
    let (event_id, key, _) = server.create_event("cancelled on air").await;
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    let url = server.rtmp(&format!("/live/{key}"));
    let mut publisher = ffmpeg_publish(&url, 60);
    assert!(
        wait_for_ok(&media, Duration::from_secs(15)).await,
        "{}",
        server.log()
    );

    let cancel = reqwest::Client::new()
        .post(server.api(&format!("/v1/events/{event_id}/cancel")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(cancel.status().is_success(), "{}", cancel.status());
    let deadline = Instant::now() + Duration::from_secs(15);
    while publisher.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = publisher.kill();
            panic!(
                "publisher still connected 15 s after the cancel\n{}",
                server.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server.log().contains("publishing stopped"),
        "{}",
        server.log()
    );

    // A cancelled event takes no publisher: ffmpeg is refused and exits at once.
    let again = ffmpeg_publish(&url, 5).wait_with_output().unwrap();
    assert!(
        !again.status.success(),
        "a cancelled event accepted a publisher"
    );
}
