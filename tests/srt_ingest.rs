//! End-to-end: the real `floodlight up`, Debian's ffmpeg (libsrt) publishing MPEG-TS over
//! SRT with each stream ID form, the LL-HLS player following with audio; refusals inside
//! the SRT handshake; garbage datagrams on the SRT port.

mod common;

use std::net::UdpSocket;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{ADMIN_KEY, Server, ffmpeg_publish_as, wait_for_ok};
use floodlight_player::{PlayerConfig, follow};

/// Polls a media playlist until it lists a part; the time that took.
async fn first_part(url: &str, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
            && r.text().await.is_ok_and(|t| t.contains("#EXT-X-PART:"))
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The last (msn, part) a media playlist lists, from its EXT-X-PART URIs
/// (`{msn}.{part}.m4s`, the origin's naming).
async fn last_part(url: &str) -> (u64, u32) {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|attrs| attrs.split("URI=\"").nth(1)?.split('"').next())
        .find_map(|uri| {
            let mut it = uri.trim_end_matches(".m4s").split('.');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .unwrap_or_default()
}

async fn live_status(server: &Server, event_id: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(server.api(&format!("/v1/events/{event_id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The server's log without its ANSI colour codes.
fn plain_log(server: &Server) -> String {
    let log = server.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs a publisher to its end off the async runtime.
async fn finish(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_publish_with_either_stream_id_form_plays_with_audio() {
    let server = Server::start(&[("FLOODLIGHT_TRANSCODER__RECONNECT_GRACE_SECS", "20")]).await;
    let (event_id, key, _) = server.create_event("srt e2e").await;
    let master = server.http(&format!("/live/{event_id}/master.m3u8"));
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));

    // `streamid={stream_key}`.
    let ffmpeg = ffmpeg_publish_as("mpegts", &server.srt(&key), 16);
    let took = first_part(&media, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no part:\n{}", server.log()));
    // Includes ffmpeg's start and x264's lookahead; docs/benchmarks.md has the figures.
    println!("SRT publish to first part: {} ms", took.as_millis());

    let mut config = PlayerConfig::new(master.clone());
    config.duration = Duration::from_secs(10);
    let player = tokio::spawn(follow(config));
    let status = live_status(&server, &event_id).await;
    assert_eq!(status["live"]["publishing"], true, "{status}");
    assert_eq!(status["live"]["protocol"], "srt", "{status}");
    assert!(
        !status.to_string().contains(&key),
        "GET never shows the key"
    );
    let report = player.await.unwrap().expect("player follows the stream");
    println!("{report}");
    assert!(report.is_clean(), "player errors: {:#?}", report.errors);
    assert_eq!(report.parts_over_part_target, 0);
    let audio = report
        .renditions
        .iter()
        .find(|r| r.name == "audio")
        .expect("an audio rendition");
    assert!(
        audio
            .sample_entry
            .as_deref()
            .is_some_and(|e| e.contains("mp4a")),
        "{audio:?}"
    );
    assert!(
        audio.parts_fetched >= 20,
        "audio parts: {}",
        audio.parts_fetched
    );
    // The feed's health: 2 s GOP (60 frames at 29.97 fps), frames counted, live.
    let status = live_status(&server, &event_id).await;
    let publisher = &status["live"]["publishers"][0];
    assert_eq!(publisher["protocol"], "srt", "{status}");
    assert_eq!(publisher["live"], true, "{status}");
    assert_eq!(publisher["keyframe_interval_ms"], 2002, "{status}");
    assert!(publisher["frames"].as_u64().unwrap() > 300, "{status}");
    assert!(
        publisher["bitrate_bps"].as_u64().unwrap() > 100_000,
        "{status}"
    );
    let out = finish(ffmpeg).await;
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SRT drains a closed connection for twice its latency; until then the publisher
    // holds the event and a new one would be refused (1409).
    let deadline = Instant::now() + Duration::from_secs(10);
    while live_status(&server, &event_id).await["live"]["publishing"] == true {
        assert!(Instant::now() < deadline, "the publisher never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The access-control form, as ffmpeg sends it (the `#` raw), continues the stream.
    let (msn, _) = last_part(&media).await;
    let stream_id = format!("#!::r={key},m=publish");
    let ffmpeg = ffmpeg_publish_as("mpegts", &server.srt(&stream_id), 10);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The reconnect starts a new segment: one after the last listed means new media.
    while last_part(&media).await.0 <= msn {
        assert!(
            Instant::now() < deadline,
            "no new parts after the reconnect:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = live_status(&server, &event_id).await;
    assert_eq!(status["live"]["protocol"], "srt", "{status}");
    let out = finish(ffmpeg).await;
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let playlist = reqwest::get(&media).await.unwrap().text().await.unwrap();
    assert!(
        playlist.contains("#EXT-X-DISCONTINUITY"),
        "a reconnect is a discontinuity:\n{playlist}"
    );
}

/// Deterministic junk for the SRT port: random datagrams (xorshift), plus a handshake
/// crafted to reach a panic in the published srt-protocol 0.4.4's handshake parser (an
/// extension of type 6, "congestion"), which took srt-tokio's listener task down
/// (fixed in vendor/srt-protocol).
fn garbage() -> Vec<Vec<u8>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut datagrams: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let len = (next() % 1500) as usize + 1;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect();
    let mut handshake = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    handshake.extend(5i32.to_be_bytes()); // HSv5
    handshake.extend([0, 0, 0, 4]); // no encryption, extension flags: CONFIG
    handshake.extend(1u32.to_be_bytes()); // initial sequence number
    handshake.extend(1500u32.to_be_bytes());
    handshake.extend(8192u32.to_be_bytes());
    handshake.extend((-1i32).to_be_bytes()); // conclusion
    handshake.extend(7u32.to_be_bytes()); // socket id
    handshake.extend(0i32.to_be_bytes()); // cookie
    handshake.extend([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    handshake.extend([0, 6, 0, 1, b'e', b'v', b'i', b'l']);
    datagrams.push(handshake);
    // SRT extension control packets of subtype 8 (group) without its 4 body bytes, and 5
    // (stream id) with no words: they panicked the vendored srt-protocol's packet parser
    // too (found by fuzz/srt_listener).
    for subtype in [8, 5] {
        datagrams.push(vec![
            0xff, 0xff, 0x00, subtype, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x23, 0xc0, 0x00, 0x0a,
        ]);
    }
    datagrams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_happen_in_the_handshake_and_garbage_hurts_no_publisher() {
    let server = Server::start(&[]).await;
    let (event_id, key, _) = server.create_event("srt refusals").await;
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));

    // SRT access control: 1401 unauthorized, 1405 bad mode (`m` absent means request).
    for (stream_id, reject_reason) in [
        ("fl_live_not_a_key".to_string(), 1401),
        (format!("#!::r={key},m=request"), 1405),
        (format!("#!::r={key}"), 1405),
    ] {
        let started = Instant::now();
        let out = finish(ffmpeg_publish_as("mpegts", &server.srt(&stream_id), 10)).await;
        assert!(!out.status.success(), "{stream_id} was accepted");
        // Refused at connect, not after some media: well before the 10 s of input end.
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "ffmpeg ran {:?}",
            started.elapsed()
        );
        let log = plain_log(&server);
        assert!(
            log.contains(&format!("reject_reason={reject_reason}")),
            "no {reject_reason} refusal:\n{log}"
        );
    }
    let log = plain_log(&server);
    assert!(!log.contains("publish started"));
    assert!(!log.contains(&key), "the key is never logged");
    assert_eq!(reqwest::get(&media).await.unwrap().status(), 404);

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in garbage() {
        socket
            .send_to(&datagram, ("127.0.0.1", server.srt_port))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ffmpeg = ffmpeg_publish_as("mpegts", &server.srt(&key), 10);
    assert!(
        wait_for_ok(&media, Duration::from_secs(20)).await,
        "no playlist after garbage:\n{}",
        server.log()
    );
    assert!(first_part(&media, Duration::from_secs(20)).await.is_some());
    // The event has no backup ingest: a second publisher is refused, 1409 conflict.
    let second = finish(ffmpeg_publish_as("mpegts", &server.srt(&key), 5)).await;
    assert!(!second.status.success(), "a second publisher was accepted");
    assert!(plain_log(&server).contains("reject_reason=1409"));
    let out = finish(ffmpeg).await;
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        reqwest::get(server.api("/healthz"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_passphrase_requires_aes_with_that_passphrase() {
    let server = Server::start(&[]).await;
    let passphrase = "correct-horse-battery-staple";
    let created: serde_json::Value = reqwest::Client::new()
        .post(server.api("/v1/events"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({
            "title": "srt aes",
            "ingest": { "srt_passphrase": passphrase }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event_id = created["event_id"].as_str().unwrap().to_string();
    let key = created["stream_key"].as_str().unwrap().to_string();
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));

    // Unencrypted: srt-tokio answers SRT_REJ_UNSECURE in the handshake.
    let out = finish(ffmpeg_publish_as("mpegts", &server.srt(&key), 10)).await;
    assert!(!out.status.success(), "an unencrypted caller was accepted");
    assert!(plain_log(&server).contains("srt handshake failed"));
    // A wrong passphrase: the key material does not unwrap (SRT_REJ_BADSECRET).
    let wrong = format!("{key}&passphrase=not-the-right-one");
    let out = finish(ffmpeg_publish_as("mpegts", &server.srt(&wrong), 10)).await;
    assert!(!out.status.success(), "a wrong passphrase was accepted");
    let log = plain_log(&server);
    assert!(!log.contains("publish started"), "{log}");
    assert!(!log.contains(passphrase), "the passphrase is never logged");

    let right = format!("{key}&passphrase={passphrase}");
    let ffmpeg = ffmpeg_publish_as("mpegts", &server.srt(&right), 8);
    assert!(
        first_part(&media, Duration::from_secs(20)).await.is_some(),
        "no part over AES:\n{}",
        server.log()
    );
    assert!(plain_log(&server).contains("encrypted=true"));
    let out = finish(ffmpeg).await;
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_publisher_takes_over_when_the_live_one_stalls() {
    let server = Server::start(&[
        ("FLOODLIGHT_TRANSCODER__RECONNECT_GRACE_SECS", "20"),
        ("FLOODLIGHT_INGEST__BACKUP_TAKEOVER_SECS", "3"),
    ])
    .await;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(server.api("/v1/events"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({ "title": "backup e2e", "ingest": { "backup": true } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event_id = created["event_id"].as_str().unwrap().to_string();
    let key = created["stream_key"].as_str().unwrap().to_string();
    let backup: serde_json::Value = http
        .post(server.api(&format!("/v1/events/{event_id}/keys")))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({ "role": "backup" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let backup_key = backup["stream_key"].as_str().unwrap().to_string();
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));

    // The live publisher over SRT, the backup over RTMP.
    let mut primary = ffmpeg_publish_as("mpegts", &server.srt(&key), 60);
    assert!(
        first_part(&media, Duration::from_secs(20)).await.is_some(),
        "no part:\n{}",
        server.log()
    );
    let mut standby = ffmpeg_publish_as("flv", &server.rtmp(&format!("/live/{backup_key}")), 60);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = live_status(&server, &event_id).await;
    assert_eq!(
        status["live"]["protocol"], "srt",
        "the standby waits: {status}"
    );
    let publishers = status["live"]["publishers"].as_array().unwrap();
    assert_eq!(publishers.len(), 2, "{status}");
    assert!(
        publishers
            .iter()
            .any(|p| p["protocol"] == "rtmp" && p["live"] == false),
        "{status}"
    );

    // The live encoder freezes (its connection stays open, nothing comes): after
    // backup_takeover_secs the standby's media goes on air, as a reconnect.
    let (msn, _) = last_part(&media).await;
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &primary.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = live_status(&server, &event_id).await;
        if status["live"]["protocol"] == "rtmp" && last_part(&media).await.0 > msn + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no takeover: {status}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let playlist = reqwest::get(&media).await.unwrap().text().await.unwrap();
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    assert!(plain_log(&server).contains("backup publisher takes over"));

    let _ = primary.kill();
    let _ = primary.wait();
    let _ = standby.kill();
    let _ = standby.wait();
}

/// Issue 10, finding 1: a caller that encrypts towards an event without a passphrase
/// panicked the published srt-protocol 0.4.4 (`hsv5.rs:94`), and with it srt-tokio's
/// listener task and every publisher on the port; so did the crafted handshake above.
/// Finding 2: every malformed datagram wrote a WARN line. Now the caller is refused in
/// the handshake (SRT_REJ_UNSECURE), the listener never restarts, the publisher already
/// on air goes on without a discontinuity, and 30,000 junk datagrams log a few lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_caller_can_cut_another_srt_publisher() {
    let server = Server::start(&[]).await;
    let (on_air, on_air_key, _) = server.create_event("srt on air").await;
    let (_, other_key, _) = server.create_event("srt without passphrase").await;
    let media = server.http(&format!("/live/{on_air}/source/index.m3u8"));
    let ffmpeg = ffmpeg_publish_as("mpegts", &server.srt(&on_air_key), 16);
    assert!(
        first_part(&media, Duration::from_secs(20)).await.is_some(),
        "no part:\n{}",
        server.log()
    );

    // An encrypting caller, with libsrt's default key length (pbkeylen unset) and 0.
    for query in ["", "&pbkeylen=0"] {
        let url = server.srt(&format!(
            "{other_key}&passphrase=averylongpassphrase{query}"
        ));
        let out = finish(ffmpeg_publish_as("mpegts", &url, 2)).await;
        assert!(!out.status.success(), "an encrypting caller was accepted");
    }
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in garbage() {
        socket
            .send_to(&datagram, ("127.0.0.1", server.srt_port))
            .unwrap();
    }
    let junk = [0x5a_u8; 64];
    for _ in 0..30_000 {
        socket
            .send_to(&junk, ("127.0.0.1", server.srt_port))
            .unwrap();
    }
    let (msn, _) = last_part(&media).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while last_part(&media).await.0 < msn + 2 {
        assert!(
            Instant::now() < deadline,
            "the publisher on air stopped:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = finish(ffmpeg).await;
    assert!(
        out.status.success(),
        "the publisher on air was cut: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = plain_log(&server);
    assert!(
        !log.contains("srt listener stopped unexpectedly"),
        "the listener died:\n{log}"
    );
    // One publish from start to end: the publisher on air never had to reconnect.
    assert_eq!(
        log.matches("publish started").count(),
        1,
        "the publisher on air reconnected:\n{log}"
    );
    let warnings = log.lines().filter(|line| line.contains(" WARN ")).count();
    assert!(warnings < 40, "{warnings} WARN lines:\n{log}");
}
