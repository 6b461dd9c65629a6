//! StreamPackager over synthetic streams: every packaging rule of ARCHITECTURE.md's
//! "LL-HLS packaging rules", checked on the parts as written (parsed back with mp4-atom).

use bytes::Bytes;
use mp4_atom::{Decode, Mdat, Moof};

use super::*;
use crate::aac::AdtsHeader;
use crate::avc::annexb_nal_units;
use crate::track::{AacConfig, AvcConfig};

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
    let sizes: u64 = entries
        .iter()
        .map(|e| u64::from(e.size.or(traf.tfhd.default_sample_size).unwrap()))
        .sum();
    assert_eq!(sizes, mdat.data.len() as u64);
    let first = entries.first().expect("a part has samples");
    ParsedPart {
        sequence_number: moof.mfhd.sequence_number,
        base_media_decode_time: traf.tfdt.as_ref().unwrap().base_media_decode_time,
        durations: entries
            .iter()
            .map(|e| e.duration.or(traf.tfhd.default_sample_duration).unwrap())
            .collect(),
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
        assert!(parsed_video[0].first_cts > 0 || audio_rate == 44_100);
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
