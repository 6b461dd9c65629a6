//! Depacketized WebRTC media (str0m's `MediaData`) → `StreamEvent`s. Sans-IO: the caller
//! passes each frame with its arrival time.
//!
//! Timeline: RTP timestamps of different tracks share no origin (each SSRC starts at a
//! random value, RFC 3550 §5.1), so each track is anchored where its first frame arrived,
//! counted from the session's first frame, and runs on its own RTP clock from there (the
//! RTP clock is the capture clock; arrival jitter does not reach the timestamps). str0m
//! hands over RTP timestamps already extended to 64 bits, so the 32-bit wrap (13 h at
//! 90 kHz, 24.9 h at 48 kHz) is continuous here. WebRTC H.264 has no B-frames
//! (Constrained Baseline), so video DTS = PTS.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use floodlight_media::avc::{AvcError, annexb_nal_units};
use floodlight_media::{
    AvcConfig, Frame, OpusConfig, StreamEvent, TIMESCALE, TrackKind, TrackParams,
};

/// H.264 NAL unit types (Table 7-1) this converter looks at.
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const NAL_FILLER: u8 = 12;

/// One depacketized frame of the session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RtpFrame<'a> {
    pub(crate) track: TrackKind,
    /// RTP timestamp, extended past its 32-bit wrap.
    pub(crate) rtp_time: u64,
    /// The RTP clock of the payload type: 90 000 for video, 48 000 for Opus.
    pub(crate) clock_rate: u32,
    pub(crate) arrival: Instant,
    /// False when packets were lost since the previous frame of the track.
    pub(crate) contiguous: bool,
    /// Video: an Annex B access unit (str0m's H.264 depacketizer output). Audio: one Opus
    /// packet.
    pub(crate) data: &'a [u8],
}

/// What a frame produced, what was dropped, and whether to ask for a keyframe.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Converted {
    pub(crate) events: Vec<StreamEvent>,
    pub(crate) dropped: u64,
    pub(crate) request_keyframe: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("H.264 parameter sets at RTP time {rtp_time}: {source}")]
pub(crate) struct MediaError {
    rtp_time: u64,
    source: AvcError,
}

/// When to ask the publisher for a keyframe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyframePolicy {
    /// Ask once the last keyframe is this old (90 kHz): the segment cadence.
    pub(crate) interval_90k: i64,
    /// Least wall time between two requests.
    pub(crate) min_gap: Duration,
}

#[derive(Debug, Clone, Copy)]
struct TrackClock {
    first_rtp: u64,
    base_90k: i64,
}

/// One WHIP session's media → `StreamEvent`s.
#[derive(Debug)]
pub(crate) struct WebRtcToStream {
    /// The session negotiated audio (Opus).
    audio: Option<OpusConfig>,
    video: Option<AvcConfig>,
    /// The latest SPS and PPS seen in-band.
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    announced: Option<Vec<TrackParams>>,
    session_start: Option<Instant>,
    clocks: [Option<TrackClock>; 2],
    /// Video frames are dropped until a keyframe: at the start and after a loss.
    awaiting_keyframe: bool,
    last_keyframe_90k: Option<i64>,
    last_request: Option<Instant>,
    policy: KeyframePolicy,
}

impl WebRtcToStream {
    pub(crate) fn new(audio: Option<OpusConfig>, policy: KeyframePolicy) -> Self {
        WebRtcToStream {
            audio,
            video: None,
            sps: None,
            pps: None,
            announced: None,
            session_start: None,
            clocks: [None, None],
            awaiting_keyframe: true,
            last_keyframe_90k: None,
            last_request: None,
            policy,
        }
    }

    pub(crate) fn frame(&mut self, frame: RtpFrame<'_>) -> Result<Converted, MediaError> {
        let pts = self.timestamp(&frame);
        match frame.track {
            TrackKind::Video => self.video(frame, pts),
            TrackKind::Audio => Ok(self.audio(frame, pts)),
        }
    }

    /// Whether to ask for a keyframe now, `wanted` or not, given the rate limit; called
    /// at the session's start as well (an encoder may have sent its first one before
    /// DTLS was up).
    pub(crate) fn keyframe_due(&mut self, wanted: bool, now: Instant) -> bool {
        if !wanted
            || self
                .last_request
                .is_some_and(|at| now.saturating_duration_since(at) < self.policy.min_gap)
        {
            return false;
        }
        self.last_request = Some(now);
        true
    }

    /// 90 kHz presentation time: the track's anchor plus its RTP clock since its first frame.
    fn timestamp(&mut self, frame: &RtpFrame<'_>) -> i64 {
        let start = *self.session_start.get_or_insert(frame.arrival);
        let index = match frame.track {
            TrackKind::Video => 0,
            TrackKind::Audio => 1,
        };
        let clock = self.clocks[index].get_or_insert_with(|| TrackClock {
            first_rtp: frame.rtp_time,
            base_90k: ticks(frame.arrival.saturating_duration_since(start)),
        });
        let elapsed = i128::from(frame.rtp_time) - i128::from(clock.first_rtp);
        let rate = i128::from(frame.clock_rate.max(1));
        clock.base_90k + (elapsed * i128::from(TIMESCALE) / rate) as i64
    }

    fn video(&mut self, frame: RtpFrame<'_>, pts: i64) -> Result<Converted, MediaError> {
        let mut out = Converted::default();
        let mut keyframe = false;
        let mut sample = BytesMut::with_capacity(frame.data.len() + 16);
        for nal in annexb_nal_units(frame.data) {
            let Some(&header) = nal.first() else { continue };
            match header & 0x1f {
                NAL_SPS => self.sps = Some(Bytes::copy_from_slice(nal)),
                NAL_PPS => self.pps = Some(Bytes::copy_from_slice(nal)),
                // Access unit delimiters and filler carry nothing a player needs.
                NAL_AUD | NAL_FILLER => {}
                kind => {
                    keyframe |= kind == NAL_IDR;
                    sample.put_u32(nal.len() as u32);
                    sample.put_slice(nal);
                }
            }
        }
        let changed = self.update_config(frame.rtp_time)?;
        if !frame.contiguous {
            // A lost packet breaks the references of every frame up to the next keyframe.
            self.awaiting_keyframe = true;
        }
        if self.video.is_none() || sample.is_empty() || (self.awaiting_keyframe && !keyframe) {
            out.dropped = 1;
            out.request_keyframe = true;
            return Ok(out);
        }
        self.awaiting_keyframe = false;
        if changed || self.announced.is_none() {
            self.announce(&mut out);
        }
        if keyframe {
            self.last_keyframe_90k = Some(pts);
        } else if self
            .last_keyframe_90k
            .is_some_and(|at| pts - at >= self.policy.interval_90k)
        {
            out.request_keyframe = true;
        }
        out.events.push(StreamEvent::Frame(Frame {
            track: TrackKind::Video,
            dts: pts,
            pts,
            keyframe,
            data: sample.freeze(),
        }));
        Ok(out)
    }

    fn audio(&mut self, frame: RtpFrame<'_>, pts: i64) -> Converted {
        // Audio before the first video keyframe has no tracks to go with, and an audio
        // m-line we did not negotiate carries nothing we can use.
        if self.announced.is_none() || self.audio.is_none() || frame.data.is_empty() {
            return Converted {
                dropped: 1,
                ..Converted::default()
            };
        }
        Converted {
            events: vec![StreamEvent::Frame(Frame {
                track: TrackKind::Audio,
                dts: pts,
                pts,
                keyframe: true,
                data: Bytes::copy_from_slice(frame.data),
            })],
            ..Converted::default()
        }
    }

    /// Takes new in-band parameter sets; true when the video parameters changed.
    fn update_config(&mut self, rtp_time: u64) -> Result<bool, MediaError> {
        let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
            return Ok(false);
        };
        if self
            .video
            .as_ref()
            .is_some_and(|v| v.sps.first() == Some(sps) && v.pps.first() == Some(pps))
        {
            return Ok(false);
        }
        let config = AvcConfig::from_parameter_sets(sps, pps)
            .map_err(|source| MediaError { rtp_time, source })?;
        let changed = self.video.as_ref() != Some(&config);
        self.video = Some(config);
        Ok(changed)
    }

    fn announce(&mut self, out: &mut Converted) {
        let video = self.video.clone().map(TrackParams::video);
        let audio = self.audio.map(TrackParams::opus);
        let tracks: Vec<TrackParams> = video.into_iter().chain(audio).collect();
        self.announced = Some(tracks.clone());
        out.events.push(StreamEvent::Tracks(tracks));
    }
}

fn ticks(d: Duration) -> i64 {
    (d.as_micros() * u128::from(TIMESCALE) / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use floodlight_media::CodecParams;

    use super::*;

    /// Real H.264 (ffmpeg, libx264 Constrained Baseline with access unit delimiters,
    /// 30 fps, a keyframe every 30 frames) split into Annex B access units, as str0m's
    /// depacketizer hands them over.
    fn access_units(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut units: Vec<Vec<u8>> = Vec::new();
        for nal in annexb_nal_units(stream) {
            if nal[0] & 0x1f == NAL_AUD || units.is_empty() {
                units.push(Vec::new());
            }
            let unit = units.last_mut().unwrap();
            unit.extend_from_slice(&[0, 0, 0, 1]);
            unit.extend_from_slice(nal);
        }
        units
    }

    fn gops_160x120() -> Vec<Vec<u8>> {
        access_units(include_bytes!(
            "../../testdata/ffmpeg_h264_baseline_160x120_annexb.h264"
        ))
    }

    fn policy() -> KeyframePolicy {
        KeyframePolicy {
            interval_90k: 180_000,
            min_gap: Duration::from_millis(500),
        }
    }

    const OPUS: OpusConfig = OpusConfig {
        channels: 2,
        pre_skip: 0,
    };

    fn video(data: &[u8], rtp_time: u64, arrival: Instant) -> RtpFrame<'_> {
        RtpFrame {
            track: TrackKind::Video,
            rtp_time,
            clock_rate: 90_000,
            arrival,
            contiguous: true,
            data,
        }
    }

    fn frames(events: &[StreamEvent]) -> Vec<&Frame> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn annex_b_becomes_length_prefixed_samples_after_tracks() {
        let units = gops_160x120();
        assert_eq!(units.len(), 60);
        let mut conv = WebRtcToStream::new(Some(OPUS), policy());
        let t0 = Instant::now();
        let mut events = Vec::new();
        for (i, unit) in units.iter().enumerate() {
            let out = conv.frame(video(unit, 1000 + 3000 * i as u64, t0)).unwrap();
            assert_eq!(out.dropped, 0);
            events.extend(out.events);
        }
        let StreamEvent::Tracks(tracks) = &events[0] else {
            panic!("{:?}", events[0])
        };
        let CodecParams::H264(avc) = &tracks[0].codec else {
            panic!()
        };
        // Constrained Baseline (profile 66, constraint_set0/1), the SPS's picture size.
        assert_eq!((avc.profile_idc, avc.width, avc.height), (66, 160, 120));
        assert_eq!(tracks[1], TrackParams::opus(OPUS));
        let frames = frames(&events);
        assert_eq!(frames.len(), 60);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!((f.pts, f.dts), (3000 * i as i64, 3000 * i as i64));
            assert_eq!(f.keyframe, i % 30 == 0, "frame {i}");
            // ISO/IEC 14496-15: 4-byte lengths, no parameter sets or delimiters in-band.
            let mut rest = &f.data[..];
            while !rest.is_empty() {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                assert!(!matches!(rest[4] & 0x1f, NAL_SPS | NAL_PPS | NAL_AUD));
                rest = &rest[4 + len..];
            }
        }
        // The same SPS/PPS again at the second keyframe announces nothing new.
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Tracks(_)))
                .count(),
            1
        );
    }

    #[test]
    fn frames_before_the_first_keyframe_and_after_a_loss_are_dropped() {
        let units = gops_160x120();
        let mut conv = WebRtcToStream::new(None, policy());
        let t0 = Instant::now();
        // Join mid-GOP: frames 5..30 wait for the keyframe at 30, and ask for one.
        let mut kept = Vec::new();
        for (i, unit) in units.iter().enumerate().skip(5) {
            let mut frame = video(unit, 3000 * i as u64, t0);
            // Frame 40 arrives after a loss: 40..60 wait for a keyframe that never comes.
            frame.contiguous = i != 40;
            let out = conv.frame(frame).unwrap();
            assert_eq!(out.dropped == 1, !(30..40).contains(&i), "frame {i}");
            assert_eq!(out.request_keyframe, out.dropped == 1, "frame {i}");
            kept.extend(frames(&out.events).into_iter().map(|f| f.pts));
        }
        assert_eq!(kept.len(), 10);
        // The timeline starts at the first frame received (5), dropped or not.
        assert_eq!(kept[0], 25 * 3000);
    }

    #[test]
    fn new_parameter_sets_announce_new_tracks() {
        let mut conv = WebRtcToStream::new(None, policy());
        let t0 = Instant::now();
        let second = access_units(include_bytes!(
            "../../testdata/ffmpeg_h264_baseline_176x144_annexb.h264"
        ));
        let mut sizes = Vec::new();
        for (i, unit) in gops_160x120().iter().chain(&second).enumerate() {
            for e in conv.frame(video(unit, 3000 * i as u64, t0)).unwrap().events {
                if let StreamEvent::Tracks(t) = e
                    && let CodecParams::H264(avc) = &t[0].codec
                {
                    sizes.push((avc.width, avc.height));
                }
            }
        }
        assert_eq!(sizes, [(160, 120), (176, 144)]);
    }

    #[test]
    fn rtp_clocks_run_across_the_32_bit_wrap_and_tracks_anchor_on_arrival() {
        let units = gops_160x120();
        let mut conv = WebRtcToStream::new(Some(OPUS), policy());
        let t0 = Instant::now();
        // Video's RTP clock starts just below 2^32 and wraps (str0m extends it to 64 bits).
        let start = u64::from(u32::MAX) - 6000;
        let mut pts = Vec::new();
        for (i, unit) in units.iter().take(5).enumerate() {
            let out = conv
                .frame(video(unit, start + 3000 * i as u64, t0))
                .unwrap();
            pts.extend(frames(&out.events).into_iter().map(|f| f.pts));
        }
        assert_eq!(pts, [0, 3000, 6000, 9000, 12000]);
        // Audio's first packet arrives 100 ms after the session's first frame: its
        // 48 kHz clock counts from there.
        let opus = [0xfc, 0xff, 0xfe];
        let audio = |rtp_time, arrival| RtpFrame {
            track: TrackKind::Audio,
            rtp_time,
            clock_rate: 48_000,
            arrival,
            contiguous: true,
            data: &opus,
        };
        let later = t0 + Duration::from_millis(100);
        let first = conv.frame(audio(7_777, later)).unwrap();
        let second = conv.frame(audio(7_777 + 960, later)).unwrap();
        assert_eq!(frames(&first.events)[0].pts, 9000);
        assert_eq!(frames(&second.events)[0].pts, 9000 + 1800);
    }

    #[test]
    fn keyframes_are_asked_for_at_the_cadence_and_rate_limited() {
        let units = gops_160x120();
        let mut conv = WebRtcToStream::new(
            None,
            KeyframePolicy {
                interval_90k: 15 * 3000,
                min_gap: Duration::from_millis(500),
            },
        );
        let t0 = Instant::now();
        let wanted: Vec<usize> = (0..30)
            .filter(|&i| {
                conv.frame(video(&units[i], 3000 * i as u64, t0))
                    .unwrap()
                    .request_keyframe
            })
            .collect();
        // Half a GOP after the keyframe at 0, every frame would like one.
        assert_eq!(wanted, (15..30).collect::<Vec<_>>());
        assert!(conv.keyframe_due(true, t0));
        assert!(!conv.keyframe_due(true, t0 + Duration::from_millis(100)));
        assert!(!conv.keyframe_due(false, t0 + Duration::from_secs(1)));
        assert!(conv.keyframe_due(true, t0 + Duration::from_secs(1)));
    }
}
