//! Load shedding: when the machine cannot keep up with a stream's ladder, one rung goes,
//! rather than every rung falling behind real time (issue 4).
//!
//! Detection: a rung is behind when the picture it takes next has waited in its queue
//! longer than `shed_lag_ms` (or its queue is full). Behind for [`SUSTAIN_MS`] without a
//! break is sustained: a single slow picture (an x264 thread hiccup, a scene change) is
//! not.
//!
//! Choice: the encoded rung with the most pixels per second that is neither the top
//! rendition (the best picture the stream offers) nor the lowest encoded rung (the rung a
//! viewer on a bad network still needs). It frees the most CPU while keeping both ends
//! of the ladder. A ladder with nothing between those two (an encoded top over one more
//! encoded rung) sheds its most expensive encoded rung but the lowest, rather than fall
//! behind real time; the last encoded rung is never shed.

/// How long a rung must stay behind before a rung is shed.
pub(crate) const SUSTAIN_MS: i64 = 2000;

/// One rung's "behind real time" state.
#[derive(Debug, Default)]
pub(crate) struct LagMonitor {
    since_ms: Option<i64>,
}

impl LagMonitor {
    /// Records whether the rung is behind at `now_ms`; true once it has been behind for
    /// [`SUSTAIN_MS`].
    pub(crate) fn observe(&mut self, behind: bool, now_ms: i64) -> bool {
        if !behind {
            self.since_ms = None;
            return false;
        }
        let since = *self.since_ms.get_or_insert(now_ms);
        now_ms - since >= SUSTAIN_MS
    }

    pub(crate) fn reset(&mut self) {
        self.since_ms = None;
    }
}

/// What the choice needs to know of a video rung of the current ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShedCandidate {
    pub(crate) encoded: bool,
    /// width × height × frames per second: what the rung costs.
    pub(crate) pixel_rate: u64,
}

/// The index (into `rungs`, top first) of the rung to shed, if any may go.
pub(crate) fn choose_shed(rungs: &[ShedCandidate]) -> Option<usize> {
    let lowest_encoded = rungs.iter().rposition(|r| r.encoded)?;
    let most_expensive = |keep_top: bool| {
        rungs
            .iter()
            .enumerate()
            .filter(|&(i, r)| r.encoded && i != lowest_encoded && !(keep_top && i == 0))
            .max_by_key(|(_, r)| r.pixel_rate)
            .map(|(i, _)| i)
    };
    most_expensive(true).or_else(|| most_expensive(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(encoded: bool, width: u64, height: u64) -> ShedCandidate {
        ShedCandidate {
            encoded,
            pixel_rate: width * height * 30,
        }
    }

    #[test]
    fn sheds_the_most_expensive_middle_rung_and_keeps_both_ends() {
        let mut ladder = vec![
            rung(false, 1920, 1080),
            rung(true, 1280, 720),
            rung(true, 854, 480),
            rung(true, 640, 360),
            rung(true, 426, 240),
        ];
        let mut shed = vec![];
        while let Some(i) = choose_shed(&ladder) {
            shed.push(ladder.remove(i).pixel_rate / 30);
        }
        assert_eq!(shed, [1280 * 720, 854 * 480, 640 * 360]);
        // The passthrough and the lowest encoded rung stay.
        assert_eq!(ladder, [rung(false, 1920, 1080), rung(true, 426, 240)]);
    }

    #[test]
    fn an_encoded_top_rung_goes_last_and_the_last_encoded_rung_never() {
        // `source` re-encoded (its GOP did not line up) is the top.
        let ladder = [
            rung(true, 1280, 720),
            rung(true, 640, 360),
            rung(true, 426, 240),
        ];
        assert_eq!(choose_shed(&ladder), Some(1));
        // Two encoded rungs: the top goes rather than both falling behind.
        assert_eq!(
            choose_shed(&[rung(true, 1280, 720), rung(true, 426, 240)]),
            Some(0)
        );
        assert_eq!(
            choose_shed(&[rung(false, 1920, 1080), rung(true, 426, 240)]),
            None
        );
        assert_eq!(choose_shed(&[rung(true, 426, 240)]), None);
        assert_eq!(choose_shed(&[rung(false, 1280, 720)]), None);
        assert_eq!(choose_shed(&[]), None);
    }

    #[test]
    fn only_a_sustained_lag_counts() {
        let mut lag = LagMonitor::default();
        assert!(!lag.observe(true, 0));
        assert!(!lag.observe(true, 1500));
        // One picture on time ends the streak.
        assert!(!lag.observe(false, 1600));
        assert!(!lag.observe(true, 1700));
        assert!(!lag.observe(true, 3600));
        assert!(lag.observe(true, 3700));
        lag.reset();
        assert!(!lag.observe(true, 3800));
    }
}
