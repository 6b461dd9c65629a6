//! Service tests: the origin's router driven over HTTP (`Router::oneshot`, and a real
//! listener for the server loop), with parts pushed through the push API as a transcoder
//! does. Part payloads are opaque to the origin, so they are short labelled byte strings.
//!
//! They run on paused time (`start_paused`): the origin reads tokio's clock, so a blocking
//! reload's three target durations or the retention sweep pass as soon as nothing else
//! can run, and "still waiting after 300 ms" is exact rather than a race with the machine.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use bytes::Bytes;
use floodlight_archive::{
    ArchiveWriter, AssetId, AssetManifest, AssetRendition, AssetSegment, AssetSource, EventId,
    Precision, RenditionKey, RenditionName, WriterConfig, read_range, write_manifest,
};
use floodlight_media::PlaybackAccess;
use floodlight_media::push::{LastPart, PUSH_PREFIX, RenditionDescriptor, RenditionKind};
use floodlight_media::token::{PlaybackClaims, TokenKey};
use floodlight_origin::{Origin, OriginConfig, ViewerSessions};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::time::Instant;
use tower::ServiceExt;

const EVENT: &str = "ev1";
/// Four 0.25 s parts per 1 s segment: target duration 1 s, so blocking gives up after 3 s.
const PARTS_PER_SEGMENT: u32 = 4;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// RFC 9457: errors are problem details.
    fn assert_problem(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            "application/problem+json"
        );
        let problem: serde_json::Value = serde_json::from_slice(&self.body).expect("problem JSON");
        assert_eq!(problem["status"], status.as_u16());
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
    }
}

/// One process-wide Prometheus recorder, so `/metrics` has something to render.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("recorder installs once")
        })
        .clone()
}

fn origin_with(config: OriginConfig) -> (Origin, Router) {
    let handle = metrics_handle();
    let origin = Origin::new(config, move || handle.render());
    let router = origin.router();
    (origin, router)
}

/// The tests' 1 s segment targets with a target duration factor of 1: TARGETDURATION 1,
/// so blocking gives up after 3 s.
fn config() -> OriginConfig {
    OriginConfig {
        target_duration_factor: 1.0,
        ..OriginConfig::default()
    }
}

fn app() -> Router {
    origin_with(config()).1
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    let request = Request::get(uri)
        .header(header::ORIGIN, "https://player.example")
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

fn descriptor(name: &str, kind: RenditionKind) -> RenditionDescriptor {
    let video = kind == RenditionKind::Video;
    RenditionDescriptor {
        name: name.to_string(),
        kind,
        codecs: if video { "avc1.64001f" } else { "mp4a.40.2" }.to_string(),
        width: video.then_some(1280),
        height: video.then_some(720),
        frame_rate: video.then_some(30.0),
        channels: (!video).then_some(2),
        part_target_ms: 250,
        segment_target_ms: 1000,
        access: Default::default(),
        bandwidth_hint_bps: None,
        dvr_window_secs: None,
    }
}

async fn declare(app: &Router, descriptor: &RenditionDescriptor) -> Reply {
    let request = Request::put(format!("{PUSH_PREFIX}/{EVENT}/{}", descriptor.name))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(descriptor).unwrap()))
        .unwrap();
    send(app, request).await
}

async fn push_init(app: &Router, rendition: &str, version: u32) -> Reply {
    let request = Request::put(format!("{PUSH_PREFIX}/{EVENT}/{rendition}/init/{version}"))
        .body(Body::from(format!("init:{rendition}:{version}")))
        .unwrap();
    send(app, request).await
}

fn part_payload(rendition: &str, msn: u64, part: u32) -> String {
    format!("{rendition}:{msn}.{part};")
}

/// The query string the transcoder's `reqwest::RequestBuilder::query(&PartMeta)` sends.
fn part_query(msn: u64, part: u32, last_frame_arrival_ms: i64) -> String {
    let mut query = format!(
        "msn={msn}&part={part}&duration=0.25&independent={}&init_version=0&discontinuity=false&ends_segment={}&last_frame_arrival_ms={last_frame_arrival_ms}",
        part == 0,
        part + 1 == PARTS_PER_SEGMENT,
    );
    if part == 0 {
        query.push_str(&format!(
            "&program_date_time_ms={}",
            1_700_000_000_000 + msn * 1000
        ));
    }
    query
}

async fn push_part(app: &Router, rendition: &str, msn: u64, part: u32) -> Reply {
    let request = Request::put(format!(
        "{PUSH_PREFIX}/{EVENT}/{rendition}/part/{msn}/{part}?{}",
        part_query(msn, part, 0)
    ))
    .body(Body::from(part_payload(rendition, msn, part)))
    .unwrap();
    send(app, request).await
}

/// Pushes `segments` complete segments, then `extra_parts` parts of the next one.
async fn push_parts(app: &Router, rendition: &str, segments: u64, extra_parts: u32) {
    for msn in 0..segments {
        for part in 0..PARTS_PER_SEGMENT {
            assert_eq!(
                push_part(app, rendition, msn, part).await.status,
                StatusCode::CREATED
            );
        }
    }
    for part in 0..extra_parts {
        assert_eq!(
            push_part(app, rendition, segments, part).await.status,
            StatusCode::CREATED
        );
    }
}

/// A stream with a video and an audio rendition, init version 0 of each.
async fn live_stream(app: &Router) {
    for (name, kind) in [
        ("video", RenditionKind::Video),
        ("audio", RenditionKind::Audio),
    ] {
        assert_eq!(
            declare(app, &descriptor(name, kind)).await.status,
            StatusCode::CREATED
        );
        assert_eq!(push_init(app, name, 0).await.status, StatusCode::CREATED);
    }
}

/// EXT-X-PART tag URIs of a media playlist, in order.
fn part_uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|line| line.starts_with("#EXT-X-PART:"))
        .filter_map(|line| {
            line.split("URI=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn master_playlist_lists_video_variants_with_the_audio_group() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 2, 1).await;
    push_parts(&app, "audio", 2, 1).await;
    let reply = get(&app, "/live/ev1/master.m3u8").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header(header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    let master = reply.text();
    assert!(master.starts_with("#EXTM3U"), "{master}");
    // RFC 8216bis §4.4.6.1: the audio rendition group.
    let media = master
        .lines()
        .find(|l| l.starts_with("#EXT-X-MEDIA:"))
        .expect("EXT-X-MEDIA");
    for attribute in [
        "TYPE=AUDIO",
        "GROUP-ID=\"audio\"",
        "DEFAULT=YES",
        "AUTOSELECT=YES",
        "URI=\"audio/index.m3u8\"",
    ] {
        assert!(media.contains(attribute), "{attribute} in {media}");
    }
    // RFC 8216bis §4.4.6.2: the variant plays video with the audio group; BANDWIDTH is the
    // measured peak of both: each part ("video:0.0;", "audio:0.0;") is 10 bytes, four per
    // 1 s segment: 320 + 320 bit/s.
    let stream_inf = master
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .expect("EXT-X-STREAM-INF");
    for attribute in [
        "BANDWIDTH=640",
        "AVERAGE-BANDWIDTH=640",
        "CODECS=\"avc1.64001f,mp4a.40.2\"",
        "RESOLUTION=1280x720",
        "AUDIO=\"audio\"",
    ] {
        assert!(
            stream_inf.contains(attribute),
            "{attribute} in {stream_inf}"
        );
    }
    let uri = master
        .lines()
        .skip_while(|l| !l.starts_with("#EXT-X-STREAM-INF:"))
        .nth(1);
    assert_eq!(uri, Some("video/index.m3u8"));
}

#[tokio::test(start_paused = true)]
async fn media_playlist_describes_the_live_window() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 2, 2).await;
    push_parts(&app, "audio", 1, 1).await;
    let reply = get(&app, "/live/ev1/video/index.m3u8").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header(header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(reply.header(header::CACHE_CONTROL), "public, max-age=1");
    let playlist = reply.text();
    assert!(playlist.contains("#EXT-X-TARGETDURATION:1"), "{playlist}");
    assert!(
        playlist.contains("#EXT-X-PART-INF:PART-TARGET=0.25"),
        "{playlist}"
    );
    // RFC 8216bis §4.4.3.8: CAN-BLOCK-RELOAD, PART-HOLD-BACK ≥ 3 × PART-TARGET,
    // CAN-SKIP-UNTIL ≥ 6 × TARGETDURATION.
    let control = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
        .expect("server control");
    for attribute in [
        "CAN-BLOCK-RELOAD=YES",
        "PART-HOLD-BACK=0.75",
        "CAN-SKIP-UNTIL=6",
    ] {
        assert!(control.contains(attribute), "{attribute} in {control}");
    }
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init0.mp4\""),
        "{playlist}"
    );
    assert!(
        playlist.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20"),
        "{playlist}"
    );
    assert!(
        playlist.lines().any(|l| l == "0.m4s") && playlist.lines().any(|l| l == "1.m4s"),
        "{playlist}"
    );
    assert_eq!(
        part_uris(playlist),
        [
            "0.0.m4s", "0.1.m4s", "0.2.m4s", "0.3.m4s", "1.0.m4s", "1.1.m4s", "1.2.m4s", "1.3.m4s",
            "2.0.m4s", "2.1.m4s"
        ]
    );
    // RFC 8216bis §4.4.5.3: the next part is hinted; §4.4.5.4: the other rendition reported.
    assert!(
        playlist.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"2.2.m4s\""),
        "{playlist}"
    );
    let report = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-RENDITION-REPORT:"))
        .expect("rendition report");
    for attribute in ["URI=\"../audio/index.m3u8\"", "LAST-MSN=1", "LAST-PART=0"] {
        assert!(report.contains(attribute), "{attribute} in {report}");
    }
    assert!(!playlist.contains("#EXT-X-ENDLIST"));
}

#[tokio::test(start_paused = true)]
async fn segments_are_their_parts_concatenated_and_media_headers_fit() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 1, 1).await;
    push_parts(&app, "audio", 1, 0).await;
    let segment = get(&app, "/live/ev1/video/0.m4s").await;
    assert_eq!(segment.status, StatusCode::OK);
    assert_eq!(segment.text(), "video:0.0;video:0.1;video:0.2;video:0.3;");
    assert_eq!(segment.header(header::CONTENT_TYPE), "video/mp4");
    assert_eq!(
        segment.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    // CORS: browsers' players fetch cross-origin.
    assert_eq!(segment.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert_eq!(
        segment.header(header::VARY),
        "",
        "one cached copy per URL, whatever the Origin"
    );

    let part = get(&app, "/live/ev1/audio/0.2.m4s").await;
    assert_eq!(part.status, StatusCode::OK);
    assert_eq!(part.text(), "audio:0.2;");
    assert_eq!(part.header(header::CONTENT_TYPE), "audio/mp4");
    assert_eq!(
        part.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );

    // A versioned init is immutable; init.mp4 (the latest) must be revalidated.
    let init = get(&app, "/live/ev1/video/init0.mp4").await;
    assert_eq!((init.status, init.text()), (StatusCode::OK, "init:video:0"));
    assert_eq!(
        init.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    let latest = get(&app, "/live/ev1/video/init.mp4").await;
    assert_eq!(
        (latest.status, latest.text()),
        (StatusCode::OK, "init:video:0")
    );
    assert_eq!(latest.header(header::CACHE_CONTROL), "no-cache");

    // The segment in progress is served only as parts.
    get(&app, "/live/ev1/video/1.m4s")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    get(&app, "/live/ev1/video/init7.mp4")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    get(&app, "/live/ev1/video/nonsense.txt")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    get(&app, "/live/ev1/nope/index.m3u8")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    get(&app, "/live/nope/master.m3u8")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let head = send(
        &app,
        Request::head("/live/ev1/video/0.m4s")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_answers_once_the_awaited_part_is_pushed() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 2, 2).await;
    // RFC 8216bis §6.2.5.2: the server holds the request until the playlist contains
    // part 2 of segment 2.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=2&_HLS_part=2").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "answered before the awaited part existed"
    );
    assert_eq!(
        push_part(&app, "video", 2, 2).await.status,
        StatusCode::CREATED
    );
    let reply = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        part_uris(reply.text()).contains(&"2.2.m4s".to_string()),
        "{}",
        reply.text()
    );
    // A blocking answer is final for its URL: cacheable while its parts are fetchable.
    assert_eq!(reply.header(header::CACHE_CONTROL), "public, max-age=3");

    // Without _HLS_part it waits for the whole segment.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=2").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "answered before segment 2 was complete"
    );
    push_part(&app, "video", 2, 3).await;
    let reply = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered")
        .unwrap();
    assert!(
        reply.text().lines().any(|l| l == "2.m4s"),
        "{}",
        reply.text()
    );

    // What is already there is answered at once.
    let reply = tokio::time::timeout(
        Duration::from_millis(500),
        get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=1&_HLS_part=1"),
    )
    .await
    .expect("no blocking for a part already listed");
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_refuses_malformed_and_too_far_requests() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 2, 1).await;
    // RFC 8216bis §6.2.5.2: _HLS_part without _HLS_msn is a bad request.
    get(&app, "/live/ev1/video/index.m3u8?_HLS_part=1")
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    // RFC 8216bis §6.2.5.2: more than two segments past the last complete one (1).
    get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=4")
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    // RFC 8216bis §6.2.5.2: beyond the Advance Part Limit (3 / 0.25 s = 12 parts).
    get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=2&_HLS_part=20")
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    // RFC 8216bis §6.2.5.1: _HLS_skip is YES or v2.
    get(&app, "/live/ev1/video/index.m3u8?_HLS_skip=NO")
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=x")
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_gives_up_after_three_target_durations() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 1, 1).await;
    let started = Instant::now();
    let reply = get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=1&_HLS_part=1").await;
    let waited = started.elapsed();
    // RFC 8216bis §6.2.5.2: 503 after blocking three target durations (3 × 1 s).
    reply.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        waited >= Duration::from_millis(2900),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(6), "held for {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn delta_updates_skip_old_segments() {
    let app = app();
    live_stream(&app).await;
    // Twelve 1 s segments: with CAN-SKIP-UNTIL=6, the oldest are skippable.
    push_parts(&app, "video", 12, 1).await;
    let full = get(&app, "/live/ev1/video/index.m3u8").await;
    assert!(!full.text().contains("#EXT-X-SKIP"));
    assert!(full.text().lines().any(|l| l == "0.m4s"));
    // RFC 8216bis §6.2.5.1: _HLS_skip=YES answers a delta update with EXT-X-SKIP.
    for skip in ["YES", "v2"] {
        let delta = get(
            &app,
            &format!("/live/ev1/video/index.m3u8?_HLS_skip={skip}&_HLS_msn=12&_HLS_part=0"),
        )
        .await;
        assert_eq!(delta.status, StatusCode::OK);
        let text = delta.text();
        assert!(text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{text}");
        assert!(!text.lines().any(|l| l == "0.m4s"), "{text}");
        assert!(text.lines().any(|l| l == "11.m4s"), "{text}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_preload_hinted_part_blocks_until_it_is_pushed() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 1, 2).await;
    // RFC 8216bis §6.2.6: a request for the part named by EXT-X-PRELOAD-HINT (1.2) waits.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/video/1.2.m4s").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "answered before the part existed");
    push_part(&app, "video", 1, 2).await;
    let reply = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "video:1.2;"));
    assert_eq!(reply.header(header::CONTENT_TYPE), "video/mp4");

    // RFC 8216bis §6.2.6: a part far past the hint is not found, at once.
    get(&app, "/live/ev1/video/1.40.m4s")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    get(&app, "/live/ev1/video/9.0.m4s")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    // A part that never comes: 503 after three target durations.
    let started = Instant::now();
    get(&app, "/live/ev1/video/1.3.m4s")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= Duration::from_millis(2900));
}

#[tokio::test(start_paused = true)]
async fn parts_age_out_three_target_durations_after_they_leave_the_playlist() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 10, 1).await;
    let playlist = get(&app, "/live/ev1/video/index.m3u8").await;
    // RFC 8216bis §6.2.2: only segments that ended within 3 target durations of the edge
    // (10.25 s) keep their EXT-X-PART tags, all of them (a part is addressed by its index
    // in its parent segment).
    assert_eq!(
        part_uris(playlist.text()).first().map(String::as_str),
        Some("7.0.m4s")
    );
    // RFC 8216bis §6.2.2: removed parts stay fetchable 3 target durations more, then are
    // gone; segments stay.
    assert_eq!(
        get(&app, "/live/ev1/video/4.0.m4s").await.status,
        StatusCode::OK
    );
    get(&app, "/live/ev1/video/3.3.m4s")
        .await
        .assert_problem(StatusCode::GONE);
    assert_eq!(
        get(&app, "/live/ev1/video/3.m4s").await.status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn the_end_answers_blocked_requests_and_closes_the_playlist() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 1, 2).await;
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=1&_HLS_part=3").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    let end = send(
        &app,
        Request::post(format!("{PUSH_PREFIX}/{EVENT}/end"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(end.status, StatusCode::NO_CONTENT);
    let reply = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("answered at the end")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let playlist = reply.text();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert!(!playlist.contains("#EXT-X-PRELOAD-HINT"), "{playlist}");
    // The unfinished segment 1 was closed: it is a whole segment now.
    assert!(playlist.lines().any(|l| l == "1.m4s"), "{playlist}");
    // RFC 8216bis §6.2.5.2: once ended, _HLS_msn is ignored, even far ahead.
    let reply = get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=50").await;
    assert_eq!(reply.status, StatusCode::OK);
    // Pushing to an ended stream is a conflict.
    push_part(&app, "video", 2, 0)
        .await
        .assert_problem(StatusCode::CONFLICT);
}

#[tokio::test(start_paused = true)]
async fn pushes_are_validated() {
    let config = OriginConfig {
        max_push_body_bytes: 512,
        ..config()
    };
    let (_, app) = origin_with(config);
    // A part for an event with no stream.
    push_part(&app, "video", 0, 0)
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    live_stream(&app).await;
    push_part(&app, "nope", 0, 0)
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    push_parts(&app, "video", 0, 2).await;
    // A retry of the last part is idempotent; parts never go backwards or skip ahead
    // within a segment, nor past the window's segment cap (part 0 of a later segment
    // within it skips numbers as EXT-X-GAP segments: see the takeover tests).
    assert_eq!(
        push_part(&app, "video", 0, 1).await.status,
        StatusCode::NO_CONTENT
    );
    push_part(&app, "video", 0, 0)
        .await
        .assert_problem(StatusCode::CONFLICT);
    push_part(&app, "video", 0, 3)
        .await
        .assert_problem(StatusCode::CONFLICT);
    push_part(&app, "video", 1_000, 0)
        .await
        .assert_problem(StatusCode::CONFLICT);
    // Path and query must agree.
    let request = Request::put(format!(
        "{PUSH_PREFIX}/{EVENT}/video/part/0/2?{}",
        part_query(0, 3, 0)
    ))
    .body(Body::from("x"))
    .unwrap();
    send(&app, request)
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    let request = Request::put(format!("{PUSH_PREFIX}/{EVENT}/video/part/0/2?msn=0"))
        .body(Body::from("x"))
        .unwrap();
    send(&app, request)
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    // The body size limit.
    let request = Request::put(format!(
        "{PUSH_PREFIX}/{EVENT}/video/part/0/2?{}",
        part_query(0, 2, 0)
    ))
    .body(Body::from(vec![0u8; 513]))
    .unwrap();
    send(&app, request)
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
    // A descriptor whose name is not the path's, and one that changes PART-TARGET
    // (RFC 8216bis §4.4.3.7: fixed for the stream).
    let mut renamed = descriptor("video", RenditionKind::Video);
    renamed.name = "other".to_string();
    let request = Request::put(format!("{PUSH_PREFIX}/{EVENT}/video"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&renamed).unwrap()))
        .unwrap();
    send(&app, request)
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    // An invalid descriptor creates no stream.
    let mut invalid = descriptor("video", RenditionKind::Video);
    invalid.part_target_ms = 5;
    let request = Request::put(format!("{PUSH_PREFIX}/other-event/video"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&invalid).unwrap()))
        .unwrap();
    send(&app, request)
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    get(&app, "/live/other-event/master.m3u8")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let mut changed = descriptor("video", RenditionKind::Video);
    changed.part_target_ms = 500;
    declare(&app, &changed)
        .await
        .assert_problem(StatusCode::CONFLICT);
    assert_eq!(
        declare(&app, &descriptor("video", RenditionKind::Video))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(start_paused = true)]
async fn last_part_and_stream_status_follow_the_pushes() {
    let (origin, app) = origin_with(config());
    live_stream(&app).await;
    get(&app, &format!("{PUSH_PREFIX}/{EVENT}/video/last"))
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    push_parts(&app, "video", 1, 2).await;
    let last = get(&app, &format!("{PUSH_PREFIX}/{EVENT}/video/last")).await;
    assert_eq!(last.status, StatusCode::OK);
    let last: LastPart = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(
        last,
        LastPart {
            msn: 1,
            part: 1,
            ends_segment: false,
            init_version: 0,
        }
    );

    let status = origin.stream_status(EVENT).expect("status");
    assert!(!status.ended);
    assert_eq!(status.renditions.len(), 2);
    assert_eq!(status.renditions[0].name, "video");
    // 40 bytes in the 1 s segment 0.
    assert_eq!(status.renditions[0].bitrate_bps, Some(320));
    assert!(status.last_part_at_ms.is_some());
    assert_eq!(origin.stream_status("nope"), None);
}

#[tokio::test(start_paused = true)]
async fn health_and_metrics_endpoints() {
    let app = app();
    let health = get(&app, "/healthz").await;
    assert_eq!((health.status, health.text()), (StatusCode::OK, "ok"));
    assert_eq!(get(&app, "/readyz").await.status, StatusCode::OK);
    live_stream(&app).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let request = Request::put(format!(
        "{PUSH_PREFIX}/{EVENT}/video/part/0/0?{}",
        part_query(0, 0, now_ms - 40)
    ))
    .body(Body::from("part"))
    .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::CREATED);
    let metrics = get(&app, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    for name in [
        "floodlight_origin_parts_received_total",
        "floodlight_origin_part_bytes_received_total",
        "floodlight_origin_part_ready_latency_seconds",
        "floodlight_origin_http_responses_total",
        "floodlight_origin_active_streams",
    ] {
        assert!(
            metrics.text().contains(name),
            "{name} missing from\n{}",
            metrics.text()
        );
    }
    get(&app, "/no/such/path")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn the_server_answers_blocked_requests_at_shutdown() {
    let handle = metrics_handle();
    let origin = Origin::new(config(), move || handle.render());
    let app = origin.router();
    live_stream(&app).await;
    push_parts(&app, "video", 1, 1).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(floodlight_origin::run(listener, origin, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let playlist = client
        .get(format!("http://{address}/live/ev1/video/index.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(playlist.status(), reqwest::StatusCode::OK);
    let blocked = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!(
                    "http://{address}/live/ev1/video/index.m3u8?_HLS_msn=1&_HLS_part=1"
                ))
                .send()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!blocked.is_finished());
    let started = Instant::now();
    stop.send(()).unwrap();
    let reply = blocked.await.unwrap().unwrap();
    assert_eq!(reply.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited for the block timeout"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn with_token(mut request: Request<Body>, token: &str) -> Request<Body> {
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    request
}

fn descriptor_request(descriptor: &RenditionDescriptor) -> Request<Body> {
    Request::put(format!("{PUSH_PREFIX}/{EVENT}/{}", descriptor.name))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(descriptor).unwrap()))
        .unwrap()
}

/// A part of `duration` seconds; `ends_segment` as given.
fn part_request(msn: u64, part: u32, duration: &str, ends_segment: bool) -> Request<Body> {
    Request::put(format!(
        "{PUSH_PREFIX}/{EVENT}/video/part/{msn}/{part}?msn={msn}&part={part}&duration={duration}&independent={}&init_version=0&discontinuity=false&ends_segment={ends_segment}&last_frame_arrival_ms=0",
        part == 0
    ))
    .body(Body::from(part_payload("video", msn, part)))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_push_api_requires_the_token_when_one_is_set() {
    let (_, app) = origin_with(OriginConfig {
        push_token: Some(TOKEN.to_string()),
        ..config()
    });
    let video = descriptor("video", RenditionKind::Video);
    // RFC 6750 §3.1: no token, or a wrong one: 401 with WWW-Authenticate, and the detail
    // never echoes a credential.
    for request in [
        descriptor_request(&video),
        with_token(
            descriptor_request(&video),
            "0123456789abcdef0123456789abcdeX",
        ),
        with_token(descriptor_request(&video), ""),
    ] {
        let reply = send(&app, request).await;
        reply.assert_problem(StatusCode::UNAUTHORIZED);
        assert!(
            reply.header(header::WWW_AUTHENTICATE).starts_with("Bearer"),
            "{:?}",
            reply.headers
        );
        assert!(
            !reply.text().contains("0123456789abcdef"),
            "{}",
            reply.text()
        );
    }
    // Every push route is guarded, known stream or not.
    for request in [
        Request::put(format!("{PUSH_PREFIX}/{EVENT}/video/init/0"))
            .body(Body::from("init"))
            .unwrap(),
        Request::put(format!(
            "{PUSH_PREFIX}/{EVENT}/video/part/0/0?{}",
            part_query(0, 0, 0)
        ))
        .body(Body::from("part"))
        .unwrap(),
        Request::post(format!("{PUSH_PREFIX}/{EVENT}/end"))
            .body(Body::empty())
            .unwrap(),
        Request::get(format!("{PUSH_PREFIX}/{EVENT}/video/last"))
            .body(Body::empty())
            .unwrap(),
    ] {
        send(&app, request)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    }
    // With the token, the push API works; playback needs none.
    assert_eq!(
        send(&app, with_token(descriptor_request(&video), TOKEN))
            .await
            .status,
        StatusCode::CREATED
    );
    let init = Request::put(format!("{PUSH_PREFIX}/{EVENT}/video/init/0"))
        .body(Body::from("init:video:0"))
        .unwrap();
    assert_eq!(
        send(&app, with_token(init, TOKEN)).await.status,
        StatusCode::CREATED
    );
    let part = part_request(0, 0, "0.25", false);
    assert_eq!(
        send(&app, with_token(part, TOKEN)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        get(&app, "/live/ev1/video/index.m3u8").await.status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn streams_and_renditions_per_stream_are_capped() {
    let (_, app) = origin_with(OriginConfig {
        max_streams: 1,
        max_renditions_per_stream: 2,
        ..config()
    });
    live_stream(&app).await;
    // A third rendition: 409.
    declare(&app, &descriptor("low", RenditionKind::Video))
        .await
        .assert_problem(StatusCode::CONFLICT);
    // A second stream: 503, and no stream was created for it.
    let request = Request::put(format!("{PUSH_PREFIX}/ev2/video"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(&descriptor("video", RenditionKind::Video)).unwrap(),
        ))
        .unwrap();
    send(&app, request)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    get(&app, "/live/ev2/master.m3u8")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn part_durations_must_be_positive_and_within_twice_the_segment_target() {
    let app = app();
    live_stream(&app).await;
    // The segment target is 1 s: a part may last at most 2 s, so a pusher cannot stretch
    // the segments past the declared target duration with one long part.
    for duration in ["2.5", "0", "-1", "NaN", "inf"] {
        let reply = send(&app, part_request(0, 0, duration, false)).await;
        reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(reply.text().contains("duration"), "{}", reply.text());
    }
    assert_eq!(
        send(&app, part_request(0, 0, "2", false)).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(start_paused = true)]
async fn the_target_duration_is_fixed_when_declared_and_longer_segments_are_counted() {
    // The default factor 1.5 and a 2 s segment target.
    let (_, app) = origin_with(OriginConfig::default());
    let mut video = descriptor("video", RenditionKind::Video);
    video.segment_target_ms = 2000;
    assert_eq!(declare(&app, &video).await.status, StatusCode::CREATED);
    assert_eq!(
        push_init(&app, "video", 0).await.status,
        StatusCode::CREATED
    );
    // A 3.2 s segment (a scene cut's keyframe) rounds to 3: within TARGETDURATION 3.
    for part in 0..4 {
        let reply = send(&app, part_request(0, part, "0.8", part == 3)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }
    // A 3.6 s one rounds to 4 (RFC 8216bis §4.4.3.1) but the target duration stays
    // (RFC 8216bis §6.2.1: it MUST NOT change); the segment is counted.
    for part in 0..4 {
        let reply = send(&app, part_request(1, part, "0.9", part == 3)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }
    let playlist = get(&app, "/live/ev1/video/index.m3u8").await;
    let text = playlist.text();
    assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");
    assert!(text.contains("#EXTINF:3.6"), "{text}");
    let metrics = get(&app, "/metrics").await;
    assert!(
        metrics
            .text()
            .contains("floodlight_origin_segments_over_target_duration_total"),
        "{}",
        metrics.text()
    );
    // A descriptor needing a longer target duration is refused (RFC 8216bis §6.2.1).
    video.segment_target_ms = 4000;
    declare(&app, &video)
        .await
        .assert_problem(StatusCode::CONFLICT);
}

#[tokio::test(start_paused = true)]
async fn the_master_playlist_keeps_the_audio_group_when_audio_is_late() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 0, 2).await;
    // The master waits for the audio (3 target durations, or until the video completes a
    // segment), then answers without its bandwidth but with its group: a player keeps
    // this master for the session.
    let started = Instant::now();
    let reply = get(&app, "/live/ev1/master.m3u8").await;
    assert!(started.elapsed() >= Duration::from_millis(2900));
    assert_eq!(reply.status, StatusCode::OK);
    let master = reply.text();
    assert!(master.contains("#EXT-X-MEDIA:TYPE=AUDIO"), "{master}");
    // RFC 8216bis §4.4.6.2: CODECS lists every format the variant may play.
    assert!(
        master.contains("CODECS=\"avc1.64001f,mp4a.40.2\""),
        "{master}"
    );
    assert!(master.contains("AUDIO=\"audio\""), "{master}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_is_ended_then_dropped() {
    let (origin, app) = origin_with(OriginConfig {
        idle_end_secs: 1,
        ended_stream_retention_secs: 2,
        ..config()
    });
    live_stream(&app).await;
    push_parts(&app, "video", 1, 1).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(floodlight_origin::run(
        listener,
        origin.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    // A blocked reload for a part that never comes is answered by the idle end (after
    // 1 s without a push), before its 3 s blocking timeout.
    let reply = tokio::time::timeout(
        Duration::from_millis(2900),
        get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=1&_HLS_part=3"),
    )
    .await
    .expect("answered at the idle end");
    assert_eq!(reply.status, StatusCode::OK);
    // RFC 8216bis §6.2.1: the final segment is there, so the playlist has EXT-X-ENDLIST.
    assert!(reply.text().contains("#EXT-X-ENDLIST"), "{}", reply.text());
    assert!(origin.stream_status(EVENT).expect("still held").ended);
    push_part(&app, "video", 2, 0)
        .await
        .assert_problem(StatusCode::CONFLICT);
    // Then it leaves memory after ended_stream_retention_secs.
    let dropped = tokio::time::timeout(Duration::from_secs(5), async {
        while origin.stream_status(EVENT).is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(dropped.is_ok(), "the ended stream stayed in memory");
    let metrics = get(&app, "/metrics").await;
    assert!(
        metrics
            .text()
            .contains("floodlight_origin_streams_ended_idle_total"),
        "{}",
        metrics.text()
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_playlist_without_parts_waits_for_the_first_part() {
    // A playlist listing no segment is useless to a player (hls.js answers it with
    // levelEmptyError and retries a second later): it waits for the first part instead.
    let app = app();
    live_stream(&app).await;
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/video/index.m3u8").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "answered a playlist with no part in it"
    );
    assert_eq!(
        push_part(&app, "video", 0, 0).await.status,
        StatusCode::CREATED
    );
    let reply = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered once the first part landed")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(part_uris(reply.text()), ["0.0.m4s"], "{}", reply.text());
}

const PLAYBACK_KEY: &str = "k1:0123456789abcdef0123456789abcdef";

/// A session store that records what the origin tells it.
#[derive(Default)]
struct RecordedSessions {
    revoked: Mutex<HashSet<String>>,
    heartbeats: Mutex<Vec<String>>,
}

impl ViewerSessions for RecordedSessions {
    fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.lock().unwrap().contains(sid)
    }

    fn heartbeat(&self, claims: &PlaybackClaims) {
        self.heartbeats.lock().unwrap().push(claims.sid.clone());
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn playback_token(key: &str, event: &str, sid: &str, exp: i64) -> String {
    TokenKey::parse(key).unwrap().sign(&PlaybackClaims {
        evt: event.to_string(),
        sub: "acct_1".to_string(),
        sid: sid.to_string(),
        iat: unix_now(),
        exp,
    })
}

/// A token stream (video + audio, two segments and a part) on an origin holding
/// [`PLAYBACK_KEY`] and `sessions`.
async fn token_stream(sessions: Arc<RecordedSessions>) -> Router {
    let handle = metrics_handle();
    let origin = Origin::with_viewer_sessions(
        OriginConfig {
            playback_keys: vec![PLAYBACK_KEY.to_string()],
            ..config()
        },
        move || handle.render(),
        sessions,
    );
    let app = origin.router();
    for (name, kind) in [
        ("video", RenditionKind::Video),
        ("audio", RenditionKind::Audio),
    ] {
        let descriptor = RenditionDescriptor {
            access: PlaybackAccess::Token,
            ..descriptor(name, kind)
        };
        assert_eq!(declare(&app, &descriptor).await.status, StatusCode::CREATED);
        assert_eq!(push_init(&app, name, 0).await.status, StatusCode::CREATED);
        push_parts(&app, name, 2, 1).await;
    }
    app
}

fn problem_reason(reply: &Reply) -> String {
    let problem: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    problem["reason"].as_str().unwrap_or_default().to_string()
}

/// Every URI of a playlist: URI lines and `URI="…"` attributes.
fn playlist_uris(playlist: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in playlist.lines() {
        if line.starts_with('#') {
            for piece in line.split("URI=\"").skip(1) {
                uris.push(piece.split('"').next().unwrap().to_string());
            }
        } else if !line.is_empty() {
            uris.push(line.to_string());
        }
    }
    uris
}

#[tokio::test(start_paused = true)]
async fn token_streams_refuse_requests_without_a_valid_token() {
    let sessions = Arc::new(RecordedSessions::default());
    let app = token_stream(sessions.clone()).await;
    let now = unix_now();
    let valid = playback_token(PLAYBACK_KEY, EVENT, "ses_1", now + 60);
    let urls = [
        "/live/ev1/master.m3u8",
        "/live/ev1/video/index.m3u8",
        "/live/ev1/video/index.m3u8?_HLS_msn=1&_HLS_part=1",
        "/live/ev1/video/init0.mp4",
        "/live/ev1/video/init.mp4",
        "/live/ev1/video/2.0.m4s",
        "/live/ev1/video/1.m4s",
        "/live/ev1/audio/index.m3u8",
        // Before the rendition is known: nothing is told without a token.
        "/live/ev1/nosuch/index.m3u8",
    ];
    let with = |url: &str, token: &str| {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}token={token}")
    };
    for url in urls {
        // No token: 401, still with CORS, so a browser player sees the status.
        let reply = get(&app, url).await;
        reply.assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        assert!(reply.header(header::WWW_AUTHENTICATE).starts_with("Bearer"));
        let refused = [
            (
                playback_token(PLAYBACK_KEY, EVENT, "ses_1", now - 1),
                "expired",
            ),
            (
                playback_token(PLAYBACK_KEY, "ev2", "ses_1", now + 60),
                "wrong_event",
            ),
            (
                playback_token("k0:0123456789abcdef0123456789abcdef", EVENT, "s", now + 60),
                "unknown_key",
            ),
            (
                playback_token("k1:0123456789abcdef0123456789abcdeX", EVENT, "s", now + 60),
                "bad_signature",
            ),
            ("not.a.jwt".to_string(), "malformed_token"),
        ];
        for (token, reason) in refused {
            let reply = get(&app, &with(url, &token)).await;
            reply.assert_problem(StatusCode::FORBIDDEN);
            assert_eq!(problem_reason(&reply), reason, "{url}");
            assert_eq!(reply.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
            assert!(
                !reply.text().contains(&token),
                "the answer echoes the token"
            );
        }
    }
    // With the token: served (the unknown rendition is now a plain 404).
    for url in &urls[..urls.len() - 1] {
        assert_eq!(
            get(&app, &with(url, &valid)).await.status,
            StatusCode::OK,
            "{url}"
        );
    }
    assert_eq!(
        get(&app, &with(urls[urls.len() - 1], &valid)).await.status,
        StatusCode::NOT_FOUND
    );
    // Heartbeats come from the admitted playlist requests only (master, 4 media
    // playlists counting the unknown rendition's), none from refused ones.
    assert_eq!(sessions.heartbeats.lock().unwrap().len(), 5);
}

#[tokio::test(start_paused = true)]
async fn token_stream_playlists_carry_the_token_in_every_uri() {
    let sessions = Arc::new(RecordedSessions::default());
    let app = token_stream(sessions.clone()).await;
    let token = playback_token(PLAYBACK_KEY, EVENT, "ses_1", unix_now() + 60);
    let master = get(&app, &format!("/live/ev1/master.m3u8?token={token}")).await;
    assert_eq!(master.status, StatusCode::OK);
    let suffix = format!("?token={token}");
    let master_uris = playlist_uris(master.text());
    // The variant, the audio rendition and the I-frame playlist.
    assert_eq!(master_uris.len(), 3, "{}", master.text());
    // Follow each URI as a player does: relative to the playlist's own URL.
    for uri in master_uris {
        assert!(uri.ends_with(&suffix), "{uri}");
        let playlist = get(&app, &format!("/live/ev1/{uri}")).await;
        assert_eq!(playlist.status, StatusCode::OK, "{uri}");
        let rendition = uri.split('/').next().unwrap();
        let uris = playlist_uris(playlist.text());
        // EXT-X-MAP, segments, parts, the preload hint, the rendition report; in the
        // I-frame playlist EXT-X-MAP and the segments.
        let expected = if uri.contains("iframes.m3u8") { 3 } else { 11 };
        assert!(uris.len() >= expected, "{}", playlist.text());
        for uri in uris {
            assert!(uri.ends_with(&suffix), "{uri} in\n{}", playlist.text());
            let path = match uri.strip_prefix("../") {
                Some(sibling) => format!("/live/ev1/{sibling}"),
                None => format!("/live/ev1/{rendition}/{uri}"),
            };
            // The preload hint is the part not yet pushed: check it exists without
            // waiting for it.
            if uri.starts_with("2.1.m4s") {
                continue;
            }
            let reply = get(&app, &path).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}");
        }
    }
    // A blocking reload of a URI that carries the token, with the directives after it.
    let waiting = tokio::spawn({
        let app = app.clone();
        let url = format!("/live/ev1/video/index.m3u8{suffix}&_HLS_msn=2&_HLS_part=1");
        async move { get(&app, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "answered before the part existed");
    push_part(&app, "video", 2, 1).await;
    let reply = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        part_uris(reply.text()).contains(&format!("2.1.m4s{suffix}")),
        "{}",
        reply.text()
    );

    // Revocation: the session's next request is refused, whatever it asks for.
    sessions.revoked.lock().unwrap().insert("ses_1".to_string());
    for url in ["/live/ev1/master.m3u8", "/live/ev1/video/2.0.m4s"] {
        let reply = get(&app, &format!("{url}{suffix}")).await;
        reply.assert_problem(StatusCode::FORBIDDEN);
        assert_eq!(problem_reason(&reply), "revoked");
    }
    // Another session of the same viewer still plays.
    let other = playback_token(PLAYBACK_KEY, EVENT, "ses_2", unix_now() + 60);
    let reply = get(&app, &format!("/live/ev1/video/2.0.m4s?token={other}")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn public_streams_ignore_tokens() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "video", 2, 1).await;
    push_parts(&app, "audio", 2, 1).await;
    let plain = get(&app, "/live/ev1/video/index.m3u8").await;
    let with_token = get(&app, "/live/ev1/video/index.m3u8?token=whatever").await;
    assert_eq!(with_token.status, StatusCode::OK);
    assert_eq!(plain.body, with_token.body);
    assert!(!plain.text().contains("token="));
}

/// A part push with every `PartMeta` field chosen: a transcoder's part, as sent.
struct PartPush<'a> {
    rendition: &'a str,
    msn: u64,
    part: u32,
    init_version: u32,
    discontinuity: bool,
    ends_segment: bool,
    sync_sample_bytes: Option<u32>,
    body: Bytes,
}

impl PartPush<'_> {
    async fn send(&self, app: &Router) -> Reply {
        let mut query = format!(
            "msn={}&part={}&duration=0.25&independent={}&init_version={}&discontinuity={}&ends_segment={}&last_frame_arrival_ms=0",
            self.msn,
            self.part,
            self.part == 0,
            self.init_version,
            self.discontinuity,
            self.ends_segment,
        );
        if self.part == 0 {
            query.push_str(&format!(
                "&program_date_time_ms={}",
                1_700_000_000_000 + self.msn * 1000
            ));
        }
        if let Some(bytes) = self.sync_sample_bytes {
            query.push_str(&format!("&sync_sample_bytes={bytes}"));
        }
        let request = Request::put(format!(
            "{PUSH_PREFIX}/{EVENT}/{}/part/{}/{}?{query}",
            self.rendition, self.msn, self.part
        ))
        .body(Body::from(self.body.clone()))
        .unwrap();
        send(app, request).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_ladder_master_lists_rungs_by_bandwidth_with_iframe_playlists() {
    let app = app();
    for (name, hint) in [
        ("source", 5_000_000),
        ("720p", 2_000_000),
        ("360p", 800_000),
    ] {
        let rung = RenditionDescriptor {
            bandwidth_hint_bps: Some(hint),
            dvr_window_secs: None,
            ..descriptor(name, RenditionKind::Video)
        };
        assert_eq!(declare(&app, &rung).await.status, StatusCode::CREATED);
        assert_eq!(push_init(&app, name, 0).await.status, StatusCode::CREATED);
    }
    assert_eq!(
        declare(&app, &descriptor("audio", RenditionKind::Audio))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        push_init(&app, "audio", 0).await.status,
        StatusCode::CREATED
    );
    // The master waits for every rung's first part.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/master.m3u8").await }
    });
    for name in ["source", "720p", "360p"] {
        push_parts(&app, name, 0, 1).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "answered before the audio started");
    push_parts(&app, "audio", 0, 1).await;
    let reply = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let master = reply.text();
    let variants: Vec<(&str, &str)> = master
        .lines()
        .zip(master.lines().skip(1))
        .filter(|(tag, _)| tag.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    // The start variant (the highest at or below 3 Mbit/s) first, then highest first.
    // Before a complete segment, BANDWIDTH is the rung's rate × 1.1 (plus the audio's,
    // estimated from its one 10-byte part in 0.25 s: 320 bit/s), not a part's rate.
    let listed: Vec<&str> = variants.iter().map(|(_, uri)| *uri).collect();
    assert_eq!(
        listed,
        ["720p/index.m3u8", "source/index.m3u8", "360p/index.m3u8"]
    );
    assert!(
        variants[0]
            .0
            .contains("BANDWIDTH=2200320,AVERAGE-BANDWIDTH=2000320,"),
        "{master}"
    );
    assert!(variants[1].0.contains("BANDWIDTH=5500320,"), "{master}");
    // RFC 8216bis §4.4.6.3: an I-frame playlist per rung, its CODECS the video's alone.
    let iframes: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-I-FRAME-STREAM-INF:"))
        .collect();
    assert_eq!(iframes.len(), 3, "{master}");
    assert!(
        iframes[0].contains("CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"720p/iframes.m3u8\""),
        "{master}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_iframe_playlist_addresses_each_segments_sync_sample() {
    let app = app();
    live_stream(&app).await;
    for msn in 0..3u64 {
        for part in 0..PARTS_PER_SEGMENT {
            // Part 0 is "IDR-frame-N|rest": its first 12 bytes are the sync sample.
            let body = if part == 0 {
                Bytes::from(format!("IDR-frame-{msn}|rest"))
            } else {
                Bytes::from(part_payload("video", msn, part))
            };
            let push = PartPush {
                rendition: "video",
                msn,
                part,
                init_version: 0,
                discontinuity: false,
                ends_segment: part + 1 == PARTS_PER_SEGMENT,
                sync_sample_bytes: (part == 0).then_some(11),
                body,
            };
            assert_eq!(push.send(&app).await.status, StatusCode::CREATED);
        }
    }
    push_parts(&app, "audio", 3, 0).await;
    let reply = get(&app, "/live/ev1/video/iframes.m3u8").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header(header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    let playlist = reply.text();
    // RFC 8216bis §4.4.3.6: I-frames only, no LL-HLS tags (no parts, no blocking).
    assert!(playlist.contains("#EXT-X-I-FRAMES-ONLY"), "{playlist}");
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init0.mp4\""),
        "{playlist}"
    );
    assert!(!playlist.contains("#EXT-X-PART"), "{playlist}");
    assert!(!playlist.contains("#EXT-X-SERVER-CONTROL"), "{playlist}");
    // Each entry's byte range, fetched from its segment, is exactly the sync sample.
    let lines: Vec<&str> = playlist.lines().collect();
    let mut entries = 0;
    for (index, line) in lines.iter().enumerate() {
        let Some(range) = line.strip_prefix("#EXT-X-BYTERANGE:") else {
            continue;
        };
        assert_eq!(lines[index - 1], "#EXTINF:1.00000,");
        let (length, offset) = range.split_once('@').unwrap();
        let (length, offset): (usize, usize) = (length.parse().unwrap(), offset.parse().unwrap());
        let segment = get(&app, &format!("/live/ev1/video/{}", lines[index + 1])).await;
        assert_eq!(segment.status, StatusCode::OK);
        let sample = &segment.body[offset..offset + length];
        assert_eq!(sample, format!("IDR-frame-{entries}").as_bytes());
        entries += 1;
    }
    assert_eq!(entries, 3, "{playlist}");
    // Audio has none; a bad sync_sample_bytes is refused.
    get(&app, "/live/ev1/audio/iframes.m3u8")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let too_long = PartPush {
        rendition: "video",
        msn: 3,
        part: 0,
        init_version: 0,
        discontinuity: false,
        ends_segment: false,
        sync_sample_bytes: Some(1000),
        body: Bytes::from_static(b"IDR"),
    };
    too_long
        .send(&app)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
}

async fn put_thumbnail(app: &Router, body: &'static [u8]) -> Reply {
    let request = Request::put(format!("{PUSH_PREFIX}/{EVENT}/thumbnail.jpg"))
        .header(header::CONTENT_TYPE, "image/jpeg")
        .body(Body::from(body))
        .unwrap();
    send(app, request).await
}

#[tokio::test(start_paused = true)]
async fn the_thumbnail_is_pushed_and_served() {
    let (_, app) = origin_with(OriginConfig {
        max_thumbnail_bytes: 64,
        ..config()
    });
    // No stream yet.
    put_thumbnail(&app, b"\xFF\xD8\xFF\xE0poster")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    live_stream(&app).await;
    get(&app, "/live/ev1/thumbnail.jpg")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    put_thumbnail(&app, b"\x89PNG\r\n\x1a\n")
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    put_thumbnail(&app, &[0xFF; 65])
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        put_thumbnail(&app, b"\xFF\xD8\xFF\xE0first").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put_thumbnail(&app, b"\xFF\xD8\xFF\xE0second").await.status,
        StatusCode::NO_CONTENT
    );
    let reply = get(&app, "/live/ev1/thumbnail.jpg").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header(header::CONTENT_TYPE), "image/jpeg");
    assert_eq!(reply.header(header::CACHE_CONTROL), "public, max-age=5");
    assert_eq!(reply.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert_eq!(&reply.body[..], b"\xFF\xD8\xFF\xE0second");
}

#[tokio::test(start_paused = true)]
async fn a_token_streams_thumbnail_and_iframes_need_the_token() {
    let sessions = Arc::new(RecordedSessions::default());
    let app = token_stream(sessions).await;
    assert_eq!(
        put_thumbnail(&app, b"\xFF\xD8\xFF\xE0poster").await.status,
        StatusCode::NO_CONTENT
    );
    for url in ["/live/ev1/thumbnail.jpg", "/live/ev1/video/iframes.m3u8"] {
        get(&app, url)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    }
    let token = playback_token(PLAYBACK_KEY, EVENT, "ses_1", unix_now() + 60);
    let reply = get(&app, &format!("/live/ev1/thumbnail.jpg?token={token}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = get(&app, &format!("/live/ev1/video/iframes.m3u8?token={token}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    for uri in playlist_uris(reply.text()) {
        assert!(uri.ends_with(&format!("?token={token}")), "{uri}");
    }
}

async fn shed(app: &Router, rendition: &str, reason: &str) -> Reply {
    let request = Request::delete(format!("{PUSH_PREFIX}/{EVENT}/{rendition}?reason={reason}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

#[tokio::test(start_paused = true)]
async fn a_shed_rendition_leaves_the_ladder_and_its_players_move_on() {
    let (origin, app) = origin_with(config());
    live_stream(&app).await;
    let low = descriptor("360p", RenditionKind::Video);
    assert_eq!(declare(&app, &low).await.status, StatusCode::CREATED);
    assert_eq!(push_init(&app, "360p", 0).await.status, StatusCode::CREATED);
    for name in ["video", "audio", "360p"] {
        push_parts(&app, name, 2, 1).await;
    }
    assert!(
        get(&app, "/live/ev1/master.m3u8")
            .await
            .text()
            .contains("360p/index.m3u8")
    );
    // A player on the rung, blocked on its next part.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/360p/index.m3u8?_HLS_msn=2&_HLS_part=1").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    shed(&app, "nope", "cpu")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(
        shed(&app, "360p", "cpu").await.status,
        StatusCode::NO_CONTENT
    );
    // Answered at once: 410, which players treat as a failed variant and switch.
    let reply = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("answered at the shedding")
        .unwrap();
    reply.assert_problem(StatusCode::GONE);
    get(&app, "/live/ev1/360p/index.m3u8")
        .await
        .assert_problem(StatusCode::GONE);
    // What it had stays fetchable, so a player finishes its buffer.
    assert_eq!(
        get(&app, "/live/ev1/360p/1.m4s").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/live/ev1/360p/2.0.m4s").await.status,
        StatusCode::OK
    );
    // Gone from the master and the other renditions' reports.
    let master = get(&app, "/live/ev1/master.m3u8").await;
    assert!(!master.text().contains("360p"), "{}", master.text());
    let video = get(&app, "/live/ev1/video/index.m3u8").await;
    assert!(!video.text().contains("360p"), "{}", video.text());
    assert!(video.text().contains("../audio/index.m3u8"));
    // Its parts are refused; the status names it with the reason.
    push_part(&app, "360p", 3, 0)
        .await
        .assert_problem(StatusCode::CONFLICT);
    let status = origin.stream_status(EVENT).unwrap();
    assert_eq!(status.shed_renditions.len(), 1);
    assert_eq!(status.shed_renditions[0].name, "360p");
    assert_eq!(status.shed_renditions[0].reason, "cpu");
    assert!(status.renditions.iter().all(|r| r.name != "360p"));
    // Shedding again is a no-op.
    assert_eq!(
        shed(&app, "360p", "again").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        origin.stream_status(EVENT).unwrap().shed_renditions[0].reason,
        "cpu"
    );
}

#[tokio::test(start_paused = true)]
async fn a_transcoder_taking_over_mid_segment_continues_the_numbering() {
    let app = app();
    live_stream(&app).await;
    push_parts(&app, "audio", 2, 0).await;
    // The first transcoder dies two parts into segment 2.
    push_parts(&app, "video", 2, 2).await;
    // Players blocked on what would have come next.
    let reload = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/video/index.m3u8?_HLS_msn=2&_HLS_part=2").await }
    });
    let part = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/live/ev1/video/2.2.m4s").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!reload.is_finished() && !part.is_finished());

    // The new transcoder declares the same rendition, asks where to continue, pushes init
    // version previous + 1 and part 0 of the segment after the abandoned one.
    assert_eq!(
        declare(&app, &descriptor("video", RenditionKind::Video))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let last = get(&app, &format!("{PUSH_PREFIX}/{EVENT}/video/last")).await;
    let last: LastPart = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(
        last,
        LastPart {
            msn: 2,
            part: 1,
            ends_segment: false,
            init_version: 0
        }
    );
    assert_eq!(
        push_init(&app, "video", last.init_version + 1).await.status,
        StatusCode::CREATED
    );
    let first = PartPush {
        rendition: "video",
        msn: last.msn + 1,
        part: 0,
        init_version: last.init_version + 1,
        discontinuity: true,
        ends_segment: false,
        sync_sample_bytes: None,
        body: Bytes::from(part_payload("video", 3, 0)),
    };
    assert_eq!(first.send(&app).await.status, StatusCode::CREATED);

    // RFC 8216bis §6.2.5.2: the reload's part index is past the closed segment's last
    // part, so it means part 0 of segment 3, which exists: answered.
    let reply = tokio::time::timeout(Duration::from_secs(1), reload)
        .await
        .expect("reload answered")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let playlist = reply.text();
    // The abandoned segment is listed as it is (two parts, 0.5 s), then the discontinuity
    // and the new init section before segment 3 (§4.4.4.3, §4.4.4.5).
    let expected = "#EXTINF:0.50000,\n2.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n";
    assert!(playlist.contains(expected), "{playlist}");
    assert!(playlist.contains("#EXT-X-PART:DURATION=0.25000,URI=\"3.0.m4s\",INDEPENDENT=YES"));
    // The part that will never exist: not found, at once.
    let reply = tokio::time::timeout(Duration::from_secs(1), part)
        .await
        .expect("part request answered")
        .unwrap();
    reply.assert_problem(StatusCode::NOT_FOUND);
    // The abandoned segment's parts and the segment are fetchable.
    let segment = get(&app, "/live/ev1/video/2.m4s").await;
    assert_eq!(segment.status, StatusCode::OK);
    assert_eq!(&segment.body[..], b"video:2.0;video:2.1;");
    // No MSN goes back.
    push_part(&app, "video", 2, 2)
        .await
        .assert_problem(StatusCode::CONFLICT);
    // The I-frame playlist follows: the short segment's interval (its first part whole
    // addressed, as this pusher sent no sync_sample_bytes).
    let iframes = get(&app, "/live/ev1/video/iframes.m3u8").await;
    assert!(
        iframes
            .text()
            .contains("#EXTINF:0.50000,\n#EXT-X-BYTERANGE:10@0\n2.m4s\n"),
        "{}",
        iframes.text()
    );
}

/// Real CMAF parts: the packager's output for an ffmpeg capture (4 s of H.264 High with
/// B-frames, IDR every 2 s), pushed as the transcoder pushes them.
async fn push_packaged_capture(app: &Router) {
    use floodlight_media::flv::{FlvFileReader, FlvTagType, VideoTag, parse_video_tag};
    use floodlight_media::package::{PackagerConfig, PackagerOutput, StreamPackager};
    use floodlight_media::stream::StreamEvent;
    use floodlight_media::track::TrackParams;

    const CAPTURE: &[u8] = include_bytes!("../../media/testdata/ffmpeg_h264_aac_bframes.flv");
    let mut config = None;
    let mut frames = Vec::new();
    for tag in FlvFileReader::new(CAPTURE).unwrap() {
        let tag = tag.unwrap();
        if tag.tag_type == FlvTagType::Video {
            match parse_video_tag(tag.body, tag.timestamp_ms).unwrap() {
                VideoTag::SequenceHeader(c) => config = Some(c),
                VideoTag::Frame(f) => frames.push(f),
                _ => {}
            }
        }
    }
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let now = 1_700_000_000_000;
    packager
        .handle_event(
            StreamEvent::Tracks(vec![TrackParams::video(config.unwrap())]),
            now,
        )
        .unwrap();
    for frame in frames {
        packager
            .handle_event(StreamEvent::Frame(frame), now)
            .unwrap();
    }
    packager.handle_event(StreamEvent::Ended, now).unwrap();
    // The query exactly as the transcoder's reqwest `.query(&meta)` writes it.
    let client = reqwest::Client::new();
    while let Some(output) = packager.poll_output() {
        let reply = match output {
            PackagerOutput::Rendition(descriptor) => declare(app, &descriptor).await,
            PackagerOutput::Init {
                rendition,
                version,
                data,
            } => {
                let request =
                    Request::put(format!("{PUSH_PREFIX}/{EVENT}/{rendition}/init/{version}"))
                        .body(Body::from(data))
                        .unwrap();
                send(app, request).await
            }
            PackagerOutput::Part {
                rendition,
                meta,
                data,
            } => {
                let url = client
                    .put("http://origin.invalid/")
                    .query(&meta)
                    .build()
                    .unwrap()
                    .url()
                    .clone();
                let request = Request::put(format!(
                    "{PUSH_PREFIX}/{EVENT}/{rendition}/part/{}/{}?{}",
                    meta.msn,
                    meta.part,
                    url.query().unwrap()
                ))
                .body(Body::from(data))
                .unwrap();
                send(app, request).await
            }
        };
        assert!(reply.status.is_success(), "{}", reply.text());
    }
}

/// The boxes at the start of `bytes`: (type, start, size).
fn boxes(bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
        out.push((kind, at, size));
        if size < 8 {
            break;
        }
        at += size;
    }
    out
}

#[tokio::test(start_paused = true)]
async fn the_iframe_byte_range_of_a_packaged_segment_is_its_idr_frame() {
    let app = app();
    push_packaged_capture(&app).await;
    let master = get(&app, "/live/ev1/master.m3u8").await;
    assert_eq!(master.status, StatusCode::OK);
    let iframe_uri = master
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("#EXT-X-I-FRAME-STREAM-INF:")?
                .split("URI=\"")
                .nth(1)?
                .split('"')
                .next()
        })
        .expect("an I-frame playlist in the master")
        .to_string();
    let playlist = get(&app, &format!("/live/ev1/{iframe_uri}")).await;
    assert_eq!(playlist.status, StatusCode::OK);
    let rendition = iframe_uri.split('/').next().unwrap();
    let lines: Vec<&str> = playlist.text().lines().collect();
    let mut checked = 0;
    for (index, line) in lines.iter().enumerate() {
        let Some(range) = line.strip_prefix("#EXT-X-BYTERANGE:") else {
            continue;
        };
        let (length, offset) = range.split_once('@').unwrap();
        let (length, offset): (usize, usize) = (length.parse().unwrap(), offset.parse().unwrap());
        let segment = get(&app, &format!("/live/ev1/{rendition}/{}", lines[index + 1])).await;
        assert_eq!(segment.status, StatusCode::OK);
        assert!(
            offset + length < segment.body.len(),
            "the range is one frame"
        );
        let range = &segment.body[offset..offset + length];
        // ISO/IEC 23000-19 (CMAF) chunk: moof, then mdat, the range ending inside it.
        let found = boxes(range);
        assert_eq!(found[0].0, "moof", "{found:?}");
        assert_eq!(found[1].0, "mdat", "{found:?}");
        // The part's mdat goes on past the range: it is the first sample only (the
        // packager's sync_sample_bytes), not the whole part.
        assert!(found[1].1 + found[1].2 > range.len(), "{found:?}");
        // The mdat payload up to the range's end is exactly one sample: length-prefixed
        // NAL units (ISO/IEC 14496-15 §5.3.2), one of them an IDR slice (H.264 nal_unit_type
        // 5, Table 7-1).
        let mut at = found[1].1 + 8;
        let mut idr = false;
        while at < range.len() {
            let len = u32::from_be_bytes(range[at..at + 4].try_into().unwrap()) as usize;
            idr |= range[at + 4] & 0x1f == 5;
            at += 4 + len;
        }
        assert_eq!(at, range.len(), "the range ends on a NAL unit boundary");
        assert!(idr, "the first sample is an IDR frame");
        checked += 1;
    }
    assert!(checked >= 1, "{}", playlist.text());
}

#[tokio::test(start_paused = true)]
async fn a_rendition_that_lagged_at_a_takeover_gets_a_gap_not_a_refusal() {
    let app = app();
    live_stream(&app).await;
    // The transcoder dies with video two parts into segment 2 and audio at the end of 1.
    push_parts(&app, "video", 2, 2).await;
    push_parts(&app, "audio", 2, 0).await;
    // The new one continues after the highest MSN of all renditions: 3, for both.
    for rendition in ["video", "audio"] {
        assert_eq!(
            push_init(&app, rendition, 1).await.status,
            StatusCode::CREATED
        );
        let first = PartPush {
            rendition,
            msn: 3,
            part: 0,
            init_version: 1,
            discontinuity: true,
            ends_segment: false,
            sync_sample_bytes: None,
            body: Bytes::from(part_payload(rendition, 3, 0)),
        };
        assert_eq!(first.send(&app).await.status, StatusCode::CREATED);
    }
    // RFC 8216bis §4.4.4.7: audio's segment 2 never existed; it is listed as a gap, so
    // both renditions keep MSN 3. It lasts from the end of audio's own segment 1 to
    // segment 3's date (not video's cut-short 0.5 s), so replicas agree on it.
    let audio = get(&app, "/live/ev1/audio/index.m3u8").await;
    let playlist = audio.text();
    assert!(
        playlist.contains("#EXT-X-GAP\n#EXTINF:1.00000,\n2.m4s\n#EXT-X-DISCONTINUITY\n"),
        "{playlist}"
    );
    // Its date follows on from segment 1's (RFC 8216bis §4.4.4.6: every segment has one).
    assert!(
        playlist.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z\n#EXT-X-GAP\n"),
        "{playlist}"
    );
    get(&app, "/live/ev1/audio/2.m4s")
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/live/ev1/audio/3.0.m4s").await.status,
        StatusCode::OK
    );
    // A jump beyond the window's segment cap is still out of order.
    let far = PartPush {
        rendition: "audio",
        msn: 100_000,
        part: 0,
        init_version: 1,
        discontinuity: true,
        ends_segment: false,
        sync_sample_bytes: None,
        body: Bytes::from_static(b"far"),
    };
    far.send(&app).await.assert_problem(StatusCode::CONFLICT);
}

/// An origin archiving through a writer on `store`, its router, and the writer (to flush).
fn archiving_origin(
    store: Arc<dyn ObjectStore>,
    writer_config: WriterConfig,
) -> (Origin, Router, ArchiveWriter) {
    let writer = ArchiveWriter::spawn(store, writer_config).expect("valid writer config");
    let handle = metrics_handle();
    let origin = Origin::new(config(), move || handle.render()).with_archive(Some(writer.clone()));
    let router = origin.router();
    (origin, router, writer)
}

fn video_key() -> RenditionKey {
    RenditionKey::new(
        EventId::new(EVENT).unwrap(),
        RenditionName::new("video").unwrap(),
    )
}

async fn stored(store: &dyn ObjectStore, path: &object_store::path::Path) -> Option<Bytes> {
    match store.get(path).await {
        Ok(result) => Some(result.bytes().await.unwrap()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(error) => panic!("{path}: {error}"),
    }
}

#[tokio::test(start_paused = true)]
async fn complete_segments_and_init_versions_are_archived() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (origin, app, writer) = archiving_origin(store.clone(), WriterConfig::default());
    live_stream(&app).await;
    push_parts(&app, "video", 2, 1).await;
    writer.flush().await;

    let key = video_key();
    for msn in 0..2 {
        // The same bytes the origin serves at {msn}.m4s: its parts concatenated.
        let served = get(&app, &format!("/live/{EVENT}/video/{msn}.m4s")).await;
        assert_eq!(served.status, StatusCode::OK);
        let expected: String = (0..PARTS_PER_SEGMENT)
            .map(|part| part_payload("video", msn, part))
            .collect();
        assert_eq!(served.body, expected.as_bytes());
        assert_eq!(
            stored(store.as_ref(), &key.segment(msn)).await,
            Some(served.body)
        );
    }
    // Segment 2 is in progress: not archived yet.
    assert_eq!(stored(store.as_ref(), &key.segment(2)).await, None);
    assert_eq!(
        stored(store.as_ref(), &key.init(0)).await.as_deref(),
        Some(&b"init:video:0"[..])
    );

    let records = read_range(store.as_ref(), &key, 1_700_000_000_000, 1_800_000_000_000)
        .await
        .expect("index reads back");
    let records: Vec<_> = records.iter().map(|c| c.record).collect();
    assert_eq!(records.len(), 2, "{records:?}");
    for (msn, record) in records.iter().enumerate() {
        assert_eq!(record.msn, msn as u64);
        assert_eq!(record.duration_90k, 90_000);
        assert_eq!(
            record.program_date_time_ms,
            1_700_000_000_000 + msn as i64 * 1000
        );
        assert_eq!(record.bytes, 4 * 10);
        assert_eq!(record.init_version, 0);
        assert!(!record.discontinuity && !record.gap);
    }

    // A new init version goes to the archive when it is pushed.
    assert_eq!(
        push_init(&app, "video", 1).await.status,
        StatusCode::CREATED
    );
    // The end closes the segment in progress: archived as it is.
    let end = Request::post(format!("{PUSH_PREFIX}/{EVENT}/end"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, end).await.status, StatusCode::NO_CONTENT);
    writer.flush().await;
    assert_eq!(
        stored(store.as_ref(), &key.init(1)).await.as_deref(),
        Some(&b"init:video:1"[..])
    );
    assert_eq!(
        stored(store.as_ref(), &key.segment(2)).await.as_deref(),
        Some(part_payload("video", 2, 0).as_bytes())
    );
    let status = origin
        .stream_status(EVENT)
        .unwrap()
        .archive
        .expect("archive status");
    assert_eq!(status.to_string(), "archive: ok");
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_neither_fails_nor_slows_the_push() {
    // A local store whose directory became a file: every put fails.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    std::fs::create_dir(&root).unwrap();
    let store = LocalFileSystem::new_with_prefix(&root).unwrap();
    std::fs::remove_dir(&root).unwrap();
    std::fs::write(&root, b"not a directory").unwrap();
    let writer_config = WriterConfig {
        max_attempts: 2,
        ..WriterConfig::default()
    };
    let (origin, app, writer) = archiving_origin(Arc::new(store), writer_config);

    let started = Instant::now();
    live_stream(&app).await;
    push_parts(&app, "video", 3, 1).await;
    // Paused time moves only when everything waits: no push waited on the store.
    assert_eq!(started.elapsed(), Duration::ZERO);
    let playlist = get(&app, "/live/ev1/video/index.m3u8").await;
    assert_eq!(playlist.status, StatusCode::OK);
    assert!(
        playlist.text().lines().any(|l| l == "2.m4s"),
        "{}",
        playlist.text()
    );

    writer.flush().await;
    let status = origin
        .stream_status(EVENT)
        .unwrap()
        .archive
        .expect("archive status");
    assert!(status.degraded);
    // Renditions in name order: the audio's init version failed too.
    assert!(
        status.to_string().starts_with("archive: degraded (audio:")
            && status.to_string().contains("video: MSN 0-2 missing"),
        "{status}"
    );
}

/// An origin that does not hold a stream (restarted, or the stream ended long ago) reads
/// the archive: the push API's `last` continues the archived numbering, and the live
/// URLs of segments and init versions serve the archived bytes.
#[tokio::test]
async fn an_origin_without_the_stream_answers_from_the_archive() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (_, app, writer) = archiving_origin(store.clone(), WriterConfig::default());
    live_stream(&app).await;
    push_parts(&app, "video", 3, 1).await;
    writer.flush().await;

    let handle = metrics_handle();
    let fresh = Origin::new(config(), move || handle.render()).with_archive_store(Some(store));
    let fresh = fresh.router();
    let last = get(&fresh, &format!("{PUSH_PREFIX}/{EVENT}/video/last")).await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.text());
    let last: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(last["msn"], 2, "MSN 3 is in progress, not archived: {last}");
    assert_eq!(last["ends_segment"], true);
    assert_eq!(last["init_version"], 0);

    let segment = get(&fresh, &format!("/live/{EVENT}/video/1.m4s")).await;
    assert_eq!(segment.status, StatusCode::OK, "{}", segment.text());
    let expected: String = (0..PARTS_PER_SEGMENT)
        .map(|part| part_payload("video", 1, part))
        .collect();
    assert_eq!(segment.body, expected.as_bytes());
    let init = get(&fresh, &format!("/live/{EVENT}/video/init0.mp4")).await;
    assert_eq!(init.body, &b"init:video:0"[..]);
    // Not archived: 404, and no part of a stream it does not hold.
    let missing = get(&fresh, &format!("/live/{EVENT}/video/3.m4s")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let other = get(&fresh, &format!("{PUSH_PREFIX}/other/video/last")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

/// A VOD asset plays under its event's access: an asset of a token event needs a
/// playback token for that event on its playlists and media, and every URI of its
/// playlists carries it; its media playlist is a VOD playlist of the manifest's segments.
#[tokio::test]
async fn a_vod_asset_of_a_token_event_needs_a_token_for_that_event() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let segment_key = video_key().segment(0);
    let init_key = video_key().init(0);
    store
        .put(&segment_key, Bytes::from_static(b"moof+mdat").into())
        .await
        .unwrap();
    store
        .put(&init_key, Bytes::from_static(b"ftyp+moov").into())
        .await
        .unwrap();
    let mut token_video = descriptor("video", RenditionKind::Video);
    token_video.access = PlaybackAccess::Token;
    let asset_id = AssetId::new("clip1").unwrap();
    let manifest = AssetManifest {
        asset_id: asset_id.clone(),
        source: AssetSource {
            event_id: EventId::new(EVENT).unwrap(),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_002_000,
        },
        precision: Precision::Segment,
        renditions: vec![AssetRendition {
            descriptor: token_video,
            segments: vec![AssetSegment {
                object: segment_key.to_string(),
                init: init_key.to_string(),
                duration_90k: 180_000,
                program_date_time_ms: 1_700_000_000_000,
                bytes: 9,
                iframe_bytes: Some(4),
                discontinuity: false,
                gap: false,
            }],
        }],
        poster: None,
    };
    write_manifest(store.as_ref(), &manifest).await.unwrap();
    let handle = metrics_handle();
    let app = Origin::new(
        OriginConfig {
            playback_keys: vec![PLAYBACK_KEY.to_string()],
            ..config()
        },
        move || handle.render(),
    )
    .with_archive_store(Some(store))
    .router();

    let refused = get(&app, "/vod/clip1/master.m3u8").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let other = playback_token(PLAYBACK_KEY, "another-event", "s1", unix_now() + 60);
    let wrong = get(&app, &format!("/vod/clip1/master.m3u8?token={other}")).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let token = playback_token(PLAYBACK_KEY, EVENT, "s1", unix_now() + 60);
    let master = get(&app, &format!("/vod/clip1/master.m3u8?token={token}")).await;
    assert_eq!(master.status, StatusCode::OK, "{}", master.text());
    assert!(
        master
            .text()
            .contains(&format!("video/index.m3u8?token={token}")),
        "{}",
        master.text()
    );
    let media = get(&app, &format!("/vod/clip1/video/index.m3u8?token={token}")).await;
    let text = media.text();
    assert!(
        text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && text.contains("#EXT-X-ENDLIST"),
        "{text}"
    );
    assert!(text.contains(&format!("0.m4s?token={token}")), "{text}");
    let segment = get(&app, &format!("/vod/clip1/video/0.m4s?token={token}")).await;
    assert_eq!(segment.body, &b"moof+mdat"[..]);
    assert_eq!(
        get(&app, "/vod/clip1/video/0.m4s").await.status,
        StatusCode::UNAUTHORIZED
    );
    // An unknown asset is a 404, token or not.
    assert_eq!(
        get(&app, "/vod/nothing/master.m3u8").await.status,
        StatusCode::NOT_FOUND
    );
}
