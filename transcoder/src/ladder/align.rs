//! Keyframe alignment: where every rung of a ladder starts a segment.
//!
//! RFC 8216bis §6.2.3 and Apple's HLS authoring spec §1.10 want the segments of all
//! variants to start at the same presentation times with an IDR, so a player switches
//! rungs at any segment boundary. The cut points are decided once per stream, on the
//! decoded pictures in presentation order, and every encoded rung forces its IDR on the
//! same pictures.
//!
//! Policy (`FollowSource` while the `source` passthrough is offered):
//! - a source keyframe whose pts is at least the segment target after the segment's start,
//!   less a tolerance of half a part target (the packager's own rule, so its cuts land on
//!   the same pictures), is a boundary: the passthrough's keyframes line up by
//!   construction;
//! - a picture that reaches the segment target plus the tolerance with no source keyframe
//!   (the publisher's GOP is irregular or too long) is a forced boundary. From it on the
//!   passthrough cannot line up any more: the stage re-encodes `source` at its own size,
//!   and the aligner switches to `Cadence`.
//!
//! `Cadence` (no passthrough, or after a forced boundary): a boundary on the first picture
//! at the segment target after the segment's start, less half a frame interval (frame
//! timestamps jitter by a tick or two; 29.97 fps gives 2.002 s segments).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Before the first boundary of a session: not encoded (nothing to align it with).
    Skip,
    /// Inside a segment.
    Within,
    /// A boundary at a source keyframe.
    Keyframe,
    /// A boundary the source has no keyframe for.
    Forced,
}

impl Cut {
    pub(crate) fn is_boundary(self) -> bool {
        matches!(self, Cut::Keyframe | Cut::Forced)
    }
}

#[derive(Debug)]
pub(crate) struct KeyframeAligner {
    target: i64,
    tolerance: i64,
    follow_source: bool,
    segment_start: Option<i64>,
    /// pts of the session's first picture, while no boundary has been found yet.
    first_seen: Option<i64>,
    last_pts: Option<i64>,
    /// The latest positive pts step: a frame interval.
    frame_interval: Option<i64>,
}

impl KeyframeAligner {
    /// `target` and `tolerance` in 90 kHz ticks; `follow_source` while the passthrough is
    /// offered.
    pub(crate) fn new(target: i64, tolerance: i64, follow_source: bool) -> Self {
        KeyframeAligner {
            target,
            tolerance,
            follow_source,
            segment_start: None,
            first_seen: None,
            last_pts: None,
            frame_interval: None,
        }
    }

    /// The next decoded picture, in presentation order.
    pub(crate) fn picture(&mut self, pts: i64, source_keyframe: bool) -> Cut {
        if let Some(last) = self.last_pts
            && pts > last
        {
            self.frame_interval = Some(pts - last);
        }
        self.last_pts = Some(pts);
        let cut = match self.segment_start {
            None if source_keyframe || !self.follow_source => {
                if self.follow_source {
                    Cut::Keyframe
                } else {
                    Cut::Forced
                }
            }
            None => {
                let first = *self.first_seen.get_or_insert(pts);
                if pts - first >= self.target + self.tolerance {
                    Cut::Forced
                } else {
                    Cut::Skip
                }
            }
            Some(start) if self.follow_source => {
                if source_keyframe && pts - start >= self.target - self.tolerance {
                    Cut::Keyframe
                } else if pts - start >= self.target + self.tolerance {
                    Cut::Forced
                } else {
                    Cut::Within
                }
            }
            Some(start) => {
                let slack = self
                    .frame_interval
                    .map_or(self.tolerance, |f| (f / 2).min(self.tolerance));
                if pts - start >= self.target - slack {
                    Cut::Forced
                } else {
                    Cut::Within
                }
            }
        };
        if cut.is_boundary() {
            self.segment_start = Some(pts);
            if cut == Cut::Forced {
                self.follow_source = false;
            }
        }
        cut
    }

    /// The passthrough's keyframes still decide the boundaries.
    #[cfg(test)]
    fn follows_source(&self) -> bool {
        self.follow_source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: i64 = 180_000;
    const TOLERANCE: i64 = 9_000;

    /// Pictures at 30 fps with a source keyframe every `gop` pictures: their cuts.
    fn run(aligner: &mut KeyframeAligner, pictures: i64, gop: i64) -> Vec<(i64, Cut)> {
        (0..pictures)
            .map(|i| (i * 3000, aligner.picture(i * 3000, i % gop == 0)))
            .filter(|(_, c)| c.is_boundary())
            .collect()
    }

    #[test]
    fn a_regular_2_s_gop_keeps_the_source_and_cuts_at_its_keyframes() {
        let mut aligner = KeyframeAligner::new(TARGET, TOLERANCE, true);
        let cuts = run(&mut aligner, 600, 60);
        let expected: Vec<_> = (0..10).map(|k| (k * 180_000, Cut::Keyframe)).collect();
        assert_eq!(cuts, expected);
        assert!(aligner.follows_source());
    }

    #[test]
    fn a_1_s_gop_cuts_at_every_other_keyframe() {
        let mut aligner = KeyframeAligner::new(TARGET, TOLERANCE, true);
        let cuts = run(&mut aligner, 300, 30);
        assert_eq!(
            cuts.iter().map(|c| c.0).collect::<Vec<_>>(),
            [0, 180_000, 360_000, 540_000, 720_000]
        );
        assert!(aligner.follows_source());
    }

    #[test]
    fn a_4_s_gop_forces_boundaries_and_leaves_the_source() {
        let mut aligner = KeyframeAligner::new(TARGET, TOLERANCE, true);
        let cuts = run(&mut aligner, 600, 120);
        // The first forced boundary at target + tolerance (2.1 s), then every 2 s.
        assert_eq!(
            cuts,
            [
                (0, Cut::Keyframe),
                (189_000, Cut::Forced),
                (369_000, Cut::Forced),
                (549_000, Cut::Forced),
                (729_000, Cut::Forced),
                (909_000, Cut::Forced),
                (1_089_000, Cut::Forced),
                (1_269_000, Cut::Forced),
                (1_449_000, Cut::Forced),
                (1_629_000, Cut::Forced),
            ]
        );
        assert!(!aligner.follows_source());
    }

    #[test]
    fn a_keyframe_slightly_early_is_still_a_boundary() {
        let mut aligner = KeyframeAligner::new(TARGET, TOLERANCE, true);
        assert_eq!(aligner.picture(0, true), Cut::Keyframe);
        assert_eq!(aligner.picture(3000, false), Cut::Within);
        // 1.95 s: within half a part target of the target.
        assert_eq!(aligner.picture(175_500, true), Cut::Keyframe);
        // 0.9 s later: too early.
        assert_eq!(aligner.picture(256_500, true), Cut::Within);
    }

    #[test]
    fn without_passthrough_the_cadence_is_the_segment_target_at_29_97() {
        let mut aligner = KeyframeAligner::new(TARGET, TOLERANCE, false);
        let cuts: Vec<i64> = (0..300)
            .map(|i| i * 3003)
            .filter(|&pts| aligner.picture(pts, false).is_boundary())
            .collect();
        assert_eq!(cuts, [0, 180_180, 360_360, 540_540, 720_720]);
    }

    #[test]
    fn pictures_before_the_first_source_keyframe_are_skipped_then_forced() {
        let mut aligner = KeyframeAligner::new(TARGET, TOLERANCE, true);
        assert_eq!(aligner.picture(0, false), Cut::Skip);
        assert_eq!(aligner.picture(3000, true), Cut::Keyframe);
        let mut late = KeyframeAligner::new(TARGET, TOLERANCE, true);
        let first_forced = (0..100)
            .map(|i| (i * 3000, late.picture(i * 3000, false)))
            .find(|(_, c)| *c != Cut::Skip);
        assert_eq!(first_forced, Some((189_000, Cut::Forced)));
    }
}
