//! StreamPackager over synthetic streams: every packaging rule of ARCHITECTURE.md's
//! "LL-HLS packaging rules", checked on the parts as written (parsed back with mp4-atom).

use bytes::Bytes;
use mp4_atom::{Decode, Mdat, Moof};

use super::*;
use crate::aac::AdtsHeader;
use crate::avc::annexb_nal_units;
use crate::push::RenditionKind;
use crate::track::{AacConfig, AvcConfig, CodecParams, TrackParams};

/// Wall clock of the synthetic publisher's first frame.
const EPOCH_MS: i64 = 1_700_000_000_000;

fn avc_config() -> AvcConfig {
    let stream = include_bytes!("../../testdata/ffmpeg_h264_320x240_annexb.h264");
    let nal = |kind: u8| {
        annexb_nal_units(stream)
            .find(|n| n.first().map(|h| h & 0x1f) == Some(kind))
            .unwrap()
    };
    AvcConfig::from_parameter_sets(nal(7), nal(8)).unwrap()
}

/// AAC-LC, 48 kHz stereo (ISO/IEC 14496-3 §1.6.2.1: 00010 0011 0010 000).
fn aac_48k() -> AacConfig {
    AacConfig::from_asc(Bytes::from_static(&[0x11, 0x90])).unwrap()
}

/// AAC-LC 44.1 kHz mono, from an ffmpeg ADTS capture.
fn aac_44k() -> AacConfig {
    AdtsHeader::parse(include_bytes!("../../testdata/ffmpeg_aac_44100_mono.adts"))
        .unwrap()
        .audio_specific_config()
        .unwrap()
}

#[derive(Clone, Copy)]
struct VideoShape {
    /// DTS steps (90 kHz), cycled.
    steps: &'static [i64],
    /// Frames per GOP.
    gop: usize,
    /// IBBP-style reordering: pts ≠ dts, cts > 0.
    bframes: bool,
}

impl VideoShape {
    /// Video parameters whose SPS frame rate matches the shape, as an encoder's VUI
    /// timing info would say.
    fn params(self) -> TrackParams {
        let mean_step = self.steps.iter().sum::<i64>() as f64 / self.steps.len() as f64;
        TrackParams::video(AvcConfig {
            frame_rate: Some(90_000.0 / mean_step),
            ..avc_config()
        })
    }
}

/// 29.97, 25, 50, 59.94 fps, and FLV's millisecond-rounded 29.97 (33/33/34 ms); 2 s GOPs.
const SHAPES: [VideoShape; 5] = [
    VideoShape {
        steps: &[3003],
        gop: 60,
        bframes: false,
    },
    VideoShape {
        steps: &[3600],
        gop: 50,
        bframes: false,
    },
    VideoShape {
        steps: &[1800],
        gop: 100,
        bframes: false,
    },
    VideoShape {
        steps: &[1501, 1502],
        gop: 120,
        bframes: false,
    },
    VideoShape {
        steps: &[2970, 2970, 3060],
        gop: 60,
        bframes: false,
    },
];

/// Where the frame at `position` (decode order) of a GOP is displayed: I P B B P B B ...
/// in decode order is I B B P B B P ... on screen; a short last group keeps its order.
fn display_position(position: usize, gop: usize) -> usize {
    if position == 0 {
        return 0;
    }
    let group = 1 + (position - 1) / 3 * 3;
    if group + 3 > gop {
        return position;
    }
    match (position - 1) % 3 {
        0 => group + 2,
        1 => group,
        _ => group + 1,
    }
}

fn video_frames(shape: VideoShape, duration_90k: i64, start: i64) -> Vec<Frame> {
    let step = |i: usize| shape.steps[i % shape.steps.len()];
    let mut dts = vec![start];
    while dts.len() < 3 || dts[dts.len() - 3] < start + duration_90k {
        dts.push(dts[dts.len() - 1] + step(dts.len() - 1));
    }
    let count = dts.len() - 3;
    // Two frames of reordering delay keep every pts ≥ its dts.
    let delay = 2 * shape.steps.iter().max().unwrap();
    (0..count)
        .map(|i| {
            let position = i % shape.gop;
            let pts = if shape.bframes {
                dts[i - position + display_position(position, shape.gop)] + delay
            } else {
                dts[i]
            };
            Frame {
                track: TrackKind::Video,
                dts: dts[i],
                pts,
                keyframe: position == 0,
                data: Bytes::from(vec![0x65; 40 + i % 7]),
            }
        })
        .collect()
}

/// AAC frames stamped as FLV does: whole milliseconds, ×90.
fn audio_frames(sample_rate: i64, duration_90k: i64, start: i64) -> Vec<Frame> {
    (0..)
        .map(|i: i64| start + (i * 1024 * 1000 + sample_rate / 2) / sample_rate * 90)
        .take_while(|&ts| ts < start + duration_90k)
        .map(|ts| Frame {
            track: TrackKind::Audio,
            dts: ts,
            pts: ts,
            keyframe: true,
            data: Bytes::from_static(&[0x21; 9]),
        })
        .collect()
}

/// Interleaved by dts as an FLV muxer writes them (video first on a tie).
fn interleave(mut video: Vec<Frame>, audio: Vec<Frame>) -> Vec<Frame> {
    video.extend(audio);
    video.sort_by_key(|f| (f.dts, f.track));
    video
}

fn feed(packager: &mut StreamPackager, frames: Vec<Frame>, clock_offset_ms: i64) {
    for frame in frames {
        let now = EPOCH_MS + clock_offset_ms + frame.dts / 90;
        packager
            .handle_event(StreamEvent::Frame(frame), now)
            .unwrap();
    }
}

fn drain(packager: &mut StreamPackager) -> Vec<PackagerOutput> {
    std::iter::from_fn(|| packager.poll_output()).collect()
}

fn parts(outputs: &[PackagerOutput], name: &str) -> Vec<(PartMeta, Bytes)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            PackagerOutput::Part {
                rendition,
                meta,
                data,
            } if rendition == name => Some((meta.clone(), data.clone())),
            _ => None,
        })
        .collect()
}

#[derive(Debug)]
struct ParsedPart {
    sequence_number: u32,
    base_media_decode_time: u64,
    durations: Vec<u32>,
    /// Sample sizes in bytes: silent stereo AAC frames are 7.
    sizes: Vec<u32>,
    first_cts: i64,
    /// From the trun/tfhd sample flags; `None` if only `trex` has them.
    first_is_sync: Option<bool>,
}

impl ParsedPart {
    fn duration(&self) -> u64 {
        self.durations.iter().map(|&d| u64::from(d)).sum()
    }
}

/// One moof + mdat, exactly (ISO/IEC 14496-12 §8.8.4, §8.1.1).
fn parse_part(data: &[u8]) -> ParsedPart {
    let mut buf = data;
    let moof = Moof::decode(&mut buf).unwrap();
    let mdat = Mdat::decode(&mut buf).unwrap();
    assert!(buf.is_empty(), "a part is one moof + mdat");
    assert_eq!(moof.traf.len(), 1, "CMAF: one track per fragment");
    let traf = &moof.traf[0];
    let entries: Vec<_> = traf.trun.iter().flat_map(|t| t.samples.iter()).collect();
    let sizes: Vec<u32> = entries
        .iter()
        .map(|e| e.size.or(traf.tfhd.default_sample_size).unwrap())
        .collect();
    assert_eq!(
        sizes.iter().map(|&s| u64::from(s)).sum::<u64>(),
        mdat.data.len() as u64
    );
    let first = entries.first().expect("a part has samples");
    ParsedPart {
        sequence_number: moof.mfhd.sequence_number,
        base_media_decode_time: traf.tfdt.as_ref().unwrap().base_media_decode_time,
        durations: entries
            .iter()
            .map(|e| e.duration.or(traf.tfhd.default_sample_duration).unwrap())
            .collect(),
        sizes,
        first_cts: first.cts.unwrap_or(0),
        // ISO/IEC 14496-12 §8.8.3.1: sample_is_non_sync_sample is bit 16.
        first_is_sync: first
            .flags
            .or(traf.tfhd.default_sample_flags)
            .map(|f| f & 0x0001_0000 == 0),
    }
}

/// The PART-TARGET a rendition's descriptor advertises, seconds.
fn part_target(outputs: &[PackagerOutput], rendition: &str) -> f64 {
    outputs
        .iter()
        .find_map(|o| match o {
            PackagerOutput::Rendition(d) if d.name == rendition => {
                Some(f64::from(d.part_target_ms) / 1000.0)
            }
            _ => None,
        })
        .expect("descriptor before parts")
}

/// The rules every rendition's part sequence keeps; returns the parsed parts.
fn check_rendition(
    parts: &[(PartMeta, Bytes)],
    timescale: u32,
    part_target: f64,
) -> Vec<ParsedPart> {
    assert!(!parts.is_empty());
    let parsed: Vec<ParsedPart> = parts.iter().map(|(_, data)| parse_part(data)).collect();
    for (i, ((meta, _), part)) in parts.iter().zip(&parsed).enumerate() {
        // RFC 8216bis §4.4.4.9: "MUST be less than or equal to the Part Target Duration".
        assert!(meta.duration <= part_target, "part {i}: {meta:?}");
        // §4.4.4.9: at least 85% of the target, except INDEPENDENT parts and the last part
        // of a segment (a segment cut by the next keyframe, or a session's end).
        if !meta.independent && !meta.ends_segment {
            assert!(
                meta.duration >= 0.85 * part_target,
                "part {i} under 85%: {meta:?}"
            );
        }
        // PartMeta.duration is the exact sum of the sample durations.
        assert_eq!(meta.duration, part.duration() as f64 / f64::from(timescale));
        // §4.4.4.6: EXT-X-PROGRAM-DATE-TIME on every segment, i.e. its first part.
        assert_eq!(
            meta.program_date_time_ms.is_some(),
            meta.part == 0,
            "part {i}"
        );
        assert!(!meta.discontinuity || meta.part == 0);
        // §4.4.4.9: INDEPENDENT=YES exactly on parts starting with a sync sample.
        assert_eq!(Some(meta.independent), part.first_is_sync, "part {i}");
        if meta.part == 0 && timescale == TIMESCALE {
            // Video segments start on a keyframe.
            assert!(
                meta.independent,
                "segment {} starts on a keyframe",
                meta.msn
            );
        }
        let Some(((next, _), next_part)) = parts.get(i + 1).zip(parsed.get(i + 1)) else {
            continue;
        };
        // MSN and part index: monotonic, no gaps.
        if meta.ends_segment {
            assert_eq!((next.msn, next.part), (meta.msn + 1, 0), "after part {i}");
        } else {
            assert_eq!(
                (next.msn, next.part),
                (meta.msn, meta.part + 1),
                "after part {i}"
            );
        }
        // ISO/IEC 14496-12 §8.8.5: mfhd sequence numbers strictly increase.
        assert!(next_part.sequence_number > part.sequence_number);
        let end = part.base_media_decode_time + part.duration();
        if next.discontinuity {
            // A reconnect's timeline continues after the previous session.
            assert!(next_part.base_media_decode_time >= end, "after part {i}");
        } else {
            // Contiguous: tfdt = previous tfdt + previous duration.
            assert_eq!(next_part.base_media_decode_time, end, "after part {i}");
        }
        assert!(next.last_frame_arrival_ms >= meta.last_frame_arrival_ms);
    }
    parsed
}

fn msns(parts: &[(PartMeta, Bytes)]) -> Vec<u64> {
    let mut msns: Vec<u64> = parts.iter().map(|(m, _)| m.msn).collect();
    msns.dedup();
    msns
}

fn start(packager: &mut StreamPackager, tracks: Vec<TrackParams>) {
    packager
        .handle_event(StreamEvent::Tracks(tracks), EPOCH_MS)
        .unwrap();
}

#[test]
fn synthetic_streams_keep_every_packaging_rule() {
    for shape in SHAPES {
        for bframes in [false, true] {
            let shape = VideoShape { bframes, ..shape };
            let mut packager = StreamPackager::new(PackagerConfig::default());
            start(
                &mut packager,
                vec![shape.params(), TrackParams::audio(aac_48k())],
            );
            let frames = interleave(
                video_frames(shape, 10 * 90_000, 0),
                audio_frames(48_000, 10 * 90_000, 0),
            );
            feed(&mut packager, frames, 0);
            packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
            let outputs = drain(&mut packager);

            // The descriptor before the init, the init before the first part.
            let PackagerOutput::Rendition(source) = &outputs[0] else {
                panic!("{:?}", outputs[0]);
            };
            assert_eq!(
                (source.name.as_str(), source.kind),
                ("source", RenditionKind::Video)
            );
            // §4.4.4.9's 85% floor: 200 ms rounds to whole frames (201 at 29.97/59.94).
            let expected_part_target = match shape.steps {
                [3003] | [1501, 1502] => 201,
                _ => 200,
            };
            assert_eq!(
                (source.part_target_ms, source.segment_target_ms),
                (expected_part_target, 2000)
            );
            assert!(
                matches!(&outputs[1], PackagerOutput::Init { rendition, version: 0, .. } if rendition == "source")
            );
            let PackagerOutput::Rendition(audio) = &outputs[2] else {
                panic!("{:?}", outputs[2]);
            };
            assert_eq!((audio.name.as_str(), audio.channels), ("audio", Some(2)));
            assert!(
                matches!(&outputs[3], PackagerOutput::Init { rendition, version: 0, .. } if rendition == "audio")
            );

            let video = parts(&outputs, "source");
            let audio = parts(&outputs, "audio");
            let parsed_video = check_rendition(&video, 90_000, part_target(&outputs, "source"));
            let parsed_audio = check_rendition(&audio, 48_000, part_target(&outputs, "audio"));
            // 2 s GOPs: the keyframes are exactly the segment starts, so only part 0 of
            // each segment is independent.
            for (meta, _) in &video {
                assert_eq!(meta.independent, meta.part == 0);
            }
            assert_eq!(msns(&video), (0..5).collect::<Vec<_>>());
            // Audio segments follow video's: same MSNs, each starting at the first audio
            // frame presented at or after the video segment's keyframe.
            assert_eq!(msns(&audio), msns(&video));
            // (The first segments both start with the stream.)
            for msn in msns(&video).into_iter().skip(1) {
                let first = |parts: &[(PartMeta, Bytes)]| {
                    parts.iter().position(|(m, _)| m.msn == msn).unwrap()
                };
                let v = &parsed_video[first(&video)];
                let a = &parsed_audio[first(&audio)];
                let keyframe_pts =
                    (v.base_media_decode_time as i64 + v.first_cts) as f64 / 90_000.0;
                let audio_start = a.base_media_decode_time as f64 / 48_000.0;
                let lead = audio_start - keyframe_pts;
                assert!(
                    (-0.001..1024.0 / 48_000.0).contains(&lead),
                    "msn {msn}: {lead}"
                );
            }
            let stats = packager.stats();
            assert_eq!(stats.parts_emitted, (video.len() + audio.len()) as u64);
            assert_eq!(stats.segments_completed, 10);
            assert_eq!(stats.frames_rejected, 0);
        }
    }
}

#[test]
fn camera_video_without_sps_frame_rate_keeps_the_part_floor_despite_jitter() {
    // WebRTC cameras: no VUI frame rate, 20 fps on a capture clock that jitters by ±1 ms,
    // so four frames may span 201 ms. PART-TARGET gets UNKNOWN_RATE_SLACK (205 ms) and
    // every part keeps four frames, within §4.4.4.9's floor and never over the target.
    let shape = VideoShape {
        steps: &[4500, 4590, 4410, 4500, 4590, 4500, 4410],
        gop: 40,
        bframes: false,
    };
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let params = TrackParams::video(AvcConfig {
        frame_rate: None,
        ..avc_config()
    });
    start(&mut packager, vec![params, TrackParams::audio(aac_48k())]);
    let frames = interleave(
        video_frames(shape, 8 * 90_000, 0),
        audio_frames(48_000, 8 * 90_000, 0),
    );
    feed(&mut packager, frames, 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let video = parts(&outputs, "source");
    check_rendition(&video, 90_000, part_target(&outputs, "source"));
    assert!(video.len() > 30, "{} parts", video.len());
    assert_eq!(part_target(&outputs, "source"), 0.205);
}

#[test]
fn audio_durations_are_exact_sample_counts() {
    // FLV's millisecond stamps at 44.1 kHz jitter by up to 0.5 ms; the part durations
    // still add up from exact 1024-sample frames.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    start(
        &mut packager,
        vec![SHAPES[0].params(), TrackParams::audio(aac_44k())],
    );
    let frames = interleave(
        video_frames(SHAPES[0], 6 * 90_000, 0),
        audio_frames(44_100, 6 * 90_000, 0),
    );
    feed(&mut packager, frames, 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let audio = parts(&outputs, "audio");
    let parsed = check_rendition(&audio, 44_100, 0.2);
    assert!(parsed.iter().flat_map(|p| &p.durations).all(|&d| d == 1024));
    // 200 ms at 44.1 kHz is 8820 ticks: 8 frames (8192) fit, 9 (9216) do not.
    assert!(
        audio
            .iter()
            .all(|(m, _)| m.ends_segment || m.duration == 8192.0 / 44_100.0)
    );
}

#[test]
fn reconnect_continues_numbering_and_timeline_with_discontinuity() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let tracks = vec![SHAPES[0].params(), TrackParams::audio(aac_48k())];
    let shape = VideoShape {
        bframes: true,
        ..SHAPES[0]
    };
    start(&mut packager, tracks.clone());
    feed(
        &mut packager,
        interleave(
            video_frames(shape, 5 * 90_000, 0),
            audio_frames(48_000, 5 * 90_000, 0),
        ),
        0,
    );
    packager
        .handle_event(StreamEvent::Ended, EPOCH_MS + 5000)
        .unwrap();
    // Frames after Ended and before the next session's Tracks belong to no session.
    let stray = video_frames(shape, 3003, 0).remove(0);
    assert!(matches!(
        packager.handle_event(StreamEvent::Frame(stray), EPOCH_MS + 6000),
        Err(PackagerError::NoTrackParams {
            track: TrackKind::Video
        })
    ));
    // ffmpeg reconnects 10 s later with timestamps from 0 again.
    packager
        .handle_event(StreamEvent::Tracks(tracks), EPOCH_MS + 15_000)
        .unwrap();
    feed(
        &mut packager,
        interleave(
            video_frames(shape, 5 * 90_000, 0),
            audio_frames(48_000, 5 * 90_000, 0),
        ),
        15_000,
    );
    packager
        .handle_event(StreamEvent::Ended, EPOCH_MS + 20_000)
        .unwrap();
    let outputs = drain(&mut packager);
    // Same parameters: no new descriptor or init.
    let inits = outputs
        .iter()
        .filter(|o| matches!(o, PackagerOutput::Init { .. }))
        .count();
    assert_eq!(inits, 2);
    for (name, timescale) in [("source", 90_000), ("audio", 48_000)] {
        let parts = parts(&outputs, name);
        check_rendition(&parts, timescale, part_target(&outputs, name));
        let reconnect = parts.iter().position(|(m, _)| m.discontinuity).unwrap();
        let (before, after) = (&parts[reconnect - 1].0, &parts[reconnect].0);
        assert!(before.ends_segment);
        // The numbering continues: the next MSN, part 0, with the new wall clock.
        assert_eq!((after.msn, after.part), (before.msn + 1, 0));
        assert!(after.program_date_time_ms.unwrap() >= EPOCH_MS + 15_000);
        assert_eq!(parts.iter().filter(|(m, _)| m.discontinuity).count(), 1);
        // The timeline never goes back: session 2 starts right after session 1 ended.
        let end = {
            let p = parse_part(&parts[reconnect - 1].1);
            p.base_media_decode_time + p.duration()
        };
        let resumed = parse_part(&parts[reconnect].1).base_media_decode_time;
        assert!(
            resumed >= end && resumed - end < u64::from(timescale) / 20,
            "{name}"
        );
    }
    assert_eq!(
        msns(&parts(&outputs, "source")),
        msns(&parts(&outputs, "audio"))
    );
}

#[test]
fn bad_frames_are_refused_and_the_stream_goes_on() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let mut video = video_frames(SHAPES[1], 3 * 90_000, 0).into_iter();
    assert!(matches!(
        packager.handle_event(StreamEvent::Frame(video.next().unwrap()), EPOCH_MS),
        Err(PackagerError::NoTrackParams {
            track: TrackKind::Video
        })
    ));
    start(&mut packager, vec![TrackParams::video(avc_config())]);
    let audio = audio_frames(48_000, 90_000, 0).remove(0);
    assert!(matches!(
        packager.handle_event(StreamEvent::Frame(audio), EPOCH_MS),
        Err(PackagerError::NoTrackParams {
            track: TrackKind::Audio
        })
    ));
    let mut accepted = Vec::new();
    for (i, frame) in video.enumerate() {
        // The first frame after Tracks is not a keyframe: skipped until one comes.
        let frame = if i == 48 {
            Frame {
                keyframe: true,
                ..frame
            }
        } else {
            frame
        };
        if i == 60 {
            let mut repeated = frame.clone();
            repeated.dts = accepted.last().map(|f: &Frame| f.dts).unwrap();
            let dts = repeated.dts;
            assert!(matches!(
                packager.handle_event(StreamEvent::Frame(repeated), EPOCH_MS),
                Err(PackagerError::NonMonotonicDts { track: TrackKind::Video, dts: d }) if d == dts
            ));
        }
        packager
            .handle_event(StreamEvent::Frame(frame.clone()), EPOCH_MS)
            .unwrap();
        if i >= 48 {
            accepted.push(frame);
        }
    }
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let video = parts(&outputs, "source");
    let parsed = check_rendition(&video, 90_000, 0.2);
    assert_eq!(parsed[0].base_media_decode_time, 49 * 3600);
    assert_eq!(
        parsed.iter().map(|p| p.durations.len()).sum::<usize>(),
        accepted.len()
    );
    let stats = packager.stats();
    assert_eq!(stats.frames_rejected, 3);
    assert_eq!(stats.frames_before_keyframe, 48);
}

#[test]
fn new_parameters_start_a_segment_with_a_new_init_version() {
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let config = avc_config();
    // One encoder, its clock running on; new parameters 2 s in, with the keyframe.
    let frames = interleave(
        video_frames(SHAPES[1], 6 * 90_000, 0),
        audio_frames(48_000, 6 * 90_000, 0),
    );
    let (first, second): (Vec<Frame>, Vec<Frame>) =
        frames.into_iter().partition(|f| f.dts < 2 * 90_000);
    start(
        &mut packager,
        vec![
            TrackParams::video(config.clone()),
            TrackParams::audio(aac_48k()),
        ],
    );
    feed(&mut packager, first, 0);
    // A repeated identical sequence header changes nothing.
    start(
        &mut packager,
        vec![
            TrackParams::video(config.clone()),
            TrackParams::audio(aac_48k()),
        ],
    );
    let changed = AvcConfig {
        width: 640,
        ..config
    };
    start(
        &mut packager,
        vec![TrackParams::video(changed), TrackParams::audio(aac_48k())],
    );
    feed(&mut packager, second, 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let inits: Vec<(&str, u32)> = outputs
        .iter()
        .filter_map(|o| match o {
            PackagerOutput::Init {
                rendition, version, ..
            } => Some((rendition.as_str(), *version)),
            _ => None,
        })
        .collect();
    assert_eq!(inits, [("source", 0), ("audio", 0), ("source", 1)]);
    let descriptor = outputs.iter().rev().find_map(|o| match o {
        PackagerOutput::Rendition(d) => Some(d),
        _ => None,
    });
    assert_eq!(descriptor.unwrap().width, Some(640));
    let video = parts(&outputs, "source");
    check_rendition(&video, 90_000, 0.2);
    let switch = video.iter().position(|(m, _)| m.init_version == 1).unwrap();
    // RFC 8216bis §4.4.4.5: a new EXT-X-MAP applies from a segment boundary; §4.4.4.3:
    // a change of encoding parameters SHOULD carry EXT-X-DISCONTINUITY.
    assert!(video[switch - 1].0.ends_segment);
    assert!(video[switch].0.discontinuity && video[switch].0.part == 0);
    assert!(video[switch..].iter().all(|(m, _)| m.init_version == 1));
    assert_eq!(video.iter().filter(|(m, _)| m.discontinuity).count(), 1);
    let audio = parts(&outputs, "audio");
    check_rendition(&audio, 48_000, 0.2);
    assert!(audio.iter().all(|(m, _)| m.init_version == 0));
    assert_eq!(msns(&audio), msns(&video));
    // Both renditions cut at the change: the same part of the stream, same MSN.
    let reconnect = audio.iter().position(|(m, _)| m.discontinuity).unwrap();
    assert_eq!(audio[reconnect].0.msn, video[switch].0.msn);
    assert_eq!(parse_part(&video[switch].1).base_media_decode_time, 180_000);
    assert_eq!(
        parse_part(&audio[reconnect].1).base_media_decode_time,
        94 * 1024
    );
    assert_eq!(packager.stats().frames_before_keyframe, 0);
}

#[test]
fn audio_alone_cuts_segments_and_numbering_starts_at_first_msn() {
    let config = PackagerConfig {
        first_msn: 42,
        ..PackagerConfig::default()
    };
    let mut packager = StreamPackager::new(config);
    start(&mut packager, vec![TrackParams::audio(aac_48k())]);
    feed(&mut packager, audio_frames(48_000, 7 * 90_000, 0), 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let audio = parts(&outputs, "audio");
    check_rendition(&audio, 48_000, 0.2);
    let msns = msns(&audio);
    assert_eq!(msns.first(), Some(&42));
    assert_eq!(msns.len(), 4);
    // PROGRAM-DATE-TIME: the wall clock at ingest of the segment's first frame.
    assert_eq!(audio[0].0.program_date_time_ms, Some(EPOCH_MS));
}

#[test]
fn default_config_is_200ms_parts_and_2s_segments() {
    assert_eq!(
        PackagerConfig::default(),
        PackagerConfig {
            part_target: 18_000,
            segment_target: 180_000,
            first_msn: 0,
            first_init_version: 0,
            continues: false,
            access: PlaybackAccess::Public,
            dvr_window_secs: None,
        }
    );
}

/// What RTMP ingest would hand over for an FLV capture: the sequence headers as `Tracks`,
/// then every frame, stamped with a wall clock that follows the timestamps.
fn flv_session(flv: &[u8]) -> (Vec<TrackParams>, Vec<Frame>) {
    use crate::flv::{
        AudioTag, FlvFileReader, FlvTagType, VideoTag, parse_audio_tag, parse_video_tag,
    };
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    for tag in FlvFileReader::new(flv).unwrap() {
        let tag = tag.unwrap();
        match tag.tag_type {
            FlvTagType::Video => match parse_video_tag(tag.body, tag.timestamp_ms).unwrap() {
                VideoTag::SequenceHeader(c) => tracks.push(TrackParams::video(c)),
                VideoTag::Frame(f) => frames.push(f),
                _ => {}
            },
            FlvTagType::Audio => match parse_audio_tag(tag.body, tag.timestamp_ms).unwrap() {
                AudioTag::SequenceHeader(c) => tracks.push(TrackParams::audio(c)),
                AudioTag::Frame(f) => frames.push(f),
            },
            FlvTagType::ScriptData => {}
        }
    }
    (tracks, frames)
}

#[test]
fn ffmpeg_captures_package_into_valid_parts() {
    // (capture, audio timescale, video segments): 4 s at 30 fps with B-frames and 2 s
    // GOPs; 1 s of 29.97 fps baseline with a 1 s GOP (one segment: under the target).
    let captures: [(&[u8], u32, usize); 2] = [
        (
            include_bytes!("../../testdata/ffmpeg_h264_aac_bframes.flv"),
            48_000,
            2,
        ),
        (
            include_bytes!("../../testdata/ffmpeg_h264_baseline_2997_aac_44100_mono.flv"),
            44_100,
            1,
        ),
    ];
    for (flv, audio_rate, segments) in captures {
        let (tracks, frames) = flv_session(flv);
        assert_eq!(tracks.len(), 2);
        let mut packager = StreamPackager::new(PackagerConfig::default());
        start(&mut packager, tracks);
        let frame_count = frames.len();
        feed(&mut packager, frames, 0);
        packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
        let outputs = drain(&mut packager);
        let video = parts(&outputs, "source");
        let audio = parts(&outputs, "audio");
        let parsed_video = check_rendition(&video, 90_000, part_target(&outputs, "source"));
        let parsed_audio = check_rendition(&audio, audio_rate, part_target(&outputs, "audio"));
        assert_eq!(msns(&video).len(), segments);
        assert_eq!(msns(&audio), msns(&video));
        // Every frame is in exactly one part; B-frames keep their composition offsets.
        let samples: usize = parsed_video
            .iter()
            .chain(&parsed_audio)
            .map(|p| p.durations.len())
            .sum();
        assert_eq!(samples, frame_count);
        // The first keyframe is presented at its part's tfdt (no edit list needed); with
        // B-frames the later samples carry negative composition offsets (trun v1).
        assert_eq!(parsed_video[0].first_cts, 0);
        assert_eq!(packager.stats().frames_rejected, 0);
        // The init segments parse as ftyp + moov.
        for output in &outputs {
            if let PackagerOutput::Init { data, .. } = output {
                let mut buf = &data[..];
                mp4_atom::Ftyp::decode(&mut buf).unwrap();
                mp4_atom::Moov::decode(&mut buf).unwrap();
                assert!(buf.is_empty());
            }
        }
    }
}

/// AAC-LC 48 kHz 7.1 (channelConfiguration 7): a layout the packager has no silent frame
/// for, to exercise the fallbacks.
fn aac_48k_7_1() -> AacConfig {
    AacConfig::from_asc(Bytes::from_static(&[0x11, 0xb8])).unwrap()
}

/// Size of a silent stereo AAC frame (`silence.rs`); the synthetic audio frames are 9.
const SILENT_STEREO_FRAME: u32 = 7;

fn discontinuities(parts: &[(PartMeta, Bytes)]) -> Vec<u64> {
    parts
        .iter()
        .filter(|(m, _)| m.discontinuity)
        .map(|(m, _)| m.msn)
        .collect()
}

/// Feeds frames stamped with the wall clock `now` gives each.
fn feed_with(
    packager: &mut StreamPackager,
    frames: Vec<Frame>,
    mut now: impl FnMut(&Frame) -> i64,
) {
    for frame in frames {
        let now = now(&frame);
        packager
            .handle_event(StreamEvent::Frame(frame), now)
            .unwrap();
    }
}

/// 25 fps with B-frames: a keyframe is presented 80 ms after its decode time.
const BFRAMES_25: VideoShape = VideoShape {
    steps: &[3600],
    gop: 50,
    bframes: true,
};

/// Interleaved A/V from `start` for `duration` (90 kHz), 48 kHz audio.
fn av(start: i64, duration: i64) -> Vec<Frame> {
    interleave(
        video_frames(BFRAMES_25, duration, start),
        audio_frames(48_000, duration, start),
    )
}

/// A/V with B-frames cut off right after a video keyframe: video has begun segment N+1
/// (the keyframe's presentation is 80 ms after its decode time), audio has not reached it.
fn cut_after_keyframe(until: i64) -> Vec<Frame> {
    av(0, until + 3600)
        .into_iter()
        .filter(|f| f.dts <= until)
        .collect()
}

#[test]
fn session_ending_after_a_keyframe_keeps_audio_and_video_msns_equal() {
    // I1: video begins a segment, the session ends before audio reaches it. Audio gets
    // that segment too (silence up to the keyframe, or, for a layout without a silent
    // frame, its last frame), so neither falls behind over reconnects.
    for (audio_config, silent) in [(aac_48k(), true), (aac_48k_7_1(), false)] {
        let mut packager = StreamPackager::new(PackagerConfig::default());
        let tracks = vec![BFRAMES_25.params(), TrackParams::audio(audio_config)];
        for session in 0..3 {
            let clock_offset_ms = session * 10_000;
            start(&mut packager, tracks.clone());
            feed(
                &mut packager,
                cut_after_keyframe(2 * 90_000),
                clock_offset_ms,
            );
            packager
                .handle_event(StreamEvent::Ended, EPOCH_MS + clock_offset_ms + 2000)
                .unwrap();
        }
        let outputs = drain(&mut packager);
        let video = parts(&outputs, "source");
        let audio = parts(&outputs, "audio");
        check_rendition(&video, 90_000, part_target(&outputs, "source"));
        let parsed = check_rendition(&audio, 48_000, part_target(&outputs, "audio"));
        assert_eq!(msns(&video), (0..6).collect::<Vec<_>>());
        assert_eq!(msns(&audio), msns(&video));
        assert_eq!(discontinuities(&audio), [2, 4]);
        assert_eq!(discontinuities(&video), discontinuities(&audio));
        let stats = packager.stats();
        assert_eq!(stats.silent_audio_frames > 0, silent);
        if silent {
            // Audio's segment 1 is silence from its last frame to the keyframe's
            // presentation (2.08 s): it begins at the first silent frame at or after it.
            let first = audio.iter().position(|(m, _)| m.msn == 1).unwrap();
            let start = parsed[first].base_media_decode_time as i64 * 90_000 / 48_000;
            assert!((187_200..187_200 + 1920).contains(&start), "{start}");
            assert!(
                parsed[first]
                    .sizes
                    .iter()
                    .all(|&s| s == SILENT_STEREO_FRAME)
            );
        }
    }
}

#[test]
fn audio_gap_beside_video_is_filled_with_silence() {
    // I1: audio stops from 3 s to 8 s while video goes on. Silence keeps an audio segment
    // for every video segment, exact 1024-sample frames, and the audio playlist going.
    let frames = interleave(
        video_frames(BFRAMES_25, 12 * 90_000, 0),
        audio_frames(48_000, 3 * 90_000, 0)
            .into_iter()
            .chain(audio_frames(48_000, 4 * 90_000, 8 * 90_000))
            .collect(),
    );
    let (before, after): (Vec<Frame>, Vec<Frame>) =
        frames.into_iter().partition(|f| f.dts < 7 * 90_000);
    let mut packager = StreamPackager::new(PackagerConfig::default());
    start(
        &mut packager,
        vec![BFRAMES_25.params(), TrackParams::audio(aac_48k())],
    );
    feed(&mut packager, before, 0);
    // At 7 s, audio missing for 4 s: silence has kept it within the jump threshold (2 s)
    // of video, without waiting for the audio to come back.
    let so_far = drain(&mut packager);
    let audio_end = check_rendition(&parts(&so_far, "audio"), 48_000, 0.2)
        .last()
        .map(|p| (p.base_media_decode_time + p.duration()) as f64 / 48_000.0)
        .unwrap();
    assert!(audio_end > 4.5, "{audio_end}");
    feed(&mut packager, after, 0);
    packager
        .handle_event(StreamEvent::Ended, EPOCH_MS + 12_000)
        .unwrap();
    let outputs: Vec<PackagerOutput> = so_far.into_iter().chain(drain(&mut packager)).collect();
    let video = parts(&outputs, "source");
    let audio = parts(&outputs, "audio");
    check_rendition(&video, 90_000, part_target(&outputs, "source"));
    let parsed = check_rendition(&audio, 48_000, part_target(&outputs, "audio"));
    assert_eq!(msns(&video), (0..6).collect::<Vec<_>>());
    assert_eq!(msns(&audio), msns(&video));
    assert!(discontinuities(&audio).is_empty() && discontinuities(&video).is_empty());
    assert!(parsed.iter().flat_map(|p| &p.durations).all(|&d| d == 1024));
    // 5 s at 48 kHz is 234.4 frames of 1024.
    let silent = parsed
        .iter()
        .flat_map(|p| &p.sizes)
        .filter(|&&s| s == SILENT_STEREO_FRAME)
        .count() as u64;
    assert_eq!(silent, packager.stats().silent_audio_frames);
    assert!((233..=236).contains(&silent), "{silent}");
    assert_eq!(packager.stats().frames_rejected, 0);
}

#[test]
fn audio_gap_without_a_silent_frame_skips_the_msns_it_has_nothing_for() {
    // The fallback: the audio rendition skips the MSNs of the video segments it has no
    // audio for, and resumes at the MSN of the video segment its next frame falls in.
    let frames = interleave(
        video_frames(BFRAMES_25, 12 * 90_000, 0),
        audio_frames(48_000, 3 * 90_000, 0)
            .into_iter()
            .chain(audio_frames(48_000, 4 * 90_000, 8 * 90_000))
            .collect(),
    );
    let mut packager = StreamPackager::new(PackagerConfig::default());
    start(
        &mut packager,
        vec![BFRAMES_25.params(), TrackParams::audio(aac_48k_7_1())],
    );
    feed(&mut packager, frames, 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    assert_eq!(msns(&parts(&outputs, "source")), (0..6).collect::<Vec<_>>());
    // Video's segment 3 runs from 6.08 s (keyframe presentation) to 8.08 s: audio's 8.0 s
    // frame is in it. Segment 2 (4.08 s to 6.08 s) has no audio.
    assert_eq!(msns(&parts(&outputs, "audio")), [0, 1, 3, 4, 5]);
    assert_eq!(packager.stats().silent_audio_frames, 0);
}

#[test]
fn audio_stamped_apart_from_video_gets_no_hour_of_silence() {
    // A publisher whose audio clock runs an hour ahead of its video clock from the first
    // frame on: audio is placed as stamped, not after an hour of silence.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    start(
        &mut packager,
        vec![BFRAMES_25.params(), TrackParams::audio(aac_48k())],
    );
    let video = video_frames(BFRAMES_25, 4 * 90_000, 0);
    let audio = audio_frames(48_000, 4 * 90_000, 3_600 * 90_000);
    let alternating = video
        .into_iter()
        .zip(audio)
        .flat_map(|(v, a)| [v, a])
        .collect();
    feed(&mut packager, alternating, 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    check_rendition(&parts(&outputs, "audio"), 48_000, 0.2);
    let stats = packager.stats();
    assert_eq!((stats.silent_audio_frames, stats.frames_rejected), (0, 0));
}

#[test]
fn session_without_audio_keeps_audio_going_in_silence() {
    // I1: a reconnect without audio between two with audio. The audio rendition carries
    // silence through it: its MSNs and discontinuities stay those of video.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let with_audio = vec![BFRAMES_25.params(), TrackParams::audio(aac_48k())];
    start(&mut packager, with_audio.clone());
    feed(&mut packager, av(0, 4 * 90_000), 0);
    packager
        .handle_event(StreamEvent::Ended, EPOCH_MS + 4000)
        .unwrap();
    start(&mut packager, vec![BFRAMES_25.params()]);
    feed(
        &mut packager,
        video_frames(BFRAMES_25, 4 * 90_000, 0),
        10_000,
    );
    packager
        .handle_event(StreamEvent::Ended, EPOCH_MS + 14_000)
        .unwrap();
    start(&mut packager, with_audio);
    feed(&mut packager, av(0, 4 * 90_000), 20_000);
    packager
        .handle_event(StreamEvent::Ended, EPOCH_MS + 24_000)
        .unwrap();
    let outputs = drain(&mut packager);
    let video = parts(&outputs, "source");
    let audio = parts(&outputs, "audio");
    check_rendition(&video, 90_000, part_target(&outputs, "source"));
    let parsed = check_rendition(&audio, 48_000, part_target(&outputs, "audio"));
    assert_eq!(msns(&video), (0..6).collect::<Vec<_>>());
    assert_eq!(msns(&audio), msns(&video));
    assert_eq!(discontinuities(&video), [2, 4]);
    assert_eq!(discontinuities(&audio), discontinuities(&video));
    // Segments 2 and 3 are all silence.
    for ((meta, _), part) in audio.iter().zip(&parsed) {
        let silent = part.sizes.iter().all(|&s| s == SILENT_STEREO_FRAME);
        assert_eq!(silent, (2..4).contains(&meta.msn), "{meta:?}");
    }
    assert_eq!(packager.stats().frames_rejected, 0);
}

#[test]
fn session_without_audio_and_no_silent_frame_realigns_audio_msns() {
    // The fallback: the audio rendition has nothing for the session without audio; when
    // audio returns it starts at video's MSN (a jump in the audio playlist's numbering).
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let with_audio = vec![BFRAMES_25.params(), TrackParams::audio(aac_48k_7_1())];
    start(&mut packager, with_audio.clone());
    feed(&mut packager, av(0, 4 * 90_000), 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    start(&mut packager, vec![BFRAMES_25.params()]);
    feed(&mut packager, video_frames(BFRAMES_25, 4 * 90_000, 0), 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    start(&mut packager, with_audio);
    feed(&mut packager, av(0, 4 * 90_000), 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let audio = parts(&outputs, "audio");
    assert_eq!(msns(&parts(&outputs, "source")), (0..6).collect::<Vec<_>>());
    assert_eq!(msns(&audio), [0, 1, 4, 5]);
    let resumed = audio.iter().position(|(m, _)| m.msn == 4).unwrap();
    assert!(audio[resumed].0.discontinuity && audio[resumed].0.part == 0);
}

#[test]
fn publisher_clock_jump_becomes_a_discontinuity_not_a_giant_segment() {
    // I2: the encoder's clock jumps forward an hour, or back to 0, on the same connection.
    // Before: one sample of an hour (a giant part and segment), or every frame refused
    // until the timestamps caught up.
    for (new_start, stragglers) in [(3_600 * 90_000, false), (0, false), (0, true)] {
        let mut frames = av(0, 6 * 90_000);
        let mut resumed = av(new_start, 6 * 90_000);
        if stragglers {
            // The last audio frame of the old clock reaches ingest after the first video
            // frame of the new one.
            let last_audio = frames
                .iter()
                .rposition(|f| f.track == TrackKind::Audio)
                .unwrap();
            resumed.insert(1, frames.remove(last_audio));
        }
        frames.extend(resumed);
        let mut packager = StreamPackager::new(PackagerConfig::default());
        start(
            &mut packager,
            vec![BFRAMES_25.params(), TrackParams::audio(aac_48k())],
        );
        let mut arrival = EPOCH_MS;
        feed_with(&mut packager, frames, |_| {
            arrival += 10;
            arrival
        });
        packager
            .handle_event(StreamEvent::Ended, arrival + 10)
            .unwrap();
        let outputs = drain(&mut packager);
        for (name, timescale) in [("source", 90_000), ("audio", 48_000)] {
            let parts = parts(&outputs, name);
            let parsed = check_rendition(&parts, timescale, part_target(&outputs, name));
            assert_eq!(discontinuities(&parts), [3], "{name} {new_start}");
            // The timeline continues right after the last frame before the jump.
            let after = parts.iter().position(|(m, _)| m.discontinuity).unwrap();
            let end = parsed[after - 1].base_media_decode_time + parsed[after - 1].duration();
            let resumed = parsed[after].base_media_decode_time;
            assert!(
                resumed + u64::from(timescale) / 20 > end
                    && resumed < end + u64::from(timescale) / 20,
                "{name}: {end} {resumed}"
            );
        }
        let (video, audio) = (parts(&outputs, "source"), parts(&outputs, "audio"));
        assert_eq!(msns(&video), (0..6).collect::<Vec<_>>());
        assert_eq!(msns(&audio), msns(&video));
        let stats = packager.stats();
        assert_eq!(stats.timestamp_jumps, 1);
        assert_eq!(stats.frames_rejected, 0);
        assert_eq!(stats.frames_before_keyframe, 0);
    }
}

#[test]
fn reconnect_whose_first_frame_is_later_audio_keeps_the_keyframe() {
    // M6: after a reconnect the first frame to arrive is audio stamped 100 ms, then video's
    // keyframe stamped 0. Placing the session by the audio frame alone put the keyframe
    // 100 ms before video's end: refused, and a GOP lost.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let tracks = vec![SHAPES[1].params(), TrackParams::audio(aac_48k())];
    start(&mut packager, tracks.clone());
    feed(
        &mut packager,
        interleave(
            video_frames(SHAPES[1], 4 * 90_000, 0),
            audio_frames(48_000, 4 * 90_000, 0),
        ),
        0,
    );
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    start(&mut packager, tracks);
    let mut audio = audio_frames(48_000, 4 * 90_000, 9000);
    let early: Vec<Frame> = audio.drain(..3).collect();
    let session = early
        .into_iter()
        .chain(interleave(video_frames(SHAPES[1], 4 * 90_000, 0), audio))
        .collect();
    feed(&mut packager, session, 10_000);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let video = parts(&outputs, "source");
    let parsed = check_rendition(&video, 90_000, 0.2);
    check_rendition(&parts(&outputs, "audio"), 48_000, 0.2);
    let reconnect = video.iter().position(|(m, _)| m.discontinuity).unwrap();
    // Video resumes with its keyframe where the stream ended: audio's end, 4.0107 s
    // (188 frames of 1024 at 48 kHz), 10.7 ms after video's.
    assert_eq!(
        parsed[reconnect].base_media_decode_time,
        188 * 1024 * 90_000 / 48_000
    );
    let stats = packager.stats();
    assert_eq!(
        (
            stats.frames_rejected,
            stats.frames_before_keyframe,
            stats.offset_raises
        ),
        (0, 0, 1)
    );
    assert_eq!(msns(&parts(&outputs, "audio")), msns(&video));
}

#[test]
fn late_audio_sequence_header_joins_without_touching_video() {
    // I6: the audio sequence header arrives 3 s into the session. Video goes on: no
    // truncated segment, no discontinuity, no frame lost waiting for a keyframe.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let frames = av(0, 8 * 90_000);
    let (before, after): (Vec<Frame>, Vec<Frame>) =
        frames.into_iter().partition(|f| f.dts < 3 * 90_000);
    start(&mut packager, vec![BFRAMES_25.params()]);
    feed(
        &mut packager,
        before
            .into_iter()
            .filter(|f| f.track == TrackKind::Video)
            .collect(),
        0,
    );
    packager
        .handle_event(
            StreamEvent::Tracks(vec![BFRAMES_25.params(), TrackParams::audio(aac_48k())]),
            EPOCH_MS + 3000,
        )
        .unwrap();
    feed(&mut packager, after, 0);
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let video = parts(&outputs, "source");
    let audio = parts(&outputs, "audio");
    let parsed = check_rendition(&video, 90_000, part_target(&outputs, "source"));
    check_rendition(&audio, 48_000, part_target(&outputs, "audio"));
    assert_eq!(msns(&video), [0, 1, 2, 3]);
    assert!(discontinuities(&video).is_empty() && discontinuities(&audio).is_empty());
    // Segments start on every 2 s keyframe: none was cut short.
    let starts: Vec<u64> = video
        .iter()
        .zip(&parsed)
        .filter(|((m, _), _)| m.part == 0)
        .map(|(_, p)| p.base_media_decode_time)
        .collect();
    // tfdt is the keyframe's presentation time: decode times shifted by the B-frame
    // reorder delay (2 frames at 3600 ticks), see `Rendition::presentation_shift`.
    assert_eq!(starts, [7_200, 187_200, 367_200, 547_200]);
    assert!(
        parsed
            .iter()
            .zip(&video)
            .all(|(p, (m, _))| m.part != 0 || p.first_cts == 0)
    );
    // Audio starts within video's segment 1 (2 s to 4 s), as part 0 of MSN 1.
    assert_eq!((audio[0].0.msn, audio[0].0.part), (1, 0));
    assert_eq!(msns(&audio), [1, 2, 3]);
    let stats = packager.stats();
    assert_eq!(
        (stats.frames_rejected, stats.frames_before_keyframe),
        (0, 0)
    );
}

#[test]
fn video_joining_audio_alone_takes_the_segment_in_progress() {
    // Audio cuts its own segments until video appears 3 s in; video's first segment is
    // audio's segment in progress, and from then on audio follows video's keyframes.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    start(&mut packager, vec![TrackParams::audio(aac_48k())]);
    feed(&mut packager, audio_frames(48_000, 3 * 90_000, 0), 0);
    packager
        .handle_event(
            StreamEvent::Tracks(vec![TrackParams::audio(aac_48k()), BFRAMES_25.params()]),
            EPOCH_MS + 3000,
        )
        .unwrap();
    feed(
        &mut packager,
        interleave(
            video_frames(BFRAMES_25, 5 * 90_000, 3 * 90_000),
            audio_frames(48_000, 5 * 90_000, 3 * 90_000),
        ),
        0,
    );
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let video = parts(&outputs, "source");
    let audio = parts(&outputs, "audio");
    check_rendition(&video, 90_000, part_target(&outputs, "source"));
    let parsed = check_rendition(&audio, 48_000, part_target(&outputs, "audio"));
    assert_eq!(msns(&audio), [0, 1, 2, 3]);
    assert_eq!(msns(&video), [1, 2, 3]);
    assert!(discontinuities(&audio).is_empty() && discontinuities(&video).is_empty());
    // Audio's segments 2 and 3 start at video's keyframes (5 s and 7 s, presented 80 ms
    // later), to within an audio frame.
    for msn in [2, 3] {
        let first = audio.iter().position(|(m, _)| m.msn == msn).unwrap();
        let start = parsed[first].base_media_decode_time as i64 * 90_000 / 48_000;
        let keyframe = (2 * msn as i64 + 1) * 90_000 + 7200;
        assert!(
            (keyframe..keyframe + 1920).contains(&start),
            "{msn}: {start}"
        );
    }
    assert_eq!(packager.stats().frames_rejected, 0);
}

#[test]
fn audio_parameter_change_leaves_video_alone() {
    // I6: audio switches from 48 kHz stereo to 44.1 kHz mono 3 s in. Audio cuts there and
    // starts MSN 2 with a new init; video keeps every frame and marks its own segment 2
    // (from the 4 s keyframe) as following a discontinuity, so both renditions count the
    // same discontinuities.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let video_params = BFRAMES_25.params();
    start(
        &mut packager,
        vec![video_params.clone(), TrackParams::audio(aac_48k())],
    );
    feed(&mut packager, av(0, 3 * 90_000), 0);
    packager
        .handle_event(
            StreamEvent::Tracks(vec![video_params, TrackParams::audio(aac_44k())]),
            EPOCH_MS + 3000,
        )
        .unwrap();
    let mut video = video_frames(BFRAMES_25, 8 * 90_000, 0);
    video.retain(|f| f.dts >= 3 * 90_000);
    feed(
        &mut packager,
        interleave(video, audio_frames(44_100, 5 * 90_000, 3 * 90_000)),
        0,
    );
    packager.handle_event(StreamEvent::Ended, EPOCH_MS).unwrap();
    let outputs = drain(&mut packager);
    let inits: Vec<(&str, u32)> = outputs
        .iter()
        .filter_map(|o| match o {
            PackagerOutput::Init {
                rendition, version, ..
            } => Some((rendition.as_str(), *version)),
            _ => None,
        })
        .collect();
    assert_eq!(inits, [("source", 0), ("audio", 0), ("audio", 1)]);
    let video = parts(&outputs, "source");
    let audio = parts(&outputs, "audio");
    let parsed = check_rendition(&video, 90_000, part_target(&outputs, "source"));
    let switch = audio.iter().position(|(m, _)| m.init_version == 1).unwrap();
    check_rendition(&audio[..switch], 48_000, 0.2);
    check_rendition(&audio[switch..], 44_100, 0.2);
    assert!(audio[switch - 1].0.ends_segment);
    assert_eq!((audio[switch].0.msn, audio[switch].0.part), (2, 0));
    // Audio's segment 2 starts at the change, where its last 48 kHz frame ended (141
    // frames: 3.008 s, rounded up at 44.1 kHz); video's at its keyframe (4 s).
    assert_eq!(
        parse_part(&audio[switch].1).base_media_decode_time,
        (141 * 1024 * 44_100_u64).div_ceil(48_000)
    );
    assert_eq!(discontinuities(&audio), [2]);
    assert_eq!(discontinuities(&video), [2]);
    let starts: Vec<u64> = video
        .iter()
        .zip(&parsed)
        .filter(|((m, _), _)| m.part == 0)
        .map(|(_, p)| p.base_media_decode_time)
        .collect();
    // tfdt is the keyframe's presentation time: decode times shifted by the B-frame
    // reorder delay (2 frames at 3600 ticks), see `Rendition::presentation_shift`.
    assert_eq!(starts, [7_200, 187_200, 367_200, 547_200]);
    assert!(
        parsed
            .iter()
            .zip(&video)
            .all(|(p, (m, _))| m.part != 0 || p.first_cts == 0)
    );
    assert_eq!(msns(&audio), msns(&video));
    let stats = packager.stats();
    assert_eq!(
        (stats.frames_rejected, stats.frames_before_keyframe),
        (0, 0)
    );
}

#[test]
fn program_date_times_follow_media_time_through_ingest_bursts() {
    // M2: frames reach ingest in bursts every 500 ms. PROGRAM-DATE-TIME follows the media
    // timeline from one anchor (RFC 8216bis §4.4.4.6), so the dates of consecutive
    // segments differ by exactly their durations and audio and video agree; the parts
    // still report when their last frame really arrived.
    let mut packager = StreamPackager::new(PackagerConfig::default());
    start(
        &mut packager,
        vec![BFRAMES_25.params(), TrackParams::audio(aac_48k())],
    );
    let burst = |f: &Frame| EPOCH_MS + (f.dts / 90 / 500 + 1) * 500;
    feed_with(&mut packager, av(0, 10 * 90_000), burst);
    packager
        .handle_event(StreamEvent::Ended, EPOCH_MS + 10_500)
        .unwrap();
    let outputs = drain(&mut packager);
    let mut starts = Vec::new();
    for (name, timescale) in [("source", 90_000), ("audio", 48_000)] {
        let parts = parts(&outputs, name);
        let parsed = check_rendition(&parts, timescale, part_target(&outputs, name));
        let segments: Vec<(i64, f64, f64)> = msns(&parts)
            .into_iter()
            .map(|msn| {
                let (first, (meta, _)) = parts
                    .iter()
                    .enumerate()
                    .find(|(_, (m, _))| m.msn == msn)
                    .unwrap();
                let duration: f64 = parts
                    .iter()
                    .filter(|(m, _)| m.msn == msn)
                    .map(|(m, _)| m.duration)
                    .sum();
                let p = &parsed[first];
                let presentation =
                    (p.base_media_decode_time as f64 + p.first_cts as f64) / f64::from(timescale);
                (meta.program_date_time_ms.unwrap(), duration, presentation)
            })
            .collect();
        for pair in segments.windows(2) {
            let step = pair[1].0 - pair[0].0;
            assert!(
                (step as f64 - pair[0].1 * 1000.0).abs() <= 1.0,
                "{name}: {pair:?}"
            );
        }
        for (meta, _) in &parts {
            assert_eq!((meta.last_frame_arrival_ms - EPOCH_MS) % 500, 0);
        }
        starts.push(segments);
    }
    // Same MSN, same anchor: the dates differ exactly as the presentation times do.
    for (video, audio) in starts[0].iter().zip(&starts[1]) {
        let dates = (audio.0 - video.0) as f64;
        let media = (audio.2 - video.2) * 1000.0;
        assert!((dates - media).abs() <= 1.0, "{video:?} {audio:?}");
    }
    // The first frame (video, decode time 0) arrived at the first burst.
    assert_eq!(starts[1][0].0, EPOCH_MS + 500);
}

/// A random publisher (xorshift): track changes, reconnects, clock jumps both ways and audio
/// gaps between frames of 25 fps video with B-frames and AAC. Returns the events (for
/// failure messages) and whether the audio had a silent frame and never went on without
/// video.
fn random_publisher(packager: &mut StreamPackager, seed: &mut u64) -> (Vec<String>, bool) {
    let mut random = |n: u64| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n
    };
    let stereo_only = random(2) == 0;
    let mut audio_alone = false;
    let mut events = Vec::new();
    let mut tracks = vec![BFRAMES_25.params(), TrackParams::audio(aac_48k())];
    let (mut video_dts, mut audio_dts, mut frame) = (0_i64, 0_i64, 0_usize);
    let mut now = EPOCH_MS;
    let mut live = true;
    packager
        .handle_event(StreamEvent::Tracks(tracks.clone()), now)
        .unwrap();
    for _ in 0..400 {
        now += random(60) as i64;
        match random(300) {
            0 => {
                packager.handle_event(StreamEvent::Ended, now).unwrap();
                live = false;
                events.push("ended".to_owned());
            }
            1 | 2 => {
                tracks.clear();
                if random(4) != 0 {
                    let mut video = BFRAMES_25.params();
                    if let (0, CodecParams::H264(avc)) = (random(3), &mut video.codec) {
                        avc.width = 640;
                    }
                    tracks.push(video);
                }
                if random(4) != 0 {
                    let audio = match random(if stereo_only { 1 } else { 3 }) {
                        0 => aac_48k(),
                        1 => aac_44k(),
                        _ => aac_48k_7_1(),
                    };
                    tracks.push(TrackParams::audio(audio));
                }
                audio_alone |= tracks.len() == 1 && tracks[0].kind == TrackKind::Audio;
                if !live {
                    (video_dts, audio_dts, frame) = (0, 0, 0);
                }
                live = true;
                packager
                    .handle_event(StreamEvent::Tracks(tracks.clone()), now)
                    .unwrap();
                events.push(format!(
                    "tracks {:?}",
                    tracks.iter().map(|t| t.kind).collect::<Vec<_>>()
                ));
            }
            3 => {
                let jump = if random(2) == 0 {
                    3_600 * 90_000
                } else {
                    -(random(20) as i64) * 90_000
                };
                video_dts += jump;
                audio_dts += jump;
                events.push(format!("jump {jump}"));
            }
            4 => {
                audio_dts += random(6 * 90_000) as i64;
                events.push("audio gap".to_owned());
            }
            _ => {}
        }
        let video_on = tracks.iter().any(|t| t.kind == TrackKind::Video);
        let audio_on = tracks.iter().any(|t| t.kind == TrackKind::Audio);
        let next = if video_on && (!audio_on || video_dts <= audio_dts) {
            frame += 1;
            video_dts += 3600;
            Frame {
                track: TrackKind::Video,
                dts: video_dts - 3600,
                pts: video_dts + 3600,
                keyframe: frame % 50 == 1,
                data: Bytes::from_static(&[0x65; 40]),
            }
        } else if audio_on {
            audio_dts += 1920;
            Frame {
                track: TrackKind::Audio,
                dts: audio_dts - 1920,
                pts: audio_dts - 1920,
                keyframe: true,
                data: Bytes::from_static(&[0x21; 9]),
            }
        } else {
            continue;
        };
        // Refused frames (out of order after a small step back, overlapping silence) are
        // the publisher's loss; the stream goes on.
        let _ = packager.handle_event(StreamEvent::Frame(next), now);
    }
    packager.handle_event(StreamEvent::Ended, now).unwrap();
    (events, stereo_only && !audio_alone)
}

#[test]
fn random_publishers_keep_numbering_and_timeline_rules() {
    let mut seed = 0x5eed_u64;
    for round in 0..150 {
        let mut packager = StreamPackager::new(PackagerConfig::default());
        let (events, audio_always_fillable) = random_publisher(&mut packager, &mut seed);
        let outputs = drain(&mut packager);
        let mut segments = Vec::new();
        for name in ["source", "audio"] {
            let (mut timescale, mut target) = (0.0, 0.0);
            let mut previous: Option<(PartMeta, f64)> = None;
            let mut msns = std::collections::BTreeSet::new();
            for output in &outputs {
                match output {
                    PackagerOutput::Rendition(d) if d.name == name => {
                        target = f64::from(d.part_target_ms) / 1000.0;
                    }
                    PackagerOutput::Init {
                        rendition, data, ..
                    } if rendition == name => {
                        let mut buf = &data[..];
                        mp4_atom::Ftyp::decode(&mut buf).unwrap();
                        let moov = mp4_atom::Moov::decode(&mut buf).unwrap();
                        timescale = f64::from(moov.trak[0].mdia.mdhd.timescale);
                    }
                    PackagerOutput::Part {
                        rendition,
                        meta,
                        data,
                    } if rendition == name => {
                        let part = parse_part(data);
                        let start = part.base_media_decode_time as f64 / timescale;
                        let context = format!("{name} round {round} {meta:?} {events:?}");
                        // §4.4.4.9: ≤ PART-TARGET, but for a lone frame longer than it.
                        assert!(meta.duration <= target || part.durations.len() == 1);
                        assert_eq!(meta.program_date_time_ms.is_some(), meta.part == 0);
                        match &previous {
                            None => assert_eq!(meta.part, 0, "{context}"),
                            // The origin's rule: the next part, or part 0 of a later MSN.
                            Some((last, _)) if last.ends_segment => {
                                assert!(meta.part == 0 && meta.msn > last.msn, "{context}");
                            }
                            Some((last, _)) => {
                                assert_eq!((meta.msn, meta.part), (last.msn, last.part + 1));
                            }
                        }
                        // The timeline never goes back.
                        if let Some((_, end)) = &previous {
                            assert!(start >= end - 1e-4, "{context}: starts {start} < {end}");
                        }
                        let end = start + part.duration() as f64 / timescale;
                        previous = Some((meta.clone(), end));
                        msns.insert(meta.msn);
                    }
                    _ => {}
                }
            }
            segments.push(msns);
        }
        if audio_always_fillable {
            // Silence gives audio a segment for every video MSN, without skipping any.
            assert!(
                segments[0].is_subset(&segments[1]),
                "round {round} {events:?}"
            );
            let audio: Vec<u64> = segments[1].iter().copied().collect();
            assert!(
                audio.windows(2).all(|w| w[1] == w[0] + 1),
                "round {round} {events:?}"
            );
        }
    }
}

#[test]
fn opus_is_refused_not_packaged() {
    let opus = TrackParams::opus(crate::track::OpusConfig {
        channels: 2,
        pre_skip: 0,
    });
    // The transcoder turns Opus into AAC; the packager and the CMAF writer say so clearly.
    assert!(matches!(
        cmaf::write_init(&opus),
        Err(cmaf::CmafError::UnsupportedCodec("Opus"))
    ));
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let err = packager
        .handle_event(
            StreamEvent::Tracks(vec![TrackParams::video(avc_config()), opus]),
            EPOCH_MS,
        )
        .unwrap_err();
    assert!(err.to_string().contains("Opus"), "{err}");
    assert!(drain(&mut packager).is_empty(), "nothing half-started");
}

mod ladder;
