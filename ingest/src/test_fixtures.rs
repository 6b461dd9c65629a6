//! Tracks and frames the unit tests of publishers and the takeover feed in: parameter sets
//! from a real ffmpeg capture, frames with a byte or two of payload.

use bytes::Bytes;
use floodlight_media::avc::annexb_nal_units;
use floodlight_media::{AacConfig, AvcConfig, Frame, TrackKind, TrackParams};

/// H.264 320x240 parameter sets from `media/testdata`.
pub(crate) fn avc() -> AvcConfig {
    let stream = include_bytes!("../../media/testdata/ffmpeg_h264_320x240_annexb.h264");
    let find = |t: u8| annexb_nal_units(stream).find(|n| n[0] & 0x1f == t).unwrap();
    AvcConfig::from_parameter_sets(find(7), find(8)).unwrap()
}

/// AAC-LC 48 kHz stereo.
pub(crate) fn aac() -> TrackParams {
    TrackParams::audio(AacConfig::from_asc(Bytes::from_static(&[0x11, 0x90])).unwrap())
}

pub(crate) fn tracks() -> Vec<TrackParams> {
    vec![TrackParams::video(avc()), aac()]
}

pub(crate) fn video(dts: i64, keyframe: bool) -> Frame {
    Frame {
        track: TrackKind::Video,
        dts,
        pts: dts,
        keyframe,
        data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
    }
}

pub(crate) fn audio(dts: i64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        dts,
        pts: dts,
        keyframe: true,
        data: Bytes::from_static(&[0x21]),
    }
}
