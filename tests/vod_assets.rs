//! End-to-end: live → VOD assets. `floodlight up` with the default ladder, 60 s published
//! over RTMP by ffmpeg with its frame number burned into the picture as a 12-bit barcode,
//! then a `segment` and a `frame` asset of the same 20.5 s range through `POST /v1/assets`,
//! as an operator would: durations against the range, every rendition decoding with
//! `ffmpeg -f null`, and the frame asset's first picture being the frame at `start`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_KEY, Server, wait_for_ok};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The publisher's frame rate, 30000/1001: a frame lasts this many milliseconds.
const FRAME_MS: f64 = 1001.0 / 30.0;
/// Bits of the barcode: frame numbers up to 4095 (136 s at 29.97 fps).
const BITS: u32 = 12;
/// The barcode's band at the top of the 640x360 picture: 40 px high, a 40 px box a bit.
const BOX: u32 = 40;

/// ffmpeg publishing `seconds` of 640x360 H.264 (High, B-frames, 2 s GOP) and AAC over
/// RTMP, as OBS would, with frame `n`'s number drawn as white boxes on a black band:
/// box `k` is white when bit `k` of `n` is set.
fn publish_with_frame_numbers(url: &str, seconds: u32) -> std::process::Child {
    let mut filter = format!(
        "drawbox=x=0:y=0:w={}:h={BOX}:color=black:t=fill",
        BITS * BOX
    );
    for bit in 0..BITS {
        filter.push_str(&format!(
            ",drawbox=x={}:y=0:w={BOX}:h={BOX}:color=white:t=fill:enable='mod(floor(n/{}),2)'",
            bit * BOX,
            1u32 << bit
        ));
    }
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30000/1001"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-vf", &filter])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
            "-bf",
            "2",
        ])
        .args([
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            "1000k",
        ])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv", url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg must be installed (scripts/install-deps.sh)")
}

/// The frame number burned into the first picture of the HLS playlist at `url`, whose
/// pictures are `width` x `height`.
fn first_frame_number(url: &str, width: u32, height: u32) -> u32 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", url, "-frames:v", "1"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pixels = out.stdout;
    assert_eq!(
        pixels.len(),
        (width * height) as usize,
        "{url}: one gray picture"
    );
    let scale_x = f64::from(width) / 640.0;
    let y = (f64::from(BOX) / 2.0 * f64::from(height) / 360.0) as u32;
    (0..BITS)
        .map(|bit| {
            let x = ((f64::from(bit * BOX) + f64::from(BOX) / 2.0) * scale_x) as u32;
            let on = pixels[(y * width + x) as usize] > 128;
            u32::from(on) << bit
        })
        .sum()
}

/// `ffmpeg -f null` decodes the playlist at `url` without an error.
fn decodes_cleanly(url: &str) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", url, "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{url}: {stderr}"
    );
}

/// `(EXTINF seconds, PROGRAM-DATE-TIME in Unix ms)` of each segment of a media playlist.
fn segments(playlist: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut pdt = None;
    for line in playlist.lines() {
        if let Some(date) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            let at = OffsetDateTime::parse(date, &Rfc3339).unwrap();
            pdt = Some(at.unix_timestamp_nanos() as f64 / 1e6);
        } else if let Some(duration) = line.strip_prefix("#EXTINF:") {
            let duration: f64 = duration.trim_end_matches(',').parse().unwrap();
            out.push((duration, pdt.take().expect("a PDT on every segment")));
        }
    }
    out
}

fn rfc3339(ms: f64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos((ms * 1e6) as i128)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

async fn text(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

/// `POST /v1/assets` as the admin; the 202's body.
async fn create_asset(server: &Server, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.api("/v1/assets"))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{answer:#}");
    assert_eq!(answer["state"], "queued", "{answer:#}");
    answer
}

/// Polls `GET /v1/assets/{id}` until the asset is ready; its body, and how long it took.
async fn ready(server: &Server, asset_id: &str, timeout: Duration) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let asset: Value = reqwest::Client::new()
            .get(server.api(&format!("/v1/assets/{asset_id}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match asset["state"].as_str() {
            Some("ready") => return (asset, started.elapsed()),
            Some("queued" | "processing") if started.elapsed() < timeout => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => panic!("asset {asset_id} not ready: {asset:#}\n{}", server.log()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_and_frame_assets_of_a_live_event() {
    let server = Server::start(&[
        ("FLOODLIGHT_TRANSCODER__RECONNECT_GRACE_SECS", "2"),
        ("FLOODLIGHT_CONTROL__RECONNECT_GRACE_SECS", "2"),
    ])
    .await;
    let (event_id, key, _) = server.create_event("cup final").await;
    let mut ffmpeg = publish_with_frame_numbers(&server.rtmp(&format!("/live/{key}")), 60);
    let live = server.http(&format!("/live/{event_id}/master.m3u8"));
    assert!(
        wait_for_ok(&live, Duration::from_secs(20)).await,
        "{}",
        server.log()
    );
    let master = text(&live).await;
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg failed");

    // The event's archived timeline, from a start-over playlist from before it began.
    let before = OffsetDateTime::now_utc().unix_timestamp() - 100;
    let archived = loop {
        let playlist = text(&server.http(&format!(
            "/live/{event_id}/source/index.m3u8?start={before}"
        )))
        .await;
        if playlist.contains("#EXT-X-ENDLIST") {
            break playlist;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let archived = segments(&archived);
    let first_pdt = archived[0].1;
    // 20.5 s from 20 s in, starting 17 ms into a frame's 33.4 (no rounding decides it).
    let start_ms = first_pdt + 20.0 * 1000.0 + 17.0;
    let end_ms = start_ms + 20_500.0;
    let source = json!({
        "event_id": event_id,
        "start": rfc3339(start_ms),
        "end": rfc3339(end_ms),
    });
    let segment = create_asset(
        &server,
        json!({"title": "cup final, segment", "source": source, "precision": "segment"}),
    )
    .await;
    let frame = create_asset(
        &server,
        json!({"title": "cup final, frame", "source": source, "precision": "frame"}),
    )
    .await;
    let (segment, segment_took) = ready(
        &server,
        segment["asset_id"].as_str().unwrap(),
        Duration::from_secs(60),
    )
    .await;
    let (frame, frame_took) = ready(
        &server,
        frame["asset_id"].as_str().unwrap(),
        Duration::from_secs(240),
    )
    .await;
    println!("segment asset ready in {segment_took:?}, frame asset in {frame_took:?}");
    assert_eq!(segment["progress"], 1.0, "{segment:#}");

    // The ladder from a 360p publisher: the source passed through, 240p, audio.
    let renditions = |asset: &Value| -> Vec<(String, u32, u32)> {
        asset["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let size = |k: &str| r[k].as_u64().unwrap_or(0) as u32;
                (
                    r["name"].as_str().unwrap().to_string(),
                    size("width"),
                    size("height"),
                )
            })
            .collect()
    };
    let names: Vec<String> = renditions(&frame).into_iter().map(|r| r.0).collect();
    assert!(names.len() >= 3, "{frame:#}");
    for name in ["source", "audio"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name}: {frame:#}\n{master}"
        );
    }

    for (asset, precision) in [(&segment, "segment"), (&frame, "frame")] {
        let hls = asset["playback"]["hls"].as_str().unwrap();
        assert!(hls.ends_with("/master.m3u8"), "{asset:#}");
        let base = hls.trim_end_matches("master.m3u8");
        let vod_master = text(hls).await;
        assert!(
            vod_master.contains("#EXT-X-I-FRAME-STREAM-INF"),
            "{vod_master}"
        );
        for (name, width, height) in renditions(asset) {
            let url = format!("{base}{name}/index.m3u8");
            let playlist = text(&url).await;
            assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{playlist}");
            assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
            assert!(
                playlist.contains("#EXT-X-INDEPENDENT-SEGMENTS"),
                "{playlist}"
            );
            let listed = segments(&playlist);
            let total: f64 = listed.iter().map(|s| s.0).sum();
            let (last_duration, last_pdt) = *listed.last().unwrap();
            match precision {
                // Covers the range, within one segment at either end.
                "segment" => {
                    let longest = listed.iter().map(|s| s.0).fold(0.0, f64::max);
                    assert!(listed[0].1 <= start_ms + 1.0, "{name}: {playlist}");
                    assert!(last_pdt + last_duration * 1000.0 >= end_ms - 1.0, "{name}");
                    assert!(total <= 20.5 + 2.0 * longest + 0.01, "{name}: {total} s");
                }
                // Within one frame of 20.5 s: a video frame, or an AAC frame.
                _ => {
                    let one_frame = if width > 0 {
                        FRAME_MS / 1000.0
                    } else {
                        1024.0 / 48000.0
                    };
                    assert!(
                        (total - 20.5).abs() <= one_frame + 0.001,
                        "{name}: {total} s for 20.5 s\n{playlist}"
                    );
                }
            }
            decodes_cleanly(&url);
            if width > 0 && precision == "frame" {
                let iframes = text(&format!("{base}{name}/iframes.m3u8")).await;
                assert!(iframes.contains("#EXT-X-BYTERANGE"), "{iframes}");
                let _ = height;
            }
        }
    }

    // The frame asset's first picture is the frame at `start`: the segment asset's first
    // segment starts at a keyframe whose number and PDT give every later frame's.
    let segment_base = segment["playback"]["hls"]
        .as_str()
        .unwrap()
        .trim_end_matches("master.m3u8");
    let frame_base = frame["playback"]["hls"]
        .as_str()
        .unwrap()
        .trim_end_matches("master.m3u8");
    for (name, width, height) in renditions(&frame).into_iter().filter(|r| r.1 > 0) {
        let reference_url = format!("{segment_base}{name}/index.m3u8");
        let reference_pdt = segments(&text(&reference_url).await)[0].1;
        let reference = first_frame_number(&reference_url, width, height);
        let expected = reference + ((start_ms - reference_pdt) / FRAME_MS).ceil() as u32;
        let first = first_frame_number(&format!("{frame_base}{name}/index.m3u8"), width, height);
        assert_eq!(
            first,
            expected,
            "{name}: the frame asset starts at frame {first}; the frame at start is {expected} \
             (segment asset starts at frame {reference}, {} ms before start)",
            start_ms - reference_pdt
        );
    }

    // The event ended, and recorded itself: a whole-event segment asset of its own.
    let deadline = Instant::now() + Duration::from_secs(60);
    let recording = loop {
        let page: Value = reqwest::Client::new()
            .get(server.api(&format!("/v1/assets?event_id={event_id}")))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = page["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{page:#}"))
            .iter()
            .find(|a| a["recording"] == true)
            .cloned();
        match found {
            Some(asset) if asset["state"] == "ready" => break asset,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
            other => panic!("no ready recording of the event: {other:#?}\n{page:#}"),
        }
    };
    let whole = recording["duration_s"].as_f64().unwrap();
    assert!(
        (55.0..66.0).contains(&whole),
        "60 s published: {recording:#}"
    );
    assert_eq!(recording["title"], "cup final", "{recording:#}");

    // A poster per asset.
    let poster = frame["playback"]["poster"].as_str().expect("a poster");
    let jpeg = reqwest::get(poster).await.unwrap();
    assert_eq!(jpeg.status(), 200);
    assert_eq!(jpeg.headers()["content-type"], "image/jpeg");
    assert_eq!(&jpeg.bytes().await.unwrap()[..2], &[0xFF, 0xD8]);
}
