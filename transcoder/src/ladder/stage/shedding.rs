//! Acting on the load: every rung's encode speed measured over a window (the stream's
//! speed is its slowest rung's), and a rung shed when one stays behind real time. Whether
//! a rung is behind for long enough, and which rung goes, is decided in
//! [`shed`](crate::ladder::shed); the lag itself is observed as pictures are handed to the
//! rungs ([`boundaries`](super::boundaries)).

use std::sync::atomic::Ordering;
use std::time::Instant;

use floodlight_media::TIMESCALE;
use tracing::warn;

use super::rung::Rung;
use super::{Ladder, RungStatus, StageOutput};
use crate::ladder::shed::{ShedCandidate, choose_shed};

/// How often the encode speed is measured, ms.
const SPEED_WINDOW_MS: i64 = 2000;

impl Ladder {
    /// Sheds a rung: `behind` is the one found lagging (the choice is by cost, not by who
    /// lagged: every rung shares the cores).
    pub(super) fn shed(&mut self, behind: usize) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut candidates = Vec::new();
        if session.passthrough.is_some() {
            candidates.push(ShedCandidate {
                encoded: false,
                pixel_rate: 0,
            });
        }
        let offset = candidates.len();
        candidates.extend(session.rungs.iter().map(|r| ShedCandidate {
            encoded: true,
            pixel_rate: r.pixel_rate,
        }));
        let lagging = session.rungs[behind].planned.name.clone();
        let speed = rung_speed(&session.rungs[behind]).unwrap_or(0.0);
        for rung in &mut session.rungs {
            rung.lag.reset();
        }
        let Some(index) = choose_shed(&candidates) else {
            self.errors += 1;
            if self.errors % 100 == 1 {
                warn!(
                    rung = %lagging,
                    speed, "the machine cannot keep up and no rung may be shed"
                );
            }
            return;
        };
        let mut rung = session.rungs.remove(index - offset);
        rung.stats.stop.store(true, Ordering::Relaxed);
        rung.tx = None;
        warn!(
            rung = %rung.planned.name,
            lagging = %lagging,
            speed,
            shed_lag_ms = self.settings.shed_lag_ms,
            "the machine cannot keep up: rung shed"
        );
        metrics::counter!("floodlight_transcoder_rungs_shed_total").increment(1);
        self.shed.push(RungStatus {
            name: rung.planned.name.clone(),
            width: rung.planned.width,
            height: rung.planned.height,
            bitrate_bps: Some(rung.bitrate_bps),
            passthrough: false,
            shed: Some("shed-cpu".to_string()),
        });
        let name = rung.planned.name.clone();
        // Detached: it drops its queue and exits; its last frames are no longer mapped.
        drop(rung);
        self.announce();
        self.emit(StageOutput::Stopped {
            rendition: name,
            reason: "shed-cpu",
        });
        self.publish_status(None);
    }

    /// Every [`SPEED_WINDOW_MS`]: the encode speed of the slowest stage.
    pub(super) fn measure_speed(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let elapsed = session.speed_mark.elapsed();
        if elapsed.as_millis() < SPEED_WINDOW_MS as u128 {
            return;
        }
        let mut slowest: Option<f64> = None;
        for rung in &mut session.rungs {
            let busy = rung.stats.busy_ns.load(Ordering::Relaxed);
            let media = rung.stats.media_ticks.load(Ordering::Relaxed);
            let (busy0, media0) = rung.speed_mark;
            rung.speed_mark = (busy, media);
            if busy > busy0 && media > media0 {
                let speed = ((media - media0) as f64 / f64::from(TIMESCALE))
                    / ((busy - busy0) as f64 / 1e9);
                slowest = Some(slowest.map_or(speed, |s: f64| s.min(speed)));
            }
        }
        session.speed_mark = Instant::now();
        if slowest.is_some() {
            self.publish_status(slowest);
        }
    }
}

/// The rung's speed over the current window, ×realtime.
fn rung_speed(rung: &Rung) -> Option<f64> {
    let busy = rung.stats.busy_ns.load(Ordering::Relaxed) - rung.speed_mark.0;
    let media = rung.stats.media_ticks.load(Ordering::Relaxed) - rung.speed_mark.1;
    (busy > 0 && media > 0).then(|| (media as f64 / f64::from(TIMESCALE)) / (busy as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use floodlight_media::StreamEvent;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::RungProfile;
    use crate::ladder::StatusBoard;
    use crate::ladder::stage::test_support::{capture, settings, stamped};

    #[test]
    fn shedding_drops_the_middle_rung_tells_the_origin_and_shows_in_the_status() {
        let mut settings = settings();
        settings.profile.rungs.push(RungProfile {
            name: "90p".to_string(),
            height: 90,
            bitrate_bps: 60_000,
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let board = Arc::new(StatusBoard::default());
        let mut ladder = Ladder::new("shed".to_string(), settings, tx, board.clone());
        for event in capture().into_iter().take(10) {
            ladder.handle(stamped(event));
        }
        // 120p lagged; the choice is by cost: 180p, the most expensive middle rung.
        ladder.shed(1);
        let status = board.get("shed").unwrap();
        let names: Vec<(&str, Option<&str>)> = status
            .rungs
            .iter()
            .map(|r| (r.name.as_str(), r.shed.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("source", None),
                ("120p", None),
                ("90p", None),
                ("180p", Some("shed-cpu"))
            ]
        );
        // Source and the lowest rung stay: one more shed, then no more.
        ladder.shed(0);
        ladder.shed(0);
        ladder.handle(stamped(StreamEvent::Ended));
        let mut announced = Vec::new();
        let mut stopped = Vec::new();
        while let Ok(out) = rx.try_recv() {
            match out {
                StageOutput::Renditions(list) => announced.push(
                    list.into_iter()
                        .map(|(_, t)| t.name)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                StageOutput::Stopped { rendition, reason } => {
                    stopped.push(format!("{rendition}:{reason}"))
                }
                _ => {}
            }
        }
        assert_eq!(
            announced,
            ["source,180p,120p,90p", "source,120p,90p", "source,90p"]
        );
        assert_eq!(stopped, ["180p:shed-cpu", "120p:shed-cpu"]);
    }
}
