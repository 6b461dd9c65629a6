//! The part/segment cutter of one track: samples in decode order in, LL-HLS parts out.
//! Pure integer arithmetic on the track's own timescale; no CMAF, no wall clock.
//!
//! A sample's duration is the next sample's decode time minus its own, so the cutter always
//! holds one *pending* sample whose duration is unknown until the next one arrives. When
//! sample G arrives after pending sample F:
//! 1. F's duration is now known. If the open part plus F would exceed the part target, the
//!    part is closed without F and F starts the next part.
//! 2. Otherwise F joins the part; if the part plus G's estimated duration would exceed the
//!    target, or G starts a segment, the part is closed now — the lowest latency at which
//!    it can be known to be complete. The estimate is the shortest of the last
//!    [`DURATION_WINDOW`] durations: millisecond timestamps make 30 fps frames 33, 33 and
//!    34 ms in turn, and taking F's 34 ms for G would close a part one frame early, under
//!    the 85% floor (§4.4.4.9), whenever a part starts at another point of that cycle (a
//!    segment cut by a keyframe off the cycle). Too short an estimate only waits for G:
//!    rule 1 still keeps the part within the target.
//!
//! So every part is ≤ the target (RFC 8216bis §4.4.4.9: "The duration of a Partial Segment
//! MUST be less than or equal to the Part Target Duration"), with one unavoidable exception:
//! a single sample longer than the target (a frame rate under 1/PART-TARGET, or a timestamp
//! gap) becomes a part of its own.
//!
//! The cutter also numbers segments (MSN) and parts. The leading video rendition numbers its
//! segments in order; audio beside it and the other video renditions of a ladder take the
//! MSN the leader announced with each segment start ([`Boundary`]), so every rendition
//! numbers the same span of the stream alike.

use std::collections::VecDeque;

use bytes::Bytes;

/// Sample durations rule 2 estimates the next one from: the cycle of millisecond-rounded
/// timestamps at the usual frame rates (33/33/34 ms at 30 fps, 42/42/41 at 24, 16/17/17
/// at 60).
const DURATION_WINDOW: usize = 3;

/// One access unit, as the cutter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CutterSample {
    /// Decode time in the track timescale.
    pub(crate) decode_time: i64,
    /// Presentation time on the 90 kHz stream timeline: a video segment boundary is
    /// announced at its keyframe's presentation time, and audio compares against it.
    pub(crate) presentation_90k: i64,
    /// `pts - dts` in the track timescale.
    pub(crate) composition_offset: i32,
    /// A sync sample (IDR; every AAC frame).
    pub(crate) sync: bool,
    /// A video follower's sync sample packaged before the leader's frames reached its
    /// time (a stalled leader): whether the leader starts a segment there is not known
    /// yet ([`SegmentPolicy::FollowSyncSamples`]).
    pub(crate) ahead_of_leader: bool,
    pub(crate) data: Bytes,
    /// Wall clock at ingest, ms since the Unix epoch.
    pub(crate) arrival_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimedSample {
    pub(crate) sample: CutterSample,
    /// Track timescale.
    pub(crate) duration: u32,
}

/// A closed part: never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CutPart {
    /// Media sequence number of the part's segment.
    pub(crate) msn: u64,
    /// Index of the part in its segment.
    pub(crate) index: u32,
    pub(crate) samples: Vec<TimedSample>,
    /// Decode time of the first sample (the part's `tfdt`).
    pub(crate) base_decode_time: i64,
    /// Sum of the sample durations, track timescale.
    pub(crate) duration: i64,
    /// The first sample is a sync sample (EXT-X-PART INDEPENDENT=YES, §4.4.4.9).
    pub(crate) independent: bool,
    /// First part of a segment.
    pub(crate) starts_segment: bool,
    /// Last part of a segment.
    pub(crate) ends_segment: bool,
}

/// How a segment may begin early: encoders place keyframes on their own clock, so a 2 s
/// GOP at 29.97 fps is 2.002 s and, with FLV's millisecond timestamps, sometimes 1.998 s.
/// A strict "≥ segment target" would skip such a keyframe and double the segment, so a
/// keyframe up to `early_tolerance` before the target still starts the next segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentTarget {
    pub(crate) target: i64,
    /// Half a part target: well above encoder jitter, well below a frame interval of GOP
    /// lengths a publisher would choose on purpose.
    pub(crate) early_tolerance: i64,
}

/// Where a track starts its segments (RFC 8216bis §6.2.3: segments of all renditions
/// should align so players can switch; our MSNs must match across renditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentPolicy {
    /// Video, or audio of a stream without video: on the first sync sample at least the
    /// segment target (minus the tolerance) after the segment's start.
    SyncSamples(SegmentTarget),
    /// Audio beside video: on the first audio frame presented at or after the video
    /// keyframe that started a segment ([`PartCutter::follow_boundary`]).
    FollowBoundaries,
    /// A video rendition of a ladder other than the leader: on its first sync sample
    /// presented at or after the leader's segment start, less `tolerance` (90 kHz, half a
    /// frame: rungs encoded from one source present their keyframes at the same times, a
    /// passthrough rung within rounding). It never cuts on its own, so it cannot number a
    /// segment differently from the leader. Without a sync sample there it keeps its
    /// segment open, and its next sync sample starts the segment the leader has in
    /// progress by then: the MSNs in between are skipped on this rendition, never shifted.
    /// A sync sample [`CutterSample::ahead_of_leader`] cuts by `target` as the leader
    /// would (ladder rungs share keyframe times); a wrong guess corrects itself, since
    /// the leader's later boundaries renumber this track or are skipped by it, but never
    /// shift its numbering for good.
    FollowSyncSamples {
        tolerance: i64,
        target: SegmentTarget,
    },
}

/// Video began segment `msn` with a keyframe presented at `presentation_90k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub(crate) presentation_90k: i64,
    pub(crate) msn: u64,
}

#[derive(Debug)]
pub(crate) struct PartCutter {
    part_target: i64,
    policy: SegmentPolicy,
    /// The open part: samples whose durations are known.
    part: Vec<TimedSample>,
    part_duration: i64,
    part_starts_segment: bool,
    /// MSN of the open part's segment, and the open part's index in it.
    part_msn: u64,
    part_index: u32,
    /// The last sample; its duration is known when the next one arrives. `Some(msn)`: it
    /// starts segment `msn`.
    pending: Option<(CutterSample, Option<u64>)>,
    /// Decode time of the current segment's first sample; `None` while no segment is open
    /// (before the first sample, after a flush or cut).
    segment_start: Option<i64>,
    /// MSN of the next segment this track starts on its own; one past the last started.
    next_msn: u64,
    /// Video segment starts this track has not begun the matching segment of yet, oldest
    /// first.
    boundaries: VecDeque<Boundary>,
    /// The latest measured durations, newest last: the estimate of a sample's duration
    /// before the next one says it (rule 2, and the pending sample at a flush).
    recent_durations: VecDeque<u32>,
    /// Duration of a pending sample at a flush when no duration was ever measured.
    fallback_duration: u32,
    closed: VecDeque<CutPart>,
}

impl PartCutter {
    /// `part_target` and `fallback_duration` are in the track timescale; `next_msn` is the
    /// MSN of the first segment.
    pub(crate) fn new(
        part_target: i64,
        policy: SegmentPolicy,
        fallback_duration: u32,
        next_msn: u64,
    ) -> Self {
        PartCutter {
            part_target,
            policy,
            part: Vec::new(),
            part_duration: 0,
            part_starts_segment: false,
            part_msn: next_msn,
            part_index: 0,
            pending: None,
            segment_start: None,
            next_msn,
            boundaries: VecDeque::new(),
            recent_durations: VecDeque::with_capacity(DURATION_WINDOW),
            fallback_duration,
            closed: VecDeque::new(),
        }
    }

    /// Takes effect from the next sample. A track that leads from now on forgets the
    /// boundaries it was following.
    pub(crate) fn set_policy(&mut self, policy: SegmentPolicy) {
        if matches!(policy, SegmentPolicy::SyncSamples(_)) {
            self.boundaries.clear();
        }
        self.policy = policy;
    }

    /// New timing after a timescale or frame length change; only between a flush or cut
    /// and the next sample, when no sample is held.
    pub(crate) fn retime(&mut self, part_target: i64, fallback_duration: u32) {
        debug_assert!(self.pending.is_none() && self.part.is_empty());
        self.part_target = part_target;
        self.fallback_duration = fallback_duration;
    }

    /// The MSN the next segment this track starts on its own gets.
    pub(crate) fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// Renumbers from `msn` on: a session start aligns every rendition on the highest
    /// next MSN; a track joining mid-session takes the MSN of the segment in progress.
    pub(crate) fn set_next_msn(&mut self, msn: u64) {
        self.next_msn = msn;
    }

    /// MSN of the segment in progress, `None` while no segment is open.
    pub(crate) fn open_segment_msn(&self) -> Option<u64> {
        self.segment_start.map(|_| self.next_msn.saturating_sub(1))
    }

    /// Where the samples pushed so far end, taking the pending sample's duration as a
    /// flush would.
    pub(crate) fn end(&self) -> Option<i64> {
        let (pending, _) = self.pending.as_ref()?;
        Some(
            pending
                .decode_time
                .saturating_add(i64::from(self.estimated_duration())),
        )
    }

    /// The duration a sample is taken to last before the next one arrives: the shortest
    /// of the latest measured ones (see rule 2 in the module doc), so a flush that ends a
    /// stream on a 34 ms step of a 30 fps cycle does not push the last frame into a part
    /// of its own and leave the part before it under the 85% floor (§4.4.4.9).
    fn estimated_duration(&self) -> u32 {
        self.recent_durations
            .iter()
            .min()
            .copied()
            .unwrap_or(self.fallback_duration)
    }

    /// The leader has begun segment `msn` or a later one, presented at or before `reach`
    /// (90 kHz), and this track has not matched it yet.
    pub(crate) fn leader_began(&self, msn: u64, reach: i64) -> bool {
        self.boundaries
            .iter()
            .any(|b| b.msn >= msn && b.presentation_90k <= reach)
    }

    /// The latest video segment start this track has not matched yet (90 kHz).
    pub(crate) fn last_boundary(&self) -> Option<i64> {
        self.boundaries.back().map(|b| b.presentation_90k)
    }

    /// Adds the next sample; its decode time must be greater than the previous one's (the
    /// packager drops any that is not). Returns the segment the sample starts, if it
    /// starts one: a boundary for audio to follow.
    pub(crate) fn push(&mut self, sample: CutterSample) -> Option<Boundary> {
        let starts = self.segment_start_msn(&sample);
        let boundary = starts.map(|msn| Boundary {
            presentation_90k: sample.presentation_90k,
            msn,
        });
        if let Some((previous, previous_starts)) = self.pending.take() {
            let duration = sample.decode_time.saturating_sub(previous.decode_time);
            let duration = u32::try_from(duration).unwrap_or(u32::MAX);
            if self.recent_durations.len() == DURATION_WINDOW {
                self.recent_durations.pop_front();
            }
            self.recent_durations.push_back(duration);
            self.add_to_part(previous, previous_starts, duration);
            let next = self.estimated_duration();
            if starts.is_some() {
                self.close_part(true);
            } else if self.part_duration + i64::from(next) > self.part_target {
                // Rule 2: the next sample (estimated from the latest ones) would not fit.
                self.close_part(false);
            }
        }
        if let Some(msn) = starts {
            self.segment_start = Some(sample.decode_time);
            self.next_msn = msn + 1;
        }
        self.pending = Some((sample, starts));
        boundary
    }

    /// `FollowBoundaries`: video began segment `boundary.msn` at
    /// `boundary.presentation_90k`. This track begins its matching segment at its first
    /// frame presented at or after it. Frames of the open part move to the new segment;
    /// frames in closed parts cannot, so if the first frame at or after the boundary is
    /// already closed, the segment begins one frame into the open part instead (the
    /// closest point still possible; the MSNs stay aligned). A boundary of a segment this
    /// track has already begun (after a cut for new parameters) is ignored.
    pub(crate) fn follow_boundary(&mut self, boundary: Boundary) {
        if boundary.msn < self.next_msn {
            return;
        }
        if self.segment_start.is_none() {
            // The next sample starts a segment numbered from the latest boundary alone
            // (see `segment_start_msn`); older ones need not be kept.
            self.boundaries.clear();
        }
        self.boundaries.push_back(boundary);
        self.apply_boundary();
    }

    fn apply_boundary(&mut self) {
        let (Some(&front), Some(_)) = (self.boundaries.front(), self.segment_start) else {
            return;
        };
        let reaches: Vec<Option<i64>> = self
            .part
            .iter()
            .map(|s| &s.sample)
            .chain(self.pending.iter().map(|(s, _)| s))
            .map(|s| self.reach(s))
            .collect();
        // At least one not-yet-closed sample must stay before the cut to end the segment.
        let Some(cut) = (1..reaches.len())
            .find(|&i| reaches[i].is_some_and(|reach| reach >= front.presentation_90k))
        else {
            return; // the next frame at or after the boundary will start the segment
        };
        let boundary = match self.policy {
            // A video follower's sync sample starts the latest segment the leader began
            // at or before it: the ones in between have no sync sample here.
            SegmentPolicy::FollowSyncSamples { .. } => {
                let reach = reaches[cut].unwrap_or(front.presentation_90k);
                let passed = self
                    .boundaries
                    .iter()
                    .take_while(|b| b.presentation_90k <= reach)
                    .count();
                self.boundaries.drain(..passed).next_back().unwrap_or(front)
            }
            _ => {
                self.boundaries.pop_front();
                front
            }
        };
        self.next_msn = boundary.msn + 1;
        if cut < self.part.len() {
            let rest = self.part.split_off(cut);
            self.part_duration = self.part.iter().map(|s| i64::from(s.duration)).sum();
            self.close_part(true);
            self.segment_start = rest.first().map(|s| s.sample.decode_time);
            self.part_duration = rest.iter().map(|s| i64::from(s.duration)).sum();
            self.part = rest;
            self.open_segment(boundary.msn);
        } else {
            self.close_part(true);
            if let Some((pending, starts)) = self.pending.as_mut() {
                *starts = Some(boundary.msn);
                self.segment_start = Some(pending.decode_time);
            }
        }
    }

    /// Up to which presentation time (90 kHz) the leader's segment starts are passed once
    /// `sample` is in: `None` if the sample cannot start a segment of a video follower.
    fn reach(&self, sample: &CutterSample) -> Option<i64> {
        match self.policy {
            SegmentPolicy::FollowSyncSamples { tolerance, .. } => sample
                .sync
                .then(|| sample.presentation_90k.saturating_add(tolerance)),
            _ => Some(sample.presentation_90k),
        }
    }

    /// The MSN of the segment `sample` starts, if it starts one.
    fn segment_start_msn(&mut self, sample: &CutterSample) -> Option<u64> {
        let reach = self.reach(sample);
        let at = reach.unwrap_or(sample.presentation_90k);
        // Video segments that began at or before this sample: it starts the latest one.
        // Passing several at once (audio that stopped while video went on, a video
        // follower without a sync sample at a boundary) skips MSNs, as there is nothing
        // to put in the segments in between.
        let passed = reach.and_then(|reach| {
            self.boundaries
                .iter()
                .take_while(|b| b.presentation_90k <= reach)
                .last()
                .map(|b| b.msn)
        });
        let msn = if self.segment_start.is_none() {
            // The first sample after a session start, flush or cut: it starts a segment,
            // numbered as the video segment it falls in when video is ahead, else as the
            // next one of its own.
            let within = self
                .boundaries
                .iter()
                .find(|b| b.presentation_90k > at)
                .map(|b| b.msn.saturating_sub(1));
            [Some(self.next_msn), passed, within]
                .into_iter()
                .flatten()
                .max()
        } else if passed.is_some() {
            passed.map(|msn| msn.max(self.next_msn))
        } else {
            let by_target = |target: SegmentTarget| {
                self.segment_start.and_then(|start| {
                    (sample.sync
                        && sample.decode_time.saturating_sub(start)
                            >= target.target - target.early_tolerance)
                        .then_some(self.next_msn)
                })
            };
            match self.policy {
                SegmentPolicy::SyncSamples(target) => by_target(target),
                SegmentPolicy::FollowSyncSamples { target, .. } if sample.ahead_of_leader => {
                    by_target(target)
                }
                SegmentPolicy::FollowBoundaries | SegmentPolicy::FollowSyncSamples { .. } => None,
            }
        };
        if let Some(msn) = msn {
            self.boundaries.retain(|b| b.msn > msn);
        }
        msn
    }

    /// Rule 1: a sample that would overshoot the open part starts the next one.
    fn add_to_part(&mut self, sample: CutterSample, starts: Option<u64>, duration: u32) {
        if !self.part.is_empty()
            && (starts.is_some() || self.part_duration + i64::from(duration) > self.part_target)
        {
            self.close_part(starts.is_some());
        }
        if let Some(msn) = starts {
            self.open_segment(msn);
        }
        self.part.push(TimedSample { sample, duration });
        self.part_duration += i64::from(duration);
    }

    /// The open part (empty or not) is the first of segment `msn`.
    fn open_segment(&mut self, msn: u64) {
        self.part_starts_segment = true;
        self.part_msn = msn;
        self.part_index = 0;
    }

    fn close_part(&mut self, ends_segment: bool) {
        let samples = std::mem::take(&mut self.part);
        let duration = std::mem::take(&mut self.part_duration);
        let Some(first) = samples.first() else {
            return;
        };
        self.closed.push_back(CutPart {
            msn: self.part_msn,
            index: self.part_index,
            base_decode_time: first.sample.decode_time,
            independent: first.sample.sync,
            duration,
            starts_segment: self.part_starts_segment,
            ends_segment,
            samples,
        });
        self.part_starts_segment = false;
        self.part_index += 1;
    }

    /// Ends the session: the pending sample gets the last measured duration (the frame
    /// interval so far; for audio the exact frame length), the open part and the segment
    /// close, and the next sample starts a new segment.
    ///
    /// If video began a segment this track has not reached (the session ends between a
    /// keyframe and the first audio frame presented after it), the last sample starts
    /// that segment, so both renditions end the session on the same MSN. The packager
    /// fills such audio up to the boundary with silence first where it can; this is the
    /// fallback, possible when at least two samples are still open.
    ///
    /// A video follower cannot start a segment without a sync sample: it ends one MSN
    /// short, and the next session realigns it.
    pub(crate) fn flush(&mut self) {
        if let (Some(boundary), Some((_, starts @ None)), false, SegmentPolicy::FollowBoundaries) = (
            self.boundaries.front().copied(),
            self.pending.as_mut(),
            self.part.is_empty(),
            self.policy,
        ) {
            *starts = Some(boundary.msn);
            self.next_msn = boundary.msn + 1;
        }
        self.boundaries.clear();
        self.cut();
    }

    /// Closes the open part and the segment mid-session (new codec parameters): the next
    /// sample starts a segment. Video segment starts not yet matched stay queued: that
    /// segment takes their MSN.
    pub(crate) fn cut(&mut self) {
        if let Some((sample, starts)) = self.pending.take() {
            let duration = self.estimated_duration();
            self.add_to_part(sample, starts, duration);
        }
        self.close_part(true);
        self.segment_start = None;
        self.recent_durations.clear();
    }

    /// The next closed part, oldest first.
    pub(crate) fn pop_part(&mut self) -> Option<CutPart> {
        self.closed.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 ms and 2 s at 90 kHz.
    const PART_TARGET: i64 = 18_000;
    const VIDEO_POLICY: SegmentPolicy = SegmentPolicy::SyncSamples(SegmentTarget {
        target: 180_000,
        early_tolerance: PART_TARGET / 2,
    });

    fn sample(decode_time: i64, presentation_90k: i64, sync: bool) -> CutterSample {
        CutterSample {
            decode_time,
            presentation_90k,
            composition_offset: i32::try_from(presentation_90k - decode_time).unwrap(),
            sync,
            ahead_of_leader: false,
            data: Bytes::new(),
            arrival_ms: decode_time / 90,
        }
    }

    fn boundary(presentation_90k: i64, msn: u64) -> Boundary {
        Boundary {
            presentation_90k,
            msn,
        }
    }

    fn drain(cutter: &mut PartCutter) -> Vec<CutPart> {
        std::iter::from_fn(|| cutter.pop_part()).collect()
    }

    /// Decode-time steps cycling through `steps`, a keyframe every `gop` frames.
    fn video(frames: usize, steps: &[i64], gop: usize, reorder: bool) -> Vec<CutterSample> {
        let mut dts = 0;
        let mut out = Vec::new();
        for i in 0..frames {
            let step = steps[i % steps.len()];
            // IPBB-like reordering: presentation two frames after decode, B-frames swapped.
            let pts = if reorder {
                dts + 2 * step + if i % 3 == 1 { step } else { 0 }
                    - if i % 3 == 2 { step } else { 0 }
            } else {
                dts
            };
            out.push(sample(dts, pts, i % gop == 0));
            dts += step;
        }
        out
    }

    /// Invariants every cut must keep, whatever the input.
    fn check_parts(parts: &[CutPart], part_target: i64) {
        assert!(parts[0].starts_segment);
        for (i, part) in parts.iter().enumerate() {
            // RFC 8216bis §4.4.4.9: every part ≤ PART-TARGET.
            assert!(
                part.duration <= part_target,
                "part {i} lasts {}",
                part.duration
            );
            assert_eq!(
                part.duration,
                part.samples
                    .iter()
                    .map(|s| i64::from(s.duration))
                    .sum::<i64>()
            );
            // §4.4.4.9 INDEPENDENT=YES exactly when the part starts with a sync sample.
            assert_eq!(part.independent, part.samples[0].sample.sync);
            if let Some(next) = parts.get(i + 1) {
                // Contiguous: no gap, no overlap on the decode timeline.
                assert_eq!(next.base_decode_time, part.base_decode_time + part.duration);
                assert_eq!(part.ends_segment, next.starts_segment, "part {i}");
                // Numbering: part 0 of a later MSN, or the next part of the same segment.
                if next.starts_segment {
                    assert!(next.msn > part.msn && next.index == 0, "part {i}");
                } else {
                    assert_eq!((next.msn, next.index), (part.msn, part.index + 1));
                }
            }
        }
    }

    fn cut(samples: &[CutterSample], policy: SegmentPolicy) -> Vec<CutPart> {
        cut_to(samples, PART_TARGET, policy)
    }

    fn cut_to(samples: &[CutterSample], part_target: i64, policy: SegmentPolicy) -> Vec<CutPart> {
        let mut cutter = PartCutter::new(part_target, policy, 3000, 0);
        let mut parts = Vec::new();
        for s in samples {
            cutter.push(s.clone());
            parts.extend(drain(&mut cutter));
        }
        cutter.flush();
        parts.extend(drain(&mut cutter));
        parts
    }

    fn segment_starts(parts: &[CutPart]) -> Vec<i64> {
        parts
            .iter()
            .filter(|p| p.starts_segment)
            .map(|p| p.base_decode_time)
            .collect()
    }

    #[test]
    fn frame_rates_cut_parts_within_target_and_segments_on_keyframes() {
        // (steps in 90 kHz ticks, frames per 2 s GOP): 29.97, 25, 50, 59.94 fps, and
        // FLV's millisecond timestamps at 29.97 (33/33/34 ms).
        let cases: [(&[i64], usize); 5] = [
            (&[3003], 60),
            (&[3600], 50),
            (&[1800], 100),
            (&[1501, 1502], 120),
            (&[2970, 2970, 3060], 60),
        ];
        for (steps, gop) in cases {
            for reorder in [false, true] {
                let samples = video(gop * 5 + 7, steps, gop, reorder);
                let parts = cut(&samples, VIDEO_POLICY);
                check_parts(&parts, PART_TARGET);
                // Segments begin exactly at the keyframes (every GOP is ≈ 2 s).
                let keyframes: Vec<i64> = samples
                    .iter()
                    .filter(|s| s.sync)
                    .map(|s| s.decode_time)
                    .collect();
                assert_eq!(segment_starts(&parts), keyframes, "steps {steps:?}");
                for part in &parts {
                    // Full parts: closing early would waste latency budget.
                    let step = steps.iter().max().unwrap();
                    assert!(part.ends_segment || part.duration + step > PART_TARGET);
                }
            }
        }
    }

    #[test]
    fn millisecond_jitter_off_the_part_start_keeps_parts_over_the_floor() {
        // 30 fps stamped in ms, 34 ms second in the cycle (a segment that began at
        // another point of it): six frames are exactly 200 ms, but the fifth (34 ms)
        // taken for the sixth would close the part at 167 ms.
        for steps in [[2970, 3060, 2970], [3060, 2970, 2970], [2970, 2970, 3060]] {
            let parts = cut(&video(300, &steps, 60, false), VIDEO_POLICY);
            check_parts(&parts, PART_TARGET);
            for part in parts.iter().filter(|p| !p.ends_segment) {
                // RFC 8216bis §4.4.4.9: at least 85% of PART-TARGET.
                assert!(
                    part.duration * 100 >= PART_TARGET * 85,
                    "{steps:?}: {part:?}"
                );
            }
        }
    }

    #[test]
    fn a_stream_ending_anywhere_in_the_millisecond_cycle_keeps_parts_over_the_floor() {
        // A publisher stopping (the session's flush) after any frame: the last frame's
        // duration is estimated, and must not split the part before it off under 85%.
        for steps in [[2970, 3060, 2970], [3060, 2970, 2970], [2970, 2970, 3060]] {
            for frames in 61..=84 {
                let parts = cut(&video(frames, &steps, 60, false), VIDEO_POLICY);
                check_parts(&parts, PART_TARGET);
                for part in parts.iter().filter(|p| !p.ends_segment) {
                    // RFC 8216bis §4.4.4.9: at least 85% of PART-TARGET.
                    assert!(
                        part.duration * 100 >= PART_TARGET * 85,
                        "{steps:?}, {frames} frames: {part:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn millisecond_rounded_gop_just_under_target_still_cuts() {
        // 60 frames at 33.3 ms rounded down: a 1.998 s GOP (SegmentTarget tolerance).
        let samples = video(240, &[2997], 60, false);
        let parts = cut(&samples, VIDEO_POLICY);
        assert_eq!(segment_starts(&parts), [0, 179_820, 359_640, 539_460]);
    }

    #[test]
    fn part_closes_as_soon_as_next_frame_would_overshoot() {
        let mut cutter = PartCutter::new(PART_TARGET, VIDEO_POLICY, 3000, 0);
        // 25 fps: 5 frames = 18000 fill the part exactly. At the 6th frame's arrival the
        // 5th frame's duration is known and a 6th would not fit: the part closes then.
        for (i, s) in video(6, &[3600], 50, false).into_iter().enumerate() {
            cutter.push(s);
            let parts = drain(&mut cutter);
            if i < 5 {
                assert!(parts.is_empty(), "frame {i}");
            } else {
                assert_eq!(parts.len(), 1);
                assert_eq!(parts[0].duration, 18_000);
                assert_eq!(parts[0].samples.len(), 5);
            }
        }
    }

    #[test]
    fn frame_longer_than_target_gets_a_part_alone() {
        // A 300 ms timestamp gap: unavoidable, that one frame is a part of its own.
        let mut samples = video(10, &[3600], 50, false);
        for s in &mut samples[4..] {
            s.decode_time += 27_000;
            s.presentation_90k += 27_000;
        }
        let parts = cut(&samples, VIDEO_POLICY);
        let long: Vec<_> = parts.iter().filter(|p| p.duration > PART_TARGET).collect();
        assert_eq!(long.len(), 1);
        assert_eq!(long[0].samples.len(), 1);
        assert_eq!(long[0].duration, 3600 + 27_000);
        for pair in parts.windows(2) {
            assert_eq!(
                pair[1].base_decode_time,
                pair[0].base_decode_time + pair[0].duration
            );
        }
    }

    #[test]
    fn late_keyframe_extends_segment() {
        // GOP of 3 s: segments follow the keyframes, not the target.
        let samples = video(300, &[3000], 90, false);
        let parts = cut(&samples, VIDEO_POLICY);
        check_parts(&parts, PART_TARGET);
        assert_eq!(segment_starts(&parts), [0, 270_000, 540_000, 810_000]);
    }

    /// AAC at 48 kHz: 1024 samples a frame; part target 200 ms = 9600 ticks.
    fn audio(frames: usize, start_90k: i64) -> Vec<CutterSample> {
        (0..frames as i64)
            .map(|i| {
                let decode_time = i * 1024 + start_90k * 48_000 / 90_000;
                sample(decode_time, start_90k + i * 1024 * 90_000 / 48_000, true)
            })
            .map(|mut s| {
                s.composition_offset = 0;
                s
            })
            .collect()
    }

    #[test]
    fn audio_follows_video_boundaries() {
        let target = 9600;
        let mut cutter = PartCutter::new(target, SegmentPolicy::FollowBoundaries, 1024, 0);
        let frames = audio(300, 0);
        let mut parts = Vec::new();
        // Boundary at 2 s announced when audio has reached 2.06 s: the open part's frames
        // at ≥ 2 s move into the new segment.
        for s in frames {
            let t = s.presentation_90k;
            cutter.push(s);
            if t == 96 * 1920 {
                cutter.follow_boundary(boundary(180_000, 1));
            }
            // Boundary at 4 s announced before audio gets there.
            if t == 160 * 1920 {
                cutter.follow_boundary(boundary(360_000, 2));
            }
            parts.extend(drain(&mut cutter));
        }
        cutter.flush();
        parts.extend(drain(&mut cutter));
        check_parts(&parts, target);
        let starts: Vec<i64> = parts
            .iter()
            .filter(|p| p.starts_segment)
            .map(|p| p.samples[0].sample.presentation_90k)
            .collect();
        // First frames at or after 2 s (frame 94 at 2.005 s) and 4 s (frame 188).
        assert_eq!(starts, [0, 94 * 1920, 188 * 1920]);
    }

    #[test]
    fn audio_boundary_behind_closed_part_cuts_at_earliest_open_frame() {
        let target = 9600;
        let mut cutter = PartCutter::new(target, SegmentPolicy::FollowBoundaries, 1024, 0);
        let mut parts = Vec::new();
        for s in audio(40, 0) {
            cutter.push(s);
            parts.extend(drain(&mut cutter));
        }
        // The first part (frames 0..9) closed at frame 10; frames 9.. are open/pending.
        let closed_frames: usize = parts.iter().map(|p| p.samples.len()).sum();
        cutter.follow_boundary(boundary(1920, 1)); // frame 1 is ≥ it but already closed
        parts.extend(drain(&mut cutter));
        cutter.flush();
        parts.extend(drain(&mut cutter));
        check_parts(&parts, target);
        let second = parts.iter().filter(|p| p.starts_segment).nth(1).unwrap();
        // One open frame stays behind to end the old segment.
        assert_eq!(
            second.samples[0].sample.presentation_90k,
            (closed_frames as i64 + 1) * 1920
        );
    }

    #[test]
    fn audio_alone_cuts_its_own_segments() {
        let target = 9600;
        let policy = SegmentPolicy::SyncSamples(SegmentTarget {
            target: 96_000,
            early_tolerance: target / 2,
        });
        let frames = audio(400, 0);
        let parts = cut_to(&frames, target, policy);
        check_parts(&parts, target);
        let starts = segment_starts(&parts);
        // The first frame at ≥ 96000 − 4800 ticks: frame 90 (92160).
        assert_eq!(starts[1], 90 * 1024);
        assert!(starts.windows(2).all(|w| w[1] - w[0] == 90 * 1024));
    }

    fn segment_msns(parts: &[CutPart]) -> Vec<(u64, i64)> {
        parts
            .iter()
            .filter(|p| p.starts_segment)
            .map(|p| (p.msn, p.samples[0].sample.presentation_90k))
            .collect()
    }

    #[test]
    fn session_ending_before_a_boundary_starts_its_segment_with_the_last_sample() {
        let target = 9600;
        let mut cutter = PartCutter::new(target, SegmentPolicy::FollowBoundaries, 1024, 7);
        let mut parts = Vec::new();
        for s in audio(40, 0) {
            cutter.push(s);
            parts.extend(drain(&mut cutter));
        }
        // Video began segment 8 at a keyframe presented after audio's last frame (B-frames
        // delay presentation), then the session ended.
        cutter.follow_boundary(boundary(40 * 1920 + 900, 8));
        cutter.flush();
        parts.extend(drain(&mut cutter));
        check_parts(&parts, target);
        // Both renditions end the session on MSN 8.
        assert_eq!(segment_msns(&parts), [(7, 0), (8, 39 * 1920)]);
        assert_eq!(cutter.next_msn(), 9);
    }

    #[test]
    fn frame_past_several_boundaries_takes_the_latest_msn() {
        // Without silence to fill an audio gap (the packager's fallback), the segments
        // video began meanwhile have no audio: the MSNs in between are skipped, and the
        // numbering stays that of the video segment each audio frame falls in.
        let mut cutter = PartCutter::new(9600, SegmentPolicy::FollowBoundaries, 1024, 0);
        let mut parts = Vec::new();
        for s in audio(50, 0) {
            cutter.push(s);
        }
        for (msn, at) in [(1, 180_000), (2, 360_000), (3, 540_000)] {
            cutter.follow_boundary(boundary(at, msn));
        }
        for s in audio(50, 585_000) {
            cutter.push(s);
        }
        cutter.flush();
        parts.extend(drain(&mut cutter));
        assert_eq!(segment_msns(&parts), [(0, 0), (3, 585_000)]);
    }

    #[test]
    fn cut_for_new_parameters_begins_the_next_msn_at_once() {
        for announced_before_cut in [false, true] {
            let mut cutter = PartCutter::new(9600, SegmentPolicy::FollowBoundaries, 1024, 0);
            let mut parts = Vec::new();
            for s in audio(50, 0) {
                cutter.push(s);
            }
            // Video's next segment (1) begins at 2 s: announced before or after audio
            // gets new parameters at 1.1 s.
            if announced_before_cut {
                cutter.follow_boundary(boundary(180_000, 1));
            }
            cutter.cut();
            for s in audio(160, 99_000) {
                if s.presentation_90k >= 180_000 && !announced_before_cut {
                    cutter.follow_boundary(boundary(180_000, 1));
                }
                if s.presentation_90k >= 360_000 {
                    cutter.follow_boundary(boundary(360_000, 2));
                }
                cutter.push(s);
            }
            cutter.flush();
            parts.extend(drain(&mut cutter));
            // Audio's segment 1 starts at the change, before video's; segment 2 follows
            // video's again.
            assert_eq!(
                segment_msns(&parts),
                [(0, 0), (1, 99_000), (2, 99_000 + 136 * 1920)]
            );
        }
    }

    #[test]
    fn video_follower_cuts_at_its_sync_samples_where_the_leader_did() {
        let follower = SegmentPolicy::FollowSyncSamples {
            tolerance: 1500,
            target: SegmentTarget {
                target: 180_000,
                early_tolerance: PART_TARGET / 2,
            },
        };
        let mut cutter = PartCutter::new(PART_TARGET, follower, 3000, 0);
        let mut samples = video(300, &[3000], 60, false);
        // No keyframe at 6 s on this rung.
        samples[180].sync = false;
        let mut parts = Vec::new();
        for s in samples {
            let at = s.presentation_90k;
            // The leader's keyframes present 1 ms after ours (a passthrough rung's
            // rounding), announced before ours arrive; at 3 s it has an extra one.
            let leader = [
                (180_000, 1),
                (267_000, 2),
                (360_000, 3),
                (540_000, 4),
                (720_000, 5),
            ];
            if let Some(&(_, msn)) = leader.iter().find(|&&(t, _)| t == at) {
                let keyframe = if msn == 2 { 270_000 } else { at + 90 };
                cutter.follow_boundary(boundary(keyframe, msn));
            }
            cutter.push(s);
            parts.extend(drain(&mut cutter));
        }
        cutter.flush();
        parts.extend(drain(&mut cutter));
        check_parts(&parts, PART_TARGET);
        // MSN 1 at 2 s, but the leader's 2 (3 s, no keyframe here) and 3 (6 s, none
        // either) are skipped: 4 s starts the leader's segment in progress, 3; 8 s is 5.
        assert_eq!(
            segment_msns(&parts),
            [(0, 0), (1, 180_000), (3, 360_000), (5, 720_000)]
        );
        // Never on its own: no boundary, no cut, however long the segment.
        let mut alone = PartCutter::new(PART_TARGET, follower, 3000, 0);
        for s in video(300, &[3000], 60, false) {
            alone.push(s);
        }
        alone.flush();
        assert_eq!(segment_msns(&drain(&mut alone)), [(0, 0)]);
    }

    #[test]
    fn flush_closes_segment_and_next_sample_starts_one() {
        let mut cutter = PartCutter::new(PART_TARGET, VIDEO_POLICY, 3000, 0);
        for s in video(12, &[3600], 50, false) {
            cutter.push(s);
        }
        cutter.flush();
        let parts = drain(&mut cutter);
        let last = parts.last().unwrap();
        assert!(last.ends_segment);
        // The pending frame took the measured frame interval.
        assert_eq!(last.samples.last().unwrap().duration, 3600);
        assert_eq!(last.base_decode_time + last.duration, 12 * 3600);
        cutter.push(sample(100_000, 100_000, true));
        cutter.push(sample(103_600, 103_600, false));
        cutter.flush();
        let parts = drain(&mut cutter);
        assert!(parts[0].starts_segment && parts[0].ends_segment);
    }
}
