//! The LL-HLS rules: EXT-X-SERVER-CONTROL and EXT-X-PART-INF, delta updates, blocking
//! reloads, and every part's fMP4 against its EXT-X-PART tag.

use super::{
    Arrival, DURATION_TOLERANCE_S, EPSILON_S, PartPosition, PartRef, PartSource, RenditionChecker,
    has_reached,
};
use crate::fmp4;
use crate::playlist::MediaPlaylist;

impl RenditionChecker {
    /// Checks a playlist response. `awaited` is the part a blocking reload asked for;
    /// `asked_skip` whether the request carried `_HLS_skip=YES`.
    pub(crate) fn observe_playlist(
        &mut self,
        playlist: &MediaPlaylist,
        awaited: Option<PartPosition>,
        asked_skip: bool,
    ) {
        self.report_parser_findings(playlist);
        if !self.first_playlist_checked {
            self.first_playlist_checked = true;
            self.check_server_control(playlist);
        }
        match (self.part_target, playlist.part_target) {
            (None, Some(target)) => self.part_target = Some(target),
            (Some(before), Some(now)) if (before - now).abs() > EPSILON_S => self.error(format!(
                "PART-TARGET changed from {before} to {now} (RFC 8216bis §4.4.3.7: fixed for the stream)"
            )),
            _ => {}
        }
        if let Some(before) = self.last_media_sequence
            && playlist.media_sequence < before
        {
            self.error(format!(
                "EXT-X-MEDIA-SEQUENCE went back from {before} to {} (RFC 8216bis §6.2.1)",
                playlist.media_sequence
            ));
        }
        self.last_media_sequence = Some(playlist.media_sequence);
        if let Some(skipped) = playlist.skipped_segments {
            self.check_delta_update(playlist, skipped, asked_skip);
        }
        self.check_numbering(playlist);
        self.check_program_date_time(playlist);
        self.check_part_floor(playlist);
        if let Some(awaited) = awaited {
            self.check_blocking_reload(playlist, awaited);
        }
    }

    fn check_server_control(&mut self, playlist: &MediaPlaylist) {
        let control = playlist.server_control;
        if !control.can_block_reload {
            self.error("EXT-X-SERVER-CONTROL lacks CAN-BLOCK-RELOAD=YES (RFC 8216bis §4.4.3.8)");
        }
        let Some(part_target) = playlist.part_target else {
            self.error("no EXT-X-PART-INF: not a low-latency playlist (RFC 8216bis §4.4.3.7)");
            return;
        };
        match control.part_hold_back {
            None => self.error("EXT-X-SERVER-CONTROL lacks PART-HOLD-BACK (RFC 8216bis §4.4.3.8)"),
            Some(hold_back) if hold_back + EPSILON_S < 3.0 * part_target => self.error(format!(
                "PART-HOLD-BACK {hold_back} is under 3 × PART-TARGET {part_target} (RFC 8216bis §4.4.3.8)"
            )),
            Some(_) => {}
        }
        if let Some(skip_until) = control.can_skip_until {
            let minimum = 6.0 * playlist.target_duration as f64;
            if skip_until + EPSILON_S < minimum {
                self.error(format!(
                    "CAN-SKIP-UNTIL {skip_until} is under 6 × TARGETDURATION = {minimum} (RFC 8216bis §4.4.3.8)"
                ));
            }
            if playlist.version.unwrap_or(1) < 9 {
                self.error(format!(
                    "EXT-X-VERSION {:?} with CAN-SKIP-UNTIL; EXT-X-SKIP needs version 9 (RFC 8216bis §7)",
                    playlist.version
                ));
            }
        }
    }

    /// RFC 8216bis §6.2.5.1: a delta update replaces only segments older than the Skip
    /// Boundary (CAN-SKIP-UNTIL from the end) with EXT-X-SKIP, and only when asked.
    fn check_delta_update(&mut self, playlist: &MediaPlaylist, skipped: u64, asked_skip: bool) {
        self.delta_updates += 1;
        if !asked_skip {
            self.error(
                "EXT-X-SKIP in a response to a request without _HLS_skip (RFC 8216bis §6.2.5.1)",
            );
        }
        match playlist.server_control.can_skip_until {
            None => self.error("EXT-X-SKIP without CAN-SKIP-UNTIL (RFC 8216bis §4.4.3.8)"),
            Some(boundary) => {
                // Whether the segment that straddles the boundary is skipped is the
                // server's choice, so allow one target duration of slack.
                let kept: f64 = playlist.segments.iter().map(|s| s.duration).sum();
                if kept + playlist.target_duration as f64 + EPSILON_S < boundary {
                    self.error(format!(
                        "delta update skipped {skipped} segments but kept only {kept:.3} s, under the \
                         Skip Boundary {boundary} s (RFC 8216bis §6.2.5.1)"
                    ));
                }
            }
        }
    }

    /// RFC 8216bis §4.4.4.9: every part of a complete segment other than an INDEPENDENT
    /// one and the segment's last lasts at least 85% of PART-TARGET. Checked once per
    /// segment, when it is first seen complete with its parts listed.
    fn check_part_floor(&mut self, playlist: &MediaPlaylist) {
        let Some(target) = self.part_target else {
            return;
        };
        let mut short = vec![];
        for segment in &playlist.segments {
            if segment.uri.is_none()
                || segment.parts.is_empty()
                || self
                    .floor_checked_through
                    .is_some_and(|through| segment.msn <= through)
            {
                continue;
            }
            let Some((_, body)) = segment.parts.split_last() else {
                continue;
            };
            for (i, part) in body.iter().enumerate() {
                if !part.independent && part.duration + EPSILON_S < 0.85 * target {
                    short.push(format!(
                        "segment {} part {i} lasts {} s, under 85% of PART-TARGET {target} (RFC 8216bis §4.4.4.9)",
                        segment.msn, part.duration
                    ));
                }
            }
            self.floor_checked_through = Some(segment.msn);
        }
        for message in short {
            self.error(message);
        }
    }

    /// RFC 8216bis §6.2.5.2: the server holds a blocking reload until the playlist
    /// contains the awaited part or a later one.
    fn check_blocking_reload(&mut self, playlist: &MediaPlaylist, awaited: PartPosition) {
        if !has_reached(playlist, awaited) {
            self.error(format!(
                "blocking reload _HLS_msn={}&_HLS_part={} answered before that part existed \
                 (last part listed: {:?})",
                awaited.0,
                awaited.1,
                playlist.last_part_position()
            ));
        }
    }

    /// A listed part that could not be fetched: following goes on after it, and the next
    /// part's tfdt cannot be expected.
    pub(crate) fn skip_part(&mut self, position: PartPosition) {
        self.last_fetched = Some(position);
        self.expected_tfdt = None;
    }

    /// Checks one fetched part and takes its measurements.
    pub(crate) fn check_part(
        &mut self,
        part: &PartRef,
        url: &str,
        bytes: &[u8],
        arrival: Arrival,
        source: PartSource,
    ) {
        let (msn, index) = part.position;
        let context = format!("part {msn}.{index} ({url})");
        self.parts_fetched += 1;
        self.bytes_fetched += bytes.len() as u64;
        if source == PartSource::PreloadHint {
            self.preload_hint_hits += 1;
        }
        if self
            .last_fetched
            .is_none_or(|(last_msn, _)| last_msn != msn)
        {
            self.segments_seen += 1;
        }
        if part.discontinuity && self.last_fetched.is_some() {
            // RFC 8216bis §4.4.4.3: timestamps may restart after a discontinuity.
            self.discontinuities += 1;
            self.expected_tfdt = None;
        }
        self.last_fetched = Some(part.position);
        self.measure_arrival(part, arrival, source);

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
                "{context}: tfdt {} but the previous part ended at {expected} ({gap_ms:+.3} ms)",
                info.base_media_decode_time
            ));
        }
        self.expected_tfdt = Some(info.base_media_decode_time + info.duration);

        let actual = info.duration as f64 / f64::from(timescale);
        if (actual - part.duration).abs() > DURATION_TOLERANCE_S {
            self.error(format!(
                "{context}: DURATION={} but its samples last {actual:.6} s (RFC 8216bis §4.4.4.9)",
                part.duration
            ));
        }
        if let Some(target) = self.part_target
            && actual.max(part.duration) > target + EPSILON_S
        {
            self.parts_over_part_target += 1;
            self.error(format!(
                "{context}: lasts {actual:.6} s (DURATION={}), over PART-TARGET {target} (RFC 8216bis §4.4.3.7)",
                part.duration
            ));
        }
        if part.independent != info.first_sample_is_sync {
            self.error(format!(
                "{context}: INDEPENDENT={} but the first sample is {} (RFC 8216bis §4.4.4.9)",
                if part.independent { "YES" } else { "NO" },
                if info.first_sample_is_sync {
                    "a sync sample"
                } else {
                    "not a sync sample"
                }
            ));
        }
    }

    /// Latency and stall bookkeeping for a part that arrived (decodable or not).
    fn measure_arrival(&mut self, part: &PartRef, arrival: Arrival, source: PartSource) {
        if let Some(pdt) = part.program_date_time_ms
            && source != PartSource::StartupBacklog
        {
            let media_end_ms = pdt as f64 + (part.offset_in_segment + part.duration) * 1000.0;
            self.latencies_ms.push(arrival.unix_ms - media_end_ms);
        }
        if let Some(previous) = self.last_arrival {
            self.count_stall(arrival.since_start.saturating_sub(previous));
        }
        self.last_arrival = Some(arrival.since_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::test_support::{TWO_SEGMENTS, arrival, checker_with_init, live, part};
    use crate::fmp4::tests::{NON_SYNC, SYNC, chunk};
    use crate::playlist::parse_media;

    #[test]
    fn clean_playlist_has_no_errors() {
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.observe_playlist(&live(10, TWO_SEGMENTS), None, false);
        checker.observe_playlist(&live(10, TWO_SEGMENTS), Some((11, 1)), false);
        assert_eq!(checker.errors, Vec::<String>::new());
        assert_eq!(checker.part_target(), Some(0.2));
    }

    #[test]
    fn short_parts_inside_a_segment_are_errors() {
        // RFC 8216bis §4.4.4.9: 85% of PART-TARGET, except INDEPENDENT and last parts.
        let body = "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z
#EXT-X-PART:DURATION=0.1,URI=\"p10.0.mp4\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.16,URI=\"p10.1.mp4\"
#EXT-X-PART:DURATION=0.2,URI=\"p10.2.mp4\"
#EXT-X-PART:DURATION=0.05,URI=\"p10.3.mp4\"
#EXTINF:0.51,
s10.mp4
";
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.observe_playlist(&live(10, body), None, false);
        checker.observe_playlist(&live(10, body), None, false);
        assert_eq!(checker.errors.len(), 1, "{:?}", checker.errors);
        assert!(
            checker.errors[0].contains("segment 10 part 1"),
            "{:?}",
            checker.errors
        );
    }

    #[test]
    fn blocking_reload_answered_too_early_is_an_error() {
        // RFC 8216bis §6.2.5.2: hold the request until part 11.2 exists.
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.observe_playlist(&live(10, TWO_SEGMENTS), Some((11, 2)), false);
        assert_eq!(checker.errors.len(), 1, "{:?}", checker.errors);
        assert!(checker.errors[0].contains("answered before"));
    }

    #[test]
    fn server_control_rules() {
        let text = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-SERVER-CONTROL:PART-HOLD-BACK=0.4,CAN-SKIP-UNTIL=6.0
#EXTINF:2.0,
s0.mp4
";
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.observe_playlist(&parse_media(text).expect("parses"), None, false);
        let errors = checker.errors.join("\n");
        // RFC 8216bis §4.4.3.8.
        assert!(errors.contains("CAN-BLOCK-RELOAD"), "{errors}");
        assert!(errors.contains("PART-HOLD-BACK 0.4 is under"), "{errors}");
        assert!(errors.contains("CAN-SKIP-UNTIL 6 is under"), "{errors}");
        assert!(errors.contains("EXT-X-VERSION"), "{errors}");
        assert!(
            errors.contains("segment 0 has no EXT-X-PROGRAM-DATE-TIME"),
            "{errors}"
        );
    }

    #[test]
    fn delta_update_with_wrong_skip_count_is_caught() {
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        let full = live(
            10,
            "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z
#EXTINF:1.0,
s10.mp4
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:01.000Z
#EXTINF:1.0,
s11.mp4
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.000Z
#EXTINF:1.0,
s12.mp4
",
        );
        checker.observe_playlist(&full, None, false);
        assert_eq!(checker.errors, Vec::<String>::new());
        // RFC 8216bis §4.4.5.2: after SKIPPED-SEGMENTS=1 the first listed segment is 11;
        // listing s12 there shifts the numbering.
        let wrong = live(
            10,
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=1
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.000Z
#EXTINF:1.0,
s12.mp4
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:03.000Z
#EXTINF:1.0,
s13.mp4
",
        );
        checker.observe_playlist(&wrong, None, true);
        let errors = checker.errors.join("\n");
        assert!(
            errors.contains("segment 11 was \"s11.mp4\" and is now \"s12.mp4\""),
            "{errors}"
        );
        // Kept 2 s + 1 s slack is under the 6 s Skip Boundary (§6.2.5.1).
        assert!(errors.contains("Skip Boundary"), "{errors}");
        assert_eq!(checker.delta_updates, 1);

        // An EXT-X-SKIP nobody asked for (§6.2.5.1).
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.observe_playlist(&wrong, None, false);
        assert!(checker.errors.join("\n").contains("without _HLS_skip"));
    }

    #[test]
    fn media_sequence_going_back_is_an_error() {
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.observe_playlist(&live(10, TWO_SEGMENTS), None, false);
        checker.observe_playlist(&live(9, ""), None, false);
        assert!(checker.errors.join("\n").contains("went back from 10 to 9"));
    }

    #[test]
    fn continuous_parts_pass() {
        let mut checker = checker_with_init();
        checker.observe_playlist(&live(10, TWO_SEGMENTS), None, false);
        // 0.2 s at 90 kHz = 18000 ticks.
        let first = chunk(
            1,
            1,
            900_000,
            &[(6000, SYNC), (6000, NON_SYNC), (6000, NON_SYNC)],
        );
        let second = chunk(1, 2, 918_000, &[(9000, NON_SYNC), (9000, NON_SYNC)]);
        checker.check_part(
            &part((10, 0), true, false),
            "p10.0",
            &first,
            arrival(100),
            PartSource::StartupBacklog,
        );
        checker.check_part(
            &part((10, 1), false, false),
            "p10.1",
            &second,
            arrival(300),
            PartSource::PreloadHint,
        );
        assert_eq!(checker.errors, Vec::<String>::new());
        let summary = checker.summary(false);
        assert_eq!(summary.parts_fetched, 2);
        assert_eq!(summary.segments_seen, 1);
        assert_eq!(summary.tfdt_gaps, 0);
        assert_eq!(summary.preload_hint_hits, 1);
        assert_eq!(summary.first_part_ms, Some(100));
        // Part 10.1 ends 0.4 s after the PDT and arrived 0.3 s after it; the start-up
        // backlog part 10.0 is not a latency sample.
        assert_eq!(checker.latencies_ms, [-100.0]);
    }

    #[test]
    fn part_rule_violations() {
        let mut checker = checker_with_init();
        checker.observe_playlist(&live(10, TWO_SEGMENTS), None, false);
        let first = chunk(1, 1, 0, &[(18_000, SYNC)]);
        checker.check_part(
            &part((10, 0), true, false),
            "a",
            &first,
            arrival(0),
            PartSource::Playlist,
        );
        // tfdt gap of 1 ms; 0.25 s of samples against DURATION=0.2 and PART-TARGET 0.2;
        // INDEPENDENT=YES on a part whose first sample is not a sync sample.
        let bad = chunk(1, 2, 18_090, &[(22_500, NON_SYNC)]);
        checker.check_part(
            &part((10, 1), true, false),
            "b",
            &bad,
            arrival(200),
            PartSource::Playlist,
        );
        let errors = checker.errors.join("\n");
        assert!(
            errors.contains("tfdt 18090 but the previous part ended at 18000 (+1.000 ms)"),
            "{errors}"
        );
        assert!(
            errors.contains("DURATION=0.2 but its samples last 0.250000 s"),
            "{errors}"
        );
        assert!(errors.contains("over PART-TARGET 0.2"), "{errors}");
        assert!(
            errors.contains("INDEPENDENT=YES but the first sample is not a sync sample"),
            "{errors}"
        );
        let summary = checker.summary(false);
        assert_eq!((summary.tfdt_gaps, summary.parts_over_part_target), (1, 1));

        // INDEPENDENT missing on a part that starts with a sync sample is wrong too.
        let sync = chunk(1, 3, 40_590, &[(18_000, SYNC)]);
        checker.check_part(
            &part((10, 2), false, false),
            "c",
            &sync,
            arrival(400),
            PartSource::Playlist,
        );
        assert!(
            checker
                .errors
                .join("\n")
                .contains("INDEPENDENT=NO but the first sample is a sync sample")
        );
    }

    #[test]
    fn discontinuity_resets_tfdt_expectation_and_is_counted() {
        // RFC 8216bis §4.4.4.3: timestamps may jump after EXT-X-DISCONTINUITY.
        let mut checker = checker_with_init();
        checker.observe_playlist(&live(10, TWO_SEGMENTS), None, false);
        let before = chunk(1, 1, 0, &[(18_000, SYNC)]);
        let after = chunk(1, 2, 5_000_000, &[(18_000, SYNC)]);
        checker.check_part(
            &part((10, 3), false, false),
            "a",
            &before,
            arrival(0),
            PartSource::Playlist,
        );
        checker.check_part(
            &part((11, 0), true, true),
            "b",
            &after,
            arrival(200),
            PartSource::Playlist,
        );
        let summary = checker.summary(false);
        assert_eq!((summary.discontinuities, summary.tfdt_gaps), (1, 0));
        assert_eq!(summary.segments_seen, 2);
        // Only the INDEPENDENT=NO on a sync-sample part 10.3 is wrong here.
        assert_eq!(checker.errors.len(), 1, "{:?}", checker.errors);
    }

    #[test]
    fn undecodable_part_and_missing_init_are_errors() {
        let mut checker = RenditionChecker::new("audio", "index.m3u8");
        checker.set_init("init.mp4", b"not an mp4");
        assert!(checker.errors[0].contains("init segment init.mp4 does not decode"));
        checker.check_part(
            &part((10, 0), true, false),
            "x",
            b"junk",
            arrival(0),
            PartSource::Playlist,
        );
        assert!(checker.errors[1].contains("no decodable init segment"));
        let mut checker = checker_with_init();
        checker.check_part(
            &part((10, 0), true, false),
            "x",
            b"junk",
            arrival(0),
            PartSource::Playlist,
        );
        assert!(checker.errors[0].contains("part 10.0 (x) does not decode"));
        assert_eq!(checker.summary(false).first_part_ms, None);
    }

    #[test]
    fn stalls_are_waits_beyond_three_part_targets() {
        let mut checker = checker_with_init();
        checker.observe_playlist(&live(10, TWO_SEGMENTS), None, false);
        let p = part((10, 0), true, false);
        let bytes = chunk(1, 1, 0, &[(18_000, SYNC)]);
        checker.check_part(&p, "a", &bytes, arrival(0), PartSource::Playlist);
        // 0.6 s is exactly 3 × PART-TARGET: not a stall.
        checker.check_part(&p, "a", &bytes, arrival(600), PartSource::Playlist);
        // 1.0 s wait: a 0.4 s stall.
        checker.check_part(&p, "a", &bytes, arrival(1600), PartSource::Playlist);
        // Following stops 0.7 s later while still waiting: a 0.1 s stall.
        checker.finish(arrival(2300), false);
        let summary = checker.summary(false);
        assert_eq!((summary.stalls, summary.stall_ms), (2, 500));
    }
}
