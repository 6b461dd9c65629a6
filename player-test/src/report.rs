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
    /// Time from the master playlist request to this rendition's first decodable part.
    pub first_part_ms: Option<u64>,
    /// The playlist carried EXT-X-ENDLIST and every listed part was fetched.
    pub ended: bool,
    pub parts_fetched: u64,
    /// Bytes of every response body for this rendition: playlists, init, parts.
    pub bytes_fetched: u64,
    /// Segments (distinct MSNs) from which at least one part was fetched.
    pub segments_seen: u64,
    /// EXT-X-DISCONTINUITY boundaries crossed while following.
    pub discontinuities: u64,
    /// Parts whose sample durations or DURATION attribute exceed PART-TARGET. Should be 0.
    pub parts_over_part_target: u64,
    /// Parts whose tfdt is not where the previous part's samples ended (discontinuities
    /// excepted). Should be 0.
    pub tfdt_gaps: u64,
    /// Waits for the next part longer than 3 × PART-TARGET: a player holding
    /// PART-HOLD-BACK = 3 × PART-TARGET of media would have run dry. Counted from the
    /// first part on; a wait still going on when following stops counts unless the stream
    /// ended.
    pub stalls: u64,
    /// Sum over stalls of the wait beyond 3 × PART-TARGET: the time such a player would
    /// have spent rebuffering.
    pub stall_ms: u64,
    /// Wall clock at a part's arrival minus the wall-clock time of its last sample's end:
    /// PROGRAM-DATE-TIME of its segment + DURATIONs of the earlier parts + its DURATION.
    /// Needs the server's and the player's clocks in sync. The start-up backlog (parts
    /// already listed in the first playlist, old by construction) is left out. Negative
    /// values mean the PDT runs ahead of the player's clock.
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
    /// Master playlist request → the first decodable part of every followed rendition
    /// (a player starts once it has both audio and video). `None` if one never came.
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
        writeln!(f, "live-edge latency  {}", ms(&self.latency_ms, false))?;
        writeln!(
            f,
            "blocking reload    {}",
            ms(&self.blocking_reload_ms, true)
        )?;
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
        writeln!(f, "over PART-TARGET   {}", self.parts_over_part_target)?;
        writeln!(f, "tfdt gaps          {}", self.tfdt_gaps)?;
        for r in &self.renditions {
            writeln!(f, "{}: {}", r.name, r.playlist_url)?;
            writeln!(
                f,
                "  {} · timescale {} · PART-TARGET {} s",
                r.sample_entry.as_deref().unwrap_or("no decodable init"),
                r.timescale.map_or("?".into(), |t| t.to_string()),
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
            writeln!(f, "  latency {}", ms(&r.latency_ms, false))?;
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
