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
mod silence;
mod timeline;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::cmaf::{self, Fragment, Sample};
use crate::frame::{Frame, TIMESCALE, TrackKind};
use crate::push::{PartMeta, RenditionDescriptor, RenditionKind};
use crate::stream::{LadderEvent, PlaybackAccess, RenditionTrack, StreamEvent};
use crate::track::{CodecParams, OpusConfig, TrackParams};
use cutter::{CutPart, CutterSample, PartCutter, SegmentPolicy, SegmentTarget};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    NotStarted,
    Live,
    Ended,
}

/// EXT-X-PROGRAM-DATE-TIME of an epoch (a session, or its part after a timestamp jump):
/// the wall clock at ingest of its first frame, and that frame's decode time (frames
/// reach ingest in decode order, paced by their decode times). A segment's date is the
/// anchor's plus the time from that decode time to the segment's first presentation on
/// the stream timeline, so date differences equal media durations and audio and video
/// agree, whatever the ingest jitter (RFC 8216bis §4.4.4.6).
#[derive(Debug, Clone, Copy)]
struct PdtAnchor {
    wall_ms: i64,
    decode_90k: i64,
}

impl PdtAnchor {
    fn date_ms(self, presentation_90k: i64) -> i64 {
        let since = presentation_90k.saturating_sub(self.decode_90k);
        self.wall_ms.saturating_add(rescale(since, TIMESCALE, 1000))
    }
}

/// A video follower's frame waiting for the leader ([`MAX_FOLLOWER_HOLD_90K`]), placed
/// on the stream timeline.
#[derive(Debug)]
struct HeldFrame {
    frame: Frame,
    dts_90k: i64,
    now_ms: i64,
}

/// One rendition's packaging state.
#[derive(Debug)]
struct Rendition {
    name: String,
    params: TrackParams,
    bandwidth_hint_bps: Option<u64>,
    /// PART-TARGET of this rendition, ms; fixed for the stream's life (§4.4.3.7).
    part_target_ms: u32,
    /// Written decode times are this much later than the timeline's, and composition
    /// offsets this much smaller, so presentation times are unchanged. Set from the
    /// first sample's composition offset: with B-frames the encoder's reorder delay, so
    /// a segment's tfdt equals its keyframe's presentation time (CMAF's negative
    /// composition offsets with trun version 1, ISO/IEC 23000-19 §7.5.17; no edit list).
    /// Without it a player such as hls.js sees every segment's picture start a reorder
    /// delay (~67 ms at 29.97 fps with 2 B-frames) after its decode start and re-times
    /// segments. Fixed while the parameters stay, so tfdt stays continuous; new
    /// parameters (a new encoder, after a discontinuity) set it again: tfdt may then go
    /// back by the difference, presentation times never do.
    presentation_shift: Option<i64>,
    timescale: u32,
    init_version: u32,
    /// Listed in the latest `Renditions` (`Tracks`).
    in_session: bool,
    /// Left out of a `Renditions` list (a shed rung): its segment was closed and it makes
    /// no parts, not even silence. Listed again, it announces itself again.
    stopped: bool,
    /// Video follower frames waiting for the leader, in decode order.
    held: VecDeque<HeldFrame>,
    segment_target: SegmentTarget,
    cutter: PartCutter,
    /// Audio only.
    audio_clock: Option<AudioClock>,
    /// Audio: a silent access unit for these parameters; `None` if we cannot write one.
    silence: Option<Bytes>,
    /// Nominal frame duration, track timescale: the AAC frame, or the SPS frame interval.
    frame_interval: i64,
    /// Video: frames are skipped until a keyframe starts the session.
    awaiting_keyframe: bool,
    /// A video follower back after stopping: frames are skipped until a sync sample where
    /// the leader began this MSN or a later one.
    awaiting_msn: Option<u64>,
    /// Track timescale, on the stream timeline (after the reconnect shift).
    last_decode_time: Option<i64>,
    end_decode_time: Option<i64>,
    /// mfhd sequence_number of the next part (ISO/IEC 14496-12 §8.8.5).
    sequence_number: u32,
    /// MSNs from which on the next segment this rendition starts follows a
    /// discontinuity. Every rendition marks the same MSNs, so their discontinuity sequence
    /// numbers stay equal (§4.4.3.3: clients locate matching segments by them).
    discontinuities: Vec<u64>,
}

impl Rendition {
    fn kind(&self) -> TrackKind {
        self.params.kind
    }

    /// Where this rendition cuts its segments, given its role in the ladder.
    fn policy(&self, role: Role) -> SegmentPolicy {
        match (self.kind(), role) {
            (TrackKind::Audio, Role::Follower) => SegmentPolicy::FollowBoundaries,
            // Half a frame, as `StreamPackager::follower_tolerance`.
            (TrackKind::Video, Role::Follower) => SegmentPolicy::FollowSyncSamples {
                tolerance: rescale(self.frame_interval, self.timescale, TIMESCALE) / 2,
                target: self.segment_target,
            },
            (_, Role::Leader) => SegmentPolicy::SyncSamples(self.segment_target),
        }
    }

    /// Audio that is not listed but goes on in silence beside video.
    fn carries_silence(&self) -> bool {
        self.kind() == TrackKind::Audio && !self.stopped && self.silence.is_some()
    }

    /// Readies the track for a new session or epoch, or for new parameters within one,
    /// after a flush. Within an epoch the timestamps run on, so the audio sample count
    /// does too.
    fn restart(&mut self, role: Role, new_epoch: bool) {
        self.cutter.set_policy(self.policy(role));
        self.awaiting_keyframe = self.kind() == TrackKind::Video;
        if let Some(clock) = self.audio_clock.as_mut().filter(|_| new_epoch) {
            clock.reset();
        }
    }

    /// New codec parameters (after a flush or cut): a new init version, and new timing if
    /// the timescale or frame length changed. Times kept across the change are rescaled.
    fn change_params(&mut self, params: TrackParams, config: &PackagerConfig) {
        let timing = Timing::of(&params, config, self.part_target_ms);
        // A new encoder has its own reorder delay (the `source` passthrough with B-frames
        // re-encoded without): the next segment, after a discontinuity, sets the shift
        // again, so its tfdt is its keyframe's presentation time as on the other rungs.
        self.presentation_shift = None;
        let old = self.timescale;
        self.last_decode_time = self
            .last_decode_time
            .map(|t| rescale_floor(t, old, timing.timescale));
        self.end_decode_time = self
            .end_decode_time
            .map(|t| rescale_ceil(t, old, timing.timescale));
        match (self.audio_clock.as_mut(), timing.audio_frame) {
            (Some(clock), Some(frame)) if timing.timescale == old => {
                clock.set_frame_duration(frame)
            }
            (_, frame) => self.audio_clock = frame.map(AudioClock::new),
        }
        self.cutter
            .retime(timing.part_target, timing.fallback_duration);
        self.timescale = timing.timescale;
        self.segment_target = timing.segment_target;
        self.silence = timing.silence;
        self.frame_interval = i64::from(timing.fallback_duration);
        self.params = params;
        self.init_version += 1;
    }

    fn mark_discontinuity(&mut self, msn: u64) {
        if !self.discontinuities.contains(&msn) {
            self.discontinuities.push(msn);
        }
    }

    fn descriptor(&self, config: &PackagerConfig) -> RenditionDescriptor {
        let (kind, width, height, frame_rate, channels) = match &self.params.codec {
            CodecParams::H264(c) => (
                RenditionKind::Video,
                Some(c.width),
                Some(c.height),
                c.frame_rate,
                None,
            ),
            CodecParams::Aac(c) => (RenditionKind::Audio, None, None, None, Some(c.channels)),
            CodecParams::Opus(c) => (RenditionKind::Audio, None, None, None, Some(c.channels)),
        };
        RenditionDescriptor {
            name: self.name.clone(),
            kind,
            codecs: crate::codec::codec_string(&self.params.codec),
            width,
            height,
            frame_rate,
            channels,
            part_target_ms: self.part_target_ms,
            segment_target_ms: config.segment_target / 90,
            access: config.access,
            bandwidth_hint_bps: self.bandwidth_hint_bps,
        }
    }
}

/// A rendition's part in cutting segments: the leading video rendition (or the audio of
/// a stream without video) cuts on its own; the others follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Follower,
}

/// Rendition names are path segments of playback URLs: 1–32 of `[a-z0-9_-]`.
fn validate_name(name: &str) -> Result<(), PackagerError> {
    let valid = (1..=MAX_RENDITION_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(PackagerError::InvalidRendition {
            name: name.to_owned(),
            reason: "a rendition name is 1-32 characters of a-z, 0-9, _ and -",
        })
    }
}

/// Fraction added to PART-TARGET for video whose SPS gives no frame rate
/// ([`part_target_ms`]).
const UNKNOWN_RATE_SLACK: f64 = 0.025;

/// The PART-TARGET a rendition advertises, ms.
///
/// RFC 8216bis §4.4.4.9: a part that is neither INDEPENDENT nor the last of its segment
/// must last at least 85% of PART-TARGET, and every part at most PART-TARGET. Parts hold
/// whole frames, so at 29.97 fps a 200 ms target admits no valid cut (5 frames = 83%,
/// 6 frames = 200.2 ms). Video therefore rounds the configured target to a whole number
/// of frames at the SPS frame rate, up to the next millisecond (timestamps in ms or
/// 90 kHz spans of n frames never exceed that): 200 ms stays 200 at 25/30/50/60 fps
/// and becomes 201 at 29.97/59.94, 209 at 23.976/24. Audio frames (~21 ms) fit any
/// target ≥ 100 ms within the 85% floor, so audio keeps the configured value.
///
/// Without a frame rate in the SPS (WebRTC cameras send none) frame times come from a
/// capture clock with a millisecond or two of jitter: at 20 fps four frames may span
/// 201 ms, and an exact 200 ms target would close the part after three (150 ms, under
/// the floor). Such video advertises the configured value plus [`UNKNOWN_RATE_SLACK`],
/// which absorbs that jitter at the usual camera rates whose frames divide the target
/// (10, 15, 20, 25, 30, 60 fps at 200 ms).
fn part_target_ms(params: &TrackParams, config: &PackagerConfig) -> u32 {
    let configured = config.part_target / 90;
    let CodecParams::H264(avc) = &params.codec else {
        return configured;
    };
    let Some(fps) = avc
        .frame_rate
        .filter(|f| f.is_finite() && (1.0..=240.0).contains(f))
    else {
        return (f64::from(configured) * (1.0 + UNKNOWN_RATE_SLACK)).ceil() as u32;
    };
    let frame_ms = 1000.0 / fps;
    let frames = (f64::from(configured) / frame_ms).round().max(1.0);
    // The epsilon keeps 6 × 33.333… = 200 from rounding up to 201.
    (frames * frame_ms - 1e-6).ceil() as u32
}

/// What depends on a track's parameters and timescale.
#[derive(Debug)]
struct Timing {
    timescale: u32,
    segment_target: SegmentTarget,
    /// Track timescale.
    part_target: i64,
    /// Duration of a last sample whose successor never came, until one is measured.
    fallback_duration: u32,
    /// Audio: ticks per AAC frame.
    audio_frame: Option<i64>,
    silence: Option<Bytes>,
}

impl Timing {
    fn of(params: &TrackParams, config: &PackagerConfig, part_target_ms: u32) -> Timing {
        let timescale = cmaf::track_timescale(params);
        let (fallback_duration, audio_frame, silence) = match &params.codec {
            CodecParams::H264(c) => {
                let interval = c
                    .frame_rate
                    .filter(|f| f.is_finite() && *f >= 1.0)
                    .map_or(DEFAULT_FRAME_INTERVAL_90K, |f| {
                        (f64::from(TIMESCALE) / f).round() as i64
                    });
                (rescale(interval, TIMESCALE, timescale), None, None)
            }
            CodecParams::Aac(c) => {
                let samples = match c.object_type {
                    5 | 29 => HE_AAC_FRAME_SAMPLES,
                    _ => AAC_FRAME_SAMPLES,
                };
                let frame = rescale(samples, c.sample_rate, timescale);
                (frame, Some(frame), silence::silent_access_unit(c))
            }
            // Never packaged (`handle_renditions` refuses it); its usual 20 ms frame.
            CodecParams::Opus(_) => {
                let frame = rescale(OPUS_FRAME_SAMPLES, OpusConfig::SAMPLE_RATE, timescale);
                (frame, Some(frame), None)
            }
        };
        let part_target = rescale_floor(i64::from(part_target_ms), 1000, timescale);
        let segment_target = SegmentTarget {
            target: rescale(i64::from(config.segment_target), TIMESCALE, timescale),
            early_tolerance: part_target / 2,
        };
        Timing {
            timescale,
            segment_target,
            part_target,
            fallback_duration: u32::try_from(fallback_duration.max(1)).unwrap_or(u32::MAX),
            audio_frame,
            silence,
        }
    }
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
    session: Session,
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
            session: Session::NotStarted,
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

    fn role(&self, index: usize) -> Role {
        match (self.renditions[index].kind(), self.leader) {
            (TrackKind::Video, Some(leader)) if leader != index => Role::Follower,
            (TrackKind::Audio, Some(_)) => Role::Follower,
            _ => Role::Leader,
        }
    }

    /// The first video rendition of the ladder leads; every cutter gets its role's policy.
    fn update_roles(&mut self) {
        let leader = self
            .ladder
            .iter()
            .copied()
            .find(|&i| self.renditions[i].kind() == TrackKind::Video);
        self.set_leader(leader);
    }

    /// Makes `leader` the leading rendition and gives every cutter its role's policy.
    fn set_leader(&mut self, leader: Option<usize>) {
        if leader != self.leader {
            self.leader = leader;
            self.leader_reach_90k = None;
        }
        for index in 0..self.renditions.len() {
            let policy = self.renditions[index].policy(self.role(index));
            self.renditions[index].cutter.set_policy(policy);
        }
    }

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
    fn handle_renditions(
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
        let result = match self.session {
            Session::Live if affected == 0 => {
                // A repeated sequence header, or a new order or bandwidth hint.
                let join = self.join_msn();
                self.apply_renditions(list, inits, join);
                Ok(())
            }
            Session::Live if !unchanged && affected > 1 => {
                let result = self.flush_all(now_ms);
                let join = self.join_msn();
                self.apply_renditions(list, inits, join);
                self.realign(true);
                self.restart_renditions(false);
                result
            }
            Session::Live => self.change_renditions(list, inits),
            Session::NotStarted | Session::Ended => {
                let first = self.session == Session::NotStarted;
                let join = self.join_msn();
                self.apply_renditions(list, inits, join);
                let floor = self.timeline_end_90k().filter(|_| !first);
                self.timeline.start_session(floor);
                self.anchor = None;
                self.video_start_90k = None;
                self.realign(!first || self.config.continues);
                self.restart_renditions(true);
                self.session = Session::Live;
                Ok(())
            }
        };
        released.and(result)
    }

    /// Some renditions appeared, changed or went away mid-session; the others go on
    /// untouched (no flush, no wait for a keyframe).
    fn change_renditions(
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
    fn apply_renditions(
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
    fn join_msn(&self) -> u64 {
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
    fn realign(&mut self, discontinuity: bool) {
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

    fn restart_renditions(&mut self, new_epoch: bool) {
        for index in 0..self.renditions.len() {
            let role = self.role(index);
            self.renditions[index].restart(role, new_epoch);
        }
    }

    fn new_rendition(&self, track: &RenditionTrack, next_msn: u64) -> Rendition {
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

    /// A frame of the rendition at `position` of the latest `Renditions`.
    fn handle_frame(
        &mut self,
        position: usize,
        frame: Frame,
        now_ms: i64,
    ) -> Result<(), PackagerError> {
        let track = frame.track;
        if self.session != Session::Live {
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

    /// A video follower's frame waits while frames before it wait (decode order), and a
    /// sync sample waits until the leader has passed its presentation time.
    fn holds(&self, index: usize, frame: &Frame, dts_90k: i64) -> bool {
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
    fn leader_passed(&self, index: usize, presentation_90k: i64) -> bool {
        let tolerance = self.follower_tolerance(index);
        self.leader_reach_90k
            .is_some_and(|reach| reach >= presentation_90k.saturating_add(tolerance))
    }

    /// Half a frame of the rendition at `index`, 90 kHz: how far before the leader's
    /// keyframe a follower's sync sample may present and still start its segment.
    fn follower_tolerance(&self, index: usize) -> i64 {
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
    fn release_held(&mut self, index: usize, force: bool) {
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

    fn release_all_held(&mut self) -> Result<(), PackagerError> {
        for index in 0..self.renditions.len() {
            self.release_held(index, true);
        }
        self.drain_parts()
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
        if self.session != Session::Live {
            return Ok(());
        }
        let result = self.flush_all(now_ms);
        self.session = Session::Ended;
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
