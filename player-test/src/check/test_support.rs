//! Playlists, parts and arrivals shared by the checker's tests.

use std::time::Duration;

use super::{Arrival, PartPosition, PartRef, RenditionChecker};
use crate::fmp4::tests::video_init;
use crate::playlist::{MediaPlaylist, parse_media};

/// A live playlist: PART-TARGET 0.2 s, segments of 4 parts.
pub(crate) fn live(media_sequence: u64, body: &str) -> MediaPlaylist {
    let text = format!(
        "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=6.0
#EXT-X-MEDIA-SEQUENCE:{media_sequence}
#EXT-X-MAP:URI=\"init.mp4\"
{body}"
    );
    parse_media(&text).expect("test playlist parses")
}

pub(crate) const TWO_SEGMENTS: &str = "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z
#EXT-X-PART:DURATION=0.2,URI=\"p10.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"p10.1.mp4\"
#EXT-X-PART:DURATION=0.2,URI=\"p10.2.mp4\"
#EXT-X-PART:DURATION=0.2,URI=\"p10.3.mp4\"
#EXTINF:0.8,
s10.mp4
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.800Z
#EXT-X-PART:DURATION=0.2,URI=\"p11.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"p11.1.mp4\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p11.2.mp4\"
";

pub(crate) fn arrival(ms: u64) -> Arrival {
    Arrival {
        since_start: Duration::from_millis(ms),
        unix_ms: 1_735_689_600_000.0 + ms as f64,
    }
}

pub(crate) fn checker_with_init() -> RenditionChecker {
    let mut checker = RenditionChecker::new("video", "index.m3u8");
    checker.set_init("init.mp4", &video_init(1, 90_000));
    checker
}

pub(crate) fn part(position: PartPosition, independent: bool, discontinuity: bool) -> PartRef {
    PartRef {
        position,
        uri: format!("p{}.{}.mp4", position.0, position.1),
        duration: 0.2,
        independent,
        discontinuity,
        program_date_time_ms: Some(1_735_689_600_000),
        offset_in_segment: 0.2 * f64::from(position.1),
        map_uri: Some("init.mp4".into()),
    }
}
