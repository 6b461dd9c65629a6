#![no_main]

//! MPEG-TS bytes, in pieces of a size the input picks, through the demuxer SRT ingest
//! runs, checking what it hands out after every piece.

use floodlight_media::ts::TsDemuxer;
use floodlight_media::{StreamEvent, TrackKind, TrackParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1) * 8;
    let mut demuxer = TsDemuxer::new();
    let mut announced: Option<Vec<TrackParams>> = None;
    let mut frames = 0u64;
    let mut check = |demuxer: &mut TsDemuxer| {
        while let Some(stamped) = demuxer.poll_event() {
            assert_eq!(stamped.received_at_ms, 7);
            match stamped.event {
                StreamEvent::Tracks(tracks) => {
                    assert!(!tracks.is_empty() && tracks.len() <= 2);
                    assert!(tracks.windows(2).all(|w| w[0].kind < w[1].kind));
                    announced = Some(tracks);
                }
                StreamEvent::Frame(frame) => {
                    frames += 1;
                    let tracks = announced.as_ref().expect("a frame before the tracks");
                    assert!(tracks.iter().any(|t| t.kind == frame.track));
                    assert!(!frame.data.is_empty());
                    match frame.track {
                        TrackKind::Video => {
                            // 4-byte length prefixes that tile the sample exactly.
                            let mut rest = &frame.data[..];
                            while !rest.is_empty() {
                                assert!(rest.len() >= 4);
                                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
                                assert!(len > 0);
                                rest = &rest[4 + len as usize..];
                            }
                            assert!((frame.pts - frame.dts).abs() < 1 << 33);
                        }
                        TrackKind::Audio => assert!(frame.keyframe && frame.pts == frame.dts),
                    }
                }
                StreamEvent::Ended => panic!("the demuxer never ends a session"),
            }
        }
        assert_eq!(demuxer.stats().frames, frames);
    };
    for piece in data.chunks(chunk) {
        if demuxer.push(piece, 7).is_err() {
            return;
        }
        check(&mut demuxer);
    }
    demuxer.finish();
    check(&mut demuxer);
});
