//! Service test: a small fake LL-HLS origin on 127.0.0.1:0 (axum), driven by the clock like
//! a live stream, followed by the real `follow()` over HTTP. Its parts are built with
//! mp4-atom; faults can be switched on to see the player catch them.
//!
//! `recorded` serves start-over (EVENT) and VOD playlists the same way.

mod recorded;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::fmp4::tests::{NON_SYNC, SYNC, audio_init, chunk, video_init};
use crate::{PlayerConfig, Report, follow};

const PART_MS: u64 = 100;
const PARTS_PER_SEGMENT: u64 = 5;
/// Segments kept in the playlist (8 s) and the Skip Boundary (6 s, 6 × TARGETDURATION).
const WINDOW_SEGMENTS: u64 = 16;
const SKIP_UNTIL_MS: u64 = 6000;
/// The stream was already live this long when the test started, so delta updates skip.
const LIVE_BEFORE_MS: u64 = 8000;
/// Blocking requests give up after 3 × TARGETDURATION.
const BLOCK_LIMIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Faults {
    /// Shift the video tfdt of this part (global index) by 1 ms.
    tfdt_gap_at: Option<u64>,
    /// Announce one more skipped segment than were left out.
    wrong_skip_count: bool,
}

struct FakeStream {
    /// Part k (global index) completes at `epoch + (k + 1) × PART_MS`.
    epoch: Instant,
    epoch_unix_ms: u64,
    total_parts: u64,
    faults: Faults,
}

impl FakeStream {
    fn available(&self) -> u64 {
        let elapsed = self.epoch.elapsed().as_millis() as u64;
        (elapsed / PART_MS).min(self.total_parts)
    }

    /// Holds a request until part `part` exists, or the stream ends if it never will;
    /// false after `BLOCK_LIMIT`.
    async fn wait_for(&self, part: u64) -> bool {
        let ready_at =
            self.epoch + Duration::from_millis((part + 1).min(self.total_parts) * PART_MS);
        let limit = Instant::now() + BLOCK_LIMIT;
        if ready_at > limit {
            tokio::time::sleep_until(limit.into()).await;
            return false;
        }
        tokio::time::sleep_until(ready_at.into()).await;
        true
    }

    fn program_date_time(&self, msn: u64) -> String {
        let ms = self.epoch_unix_ms + msn * PARTS_PER_SEGMENT * PART_MS;
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }

    fn render(&self, rendition: &str, n: u64, skip: bool) -> String {
        let complete = n / PARTS_PER_SEGMENT;
        let in_progress = n % PARTS_PER_SEGMENT;
        let end = complete + u64::from(in_progress > 0);
        let first = complete.saturating_sub(WINDOW_SEGMENTS);
        let end_ms = n * PART_MS;
        let skipped = if skip {
            (first..complete)
                .take_while(|m| end_ms - (m + 1) * PARTS_PER_SEGMENT * PART_MS > SKIP_UNTIL_MS)
                .count() as u64
        } else {
            0
        };
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART-INF:PART-TARGET=0.1\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3,CAN-SKIP-UNTIL=6.0\n\
             #EXT-X-MEDIA-SEQUENCE:{first}\n"
        );
        if skipped > 0 {
            let announced = skipped + u64::from(self.faults.wrong_skip_count);
            let _ = writeln!(text, "#EXT-X-SKIP:SKIPPED-SEGMENTS={announced}");
        }
        text.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
        for msn in first + skipped..end {
            let _ = writeln!(
                text,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                self.program_date_time(msn)
            );
            if msn + 3 >= complete {
                let parts = if msn < complete {
                    PARTS_PER_SEGMENT
                } else {
                    in_progress
                };
                for index in 0..parts {
                    let k = msn * PARTS_PER_SEGMENT + index;
                    // Every AAC frame is a sync sample; video parts start one per segment.
                    let independent = if index == 0 || rendition == "audio" {
                        ",INDEPENDENT=YES"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        text,
                        "#EXT-X-PART:DURATION=0.1,URI=\"part/{k}\"{independent}"
                    );
                }
            }
            if msn < complete {
                let _ = writeln!(text, "#EXTINF:0.5,\nseg/{msn}");
            }
        }
        if n >= self.total_parts {
            text.push_str("#EXT-X-ENDLIST\n");
        } else {
            let _ = writeln!(text, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/{n}\"");
        }
        text
    }

    /// Video: two 50 ms samples at 90 kHz, a sync sample first in each segment's part 0.
    /// Audio: two 50 ms "frames" at 48 kHz, all sync.
    fn part(&self, rendition: &str, k: u64) -> Vec<u8> {
        let sequence = u32::try_from(k + 1).unwrap_or(u32::MAX);
        if rendition == "audio" {
            return chunk(2, sequence, k * 4800, &[(2400, SYNC), (2400, SYNC)]);
        }
        let first = if k.is_multiple_of(PARTS_PER_SEGMENT) {
            SYNC
        } else {
            NON_SYNC
        };
        let shift = if self.faults.tfdt_gap_at == Some(k) {
            90
        } else {
            0
        };
        chunk(
            1,
            sequence,
            k * 9000 + shift,
            &[(4500, first), (4500, NON_SYNC)],
        )
    }
}

const MASTER: &str = "#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"main\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,AUDIO=\"aac\"
video/index.m3u8
";

fn playlist_response(text: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")],
        text,
    )
        .into_response()
}

async fn media_playlist(
    State(stream): State<Arc<FakeStream>>,
    Path(rendition): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let skip = query.get("_HLS_skip").is_some_and(|v| v == "YES");
    if let Some(msn) = query.get("_HLS_msn").and_then(|v| v.parse::<u64>().ok()) {
        let part = query
            .get("_HLS_part")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let awaited = msn * PARTS_PER_SEGMENT + part;
        if !stream.wait_for(awaited).await {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    playlist_response(stream.render(&rendition, stream.available(), skip))
}

async fn init(Path(rendition): Path<String>) -> Response {
    let bytes = if rendition == "audio" {
        audio_init(2, 48_000)
    } else {
        video_init(1, 90_000)
    };
    ([(header::CONTENT_TYPE, "video/mp4")], bytes).into_response()
}

async fn part(
    State(stream): State<Arc<FakeStream>>,
    Path((rendition, k)): Path<(String, u64)>,
) -> Response {
    if k >= stream.total_parts || (k >= stream.available() && !stream.wait_for(k).await) {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [(header::CONTENT_TYPE, "video/mp4")],
        stream.part(&rendition, k),
    )
        .into_response()
}

/// Serves a clean stream that went live `LIVE_BEFORE_MS` ago and ends after `seconds` more
/// of parts; its master playlist's URL.
pub(crate) async fn serve_clean(seconds: u64) -> String {
    serve(
        LIVE_BEFORE_MS / PART_MS + seconds * 1000 / PART_MS,
        Faults::default(),
    )
    .await
}

/// Serves a stream that went live `LIVE_BEFORE_MS` ago and ends after `total_parts`.
async fn serve(total_parts: u64, faults: Faults) -> String {
    let now_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    let stream = Arc::new(FakeStream {
        epoch: Instant::now() - Duration::from_millis(LIVE_BEFORE_MS),
        epoch_unix_ms: now_unix_ms - LIVE_BEFORE_MS,
        total_parts,
        faults,
    });
    let app = Router::new()
        .route(
            "/master.m3u8",
            get(|| async { playlist_response(MASTER.into()) }),
        )
        .route("/{rendition}/index.m3u8", get(media_playlist))
        .route("/{rendition}/init.mp4", get(init))
        .route("/{rendition}/part/{k}", get(part))
        .with_state(stream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/master.m3u8")
}

async fn follow_fake(total_parts: u64, faults: Faults) -> Report {
    let mut config = PlayerConfig::new(serve(total_parts, faults).await);
    config.duration = Duration::from_secs(15);
    follow(config).await.expect("follows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_clean_stream_to_its_end() {
    // 2.5 s of parts after the start, then EXT-X-ENDLIST.
    let report = follow_fake(LIVE_BEFORE_MS / PART_MS + 25, Faults::default()).await;
    assert!(report.is_clean(), "{report}");
    assert!(report.ended, "{report}");
    assert!(report.followed_ms < 10_000, "stopped at ENDLIST: {report}");
    assert!(report.startup_ms.is_some(), "{report}");
    assert_eq!(report.renditions.len(), 2);
    for rendition in &report.renditions {
        // Started PART-HOLD-BACK (3 parts) behind the edge on an independent part, then
        // followed every part to the end.
        assert!(rendition.parts_fetched >= 25, "{report}");
        assert!(rendition.blocking_reloads >= 10, "{report}");
        assert!(rendition.delta_updates > 0, "{report}");
        assert!(rendition.preload_hint_hits > 0, "{report}");
        assert_eq!(rendition.tfdt_gaps, 0);
        assert_eq!(rendition.parts_over_part_target, 0);
    }
    let latency = report.latency_ms.expect("latency measured");
    assert!(latency.p50 < 1000.0, "{report}");
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["ended"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_a_tfdt_gap() {
    let total = LIVE_BEFORE_MS / PART_MS + 20;
    let faults = Faults {
        tfdt_gap_at: Some(total - 5),
        ..Faults::default()
    };
    let report = follow_fake(total, faults).await;
    // The shifted part starts 1 ms late, and the next one then starts 1 ms early.
    assert_eq!(report.tfdt_gaps, 2, "{report}");
    assert_eq!(report.errors.len(), 2, "{report}");
    let (msn, index) = (
        (total - 5) / PARTS_PER_SEGMENT,
        (total - 5) % PARTS_PER_SEGMENT,
    );
    assert!(
        report.errors[0].starts_with(&format!("video: part {msn}.{index} ")),
        "{report}"
    );
    assert!(report.errors[0].contains("(+1.000 ms)"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_a_wrong_skip_count() {
    let faults = Faults {
        wrong_skip_count: true,
        ..Faults::default()
    };
    let report = follow_fake(LIVE_BEFORE_MS / PART_MS + 10, faults).await;
    // RFC 8216bis §4.4.5.2: announcing one segment too many shifts every MSN after the
    // skip, so known segments reappear under other numbers.
    let errors = report.errors.join("\n");
    assert!(errors.contains("was \"seg/"), "{report}");
    assert!(errors.contains("SKIPPED-SEGMENTS Some("), "{report}");
}
