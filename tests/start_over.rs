//! End-to-end: start-over and time-shift from the archive. `floodlight up`, an ffmpeg
//! publisher over RTMP, and playlists at `/live/{event_id}/master.m3u8?start=T[&end=T2]`:
//! an EVENT playlist from T growing with the live edge, a finished VOD clip of a range,
//! segments that outlive the live window, and the 400s and 404s of bad ranges.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Server, ffmpeg_publish, wait_for_ok};
use floodlight_player::{PlayerConfig, follow};

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `(EXTINF seconds, PROGRAM-DATE-TIME as Unix seconds, URI)` of each segment.
fn segments(playlist: &str) -> Vec<(f64, f64, String)> {
    let mut out = Vec::new();
    let (mut pdt, mut extinf) = (None, None);
    for line in playlist.lines() {
        if let Some(date) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            let at =
                time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339)
                    .unwrap();
            pdt = Some(at.unix_timestamp_nanos() as f64 / 1e9);
        } else if let Some(duration) = line.strip_prefix("#EXTINF:") {
            extinf = Some(duration.trim_end_matches(',').parse::<f64>().unwrap());
        } else if !line.starts_with('#') && !line.is_empty() {
            out.push((
                extinf.take().unwrap(),
                pdt.take().unwrap(),
                line.to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_over_plays_the_event_from_the_archive() {
    // The stream ends 2 s after its publisher, not 30.
    let server = Server::start(&[
        ("FLOODLIGHT_TRANSCODER__RECONNECT_GRACE_SECS", "2"),
        ("FLOODLIGHT_CONTROL__RECONNECT_GRACE_SECS", "2"),
    ])
    .await;
    let (event_id, key, _) = server.create_event("start-over").await;
    let mut ffmpeg = ffmpeg_publish(&server.rtmp(&format!("/live/{key}")), 30);
    let live = server.http(&format!("/live/{event_id}/master.m3u8"));
    assert!(
        wait_for_ok(&live, Duration::from_secs(15)).await,
        "no live master playlist:\n{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_secs(20)).await;

    // From 18 s back: an EVENT playlist from there, growing, every variant from T.
    let start = now_secs() - 18.0;
    let master_url = server.http(&format!("/live/{event_id}/master.m3u8?start={start:.3}"));
    let (status, master) = get(&master_url).await;
    assert_eq!(status, 200, "{master}\n{}", server.log());
    assert!(master.contains("#EXT-X-STREAM-INF"), "{master}");
    assert!(
        master.contains(&format!("/index.m3u8?start={start:.3}")),
        "variant URIs keep the start: {master}"
    );
    let audio_url = server.http(&format!(
        "/live/{event_id}/audio/index.m3u8?start={start:.3}"
    ));
    let (status, audio) = get(&audio_url).await;
    assert_eq!(status, 200, "{audio}");
    assert!(audio.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{audio}");
    assert!(!audio.contains("#EXT-X-ENDLIST"), "still live: {audio}");
    assert!(
        !audio.contains("#EXT-X-PART"),
        "no parts in start-over: {audio}"
    );
    let listed = segments(&audio);
    let (first_duration, first_pdt, first_uri) = listed[0].clone();
    assert!(
        first_pdt <= start + 0.001 && start < first_pdt + first_duration,
        "the first segment holds T={start}: {audio}"
    );
    // Its media is the archived segment, from the live URL.
    let segment_url = server.http(&format!("/live/{event_id}/audio/{first_uri}"));
    let segment = reqwest::get(&segment_url).await.unwrap();
    assert_eq!(segment.status(), 200);
    assert_eq!(
        segment.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let bytes = segment.bytes().await.unwrap();
    assert_eq!(&bytes[4..8], b"moof");
    // A Range request on it: 206 with the slice.
    let ranged = reqwest::Client::new()
        .get(&segment_url)
        .header("range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 0-7/{}", bytes.len())
    );
    assert_eq!(ranged.bytes().await.unwrap(), bytes.slice(0..8));

    // A finished clip of 6 s, ended 12 s ago: VOD with ENDLIST, covering the range within
    // a segment.
    let end = start + 6.0;
    let (status, clip) = get(&server.http(&format!(
        "/live/{event_id}/audio/index.m3u8?start={start:.3}&end={end:.3}"
    )))
    .await;
    assert_eq!(status, 200, "{clip}");
    assert!(clip.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{clip}");
    assert!(clip.contains("#EXT-X-ENDLIST"), "{clip}");
    let listed = segments(&clip);
    let (last_duration, last_pdt, _) = listed.last().unwrap().clone();
    assert!(listed[0].1 <= start + 0.001, "{clip}");
    assert!(
        last_pdt < end && end <= last_pdt + last_duration + 0.001,
        "{clip}"
    );

    // floodlight-player follows the start-over stream as a player would: EVENT playlists
    // reloaded, every segment fetched and checked, from T and about 18 s behind the edge.
    let mut config = PlayerConfig::new(master_url.clone());
    config.duration = Duration::from_secs(6);
    let report = follow(config).await.expect("the player follows start-over");
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let recorded = report.recorded.as_ref().expect("a recorded playlist");
    assert!(recorded.segments_fetched >= 6, "{recorded:#?}");
    assert!(recorded.media_seconds >= 6.0, "{recorded:#?}");
    // The clip: a VOD range, fetched to its ENDLIST.
    let clip_master = server.http(&format!(
        "/live/{event_id}/master.m3u8?start={start:.3}&end={end:.3}"
    ));
    let report = follow(PlayerConfig::new(clip_master))
        .await
        .expect("the player follows the clip");
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let recorded = report.recorded.as_ref().expect("a recorded playlist");
    assert!(
        (6.0..=6.0 + 2.0 * 2.2).contains(&recorded.media_seconds),
        "{recorded:#?}"
    );

    // Bad ranges: 400 naming the parameter, 404 outside the window.
    let (status, body) =
        get(&server.http(&format!("/live/{event_id}/master.m3u8?start=soon"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("start=\\\"soon\\\""), "{body}");
    let (status, body) = get(&server.http(&format!(
        "/live/{event_id}/master.m3u8?start={start:.3}&end={:.3}",
        start - 1.0
    )))
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("end ("), "{body}");
    let (status, body) = get(&server.http(&format!(
        "/live/{event_id}/master.m3u8?start={:.3}",
        now_secs() - 3.0 * 3600.0
    )))
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("start-over window"), "{body}");

    // The event ends: the start-over playlist ends too, and stays playable.
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg failed");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ended = loop {
        let (_, audio) = get(&audio_url).await;
        if audio.contains("#EXT-X-ENDLIST") {
            break audio;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ENDLIST after the event ended: {audio}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let total: f64 = segments(&ended).iter().map(|s| s.0).sum();
    assert!(total > 10.0, "from T to the end: {ended}");
}
