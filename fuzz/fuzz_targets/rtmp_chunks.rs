#![no_main]

//! Bytes after the RTMP handshake, through `rml_rtmp`'s chunk stream and command
//! handling as the ingest server runs it, with every audio/video message through the FLV
//! tag parsers: the path a publisher's TCP stream takes.

use floodlight_media::flv::{AudioTag, VideoTag, parse_audio_tag, parse_video_tag};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};

fuzz_target!(|data: &[u8]| {
    let Ok((mut session, _)) = ServerSession::new(ServerSessionConfig::new()) else {
        return;
    };
    // The input in pieces of a size its first byte picks, as TCP reads would cut it.
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1) * 4;
    for piece in data.chunks(chunk) {
        let Ok(results) = session.handle_input(piece) else { return };
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
