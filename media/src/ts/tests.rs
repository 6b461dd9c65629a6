//! The demuxer on real captures (ffmpeg over SRT, a resolution change, a PTS wrap, HEVC)
//! and on crafted packets: resync, PSI, PES defects, limits.

use super::*;
use crate::track::CodecParams;

const SRT_CAPTURE: &[u8] = include_bytes!("../../testdata/ts/ffmpeg_srt_h264_aac.ts");
const RESOLUTION_CHANGE: &[u8] =
    include_bytes!("../../testdata/ts/ffmpeg_h264_resolution_change.ts");
const PTS_WRAP: &[u8] = include_bytes!("../../testdata/ts/ffmpeg_pts_wrap.ts");
const HEVC: &[u8] = include_bytes!("../../testdata/ts/ffmpeg_hevc.ts");

/// Demuxes `ts` fed in `chunk`-byte pieces, the n-th arriving at n ms; all events,
/// then the stats.
fn demux_stamped(ts: &[u8], chunk: usize) -> (Vec<StampedEvent>, TsStats) {
    let mut demuxer = TsDemuxer::new();
    let mut events = Vec::new();
    for (n, piece) in ts.chunks(chunk).enumerate() {
        demuxer.push(piece, n as i64).unwrap();
        events.extend(std::iter::from_fn(|| demuxer.poll_event()));
    }
    demuxer.finish();
    events.extend(std::iter::from_fn(|| demuxer.poll_event()));
    (events, demuxer.stats().clone())
}

fn demux(ts: &[u8], chunk: usize) -> (Vec<StreamEvent>, TsStats) {
    let (events, stats) = demux_stamped(ts, chunk);
    (events.into_iter().map(|e| e.event).collect(), stats)
}

fn frames(events: &[StreamEvent], track: TrackKind) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Frame(f) if f.track == track => Some(f),
            _ => None,
        })
        .collect()
}

fn tracks(events: &[StreamEvent]) -> Vec<&Vec<TrackParams>> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Tracks(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn srt_capture_gives_both_tracks_then_every_frame() {
    // 3 s at 30 fps, AAC 48 kHz (46.875 frames/s), as srt-live-transmit received it
    // in 1316-byte SRT messages.
    let (events, stats) = demux(SRT_CAPTURE, 1316);
    assert_eq!(stats.dropped_frames, 0, "{stats:?}");
    assert_eq!(stats.continuity_errors, 0);
    let announced = tracks(&events);
    assert_eq!(announced.len(), 1, "tracks announced once");
    let StreamEvent::Tracks(first) = &events[0] else {
        panic!("first event {:?}", events[0]);
    };
    let CodecParams::H264(avc) = &first[0].codec else {
        panic!("{first:?}")
    };
    assert_eq!((avc.width, avc.height, avc.profile_idc), (320, 240, 100));
    assert_eq!(avc.nal_length_size, 4);
    let CodecParams::Aac(aac) = &first[1].codec else {
        panic!("{first:?}")
    };
    assert_eq!(
        (aac.object_type, aac.sample_rate, aac.channels),
        (2, 48000, 2)
    );

    let video = frames(&events, TrackKind::Video);
    assert_eq!(video.len(), 90);
    assert!(video[0].keyframe);
    assert_eq!(video.iter().filter(|f| f.keyframe).count(), 3, "GOP 30");
    // B-frames: composition offsets, decode order strictly rising by 1/30 s.
    assert!(video.iter().any(|f| f.pts > f.dts));
    assert!(video.windows(2).all(|w| w[1].dts - w[0].dts == 3000));
    // ffmpeg's mpegts muxer starts at 1.4 s plus the B-frame delay.
    assert_eq!(video[0].dts, 126_000);
    for f in &video {
        // Length-prefixed NAL units that tile the sample, no AUD/SPS/PPS left.
        let mut rest = &f.data[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(!matches!(rest[4] & 0x1f, NAL_AUD | NAL_SPS | NAL_PPS));
            rest = &rest[4 + len..];
        }
    }

    let audio = frames(&events, TrackKind::Audio);
    assert!(
        (140..=142).contains(&audio.len()),
        "{} audio frames",
        audio.len()
    );
    // 1024 samples at 48 kHz = 1920 ticks of 90 kHz, exactly.
    assert!(audio.windows(2).all(|w| w[1].dts - w[0].dts == 1920));
    assert!(audio.iter().all(|f| f.keyframe && f.data[0] != 0xff));
    assert_eq!(stats.frames, (video.len() + audio.len()) as u64);
}

#[test]
fn frames_carry_the_arrival_of_their_first_byte_not_of_their_release() {
    // Pieces of one packet, the n-th at n ms: a frame's stamp is the packet that
    // started its PES, though it is only released when the next PES starts, and the
    // first ones wait for the audio parameters.
    let (events, _) = demux_stamped(SRT_CAPTURE, PACKET_SIZE);
    let starts: Vec<i64> = SRT_CAPTURE
        .chunks(PACKET_SIZE)
        .enumerate()
        .filter(|(_, p)| p[1] & 0x40 != 0 && u16::from_be_bytes([p[1] & 0x1f, p[2]]) == 0x100)
        .map(|(n, _)| n as i64)
        .collect();
    let video: Vec<i64> = events
        .iter()
        .filter(|e| matches!(&e.event, StreamEvent::Frame(f) if f.track == TrackKind::Video))
        .map(|e| e.received_at_ms)
        .collect();
    assert_eq!(video, starts);
    assert_eq!(
        events[0].received_at_ms, starts[0],
        "Tracks carry the first frame's"
    );
}

#[test]
fn chunking_does_not_change_the_result() {
    let (whole, _) = demux(SRT_CAPTURE, SRT_CAPTURE.len());
    for chunk in [1, 187, 188, 189, 1316] {
        assert_eq!(demux(SRT_CAPTURE, chunk).0, whole, "chunks of {chunk}");
    }
}

#[test]
fn new_parameter_sets_are_announced_before_their_keyframe() {
    // Two encodes concatenated: 320x240 High, then 160x120 Main.
    let (events, stats) = demux(RESOLUTION_CHANGE, 1316);
    assert_eq!(stats.dropped_frames, 0);
    let announced = tracks(&events);
    assert_eq!(announced.len(), 2);
    let size = |t: &Vec<TrackParams>| match &t[0].codec {
        CodecParams::H264(c) => (c.width, c.height),
        other => panic!("{other:?}"),
    };
    assert_eq!(size(announced[0]), (320, 240));
    assert_eq!(size(announced[1]), (160, 120));
    let second = events
        .iter()
        .position(|e| matches!(e, StreamEvent::Tracks(t) if size(t) == (160, 120)))
        .unwrap();
    let next_video = events[second..]
        .iter()
        .find_map(|e| match e {
            StreamEvent::Frame(f) if f.track == TrackKind::Video => Some(f),
            _ => None,
        })
        .unwrap();
    assert!(next_video.keyframe);
    let video = frames(&events, TrackKind::Video);
    assert_eq!(video.len(), 60);
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
}

#[test]
fn timestamps_run_on_across_the_33_bit_wrap() {
    // Starts 1 s before PTS wraps; audio and video interleave across the wrap.
    let (events, stats) = demux(PTS_WRAP, 1316);
    assert_eq!(stats.dropped_frames, 0);
    for track in [TrackKind::Video, TrackKind::Audio] {
        let f = frames(&events, track);
        assert!(f.len() > 40);
        assert!(f.first().unwrap().dts < PTS_MODULUS);
        assert!(f.last().unwrap().dts > PTS_MODULUS, "{track:?} wrapped");
        assert!(
            f.windows(2)
                .all(|w| w[1].dts > w[0].dts && w[1].dts - w[0].dts < 4000),
            "{track:?} steps evenly across the wrap"
        );
    }
}

#[test]
fn extender_takes_the_shortest_way_around_the_clock() {
    let mut clock = TimestampExtender::default();
    assert_eq!(clock.extend(PTS_MODULUS as u64 - 10), PTS_MODULUS - 10);
    assert_eq!(clock.extend(5), PTS_MODULUS + 5);
    // Audio slightly before the wrap, after video already past it.
    assert_eq!(clock.extend(PTS_MODULUS as u64 - 3), PTS_MODULUS - 3);
    assert_eq!(clock.extend(20), PTS_MODULUS + 20);
    // Bits above 33 are not part of a PTS.
    assert_eq!(clock.extend((1 << 40) | 30), PTS_MODULUS + 30);
}

#[test]
fn hevc_is_refused_with_its_stream_type() {
    let mut demuxer = TsDemuxer::new();
    assert!(matches!(
        demuxer.push(HEVC, 0),
        Err(TsError::UnsupportedCodec {
            kind: "video",
            stream_type: 0x24,
            ..
        })
    ));
}

#[test]
fn garbage_is_not_mpeg_ts() {
    let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7 + 3) as u8 | 1).collect();
    let Err(TsError::LostSync { offset }) = TsDemuxer::new().push(&garbage, 0) else {
        panic!("garbage accepted");
    };
    // Given up after MAX_UNSYNCED_BYTES, not at the end of the input.
    assert!(
        offset <= MAX_UNSYNCED_BYTES + PACKET_SIZE as u64,
        "{offset}"
    );
}

#[test]
fn a_few_garbage_bytes_are_skipped_and_the_stream_resyncs() {
    let mut input = SRT_CAPTURE[..188 * 50].to_vec();
    input.splice(188 * 20..188 * 20, [0x12, 0x47, 0x00, 0x99, 0x47]);
    input.extend_from_slice(&SRT_CAPTURE[188 * 50..]);
    let (events, stats) = demux(&input, 1316);
    assert_eq!(stats.resyncs, 1);
    let (clean, _) = demux(SRT_CAPTURE, 1316);
    assert_eq!(frames(&events, TrackKind::Video).len(), 90);
    assert!(frames(&events, TrackKind::Audio).len() >= frames(&clean, TrackKind::Audio).len() - 1);
}

#[test]
fn a_lost_packet_drops_its_frame_and_video_waits_for_a_keyframe() {
    // Remove one video packet from the middle of the first GOP.
    let packets: Vec<&[u8]> = SRT_CAPTURE.chunks(PACKET_SIZE).collect();
    let video_pid = 0x100;
    let victim = packets
        .iter()
        .enumerate()
        .filter(|(_, p)| u16::from_be_bytes([p[1] & 0x1f, p[2]]) == video_pid)
        .nth(40)
        .unwrap()
        .0;
    let input: Vec<u8> = packets
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let (events, stats) = demux(&input, 1316);
    assert_eq!(stats.continuity_errors, 1);
    let video = frames(&events, TrackKind::Video);
    // The broken frame and the rest of its GOP are gone; the next GOPs are whole.
    assert!(video.len() >= 60 && video.len() < 90, "{}", video.len());
    assert_eq!(stats.dropped_frames, 90 - video.len() as u64);
    let gap = video
        .windows(2)
        .find(|w| w[1].dts - w[0].dts != 3000)
        .unwrap();
    assert!(gap[1].keyframe);
}

#[test]
fn pes_timestamps_and_markers() {
    // PTS 0x1_2345_6789 and DTS 0x0_0000_0001 coded as in §2.4.3.7.
    let pts: u64 = 0x1_2345_6789;
    let code = |prefix: u8, ts: u64| {
        [
            prefix << 4 | ((ts >> 29) as u8 & 0x0e) | 1,
            (ts >> 22) as u8,
            ((ts >> 14) as u8 & 0xfe) | 1,
            (ts >> 7) as u8,
            ((ts << 1) as u8) | 1,
        ]
    };
    let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
    pes.extend(code(3, pts));
    pes.extend(code(1, 1));
    pes.extend([0xaa, 0xbb]);
    let Ok(parsed) = parse_pes(&pes) else {
        panic!()
    };
    assert_eq!((parsed.pts, parsed.dts), (pts, Some(1)));
    assert_eq!(parsed.payload, [0xaa, 0xbb]);
    // PTS_DTS_flags 11 but a header too short to hold both.
    pes[8] = 5;
    assert!(matches!(parse_pes(&pes), Err(PesDefect::Broken)));
    // Padding stream: not media.
    assert!(matches!(
        parse_pes(&[0, 0, 1, 0xbe, 0, 2, 0xff, 0xff, 0xff]),
        Err(PesDefect::NotMedia)
    ));
}

/// fuzz/ts_demux found an ADTS frame no longer than its header handed out as an
/// empty audio frame (an empty CMAF sample downstream).
#[test]
fn an_adts_frame_without_audio_is_dropped_not_emitted_empty() {
    let input = include_bytes!("../../testdata/ts/fuzz_ts_demux_empty_adts_frame.bin");
    let (&piece, bytes) = input.split_first().unwrap();
    let mut demuxer = TsDemuxer::new();
    let mut frames = 0;
    for chunk in bytes.chunks(usize::from(piece).max(1) * 8) {
        let _ = demuxer.push(chunk, 7);
        while let Some(stamped) = demuxer.poll_event() {
            if let StreamEvent::Frame(frame) = stamped.event {
                assert!(!frame.data.is_empty(), "empty {:?} frame", frame.track);
                frames += 1;
            }
        }
    }
    demuxer.finish();
    while let Some(stamped) = demuxer.poll_event() {
        if let StreamEvent::Frame(frame) = stamped.event {
            assert!(!frame.data.is_empty(), "empty {:?} frame", frame.track);
            frames += 1;
        }
    }
    assert!(demuxer.stats().dropped_frames > 0, "{frames} frames");
}

#[test]
fn crc_of_a_real_pat() {
    // The PAT section ffmpeg writes (Annex A CRC over the section, CRC included).
    // ffmpeg writes the SDT first, then the PAT.
    let pat = &SRT_CAPTURE[PACKET_SIZE + 5..PACKET_SIZE + 5 + 3 + 13];
    assert_eq!(pat[0], 0x00);
    assert_eq!(crc32_mpeg2(pat), 0);
    let mut broken = pat.to_vec();
    broken[9] ^= 1;
    assert_ne!(crc32_mpeg2(&broken), 0);
}
