//! Recorded playlists: start-over and time-shift (`EXT-X-PLAYLIST-TYPE:EVENT`, growing as
//! the archive catches up), finished ranges and VOD assets (`VOD` with `EXT-X-ENDLIST`),
//! and their I-frame playlists. Whole segments, no parts and no blocking reload: the player
//! reloads about every target duration (RFC 8216bis §6.3.4) and checks each segment's
//! fMP4 against its EXTINF, the timeline across segments, and that every segment starts
//! with a sync sample.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Arrival, DURATION_TOLERANCE_S, RenditionChecker};
use crate::fmp4;
use crate::playlist::{ByteRange, MediaPlaylist, PlaylistType};
use crate::report::RecordedSummary;

/// One listed segment of a recorded playlist, with what applies to it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SegmentRef {
    pub(crate) msn: u64,
    pub(crate) uri: String,
    /// EXTINF, seconds.
    pub(crate) duration: f64,
    pub(crate) discontinuity: bool,
    pub(crate) program_date_time_ms: Option<i64>,
    /// EXT-X-MAP URI in effect.
    pub(crate) map_uri: Option<String>,
    /// EXT-X-GAP: not to be loaded (§4.4.4.7).
    pub(crate) gap: bool,
    pub(crate) byte_range: Option<ByteRange>,
}

/// Complete segments listed after `next` − 1 (all when `next` is `None`), oldest first,
/// and an error when the first of them is not `next`: segments the player never saw.
pub(crate) fn segments_from(
    playlist: &MediaPlaylist,
    next: Option<u64>,
) -> (Vec<SegmentRef>, Option<String>) {
    let segments: Vec<SegmentRef> = playlist
        .segments
        .iter()
        .filter(|s| next.is_none_or(|next| s.msn >= next))
        .filter_map(|s| {
            Some(SegmentRef {
                msn: s.msn,
                uri: s.uri.clone()?,
                duration: s.duration,
                discontinuity: s.discontinuity,
                program_date_time_ms: s.program_date_time_ms,
                map_uri: s.map_uri.clone(),
                gap: s.gap,
                byte_range: s.byte_range,
            })
        })
        .collect();
    let lost = match (next, segments.first()) {
        (Some(next), Some(first)) if first.msn != next => Some(format!(
            "segments {next} to {} were never listed: the playlist lost them (RFC 8216bis §6.2.1)",
            first.msn - 1
        )),
        _ => None,
    };
    (segments, lost)
}

/// The recorded-playlist state of a `RenditionChecker`.
#[derive(Debug, Default)]
pub(super) struct Recorded {
    playlist_type: Option<PlaylistType>,
    first_media_sequence: u64,
    /// EXTINF of every segment seen, by MSN: an EVENT or VOD playlist never changes one.
    extinf: BTreeMap<u64, f64>,
    segments_listed: usize,
    endlist_seen: bool,
    reloads: u64,
    segments_fetched: u64,
    gap_segments: u64,
    media_seconds: f64,
    first_pdt_ms: Option<i64>,
    last_pdt_ms: Option<i64>,
    /// The MSN after the last segment fetched, skipped or passed as a gap.
    next_msn: Option<u64>,
    /// A player playing from the first segment's arrival at 1×: when it started, and how
    /// long it stood still waiting for late segments.
    playback_start: Option<Duration>,
    stalled: Duration,
    /// The previous I-frame, to check its EXTINF once the next one is presented.
    previous_iframe: Option<PreviousIFrame>,
    behind_live_edge_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct PreviousIFrame {
    msn: u64,
    extinf: f64,
    /// Presentation time, timescale units.
    presented: i128,
    /// Its sample's duration, seconds.
    frame: f64,
}

/// Milliseconds since the Unix epoch as RFC 3339.
fn rfc3339(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

impl Recorded {
    pub(super) fn summary(&self) -> RecordedSummary {
        RecordedSummary {
            playlist_type: self.playlist_type.map(|t| t.to_string()),
            segments_fetched: self.segments_fetched,
            gap_segments: self.gap_segments,
            media_seconds: self.media_seconds,
            first_program_date_time: self.first_pdt_ms.and_then(rfc3339),
            last_program_date_time: self.last_pdt_ms.and_then(rfc3339),
            reloads: self.reloads,
            behind_live_edge_ms: self.behind_live_edge_ms,
        }
    }

    /// When a player playing since the first arrival reaches the media already fetched.
    fn playhead_due(&self) -> Option<Duration> {
        let start = self.playback_start?;
        Some(start + self.stalled + Duration::from_secs_f64(self.media_seconds.max(0.0)))
    }
}

impl RenditionChecker {
    /// The MSN of the next segment to fetch; `None` before the first.
    pub(crate) fn next_segment(&self) -> Option<u64> {
        self.recorded.as_ref().and_then(|r| r.next_msn)
    }

    /// When (time since start) a player keeping `buffer` of media ahead of its playhead
    /// fetches the next segment; `None` until playback started.
    pub(crate) fn next_segment_due(&self, buffer: Duration) -> Option<Duration> {
        let due = self.recorded.as_ref()?.playhead_due()?;
        Some(due.saturating_sub(buffer))
    }

    /// Checks a recorded media or I-frame playlist: the first load and every reload.
    /// `master_independent`: the master playlist carries EXT-X-INDEPENDENT-SEGMENTS.
    pub(crate) fn observe_recorded_playlist(
        &mut self,
        playlist: &MediaPlaylist,
        master_independent: bool,
    ) {
        self.report_parser_findings(playlist);
        match self.recorded.as_mut() {
            None => {
                self.recorded = Some(Recorded {
                    playlist_type: playlist.playlist_type,
                    first_media_sequence: playlist.media_sequence,
                    ..Recorded::default()
                });
                self.check_first_recorded(playlist, master_independent);
            }
            Some(recorded) => {
                recorded.reloads += 1;
                self.check_recorded_reload(playlist);
            }
        }
        self.check_recorded_segments(playlist);
        self.check_numbering(playlist);
        self.check_program_date_time(playlist);
        if let Some(recorded) = self.recorded.as_mut() {
            recorded.segments_listed = playlist.segments.len();
            recorded.endlist_seen |= playlist.ended;
        }
    }

    fn check_first_recorded(&mut self, playlist: &MediaPlaylist, master_independent: bool) {
        if playlist.playlist_type == Some(PlaylistType::Vod) && !playlist.ended {
            self.error(
                "EXT-X-PLAYLIST-TYPE:VOD without EXT-X-ENDLIST: the playlist cannot change \
                 (RFC 8216bis §4.4.3.5), so nothing tells a player it is complete",
            );
        }
        if playlist.segments.iter().any(|s| !s.parts.is_empty())
            || playlist.preload_hint_part.is_some()
        {
            self.error(
                "EXT-X-PART or EXT-X-PRELOAD-HINT without EXT-X-PART-INF (RFC 8216bis §4.4.3.7)",
            );
        }
        if !playlist.iframes_only && !playlist.independent_segments && !master_independent {
            // Floodlight writes it on every playlist; players use it to start anywhere.
            self.error(
                "neither the master nor the media playlist carries EXT-X-INDEPENDENT-SEGMENTS \
                 (RFC 8216bis §4.4.2.1)",
            );
        }
    }

    /// RFC 8216bis §6.2.1: a server may only append to a playlist, remove the oldest
    /// segments (not in an EVENT one, §4.4.3.5) and add EXT-X-ENDLIST; a VOD playlist
    /// never changes.
    fn check_recorded_reload(&mut self, playlist: &MediaPlaylist) {
        let Some(recorded) = self.recorded.as_ref() else {
            return;
        };
        let mut problems = Vec::new();
        if playlist.playlist_type != recorded.playlist_type {
            problems.push(format!(
                "EXT-X-PLAYLIST-TYPE changed from {} to {} (RFC 8216bis §6.2.1: a server only \
                 appends to a playlist and adds EXT-X-ENDLIST)",
                type_name(recorded.playlist_type),
                type_name(playlist.playlist_type)
            ));
        }
        let append_only = recorded.playlist_type.is_some();
        if append_only && playlist.media_sequence != recorded.first_media_sequence {
            problems.push(format!(
                "EXT-X-MEDIA-SEQUENCE changed from {} to {} in an EXT-X-PLAYLIST-TYPE:{} \
                 playlist, which only grows at its end (RFC 8216bis §4.4.3.5)",
                recorded.first_media_sequence,
                playlist.media_sequence,
                type_name(recorded.playlist_type)
            ));
        } else if append_only && playlist.segments.len() < recorded.segments_listed {
            problems.push(format!(
                "the playlist shrank from {} to {} segments; EXT-X-PLAYLIST-TYPE:{} only grows \
                 (RFC 8216bis §4.4.3.5)",
                recorded.segments_listed,
                playlist.segments.len(),
                type_name(recorded.playlist_type)
            ));
        }
        if recorded.endlist_seen && !playlist.ended {
            problems.push("EXT-X-ENDLIST disappeared on reload (RFC 8216bis §6.2.1)".into());
        }
        for problem in problems {
            self.error(problem);
        }
    }

    /// Each newly listed segment: EXTINF rounded within TARGETDURATION (§4.4.3.1), and
    /// the EXTINF of a segment seen before unchanged.
    fn check_recorded_segments(&mut self, playlist: &MediaPlaylist) {
        let Some(recorded) = self.recorded.as_mut() else {
            return;
        };
        let mut problems = Vec::new();
        for segment in &playlist.segments {
            match recorded.extinf.get(&segment.msn) {
                Some(&before) if (before - segment.duration).abs() > DURATION_TOLERANCE_S => {
                    problems.push(format!(
                        "segment {}: EXTINF changed from {before} to {} (RFC 8216bis §6.2.1)",
                        segment.msn, segment.duration
                    ));
                }
                Some(_) => {}
                None => {
                    recorded.extinf.insert(segment.msn, segment.duration);
                    if segment.duration.round() > playlist.target_duration as f64 {
                        problems.push(format!(
                            "segment {}: EXTINF {} rounds above EXT-X-TARGETDURATION {} \
                             (RFC 8216bis §4.4.3.1)",
                            segment.msn, segment.duration, playlist.target_duration
                        ));
                    }
                }
            }
        }
        for problem in problems {
            self.error(problem);
        }
    }

    /// A segment listed with EXT-X-GAP: not loaded; the timeline jumps by its EXTINF, so
    /// the next segment's tfdt is not checked against the last one fetched.
    pub(crate) fn pass_gap(&mut self, segment: &SegmentRef) {
        self.expected_tfdt = None;
        if let Some(recorded) = self.recorded.as_mut() {
            recorded.gap_segments += 1;
            recorded.next_msn = Some(segment.msn + 1);
            recorded.previous_iframe = None;
        }
    }

    /// A listed segment that could not be fetched: following goes on after it.
    pub(crate) fn skip_segment(&mut self, msn: u64) {
        self.expected_tfdt = None;
        if let Some(recorded) = self.recorded.as_mut() {
            recorded.next_msn = Some(msn + 1);
            recorded.previous_iframe = None;
        }
    }

    /// Bookkeeping every fetched segment or I-frame shares: counters, the discontinuity,
    /// and for media (`plays`) the playhead of a player playing it.
    fn arrive(&mut self, segment: &SegmentRef, bytes: usize, arrival: Arrival, plays: bool) {
        self.bytes_fetched += bytes as u64;
        self.segments_seen += 1;
        let first = self.next_segment().is_none();
        if segment.discontinuity && !first {
            // RFC 8216bis §4.4.4.3: timestamps may restart after a discontinuity.
            self.discontinuities += 1;
            self.expected_tfdt = None;
        }
        let Some(recorded) = self.recorded.as_mut() else {
            return;
        };
        recorded.next_msn = Some(segment.msn + 1);
        recorded.segments_fetched += 1;
        if segment.discontinuity {
            recorded.previous_iframe = None;
        }
        if let Some(pdt) = segment.program_date_time_ms {
            recorded.first_pdt_ms.get_or_insert(pdt);
            recorded.last_pdt_ms = Some(pdt);
        }
        if !plays {
            return;
        }
        match recorded.playhead_due() {
            None => recorded.playback_start = Some(arrival.since_start),
            Some(due) if arrival.since_start > due => {
                self.stalls += 1;
                let late = arrival.since_start - due;
                self.stall_time += late;
                recorded.stalled += late;
            }
            Some(_) => {}
        }
    }

    /// Checks one fetched media segment: moof+mdat chunks of the init's track (as parts are
    /// checked), tfdt where the previous segment ended, EXTINF equal to its samples'
    /// duration (§4.4.4.1), and a sync sample first (EXT-X-INDEPENDENT-SEGMENTS, §4.4.2.1).
    pub(crate) fn check_segment(
        &mut self,
        segment: &SegmentRef,
        url: &str,
        bytes: &[u8],
        arrival: Arrival,
    ) {
        let context = format!("segment {} ({url})", segment.msn);
        self.arrive(segment, bytes.len(), arrival, true);
        let Some(init) = &self.init else {
            self.expected_tfdt = None;
            self.error(format!(
                "{context}: no decodable init segment to check it against"
            ));
            return;
        };
        let timescale = init.timescale;
        let info = match fmp4::parse_fragment(bytes, init) {
            Ok(info) => info,
            Err(e) => {
                self.expected_tfdt = None;
                self.error(format!("{context} does not decode: {e}"));
                return;
            }
        };
        self.first_part_at.get_or_insert(arrival.since_start);
        if let Some(expected) = self.expected_tfdt
            && info.base_media_decode_time != expected
        {
            self.tfdt_gaps += 1;
            let gap_ms = (info.base_media_decode_time as f64 - expected as f64) * 1000.0
                / f64::from(timescale);
            self.error(format!(
                "{context}: tfdt {} but the previous segment ended at {expected} ({gap_ms:+.3} ms)",
                info.base_media_decode_time
            ));
        }
        self.expected_tfdt = Some(info.base_media_decode_time + info.duration);
        let actual = info.duration as f64 / f64::from(timescale);
        if let Some(recorded) = self.recorded.as_mut() {
            recorded.media_seconds += actual;
        }
        if (actual - segment.duration).abs() > DURATION_TOLERANCE_S {
            self.error(format!(
                "{context}: EXTINF={} but its samples last {actual:.6} s (RFC 8216bis §4.4.4.1)",
                segment.duration
            ));
        }
        if !info.first_sample_is_sync {
            self.error(format!(
                "{context}: the first sample is not a sync sample, so the segment does not \
                 decode on its own (EXT-X-INDEPENDENT-SEGMENTS, RFC 8216bis §4.4.2.1)"
            ));
        }
    }

    /// Checks one I-frame: its byte range decodes as a moof of the init's track and an
    /// mdat holding at least the first sample, which is a sync sample; and the previous
    /// I-frame's EXTINF is the time between their presentations (§4.4.3.6).
    pub(crate) fn check_iframe(
        &mut self,
        entry: &SegmentRef,
        url: &str,
        bytes: &[u8],
        arrival: Arrival,
    ) {
        let context = format!("I-frame {} ({url})", entry.msn);
        self.arrive(entry, bytes.len(), arrival, false);
        let Some(init) = &self.init else {
            self.error(format!(
                "{context}: no decodable init segment to check it against"
            ));
            return;
        };
        let timescale = init.timescale;
        let info = match fmp4::parse_iframe(bytes, init) {
            Ok(info) => info,
            Err(e) => {
                self.skip_segment(entry.msn);
                self.error(format!("{context} does not decode: {e}"));
                return;
            }
        };
        self.first_part_at.get_or_insert(arrival.since_start);
        if !info.is_sync {
            self.error(format!(
                "{context}: the sample is not a sync sample (RFC 8216bis §4.4.3.6: an I-frame \
                 playlist lists I-frames)"
            ));
        }
        let current = PreviousIFrame {
            msn: entry.msn,
            extinf: entry.duration,
            presented: info.presentation_time(),
            frame: f64::from(info.duration) / f64::from(timescale),
        };
        let previous = self
            .recorded
            .as_mut()
            .and_then(|r| r.previous_iframe.replace(current));
        if let Some(previous) = previous {
            let between = (current.presented - previous.presented) as f64 / f64::from(timescale);
            // Tolerance: one frame. A writer that gives each I-frame its segment's duration
            // (decode time) is off from the presentation delta by the change of the
            // I-frame's composition offset, under a frame: harmless for scrubbing.
            let tolerance = DURATION_TOLERANCE_S + previous.frame;
            if (between - previous.extinf).abs() > tolerance {
                self.error(format!(
                    "I-frame {}: EXTINF={} but the next I-frame is presented {between:.6} s \
                     later (RFC 8216bis §4.4.3.6)",
                    previous.msn, previous.extinf
                ));
            }
        }
    }

    /// Ends a recorded follow at `end`: a playhead that ran past the media fetched is a
    /// stall unless the stream ended; how far behind the live edge it stopped.
    pub(super) fn finish_recorded(&mut self, end: Arrival, stream_ended: bool) {
        let Some(recorded) = self.recorded.as_mut() else {
            return;
        };
        if !stream_ended
            && let Some(due) = recorded.playhead_due()
            && end.since_start > due
        {
            self.stalls += 1;
            self.stall_time += end.since_start - due;
        }
        recorded.behind_live_edge_ms = recorded
            .last_pdt_ms
            .map(|pdt| end.unix_ms.round() as i64 - pdt);
    }
}

fn type_name(playlist_type: Option<PlaylistType>) -> String {
    playlist_type.map_or("(none)".into(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::arrival;
    use crate::fmp4::tests::{NON_SYNC, SYNC, chunk, video_init};
    use crate::playlist::parse_media;

    /// A recorded playlist of `kind` (`EVENT`, `VOD` or empty for none) with 1 s segments.
    fn recorded(kind: &str, media_sequence: u64, body: &str) -> MediaPlaylist {
        let kind = if kind.is_empty() {
            String::new()
        } else {
            format!("#EXT-X-PLAYLIST-TYPE:{kind}\n")
        };
        parse_media(&format!(
            "#EXTM3U\n#EXT-X-VERSION:6\n{kind}#EXT-X-TARGETDURATION:1\n\
             #EXT-X-MEDIA-SEQUENCE:{media_sequence}\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"init0.mp4\"\n{body}"
        ))
        .expect("test playlist parses")
    }

    fn segments(range: std::ops::Range<u64>) -> String {
        range
            .map(|msn| {
                format!(
                    "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:{msn:02}.000Z\n#EXTINF:1.00000,\n{msn}.m4s\n"
                )
            })
            .collect()
    }

    fn checker(playlist: &MediaPlaylist) -> RenditionChecker {
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.set_init("init0.mp4", &video_init(1, 90_000));
        checker.observe_recorded_playlist(playlist, false);
        checker
    }

    /// One second at 90 kHz in two chunks, the first sample sync unless `first_flags`.
    fn one_second(tfdt: u64, first_flags: u32) -> Vec<u8> {
        let mut bytes = chunk(1, 1, tfdt, &[(45_000, first_flags)]);
        bytes.extend(chunk(1, 2, tfdt + 45_000, &[(45_000, NON_SYNC)]));
        bytes
    }

    fn listed(playlist: &MediaPlaylist, msn: u64) -> SegmentRef {
        segments_from(playlist, Some(msn)).0.remove(0)
    }

    #[test]
    fn a_recorded_playlist_is_told_from_a_live_one() {
        assert!(recorded("EVENT", 0, &segments(0..2)).is_recorded());
        assert!(recorded("VOD", 0, "#EXT-X-ENDLIST\n").is_recorded());
        // A finished playlist without a type is played as VOD (RFC 8216bis §6.3.3).
        assert!(recorded("", 0, "#EXT-X-ENDLIST\n").is_recorded());
        assert!(!recorded("", 0, &segments(0..2)).is_recorded());
    }

    #[test]
    fn segments_from_the_next_one_and_lost_ones() {
        let playlist = recorded("EVENT", 10, &segments(10..14));
        let (all, lost) = segments_from(&playlist, None);
        assert_eq!(all.len(), 4);
        assert_eq!(lost, None);
        let (after, lost) = segments_from(&playlist, Some(12));
        assert_eq!(after.iter().map(|s| s.msn).collect::<Vec<_>>(), [12, 13]);
        assert_eq!(lost, None);
        let (_, lost) = segments_from(&playlist, Some(8));
        assert!(lost.expect("lost").contains("segments 8 to 9"));
    }

    #[test]
    fn event_playlists_only_grow() {
        let mut checker = checker(&recorded("EVENT", 10, &segments(10..13)));
        checker.observe_recorded_playlist(&recorded("EVENT", 10, &segments(10..15)), false);
        assert_eq!(checker.errors, Vec::<String>::new());
        // RFC 8216bis §4.4.3.5 / §6.2.1: nothing removed, changed or retyped.
        checker.observe_recorded_playlist(&recorded("EVENT", 11, &segments(11..15)), false);
        checker.observe_recorded_playlist(&recorded("EVENT", 10, &segments(10..12)), false);
        let changed =
            segments(10..15).replace("#EXTINF:1.00000,\n12.m4s", "#EXTINF:1.50000,\n12.m4s");
        checker.observe_recorded_playlist(&recorded("EVENT", 10, &changed), false);
        let ended = format!("{}#EXT-X-ENDLIST\n", segments(10..15));
        checker.observe_recorded_playlist(&recorded("VOD", 10, &ended), false);
        checker.observe_recorded_playlist(&recorded("EVENT", 10, &segments(10..15)), false);
        let errors = checker.errors.join("\n");
        assert!(
            errors.contains("EXT-X-MEDIA-SEQUENCE changed from 10 to 11"),
            "{errors}"
        );
        assert!(errors.contains("shrank from 4 to 2 segments"), "{errors}");
        assert!(
            errors.contains("segment 12: EXTINF changed from 1 to 1.5"),
            "{errors}"
        );
        assert!(
            errors.contains("EXT-X-PLAYLIST-TYPE changed from EVENT to VOD"),
            "{errors}"
        );
        assert!(errors.contains("EXT-X-ENDLIST disappeared"), "{errors}");
        let summary = checker.summary(false).recorded.expect("recorded");
        assert_eq!(summary.reloads, 6);
        assert_eq!(summary.playlist_type.as_deref(), Some("EVENT"));
    }

    #[test]
    fn first_playlist_rules() {
        let text = "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:1\n\
                    #EXT-X-MAP:URI=\"init0.mp4\"\n#EXT-X-PART:DURATION=0.5,URI=\"p.mp4\"\n\
                    #EXTINF:1.6,\n0.m4s\n";
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.observe_recorded_playlist(&parse_media(text).expect("parses"), false);
        let errors = checker.errors.join("\n");
        assert!(errors.contains("VOD without EXT-X-ENDLIST"), "{errors}");
        assert!(
            errors.contains("EXT-X-PART or EXT-X-PRELOAD-HINT without EXT-X-PART-INF"),
            "{errors}"
        );
        assert!(errors.contains("EXT-X-INDEPENDENT-SEGMENTS"), "{errors}");
        // §4.4.3.1: 1.6 rounds to 2, over TARGETDURATION 1.
        assert!(
            errors.contains("EXTINF 1.6 rounds above EXT-X-TARGETDURATION 1"),
            "{errors}"
        );
        assert!(
            errors.contains("segment 0 has no EXT-X-PROGRAM-DATE-TIME"),
            "{errors}"
        );
        // The master's EXT-X-INDEPENDENT-SEGMENTS covers the media playlists.
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        let without =
            "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:1\n#EXT-X-ENDLIST\n";
        checker.observe_recorded_playlist(&parse_media(without).expect("parses"), true);
        assert_eq!(checker.errors, Vec::<String>::new());
    }

    #[test]
    fn segments_are_checked_like_parts() {
        let body = format!(
            "{}#EXT-X-DISCONTINUITY\n{}#EXT-X-ENDLIST\n",
            segments(0..3),
            segments(3..5)
        );
        let playlist = recorded("VOD", 0, &body);
        let mut checker = checker(&playlist);
        checker.check_segment(
            &listed(&playlist, 0),
            "0",
            &one_second(0, SYNC),
            arrival(100),
        );
        checker.check_segment(
            &listed(&playlist, 1),
            "1",
            &one_second(90_000, SYNC),
            arrival(150),
        );
        assert_eq!(checker.errors, Vec::<String>::new());
        // 1 ms late, and starting on a non-sync sample.
        checker.check_segment(
            &listed(&playlist, 2),
            "2",
            &one_second(180_090, NON_SYNC),
            arrival(200),
        );
        // Timestamps restart after the discontinuity (§4.4.4.3).
        checker.check_segment(
            &listed(&playlist, 3),
            "3",
            &one_second(0, SYNC),
            arrival(250),
        );
        // Half a second of samples under EXTINF 1.
        let short = chunk(1, 1, 90_000, &[(45_000, SYNC)]);
        checker.check_segment(&listed(&playlist, 4), "4", &short, arrival(300));
        let errors = checker.errors.join("\n");
        assert!(
            errors.contains(
                "segment 2 (2): tfdt 180090 but the previous segment ended at 180000 (+1.000 ms)"
            ),
            "{errors}"
        );
        assert!(
            errors.contains("segment 2 (2): the first sample is not a sync sample"),
            "{errors}"
        );
        assert!(
            errors.contains("segment 4 (4): EXTINF=1 but its samples last 0.500000 s"),
            "{errors}"
        );
        assert_eq!(checker.errors.len(), 3, "{errors}");
        let summary = checker.summary(true);
        assert_eq!((summary.discontinuities, summary.tfdt_gaps), (1, 1));
        assert_eq!(summary.first_part_ms, Some(100));
        let recorded = summary.recorded.expect("recorded");
        assert_eq!(recorded.segments_fetched, 5);
        assert!((recorded.media_seconds - 4.5).abs() < 1e-9);
        assert_eq!(
            recorded.first_program_date_time.as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert_eq!(
            recorded.last_program_date_time.as_deref(),
            Some("2025-01-01T00:00:04Z")
        );
    }

    #[test]
    fn a_gap_is_passed_and_resets_the_timeline() {
        let body = format!(
            "{}#EXT-X-GAP\n{}{}#EXT-X-ENDLIST\n",
            segments(0..1),
            segments(1..2),
            segments(2..3)
        );
        let playlist = recorded("VOD", 0, &body);
        let mut checker = checker(&playlist);
        checker.check_segment(&listed(&playlist, 0), "0", &one_second(0, SYNC), arrival(0));
        let gap = listed(&playlist, 1);
        assert!(gap.gap);
        checker.pass_gap(&gap);
        assert_eq!(checker.next_segment(), Some(2));
        // The media after a gap resumes where the timeline does, not where samples ended.
        checker.check_segment(
            &listed(&playlist, 2),
            "2",
            &one_second(180_000, SYNC),
            arrival(10),
        );
        assert_eq!(checker.errors, Vec::<String>::new());
        assert_eq!(
            checker
                .summary(true)
                .recorded
                .expect("recorded")
                .gap_segments,
            1
        );
    }

    #[test]
    fn a_player_playing_at_one_x_stalls_on_late_segments() {
        let playlist = recorded("EVENT", 0, &segments(0..4));
        let mut checker = checker(&playlist);
        // Playback starts when segment 0 arrives, at 1 s.
        checker.check_segment(
            &listed(&playlist, 0),
            "0",
            &one_second(0, SYNC),
            arrival(1_000),
        );
        assert_eq!(
            checker.next_segment_due(Duration::from_millis(300)),
            Some(Duration::from_millis(1_700))
        );
        // Segment 1 is needed at 2 s and comes at 2.5 s: half a second of stall.
        checker.check_segment(
            &listed(&playlist, 1),
            "1",
            &one_second(90_000, SYNC),
            arrival(2_500),
        );
        // Segment 2 is now needed at 3.5 s; it comes in time.
        checker.check_segment(
            &listed(&playlist, 2),
            "2",
            &one_second(180_000, SYNC),
            arrival(3_000),
        );
        // Following stops at 6 s with segment 3 never fetched: due at 4.5 s.
        checker.finish(arrival(6_000), false);
        let summary = checker.summary(false);
        assert_eq!((summary.stalls, summary.stall_ms), (2, 2_000));
        // arrival(ms) is 2025-01-01T00:00:00Z + ms; segment 2's PDT is 00:00:02.
        assert_eq!(
            summary.recorded.expect("recorded").behind_live_edge_ms,
            Some(4_000)
        );
    }

    #[test]
    fn iframes_are_sync_samples_and_extinf_is_the_time_to_the_next() {
        let body = "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z\n#EXTINF:1.0,\n\
                    #EXT-X-BYTERANGE:100@0\n0.m4s\n\
                    #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:01.000Z\n#EXTINF:1.0,\n\
                    #EXT-X-BYTERANGE:100@0\n1.m4s\n\
                    #EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.000Z\n#EXTINF:1.0,\n\
                    #EXT-X-BYTERANGE:100@0\n2.m4s\n#EXT-X-ENDLIST\n";
        let playlist = parse_media(&format!(
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n#EXT-X-I-FRAMES-ONLY\n\
             #EXT-X-MAP:URI=\"init0.mp4\"\n{body}"
        ))
        .expect("parses");
        assert_eq!(
            playlist.segments[1].byte_range,
            Some(ByteRange {
                length: 100,
                offset: 0
            })
        );
        let mut checker = checker(&playlist);
        // A 1/30 s I-frame, then the rest of the second.
        let iframe =
            |tfdt: u64, flags: u32| chunk(1, 1, tfdt, &[(3000, flags), (87_000, NON_SYNC)]);
        checker.check_iframe(&listed(&playlist, 0), "0", &iframe(0, SYNC), arrival(0));
        // Presented 1.5 s after the first, against EXTINF 1.0; and not a sync sample.
        checker.check_iframe(
            &listed(&playlist, 1),
            "1",
            &iframe(135_000, NON_SYNC),
            arrival(1),
        );
        // 1.02 s after that: within a frame of EXTINF 1.0, which is the tolerance.
        checker.check_iframe(
            &listed(&playlist, 2),
            "2",
            &iframe(226_800, SYNC),
            arrival(2),
        );
        let errors = checker.errors.join("\n");
        assert!(
            errors
                .contains("I-frame 0: EXTINF=1 but the next I-frame is presented 1.500000 s later"),
            "{errors}"
        );
        assert!(
            errors.contains("I-frame 1 (1): the sample is not a sync sample"),
            "{errors}"
        );
        assert_eq!(checker.errors.len(), 2, "{errors}");
        let summary = checker.summary(true);
        // I-frames are not media to play: no seconds, no stalls.
        let recorded = summary.recorded.expect("recorded");
        assert_eq!(
            (recorded.segments_fetched, recorded.media_seconds),
            (3, 0.0)
        );
        assert_eq!(summary.stalls, 0);
    }
}
