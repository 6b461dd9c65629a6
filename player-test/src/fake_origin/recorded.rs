//! Service test: a fake origin of recorded media on 127.0.0.1:0 — a start-over playlist
//! (EXT-X-PLAYLIST-TYPE:EVENT) that grows with the clock until EXT-X-ENDLIST, and a VOD
//! asset with a discontinuity, an init change and a gap — with I-frame playlists served
//! by Range requests, followed by the real `follow()` over HTTP. Segments are built with
//! mp4-atom; faults can be switched on to see the player catch them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::playlist_response;
use crate::fmp4::tests::{NON_SYNC, SYNC, audio_init, chunk, video_init};
use crate::{PlayerConfig, RecordedPace, Report, follow};

/// Every segment: one second of media in four moof+mdat chunks of five samples.
const CHUNKS: u64 = 4;
const SAMPLES_PER_CHUNK: u64 = 5;
/// Video at 90 kHz, audio at 48 kHz: ticks per sample for 50 ms.
const VIDEO_SAMPLE: u32 = 4500;
const AUDIO_SAMPLE: u32 = 2400;
/// The start-over playlist lists this many segments at first, then one more every
/// `APPEND_MS` as the archive catches up, up to `EVENT_SEGMENTS`, then EXT-X-ENDLIST.
const EVENT_FIRST: u64 = 3;
const EVENT_SEGMENTS: u64 = 8;
const APPEND_MS: u64 = 400;
/// The start-over range began this long before the test, as a viewer going back would.
const EVENT_BEHIND_MS: i64 = 30_000;

/// One archived segment.
#[derive(Debug, Clone, Copy)]
struct Archived {
    msn: u64,
    /// EXT-X-MAP `init{version}.mp4`.
    init_version: u32,
    discontinuity: bool,
    gap: bool,
    /// tfdt in seconds of its discontinuity sequence.
    media_start_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Faults {
    /// EXTINF written as 1.2 s for a segment whose samples last 1 s.
    extinf_off_at: Option<u64>,
    /// A video segment whose first sample is not a sync sample.
    no_sync_at: Option<u64>,
}

struct Recording {
    /// EVENT grows with the clock; VOD is finished.
    growing: bool,
    segments: Vec<Archived>,
    epoch: Instant,
    first_pdt_ms: i64,
    faults: Faults,
}

impl Recording {
    fn listed(&self) -> usize {
        if !self.growing {
            return self.segments.len();
        }
        let appended = self.epoch.elapsed().as_millis() as u64 / APPEND_MS;
        (EVENT_FIRST + appended).min(self.segments.len() as u64) as usize
    }

    fn extinf(&self, msn: u64) -> &'static str {
        if self.faults.extinf_off_at == Some(msn) {
            "1.20000"
        } else {
            "1.00000"
        }
    }

    fn program_date_time(&self, msn: u64) -> String {
        let ms = self.first_pdt_ms + msn as i64 * 1000;
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }

    /// The media playlist (`iframes` false) or the I-frame playlist of `rendition`.
    fn render(&self, rendition: &str, iframes: bool) -> String {
        let listed = self.listed();
        let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:6\n");
        if iframes {
            text.push_str(
                "#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-I-FRAMES-ONLY\n",
            );
        } else {
            let kind = if self.growing { "EVENT" } else { "VOD" };
            let target = if self.faults.extinf_off_at.is_some() {
                2
            } else {
                1
            };
            let _ = write!(
                text,
                "#EXT-X-PLAYLIST-TYPE:{kind}\n#EXT-X-TARGETDURATION:{target}\n\
                 #EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n"
            );
        }
        let mut map = None;
        for segment in &self.segments[..listed] {
            if segment.discontinuity {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(segment.init_version) {
                map = Some(segment.init_version);
                let _ = writeln!(text, "#EXT-X-MAP:URI=\"init{}.mp4\"", segment.init_version);
            }
            let _ = writeln!(
                text,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                self.program_date_time(segment.msn)
            );
            let _ = writeln!(text, "#EXTINF:{},", self.extinf(segment.msn));
            if segment.gap {
                text.push_str("#EXT-X-GAP\n");
            } else if iframes {
                let length = iframe_length(&self.segment(rendition, segment));
                let _ = writeln!(text, "#EXT-X-BYTERANGE:{length}@0");
            }
            let _ = writeln!(text, "{}.m4s", segment.msn);
        }
        if listed == self.segments.len() {
            text.push_str("#EXT-X-ENDLIST\n");
        }
        text
    }

    /// One second of media in `CHUNKS` chunks; the init version sets the track ID.
    fn segment(&self, rendition: &str, segment: &Archived) -> Vec<u8> {
        let audio = rendition == "audio";
        let (track, tick) = if audio {
            (2 + 2 * segment.init_version, AUDIO_SAMPLE)
        } else {
            (1 + 2 * segment.init_version, VIDEO_SAMPLE)
        };
        let per_chunk = u64::from(tick) * SAMPLES_PER_CHUNK;
        let mut bytes = Vec::new();
        for c in 0..CHUNKS {
            let samples: Vec<(u32, u32)> = (0..SAMPLES_PER_CHUNK)
                .map(|s| {
                    let first = c == 0 && s == 0;
                    let sync = audio || (first && self.faults.no_sync_at != Some(segment.msn));
                    (tick, if sync { SYNC } else { NON_SYNC })
                })
                .collect();
            let tfdt = segment.media_start_s * per_chunk * CHUNKS + c * per_chunk;
            let sequence = u32::try_from(segment.msn * CHUNKS + c + 1).unwrap_or(u32::MAX);
            bytes.extend(chunk(track, sequence, tfdt, &samples));
        }
        bytes
    }
}

/// The I-frame's byte range: the first chunk's moof, its mdat header and the first sample
/// (`chunk` makes it 10 bytes).
fn iframe_length(segment: &[u8]) -> usize {
    let moof = u32::from_be_bytes(segment[0..4].try_into().expect("4 bytes")) as usize;
    moof + 8 + 10
}

/// An EVENT recording of `EVENT_SEGMENTS` plain segments.
fn event_segments() -> Vec<Archived> {
    (0..EVENT_SEGMENTS)
        .map(|msn| Archived {
            msn,
            init_version: 0,
            discontinuity: false,
            gap: false,
            media_start_s: msn,
        })
        .collect()
}

/// A VOD asset: segments 0–2 on init0, a discontinuity to init1 at 3 (timestamps restart),
/// a gap at 5, the last at 6.
fn vod_segments() -> Vec<Archived> {
    (0..7)
        .map(|msn| Archived {
            msn,
            init_version: u32::from(msn >= 3),
            discontinuity: msn == 3,
            gap: msn == 5,
            media_start_s: if msn >= 3 { msn - 3 } else { msn },
        })
        .collect()
}

/// Every playlist URI carries the master's query (`?start=…`), as the origin writes it.
async fn master(uri: axum::http::Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    playlist_response(format!(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
         #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio/index.m3u8{query}\"\n\
         #EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"aac\"\n\
         video/index.m3u8{query}\n\
         #EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,CODECS=\"avc1.64001f\",RESOLUTION=1280x720,URI=\"video/iframes.m3u8{query}\"\n"
    ))
}

async fn media_playlist(
    State(recording): State<Arc<Recording>>,
    Path((rendition, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let bytes_of = |segment: &Archived| recording.segment(&rendition, segment);
    if let Some(version) = file
        .strip_prefix("init")
        .and_then(|f| f.strip_suffix(".mp4"))
        .and_then(|v| v.parse::<u32>().ok())
    {
        let init = if rendition == "audio" {
            audio_init(2 + 2 * version, 48_000)
        } else {
            video_init(1 + 2 * version, 90_000)
        };
        return ([(header::CONTENT_TYPE, "video/mp4")], init).into_response();
    }
    if let Some(msn) = file
        .strip_suffix(".m4s")
        .and_then(|m| m.parse::<u64>().ok())
    {
        let listed = &recording.segments[..recording.listed()];
        return match listed.iter().find(|s| s.msn == msn && !s.gap) {
            Some(segment) => ranged(&headers, bytes_of(segment)),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    match file.as_str() {
        "index.m3u8" => playlist_response(recording.render(&rendition, false)),
        "iframes.m3u8" if rendition == "video" => {
            playlist_response(recording.render(&rendition, true))
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `Range: bytes=first-last` answered with 206 and Content-Range (RFC 9110 §14).
fn ranged(headers: &HeaderMap, bytes: Vec<u8>) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    match range {
        Some((first, last)) if first <= last && last < bytes.len() => {
            let total = bytes.len();
            (
                StatusCode::PARTIAL_CONTENT,
                [
                    (header::CONTENT_TYPE, "video/mp4".to_string()),
                    (
                        header::CONTENT_RANGE,
                        format!("bytes {first}-{last}/{total}"),
                    ),
                ],
                bytes[first..=last].to_vec(),
            )
                .into_response()
        }
        Some(_) => StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        None => ([(header::CONTENT_TYPE, "video/mp4")], bytes).into_response(),
    }
}

/// Serves `segments` (growing with the clock when `growing`); the master playlist's URL.
async fn serve(growing: bool, segments: Vec<Archived>, faults: Faults) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let recording = Arc::new(Recording {
        growing,
        segments,
        epoch: Instant::now(),
        first_pdt_ms: now_ms - EVENT_BEHIND_MS,
        faults,
    });
    let app = Router::new()
        .route("/rec/master.m3u8", get(master))
        .route("/rec/{rendition}/{file}", get(media_playlist))
        .with_state(recording);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/rec/master.m3u8")
}

async fn follow_url(url: String, configure: impl FnOnce(&mut PlayerConfig)) -> Report {
    let mut config = PlayerConfig::new(url);
    config.duration = Duration::from_secs(15);
    configure(&mut config);
    follow(config).await.expect("follows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_growing_event_playlist_to_its_end() {
    let url = serve(true, event_segments(), Faults::default()).await;
    let start = (SystemTime::now() - Duration::from_millis(EVENT_BEHIND_MS as u64))
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let report = follow_url(format!("{url}?start={start}"), |_| {}).await;
    assert!(report.is_clean(), "{report}");
    assert!(report.ended, "{report}");
    assert!(report.startup_ms.is_some(), "{report}");
    assert_eq!(
        report.latency_ms, None,
        "no part latency for recorded media"
    );
    let recorded = report.recorded.as_ref().expect("recorded");
    assert_eq!(recorded.playlist_type.as_deref(), Some("EVENT"));
    assert_eq!(recorded.segments_fetched, 2 * EVENT_SEGMENTS, "{report}");
    assert!((recorded.media_seconds - EVENT_SEGMENTS as f64).abs() < 1e-6);
    // The last segment's PDT is 7 s after the range's start, which was 30 s ago; following
    // took about 2 s.
    let behind = recorded.behind_live_edge_ms.expect("PDT known");
    assert!((22_000..28_000).contains(&behind), "{report}");
    let iframes = recorded.iframes.as_ref().expect("I-frame playlist checked");
    assert_eq!(iframes.iframes_checked, EVENT_SEGMENTS, "{report}");
    assert!(iframes.ended, "{report}");
    for rendition in &report.renditions {
        let summary = rendition.recorded.as_ref().expect("recorded rendition");
        // 3 segments at first, 8 after 2 s: reloaded about once a second.
        assert!(summary.reloads >= 2, "{report}");
        assert!(rendition.ended, "{report}");
        assert_eq!(rendition.segments_seen, EVENT_SEGMENTS);
        assert!(summary.first_program_date_time.is_some(), "{report}");
        assert!(summary.last_program_date_time > summary.first_program_date_time);
        assert_eq!(
            (rendition.parts_fetched, rendition.blocking_reloads),
            (0, 0)
        );
    }
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["recorded"]["playlist_type"], "EVENT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_a_vod_with_a_discontinuity_an_init_change_and_a_gap() {
    let url = serve(false, vod_segments(), Faults::default()).await;
    let report = follow_url(url, |_| {}).await;
    assert!(report.is_clean(), "{report}");
    assert!(report.ended, "{report}");
    let recorded = report.recorded.as_ref().expect("recorded");
    assert_eq!(recorded.playlist_type.as_deref(), Some("VOD"));
    // Six segments with media per rendition; the gap is listed, not loaded.
    assert_eq!(recorded.segments_fetched, 12, "{report}");
    assert_eq!(recorded.gap_segments, 2, "{report}");
    assert!((recorded.media_seconds - 6.0).abs() < 1e-6, "{report}");
    let iframes = recorded.iframes.as_ref().expect("I-frame playlist checked");
    assert_eq!((iframes.iframes_checked, iframes.gap_entries), (6, 1));
    for rendition in &report.renditions {
        // Crossed the discontinuity on the new init (its track ID changed).
        assert_eq!(rendition.discontinuities, 1, "{report}");
        assert_eq!(rendition.tfdt_gaps, 0, "{report}");
        assert_eq!(rendition.recorded.as_ref().expect("recorded").reloads, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paces_a_vod_at_real_time_past_the_follow_duration() {
    let url = serve(false, vod_segments(), Faults::default()).await;
    let report = follow_url(url, |config| {
        // A finished playlist is fetched to its end whatever `duration` says.
        config.duration = Duration::from_millis(500);
        config.pace = RecordedPace::RealTime;
        config.check_iframes = false;
    })
    .await;
    assert!(report.is_clean(), "{report}");
    assert!(report.ended, "{report}");
    // Segment 6 comes after 5 s of media, with 3 s (three target durations) buffered.
    assert!(report.followed_ms >= 1_900, "{report}");
    assert_eq!(report.stalls, 0, "{report}");
    assert!(
        report
            .recorded
            .as_ref()
            .expect("recorded")
            .iframes
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_a_malformed_recorded_playlist() {
    let faults = Faults {
        extinf_off_at: Some(1),
        no_sync_at: Some(2),
    };
    let url = serve(false, vod_segments(), faults).await;
    let report = follow_url(url, |_| {}).await;
    let errors = report.errors.join("\n");
    // RFC 8216bis §4.4.4.1: EXTINF is the segment's duration.
    assert!(
        errors.contains("video: segment 1 (")
            && errors.contains("EXTINF=1.2 but its samples last 1.000000 s"),
        "{report}"
    );
    assert!(errors.contains("audio: segment 1 ("), "{report}");
    // EXT-X-INDEPENDENT-SEGMENTS: every segment starts with a sync sample.
    assert!(
        errors.contains("video: segment 2 (")
            && errors.contains("the first sample is not a sync sample"),
        "{report}"
    );
    assert!(errors.contains("iframes: I-frame 2 ("), "{report}");
    // §4.4.3.6: an I-frame's EXTINF is the time to the next one.
    assert!(
        errors.contains(
            "iframes: I-frame 1: EXTINF=1.2 but the next I-frame is presented 1.000000 s later"
        ),
        "{report}"
    );
    assert_eq!(report.errors.len(), 5, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_over_url_answered_live_is_an_error() {
    let url = super::serve_clean(2).await;
    let report = follow_url(format!("{url}?start=1765138500"), |config| {
        config.duration = Duration::from_secs(1);
    })
    .await;
    let errors = report.errors.join("\n");
    assert!(
        errors.contains("does not carry the master URL's range"),
        "{report}"
    );
    assert!(
        errors.contains("asks for a start-over or time-shift range"),
        "{report}"
    );
    assert!(report.recorded.is_none());
}
