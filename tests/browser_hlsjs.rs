//! End-to-end in a real browser: the real `floodlight up`, ffmpeg publishing over RTMP,
//! and hls.js in `lowLatencyMode` playing the LL-HLS stream inside headless Chromium
//! (`player-test/browser/play.mjs`). Checks what a viewer gets: moving picture at the
//! published size, decoded audio, no fatal hls.js error, a position near the live edge.
//!
//! Needs Debian's `chromium`, Node.js and `npm ci` in `player-test/browser`, which
//! `scripts/install-deps.sh` provides. When they are missing the test fails and says so;
//! it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Server, ffmpeg_publish, ffmpeg_publish_sized};
use serde_json::Value;

/// Where `play.mjs` and its `node_modules` live.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("player-test/browser")
}

/// Fails with what to run when the browser check cannot run here.
fn require_browser_tools(dir: &Path) {
    for module in ["hls.js/dist/hls.min.js", "playwright-core/package.json"] {
        assert!(
            dir.join("node_modules").join(module).is_file(),
            "{} is missing: run scripts/install-deps.sh (it runs `npm ci` in player-test/browser)",
            dir.join("node_modules").join(module).display()
        );
    }
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: run scripts/install-deps.sh (Debian package `chromium`)"
    );
}

/// Waits until the media playlist at `url` lists a complete segment. In a stream's first
/// segment the playlist holds only parts, and hls.js 1.7.4 meets that with
/// `levelEmptyError` and retries; once (1 of 7 runs on 2026-11-24) it never began playing
/// after them. That start-up is not what this test is about (viewers who join
/// after a stream's first two seconds never see it); see the closing notes.
async fn wait_for_segment(url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
            && r.text().await.is_ok_and(|t| t.contains("#EXTINF:"))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Runs `play.mjs` on `master` with `args` and returns its JSON report, failing the test
/// (with the report and the server log) unless hls.js played.
async fn play(server: &Server, master: &str, args: &[&str]) -> Value {
    let dir = browser_dir();
    let run = tokio::process::Command::new("node")
        .arg(dir.join("play.mjs"))
        .arg(master)
        .args(["--startup-timeout", "20"])
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(120), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run node ({e}): run scripts/install-deps.sh"),
        Err(_) => panic!("play.mjs did not finish within 120 s"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let report: Value = match line.map(serde_json::from_str) {
        Some(Ok(report)) => report,
        _ => panic!(
            "play.mjs gave no JSON report (exit {:?}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status.code()
        ),
    };
    println!("{report}");
    assert!(
        out.status.success() && report["ok"] == true,
        "hls.js did not play: {}\n{report:#}\nstderr: {stderr}\nserver log:\n{}",
        report["failure"],
        server.log()
    );
    report
}

/// The browser tests run one at a time: each runs a real-time encoder, the server's
/// ladder and a browser decoding video on a 2-core machine; two at once starve each
/// other into stalls that are not the player's.
static PLAYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("browser report lacks {pointer}:\n{report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_in_chromium_plays_video_and_audio_near_the_live_edge() {
    let dir = browser_dir();
    require_browser_tools(&dir);
    let _one_at_a_time = PLAYING.lock().await;

    // The publisher's stream alone (no encoded rung): what this test is about is hls.js
    // near the live edge, and the CPU of a ladder beside Chromium on 2 cores makes hls.js
    // 1.7.4's start-up race (a segment's last part never loaded, see index.html) stall it
    // for good in some runs. The ladder in the browser is the next test's.
    let server = Server::start(&[
        ("FLOODLIGHT_TRANSCODER__LADDER", "publisher"),
        (
            "FLOODLIGHT_TRANSCODER__LADDERS__PUBLISHER",
            "{ source = true, rungs = [] }",
        ),
    ])
    .await;
    let (event_id, key, _) = server.create_event("browser").await;
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 30);
    let master = server.http(&format!("/live/{event_id}/master.m3u8"));
    for rendition in ["source", "audio"] {
        let media = server.http(&format!("/live/{event_id}/{rendition}/index.m3u8"));
        assert!(
            wait_for_segment(&media, Duration::from_secs(15)).await,
            "no complete segment in {media}:\n{}",
            server.log()
        );
    }

    // Startup (browser launch, first parts) plus 15 s of playback fit in the 30 s publish.
    let report = play(&server, &master, &["--seconds", "15"]).await;
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();

    assert_eq!(report["playing"], true, "{report:#}");
    assert!(report["fatal_error"].is_null(), "{report:#}");
    let advanced = number(&report, "/current_time_advanced_s");
    // 15 s sampled; hls.js 1.7.4's start-up race (see player-test/browser/index.html) can
    // cost one stall of about 2 s, after which it catches up at up to 1.5x.
    assert!(
        advanced >= 10.0,
        "media clock moved only {advanced} s: {report:#}"
    );

    // Video: the published 640x360, decoded frame by frame at ~29.97 fps.
    assert_eq!(number(&report, "/video/width"), 640.0, "{report:#}");
    assert_eq!(number(&report, "/video/height"), 360.0, "{report:#}");
    let frames = number(&report, "/video/total_frames");
    let dropped = number(&report, "/video/dropped_frames");
    assert!(frames > 200.0, "decoded frames: {frames}");
    // Dropped frames are the renderer missing its deadlines: headless Chromium composites
    // in software, on the same 2 cores as the server and the publisher. A fresh-clone CI
    // run saw 24 of 453 (5.3%) with 0 stalls and 1.19 s of latency; a stream that fails
    // to decode drops far more, and stalls, media time and latency are checked too.
    assert!(
        dropped <= frames * 0.10,
        "dropped {dropped} of {frames} frames"
    );

    // Audio: the AAC rendition of the master playlist's AUDIO group, in its own
    // SourceBuffer, and consumed by Chromium's audio decoder.
    assert_eq!(number(&report, "/audio/tracks"), 1.0, "{report:#}");
    assert_eq!(report["audio"]["codec"], "mp4a.40.2", "{report:#}");
    assert_eq!(report["audio"]["source_buffer"], true, "{report:#}");
    assert!(
        number(&report, "/audio/decoded_bytes") > 10_000.0,
        "audio not decoded: {report:#}"
    );

    // LL-HLS: hls.js fetched parts (EXT-X-PART), not only whole segments.
    assert!(number(&report, "/parts_loaded") > 40.0, "{report:#}");

    // Near the live edge. hls.js starts about PART-HOLD-BACK plus its start-up time
    // behind the edge and, at its default playback rate, keeps that distance; the
    // precise figure belongs to the benchmark, this only catches a player that fell
    // back to segment-level latency or drifted away.
    let latency = number(&report, "/latency_s/p50");
    assert!(
        latency > 0.0 && latency < 6.0,
        "hls.latency p50 {latency} s"
    );

    // Some runs stall once, briefly, a second or two after start-up, while hls.js lines
    // the audio rendition up with the video; a stream that keeps stalling fails.
    let stalls = number(&report, "/stalls");
    assert!(stalls <= 2.0, "{stalls} stalls in 15 s: {report:#}");
}

/// A 720p publisher and a three-rung ladder (source 1280x720 passed through, 360p and 240p
/// encoded): hls.js lists the three variants and, asked for the next one every 4 s (as
/// its ABR would switch, at a fragment boundary), plays each of them in turn without a
/// fatal error or a stall at the switches. This is what the ladder's keyframe alignment
/// is for: every rung's segments start with an IDR at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_switches_between_the_ladder_rungs_while_playing() {
    let dir = browser_dir();
    require_browser_tools(&dir);
    let _one_at_a_time = PLAYING.lock().await;

    let ladder = r#"{ source = true, rungs = [ { name = "360p", height = 360, bitrate_bps = 800000 }, { name = "240p", height = 240, bitrate_bps = 400000 } ] }"#;
    let server = Server::start(&[
        ("FLOODLIGHT_TRANSCODER__LADDER", "switching"),
        ("FLOODLIGHT_TRANSCODER__LADDERS__SWITCHING", ladder),
    ])
    .await;
    let (event_id, key, _) = server.create_event("browser ladder").await;
    let mut ffmpeg = ffmpeg_publish_sized(&server.rtmp(&format!("/live/{key}")), "1280x720", 45);
    for rendition in ["source", "360p", "240p", "audio"] {
        let media = server.http(&format!("/live/{event_id}/{rendition}/index.m3u8"));
        assert!(
            wait_for_segment(&media, Duration::from_secs(20)).await,
            "no complete segment in {media}:\n{}",
            server.log()
        );
    }
    let master = server.http(&format!("/live/{event_id}/master.m3u8"));
    let report = play(
        &server,
        &master,
        &["--seconds", "26", "--switch-every", "4"],
    )
    .await;
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();

    assert!(report["fatal_error"].is_null(), "{report:#}");
    let levels = report["levels"].as_array().expect("levels");
    let mut heights: Vec<u64> = levels.iter().filter_map(|l| l["height"].as_u64()).collect();
    heights.sort_unstable();
    assert_eq!(heights, [240, 360, 720], "{report:#}");

    // hls.js switched to every level, and the picture on screen changed size with it.
    let switched: std::collections::BTreeSet<u64> = report["level_switches"]
        .as_array()
        .expect("level_switches")
        .iter()
        .filter_map(|s| s["level"].as_u64())
        .collect();
    assert_eq!(
        switched.len(),
        3,
        "levels switched to: {switched:?}\n{report:#}"
    );
    let shown: std::collections::BTreeSet<u64> = report["sizes_seen"]
        .as_array()
        .expect("sizes_seen")
        .iter()
        .filter_map(|s| s["height"].as_u64())
        .collect();
    for height in [240, 360, 720] {
        assert!(
            shown.contains(&height),
            "{height}p never on screen: {shown:?}\n{report:#}"
        );
    }

    // Played through the switches: the media clock kept pace, at most the start-up
    // stall (see the first test), no stall per switch.
    let advanced = number(&report, "/current_time_advanced_s");
    assert!(
        advanced >= 20.0,
        "media clock moved only {advanced} s: {report:#}"
    );
    let stalls = number(&report, "/stalls");
    assert!(
        stalls <= 2.0,
        "{stalls} stalls over the switches: {report:#}"
    );
    let frames = number(&report, "/video/total_frames");
    let dropped = number(&report, "/video/dropped_frames");
    assert!(
        dropped <= frames * 0.05,
        "dropped {dropped} of {frames} frames"
    );
}

/// Start-over in the browser: hls.js plays `master.m3u8?start=T`, 20 s behind the live
/// edge, from its beginning (`startPosition: 0`, as a "watch from the start" button
/// does): EVENT playlists from the archive, whole segments, no parts, picture and sound,
/// and it stays about 20 s behind the edge rather than jumping to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_in_chromium_plays_start_over_from_the_archive() {
    let dir = browser_dir();
    require_browser_tools(&dir);
    let _one_at_a_time = PLAYING.lock().await;
    let server = Server::start(&[
        ("FLOODLIGHT_TRANSCODER__LADDER", "publisher"),
        (
            "FLOODLIGHT_TRANSCODER__LADDERS__PUBLISHER",
            "{ source = true, rungs = [] }",
        ),
    ])
    .await;
    let (event_id, key, _) = server.create_event("browser start-over").await;
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 55);
    let media = server.http(&format!("/live/{event_id}/source/index.m3u8"));
    assert!(
        wait_for_segment(&media, Duration::from_secs(15)).await,
        "no complete segment in {media}:\n{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_secs(22)).await;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 20.0;
    let master = server.http(&format!("/live/{event_id}/master.m3u8?start={start:.3}"));
    let report = play(
        &server,
        &master,
        &["--seconds", "12", "--start-position", "0"],
    )
    .await;
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();

    assert_eq!(report["playing"], true, "{report:#}");
    assert!(report["fatal_error"].is_null(), "{report:#}");
    let advanced = number(&report, "/current_time_advanced_s");
    assert!(
        advanced >= 9.0,
        "media clock moved only {advanced} s: {report:#}"
    );
    assert_eq!(number(&report, "/video/width"), 640.0, "{report:#}");
    assert!(
        number(&report, "/audio/decoded_bytes") > 10_000.0,
        "audio not decoded: {report:#}"
    );
    // Whole segments from the archive, no LL-HLS parts.
    assert_eq!(number(&report, "/parts_loaded"), 0.0, "{report:#}");
    assert!(number(&report, "/segments_loaded") >= 4.0, "{report:#}");
    // It plays from T, about 20 s behind the live edge (plus its start-up), not at it.
    let behind = number(&report, "/pdt_latency_s/p50");
    assert!(
        (15.0..40.0).contains(&behind),
        "PROGRAM-DATE-TIME {behind} s behind now: {report:#}"
    );
    let stalls = number(&report, "/stalls");
    assert!(stalls <= 1.0, "{stalls} stalls: {report:#}");
}
