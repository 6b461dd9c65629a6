//! The set of renditions changing: the first ladder, a publisher's new parameters, a
//! rung shed or a source that became smaller, and the realignment of the timeline and
//! numbering across them.

use std::collections::VecDeque;

use bytes::Bytes;

use super::cutter::{PartCutter, SegmentPolicy};
use super::rendition::{Rendition, Role, Timing, part_target_ms, validate_name};
use super::timeline::AudioClock;
use super::{MAX_RENDITIONS, PackagerError, PackagerOutput, Publishing, StreamPackager, invalid};
use crate::cmaf;
use crate::frame::TrackKind;
use crate::stream::RenditionTrack;
use crate::track::CodecParams;

impl StreamPackager {
    /// Starts a session, or changes the renditions within one.
    ///
    /// Within a session, a change to some renditions leaves the others alone: a rendition
    /// that appears (a late audio sequence header, a rung back after shedding) joins at
    /// the segment in progress; one left out closes its segment and stops (audio beside
    /// video goes on in silence instead); one with new parameters closes its segment and
    /// starts the next with a new init version (EXT-X-MAP changes only at a segment start,
    /// §4.4.4.5) after EXT-X-DISCONTINUITY (§4.4.4.3: SHOULD on a change of encoding
    /// parameters), and every other rendition marks its segment of the same MSN too,
    /// keeping the discontinuity sequence numbers equal (§4.4.3.3). A change that leaves
    /// no rendition going on as it was (both tracks of a publisher at once) restarts all.
    pub(super) fn handle_renditions(
        &mut self,
        list: Vec<RenditionTrack>,
        now_ms: i64,
    ) -> Result<(), PackagerError> {
        if list.len() > MAX_RENDITIONS {
            return Err(PackagerError::TooManyRenditions {
                count: list.len(),
                max: MAX_RENDITIONS,
            });
        }
        for (i, rendition) in list.iter().enumerate() {
            validate_name(&rendition.name)?;
            let track = &rendition.params;
            let codec_kind = match track.codec {
                CodecParams::H264(_) => TrackKind::Video,
                CodecParams::Aac(_) => TrackKind::Audio,
                // HLS players expect AAC; the transcoder converts Opus before packaging.
                CodecParams::Opus(_) => {
                    return Err(invalid(
                        track.kind,
                        "Opus is not packaged: transcode it to AAC",
                    ));
                }
            };
            if codec_kind != track.kind {
                return Err(invalid(track.kind, "codec does not match the track kind"));
            }
            if list[..i].iter().any(|r| r.name == rendition.name) {
                return Err(PackagerError::InvalidRendition {
                    name: rendition.name.clone(),
                    reason: "listed twice",
                });
            }
            // CMAF and the master playlist: one audio rendition, in its own group.
            if track.kind == TrackKind::Audio
                && list[..i].iter().any(|r| r.params.kind == TrackKind::Audio)
            {
                return Err(invalid(
                    track.kind,
                    "more than one audio rendition: a stream has one",
                ));
            }
            if self
                .renditions
                .iter()
                .any(|r| r.name == rendition.name && r.kind() != track.kind)
            {
                return Err(PackagerError::InvalidRendition {
                    name: rendition.name.clone(),
                    reason: "a rendition keeps its track kind for the stream's life",
                });
            }
            if cmaf::track_timescale(track) == 0 {
                return Err(invalid(track.kind, "zero timescale"));
            }
            if matches!(&track.codec, CodecParams::Aac(c) if c.sample_rate == 0) {
                return Err(invalid(track.kind, "zero sample rate"));
            }
        }
        // Everything that can fail before any state changes.
        let mut inits = Vec::with_capacity(list.len());
        for track in &list {
            let announce = self
                .renditions
                .iter()
                .find(|r| r.name == track.name)
                .is_none_or(|r| r.params != track.params || r.stopped);
            inits.push(if announce {
                Some(cmaf::write_init(&track.params)?)
            } else {
                None
            });
        }
        let mut unchanged = false;
        let mut affected = 0;
        for rendition in self.renditions.iter().filter(|r| r.in_session) {
            match list.iter().find(|t| t.name == rendition.name) {
                Some(track) if track.params == rendition.params => unchanged = true,
                _ => affected += 1,
            }
        }
        affected += list
            .iter()
            .filter(|t| {
                !self
                    .renditions
                    .iter()
                    .any(|r| r.in_session && r.name == t.name)
            })
            .count();
        let leader_name = self.leader.map(|i| self.renditions[i].name.as_str());
        let leader_stays = list
            .iter()
            .find(|t| t.params.kind == TrackKind::Video)
            .map(|t| t.name.as_str())
            == leader_name;
        // Frames held for a leader that changes, or of a rendition that changes or stops,
        // are packaged as they are first; the others keep waiting for the leader.
        let released = if leader_stays {
            for index in 0..self.renditions.len() {
                let rendition = &self.renditions[index];
                let goes_on = list
                    .iter()
                    .any(|t| t.name == rendition.name && t.params == rendition.params);
                if !goes_on {
                    self.release_held(index, true);
                }
            }
            self.drain_parts()
        } else {
            // The lead passes first, so the next leader's held frames are packaged as the
            // leader's (its held keyframe starts its segment) rather than as a follower's
            // of a rung that is going; a rendition new to the packager holds nothing yet.
            let next_leader = list
                .iter()
                .find(|t| t.params.kind == TrackKind::Video)
                .and_then(|t| self.renditions.iter().position(|r| r.name == t.name));
            if next_leader.is_some() {
                self.set_leader(next_leader);
            }
            self.release_all_held()
        };
        let result = match self.publishing {
            Publishing::Live if affected == 0 => {
                // A repeated sequence header, or a new order or bandwidth hint.
                let join = self.join_msn();
                self.apply_renditions(list, inits, join);
                Ok(())
            }
            Publishing::Live if !unchanged && affected > 1 => {
                let result = self.flush_all(now_ms);
                let join = self.join_msn();
                self.apply_renditions(list, inits, join);
                self.realign(true);
                self.restart_renditions(false);
                result
            }
            Publishing::Live => self.change_renditions(list, inits),
            Publishing::NotStarted | Publishing::Ended => {
                let first = self.publishing == Publishing::NotStarted;
                let join = self.join_msn();
                self.apply_renditions(list, inits, join);
                let floor = self.timeline_end_90k().filter(|_| !first);
                self.timeline.start_session(floor);
                self.anchor = None;
                self.video_start_90k = None;
                self.realign(!first || self.config.continues);
                self.restart_renditions(true);
                self.publishing = Publishing::Live;
                Ok(())
            }
        };
        released.and(result)
    }

    /// Some renditions appeared, changed or went away mid-session; the others go on
    /// untouched (no flush, no wait for a keyframe).
    pub(super) fn change_renditions(
        &mut self,
        list: Vec<RenditionTrack>,
        inits: Vec<Option<Bytes>>,
    ) -> Result<(), PackagerError> {
        let has_video = list.iter().any(|t| t.params.kind == TrackKind::Video);
        let audio_listed = list.iter().any(|t| t.params.kind == TrackKind::Audio);
        let join_msn = self.join_msn();
        let mut changed = Vec::new();
        let mut joining = Vec::new();
        let mut rejoining = Vec::new();
        for (index, rendition) in self.renditions.iter_mut().enumerate() {
            match list.iter().find(|t| t.name == rendition.name) {
                None => {
                    // Audio that stops beside video goes on in silence (see
                    // `fill_silence`), unless another audio rendition replaces it.
                    let replaced = rendition.kind() == TrackKind::Audio && audio_listed;
                    let silent_on = rendition.kind() == TrackKind::Audio
                        && has_video
                        && rendition.silence.is_some()
                        && !replaced;
                    if (rendition.in_session || replaced) && !silent_on && !rendition.stopped {
                        rendition.cutter.flush();
                    }
                }
                Some(track) if rendition.in_session && track.params == rendition.params => {}
                Some(track) => {
                    if track.params != rendition.params {
                        rendition.cutter.cut();
                        changed.push(index);
                    }
                    joining.push(index);
                    if !rendition.in_session && rendition.cutter.next_msn() > join_msn {
                        rejoining.push(index);
                    }
                    // A rendition back after stopping starts no earlier than the segment
                    // in progress.
                    if rendition.cutter.open_segment_msn().is_none() {
                        let msn = rendition.cutter.next_msn().max(join_msn);
                        rendition.cutter.set_next_msn(msn);
                    }
                }
            }
        }
        let result = self.drain_parts();
        let first_new = self.renditions.len();
        self.apply_renditions(list, inits, join_msn);
        joining.extend(first_new..self.renditions.len());
        for index in joining {
            let rendition = &mut self.renditions[index];
            rendition.awaiting_keyframe = rendition.kind() == TrackKind::Video;
        }
        // A video follower back within the segment it was shed from has used that MSN
        // already: it waits for the leader's next segment start, so its next segment
        // covers the same time as the leader's of that MSN.
        for index in rejoining {
            if self.role(index) == Role::Follower
                && self.renditions[index].kind() == TrackKind::Video
            {
                let rendition = &mut self.renditions[index];
                rendition.awaiting_msn = Some(rendition.cutter.next_msn());
            }
        }
        for index in changed {
            let msn = self.renditions[index].cutter.next_msn();
            for rendition in &mut self.renditions {
                rendition.mark_discontinuity(msn);
            }
        }
        result
    }

    /// Makes the listed renditions the stream's, in ladder order: new renditions for new
    /// names (starting at `join_msn`), a new init version where the parameters changed
    /// (the caller closed the segment first), and the descriptor and init again for a
    /// rendition back after stopping (the origin forgot it).
    pub(super) fn apply_renditions(
        &mut self,
        list: Vec<RenditionTrack>,
        inits: Vec<Option<Bytes>>,
        join_msn: u64,
    ) {
        let audio = list
            .iter()
            .find(|t| t.params.kind == TrackKind::Audio)
            .map(|t| t.name.clone());
        let was_listed: Vec<bool> = self.renditions.iter().map(|r| r.in_session).collect();
        for rendition in &mut self.renditions {
            rendition.in_session = false;
        }
        self.ladder.clear();
        for (track, init) in list.into_iter().zip(inits) {
            let index = match self.renditions.iter().position(|r| r.name == track.name) {
                Some(index) => index,
                None => {
                    let rendition = self.new_rendition(&track, join_msn);
                    self.renditions.push(rendition);
                    self.renditions.len() - 1
                }
            };
            self.ladder.push(index);
            let rendition = &mut self.renditions[index];
            rendition.in_session = true;
            rendition.stopped = false;
            let hint_changed = rendition.bandwidth_hint_bps != track.bandwidth_hint_bps;
            rendition.bandwidth_hint_bps = track.bandwidth_hint_bps;
            if let Some(data) = init {
                if rendition.params != track.params {
                    rendition.change_params(track.params, &self.config);
                }
                self.outputs.push_back(PackagerOutput::Rendition(
                    rendition.descriptor(&self.config),
                ));
                self.outputs.push_back(PackagerOutput::Init {
                    rendition: rendition.name.clone(),
                    version: rendition.init_version,
                    data,
                });
            } else if hint_changed {
                self.outputs.push_back(PackagerOutput::Rendition(
                    rendition.descriptor(&self.config),
                ));
            }
        }
        for (rendition, was_listed) in self.renditions.iter_mut().zip(was_listed) {
            let shed = was_listed && rendition.kind() == TrackKind::Video;
            let replaced = rendition.kind() == TrackKind::Audio
                && audio.as_ref().is_some_and(|name| *name != rendition.name);
            if !rendition.in_session && (shed || replaced) {
                rendition.stopped = true;
            }
        }
        self.update_roles();
    }

    /// The MSN a rendition joining mid-session starts at: that of the segment the stream's
    /// other renditions have in progress (a playlist may start at any MSN, and the origin
    /// takes a new rendition's first part at any `(msn, 0)`). Stopped renditions, whose
    /// numbering stood still, do not count while others go on.
    pub(super) fn join_msn(&self) -> u64 {
        let at = |r: &Rendition| {
            r.cutter
                .open_segment_msn()
                .unwrap_or_else(|| r.cutter.next_msn())
        };
        let going_on = self
            .renditions
            .iter()
            .filter(|r| r.in_session || r.carries_silence())
            .map(at)
            .max();
        going_on
            .or_else(|| self.renditions.iter().map(at).max())
            .unwrap_or(self.config.first_msn)
    }

    /// Every rendition's next segment gets the same MSN, the highest any would use: after
    /// a session start, a restart or a timestamp jump, all renditions start together.
    pub(super) fn realign(&mut self, discontinuity: bool) {
        let Some(msn) = self.renditions.iter().map(|r| r.cutter.next_msn()).max() else {
            return;
        };
        for rendition in &mut self.renditions {
            rendition.cutter.set_next_msn(msn);
            if discontinuity {
                rendition.mark_discontinuity(msn);
            }
        }
    }

    pub(super) fn restart_renditions(&mut self, new_epoch: bool) {
        for index in 0..self.renditions.len() {
            let role = self.role(index);
            self.renditions[index].restart(role, new_epoch);
        }
    }

    pub(super) fn new_rendition(&self, track: &RenditionTrack, next_msn: u64) -> Rendition {
        let params = track.params.clone();
        let part_target_ms = part_target_ms(&params, &self.config);
        let timing = Timing::of(&params, &self.config, part_target_ms);
        Rendition {
            name: track.name.clone(),
            params,
            bandwidth_hint_bps: track.bandwidth_hint_bps,
            part_target_ms,
            timescale: timing.timescale,
            init_version: self.config.first_init_version,
            in_session: false,
            stopped: false,
            held: VecDeque::new(),
            segment_target: timing.segment_target,
            cutter: PartCutter::new(
                timing.part_target,
                SegmentPolicy::SyncSamples(timing.segment_target),
                timing.fallback_duration,
                next_msn,
            ),
            audio_clock: timing.audio_frame.map(AudioClock::new),
            silence: timing.silence,
            frame_interval: i64::from(timing.fallback_duration),
            awaiting_keyframe: false,
            awaiting_msn: None,
            last_decode_time: None,
            end_decode_time: None,
            sequence_number: 1,
            presentation_shift: None,
            discontinuities: Vec::new(),
        }
    }
}
