//! Depacketized RTP media (H.264 access units and AAC frames, as retina yields them) →
//! `StreamEvent`s. Sans-IO: the puller passes parameters and frames in.
//!
//! RTP gives each frame a presentation time only (RFC 3550 §5.1; RFC 6184 §5.1 for
//! H.264). Decode order is arrival order, so DTS = PTS holds exactly when the encoder
//! sends no B-frames, as cameras and zero-latency encoders do; a stream whose video PTS
//! goes back (B-frames) is refused with [`RtpMediaError::Reordered`] rather than
//! packaged with wrong decode times.

use bytes::Bytes;
use floodlight_media::aac::AacError;
use floodlight_media::avc::AvcError;
use floodlight_media::{AacConfig, AvcConfig, Frame, TIMESCALE, TrackKind};

pub(crate) use crate::tracks::Converted;
use crate::tracks::TrackAnnouncer;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RtpMediaError {
    #[error("H.264 parameter sets: {0}")]
    Avc(#[from] AvcError),
    #[error("AAC AudioSpecificConfig: {0}")]
    Aac(#[from] AacError),
    #[error(
        "video PTS {pts} (90 kHz) precedes the previous frame's {previous}: the source sends \
         B-frames, whose decode times RTP does not carry; configure it without B-frames"
    )]
    Reordered { pts: i64, previous: i64 },
}

/// An RTP timestamp as ticks since the start of the stream (the `RTP-Info` `rtptime`, or
/// the first packet), at the stream's clock rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtpTime {
    pub(crate) elapsed: i64,
    pub(crate) clock_rate: u32,
}

impl RtpTime {
    /// On the 90 kHz timeline, rounded to the nearest tick.
    fn to_90khz(self) -> i64 {
        let rate = i128::from(self.clock_rate.max(1));
        let scaled = i128::from(self.elapsed) * i128::from(TIMESCALE);
        let rounded = if scaled >= 0 {
            (scaled + rate / 2) / rate
        } else {
            (scaled - rate / 2) / rate
        };
        i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
    }
}

/// Collects the tracks' parameters, announces them with the session's first frame (a
/// video keyframe when the source has video, so the session starts decodable), and turns
/// every later frame into a `Frame`.
#[derive(Debug)]
pub(crate) struct RtpToStream {
    has_video: bool,
    tracks: TrackAnnouncer,
    last_video_pts: Option<i64>,
}

impl RtpToStream {
    /// `has_video`: the session set up an H.264 stream, whose first keyframe starts it.
    pub(crate) fn new(has_video: bool) -> Self {
        RtpToStream {
            has_video,
            tracks: TrackAnnouncer::default(),
            last_video_pts: None,
        }
    }

    /// The H.264 SPS and PPS NAL units, from the SDP's `sprop-parameter-sets` (RFC 6184
    /// §8.1) or in-band. A change after the tracks were announced is announced again.
    pub(crate) fn video_parameters(
        &mut self,
        sps: &[u8],
        pps: &[u8],
    ) -> Result<Converted, RtpMediaError> {
        self.tracks.video = Some(AvcConfig::from_parameter_sets(sps, pps)?);
        Ok(self.tracks.reannounce_if_changed())
    }

    /// The AudioSpecificConfig from the SDP's `config` (RFC 3640 §4.1, mpeg4-generic).
    pub(crate) fn audio_config(&mut self, asc: &[u8]) -> Result<Converted, RtpMediaError> {
        self.tracks.audio = Some(AacConfig::from_asc(Bytes::copy_from_slice(asc))?);
        Ok(self.tracks.reannounce_if_changed())
    }

    /// One H.264 access unit, its NAL units each preceded by a 4-byte length.
    pub(crate) fn video(
        &mut self,
        time: RtpTime,
        keyframe: bool,
        data: Bytes,
    ) -> Result<Converted, RtpMediaError> {
        let pts = time.to_90khz();
        if let Some(previous) = self.last_video_pts.filter(|&p| pts < p) {
            return Err(RtpMediaError::Reordered { pts, previous });
        }
        self.last_video_pts = Some(pts);
        if self.tracks.video.is_none() || (!self.tracks.announced() && !keyframe) {
            return Ok(Converted::dropped());
        }
        Ok(self.tracks.media(Frame {
            track: TrackKind::Video,
            dts: pts,
            pts,
            keyframe,
            data,
        }))
    }

    /// One raw AAC access unit.
    pub(crate) fn audio(&mut self, time: RtpTime, data: Bytes) -> Converted {
        // With video, the session starts at its first keyframe: audio before it would
        // only be trimmed downstream.
        if self.tracks.audio.is_none() || (!self.tracks.announced() && self.has_video) {
            return Converted::dropped();
        }
        let ts = time.to_90khz();
        self.tracks.media(Frame {
            track: TrackKind::Audio,
            dts: ts,
            pts: ts,
            keyframe: true,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use floodlight_media::{StreamEvent, TrackParams};

    use floodlight_media::aac::AdtsHeader;
    use floodlight_media::avc::annexb_nal_units;
    use floodlight_media::flv::{FlvFileReader, FlvTagType};

    /// A real libx264 Annex B stream (320x240, one slice per picture).
    const ANNEXB: &[u8] = include_bytes!("../../../media/testdata/ffmpeg_h264_320x240_annexb.h264");
    /// A real ffmpeg AAC-LC ADTS stream, 44.1 kHz mono.
    const ADTS: &[u8] = include_bytes!("../../../media/testdata/ffmpeg_aac_44100_mono.adts");

    fn nal_type(nal: &[u8]) -> u8 {
        nal[0] & 0x1f
    }

    /// The capture as an RTSP client receives it: SPS, PPS, and each picture as one
    /// access unit of 4-byte-length-prefixed NAL units with its IDR flag.
    fn capture() -> (Vec<u8>, Vec<u8>, Vec<(bool, Bytes)>) {
        let nals: Vec<&[u8]> = annexb_nal_units(ANNEXB).collect();
        let sps = nals.iter().find(|n| nal_type(n) == 7).unwrap().to_vec();
        let pps = nals.iter().find(|n| nal_type(n) == 8).unwrap().to_vec();
        let pictures = nals
            .iter()
            .filter(|n| matches!(nal_type(n), 1 | 5))
            .map(|n| {
                let mut au = (n.len() as u32).to_be_bytes().to_vec();
                au.extend_from_slice(n);
                (nal_type(n) == 5, Bytes::from(au))
            })
            .collect();
        (sps, pps, pictures)
    }

    fn asc() -> Vec<u8> {
        AdtsHeader::parse(ADTS)
            .unwrap()
            .audio_specific_config()
            .unwrap()
            .asc
            .to_vec()
    }

    fn at(elapsed: i64, clock_rate: u32) -> RtpTime {
        RtpTime {
            elapsed,
            clock_rate,
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
    fn tracks_are_announced_once_with_the_first_keyframe() {
        let (sps, pps, pictures) = capture();
        let mut conv = RtpToStream::new(true);
        let mut events = vec![];
        events.extend(conv.video_parameters(&sps, &pps).unwrap().events);
        events.extend(conv.audio_config(&asc()).unwrap().events);
        assert!(events.is_empty(), "nothing before the first frame");
        for (i, (keyframe, au)) in pictures.iter().enumerate() {
            let out = conv
                .video(at(i as i64 * 3000, 90_000), *keyframe, au.clone())
                .unwrap();
            assert_eq!(out.dropped, 0);
            events.extend(out.events);
            events.extend(conv.audio(at(i as i64 * 1024, 44_100), Bytes::new()).events);
        }
        let StreamEvent::Tracks(tracks) = &events[0] else {
            panic!("first event {:?}", events[0])
        };
        let kinds: Vec<TrackKind> = tracks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [TrackKind::Video, TrackKind::Audio]);
        let TrackParams {
            codec: floodlight_media::CodecParams::H264(avc),
            ..
        } = &tracks[0]
        else {
            panic!("{tracks:?}")
        };
        assert_eq!((avc.width, avc.height, avc.nal_length_size), (320, 240, 4));
        let announcements = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Tracks(_)))
            .count();
        assert_eq!(announcements, 1);
        let frames = frames(&events);
        assert!(frames[0].keyframe && frames[0].track == TrackKind::Video);
        assert_eq!(frames.len(), pictures.len() * 2);
        assert!(frames.iter().all(|f| f.dts == f.pts));
        // 1024 samples at 44.1 kHz are 2089.8 ticks at 90 kHz: rounded, not truncated.
        let audio: Vec<i64> = frames
            .iter()
            .filter(|f| f.track == TrackKind::Audio)
            .map(|f| f.dts)
            .take(3)
            .collect();
        assert_eq!(audio, [0, 2090, 4180]);
    }

    #[test]
    fn media_before_the_first_keyframe_is_dropped() {
        let (sps, pps, pictures) = capture();
        let mut conv = RtpToStream::new(true);
        conv.video_parameters(&sps, &pps).unwrap();
        conv.audio_config(&asc()).unwrap();
        // Joined mid-GOP: the capture's P pictures come before any keyframe, and with them
        // audio; all of it is dropped. Then its IDR picture starts the session.
        let (idr, others) = pictures.split_first().unwrap();
        assert!(idr.0 && others.iter().all(|(keyframe, _)| !keyframe));
        let mut t = 0;
        for (keyframe, au) in others {
            t += 3000;
            assert_eq!(conv.audio(at(t, 90_000), Bytes::new()).dropped, 1);
            let out = conv.video(at(t, 90_000), *keyframe, au.clone()).unwrap();
            assert_eq!((out.events.len(), out.dropped), (0, 1));
        }
        let out = conv
            .video(at(t + 3000, 90_000), true, idr.1.clone())
            .unwrap();
        assert!(
            matches!(&out.events[..], [StreamEvent::Tracks(_), StreamEvent::Frame(f)] if f.keyframe)
        );
        assert_eq!(
            conv.audio(at(t + 3000, 90_000), Bytes::new()).events.len(),
            1
        );
    }

    #[test]
    fn video_without_parameters_is_dropped_until_they_come() {
        let (sps, pps, pictures) = capture();
        let mut conv = RtpToStream::new(true);
        let (keyframe, au) = pictures[0].clone();
        assert_eq!(
            conv.video(at(0, 90_000), keyframe, au.clone())
                .unwrap()
                .dropped,
            1
        );
        conv.video_parameters(&sps, &pps).unwrap();
        let out = conv.video(at(3000, 90_000), keyframe, au).unwrap();
        assert!(
            matches!(&out.events[..], [StreamEvent::Tracks(t), StreamEvent::Frame(_)] if t.len() == 1)
        );
    }

    #[test]
    fn new_parameters_mid_stream_are_announced_again() {
        let (sps, pps, pictures) = capture();
        let mut conv = RtpToStream::new(true);
        conv.video_parameters(&sps, &pps).unwrap();
        let (keyframe, au) = pictures[0].clone();
        conv.video(at(0, 90_000), keyframe, au).unwrap();
        // The same parameters again (every keyframe, in-band): nothing to announce.
        assert!(conv.video_parameters(&sps, &pps).unwrap().events.is_empty());
        // The source switched to 1080p: the SPS/PPS of a real 1080p ffmpeg capture.
        let flv = include_bytes!("../../../media/testdata/ffmpeg_h264_1080p25.flv");
        let header = FlvFileReader::new(flv)
            .unwrap()
            .map(Result::unwrap)
            .find(|t| t.tag_type == FlvTagType::Video)
            .unwrap();
        // AVC sequence header: FLV VideoTagHeader (5 bytes), then the record.
        let record = AvcConfig::from_record(Bytes::copy_from_slice(&header.body[5..])).unwrap();
        let out = conv
            .video_parameters(&record.sps[0], &record.pps[0])
            .unwrap();
        let [StreamEvent::Tracks(tracks)] = &out.events[..] else {
            panic!("{:?}", out.events)
        };
        let TrackParams {
            codec: floodlight_media::CodecParams::H264(avc),
            ..
        } = &tracks[0]
        else {
            panic!()
        };
        assert_eq!((avc.width, avc.height), (1920, 1080));
    }

    #[test]
    fn b_frames_are_refused_not_mistimed() {
        let (sps, pps, pictures) = capture();
        let mut conv = RtpToStream::new(true);
        conv.video_parameters(&sps, &pps).unwrap();
        conv.video(at(6000, 90_000), true, pictures[0].1.clone())
            .unwrap();
        let err = conv
            .video(at(3000, 90_000), false, pictures[1].1.clone())
            .unwrap_err();
        assert!(matches!(
            err,
            RtpMediaError::Reordered {
                pts: 3000,
                previous: 6000
            }
        ));
    }

    #[test]
    fn malformed_parameters_are_errors() {
        let (sps, pps, _) = capture();
        let mut conv = RtpToStream::new(true);
        assert!(matches!(
            conv.video_parameters(&sps[..4], &pps),
            Err(RtpMediaError::Avc(_))
        ));
        assert!(matches!(
            conv.video_parameters(&pps, &sps),
            Err(RtpMediaError::Avc(_))
        ));
        assert!(matches!(
            conv.audio_config(&[0x00]),
            Err(RtpMediaError::Aac(_))
        ));
    }

    #[test]
    fn audio_only_sources_start_with_their_first_frame() {
        let mut conv = RtpToStream::new(false);
        conv.audio_config(&asc()).unwrap();
        let out = conv.audio(at(-1024, 48_000), Bytes::from_static(&[1, 2]));
        let [StreamEvent::Tracks(tracks), StreamEvent::Frame(f)] = &out.events[..] else {
            panic!("{:?}", out.events)
        };
        assert_eq!(tracks.len(), 1);
        // Before the stream's start (NPT < 0) is allowed; the packager moves it up.
        assert_eq!(f.dts, -1920);
    }
}
