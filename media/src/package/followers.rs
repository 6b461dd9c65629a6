//! How the ladder's renditions cut together: the leading video rendition cuts on its
//! own keyframes; followers hold their frames until the leader has cut where they would
//! (at most [`MAX_FOLLOWER_HOLD_90K`] / [`MAX_FOLLOWER_HOLD_FRAMES`]), then cut at their
//! sync sample there.

use super::rendition::Role;
use super::timeline::rescale;
use super::{
    MAX_FOLLOWER_HOLD_90K, MAX_FOLLOWER_HOLD_FRAMES, PackagerError, StreamPackager,
    composition_offset,
};
use crate::frame::{Frame, TIMESCALE, TrackKind};

impl StreamPackager {
    pub(super) fn role(&self, index: usize) -> Role {
        match (self.renditions[index].kind(), self.leader) {
            (TrackKind::Video, Some(leader)) if leader != index => Role::Follower,
            (TrackKind::Audio, Some(_)) => Role::Follower,
            _ => Role::Leader,
        }
    }

    /// The first video rendition of the ladder leads; every cutter gets its role's policy.
    pub(super) fn update_roles(&mut self) {
        let leader = self
            .ladder
            .iter()
            .copied()
            .find(|&i| self.renditions[i].kind() == TrackKind::Video);
        self.set_leader(leader);
    }

    /// Makes `leader` the leading rendition and gives every cutter its role's policy.
    pub(super) fn set_leader(&mut self, leader: Option<usize>) {
        if leader != self.leader {
            self.leader = leader;
            self.leader_reach_90k = None;
        }
        for index in 0..self.renditions.len() {
            let policy = self.renditions[index].policy(self.role(index));
            self.renditions[index].cutter.set_policy(policy);
        }
    }

    /// A video follower's frame waits while frames before it wait (decode order), and a
    /// sync sample waits until the leader has passed its presentation time.
    pub(super) fn holds(&self, index: usize, frame: &Frame, dts_90k: i64) -> bool {
        let rendition = &self.renditions[index];
        if self.role(index) != Role::Follower || rendition.kind() != TrackKind::Video {
            return false;
        }
        !rendition.held.is_empty()
            || (frame.keyframe
                && !self.leader_passed(index, dts_90k.saturating_add(composition_offset(frame))))
    }

    /// The leader's frames have passed `presentation_90k` by more than half a frame of the
    /// follower at `index`: a segment it starts there is known.
    pub(super) fn leader_passed(&self, index: usize, presentation_90k: i64) -> bool {
        let tolerance = self.follower_tolerance(index);
        self.leader_reach_90k
            .is_some_and(|reach| reach >= presentation_90k.saturating_add(tolerance))
    }

    /// Half a frame of the rendition at `index`, 90 kHz: how far before the leader's
    /// keyframe a follower's sync sample may present and still start its segment.
    pub(super) fn follower_tolerance(&self, index: usize) -> i64 {
        let rendition = &self.renditions[index];
        rescale(rendition.frame_interval, rendition.timescale, TIMESCALE) / 2
    }

    /// Packages the frames held at `index` that need not wait any longer (all of them if
    /// `force`). A frame refused now was accepted when it came: it counts as rejected.
    ///
    /// Only a keyframe that waited its longest for a stalled leader is packaged
    /// [`CutterSample::ahead_of_leader`]: the leader's frames go on and will correct a
    /// wrong guess. A forced release (the session ends, the leader or this rendition
    /// changes or stops) guesses nothing: no boundary, no cut.
    pub(super) fn release_held(&mut self, index: usize, force: bool) {
        loop {
            let rendition = &self.renditions[index];
            let (Some(front), Some(newest)) = (rendition.held.front(), rendition.held.back())
            else {
                return;
            };
            let leader_passed = self.leader_passed(
                index,
                front
                    .dts_90k
                    .saturating_add(composition_offset(&front.frame)),
            );
            let timed_out = newest.dts_90k.saturating_sub(front.dts_90k) > MAX_FOLLOWER_HOLD_90K
                || rendition.held.len() > MAX_FOLLOWER_HOLD_FRAMES;
            let ready = force
                || timed_out
                || leader_passed
                || !front.frame.keyframe
                || self.role(index) != Role::Follower;
            if !ready {
                return;
            }
            let ahead_of_leader = !force
                && timed_out
                && !leader_passed
                && front.frame.keyframe
                && self.role(index) == Role::Follower;
            let Some(held) = self.renditions[index].held.pop_front() else {
                return;
            };
            if self
                .package(
                    index,
                    held.frame,
                    held.dts_90k,
                    held.now_ms,
                    ahead_of_leader,
                )
                .is_err()
            {
                self.stats.frames_rejected += 1;
            }
        }
    }

    pub(super) fn release_all_held(&mut self) -> Result<(), PackagerError> {
        for index in 0..self.renditions.len() {
            self.release_held(index, true);
        }
        self.drain_parts()
    }
}
