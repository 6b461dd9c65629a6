//! Where parts are in a playlist, and where a low-latency player starts and goes next.

use std::time::Duration;

use super::EPSILON_S;
use crate::playlist::MediaPlaylist;

/// Position of a part in the stream: (Media Sequence Number, part index).
pub(crate) type PartPosition = (u64, u32);

/// One listed part, with what the player derives from the playlist around it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PartRef {
    pub(crate) position: PartPosition,
    pub(crate) uri: String,
    /// DURATION attribute, seconds.
    pub(crate) duration: f64,
    pub(crate) independent: bool,
    /// Part 0 of a segment preceded by EXT-X-DISCONTINUITY.
    pub(crate) discontinuity: bool,
    pub(crate) program_date_time_ms: Option<i64>,
    /// Sum of the DURATIONs of the earlier parts of the same segment, seconds.
    pub(crate) offset_in_segment: f64,
    /// EXT-X-MAP URI in effect for the part's segment.
    pub(crate) map_uri: Option<String>,
}

/// Every listed part, oldest first.
pub(crate) fn listed_parts(playlist: &MediaPlaylist) -> Vec<PartRef> {
    let mut parts = Vec::new();
    for segment in &playlist.segments {
        let mut offset = 0.0;
        for (index, part) in (0u32..).zip(&segment.parts) {
            parts.push(PartRef {
                position: (segment.msn, index),
                uri: part.uri.clone(),
                duration: part.duration,
                independent: part.independent,
                discontinuity: index == 0 && segment.discontinuity,
                program_date_time_ms: segment.program_date_time_ms,
                offset_in_segment: offset,
                map_uri: segment.map_uri.clone(),
            });
            offset += part.duration;
        }
    }
    parts
}

/// Where to start playing, as hls.js does in low-latency mode: at the latest independent
/// part that still starts at least PART-HOLD-BACK before the end of the playlist
/// (RFC 8216bis §4.4.3.8: clients should not start closer to the edge than PART-HOLD-BACK;
/// decoding must start on an independent part, §4.4.4.9). If the listed parts are shorter
/// than the hold-back, the earliest independent part. `None` when no listed part is
/// independent yet.
pub(crate) fn start_position(playlist: &MediaPlaylist) -> Option<PartPosition> {
    let parts = listed_parts(playlist);
    let hold_back = playlist
        .server_control
        .part_hold_back
        .or(playlist.part_target.map(|t| 3.0 * t))?;
    let mut to_edge = 0.0;
    let mut chosen = None;
    let mut earliest_independent = None;
    for part in parts.iter().rev() {
        to_edge += part.duration;
        if part.independent {
            earliest_independent = Some(part.position);
            if chosen.is_none() && to_edge + EPSILON_S >= hold_back {
                chosen = Some(part.position);
            }
        }
    }
    chosen.or(earliest_independent)
}

/// The part a player asks for with its next blocking reload (RFC 8216bis §6.2.5.2): the
/// one after `last`, which is part 0 of the next segment once `last`'s segment is complete.
/// Without a `last`, the part after the last listed one.
pub(crate) fn next_position(playlist: &MediaPlaylist, last: Option<PartPosition>) -> PartPosition {
    let last = last.or_else(|| playlist.last_part_position());
    match last {
        Some((msn, index)) => {
            let segment_complete = playlist.segments.iter().any(|s| {
                s.msn == msn && s.uri.is_some() && s.parts.len() as u64 == u64::from(index) + 1
            });
            if segment_complete {
                (msn + 1, 0)
            } else {
                (msn, index + 1)
            }
        }
        None => {
            let next_msn = playlist
                .segments
                .last()
                .map_or(playlist.media_sequence, |s| s.msn + 1);
            (next_msn, 0)
        }
    }
}

/// Parts listed after `last`, and whether they continue it: the first must be the part
/// right after `last`, or the player missed some (RFC 8216bis §6.3.4: parts are fetched in
/// order; a part that left the playlist before it was fetched is lost).
pub(crate) fn parts_after(
    playlist: &MediaPlaylist,
    last: PartPosition,
) -> (Vec<PartRef>, Option<String>) {
    let parts: Vec<PartRef> = listed_parts(playlist)
        .into_iter()
        .filter(|p| p.position > last)
        .collect();
    let gap = parts.first().and_then(|first| {
        let (msn, index) = last;
        // Segment numbers between the last part's and the next one's may be EXT-X-GAP
        // segments (§4.4.4.7: a rendition that lagged when a transcoder took over).
        let skipped_are_gaps = first.position.1 == 0
            && first.position.0 > msn
            && (msn + 1..first.position.0)
                .all(|m| playlist.segments.iter().any(|s| s.msn == m && s.gap));
        let contiguous = first.position == (msn, index + 1)
            || (skipped_are_gaps
                && playlist
                    .segments
                    .iter()
                    .any(|s| s.msn == msn && s.parts.len() as u64 == u64::from(index) + 1));
        (!contiguous).then(|| {
            format!(
                "parts between {msn}.{index} and {}.{} are not listed: lost position",
                first.position.0, first.position.1
            )
        })
    });
    (parts, gap)
}

/// How the player came to fetch a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartSource {
    /// Listed in the first playlist, from the start position to the edge: old on arrival
    /// by construction, so left out of the latency figures.
    StartupBacklog,
    /// Listed by a playlist reload, then requested.
    Playlist,
    /// Requested from EXT-X-PRELOAD-HINT before it was listed.
    PreloadHint,
}

/// The playlist lists `position` or something later: a later part of its segment, the
/// segment complete, a later segment, or the end of the stream.
pub(crate) fn has_reached(playlist: &MediaPlaylist, (msn, index): PartPosition) -> bool {
    playlist.ended
        || playlist.segments.iter().any(|s| {
            s.msn > msn
                || (s.msn == msn && (s.uri.is_some() || s.parts.len() as u64 > u64::from(index)))
        })
}

/// When a part's bytes finished arriving.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    /// Monotonic time since the master playlist was requested.
    pub(crate) since_start: Duration,
    /// Wall clock, milliseconds since the Unix epoch, for PROGRAM-DATE-TIME latency.
    pub(crate) unix_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{TWO_SEGMENTS, live};

    #[test]
    fn start_is_latest_independent_part_at_least_part_hold_back_from_the_edge() {
        let playlist = live(10, TWO_SEGMENTS);
        // p11.0 starts 0.4 s from the edge, under PART-HOLD-BACK 0.6; p10.0 starts 1.2 s
        // from it (RFC 8216bis §4.4.3.8).
        assert_eq!(start_position(&playlist), Some((10, 0)));
        let short = live(
            11,
            "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.800Z
#EXT-X-PART:DURATION=0.2,URI=\"p11.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"p11.1.mp4\"
",
        );
        // Fewer parts than the hold-back: the earliest independent one.
        assert_eq!(start_position(&short), Some((11, 0)));
        let none = live(
            11,
            "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.800Z
#EXT-X-PART:DURATION=0.2,URI=\"p11.1.mp4\"
",
        );
        assert_eq!(start_position(&none), None);
    }

    #[test]
    fn next_part_to_await() {
        let playlist = live(10, TWO_SEGMENTS);
        // RFC 8216bis §6.2.5.2: after the last part of a complete segment, part 0 of the next.
        assert_eq!(next_position(&playlist, Some((10, 3))), (11, 0));
        assert_eq!(next_position(&playlist, Some((11, 1))), (11, 2));
        assert_eq!(next_position(&playlist, None), (11, 2));
    }

    #[test]
    fn parts_after_detects_lost_position() {
        let playlist = live(10, TWO_SEGMENTS);
        let (parts, gap) = parts_after(&playlist, (10, 3));
        assert_eq!(gap, None);
        assert_eq!(
            parts.iter().map(|p| p.position).collect::<Vec<_>>(),
            [(11, 0), (11, 1)]
        );
        assert!((parts[1].offset_in_segment - 0.2).abs() < 1e-9);
        let (_, gap) = parts_after(&playlist, (10, 1));
        assert_eq!(gap, None);
        let (parts, gap) = parts_after(&playlist, (9, 2));
        assert_eq!(parts.len(), 6);
        assert!(gap.is_some());
    }

    #[test]
    fn parts_after_a_gap_segment_keep_the_position() {
        // §4.4.4.7: segment 11 is a gap (a rendition that lagged at a transcoder takeover).
        let playlist = live(
            10,
            "#EXT-X-PART:DURATION=0.2,URI=\"p10.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"p10.1.mp4\"
#EXTINF:0.4,
s10.mp4
#EXT-X-GAP
#EXTINF:0.8,
s11.mp4
#EXT-X-DISCONTINUITY
#EXT-X-PART:DURATION=0.2,URI=\"p12.0.mp4\",INDEPENDENT=YES
",
        );
        assert!(playlist.segments[1].gap);
        let (parts, gap) = parts_after(&playlist, (10, 1));
        assert_eq!(gap, None);
        assert_eq!(
            parts.iter().map(|p| p.position).collect::<Vec<_>>(),
            [(12, 0)]
        );
        // Without the gap listed, the same jump is a lost position.
        let (_, gap) = parts_after(&playlist, (9, 1));
        assert!(gap.is_some());
    }
}
