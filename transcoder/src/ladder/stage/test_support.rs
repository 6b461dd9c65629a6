//! Test support for the ladder thread's tests: settings, a captured and a generated
//! publisher, and a ladder run to completion with its outputs collected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;

use bytes::Bytes;
use ffmpeg_next::frame;
use floodlight_media::flv::{FlvFileReader, FlvTagType, VideoTag, parse_video_tag};
use floodlight_media::{CodecParams, Frame, StampedEvent, StreamEvent, TrackParams};
use tokio::sync::mpsc;

use super::{Ladder, RungId, StageOutput, StageSettings};
use crate::av::{ENCODER_FORMAT, EncoderSettings, H264Profile, VideoEncoder};
use crate::config::{LadderProfile, RungProfile};
use crate::ladder::StatusBoard;

/// 4 s of H.264 High 320x240 @ 30 fps, 2 B-frames, IDR every 2 s (media/testdata).
const BFRAMES_FLV: &[u8] = include_bytes!("../../../../media/testdata/ffmpeg_h264_aac_bframes.flv");

pub(super) fn settings() -> StageSettings {
    let rung = |name: &str, height, bitrate_bps| RungProfile {
        name: name.to_string(),
        height,
        bitrate_bps,
    };
    StageSettings {
        profile: LadderProfile {
            source: true,
            source_bitrate_bps: None,
            rungs: vec![rung("180p", 180, 200_000), rung("120p", 120, 100_000)],
        },
        segment_target: 180_000,
        tolerance: 9_000,
        preset: "ultrafast".to_string(),
        threads_per_rung: 1,
        vbv_buffer_ms: 1000,
        thumbnail_interval: 0,
        thumbnail_width: 160,
        // Generous: a loaded CI machine must not shed in these tests.
        shed_lag_ms: 60_000,
    }
}

pub(super) fn stamped(event: StreamEvent) -> StampedEvent {
    StampedEvent {
        event,
        received_at_ms: 1_000,
    }
}

/// What came out of a ladder: renditions announced (name → params), frames per name.
#[derive(Default)]
pub(super) struct Collected {
    pub(super) announcements: Vec<Vec<(String, TrackParams)>>,
    pub(super) frames: BTreeMap<String, Vec<Frame>>,
    pub(super) thumbnails: Vec<Bytes>,
    pub(super) ended: bool,
}

impl Collected {
    pub(super) fn keyframes(&self, name: &str) -> Vec<i64> {
        self.frames[name]
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.pts)
            .collect()
    }

    pub(super) fn size(&self, name: &str) -> (u32, u32) {
        let params = &self
            .announcements
            .last()
            .unwrap()
            .iter()
            .find(|(n, _)| n == name);
        match params.map(|(_, p)| &p.codec) {
            Some(CodecParams::H264(c)) => (c.width, c.height),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Runs `events` through a ladder thread's core; the rung threads are real.
pub(super) fn run(settings: StageSettings, events: Vec<StreamEvent>) -> Collected {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let board = Arc::new(StatusBoard::default());
    let mut ladder = Ladder::new("test".to_string(), settings, tx, board);
    for event in events {
        ladder.handle(stamped(event));
        // Faster than real time: let the rungs drain their queues, as pacing would.
        while ladder.session.as_ref().is_some_and(|s| {
            s.rungs
                .iter()
                .any(|r| r.stats.pending.load(Ordering::Relaxed) > 0)
        }) {
            thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    ladder.handle(stamped(StreamEvent::Ended));
    let mut collected = Collected::default();
    let mut names: BTreeMap<RungId, String> = BTreeMap::new();
    while let Ok(out) = rx.try_recv() {
        match out {
            StageOutput::Renditions(list) => {
                names = list.iter().map(|(id, t)| (*id, t.name.clone())).collect();
                collected
                    .announcements
                    .push(list.into_iter().map(|(_, t)| (t.name, t.params)).collect());
            }
            StageOutput::Frame { id, frame, .. } => {
                // Frames of a rung no longer listed are dropped, as the pipeline does.
                if let Some(name) = names.get(&id) {
                    collected
                        .frames
                        .entry(name.clone())
                        .or_default()
                        .push(frame);
                }
            }
            StageOutput::Thumbnail(jpeg) => collected.thumbnails.push(jpeg),
            StageOutput::Ended { .. } => collected.ended = true,
            StageOutput::Stopped { rendition, .. } => panic!("{rendition} shed"),
        }
    }
    collected
}

pub(super) fn capture() -> Vec<StreamEvent> {
    let mut events = Vec::new();
    for tag in FlvFileReader::new(BFRAMES_FLV).unwrap() {
        let tag = tag.unwrap();
        if tag.tag_type != FlvTagType::Video {
            continue;
        }
        match parse_video_tag(tag.body, tag.timestamp_ms).unwrap() {
            VideoTag::SequenceHeader(c) => {
                events.push(StreamEvent::Tracks(vec![TrackParams::video(c)]))
            }
            VideoTag::Frame(f) => events.push(StreamEvent::Frame(f)),
            _ => {}
        }
    }
    events
}

/// A moving gradient, 4:2:0, picture `n`.
fn picture(width: u32, height: u32, n: usize) -> frame::Video {
    let mut picture = frame::Video::new(ENCODER_FORMAT, width, height);
    for plane in 0..3 {
        let stride = picture.stride(plane);
        let (w, h) = (picture.plane_width(plane), picture.plane_height(plane));
        let data = picture.data_mut(plane);
        for y in 0..h as usize {
            for x in 0..w as usize {
                data[y * stride + x] = ((x + 2 * y + 4 * n) % 200 + 16 * plane) as u8;
            }
        }
    }
    picture
}

/// `seconds` of 320x240 @ 30 fps H.264 with an IDR every `gop` pictures.
pub(super) fn generated(seconds: usize, gop: usize) -> Vec<StreamEvent> {
    generated_at(30, seconds, gop)
}

/// As [`generated`], at `fps` (whole) frames per second.
pub(super) fn generated_at(fps: usize, seconds: usize, gop: usize) -> Vec<StreamEvent> {
    let mut encoder = VideoEncoder::new(&EncoderSettings {
        width: 320,
        height: 240,
        frame_rate: (fps as u32, 1),
        bitrate_bps: 300_000,
        max_bitrate_bps: 300_000,
        vbv_buffer_bits: 300_000,
        preset: "ultrafast".to_string(),
        profile: H264Profile::High,
        threads: 1,
        keyint_max_frames: 0,
        parameter_set_id: 0,
        level_idc: None,
    })
    .unwrap();
    let mut events = vec![StreamEvent::Tracks(vec![TrackParams::video(
        encoder.config().clone(),
    )])];
    let interval = 90_000 / fps as i64;
    for n in 0..seconds * fps {
        let frames = encoder
            .encode(&picture(320, 240, n), n as i64 * interval, n % gop == 0)
            .unwrap();
        events.extend(frames.into_iter().map(StreamEvent::Frame));
    }
    events.extend(encoder.flush().unwrap().into_iter().map(StreamEvent::Frame));
    events
}
