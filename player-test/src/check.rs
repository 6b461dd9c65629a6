//! The player's judgement of one rendition, free of I/O: the HTTP layer feeds it each
//! playlist and each part with the times they arrived, and it keeps the checks' state,
//! the errors and the measurements. Nothing here reads a clock or a socket, so every rule
//! is unit-tested with hand-written playlists and fMP4 bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fmp4::{self, InitInfo};
use crate::playlist::MediaPlaylist;
use crate::report::{Distribution, RenditionSummary};

/// Position of a part in the stream: (Media Sequence Number, part index).
pub(crate) type PartPosition = (u64, u32);

/// Tolerance for comparing playlist DURATION attributes with sample-table durations.
/// RFC 8216bis §4.4.4.9 wants DURATION to be the part's duration; a writer printing
/// milliseconds is exact to 0.5 ms, so 1 ms flags only real disagreement.
const DURATION_TOLERANCE_S: f64 = 0.001;
/// Float slack when comparing a duration against PART-TARGET.
const EPSILON_S: f64 = 1e-9;
/// More errors than this per rendition are counted but not kept.
const MAX_ERRORS: usize = 200;

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

/// The checks' state and the measurements for one rendition.
#[derive(Debug)]
pub(crate) struct RenditionChecker {
    name: String,
    playlist_url: String,
    init: Option<InitInfo>,
    /// PART-TARGET of the first playlist; RFC 8216bis §4.4.3.7 fixes it for the stream.
    part_target: Option<f64>,
    /// The last complete segment whose parts were checked against the 85% floor.
    floor_checked_through: Option<u64>,
    first_playlist_checked: bool,
    last_media_sequence: Option<u64>,
    /// URIs of segments and parts seen, by position, to check that every later playlist
    /// (delta updates included) numbers them the same way.
    segment_uris: BTreeMap<u64, String>,
    part_uris: BTreeMap<PartPosition, String>,
    /// Segments up to this MSN were checked for EXT-X-PROGRAM-DATE-TIME.
    pdt_checked_through: Option<u64>,
    last_fetched: Option<PartPosition>,
    expected_tfdt: Option<u64>,
    last_arrival: Option<Duration>,
    first_part_at: Option<Duration>,
    reported_findings: Vec<String>,
    // Counters, see `RenditionSummary` for their meaning.
    parts_fetched: u64,
    bytes_fetched: u64,
    segments_seen: u64,
    discontinuities: u64,
    parts_over_part_target: u64,
    tfdt_gaps: u64,
    stalls: u64,
    stall_time: Duration,
    blocking_reload_timeouts: u64,
    delta_updates: u64,
    preload_hint_hits: u64,
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) blocking_reload_ms: Vec<f64>,
    errors: Vec<String>,
    errors_omitted: u64,
}

impl RenditionChecker {
    pub(crate) fn new(name: &str, playlist_url: &str) -> Self {
        Self {
            name: name.to_owned(),
            playlist_url: playlist_url.to_owned(),
            init: None,
            part_target: None,
            floor_checked_through: None,
            first_playlist_checked: false,
            last_media_sequence: None,
            segment_uris: BTreeMap::new(),
            part_uris: BTreeMap::new(),
            pdt_checked_through: None,
            last_fetched: None,
            expected_tfdt: None,
            last_arrival: None,
            first_part_at: None,
            reported_findings: Vec::new(),
            parts_fetched: 0,
            bytes_fetched: 0,
            segments_seen: 0,
            discontinuities: 0,
            parts_over_part_target: 0,
            tfdt_gaps: 0,
            stalls: 0,
            stall_time: Duration::ZERO,
            blocking_reload_timeouts: 0,
            delta_updates: 0,
            preload_hint_hits: 0,
            latencies_ms: Vec::new(),
            blocking_reload_ms: Vec::new(),
            errors: Vec::new(),
            errors_omitted: 0,
        }
    }

    pub(crate) fn error(&mut self, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors
                .push(format!("{}: {}", self.name, message.into()));
        } else {
            self.errors_omitted += 1;
        }
    }

    pub(crate) fn part_target(&self) -> Option<f64> {
        self.part_target
    }

    pub(crate) fn last_fetched(&self) -> Option<PartPosition> {
        self.last_fetched
    }

    pub(crate) fn add_bytes(&mut self, bytes: usize) {
        self.bytes_fetched += bytes as u64;
    }

    pub(crate) fn set_init(&mut self, url: &str, bytes: &[u8]) {
        match fmp4::parse_init(bytes) {
            Ok(init) => self.init = Some(init),
            Err(e) => {
                self.init = None;
                self.error(format!("init segment {url} does not decode: {e}"));
            }
        }
    }

    pub(crate) fn record_blocking_reload(&mut self, took: Duration) {
        self.blocking_reload_ms.push(took.as_secs_f64() * 1000.0);
    }

    /// A blocking reload the server gave up on with 503 (RFC 8216bis §6.2.5.2 lets it after
    /// three target durations): the awaited part did not appear in time.
    pub(crate) fn record_blocking_reload_timeout(&mut self) {
        self.blocking_reload_timeouts += 1;
    }

    /// Checks a playlist response. `awaited` is the part a blocking reload asked for;
    /// `asked_skip` whether the request carried `_HLS_skip=YES`.
    pub(crate) fn observe_playlist(
        &mut self,
        playlist: &MediaPlaylist,
        awaited: Option<PartPosition>,
        asked_skip: bool,
    ) {
        for finding in &playlist.parser_findings {
            if !self.reported_findings.contains(finding) {
                self.reported_findings.push(finding.clone());
                self.error(format!("{}: {finding}", self.playlist_url));
            }
        }
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

    /// A segment or part keeps its URI at its (MSN, part index) in every playlist. A wrong
    /// EXT-X-SKIP count or MEDIA-SEQUENCE shifts the numbering and shows up here.
    fn check_numbering(&mut self, playlist: &MediaPlaylist) {
        let context = format!(
            "MEDIA-SEQUENCE {}, SKIPPED-SEGMENTS {:?}",
            playlist.media_sequence, playlist.skipped_segments
        );
        let mut problems = Vec::new();
        for segment in &playlist.segments {
            if let Some(uri) = &segment.uri {
                let known = self
                    .segment_uris
                    .entry(segment.msn)
                    .or_insert_with(|| uri.clone());
                if known != uri {
                    problems.push(format!(
                        "segment {} was {known:?} and is now {uri:?} ({context})",
                        segment.msn
                    ));
                }
            }
            for (index, part) in (0u32..).zip(&segment.parts) {
                let known = self
                    .part_uris
                    .entry((segment.msn, index))
                    .or_insert_with(|| part.uri.clone());
                if *known != part.uri {
                    problems.push(format!(
                        "part {}.{index} was {known:?} and is now {:?} ({context})",
                        segment.msn, part.uri
                    ));
                }
            }
        }
        for problem in problems {
            self.error(problem);
        }
        // Nothing older than the playlist's first segment can be listed again.
        let oldest = playlist.media_sequence;
        self.segment_uris = self.segment_uris.split_off(&oldest);
        self.part_uris = self.part_uris.split_off(&(oldest, 0));
    }

    /// Every segment carries EXT-X-PROGRAM-DATE-TIME (Floodlight's packaging rule, after
    /// RFC 8216bis §4.4.4.6), including the one still being written.
    fn check_program_date_time(&mut self, playlist: &MediaPlaylist) {
        let missing: Vec<u64> = playlist
            .segments
            .iter()
            .filter(|s| {
                self.pdt_checked_through
                    .is_none_or(|through| s.msn > through)
            })
            .filter(|s| s.program_date_time_ms.is_none())
            .map(|s| s.msn)
            .collect();
        for msn in missing {
            self.error(format!(
                "segment {msn} has no EXT-X-PROGRAM-DATE-TIME (RFC 8216bis §4.4.4.6)"
            ));
        }
        if let Some(last) = playlist.segments.last() {
            self.pdt_checked_through = Some(last.msn);
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

    /// A wait for the next part beyond 3 × PART-TARGET is a stall; see `RenditionSummary`.
    fn count_stall(&mut self, waited: Duration) {
        let Some(target) = self.part_target else {
            return;
        };
        let threshold = Duration::from_secs_f64(3.0 * target);
        if waited > threshold {
            self.stalls += 1;
            self.stall_time += waited - threshold;
        }
    }

    /// Ends the measurements at `end` (time since start); a wait still going on then
    /// counts as a stall unless the stream ended.
    pub(crate) fn finish(&mut self, end: Duration, stream_ended: bool) {
        if !stream_ended && let Some(previous) = self.last_arrival {
            self.count_stall(end.saturating_sub(previous));
        }
    }

    pub(crate) fn summary(&self, stream_ended: bool) -> RenditionSummary {
        RenditionSummary {
            name: self.name.clone(),
            playlist_url: self.playlist_url.clone(),
            sample_entry: self.init.as_ref().map(|i| i.sample_entry.to_string()),
            timescale: self.init.as_ref().map(|i| i.timescale),
            part_target_s: self.part_target,
            first_part_ms: self.first_part_at.map(|d| d.as_millis() as u64),
            ended: stream_ended,
            parts_fetched: self.parts_fetched,
            bytes_fetched: self.bytes_fetched,
            segments_seen: self.segments_seen,
            discontinuities: self.discontinuities,
            parts_over_part_target: self.parts_over_part_target,
            tfdt_gaps: self.tfdt_gaps,
            stalls: self.stalls,
            stall_ms: self.stall_time.as_millis() as u64,
            latency_ms: Distribution::of(&self.latencies_ms),
            blocking_reloads: self.blocking_reload_ms.len() as u64,
            blocking_reload_ms: Distribution::of(&self.blocking_reload_ms),
            blocking_reload_timeouts: self.blocking_reload_timeouts,
            delta_updates: self.delta_updates,
            preload_hint_hits: self.preload_hint_hits,
            errors: self.errors.len() as u64 + self.errors_omitted,
        }
    }

    pub(crate) fn into_errors(self) -> (Vec<String>, u64) {
        (self.errors, self.errors_omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fmp4::tests::{NON_SYNC, SYNC, chunk, video_init};
    use crate::playlist::parse_media;

    /// A live playlist: PART-TARGET 0.2 s, segments of 4 parts.
    fn live(media_sequence: u64, body: &str) -> MediaPlaylist {
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

    const TWO_SEGMENTS: &str = "#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z
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

    fn arrival(ms: u64) -> Arrival {
        Arrival {
            since_start: Duration::from_millis(ms),
            unix_ms: 1_735_689_600_000.0 + ms as f64,
        }
    }

    fn checker_with_init() -> RenditionChecker {
        let mut checker = RenditionChecker::new("video", "index.m3u8");
        checker.set_init("init.mp4", &video_init(1, 90_000));
        checker
    }

    fn part(position: PartPosition, independent: bool, discontinuity: bool) -> PartRef {
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
        checker.finish(Duration::from_millis(2300), false);
        let summary = checker.summary(false);
        assert_eq!((summary.stalls, summary.stall_ms), (2, 500));
    }
}
