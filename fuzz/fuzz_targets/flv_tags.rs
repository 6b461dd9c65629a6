#![no_main]

use floodlight_media::flv::{AudioTag, VideoTag, parse_audio_tag, parse_video_tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&timestamp, body)) = data.split_first() else { return };
    let ts = i64::from(timestamp) * 40;
    match parse_video_tag(body, ts) {
        Ok(VideoTag::Frame(f)) => assert_eq!(f.dts, ts * 90),
        Ok(VideoTag::SequenceHeader(c)) => {
            assert!(matches!(c.nal_length_size, 1 | 2 | 4));
            assert!(!c.sps.is_empty() && c.width > 0 && c.height > 0);
        }
        Ok(_) | Err(_) => {}
    }
    match parse_audio_tag(body, ts) {
        Ok(AudioTag::Frame(f)) => assert!(f.keyframe && f.pts == f.dts),
        Ok(AudioTag::SequenceHeader(c)) => assert!(c.sample_rate > 0),
        Err(_) => {}
    }
});
