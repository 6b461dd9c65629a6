//! Errors caused by outside input, rolled up per source address, kind and interval, so
//! that a flood of junk or of wrong keys costs a few log lines, not one per packet
//! (mediamtx's `errordumper`). The first error of a kind from a source in an interval is
//! logged in full; the rest are counted, and the count is logged as one line when the
//! interval is over. Metrics still count every error.
//!
//! Sans-IO: time comes in, decisions and summaries go out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floodlight_media::sync::lock;
use tracing::warn;

/// How many sources are tracked at once (memory bound). Past it, errors from new
/// sources are counted under one "other sources" entry.
const MAX_SOURCES: usize = 10_000;

/// Where an error came from and what kind it is (a metric label, e.g. `unknown_key`).
type Key = (IpAddr, &'static str);

#[derive(Debug)]
struct Window {
    started: Instant,
    suppressed: u64,
}

/// What happened to the errors of one source over an interval that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// `None`: sources past the tracking bound, together.
    pub(crate) source: Option<Key>,
    pub(crate) suppressed: u64,
}

#[derive(Debug)]
pub(crate) struct ErrorRollup {
    interval: Duration,
    sources: HashMap<Key, Window>,
    overflow: Option<Window>,
    next_sweep: Option<Instant>,
}

impl ErrorRollup {
    pub(crate) fn new(interval: Duration) -> Self {
        ErrorRollup {
            interval,
            sources: HashMap::new(),
            overflow: None,
            next_sweep: None,
        }
    }

    /// An error of `kind` from `source` at `now`: `true` when it is to be logged in full
    /// (the first of its source and kind in an interval). Also returns the summaries of
    /// intervals that ended, to log.
    pub(crate) fn record(
        &mut self,
        source: IpAddr,
        kind: &'static str,
        now: Instant,
    ) -> (bool, Vec<Summary>) {
        let source = (source, kind);
        let summaries = self.sweep(now);
        let tracked = self.sources.len() < MAX_SOURCES || self.sources.contains_key(&source);
        let slot = if tracked {
            self.sources.get_mut(&source)
        } else {
            self.overflow.as_mut()
        };
        let first = match slot {
            Some(window) => {
                window.suppressed += 1;
                false
            }
            None => {
                let window = Window {
                    started: now,
                    suppressed: 0,
                };
                if tracked {
                    self.sources.insert(source, window);
                } else {
                    self.overflow = Some(window);
                }
                true
            }
        };
        self.next_sweep.get_or_insert(now + self.interval);
        (first, summaries)
    }

    /// Ends the intervals that are over: their sources are forgotten, and those with
    /// suppressed errors are summed up.
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<Summary> {
        if self.next_sweep.is_none_or(|at| now < at) {
            return Vec::new();
        }
        let interval = self.interval;
        let mut summaries = Vec::new();
        self.sources.retain(|source, window| {
            let over = now.saturating_duration_since(window.started) >= interval;
            if over && window.suppressed > 0 {
                summaries.push(Summary {
                    source: Some(*source),
                    suppressed: window.suppressed,
                });
            }
            !over
        });
        if let Some(window) = &self.overflow
            && now.saturating_duration_since(window.started) >= interval
        {
            if window.suppressed > 0 {
                summaries.push(Summary {
                    source: None,
                    suppressed: window.suppressed,
                });
            }
            self.overflow = None;
        }
        self.next_sweep = self
            .sources
            .values()
            .chain(&self.overflow)
            .map(|window| window.started + interval)
            .min();
        summaries
    }
}

/// An [`ErrorRollup`] shared by the tasks of one listener, logging its summaries under
/// `what` (e.g. "srt connections refused").
#[derive(Debug, Clone)]
pub(crate) struct SharedRollup {
    what: &'static str,
    inner: Arc<Mutex<ErrorRollup>>,
}

impl SharedRollup {
    pub(crate) fn new(what: &'static str, interval: Duration) -> Self {
        SharedRollup {
            what,
            inner: Arc::new(Mutex::new(ErrorRollup::new(interval))),
        }
    }

    /// Whether an error of `kind` from `source` now is to be logged in full.
    pub(crate) fn admit(&self, source: IpAddr, kind: &'static str) -> bool {
        let (first, summaries) = lock(&self.inner).record(source, kind, Instant::now());
        self.log(summaries);
        first
    }

    /// Logs the summaries of the intervals that are over; for a timer.
    pub(crate) fn sweep(&self) {
        let summaries = lock(&self.inner).sweep(Instant::now());
        self.log(summaries);
    }

    fn log(&self, summaries: Vec<Summary>) {
        for summary in summaries {
            match summary.source {
                Some((source, kind)) => warn!(
                    %source,
                    kind,
                    more = summary.suppressed,
                    "{}: more from this source in the last interval, not logged one by one",
                    self.what
                ),
                None => warn!(
                    more = summary.suppressed,
                    "{}: more from sources past the tracking bound, not logged one by one",
                    self.what
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn the_first_error_of_an_interval_is_logged_the_rest_summed_up() {
        let start = Instant::now();
        let mut rollup = ErrorRollup::new(Duration::from_secs(10));
        assert_eq!(rollup.record(A, "junk", start), (true, vec![]));
        for i in 1..=1000 {
            let at = start + Duration::from_millis(i);
            assert_eq!(rollup.record(A, "junk", at), (false, vec![]));
        }
        // Another source has its own interval.
        assert!(rollup.record(B, "junk", start + Duration::from_secs(1)).0);
        // A's interval ends: one summary, and A's next error is logged again.
        let later = start + Duration::from_secs(10);
        let (first, summaries) = rollup.record(A, "junk", later);
        assert!(first);
        assert_eq!(
            summaries,
            vec![Summary {
                source: Some((A, "junk")),
                suppressed: 1000
            }]
        );
        // B had nothing suppressed: no summary when its interval ends.
        assert!(rollup.sweep(start + Duration::from_secs(11)).is_empty());
        assert!(rollup.sources.contains_key(&(A, "junk")));
        assert!(!rollup.sources.contains_key(&(B, "junk")));
        // Another kind of error from A is logged in full.
        assert!(rollup.record(A, "unknown_key", later).0);
    }

    #[test]
    fn sources_past_the_bound_share_one_entry() {
        let start = Instant::now();
        let mut rollup = ErrorRollup::new(Duration::from_secs(10));
        let logged = (0..MAX_SOURCES as u32 + 500)
            .filter(|i| {
                let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
                rollup.record(source, "junk", start).0
            })
            .count();
        assert_eq!(logged, MAX_SOURCES + 1);
        assert_eq!(rollup.sources.len(), MAX_SOURCES);
        let summaries = rollup.sweep(start + Duration::from_secs(10));
        assert_eq!(
            summaries,
            vec![Summary {
                source: None,
                suppressed: 499
            }]
        );
        assert!(rollup.sources.is_empty());
    }
}
