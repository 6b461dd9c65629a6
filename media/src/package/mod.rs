//! The packager: `LadderEvent`s (or a publisher's `StreamEvent`s) of one live stream in,
//! CMAF init segments and LL-HLS parts out, per rendition. Sans-IO: the caller passes the
//! wall clock in and drains outputs.
//!
//! Each rendition (CMAF: one track per fMP4) has its own [`cutter`]. All renditions of a
//! stream share one timeline, one MSN numbering, one set of discontinuities and one PDT
//! anchor. The first video rendition of the ladder *leads*: it cuts segments at its
//! keyframes; the other video renditions cut at their sync samples where the leader did,
//! and audio at its first frame presented after the leader's cut, so segment N of every
//! rendition covers the same time and the MSNs stay equal across the stream's playlists.
//! Where the publisher sends no audio beside video (a gap, a session without audio), the
//! audio rendition carries silence so it still has every segment.
//! A publisher reconnect (`Ended`, then `Tracks` again) or a jump of its clock continues
//! the numbering and the timeline: the new timestamps are shifted to follow what came
//! before, and the next segments carry EXT-X-DISCONTINUITY (RFC 8216bis §4.4.4.3). The
//! reasons for each choice are in `docs/packaging.md`.

mod cutter;
mod followers;
mod rendition;
mod renditions;
mod silence;
mod timeline;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::cmaf::{self, Fragment, Sample};
use crate::frame::{Frame, TIMESCALE, TrackKind};
use crate::push::{PartMeta, RenditionDescriptor};
use crate::stream::{LadderEvent, PlaybackAccess, RenditionTrack, StreamEvent};
use cutter::{CutPart, CutterSample};
use rendition::{HeldFrame, PdtAnchor, Rendition, Role};
use timeline::{AudioClock, Placement, StreamTimeline, rescale, rescale_ceil, rescale_floor};

/// Rendition name of the publisher's video, passed through untouched.
pub const SOURCE_RENDITION: &str = "source";
/// Rendition name of the publisher's audio (its own rendition group, CMAF one track per
/// file).
pub const AUDIO_RENDITION: &str = "audio";

/// Samples per AAC frame (ISO/IEC 14496-3 §4.5.2.1, frameLengthFlag = 0) at the
/// AudioSpecificConfig's core rate.
const AAC_FRAME_SAMPLES: i64 = 1024;
/// Explicitly signalled HE-AAC (object types 5, 29): `AacConfig::sample_rate` is the SBR
/// output rate, at which a frame is 2048 samples (ISO/IEC 14496-3 §4.6.18).
const HE_AAC_FRAME_SAMPLES: i64 = 2048;
/// Samples of a 20 ms Opus frame at 48 kHz, WebRTC's usual packet (RFC 7587 §4.2).
const OPUS_FRAME_SAMPLES: i64 = 960;
/// Frame interval assumed for a video track whose SPS has no timing info, until one is
/// measured: 30 fps.
const DEFAULT_FRAME_INTERVAL_90K: i64 = 3000;
/// Timestamp jump policy: a publisher timestamp more than this after the stream's latest,
/// or this much before its own track's latest, is a jump of the publisher's clock (an
/// encoder resetting its clock on the same connection, a stall), not jitter or A/V
/// interleaving, which stay well under a second. The segment target is the threshold when
/// it is longer: a shorter gap is packaged as it is (a long sample, or silence for audio)
/// and at worst lengthens one segment. A jump is packaged as a reconnect within the
/// session (docs/packaging.md). The same span is how far audio may fall behind video
/// before the packager takes it for missing and fills it with silence.
const MIN_TIMESTAMP_JUMP_90K: i64 = 90_000;
/// Follower hold policy: a video follower's sync sample waits until the leader's frames
/// have passed its presentation time, so the leader's segment start there is known before
/// the follower's part closes (the transcoder's rungs reach the packager a few frames
/// apart, in any order). A follower more than this ahead of the leader (a stalled leader)
/// goes on without waiting; the leader's boundaries then still apply to the follower's
/// open part, or its next sync sample takes the leader's MSN.
const MAX_FOLLOWER_HOLD_90K: i64 = 90_000;
/// The same hold bounded by frame count: [`MAX_FOLLOWER_HOLD_90K`] of frames at 60 fps,
/// the highest rate a ladder keeps (sports). Timestamps a tick apart would otherwise let a
/// follower hold 90 000 frames for one second of its clock.
const MAX_FOLLOWER_HOLD_FRAMES: usize = 120;
/// Renditions one `Renditions` message may list. A ladder is a handful of rungs plus
/// audio (ARCHITECTURE: source + 720p + 480p + 360p + 240p); every rendition costs a
/// cutter, held frames and a part stream, so a runaway list is refused, not packaged.
pub const MAX_RENDITIONS: usize = 16;
/// Timestamps further from 0 than this (90 kHz: 99 years) are refused: no demuxer makes
/// them (FLV and MPEG-TS wrap far below), and the timeline's arithmetic stays exact.
const MAX_TIMESTAMP_90K: i64 = 1 << 48;
/// Longest rendition name: a path segment of playback URLs.
const MAX_RENDITION_NAME: usize = 32;

/// Durations are in 90 kHz ticks (the `Frame` timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagerConfig {
    /// PART-TARGET; every part is ≤ it. Default 200 ms. Advertised in whole milliseconds
    /// (`RenditionDescriptor::part_target_ms`), so parts are cut to that, rounded down.
    pub part_target: u32,
    /// Segment target; segments are cut at the first keyframe at or after it. Default 2 s.
    pub segment_target: u32,
    /// MSN of the first segment (a transcoder taking over continues the numbering).
    pub first_msn: u64,
    /// Init segment version of each rendition's first init (a transcoder taking over
    /// numbers after the versions the origin has).
    pub first_init_version: u32,
    /// The stream's first session continues one packaged elsewhere (a transcoder taking
    /// over): its first segments carry EXT-X-DISCONTINUITY.
    pub continues: bool,
    /// Who may play the stream, carried in every rendition descriptor.
    pub access: PlaybackAccess,
    /// The event's start-over window (`dvr_window_secs`), carried in every rendition
    /// descriptor; `None`: the origin's default.
    pub dvr_window_secs: Option<u32>,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            part_target: 18_000,
            segment_target: 180_000,
            first_msn: 0,
            first_init_version: 0,
            continues: false,
            access: PlaybackAccess::Public,
            dvr_window_secs: None,
        }
    }
}

/// What the packager hands downstream, in order: a rendition's descriptor before its init,
/// its init before its first part.
#[derive(Debug, Clone, PartialEq)]
pub enum PackagerOutput {
    Rendition(RenditionDescriptor),
    Init {
        rendition: String,
        version: u32,
        data: Bytes,
    },
    Part {
        rendition: String,
        meta: PartMeta,
        data: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackagerError {
    #[error("frame for {track:?} before its codec parameters")]
    NoTrackParams { track: crate::frame::TrackKind },
    /// The frame was dropped: its decode time does not follow the previous frame's (a
    /// publisher bug) or falls before the stream's start.
    #[error("{track:?} frame dropped: dts {dts} (90 kHz, as received) does not advance the track")]
    NonMonotonicDts { track: TrackKind, dts: i64 },
    /// The frame was dropped: a timestamp beyond [`MAX_TIMESTAMP_90K`].
    #[error("{track:?} frame dropped: dts {dts} or pts {pts} (90 kHz) out of range")]
    TimestampOutOfRange {
        track: TrackKind,
        dts: i64,
        pts: i64,
    },
    /// The frame was dropped: `pts - dts` does not fit a `trun` composition offset.
    #[error("{track:?} frame dropped: dts {dts}, composition offset {cts} out of range")]
    CompositionOffsetOutOfRange {
        track: TrackKind,
        dts: i64,
        cts: i64,
    },
    /// A `Renditions` message listed more than [`MAX_RENDITIONS`]; nothing changed.
    #[error("{count} renditions listed: a ladder has at most {max} (MAX_RENDITIONS)")]
    TooManyRenditions { count: usize, max: usize },
    #[error("invalid {track:?} track parameters: {reason}")]
    InvalidTrackParams {
        track: TrackKind,
        reason: &'static str,
    },
    /// A `Renditions` list the packager cannot package; nothing of it was applied.
    #[error("invalid rendition {name:?}: {reason}")]
    InvalidRendition { name: String, reason: &'static str },
    /// A `LadderEvent::Frame` whose index is past the latest `Renditions`, or whose track
    /// kind is not that rendition's.
    #[error(
        "{track:?} frame for rendition index {index}, not a {track:?} rendition of the latest Renditions"
    )]
    UnknownRendition { index: usize, track: TrackKind },
    #[error("cmaf: {0}")]
    Cmaf(#[from] crate::cmaf::CmafError),
}

/// Counters for metrics; the service exports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PackagerStats {
    pub parts_emitted: u64,
    pub segments_completed: u64,
    /// Frames refused with an error (no parameters, timestamps out of order, ...).
    pub frames_rejected: u64,
    /// Video frames skipped while waiting for the first keyframe of a session: nothing
    /// before it can be decoded.
    pub frames_before_keyframe: u64,
    /// Jumps of the publisher's clock within a session, packaged as a discontinuity.
    pub timestamp_jumps: u64,
    /// Times a session's timestamp offset was raised after its first frame, so another
    /// track's first frame, stamped earlier, still lands after where that track ended.
    pub offset_raises: u64,
    /// Silent AAC frames written where the publisher sent no audio beside video.
    pub silent_audio_frames: u64,
    /// Video follower frames held until the leader reached their time
    /// ([`MAX_FOLLOWER_HOLD_90K`]).
    pub frames_held: u64,
}

/// Where the publisher is: before its first `Tracks`, publishing, or gone (a reconnect
/// starts publishing again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publishing {
    NotStarted,
    Live,
    Ended,
}

/// One per live stream; all renditions of the stream.
pub struct StreamPackager {
    config: PackagerConfig,
    /// Every rendition the stream has had, in order of first appearance; indexes into it
    /// key the timeline.
    renditions: Vec<Rendition>,
    /// The latest `Renditions`: indexes into `renditions`, in ladder order.
    ladder: Vec<usize>,
    /// The leading video rendition: the first video rendition of the ladder.
    leader: Option<usize>,
    /// Decode time (90 kHz, stream timeline) of the leader's latest frame: the segments it
    /// starts up to there are known ([`MAX_FOLLOWER_HOLD_90K`]).
    leader_reach_90k: Option<i64>,
    publishing: Publishing,
    timeline: StreamTimeline,
    /// Set by the first frame of each epoch.
    anchor: Option<PdtAnchor>,
    /// Presentation time of the current epoch's first video frame (90 kHz): where silence
    /// for an audio track with no frames of its own in the epoch starts.
    video_start_90k: Option<i64>,
    outputs: VecDeque<PackagerOutput>,
    stats: PackagerStats,
}

impl StreamPackager {
    pub fn new(config: PackagerConfig) -> Self {
        let jump_threshold = MIN_TIMESTAMP_JUMP_90K.max(i64::from(config.segment_target));
        StreamPackager {
            config,
            renditions: Vec::new(),
            ladder: Vec::new(),
            leader: None,
            leader_reach_90k: None,
            publishing: Publishing::NotStarted,
            timeline: StreamTimeline::new(jump_threshold),
            anchor: None,
            video_start_90k: None,
            outputs: VecDeque::new(),
            stats: PackagerStats::default(),
        }
    }

    /// Feeds one event of the publisher's session, packaged as a ladder of its own tracks:
    /// video as [`SOURCE_RENDITION`], audio as [`AUDIO_RENDITION`]. `now_ms` is the wall
    /// clock at ingest of the event (ms since the Unix epoch).
    ///
    /// A frame that returns an error is dropped and the stream goes on; a frame before its
    /// track's `Tracks` (or after `Ended`, before the next session's `Tracks`) returns
    /// [`PackagerError::NoTrackParams`].
    pub fn handle_event(&mut self, event: StreamEvent, now_ms: i64) -> Result<(), PackagerError> {
        let event = match event {
            StreamEvent::Tracks(tracks) => {
                for (i, track) in tracks.iter().enumerate() {
                    if tracks[..i].iter().any(|t| t.kind == track.kind) {
                        return Err(invalid(track.kind, "more than one track of this kind"));
                    }
                }
                let renditions = tracks
                    .into_iter()
                    .map(|params| RenditionTrack {
                        name: match params.kind {
                            TrackKind::Video => SOURCE_RENDITION,
                            TrackKind::Audio => AUDIO_RENDITION,
                        }
                        .to_owned(),
                        params,
                        bandwidth_hint_bps: None,
                    })
                    .collect();
                LadderEvent::Renditions(renditions)
            }
            StreamEvent::Frame(frame) => {
                let track = frame.track;
                let Some(rendition) = self
                    .ladder
                    .iter()
                    .position(|&i| self.renditions[i].kind() == track)
                else {
                    self.stats.frames_rejected += 1;
                    return Err(PackagerError::NoTrackParams { track });
                };
                LadderEvent::Frame { rendition, frame }
            }
            StreamEvent::Ended => LadderEvent::Ended,
        };
        self.handle_ladder(event, now_ms)
    }

    /// Feeds one event of the stream's ladder (see [`LadderEvent`]). `now_ms` is the wall
    /// clock at ingest of what the event came from (ms since the Unix epoch).
    ///
    /// A frame that returns an error is dropped and the stream goes on; a `Renditions`
    /// that returns an error changes nothing.
    pub fn handle_ladder(&mut self, event: LadderEvent, now_ms: i64) -> Result<(), PackagerError> {
        match event {
            LadderEvent::Renditions(renditions) => self.handle_renditions(renditions, now_ms),
            LadderEvent::Frame { rendition, frame } => {
                let result = self.handle_frame(rendition, frame, now_ms);
                if result.is_err() {
                    self.stats.frames_rejected += 1;
                }
                result
            }
            LadderEvent::Ended => self.end_session(now_ms),
        }
    }

    /// The next output, or `None` until more input arrives.
    pub fn poll_output(&mut self) -> Option<PackagerOutput> {
        self.outputs.pop_front()
    }

    pub fn stats(&self) -> PackagerStats {
        PackagerStats {
            offset_raises: self.timeline.offset_raises(),
            ..self.stats
        }
    }

    fn jump_threshold(&self) -> i64 {
        MIN_TIMESTAMP_JUMP_90K.max(i64::from(self.config.segment_target))
    }

    /// A frame of the rendition at `position` of the latest `Renditions`.
    fn handle_frame(
        &mut self,
        position: usize,
        frame: Frame,
        now_ms: i64,
    ) -> Result<(), PackagerError> {
        let track = frame.track;
        if self.publishing != Publishing::Live {
            return Err(PackagerError::NoTrackParams { track });
        }
        let index = self
            .ladder
            .get(position)
            .copied()
            .filter(|&i| self.renditions[i].kind() == track)
            .ok_or(PackagerError::UnknownRendition {
                index: position,
                track,
            })?;
        if frame.dts.unsigned_abs() > MAX_TIMESTAMP_90K.unsigned_abs()
            || frame.pts.unsigned_abs() > MAX_TIMESTAMP_90K.unsigned_abs()
        {
            return Err(PackagerError::TimestampOutOfRange {
                track,
                dts: frame.dts,
                pts: frame.pts,
            });
        }
        let mut flushed = Ok(());
        let dts_90k = match self.timeline.place(index, frame.dts) {
            Placement::At(dts_90k) => dts_90k,
            Placement::Jump => {
                // Packaged as a reconnect within the session: every segment closes (the
                // last sample takes the measured frame interval, not the jump), the
                // timeline continues right after them and the next segments follow a
                // discontinuity.
                self.stats.timestamp_jumps += 1;
                flushed = self.flush_all(now_ms);
                self.realign(true);
                self.restart_renditions(true);
                self.anchor = None;
                self.video_start_90k = None;
                let end = self.timeline_end_90k();
                self.timeline.start_epoch(end, index, frame.dts)
            }
        };
        let packaged = if self.holds(index, &frame, dts_90k) {
            self.stats.frames_held += 1;
            self.renditions[index].held.push_back(HeldFrame {
                frame,
                dts_90k,
                now_ms,
            });
            self.release_held(index, false);
            Ok(())
        } else {
            // Not held: anything but a follower's keyframe, or one the leader has passed.
            self.package(index, frame, dts_90k, now_ms, false)
        };
        if self.leader == Some(index) {
            self.leader_reach_90k = self.leader_reach_90k.max(Some(dts_90k));
            for follower in 0..self.renditions.len() {
                self.release_held(follower, false);
            }
        }
        flushed.and(packaged)
    }

    /// Packages an accepted frame at `dts_90k` on the stream timeline; `ahead_of_leader`
    /// as [`CutterSample::ahead_of_leader`].
    fn package(
        &mut self,
        index: usize,
        frame: Frame,
        dts_90k: i64,
        now_ms: i64,
        ahead_of_leader: bool,
    ) -> Result<(), PackagerError> {
        let track = frame.track;
        let cts = composition_offset(&frame);
        let follower_tolerance = self.follower_tolerance(index);
        // A rendition waiting for the leader's next segment that now leads itself starts
        // its own.
        let follows = self.role(index) == Role::Follower;
        self.anchor.get_or_insert(PdtAnchor {
            wall_ms: now_ms,
            decode_90k: dts_90k,
        });
        let timescale = self.renditions[index].timescale;
        let timestamp = rescale(dts_90k, TIMESCALE, timescale);
        if track == TrackKind::Audio {
            // Audio that resumes after a gap, or starts after video did: silence in
            // between keeps the frames exact and a segment for every one of video's.
            self.fill_silence(index, timestamp, now_ms);
        }
        let rendition = &mut self.renditions[index];
        let mut decode_time = rendition
            .audio_clock
            .as_ref()
            .map_or(timestamp, |clock| clock.decode_time(timestamp));
        // After a flush or cut the last sample's duration was estimated. A frame stamped
        // within it (millisecond rounding, a new frame rate, audio still on the old clock
        // after a jump) starts at its end instead of overlapping it.
        let closed_end = rendition
            .end_decode_time
            .filter(|_| rendition.cutter.end().is_none());
        if let Some(end) = closed_end
            && decode_time < end
            && end - decode_time <= rendition.frame_interval
        {
            decode_time = end;
        }
        if decode_time < 0
            || closed_end.is_some_and(|end| decode_time < end)
            || rendition
                .last_decode_time
                .is_some_and(|last| decode_time <= last)
        {
            return Err(PackagerError::NonMonotonicDts {
                track,
                dts: frame.dts,
            });
        }
        let composition_offset =
            i32::try_from(rescale(cts, TIMESCALE, timescale)).map_err(|_| {
                PackagerError::CompositionOffsetOutOfRange {
                    track,
                    dts: frame.dts,
                    cts,
                }
            })?;
        self.timeline.record(index, dts_90k);
        let sync = track == TrackKind::Audio || frame.keyframe;
        let presentation_90k = rescale(decode_time, timescale, TIMESCALE).saturating_add(cts);
        let behind_leader = follows
            && rendition.awaiting_msn.is_some_and(|msn| {
                !sync
                    || !rendition
                        .cutter
                        .leader_began(msn, presentation_90k.saturating_add(follower_tolerance))
            });
        if (rendition.awaiting_keyframe && !sync) || behind_leader {
            self.stats.frames_before_keyframe += 1;
            return Ok(());
        }
        rendition.awaiting_keyframe = false;
        rendition.awaiting_msn = None;
        if let Some(clock) = rendition.audio_clock.as_mut() {
            clock.advance(decode_time);
        }
        rendition.last_decode_time = Some(decode_time);
        let boundary = rendition.cutter.push(CutterSample {
            decode_time,
            presentation_90k,
            composition_offset,
            sync,
            ahead_of_leader,
            data: frame.data,
            arrival_ms: now_ms,
        });
        if self.leader == Some(index) {
            self.video_start_90k.get_or_insert(presentation_90k);
            for (i, other) in self.renditions.iter_mut().enumerate() {
                // The other renditions listed, and audio going on in silence without it.
                if i != index
                    && (other.in_session || other.carries_silence())
                    && let Some(boundary) = boundary
                {
                    other.cutter.follow_boundary(boundary);
                }
            }
            self.keep_audio_up_with_video(dts_90k, now_ms);
        }
        self.drain_parts()
    }

    /// Audio that has fallen behind video by more than the jump threshold, or is not in
    /// the session at all, is missing: silence stands in for it up to the video, so the
    /// audio playlist keeps up and has a segment for every MSN.
    fn keep_audio_up_with_video(&mut self, video_dts_90k: i64, now_ms: i64) {
        let threshold = self.jump_threshold();
        for index in 0..self.renditions.len() {
            let rendition = &self.renditions[index];
            if !rendition.carries_silence() {
                continue;
            }
            let lag = if rendition.in_session { threshold } else { 0 };
            let until = rescale_floor(
                video_dts_90k.saturating_sub(lag),
                TIMESCALE,
                rendition.timescale,
            );
            self.fill_silence(index, until, now_ms);
        }
    }

    /// Pushes silent frames into the audio rendition at `index` from where its audio
    /// ends (or, with no audio in the epoch yet, where video started) up to within half a
    /// frame of `until` (track timescale). Filling keeps audio within the jump threshold
    /// of video, so a span over twice that is no gap of ours (audio stamped apart from
    /// video from its first frame on) and is left alone.
    fn fill_silence(&mut self, index: usize, until: i64, now_ms: i64) {
        let video_start = self.video_start_90k;
        let max_span_90k = 2 * self.jump_threshold();
        let rendition = &mut self.renditions[index];
        let (Some(silence), Some(clock)) = (&rendition.silence, rendition.audio_clock.as_mut())
        else {
            return;
        };
        let frame = clock.frame_duration();
        let start = clock.next().or_else(|| {
            video_start.map(|start| rescale_ceil(start, TIMESCALE, rendition.timescale))
        });
        let Some(mut next) = start else {
            return;
        };
        if let Some(last) = rendition.last_decode_time {
            next = next.max(last + frame);
        }
        if let Some(end) = rendition
            .end_decode_time
            .filter(|_| rendition.cutter.end().is_none())
        {
            next = next.max(end);
        }
        if until - next > rescale(max_span_90k, TIMESCALE, rendition.timescale) {
            return;
        }
        while frame > 0 && next <= until - frame / 2 {
            // Audio announces no boundaries: nothing follows it.
            let _ = rendition.cutter.push(CutterSample {
                decode_time: next,
                presentation_90k: rescale(next, rendition.timescale, TIMESCALE),
                composition_offset: 0,
                sync: true,
                ahead_of_leader: false,
                data: silence.clone(),
                arrival_ms: now_ms,
            });
            clock.advance(next);
            rendition.last_decode_time = Some(next);
            self.stats.silent_audio_frames += 1;
            next += frame;
        }
    }

    /// The end of everything packaged so far, 90 kHz; `None` before the first part.
    fn timeline_end_90k(&self) -> Option<i64> {
        self.renditions
            .iter()
            .filter_map(|r| {
                r.end_decode_time
                    .map(|end| rescale_ceil(end, r.timescale, TIMESCALE))
            })
            .max()
    }

    fn end_session(&mut self, now_ms: i64) -> Result<(), PackagerError> {
        if self.publishing != Publishing::Live {
            return Ok(());
        }
        let result = self.flush_all(now_ms);
        self.publishing = Publishing::Ended;
        result
    }

    /// Closes the open part and the segment of every track. Audio first reaches every
    /// segment video began (in silence, where it has no frames for them), so all
    /// renditions end on the same MSN; audio going on in silence without frames of its
    /// own reaches video's end.
    fn flush_all(&mut self, now_ms: i64) -> Result<(), PackagerError> {
        // The leader's frames of this session or epoch are all in: what it did not cut,
        // no follower cuts.
        self.leader_reach_90k = Some(i64::MAX);
        let released = self.release_all_held();
        self.leader_reach_90k = None;
        let video_end_90k = self
            .leader
            .map(|i| &self.renditions[i])
            .filter(|v| v.in_session)
            .and_then(|v| {
                v.cutter
                    .end()
                    .map(|end| rescale_ceil(end, v.timescale, TIMESCALE))
            });
        for index in 0..self.renditions.len() {
            let rendition = &self.renditions[index];
            let Some(frame) = rendition
                .audio_clock
                .as_ref()
                .filter(|_| !rendition.stopped)
                .map(AudioClock::frame_duration)
            else {
                continue;
            };
            let boundary = rendition.cutter.last_boundary().map(|b| {
                // Up to the first frame at or after the boundary.
                rescale_ceil(b, TIMESCALE, rendition.timescale) + frame + frame / 2
            });
            let video_end =
                video_end_90k.map(|end| rescale_ceil(end, TIMESCALE, rendition.timescale));
            let until = if rendition.in_session {
                boundary.map(|b| b.max(video_end.unwrap_or(b)))
            } else {
                video_end.max(boundary)
            };
            if let Some(until) = until {
                self.fill_silence(index, until, now_ms);
            }
        }
        for rendition in &mut self.renditions {
            rendition.cutter.flush();
        }
        released.and(self.drain_parts())
    }

    /// Turns every closed part into a `Part` output. Returns the first error after trying
    /// every part.
    fn drain_parts(&mut self) -> Result<(), PackagerError> {
        let mut result = Ok(());
        for rendition in &mut self.renditions {
            while let Some(part) = rendition.cutter.pop_part() {
                match emit_part(rendition, part, self.anchor, &mut self.stats) {
                    Ok(output) => self.outputs.push_back(output),
                    Err(e) => {
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                }
            }
        }
        result
    }
}

/// `pts - dts`, saturating: timestamps from the media transport may be anything, and an
/// offset out of `trun`'s range is refused, not a panic.
fn composition_offset(frame: &Frame) -> i64 {
    frame.pts.saturating_sub(frame.dts)
}

fn invalid(track: TrackKind, reason: &'static str) -> PackagerError {
    PackagerError::InvalidTrackParams { track, reason }
}

/// Writes a closed part as one moof + mdat.
fn emit_part(
    rendition: &mut Rendition,
    part: CutPart,
    anchor: Option<PdtAnchor>,
    stats: &mut PackagerStats,
) -> Result<PackagerOutput, PackagerError> {
    let first = part.samples.first().map(|s| &s.sample);
    let (program_date_time_ms, discontinuity) = if part.starts_segment {
        let date = first.map(|s| anchor.map_or(s.arrival_ms, |a| a.date_ms(s.presentation_90k)));
        // Marks this rendition had no segment for collapse into one.
        let before = rendition.discontinuities.len();
        rendition.discontinuities.retain(|&msn| msn > part.msn);
        let discontinuity = rendition.discontinuities.len() < before;
        (date, discontinuity)
    } else {
        (None, false)
    };
    let mut meta = PartMeta {
        msn: part.msn,
        part: part.index,
        duration: part.duration as f64 / f64::from(rendition.timescale),
        independent: part.independent,
        init_version: rendition.init_version,
        program_date_time_ms,
        discontinuity,
        ends_segment: part.ends_segment,
        last_frame_arrival_ms: part.samples.last().map_or(0, |s| s.sample.arrival_ms),
        // Set below, once the part is written.
        sync_sample_bytes: None,
    };
    // The I-frame playlists' byte range: mdat holds the samples in trun order right after
    // the moof and the mdat header, so the first sample ends where the later ones begin.
    let sync_sample = (rendition.kind() == TrackKind::Video && part.independent)
        .then(|| {
            part.samples
                .iter()
                .map(|s| s.sample.data.len())
                .sum::<usize>()
        })
        .zip(first.map(|s| s.data.len()));
    rendition.end_decode_time = Some(part.base_decode_time + part.duration);
    let shift = *rendition
        .presentation_shift
        .get_or_insert_with(|| first.map_or(0, |s| i64::from(s.composition_offset.max(0))));
    let fragment = Fragment {
        sequence_number: rendition.sequence_number,
        // Never negative: the packager drops frames before the timeline's start.
        base_media_decode_time: u64::try_from(part.base_decode_time + shift).unwrap_or(0),
        samples: part
            .samples
            .into_iter()
            .map(|timed| Sample {
                duration: timed.duration,
                // The shift is a past offset, so this stays within i32.
                composition_offset: (i64::from(timed.sample.composition_offset) - shift)
                    .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                    as i32,
                keyframe: timed.sample.sync,
                data: timed.sample.data,
            })
            .collect(),
    };
    rendition.sequence_number = rendition.sequence_number.checked_add(1).unwrap_or(1);
    let mut data = Vec::new();
    cmaf::write_fragment(&mut data, &fragment)?;
    meta.sync_sample_bytes =
        sync_sample.and_then(|(payload, first)| u32::try_from(data.len() - payload + first).ok());
    stats.parts_emitted += 1;
    if meta.ends_segment {
        stats.segments_completed += 1;
    }
    Ok(PackagerOutput::Part {
        rendition: rendition.name.clone(),
        meta,
        data: data.into(),
    })
}

#[cfg(test)]
mod tests;
