//! RTMP audio/video messages (FLV tag bodies) → `StreamEvent`s. Sans-IO.

use floodlight_media::flv::{self, AudioTag, FlvError, VideoTag};

use crate::tracks::{Converted, TrackAnnouncer};

/// Extends RTMP's 32-bit millisecond timestamps past their wrap (~49.7 days).
#[derive(Debug, Default)]
struct TimestampExtender {
    last: Option<u32>,
    high: i64,
}

impl TimestampExtender {
    fn extend(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last {
            // A jump back by more than half the range is a wrap, not reordering.
            if ts < last && last - ts > u32::MAX / 2 {
                self.high += 1 << 32;
            }
        }
        self.last = Some(ts);
        self.high + i64::from(ts)
    }
}

/// Collects the FLV sequence headers, announces the tracks once media starts, and turns
/// every later tag into a `Frame`.
#[derive(Debug, Default)]
pub(crate) struct FlvToStream {
    tracks: TrackAnnouncer,
    /// Video frames before the first keyframe cannot start a segment: drop them.
    seen_keyframe: bool,
    video_ts: TimestampExtender,
    audio_ts: TimestampExtender,
}

impl FlvToStream {
    pub(crate) fn video(&mut self, body: &[u8], timestamp: u32) -> Result<Converted, FlvError> {
        let ts = self.video_ts.extend(timestamp);
        match flv::parse_video_tag(body, ts)? {
            VideoTag::SequenceHeader(config) => {
                self.tracks.video = Some(config);
                Ok(self.tracks.reannounce_if_changed())
            }
            VideoTag::Frame(frame) => {
                if self.tracks.video.is_none() || !(self.seen_keyframe || frame.keyframe) {
                    return Ok(Converted::dropped());
                }
                self.seen_keyframe = true;
                Ok(self.tracks.media(frame))
            }
            VideoTag::EndOfSequence | VideoTag::Command => Ok(Converted::default()),
        }
    }

    pub(crate) fn audio(&mut self, body: &[u8], timestamp: u32) -> Result<Converted, FlvError> {
        let ts = self.audio_ts.extend(timestamp);
        match flv::parse_audio_tag(body, ts)? {
            AudioTag::SequenceHeader(config) => {
                self.tracks.audio = Some(config);
                Ok(self.tracks.reannounce_if_changed())
            }
            AudioTag::Frame(frame) => {
                if self.tracks.audio.is_none() {
                    return Ok(Converted::dropped());
                }
                Ok(self.tracks.media(frame))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use floodlight_media::flv::{FlvFileReader, FlvTagType};
    use floodlight_media::{StreamEvent, TrackKind, TrackParams};

    /// Feeds a real ffmpeg FLV capture through the converter as RTMP would deliver it.
    fn convert(flv: &[u8]) -> (Vec<StreamEvent>, u64) {
        let mut conv = FlvToStream::default();
        let mut events = vec![];
        let mut dropped = 0;
        for tag in FlvFileReader::new(flv).unwrap() {
            let tag = tag.unwrap();
            let ts = tag.timestamp_ms as u32;
            let out = match tag.tag_type {
                FlvTagType::Video => conv.video(tag.body, ts).unwrap(),
                FlvTagType::Audio => conv.audio(tag.body, ts).unwrap(),
                _ => continue,
            };
            events.extend(out.events);
            dropped += out.dropped;
        }
        (events, dropped)
    }

    #[test]
    fn ffmpeg_capture_announces_both_tracks_before_the_first_frame() {
        let (events, dropped) = convert(include_bytes!(
            "../../../media/testdata/ffmpeg_h264_aac_bframes.flv"
        ));
        assert_eq!(dropped, 0);
        let StreamEvent::Tracks(tracks) = &events[0] else {
            panic!("first event {:?}", events[0])
        };
        let kinds: Vec<TrackKind> = tracks.iter().map(|t: &TrackParams| t.kind).collect();
        assert_eq!(kinds, [TrackKind::Video, TrackKind::Audio]);
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::Tracks(_)))
                .count(),
            1
        );
        let StreamEvent::Frame(first) = &events[1] else {
            panic!()
        };
        assert!(first.keyframe && first.track == TrackKind::Video);
        let frames = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Frame(_)))
            .count();
        assert!(frames > 200, "{frames} frames");
    }

    #[test]
    fn video_before_first_keyframe_is_dropped() {
        let flv = include_bytes!("../../../media/testdata/ffmpeg_h264_aac_bframes.flv");
        let mut conv = FlvToStream::default();
        let video = FlvFileReader::new(flv)
            .unwrap()
            .map(Result::unwrap)
            .filter(|t| t.tag_type == FlvTagType::Video);
        let mut dropped = 0;
        // Leave out the first keyframe (tag 1, after the sequence header): the publisher
        // "joined" mid-GOP. Everything up to the next keyframe must be dropped.
        for (i, tag) in video.enumerate().filter(|(i, _)| *i != 1) {
            let out = conv.video(tag.body, tag.timestamp_ms as u32).unwrap();
            dropped += out.dropped;
            if let Some(StreamEvent::Frame(f)) = out.events.last() {
                assert!(
                    f.keyframe,
                    "first frame through (tag {i}) must be a keyframe"
                );
                assert_eq!(dropped, 59, "the rest of the first GOP is dropped");
                return;
            }
        }
        panic!("no frame passed");
    }

    #[test]
    fn timestamps_extend_past_32_bit_wrap() {
        let mut ext = TimestampExtender::default();
        assert_eq!(ext.extend(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(ext.extend(5), (1i64 << 32) + 5);
        // Small backwards steps (interleaving) are not wraps.
        assert_eq!(ext.extend(3), (1i64 << 32) + 3);
    }
}
