//! The player's judgement of one rendition, free of I/O: the HTTP layer feeds it each
//! playlist and each part (or segment) with the times they arrived, and it keeps the
//! checks' state, the errors and the measurements. Nothing here reads a clock or a socket,
//! so every rule is unit-tested with hand-written playlists and fMP4 bytes.
//!
//! By concern: `position` finds parts in a playlist, `live` holds the LL-HLS playlist and
//! part rules, `recorded` those of start-over, time-shift and VOD playlists (segments,
//! I-frames), and this module the state and the rules every playlist shares.

mod live;
mod position;
mod recorded;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fmp4::{self, InitInfo};
use crate::playlist::MediaPlaylist;
use crate::report::{Distribution, RenditionSummary};

pub(crate) use position::{
    Arrival, PartPosition, PartRef, PartSource, has_reached, listed_parts, next_position,
    parts_after, start_position,
};
pub(crate) use recorded::{SegmentRef, segments_from};

/// Tolerance for comparing playlist DURATION attributes with sample-table durations.
/// RFC 8216bis §4.4.4.9 wants DURATION to be the part's duration; a writer printing
/// milliseconds is exact to 0.5 ms, so 1 ms flags only real disagreement.
const DURATION_TOLERANCE_S: f64 = 0.001;
/// Float slack when comparing a duration against PART-TARGET.
const EPSILON_S: f64 = 1e-9;
/// More errors than this per rendition are counted but not kept.
const MAX_ERRORS: usize = 200;

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
    /// Set once the rendition is followed as a recorded playlist.
    recorded: Option<recorded::Recorded>,
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
            recorded: None,
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

    /// quick-m3u8's findings, each reported once per rendition.
    fn report_parser_findings(&mut self, playlist: &MediaPlaylist) {
        for finding in &playlist.parser_findings {
            if !self.reported_findings.contains(finding) {
                self.reported_findings.push(finding.clone());
                self.error(format!("{}: {finding}", self.playlist_url));
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

    /// Ends the measurements at `end`; a wait still going on then counts as a stall
    /// unless the stream ended.
    pub(crate) fn finish(&mut self, end: Arrival, stream_ended: bool) {
        if !stream_ended && let Some(previous) = self.last_arrival {
            self.count_stall(end.since_start.saturating_sub(previous));
        }
        self.finish_recorded(end, stream_ended);
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
            recorded: self.recorded.as_ref().map(recorded::Recorded::summary),
        }
    }

    pub(crate) fn into_errors(self) -> (Vec<String>, u64) {
        (self.errors, self.errors_omitted)
    }
}
