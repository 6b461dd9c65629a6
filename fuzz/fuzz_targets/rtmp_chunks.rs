#![no_main]

//! Bytes after the RTMP handshake, through `rml_rtmp`'s chunk stream and command
//! handling as the ingest server runs it (its own `handle_input`, which contains a panic
//! in rml_rtmp and closes the connection), with every audio/video message through the
//! FLV tag parsers: the path a publisher's TCP stream takes.

use std::cell::Cell;
use std::sync::Once;

use floodlight_ingest::fuzzing::rtmp_handle_input;
use floodlight_media::flv::{AudioTag, VideoTag, parse_audio_tag, parse_video_tag};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

thread_local! {
    /// Inside the server's `handle_input`, where a panic of rml_rtmp is contained.
    static IN_SERVER_STEP: Cell<bool> = const { Cell::new(false) };
}

/// libFuzzer's panic hook aborts before a panic can unwind, so the server's containment
/// would count as a crash: wrap it so that only panics outside the server's step (ours,
/// in the FLV parsers or the invariants) reach it.
fn contain_panics_in_the_server_step() {
    static WRAP: Once = Once::new();
    WRAP.call_once(|| {
        let outer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_SERVER_STEP.get() {
                outer(info);
            }
        }));
    });
}

fn server_step(session: &mut ServerSession, piece: &[u8]) -> Option<Vec<ServerSessionResult>> {
    IN_SERVER_STEP.set(true);
    let results = rtmp_handle_input(session, piece);
    IN_SERVER_STEP.set(false);
    results
}

fuzz_target!(|data: &[u8]| {
    contain_panics_in_the_server_step();
    let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else {
        return;
    };
    // The input in pieces of a size its first byte picks, as TCP reads would cut it.
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1) * 4;
    for piece in data.chunks(chunk) {
        // None: the server closes the connection here.
        let Some(results) = server_step(&mut session, piece) else { return };
        for result in results {
            let ServerSessionResult::RaisedEvent(event) = result else { continue };
            match event {
                ServerSessionEvent::ConnectionRequested { request_id, .. }
                | ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                    // Accept as ingest does after authorizing, so media flows on.
                    let _ = session.accept_request(request_id);
                }
                ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                    let ts = i64::from(timestamp.value);
                    if let Ok(VideoTag::Frame(f)) = parse_video_tag(&data, ts) {
                        assert_eq!(f.dts, ts * 90);
                    }
                }
                ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                    let ts = i64::from(timestamp.value);
                    match parse_audio_tag(&data, ts) {
                        Ok(AudioTag::Frame(f)) => assert!(f.keyframe && f.pts == f.dts),
                        Ok(AudioTag::SequenceHeader(c)) => assert!(c.sample_rate > 0),
                        Err(_) => {}
                    }
                }
                _ => {}
            }
        }
    }
});
