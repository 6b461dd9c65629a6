//! One rendition's packaging state ([`Rendition`]), what depends on its track's
//! parameters ([`Timing`], [`part_target_ms`]), its role in the ladder, and the PDT anchor
//! its segments are dated from.

use std::collections::VecDeque;

use bytes::Bytes;

use super::cutter::{PartCutter, SegmentPolicy, SegmentTarget};
use super::timeline::{AudioClock, rescale, rescale_ceil, rescale_floor};
use super::{
    AAC_FRAME_SAMPLES, DEFAULT_FRAME_INTERVAL_90K, HE_AAC_FRAME_SAMPLES, MAX_RENDITION_NAME,
    OPUS_FRAME_SAMPLES, PackagerConfig, PackagerError, silence,
};
use crate::cmaf;
use crate::frame::{Frame, TIMESCALE, TrackKind};
use crate::push::{RenditionDescriptor, RenditionKind};
use crate::track::{CodecParams, OpusConfig, TrackParams};

/// EXT-X-PROGRAM-DATE-TIME of an epoch (a session, or its part after a timestamp jump):
/// the wall clock at ingest of its first frame, and that frame's decode time (frames
/// reach ingest in decode order, paced by their decode times). A segment's date is the
/// anchor's plus the time from that decode time to the segment's first presentation on
/// the stream timeline, so date differences equal media durations and audio and video
/// agree, whatever the ingest jitter (RFC 8216bis §4.4.4.6).
#[derive(Debug, Clone, Copy)]
pub(super) struct PdtAnchor {
    pub(super) wall_ms: i64,
    pub(super) decode_90k: i64,
}

impl PdtAnchor {
    pub(super) fn date_ms(self, presentation_90k: i64) -> i64 {
        let since = presentation_90k.saturating_sub(self.decode_90k);
        self.wall_ms.saturating_add(rescale(since, TIMESCALE, 1000))
    }
}

/// A video follower's frame waiting for the leader ([`MAX_FOLLOWER_HOLD_90K`]), placed
/// on the stream timeline.
#[derive(Debug)]
pub(super) struct HeldFrame {
    pub(super) frame: Frame,
    pub(super) dts_90k: i64,
    pub(super) now_ms: i64,
}

/// One rendition's packaging state.
#[derive(Debug)]
pub(super) struct Rendition {
    pub(super) name: String,
    pub(super) params: TrackParams,
    pub(super) bandwidth_hint_bps: Option<u64>,
    /// PART-TARGET of this rendition, ms; fixed for the stream's life (§4.4.3.7).
    pub(super) part_target_ms: u32,
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
    pub(super) presentation_shift: Option<i64>,
    pub(super) timescale: u32,
    pub(super) init_version: u32,
    /// Listed in the latest `Renditions` (`Tracks`).
    pub(super) in_session: bool,
    /// Left out of a `Renditions` list (a shed rung): its segment was closed and it makes
    /// no parts, not even silence. Listed again, it announces itself again.
    pub(super) stopped: bool,
    /// Video follower frames waiting for the leader, in decode order.
    pub(super) held: VecDeque<HeldFrame>,
    pub(super) segment_target: SegmentTarget,
    pub(super) cutter: PartCutter,
    /// Audio only.
    pub(super) audio_clock: Option<AudioClock>,
    /// Audio: a silent access unit for these parameters; `None` if we cannot write one.
    pub(super) silence: Option<Bytes>,
    /// Nominal frame duration, track timescale: the AAC frame, or the SPS frame interval.
    pub(super) frame_interval: i64,
    /// Video: frames are skipped until a keyframe starts the session.
    pub(super) awaiting_keyframe: bool,
    /// A video follower back after stopping: frames are skipped until a sync sample where
    /// the leader began this MSN or a later one.
    pub(super) awaiting_msn: Option<u64>,
    /// Track timescale, on the stream timeline (after the reconnect shift).
    pub(super) last_decode_time: Option<i64>,
    pub(super) end_decode_time: Option<i64>,
    /// mfhd sequence_number of the next part (ISO/IEC 14496-12 §8.8.5).
    pub(super) sequence_number: u32,
    /// MSNs from which on the next segment this rendition starts follows a
    /// discontinuity. Every rendition marks the same MSNs, so their discontinuity sequence
    /// numbers stay equal (§4.4.3.3: clients locate matching segments by them).
    pub(super) discontinuities: Vec<u64>,
}

impl Rendition {
    pub(super) fn kind(&self) -> TrackKind {
        self.params.kind
    }

    /// Where this rendition cuts its segments, given its role in the ladder.
    pub(super) fn policy(&self, role: Role) -> SegmentPolicy {
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
    pub(super) fn carries_silence(&self) -> bool {
        self.kind() == TrackKind::Audio && !self.stopped && self.silence.is_some()
    }

    /// Readies the track for a new session or epoch, or for new parameters within one,
    /// after a flush. Within an epoch the timestamps run on, so the audio sample count
    /// does too.
    pub(super) fn restart(&mut self, role: Role, new_epoch: bool) {
        self.cutter.set_policy(self.policy(role));
        self.awaiting_keyframe = self.kind() == TrackKind::Video;
        if let Some(clock) = self.audio_clock.as_mut().filter(|_| new_epoch) {
            clock.reset();
        }
    }

    /// New codec parameters (after a flush or cut): a new init version, and new timing if
    /// the timescale or frame length changed. Times kept across the change are rescaled.
    pub(super) fn change_params(&mut self, params: TrackParams, config: &PackagerConfig) {
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

    pub(super) fn mark_discontinuity(&mut self, msn: u64) {
        if !self.discontinuities.contains(&msn) {
            self.discontinuities.push(msn);
        }
    }

    pub(super) fn descriptor(&self, config: &PackagerConfig) -> RenditionDescriptor {
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
            dvr_window_secs: config.dvr_window_secs,
        }
    }
}

/// A rendition's part in cutting segments: the leading video rendition (or the audio of
/// a stream without video) cuts on its own; the others follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Leader,
    Follower,
}

/// Rendition names are path segments of playback URLs: 1–32 of `[a-z0-9_-]`.
pub(super) fn validate_name(name: &str) -> Result<(), PackagerError> {
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
pub(super) const UNKNOWN_RATE_SLACK: f64 = 0.025;

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
pub(super) fn part_target_ms(params: &TrackParams, config: &PackagerConfig) -> u32 {
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
pub(super) struct Timing {
    pub(super) timescale: u32,
    pub(super) segment_target: SegmentTarget,
    /// Track timescale.
    pub(super) part_target: i64,
    /// Duration of a last sample whose successor never came, until one is measured.
    pub(super) fallback_duration: u32,
    /// Audio: ticks per AAC frame.
    pub(super) audio_frame: Option<i64>,
    pub(super) silence: Option<Bytes>,
}

impl Timing {
    pub(super) fn of(params: &TrackParams, config: &PackagerConfig, part_target_ms: u32) -> Timing {
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
