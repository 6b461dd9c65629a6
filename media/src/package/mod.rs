//! The packager: `StreamEvent`s of one live stream in, CMAF init segments and LL-HLS parts
//! out, per rendition. Sans-IO: the caller passes the wall clock in and drains outputs.
//!
//! Each track is one rendition (CMAF: one track per fMP4) with its own [`cutter`]. Video
//! cuts segments at keyframes; audio cuts where the video did, so segment N of every
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
use crate::stream::{PlaybackAccess, StreamEvent};
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
    /// The frame was dropped: `pts - dts` does not fit a `trun` composition offset.
    #[error("{track:?} frame dropped: dts {dts}, composition offset {cts} out of range")]
    CompositionOffsetOutOfRange {
        track: TrackKind,
        dts: i64,
        cts: i64,
    },
    #[error("invalid {track:?} track parameters: {reason}")]
    InvalidTrackParams {
        track: TrackKind,
        reason: &'static str,
    },
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

/// One track's packaging state.
#[derive(Debug)]
struct Rendition {
    name: String,
    params: TrackParams,
    /// PART-TARGET of this rendition, ms; fixed for the stream's life (§4.4.3.7).
    part_target_ms: u32,
    /// Written decode times are this much later than the timeline's, and composition
    /// offsets this much smaller, so presentation times are unchanged. Set from the
    /// first sample's composition offset: with B-frames the encoder's reorder delay, so
    /// a segment's tfdt equals its keyframe's presentation time (CMAF's negative
    /// composition offsets with trun version 1, ISO/IEC 23000-19 §7.5.17; no edit list).
    /// Without it a player such as hls.js sees every segment's picture start a reorder
    /// delay (~67 ms at 29.97 fps with 2 B-frames) after its decode start and re-times
    /// segments. Fixed for the stream's life, so tfdt stays continuous.
    presentation_shift: Option<i64>,
    timescale: u32,
    init_version: u32,
    /// Listed in the current session's `Tracks`.
    in_session: bool,
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

    fn policy(&self, stream_has_video: bool) -> SegmentPolicy {
        match self.kind() {
            TrackKind::Audio if stream_has_video => SegmentPolicy::FollowBoundaries,
            _ => SegmentPolicy::SyncSamples(self.segment_target),
        }
    }

    /// Readies the track for a new session or epoch, or for new parameters within one,
    /// after a flush. Within an epoch the timestamps run on, so the audio sample count
    /// does too.
    fn restart(&mut self, stream_has_video: bool, new_epoch: bool) {
        let policy = self.policy(stream_has_video);
        self.cutter.set_policy(policy);
        self.awaiting_keyframe = self.kind() == TrackKind::Video;
        if let Some(clock) = self.audio_clock.as_mut().filter(|_| new_epoch) {
            clock.reset();
        }
    }

    /// New codec parameters (after a flush or cut): a new init version, and new timing if
    /// the timescale or frame length changed. Times kept across the change are rescaled.
    fn change_params(&mut self, params: TrackParams, config: &PackagerConfig) {
        let timing = Timing::of(&params, config, self.part_target_ms);
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
            bandwidth_hint_bps: None,
        }
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
            // Never packaged (`handle_tracks` refuses it); its usual 20 ms frame.
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
    renditions: Vec<Rendition>,
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
            session: Session::NotStarted,
            timeline: StreamTimeline::new(jump_threshold),
            anchor: None,
            video_start_90k: None,
            outputs: VecDeque::new(),
            stats: PackagerStats::default(),
        }
    }

    /// Feeds one event of the current publisher session. `now_ms` is the wall clock at
    /// ingest of the event (ms since the Unix epoch).
    ///
    /// A frame that returns an error is dropped and the stream goes on; a frame before its
    /// track's `Tracks` (or after `Ended`, before the next session's `Tracks`) returns
    /// [`PackagerError::NoTrackParams`].
    pub fn handle_event(&mut self, event: StreamEvent, now_ms: i64) -> Result<(), PackagerError> {
        match event {
            StreamEvent::Tracks(tracks) => self.handle_tracks(tracks, now_ms),
            StreamEvent::Frame(frame) => {
                let result = self.handle_frame(frame, now_ms);
                if result.is_err() {
                    self.stats.frames_rejected += 1;
                }
                result
            }
            StreamEvent::Ended => self.end_session(now_ms),
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

    fn rendition_index(&self, kind: TrackKind) -> Option<usize> {
        self.renditions.iter().position(|r| r.kind() == kind)
    }

    fn video_in_session(&self) -> bool {
        self.renditions
            .iter()
            .any(|r| r.kind() == TrackKind::Video && r.in_session)
    }

    /// Starts a session, or changes the tracks within one.
    ///
    /// Within a session, a change to one track leaves the other alone: a track that
    /// appears (a late audio sequence header) joins at the segment in progress; a track
    /// with new parameters closes its segment and starts the next with a new init
    /// version (EXT-X-MAP changes only at a segment start, §4.4.4.5) after
    /// EXT-X-DISCONTINUITY (§4.4.4.3: SHOULD on a change of encoding parameters), and the
    /// other rendition marks its segment of the same MSN too, keeping the discontinuity
    /// sequence numbers equal. Changes to both tracks at once restart both.
    fn handle_tracks(
        &mut self,
        tracks: Vec<TrackParams>,
        now_ms: i64,
    ) -> Result<(), PackagerError> {
        for (i, track) in tracks.iter().enumerate() {
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
            if tracks[..i].iter().any(|t| t.kind == track.kind) {
                return Err(invalid(track.kind, "more than one track of this kind"));
            }
            if cmaf::track_timescale(track) == 0 {
                return Err(invalid(track.kind, "zero timescale"));
            }
            if matches!(&track.codec, CodecParams::Aac(c) if c.sample_rate == 0) {
                return Err(invalid(track.kind, "zero sample rate"));
            }
        }
        let affected: Vec<TrackKind> = [TrackKind::Video, TrackKind::Audio]
            .into_iter()
            .filter(|&kind| {
                let current = self
                    .rendition_index(kind)
                    .map(|i| &self.renditions[i])
                    .filter(|r| r.in_session)
                    .map(|r| &r.params);
                current != tracks.iter().find(|t| t.kind == kind)
            })
            .collect();
        if self.session == Session::Live && affected.is_empty() {
            return Ok(()); // a repeated sequence header
        }
        // Everything that can fail before any state changes.
        let mut inits = Vec::with_capacity(tracks.len());
        for track in &tracks {
            let same = self
                .rendition_index(track.kind)
                .is_some_and(|i| self.renditions[i].params == *track);
            inits.push(if same {
                None
            } else {
                Some(cmaf::write_init(track)?)
            });
        }
        match (self.session, affected.as_slice()) {
            (Session::Live, &[kind]) => self.change_track(kind, tracks, inits),
            (Session::Live, _) => {
                let result = self.flush_all(now_ms);
                self.apply_tracks(tracks, inits);
                self.realign(true);
                self.restart_renditions(false);
                result
            }
            (Session::NotStarted | Session::Ended, _) => {
                let first = self.session == Session::NotStarted;
                self.apply_tracks(tracks, inits);
                let floor = self.timeline_end_90k().filter(|_| !first);
                self.timeline.start_session(floor);
                self.anchor = None;
                self.video_start_90k = None;
                self.realign(!first || self.config.continues);
                self.restart_renditions(true);
                self.session = Session::Live;
                Ok(())
            }
        }
    }

    /// One track appeared, changed or went away mid-session; the other goes on untouched
    /// (no flush, no wait for a keyframe).
    fn change_track(
        &mut self,
        kind: TrackKind,
        tracks: Vec<TrackParams>,
        inits: Vec<Option<Bytes>>,
    ) -> Result<(), PackagerError> {
        let listed = tracks.iter().find(|t| t.kind == kind).cloned();
        let has_video = tracks.iter().any(|t| t.kind == TrackKind::Video);
        let join_msn = self.join_msn(kind);
        let mut changed = false;
        if let Some(i) = self.rendition_index(kind) {
            let rendition = &mut self.renditions[i];
            match &listed {
                // Audio that stops beside video goes on in silence (see `fill_silence`).
                None if kind == TrackKind::Audio && has_video && rendition.silence.is_some() => {}
                None => rendition.cutter.flush(),
                Some(params) => {
                    if *params != rendition.params {
                        rendition.cutter.cut();
                        changed = true;
                    }
                    // A track back after stopping without silence starts no earlier than
                    // the segment in progress.
                    if rendition.cutter.open_segment_msn().is_none() {
                        let msn = rendition.cutter.next_msn().max(join_msn);
                        rendition.cutter.set_next_msn(msn);
                    }
                }
            }
        }
        let result = self.drain_parts();
        self.apply_tracks(tracks, inits);
        if let (Some(i), Some(_)) = (self.rendition_index(kind), &listed) {
            let rendition = &mut self.renditions[i];
            rendition.awaiting_keyframe = kind == TrackKind::Video;
            if changed {
                let msn = rendition.cutter.next_msn();
                for rendition in &mut self.renditions {
                    rendition.mark_discontinuity(msn);
                }
            }
        }
        for rendition in &mut self.renditions {
            let policy = rendition.policy(has_video);
            rendition.cutter.set_policy(policy);
        }
        result
    }

    /// Makes the listed tracks the session's: new renditions for new kinds, a new init
    /// version where the parameters changed (the caller closed the segment first).
    fn apply_tracks(&mut self, tracks: Vec<TrackParams>, inits: Vec<Option<Bytes>>) {
        for rendition in &mut self.renditions {
            rendition.in_session = false;
        }
        for (track, init) in tracks.into_iter().zip(inits) {
            let index = match self.rendition_index(track.kind) {
                Some(index) => index,
                None => {
                    let rendition = self.new_rendition(track.clone());
                    self.renditions.push(rendition);
                    self.renditions.len() - 1
                }
            };
            let rendition = &mut self.renditions[index];
            rendition.in_session = true;
            if let Some(data) = init {
                if rendition.params != track {
                    rendition.change_params(track, &self.config);
                }
                self.outputs.push_back(PackagerOutput::Rendition(
                    rendition.descriptor(&self.config),
                ));
                self.outputs.push_back(PackagerOutput::Init {
                    rendition: rendition.name.clone(),
                    version: rendition.init_version,
                    data,
                });
            }
        }
    }

    /// The MSN a track joining mid-session starts at: that of the segment the stream's
    /// other renditions have in progress (a playlist may start at any MSN, and the origin
    /// takes a new rendition's first part at any `(msn, 0)`).
    fn join_msn(&self, kind: TrackKind) -> u64 {
        self.renditions
            .iter()
            .filter(|r| r.kind() != kind)
            .map(|r| {
                r.cutter
                    .open_segment_msn()
                    .unwrap_or_else(|| r.cutter.next_msn())
            })
            .max()
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
        let has_video = self.video_in_session();
        for rendition in &mut self.renditions {
            rendition.restart(has_video, new_epoch);
        }
    }

    fn new_rendition(&self, params: TrackParams) -> Rendition {
        let part_target_ms = part_target_ms(&params, &self.config);
        let timing = Timing::of(&params, &self.config, part_target_ms);
        let next_msn = self.join_msn(params.kind);
        let name = match params.kind {
            TrackKind::Video => SOURCE_RENDITION,
            TrackKind::Audio => AUDIO_RENDITION,
        };
        Rendition {
            name: name.to_owned(),
            params,
            part_target_ms,
            timescale: timing.timescale,
            init_version: self.config.first_init_version,
            in_session: false,
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
            last_decode_time: None,
            end_decode_time: None,
            sequence_number: 1,
            presentation_shift: None,
            discontinuities: Vec::new(),
        }
    }

    fn handle_frame(&mut self, frame: Frame, now_ms: i64) -> Result<(), PackagerError> {
        let track = frame.track;
        let index = self
            .rendition_index(track)
            .filter(|&i| self.session == Session::Live && self.renditions[i].in_session)
            .ok_or(PackagerError::NoTrackParams { track })?;
        let mut flushed = Ok(());
        let dts_90k = match self.timeline.place(track, frame.dts) {
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
                self.timeline.start_epoch(end, track, frame.dts)
            }
        };
        let packaged = self.package(index, frame, dts_90k, now_ms);
        flushed.and(packaged)
    }

    /// Packages an accepted frame at `dts_90k` on the stream timeline.
    fn package(
        &mut self,
        index: usize,
        frame: Frame,
        dts_90k: i64,
        now_ms: i64,
    ) -> Result<(), PackagerError> {
        let track = frame.track;
        let cts = frame.cts();
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
        self.timeline.record(track, dts_90k);
        let sync = track == TrackKind::Audio || frame.keyframe;
        if rendition.awaiting_keyframe {
            if !sync {
                self.stats.frames_before_keyframe += 1;
                return Ok(());
            }
            rendition.awaiting_keyframe = false;
        }
        if let Some(clock) = rendition.audio_clock.as_mut() {
            clock.advance(decode_time);
        }
        rendition.last_decode_time = Some(decode_time);
        let presentation_90k = rescale(decode_time, timescale, TIMESCALE).saturating_add(cts);
        let boundary = rendition.cutter.push(CutterSample {
            decode_time,
            presentation_90k,
            composition_offset,
            sync,
            data: frame.data,
            arrival_ms: now_ms,
        });
        if track == TrackKind::Video {
            self.video_start_90k.get_or_insert(presentation_90k);
            for other in &mut self.renditions {
                // Audio in the session, or going on in silence without it.
                if other.kind() == TrackKind::Audio
                    && (other.in_session || other.silence.is_some())
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
            if rendition.kind() != TrackKind::Audio || rendition.silence.is_none() {
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
        let video_end_90k = self
            .rendition_index(TrackKind::Video)
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
        self.drain_parts()
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
    let meta = PartMeta {
        msn: part.msn,
        part: part.index,
        duration: part.duration as f64 / f64::from(rendition.timescale),
        independent: part.independent,
        init_version: rendition.init_version,
        program_date_time_ms,
        discontinuity,
        ends_segment: part.ends_segment,
        last_frame_arrival_ms: part.samples.last().map_or(0, |s| s.sample.arrival_ms),
        // Filled in by the ladder work (issue 4): the I-frame playlists' byte range.
        sync_sample_bytes: None,
    };
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
