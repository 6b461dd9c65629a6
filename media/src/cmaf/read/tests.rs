use bytes::Bytes;

use super::*;
use crate::cmaf::tests::{capture, samples};
use crate::cmaf::{write_fragment, write_init};
use crate::frame::TrackKind;
use crate::package::{PackagerConfig, PackagerOutput, StreamPackager};
use crate::stream::StreamEvent;
use crate::track::CodecParams;

/// The capture's video as a segment of three fragments (a part, the rest of the first
/// GOP, the second GOP), as the packager concatenates parts.
fn video_segment() -> (InitTrack, Bytes, Vec<Fragment>) {
    let c = capture();
    let samples = samples(&c.video_frames, 90_000);
    let bounds = [0, 6, 60, samples.len()];
    let fragments: Vec<Fragment> = bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Fragment {
            sequence_number: i as u32 + 5,
            base_media_decode_time: c.video_frames[w[0]].dts as u64,
            samples: samples[w[0]..w[1]].to_vec(),
        })
        .collect();
    let mut bytes = Vec::new();
    for fragment in &fragments {
        write_fragment(&mut bytes, fragment).unwrap();
    }
    let init = read_init(&write_init(&TrackParams::video(c.video)).unwrap()).unwrap();
    (init, Bytes::from(bytes), fragments)
}

#[test]
fn init_segments_read_back_to_their_parameters() {
    let c = capture();
    let video = read_init(&write_init(&TrackParams::video(c.video.clone())).unwrap()).unwrap();
    assert_eq!((video.track_id, video.timescale), (1, 90_000));
    assert_eq!(video.params, TrackParams::video(c.video));
    let audio = read_init(&write_init(&TrackParams::audio(c.audio.clone())).unwrap()).unwrap();
    assert_eq!((audio.track_id, audio.timescale), (1, 48_000));
    assert_eq!(audio.params, TrackParams::audio(c.audio));
}

#[test]
fn fragments_read_back_sample_for_sample() {
    let (init, bytes, written) = video_segment();
    let read = read_segment(&bytes, &init).unwrap();
    assert_eq!(read.len(), written.len());
    let mut offset = 0;
    for (read, written) in read.iter().zip(&written) {
        // Composition offsets (B-frames), sync flags, durations and data all survive.
        assert_eq!(&read.fragment, written);
        assert_eq!(read.offset, offset);
        let mut alone = Vec::new();
        write_fragment(&mut alone, written).unwrap();
        offset += alone.len();
    }
    assert_eq!(offset, bytes.len());
    assert!(
        read[0]
            .fragment
            .samples
            .iter()
            .any(|s| s.composition_offset != 0)
    );
    let sync: Vec<bool> = read[2]
        .fragment
        .samples
        .iter()
        .map(|s| s.keyframe)
        .collect();
    assert!(sync[0] && sync[1..].iter().all(|k| !k));
}

#[test]
fn the_packagers_segments_read_back_as_the_frames_it_was_given() {
    let c = capture();
    let mut packager = StreamPackager::new(PackagerConfig::default());
    let tracks = vec![
        TrackParams::video(c.video.clone()),
        TrackParams::audio(c.audio.clone()),
    ];
    packager
        .handle_event(StreamEvent::Tracks(tracks), 0)
        .unwrap();
    let mut frames: Vec<_> = c.video_frames.iter().chain(&c.audio_frames).collect();
    frames.sort_by_key(|f| f.dts);
    for frame in frames {
        packager
            .handle_event(StreamEvent::Frame(frame.clone()), frame.dts / 90)
            .unwrap();
    }
    packager.handle_event(StreamEvent::Ended, 4_000).unwrap();
    let mut inits = Vec::new();
    let mut segments = std::collections::BTreeMap::<(String, u64), Vec<u8>>::new();
    while let Some(out) = packager.poll_output() {
        match out {
            PackagerOutput::Init {
                rendition, data, ..
            } => inits.push((rendition, data)),
            PackagerOutput::Part {
                rendition,
                meta,
                data,
            } => segments
                .entry((rendition, meta.msn))
                .or_default()
                .extend_from_slice(&data),
            PackagerOutput::Rendition(_) => {}
        }
    }
    for (rendition, init) in inits {
        let init = read_init(&init).unwrap();
        let mut read = Vec::new();
        for ((_, _), bytes) in segments.iter().filter(|((r, _), _)| *r == rendition) {
            let fragments = read_segment(&Bytes::from(bytes.clone()), &init).unwrap();
            // Every segment starts with a sync sample, and decode times run on.
            assert!(fragments[0].fragment.samples[0].keyframe);
            for f in fragments {
                let mut dts = f.fragment.base_media_decode_time;
                for s in f.fragment.samples {
                    read.push((dts, s.composition_offset, s.data));
                    dts += u64::from(s.duration);
                }
            }
        }
        let sent = match init.params.codec {
            CodecParams::H264(_) => &c.video_frames,
            _ => &c.audio_frames,
        };
        assert_eq!(read.len(), sent.len(), "{rendition}");
        assert!(read.iter().zip(sent).all(|(r, f)| r.2 == f.data));
        if init.params.kind == TrackKind::Video {
            // Presentation times are the publisher's, up to the packager's shift.
            let shift = read[0].0 as i64 + i64::from(read[0].1) - sent[0].pts;
            for (r, f) in read.iter().zip(sent) {
                assert_eq!(r.0 as i64 + i64::from(r.1) - shift, f.pts);
            }
        }
    }
}

#[test]
fn damage_is_an_error_with_an_offset_never_a_panic() {
    let (init, bytes, _) = video_segment();
    let ends: Vec<usize> = read_segment(&bytes, &init)
        .unwrap()
        .iter()
        .skip(1)
        .map(|f| f.offset)
        .collect();
    // Every truncation: an error, unless it falls between two fragments.
    for len in 0..bytes.len() {
        let read = read_segment(&bytes.slice(..len), &init);
        assert_eq!(read.is_ok(), ends.contains(&len), "{len}");
    }
    // A flipped byte anywhere: an error or (in sample data) the same structure.
    for at in (0..bytes.len()).step_by(7) {
        let mut damaged = bytes.to_vec();
        damaged[at] ^= 0xa5;
        let _ = read_segment(&Bytes::from(damaged), &init);
    }
    let init_bytes = write_init(&init.params).unwrap();
    for len in 0..init_bytes.len() {
        assert!(read_init(&init_bytes[..len]).is_err(), "{len}");
    }
    for at in 0..init_bytes.len() {
        let mut damaged = init_bytes.to_vec();
        damaged[at] ^= 0x5a;
        let _ = read_init(&damaged);
    }
}

#[test]
fn structural_faults_are_named() {
    let (init, bytes, written) = video_segment();
    let reason = |bytes: Vec<u8>| match read_segment(&Bytes::from(bytes), &init) {
        Err(
            ReadError::Malformed { offset, reason } | ReadError::Unsupported { offset, reason },
        ) => {
            format!("{offset}: {reason}")
        }
        Ok(_) => "ok".to_string(),
    };
    assert_eq!(reason(Vec::new()), "0: no moof + mdat: not a media segment");

    let mut one = Vec::new();
    write_fragment(&mut one, &written[0]).unwrap();
    let moof_len = u32::from_be_bytes([one[0], one[1], one[2], one[3]]) as usize;
    // A moof whose mdat is missing.
    assert_eq!(reason(one[..moof_len].to_vec()), "0: moof without an mdat");
    // An mdat shorter than the samples it should hold.
    let mut short = one.clone();
    short.truncate(one.len() - 10);
    let mdat_len = (short.len() - moof_len) as u32;
    short[moof_len..moof_len + 4].copy_from_slice(&mdat_len.to_be_bytes());
    assert!(reason(short).contains("lies outside the mdat"));
    // A box claiming more bytes than there are.
    let mut long = one.clone();
    long[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(reason(long).starts_with("0: moof box: size 4294967295 runs past the end"));
    // Another track's fragment.
    let mut other = init.clone();
    other.track_id = 2;
    let err = read_segment(&bytes, &other).unwrap_err();
    assert!(
        err.to_string()
            .contains("track 1, the init segment's track is 2")
    );
    // An unknown box among the fragments.
    let mut odd = b"\0\0\0\x08wxyz".to_vec();
    odd.extend_from_slice(&one);
    assert_eq!(reason(odd), "0: wxyz box in a media segment");
    // A styp before the moof is allowed (CMAF segments may start with one).
    let mut styp = b"\0\0\0\x10stypmsdh\0\0\0\0".to_vec();
    styp.extend_from_slice(&one);
    assert_eq!(reason(styp), "ok");
    assert!(
        read_init(&bytes)
            .unwrap_err()
            .to_string()
            .contains("no moov")
    );
}

#[test]
fn a_forged_sample_count_is_refused_without_allocating() {
    let (init, _, written) = video_segment();
    let mut bytes = Vec::new();
    write_fragment(&mut bytes, &written[0]).unwrap();
    // trun: size, 'trun', version/flags, sample_count. Set the count to 2^32 - 1.
    let trun = bytes.windows(4).position(|w| w == b"trun").unwrap();
    bytes[trun + 8..trun + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(read_segment(&Bytes::from(bytes), &init).is_err());
}

/// The `cmaf_read` fuzz target's findings: inits whose `moov` holds a corrupt `sgpd` or
/// a loose `mp4a`, which mp4-atom 0.17 decoded by allocating until memory ran out. Now
/// refused before decoding, naming the box.
#[test]
fn boxes_where_cmaf_never_has_them_are_refused_before_they_are_decoded() {
    // The fuzz inputs' framing: [init length: u16 BE][init][segment].
    for (input, kind) in [
        (
            &include_bytes!("../../../testdata/cmaf/fuzz_sgpd_oom.bin")[..],
            "sgpd",
        ),
        (
            &include_bytes!("../../../testdata/cmaf/fuzz_mp4a_oom.bin")[..],
            "mp4a",
        ),
    ] {
        let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
        let err = read_init(&input[2..2 + len]).unwrap_err().to_string();
        assert!(err.contains(&format!("a {kind} box in moov")), "{err}");
    }
}
