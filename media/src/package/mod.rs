//! The packager: `StreamEvent`s of one live stream in, CMAF init segments and LL-HLS parts
//! out, per rendition. Sans-IO: the caller passes the wall clock in and drains outputs.
//!
//! Each track is one rendition (CMAF: one track per fMP4) with its own [`cutter`]. Video
//! cuts segments at keyframes; audio cuts where the video did, so segment N of every
//! rendition covers the same time and the MSNs stay equal across the stream's playlists.
//! A publisher reconnect (`Ended`, then `Tracks` again) continues the numbering and the
//! timeline: the new session's timestamps are shifted to follow the previous session's
//! end, and its first segments carry EXT-X-DISCONTINUITY (RFC 8216bis §4.4.4.3).

mod cutter;
mod timeline;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::cmaf::{self, Fragment, Sample};
use crate::frame::{Frame, TIMESCALE, TrackKind};
use crate::push::{PartMeta, RenditionDescriptor, RenditionKind};
use crate::stream::StreamEvent;
use crate::track::{CodecParams, TrackParams};
use cutter::{CutPart, CutterSample, PartCutter, SegmentPolicy, SegmentTarget};
use timeline::{AudioClock, rescale, rescale_ceil, rescale_floor};

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
/// Frame interval assumed for a video track whose SPS has no timing info, until one is
/// measured: 30 fps.
const DEFAULT_FRAME_INTERVAL_90K: i64 = 3000;

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
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            part_target: 18_000,
            segment_target: 180_000,
            first_msn: 0,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    NotStarted,
    Live,
    Ended,
}

/// One track's packaging state.
#[derive(Debug)]
struct Rendition {
    name: String,
    params: TrackParams,
    /// PART-TARGET of this rendition, ms; fixed for the stream's life (§4.4.3.7).
    part_target_ms: u32,
    timescale: u32,
    init_version: u32,
    /// Listed in the current session's `Tracks`.
    in_session: bool,
    segment_target: SegmentTarget,
    cutter: PartCutter,
    /// Audio only.
    audio_clock: Option<AudioClock>,
    /// Video: frames are skipped until a keyframe starts the session.
    awaiting_keyframe: bool,
    /// Track timescale, on the stream timeline (after the reconnect shift).
    last_decode_time: Option<i64>,
    end_decode_time: Option<i64>,
    msn: u64,
    next_msn: u64,
    next_part: u32,
    segments_started: u64,
    /// mfhd sequence_number of the next part (ISO/IEC 14496-12 §8.8.5).
    sequence_number: u32,
    /// The next segment follows a discontinuity.
    discontinuity_next: bool,
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

    /// Readies the track for a new session, or for new parameters within one, after a
    /// flush. Within a session the timestamps run on, so the audio sample count does too.
    fn restart(&mut self, stream_has_video: bool, new_session: bool) {
        let policy = self.policy(stream_has_video);
        self.cutter.set_policy(policy);
        self.awaiting_keyframe = self.kind() == TrackKind::Video;
        if let Some(clock) = self.audio_clock.as_mut().filter(|_| new_session) {
            clock.reset();
        }
    }

    /// New codec parameters (after a flush): a new init version, and new timing if the
    /// timescale or frame length changed. Times kept across the change are rescaled.
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
        self.timescale = timing.timescale;
        self.segment_target = timing.segment_target;
        self.cutter = timing.cutter;
        self.params = params;
        self.init_version += 1;
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
        }
    }
}

/// The PART-TARGET a rendition advertises, ms.
///
/// RFC 8216bis §4.4.4.9: a part that is neither INDEPENDENT nor the last of its segment
/// must last at least 85% of PART-TARGET, and every part at most PART-TARGET. Parts hold
/// whole frames, so at 29.97 fps a 200 ms target admits no valid cut (5 frames = 83%,
/// 6 frames = 200.2 ms). Video therefore rounds the configured target to a whole number
/// of frames at the SPS frame rate, up to the next millisecond (timestamps in ms or
/// 90 kHz spans of n frames never exceed that): 200 ms stays 200 at 25/30/50/60 fps
/// and becomes 201 at 29.97/59.94, 209 at 23.976/24. Audio frames (~21 ms) fit any
/// target ≥ 100 ms within the 85% floor, so audio keeps the configured value. Without a
/// frame rate in the SPS the configured value is used as is.
fn part_target_ms(params: &TrackParams, config: &PackagerConfig) -> u32 {
    let configured = config.part_target / 90;
    let CodecParams::H264(avc) = &params.codec else {
        return configured;
    };
    let Some(fps) = avc
        .frame_rate
        .filter(|f| f.is_finite() && (1.0..=240.0).contains(f))
    else {
        return configured;
    };
    let frame_ms = 1000.0 / fps;
    let frames = (f64::from(configured) / frame_ms).round().max(1.0);
    // The epsilon keeps 6 × 33.333… = 200 from rounding up to 201.
    (frames * frame_ms - 1e-6).ceil() as u32
}

/// What depends on a track's timescale; rebuilt when its parameters change.
#[derive(Debug)]
struct Timing {
    timescale: u32,
    segment_target: SegmentTarget,
    cutter: PartCutter,
    /// Audio: ticks per AAC frame.
    audio_frame: Option<i64>,
}

impl Timing {
    fn of(params: &TrackParams, config: &PackagerConfig, part_target_ms: u32) -> Timing {
        let timescale = cmaf::track_timescale(params);
        let (fallback_duration, audio_frame) = match &params.codec {
            CodecParams::H264(c) => {
                let interval = c
                    .frame_rate
                    .filter(|f| f.is_finite() && *f >= 1.0)
                    .map_or(DEFAULT_FRAME_INTERVAL_90K, |f| {
                        (f64::from(TIMESCALE) / f).round() as i64
                    });
                (rescale(interval, TIMESCALE, timescale), None)
            }
            CodecParams::Aac(c) => {
                let samples = match c.object_type {
                    5 | 29 => HE_AAC_FRAME_SAMPLES,
                    _ => AAC_FRAME_SAMPLES,
                };
                let frame = rescale(samples, c.sample_rate, timescale);
                (frame, Some(frame))
            }
        };
        let part_target = rescale_floor(i64::from(part_target_ms), 1000, timescale);
        let segment_target = SegmentTarget {
            target: rescale(i64::from(config.segment_target), TIMESCALE, timescale),
            early_tolerance: part_target / 2,
        };
        let fallback_duration = u32::try_from(fallback_duration.max(1)).unwrap_or(u32::MAX);
        Timing {
            timescale,
            segment_target,
            cutter: PartCutter::new(
                part_target,
                SegmentPolicy::SyncSamples(segment_target),
                fallback_duration,
            ),
            audio_frame,
        }
    }
}

/// One per live stream; all renditions of the stream.
pub struct StreamPackager {
    config: PackagerConfig,
    renditions: Vec<Rendition>,
    session: Session,
    /// Added to the current session's timestamps (90 kHz); set by its first frame.
    offset: Option<i64>,
    outputs: VecDeque<PackagerOutput>,
    stats: PackagerStats,
}

impl StreamPackager {
    pub fn new(config: PackagerConfig) -> Self {
        StreamPackager {
            config,
            renditions: Vec::new(),
            session: Session::NotStarted,
            offset: None,
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
            StreamEvent::Tracks(tracks) => self.handle_tracks(tracks),
            StreamEvent::Frame(frame) => {
                let result = self.handle_frame(frame, now_ms);
                if result.is_err() {
                    self.stats.frames_rejected += 1;
                }
                result
            }
            StreamEvent::Ended => self.end_session(),
        }
    }

    /// The next output, or `None` until more input arrives.
    pub fn poll_output(&mut self) -> Option<PackagerOutput> {
        self.outputs.pop_front()
    }

    pub fn stats(&self) -> PackagerStats {
        self.stats
    }

    fn rendition_index(&self, kind: TrackKind) -> Option<usize> {
        self.renditions.iter().position(|r| r.kind() == kind)
    }

    /// Starts a session, or changes codec parameters within one. New parameters
    /// mid-session close every track's segment and start the next ones with
    /// EXT-X-DISCONTINUITY (§4.4.4.3: SHOULD on a change of encoding parameters), so the
    /// new init section applies from a segment boundary (EXT-X-MAP, §4.4.4.5) and all
    /// renditions keep cutting together.
    fn handle_tracks(&mut self, tracks: Vec<TrackParams>) -> Result<(), PackagerError> {
        for (i, track) in tracks.iter().enumerate() {
            let codec_kind = match track.codec {
                CodecParams::H264(_) => TrackKind::Video,
                CodecParams::Aac(_) => TrackKind::Audio,
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
        let changed = tracks.iter().any(|t| {
            self.rendition_index(t.kind)
                .is_none_or(|i| self.renditions[i].params != *t || !self.renditions[i].in_session)
        }) || self
            .renditions
            .iter()
            .any(|r| r.in_session && !tracks.iter().any(|t| t.kind == r.kind()));
        if self.session == Session::Live && !changed {
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
        let mut result = Ok(());
        if self.session == Session::Live {
            result = self.flush_all();
        }
        let first_session = self.session == Session::NotStarted;
        let new_session = self.session != Session::Live;
        let has_video = tracks.iter().any(|t| t.kind == TrackKind::Video);
        for rendition in &mut self.renditions {
            rendition.in_session = false;
        }
        for (track, init) in tracks.into_iter().zip(inits) {
            let index = match self.rendition_index(track.kind) {
                Some(index) => index,
                None => {
                    let rendition = self.new_rendition(track.clone(), !first_session);
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
        for rendition in &mut self.renditions {
            rendition.restart(has_video, new_session);
        }
        self.session = Session::Live;
        result
    }

    fn new_rendition(&self, params: TrackParams, after_first_session: bool) -> Rendition {
        let part_target_ms = part_target_ms(&params, &self.config);
        let timing = Timing::of(&params, &self.config, part_target_ms);
        let next_msn = self
            .renditions
            .iter()
            .map(|r| r.next_msn)
            .max()
            .unwrap_or(self.config.first_msn);
        let name = match params.kind {
            TrackKind::Video => SOURCE_RENDITION,
            TrackKind::Audio => AUDIO_RENDITION,
        };
        Rendition {
            name: name.to_owned(),
            params,
            part_target_ms,
            timescale: timing.timescale,
            init_version: 0,
            in_session: false,
            segment_target: timing.segment_target,
            cutter: timing.cutter,
            audio_clock: timing.audio_frame.map(AudioClock::new),
            awaiting_keyframe: false,
            last_decode_time: None,
            end_decode_time: None,
            msn: next_msn,
            next_msn,
            next_part: 0,
            segments_started: 0,
            sequence_number: 1,
            discontinuity_next: after_first_session,
        }
    }

    fn handle_frame(&mut self, frame: Frame, now_ms: i64) -> Result<(), PackagerError> {
        let track = frame.track;
        let index = self
            .rendition_index(track)
            .filter(|&i| self.session == Session::Live && self.renditions[i].in_session)
            .ok_or(PackagerError::NoTrackParams { track })?;
        let offset = match self.offset {
            Some(offset) => offset,
            None => {
                // The first frame of a session: the stream's first keeps its timestamps
                // (moved to 0 if negative, as tfdt is unsigned); a reconnect's follows the
                // previous session's end, as publishers restart their clocks at 0.
                let offset = match self.timeline_end_90k() {
                    Some(end) => end.saturating_sub(frame.dts),
                    None => frame.dts.saturating_neg().max(0),
                };
                self.offset = Some(offset);
                offset
            }
        };
        let dts_90k = frame.dts.saturating_add(offset);
        let cts = frame.cts();
        let rendition = &mut self.renditions[index];
        let timestamp = rescale(dts_90k, TIMESCALE, rendition.timescale);
        let decode_time = rendition
            .audio_clock
            .as_ref()
            .map_or(timestamp, |clock| clock.decode_time(timestamp));
        if decode_time < 0
            || rendition
                .last_decode_time
                .is_some_and(|last| decode_time <= last)
        {
            return Err(PackagerError::NonMonotonicDts {
                track,
                dts: frame.dts,
            });
        }
        let composition_offset = i32::try_from(rescale(cts, TIMESCALE, rendition.timescale))
            .map_err(|_| PackagerError::CompositionOffsetOutOfRange {
                track,
                dts: frame.dts,
                cts,
            })?;
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
        let boundary = rendition.cutter.push(CutterSample {
            decode_time,
            presentation_90k: dts_90k.saturating_add(cts),
            composition_offset,
            sync,
            data: frame.data,
            arrival_ms: now_ms,
        });
        if let Some(boundary) = boundary.filter(|_| track == TrackKind::Video) {
            for other in &mut self.renditions {
                if other.kind() == TrackKind::Audio && other.in_session {
                    other.cutter.follow_boundary(boundary);
                }
            }
        }
        self.drain_parts()
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

    fn end_session(&mut self) -> Result<(), PackagerError> {
        if self.session != Session::Live {
            return Ok(());
        }
        let result = self.flush_all();
        self.session = Session::Ended;
        self.offset = None;
        result
    }

    /// Closes the open part and the segment of every track; the next segments follow a
    /// discontinuity.
    fn flush_all(&mut self) -> Result<(), PackagerError> {
        for rendition in &mut self.renditions {
            rendition.cutter.flush();
            rendition.discontinuity_next = true;
        }
        self.drain_parts()
    }

    /// Turns every closed part into a `Part` output; video first so audio can align its
    /// first MSN to it. Returns the first error after trying every part.
    fn drain_parts(&mut self) -> Result<(), PackagerError> {
        let mut result = Ok(());
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let Some(index) = self.rendition_index(kind) else {
                continue;
            };
            let video_msn = self
                .rendition_index(TrackKind::Video)
                .map(|v| &self.renditions[v])
                .filter(|v| v.segments_started > 0)
                .map(|v| v.msn);
            let rendition = &mut self.renditions[index];
            while let Some(part) = rendition.cutter.pop_part() {
                let emitted = emit_part(rendition, part, video_msn, &mut self.stats);
                match emitted {
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

/// Numbers a closed part and writes it as one moof + mdat.
fn emit_part(
    rendition: &mut Rendition,
    part: CutPart,
    video_msn: Option<u64>,
    stats: &mut PackagerStats,
) -> Result<PackagerOutput, PackagerError> {
    let (program_date_time_ms, discontinuity) = if part.starts_segment {
        if rendition.segments_started == 0 {
            // Audio whose first frame came after video had already cut segments starts
            // at video's MSN; a playlist may begin at any MSN, so nothing is skipped.
            if let Some(video_msn) = video_msn.filter(|_| rendition.kind() == TrackKind::Audio) {
                rendition.next_msn = rendition.next_msn.max(video_msn);
            }
        }
        rendition.msn = rendition.next_msn;
        rendition.next_msn += 1;
        rendition.next_part = 0;
        rendition.segments_started += 1;
        (
            part.samples.first().map(|s| s.sample.arrival_ms),
            std::mem::take(&mut rendition.discontinuity_next),
        )
    } else {
        (None, false)
    };
    let meta = PartMeta {
        msn: rendition.msn,
        part: rendition.next_part,
        duration: part.duration as f64 / f64::from(rendition.timescale),
        independent: part.independent,
        init_version: rendition.init_version,
        program_date_time_ms,
        discontinuity,
        ends_segment: part.ends_segment,
        last_frame_arrival_ms: part.samples.last().map_or(0, |s| s.sample.arrival_ms),
    };
    rendition.next_part += 1;
    rendition.end_decode_time = Some(part.base_decode_time + part.duration);
    let fragment = Fragment {
        sequence_number: rendition.sequence_number,
        // Never negative: the packager drops frames before the timeline's start.
        base_media_decode_time: u64::try_from(part.base_decode_time).unwrap_or(0),
        samples: part
            .samples
            .into_iter()
            .map(|timed| Sample {
                duration: timed.duration,
                composition_offset: timed.sample.composition_offset,
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
