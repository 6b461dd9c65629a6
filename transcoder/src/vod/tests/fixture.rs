//! An archived event made once per test run with the real codecs and packager: the
//! capture's video passed through as `source` (B-frames, a 1 s GOP), a `180p` rung
//! encoded with the live x264 settings from the decoded source (an IDR at each segment
//! boundary, the picture number drawn into every picture), and the capture's AAC as
//! `audio`; packaged in 2 s segments and stored under the archive's keys.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ffmpeg_next::frame;
use floodlight_archive::{
    AssetId, AssetManifest, AssetRendition, AssetSegment, AssetSource, EventId, Precision,
    RenditionKey, RenditionName,
};
use floodlight_media::cmaf::{read_init, read_segment};
use floodlight_media::flv::{
    AudioTag, FlvFileReader, FlvTagType, VideoTag, parse_audio_tag, parse_video_tag,
};
use floodlight_media::package::{PackagerConfig, PackagerOutput, StreamPackager};
use floodlight_media::push::RenditionDescriptor;
use floodlight_media::{
    AvcConfig, CodecParams, Frame, LadderEvent, RenditionTrack, TrackKind, TrackParams,
};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::av::{ENCODER_FORMAT, H264Profile, Picture, Scaler, VideoDecoder, VideoEncoder};
use crate::vod::VodSettings;

/// 6 s of H.264 High 320x240 @ 30 fps, 2 B-frames, IDR every 30 frames, AAC-LC 48 kHz
/// stereo (testdata/README.md).
const CAPTURE: &[u8] = include_bytes!("../../../testdata/ffmpeg_h264_bframes_gop30_aac_6s.flv");
/// Wall clock at ingest of the capture's time 0.
pub(super) const T0: i64 = 1_765_137_600_000;
pub(super) const EVENT: &str = "final";
pub(super) const RUNG: &str = "180p";
const RUNG_SIZE: (u32, u32) = (240, 180);
const RUNG_BITRATE: u32 = 200_000;
/// The packager's segment target: 2 s, the live default.
const SEGMENT_TARGET_90K: i64 = 180_000;
/// The bits of a picture number drawn into the rung: 8 squares along the top.
const INDEX_BITS: usize = 8;
const INDEX_SQUARE: usize = 20;
const INDEX_PITCH: usize = 28;

/// The settings the fixture's rung was encoded with, and the VOD tests render with.
pub(super) fn settings() -> VodSettings {
    VodSettings {
        x264_preset: "veryfast".to_string(),
        threads: 1,
        vbv_buffer_ms: 1000,
        poster_width: 640,
    }
}

pub(super) struct Archive {
    /// Every archived segment of the event, per rendition (source, 180p, audio).
    pub(super) renditions: Vec<AssetRendition>,
    objects: Vec<(Path, Bytes)>,
    /// The source's pictures decoded from the capture, by pts (90 kHz): the originals a
    /// re-encoded picture is compared with.
    pub(super) source_pictures: BTreeMap<i64, frame::Video>,
}

/// One encoded rung of a fixture's ladder.
pub(super) struct Rung {
    pub(super) name: &'static str,
    pub(super) size: (u32, u32),
    pub(super) bitrate_bps: u32,
    pub(super) profile: H264Profile,
}

/// The archive of [`CAPTURE`] with one rung, [`RUNG`].
pub(super) fn archive() -> &'static Archive {
    static ARCHIVE: OnceLock<Archive> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let rung = Rung {
            name: RUNG,
            size: RUNG_SIZE,
            bitrate_bps: RUNG_BITRATE,
            profile: H264Profile::Baseline,
        };
        build(CAPTURE, &[rung], &settings())
    })
}

impl Archive {
    /// A store holding every archived object.
    pub(super) async fn store(&self) -> Arc<InMemory> {
        let store = Arc::new(InMemory::new());
        for (path, bytes) in &self.objects {
            store
                .put(path, PutPayload::from(bytes.clone()))
                .await
                .unwrap();
        }
        store
    }

    pub(super) fn rendition(&self, name: &str) -> &AssetRendition {
        self.renditions.iter().find(|r| r.name() == name).unwrap()
    }

    /// The `segment` asset of `[start_ms, end_ms)` (ms after [`T0`]): every archived
    /// segment that overlaps it, as the archive's `covering` picks them.
    pub(super) fn segment_asset(&self, id: &str, start_ms: i64, end_ms: i64) -> AssetManifest {
        let (start, end) = (T0 + start_ms, T0 + end_ms);
        let renditions = self
            .renditions
            .iter()
            .map(|r| AssetRendition {
                descriptor: r.descriptor.clone(),
                segments: r
                    .segments
                    .iter()
                    .filter(|s| {
                        let from = i128::from(s.program_date_time_ms) * 90;
                        from < i128::from(end) * 90
                            && from + i128::from(s.duration_90k) > i128::from(start) * 90
                    })
                    .cloned()
                    .collect(),
            })
            .collect();
        AssetManifest {
            asset_id: AssetId::new(id).unwrap(),
            source: AssetSource {
                event_id: EventId::new(EVENT).unwrap(),
                start_ms: start,
                end_ms: end,
            },
            precision: Precision::Segment,
            renditions,
            poster: None,
        }
    }

    /// Every frame of a rendition in presentation order: its wall-clock time (exact ms as
    /// a fraction), pts and data. A frame's time is its
    /// segment's PROGRAM-DATE-TIME plus its presentation after the segment's first.
    pub(super) fn frames(&self, name: &str) -> Vec<ArchivedFrame> {
        let mut frames = Vec::new();
        for segment in &self.rendition(name).segments {
            let init = read_init(&self.object(&segment.init)).unwrap();
            let bytes = self.object(&segment.object);
            let mut samples = Vec::new();
            for read in read_segment(&bytes, &init).unwrap() {
                let mut dts = read.fragment.base_media_decode_time as i64;
                for sample in read.fragment.samples {
                    let next = dts + i64::from(sample.duration);
                    samples.push((dts + i64::from(sample.composition_offset), sample));
                    dts = next;
                }
            }
            let first = samples.iter().map(|(pts, _)| *pts).min().unwrap();
            samples.sort_by_key(|(pts, _)| *pts);
            for (pts, sample) in samples {
                let ms = segment.program_date_time_ms as f64
                    + (pts - first) as f64 * 1000.0 / f64::from(init.timescale);
                frames.push(ArchivedFrame {
                    ms: ms - T0 as f64,
                    pts,
                    data: sample.data,
                });
            }
        }
        frames
    }

    pub(super) fn object(&self, key: &str) -> Bytes {
        let path = Path::parse(key).unwrap();
        self.objects
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("{key} is archived"))
    }
}

#[derive(Debug, Clone)]
pub(super) struct ArchivedFrame {
    /// Wall clock, ms after [`T0`].
    pub(super) ms: f64,
    pub(super) pts: i64,
    pub(super) data: Bytes,
}

/// Draws `n` into a picture as [`INDEX_BITS`] black or white squares.
fn draw_index(picture: &mut frame::Video, n: usize) {
    let stride = picture.stride(0);
    let luma = picture.data_mut(0);
    for bit in 0..INDEX_BITS {
        let value = if n >> bit & 1 == 1 { 235 } else { 16 };
        for y in 4..4 + INDEX_SQUARE {
            for x in 0..INDEX_SQUARE {
                luma[y * stride + 4 + bit * INDEX_PITCH + x] = value;
            }
        }
    }
}

/// The picture number [`draw_index`] drew, read back from a decoded picture.
pub(super) fn read_index(picture: &frame::Video) -> usize {
    let stride = picture.stride(0);
    let luma = picture.data(0);
    (0..INDEX_BITS)
        .filter(|bit| {
            let (x, y) = (
                4 + bit * INDEX_PITCH + INDEX_SQUARE / 2,
                4 + INDEX_SQUARE / 2,
            );
            luma[y * stride + x] > 128
        })
        .map(|bit| 1 << bit)
        .sum()
}

/// Luma PSNR of two pictures of the same size, dB.
pub(super) fn psnr(a: &frame::Video, b: &frame::Video) -> f64 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let (sa, sb) = (a.stride(0), b.stride(0));
    let (la, lb) = (a.data(0), b.data(0));
    let mut squares = 0.0;
    for y in 0..a.height() as usize {
        for x in 0..a.width() as usize {
            let d = f64::from(la[y * sa + x]) - f64::from(lb[y * sb + x]);
            squares += d * d;
        }
    }
    let mse = squares / f64::from(a.width() * a.height());
    10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
}

/// Decodes one segment object with its init: its pictures in presentation order.
pub(super) fn decode(init: &[u8], segment: &Bytes) -> Vec<Picture> {
    let init = read_init(init).unwrap();
    let CodecParams::H264(config) = &init.params.codec else {
        panic!("video init");
    };
    let mut decoder = VideoDecoder::new(config).unwrap();
    let mut pictures = Vec::new();
    for read in read_segment(segment, &init).unwrap() {
        let mut dts = read.fragment.base_media_decode_time as i64;
        for sample in read.fragment.samples {
            let frame = Frame {
                track: TrackKind::Video,
                dts,
                pts: dts + i64::from(sample.composition_offset),
                keyframe: sample.keyframe,
                data: sample.data,
            };
            dts += i64::from(sample.duration);
            decoder.send(&frame).unwrap();
            pictures.extend(std::iter::from_fn(|| decoder.receive()));
        }
    }
    pictures.extend(decoder.flush());
    pictures
}

/// Archives `capture` (H.264 at 30 fps with an IDR every 1 or 2 s, AAC) as a live event
/// with `rungs` encoded from its pictures.
pub(super) fn build(capture: &[u8], rungs: &[Rung], settings: &VodSettings) -> Archive {
    crate::av::init();
    let (mut video, mut audio) = (None, None);
    let (mut video_frames, mut audio_frames) = (Vec::new(), Vec::new());
    for tag in FlvFileReader::new(capture).unwrap() {
        let tag = tag.unwrap();
        match tag.tag_type {
            FlvTagType::Video => match parse_video_tag(tag.body, tag.timestamp_ms).unwrap() {
                VideoTag::SequenceHeader(c) => video = Some(c),
                VideoTag::Frame(f) => video_frames.push(f),
                _ => {}
            },
            FlvTagType::Audio => match parse_audio_tag(tag.body, tag.timestamp_ms).unwrap() {
                AudioTag::SequenceHeader(c) => audio = Some(c),
                AudioTag::Frame(f) => audio_frames.push(f),
            },
            FlvTagType::ScriptData => {}
        }
    }
    let (video, audio): (AvcConfig, _) = (video.unwrap(), audio.unwrap());

    // The source decoded once, as the ladder does.
    let mut decoder = VideoDecoder::new(&video).unwrap();
    let mut pictures = Vec::new();
    for frame in &video_frames {
        decoder.send(frame).unwrap();
        pictures.extend(std::iter::from_fn(|| decoder.receive()));
    }
    pictures.extend(decoder.flush());
    assert_eq!(pictures.len(), video_frames.len());

    // The rungs, with the live settings and an IDR at every segment boundary (the
    // source's keyframes 2 s apart: the packager cuts there).
    let mut encoded = Vec::new();
    for rung in rungs {
        let rung_settings = settings.encoding().settings(
            rung.size,
            (30, 1),
            rung.bitrate_bps,
            rung.profile,
            SEGMENT_TARGET_90K,
        );
        let mut encoder = VideoEncoder::new(&rung_settings).unwrap();
        let (w, h) = (video.width, video.height);
        let mut scaler = Scaler::new(w, h, ENCODER_FORMAT, rung.size.0, rung.size.1).unwrap();
        let mut frames = Vec::new();
        for (n, picture) in pictures.iter().enumerate() {
            let mut scaled = scaler.scale(&picture.frame).unwrap();
            draw_index(&mut scaled, n);
            frames.extend(encoder.encode(&scaled, picture.pts, n % 60 == 0).unwrap());
        }
        frames.extend(encoder.flush().unwrap());
        encoded.push((encoder.config().clone(), frames));
    }

    let mut packager = StreamPackager::new(PackagerConfig {
        segment_target: SEGMENT_TARGET_90K as u32,
        ..PackagerConfig::default()
    });
    let track = |name: &str, params, hint| RenditionTrack {
        name: name.to_string(),
        params,
        bandwidth_hint_bps: hint,
    };
    let mut renditions = vec![track("source", TrackParams::video(video.clone()), None)];
    for (rung, (config, _)) in rungs.iter().zip(&encoded) {
        let hint = Some(u64::from(rung.bitrate_bps));
        renditions.push(track(rung.name, TrackParams::video(config.clone()), hint));
    }
    renditions.push(track("audio", TrackParams::audio(audio), None));
    packager
        .handle_ladder(LadderEvent::Renditions(renditions), T0)
        .unwrap();
    let audio_index = rungs.len() + 1;
    let mut frames: Vec<(usize, Frame)> = video_frames.into_iter().map(|f| (0, f)).collect();
    for (i, (_, rung_frames)) in encoded.into_iter().enumerate() {
        frames.extend(rung_frames.into_iter().map(|f| (i + 1, f)));
    }
    frames.extend(audio_frames.into_iter().map(|f| (audio_index, f)));
    frames.sort_by_key(|(r, f)| (f.dts, *r));
    let ended = T0 + frames.last().map_or(0, |(_, f)| f.dts / 90) + 100;
    for (rendition, frame) in frames {
        let now = T0 + frame.dts / 90;
        packager
            .handle_ladder(LadderEvent::Frame { rendition, frame }, now)
            .unwrap();
    }
    packager.handle_ladder(LadderEvent::Ended, ended).unwrap();

    let event = EventId::new(EVENT).unwrap();
    let key = |name: &str| RenditionKey::new(event.clone(), RenditionName::new(name).unwrap());
    let mut descriptors: Vec<RenditionDescriptor> = Vec::new();
    let mut objects = Vec::new();
    // (rendition, msn) → the segment's record and bytes.
    let mut segments: BTreeMap<(String, u64), (AssetSegment, Vec<u8>)> = BTreeMap::new();
    while let Some(out) = packager.poll_output() {
        match out {
            PackagerOutput::Rendition(d) => {
                descriptors.retain(|o| o.name != d.name);
                descriptors.push(d);
            }
            PackagerOutput::Init {
                rendition,
                version,
                data,
            } => objects.push((key(&rendition).init(version), data)),
            PackagerOutput::Part {
                rendition,
                meta,
                data,
            } => {
                let path = key(&rendition).segment(meta.msn);
                let init = key(&rendition).init(meta.init_version).to_string();
                let (record, bytes) = segments.entry((rendition, meta.msn)).or_insert_with(|| {
                    let record = AssetSegment {
                        object: path.to_string(),
                        init,
                        duration_90k: 0,
                        program_date_time_ms: meta.program_date_time_ms.unwrap(),
                        bytes: 0,
                        iframe_bytes: meta.sync_sample_bytes.map(u64::from),
                        discontinuity: meta.discontinuity,
                        gap: false,
                    };
                    (record, Vec::new())
                });
                bytes.extend_from_slice(&data);
                record.bytes = bytes.len() as u64;
                // Summed in seconds, as the origin's archive records them.
                let seconds = record.duration_90k as f64 / 90_000.0 + meta.duration;
                record.duration_90k = (seconds * 90_000.0).round() as u64;
            }
        }
    }
    let renditions = descriptors
        .into_iter()
        .map(|descriptor| {
            let segments = segments
                .iter()
                .filter(|((r, _), _)| *r == descriptor.name)
                .map(|(_, (record, bytes))| {
                    let path = Path::parse(&record.object).unwrap();
                    objects.push((path, Bytes::from(bytes.clone())));
                    record.clone()
                })
                .collect();
            AssetRendition {
                descriptor,
                segments,
            }
        })
        .collect();
    Archive {
        renditions,
        objects,
        source_pictures: pictures.into_iter().map(|p| (p.pts, p.frame)).collect(),
    }
}
