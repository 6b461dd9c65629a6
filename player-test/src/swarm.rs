//! A viewer swarm: many players following streams at once, as a crowd does at kick-off.
//! Each viewer is a full [`follow`] (same checks, same measurements); the swarm spreads
//! them over the given streams and over the highest and lowest variant, starts them over
//! a ramp rather than all in one instant, and sums up what they found.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::follow::{PlayerConfig, VariantChoice, describe, follow};
use crate::report::{Distribution, Report, ms};

/// Errors kept verbatim in a [`SwarmReport`]; the rest are only counted.
const KEPT_ERRORS: usize = 50;

/// Who watches what. Build with [`SwarmConfig::new`], then set fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SwarmConfig {
    /// Multivariant playlists; viewer `i` follows `master_urls[i % len]`.
    pub master_urls: Vec<String>,
    pub viewers: usize,
    /// Viewers start evenly spread over this time.
    pub ramp: Duration,
    /// What every viewer does (its `master_url` and `variant` are set per viewer): even
    /// viewers take the highest variant, odd ones the lowest, as phones on a stadium's
    /// Wi-Fi and TVs on fibre would.
    pub player: PlayerConfig,
}

impl SwarmConfig {
    /// `viewers` viewers over `master_urls`, ramped up over 10 s, each following for
    /// `duration`.
    pub fn new(master_urls: Vec<String>, viewers: usize, duration: Duration) -> Self {
        let mut player = PlayerConfig::new(String::new());
        player.duration = duration;
        Self {
            master_urls,
            viewers,
            ramp: Duration::from_secs(10),
            player,
        }
    }

    fn viewer(&self, index: usize) -> PlayerConfig {
        let mut config = self.player.clone();
        config.master_url = self.master_urls[index % self.master_urls.len()].clone();
        config.variant = if index.is_multiple_of(2) {
            VariantChoice::HighestBandwidth
        } else {
            VariantChoice::LowestBandwidth
        };
        config
    }
}

/// What the swarm found: sums over viewers, and distributions of per-viewer figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwarmReport {
    pub viewers: usize,
    /// Viewers whose report has no error (stalls are counted apart).
    pub clean_viewers: usize,
    /// Viewers that could not follow at all (master playlist unreachable or unusable).
    pub failed_viewers: usize,
    pub errors_total: u64,
    /// The first errors, each prefixed with its viewer's index.
    pub errors: Vec<String>,
    pub stalls: u64,
    pub stall_ms: u64,
    pub discontinuities: u64,
    pub parts_fetched: u64,
    pub bytes_fetched: u64,
    /// Per viewer: master playlist request → first decodable part of every rendition.
    pub startup_ms: Option<Distribution>,
    /// Per viewer: the median latency of its parts.
    pub latency_p50_ms: Option<Distribution>,
    /// Per viewer: the 95th percentile latency of its parts.
    pub latency_p95_ms: Option<Distribution>,
}

impl SwarmReport {
    /// No viewer failed or found an error.
    pub fn is_clean(&self) -> bool {
        self.clean_viewers == self.viewers
    }

    fn of(outcomes: Vec<(usize, Result<Report, String>)>) -> Self {
        let mut report = Self {
            viewers: outcomes.len(),
            clean_viewers: 0,
            failed_viewers: 0,
            errors_total: 0,
            errors: Vec::new(),
            stalls: 0,
            stall_ms: 0,
            discontinuities: 0,
            parts_fetched: 0,
            bytes_fetched: 0,
            startup_ms: None,
            latency_p50_ms: None,
            latency_p95_ms: None,
        };
        let (mut startups, mut p50s, mut p95s) = (Vec::new(), Vec::new(), Vec::new());
        let keep = |report: &mut Self, viewer: usize, error: &str| {
            report.errors_total += 1;
            if report.errors.len() < KEPT_ERRORS {
                report.errors.push(format!("viewer {viewer}: {error}"));
            }
        };
        for (viewer, outcome) in outcomes {
            let followed = match outcome {
                Ok(followed) => followed,
                Err(error) => {
                    report.failed_viewers += 1;
                    keep(&mut report, viewer, &error);
                    continue;
                }
            };
            if followed.is_clean() {
                report.clean_viewers += 1;
            }
            for error in &followed.errors {
                keep(&mut report, viewer, error);
            }
            report.errors_total += followed.errors_omitted;
            report.stalls += followed.stalls;
            report.stall_ms += followed.stall_ms;
            report.discontinuities += followed.discontinuities;
            report.parts_fetched += followed.parts_fetched;
            report.bytes_fetched += followed.bytes_fetched;
            startups.extend(followed.startup_ms.map(|ms| ms as f64));
            if let Some(latency) = followed.latency_ms {
                p50s.push(latency.p50);
                p95s.push(latency.p95);
            }
        }
        report.startup_ms = Distribution::of(&startups);
        report.latency_p50_ms = Distribution::of(&p50s);
        report.latency_p95_ms = Distribution::of(&p95s);
        report
    }
}

impl fmt::Display for SwarmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} viewers: {} clean, {} could not follow",
            self.viewers, self.clean_viewers, self.failed_viewers
        )?;
        writeln!(f, "startup            {}", ms(&self.startup_ms, false))?;
        writeln!(f, "latency p50/viewer {}", ms(&self.latency_p50_ms, false))?;
        writeln!(f, "latency p95/viewer {}", ms(&self.latency_p95_ms, false))?;
        writeln!(
            f,
            "stalls             {} ({} ms)",
            self.stalls, self.stall_ms
        )?;
        writeln!(
            f,
            "fetched            {} parts, {} bytes",
            self.parts_fetched, self.bytes_fetched
        )?;
        writeln!(f, "discontinuities    {}", self.discontinuities)?;
        writeln!(f, "errors             {}", self.errors_total)?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        if self.errors_total > self.errors.len() as u64 {
            writeln!(
                f,
                "  … and {} more",
                self.errors_total - self.errors.len() as u64
            )?;
        }
        Ok(())
    }
}

/// Runs the swarm to the end of every viewer's follow.
///
/// # Panics
/// If `config.master_urls` is empty.
pub async fn swarm(config: SwarmConfig) -> SwarmReport {
    assert!(!config.master_urls.is_empty(), "a swarm needs a stream");
    let mut viewers = JoinSet::new();
    let step = config.ramp / config.viewers.max(1) as u32;
    for index in 0..config.viewers {
        let player = config.viewer(index);
        let delay = step * index as u32;
        viewers.spawn(async move {
            tokio::time::sleep(delay).await;
            let outcome = follow(player).await.map_err(|e| describe(&e));
            (index, outcome)
        });
    }
    let mut outcomes = Vec::with_capacity(config.viewers);
    while let Some(joined) = viewers.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => outcomes.push((usize::MAX, Err(format!("viewer task failed: {e}")))),
        }
    }
    outcomes.sort_by_key(|(index, _)| *index);
    SwarmReport::of(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_origin::serve_clean;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn viewers_spread_over_streams_and_variants_and_are_summed_up() {
        let master_url = serve_clean(2).await;
        let mut config = SwarmConfig::new(vec![master_url], 4, Duration::from_secs(10));
        config.ramp = Duration::from_millis(200);
        assert_eq!(
            config.viewer(1).variant,
            VariantChoice::LowestBandwidth,
            "odd viewers take the lowest variant"
        );
        let report = swarm(config).await;
        assert_eq!(report.viewers, 4);
        assert!(report.is_clean(), "{report:#?}");
        assert!(report.parts_fetched >= 4 * 2 * 20, "{report:#?}");
        assert_eq!(report.startup_ms.map(|d| d.count), Some(4));
    }

    #[tokio::test]
    async fn a_viewer_that_cannot_follow_is_a_failure_with_its_reason() {
        let config = SwarmConfig::new(
            vec!["http://127.0.0.1:9/live/x/master.m3u8".to_owned()],
            2,
            Duration::from_secs(1),
        );
        let report = swarm(config).await;
        assert_eq!(report.failed_viewers, 2);
        assert!(!report.is_clean());
        assert!(
            report.errors[0].starts_with("viewer 0: GET "),
            "{report:#?}"
        );
    }
}
