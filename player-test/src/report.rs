//! What a follow run found, as JSON (serde) and as text for people.

use std::fmt;

use serde::Serialize;

/// Order statistics of a set of measurements (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let max = *sorted.last()?;
        let rank = |p: f64| {
            let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index]
        };
        Some(Self {
            count: sorted.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max,
        })
    }
}

/// What following a recorded playlist (start-over, time-shift, VOD) measured for one
/// rendition. Its `RenditionSummary::ended` says whether EXT-X-ENDLIST was reached (listed,
/// and every segment before it fetched).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedSummary {
    /// EXT-X-PLAYLIST-TYPE of the first playlist, `EVENT` or `VOD`; `None` for a finished
    /// playlist without one, or an I-frame playlist.
    pub playlist_type: Option<String>,
    /// Segments fetched and checked (for an I-frame playlist: I-frames, each a byte range).
    pub segments_fetched: u64,
    /// Segments listed with EXT-X-GAP, which a player does not load (RFC 8216bis §4.4.4.7).
    pub gap_segments: u64,
    /// Sum of the sample durations of the fetched segments, seconds: the media a player
    /// got. Not counted for I-frames.
    pub media_seconds: f64,
    /// EXT-X-PROGRAM-DATE-TIME of the first and the last fetched segment, RFC 3339.
    pub first_program_date_time: Option<String>,
    pub last_program_date_time: Option<String>,
    /// Playlist reloads after the first load (an EVENT playlist is reloaded about every
    /// target duration, RFC 8216bis §6.3.4).
    pub reloads: u64,
    /// How far behind the live edge playback was when following stopped: wall clock then
    /// minus the PROGRAM-DATE-TIME of the last fetched segment. Needs synchronized clocks;
    /// a measurement, never an error.
    pub behind_live_edge_ms: Option<i64>,
}

/// The I-frame playlist of the followed variant (EXT-X-I-FRAME-STREAM-INF, RFC 8216bis
/// §4.4.6.3), checked as a player scrubbing through a recording reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IFrameSummary {
    pub playlist_url: String,
    /// I-frames fetched with a Range request and decoded.
    pub iframes_checked: u64,
    /// Entries listed with EXT-X-GAP.
    pub gap_entries: u64,
    /// The I-frame playlist carried EXT-X-ENDLIST and every entry was checked.
    pub ended: bool,
    pub bytes_fetched: u64,
    /// Errors found in it (also listed in `Report::errors`, prefixed `iframes:`).
    pub errors: u64,
}

/// The recorded side of a `Report`: set when a followed media playlist was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedReport {
    /// EXT-X-PLAYLIST-TYPE of the first recorded rendition (the variant's).
    pub playlist_type: Option<String>,
    /// Over every rendition.
    pub segments_fetched: u64,
    pub gap_segments: u64,
    /// Media seconds of the rendition that got the least: what a player could play with
    /// every followed rendition.
    pub media_seconds: f64,
    /// The largest of the renditions' `behind_live_edge_ms`.
    pub behind_live_edge_ms: Option<i64>,
    /// `None` when the master lists no I-frame playlist for the variant, or checking it
    /// was turned off.
    pub iframes: Option<IFrameSummary>,
}

/// One followed rendition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenditionSummary {
    /// `video` for the chosen variant, `audio` for its audio group's rendition.
    pub name: String,
    pub playlist_url: String,
    /// The init segment's sample entry, e.g. `avc1 1280x720 profile 100 level 31`.
    pub sample_entry: Option<String>,
    /// mdhd timescale of the track.
    pub timescale: Option<u32>,
    /// EXT-X-PART-INF PART-TARGET, seconds.
    pub part_target_s: Option<f64>,
    /// Time from the master playlist request to this rendition's first decodable part
    /// (segment, for a recorded playlist).
    pub first_part_ms: Option<u64>,
    /// The playlist carried EXT-X-ENDLIST and every listed part (segment, for a recorded
    /// playlist) was fetched.
    pub ended: bool,
    pub parts_fetched: u64,
    /// Bytes of every response body for this rendition: playlists, init, parts.
    pub bytes_fetched: u64,
    /// Segments (distinct MSNs) from which at least one part was fetched; for a recorded
    /// playlist, the segments fetched.
    pub segments_seen: u64,
    /// EXT-X-DISCONTINUITY boundaries crossed while following.
    pub discontinuities: u64,
    /// Parts whose sample durations or DURATION attribute exceed PART-TARGET. Should be 0.
    pub parts_over_part_target: u64,
    /// Parts (segments) whose tfdt is not where the previous one's samples ended
    /// (discontinuities and gaps excepted). Should be 0.
    pub tfdt_gaps: u64,
    /// Waits for the next part longer than 3 × PART-TARGET: a player holding
    /// PART-HOLD-BACK = 3 × PART-TARGET of media would have run dry. Counted from the
    /// first part on; a wait still going on when following stops counts unless the stream
    /// ended. For a recorded playlist: segments that arrived after a player playing from
    /// the first segment's arrival at 1× would have reached them.
    pub stalls: u64,
    /// Sum over stalls of the wait beyond 3 × PART-TARGET (for a recorded playlist, beyond
    /// the time the segment was due): the time such a player would have spent rebuffering.
    pub stall_ms: u64,
    /// Wall clock at a part's arrival minus the wall-clock time of its last sample's end:
    /// PROGRAM-DATE-TIME of its segment + DURATIONs of the earlier parts + its DURATION.
    /// Needs the server's and the player's clocks in sync. The start-up backlog (parts
    /// already listed in the first playlist, old by construction) is left out. Negative
    /// values mean the PDT runs ahead of the player's clock. `None` for a recorded
    /// playlist: see `RecordedSummary::behind_live_edge_ms`.
    pub latency_ms: Option<Distribution>,
    pub blocking_reloads: u64,
    /// Time from sending a blocking reload (`_HLS_msn`/`_HLS_part`) to its full answer.
    pub blocking_reload_ms: Option<Distribution>,
    /// Blocking reloads the server ended with 503 because the part did not come.
    pub blocking_reload_timeouts: u64,
    /// Delta updates received (responses carrying EXT-X-SKIP).
    pub delta_updates: u64,
    /// Parts obtained from the EXT-X-PRELOAD-HINT request issued before they were listed.
    pub preload_hint_hits: u64,
    /// Errors found in this rendition (also listed in `Report::errors`).
    pub errors: u64,
    /// Set when the rendition's playlist was recorded (no EXT-X-PART-INF; PLAYLIST-TYPE
    /// EVENT or VOD, or EXT-X-ENDLIST): followed by plain reloads, segment by segment.
    /// The part and blocking-reload fields then stay 0 / `None`.
    pub recorded: Option<RecordedSummary>,
}

/// The result of following a stream: see `README.md` for what each number means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub master_url: String,
    /// The chosen variant's URI as written in the master playlist.
    pub variant_uri: String,
    pub followed_ms: u64,
    /// The stream ended (EXT-X-ENDLIST) before the follow duration ran out.
    pub ended: bool,
    /// Master playlist request → the first decodable part (segment, when recorded) of
    /// every followed rendition (a player starts once it has both audio and video). `None`
    /// if one never came.
    pub startup_ms: Option<u64>,
    /// Latency of every part of every rendition; see `RenditionSummary::latency_ms`.
    pub latency_ms: Option<Distribution>,
    pub blocking_reload_ms: Option<Distribution>,
    pub stalls: u64,
    pub stall_ms: u64,
    pub bytes_fetched: u64,
    pub parts_fetched: u64,
    pub segments_seen: u64,
    pub discontinuities: u64,
    pub parts_over_part_target: u64,
    pub tfdt_gaps: u64,
    pub renditions: Vec<RenditionSummary>,
    /// Set when a followed rendition was recorded (start-over, time-shift, VOD).
    pub recorded: Option<RecordedReport>,
    /// What was wrong, each with its rendition, URL and MSN.part where it applies.
    pub errors: Vec<String>,
    /// Errors beyond the kept ones (each rendition keeps its first 200).
    pub errors_omitted: u64,
}

impl Report {
    /// No error was found.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.errors_omitted == 0
    }
}

/// `p50 a / p95 b / max c ms (n=…)`, or `p99` in place of `p95` when `tail_p99`.
pub(crate) fn ms(d: &Option<Distribution>, tail_p99: bool) -> String {
    match d {
        None => "n/a".into(),
        Some(d) => {
            let (tail_name, tail) = if tail_p99 {
                ("p99", d.p99)
            } else {
                ("p95", d.p95)
            };
            format!(
                "p50 {:.1} / {tail_name} {tail:.1} / max {:.1} ms (n={})",
                d.p50, d.max, d.count
            )
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "followed {} for {:.1} s{}",
            self.master_url,
            self.followed_ms as f64 / 1000.0,
            if self.ended { " (stream ended)" } else { "" }
        )?;
        writeln!(f, "variant            {}", self.variant_uri)?;
        match self.startup_ms {
            Some(ms) => writeln!(f, "startup            {ms} ms")?,
            None => writeln!(f, "startup            never (no decodable part)")?,
        }
        if let Some(recorded) = &self.recorded {
            write_recorded(f, recorded)?;
        }
        if self.recorded.is_none() || self.parts_fetched > 0 {
            writeln!(f, "live-edge latency  {}", ms(&self.latency_ms, false))?;
            writeln!(
                f,
                "blocking reload    {}",
                ms(&self.blocking_reload_ms, true)
            )?;
        }
        writeln!(
            f,
            "stalls             {} ({} ms)",
            self.stalls, self.stall_ms
        )?;
        writeln!(
            f,
            "fetched            {} parts, {} segments, {} bytes",
            self.parts_fetched, self.segments_seen, self.bytes_fetched
        )?;
        writeln!(f, "discontinuities    {}", self.discontinuities)?;
        if self.parts_fetched > 0 || self.recorded.is_none() {
            writeln!(f, "over PART-TARGET   {}", self.parts_over_part_target)?;
        }
        writeln!(f, "tfdt gaps          {}", self.tfdt_gaps)?;
        for r in &self.renditions {
            write_rendition(f, r)?;
        }
        if self.is_clean() {
            writeln!(f, "no errors")
        } else {
            writeln!(
                f,
                "{} errors:",
                self.errors.len() as u64 + self.errors_omitted
            )?;
            for e in &self.errors {
                writeln!(f, "  {e}")?;
            }
            if self.errors_omitted > 0 {
                writeln!(f, "  … and {} more", self.errors_omitted)?;
            }
            Ok(())
        }
    }
}

fn write_recorded(f: &mut fmt::Formatter<'_>, recorded: &RecordedReport) -> fmt::Result {
    writeln!(
        f,
        "recorded           {} playlist, {} segments + {} gap segments, {:.3} s of media",
        recorded.playlist_type.as_deref().unwrap_or("finished"),
        recorded.segments_fetched,
        recorded.gap_segments,
        recorded.media_seconds
    )?;
    match recorded.behind_live_edge_ms {
        Some(ms) => writeln!(f, "behind live edge   {ms} ms")?,
        None => writeln!(f, "behind live edge   n/a (no PROGRAM-DATE-TIME)")?,
    }
    match &recorded.iframes {
        Some(i) => writeln!(
            f,
            "I-frames           {} checked + {} gap entries{}, {} errors: {}",
            i.iframes_checked,
            i.gap_entries,
            if i.ended { ", ended" } else { "" },
            i.errors,
            i.playlist_url
        ),
        None => writeln!(
            f,
            "I-frames           not checked (none listed, or turned off)"
        ),
    }
}

fn write_rendition(f: &mut fmt::Formatter<'_>, r: &RenditionSummary) -> fmt::Result {
    writeln!(f, "{}: {}", r.name, r.playlist_url)?;
    let decodes = r.sample_entry.as_deref().unwrap_or("no decodable init");
    let timescale = r.timescale.map_or("?".into(), |t| t.to_string());
    let Some(recorded) = &r.recorded else {
        writeln!(
            f,
            "  {decodes} · timescale {timescale} · PART-TARGET {} s",
            r.part_target_s.map_or("?".into(), |t| t.to_string())
        )?;
        writeln!(
            f,
            "  {} parts ({} via preload hint), {} blocking reloads ({} answered 503), {} delta updates, {} errors",
            r.parts_fetched,
            r.preload_hint_hits,
            r.blocking_reloads,
            r.blocking_reload_timeouts,
            r.delta_updates,
            r.errors
        )?;
        return writeln!(f, "  latency {}", ms(&r.latency_ms, false));
    };
    writeln!(
        f,
        "  {decodes} · timescale {timescale} · {}{}",
        recorded.playlist_type.as_deref().unwrap_or("finished"),
        if r.ended { ", ENDLIST reached" } else { "" }
    )?;
    writeln!(
        f,
        "  {} segments + {} gap segments, {:.3} s of media, {} reloads, {} errors",
        recorded.segments_fetched,
        recorded.gap_segments,
        recorded.media_seconds,
        recorded.reloads,
        r.errors
    )?;
    writeln!(
        f,
        "  PROGRAM-DATE-TIME {} → {}",
        recorded.first_program_date_time.as_deref().unwrap_or("?"),
        recorded.last_program_date_time.as_deref().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let d = Distribution::of(&samples).expect("samples");
        assert_eq!(
            (d.count, d.p50, d.p95, d.p99, d.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        let one = Distribution::of(&[7.0]).expect("one sample");
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert_eq!(Distribution::of(&[]), None);
        assert_eq!(Distribution::of(&[f64::NAN]), None);
    }
}
