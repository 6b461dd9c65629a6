//! The Opus → AAC stage of a stream's pipeline. A stream whose publisher sends Opus
//! (WebRTC, WHIP) gets a thread of its own that passes the session's events through in
//! order, turning the Opus track into an AAC track: the codec work never runs on the async
//! runtime, and video and audio leave the stage in the order they came.

use floodlight_media::clock::unix_millis;
use floodlight_media::{
    CodecParams, OpusConfig, StampedEvent, StreamEvent, TrackKind, TrackParams,
};
use tracing::{error, warn};

use crate::av::{AvError, OpusToAac};
use crate::thread_stage::ThreadStage;

/// Events queued into the stage before the pipeline waits for it to catch up.
const STAGE_QUEUE: usize = 256;

/// Whether a publisher session's tracks need this stage.
pub(crate) fn needs_stage(event: &StreamEvent) -> bool {
    matches!(event, StreamEvent::Tracks(tracks) if tracks.iter().any(|t| matches!(t.codec, CodecParams::Opus(_))))
}

/// The pipeline's handle on the stage's thread.
pub(crate) type AudioStage = ThreadStage<StampedEvent>;

/// Starts the stage's thread for one stream; `aac_bitrate_bps` is the AAC encoder's target.
pub(crate) fn spawn(event_id: &str, aac_bitrate_bps: u32) -> std::io::Result<AudioStage> {
    ThreadStage::spawn(
        format!("audio-{event_id}"),
        STAGE_QUEUE,
        move |mut input_rx, output_tx| {
            let mut converter = OpusTrackConverter::new(aac_bitrate_bps);
            let mut out = Vec::new();
            while let Some(event) = input_rx.blocking_recv() {
                converter.handle(event, &mut out);
                for event in out.drain(..) {
                    if output_tx.send(event).is_err() {
                        return;
                    }
                }
            }
            converter.finish(&mut out);
            for event in out {
                let _ = output_tx.send(event);
            }
        },
    )
}

/// The stage's core, sans-IO: events in, events out, Opus replaced by AAC.
struct OpusTrackConverter {
    aac_bitrate_bps: u32,
    /// The session's Opus track and its transcoder; `None` in the second place when the
    /// encoder could not be opened (the audio is dropped, video goes on).
    opus: Option<(OpusConfig, Option<OpusToAac>)>,
    errors: u64,
}

impl OpusTrackConverter {
    fn new(aac_bitrate_bps: u32) -> Self {
        OpusTrackConverter {
            aac_bitrate_bps,
            opus: None,
            errors: 0,
        }
    }

    fn handle(&mut self, stamped: StampedEvent, out: &mut Vec<StampedEvent>) {
        let received_at_ms = stamped.received_at_ms;
        let stamp = |event| StampedEvent {
            event,
            received_at_ms,
        };
        match stamped.event {
            StreamEvent::Tracks(tracks) => {
                let tracks = self.tracks(tracks, received_at_ms, out);
                out.push(stamp(StreamEvent::Tracks(tracks)));
            }
            StreamEvent::Frame(frame) if frame.track == TrackKind::Audio => {
                let Some((_, transcoder)) = self.opus.as_mut() else {
                    out.push(stamp(StreamEvent::Frame(frame)));
                    return;
                };
                let Some(transcoder) = transcoder.as_mut() else {
                    return;
                };
                let mut frames = Vec::new();
                let result = transcoder.push(&frame, &mut frames);
                out.extend(frames.into_iter().map(|f| stamp(StreamEvent::Frame(f))));
                if let Err(e) = result {
                    self.count_error(&e, frame.pts);
                }
            }
            StreamEvent::Ended => {
                self.finish_opus(received_at_ms, out);
                out.push(stamp(StreamEvent::Ended));
            }
            event => out.push(stamp(event)),
        }
    }

    /// The stream ends without `Ended` (the pipeline's grace period ran out).
    fn finish(&mut self, out: &mut Vec<StampedEvent>) {
        let now = unix_millis();
        self.finish_opus(now, out);
    }

    /// A session's track list with its Opus track (if any) replaced by the AAC track it
    /// becomes. A repeated announcement of the same Opus track keeps its transcoder.
    fn tracks(
        &mut self,
        tracks: Vec<TrackParams>,
        received_at_ms: i64,
        out: &mut Vec<StampedEvent>,
    ) -> Vec<TrackParams> {
        let opus = tracks.iter().find_map(|t| match t.codec {
            CodecParams::Opus(c) => Some(c),
            _ => None,
        });
        if self.opus.as_ref().map(|(c, _)| *c) != opus {
            self.finish_opus(received_at_ms, out);
            self.opus = opus.map(|config| {
                let transcoder = OpusToAac::new(&config, self.aac_bitrate_bps)
                    .inspect_err(|e| {
                        metrics::counter!("floodlight_transcoder_audio_errors_total", "step" => "open")
                            .increment(1);
                        error!(error = %e, "cannot transcode Opus to AAC: the stream goes on without audio");
                    })
                    .ok();
                (config, transcoder)
            });
        }
        let aac = self
            .opus
            .as_ref()
            .and_then(|(_, t)| t.as_ref())
            .map(|t| t.aac_config().clone());
        tracks
            .into_iter()
            .filter_map(|t| match t.codec {
                CodecParams::Opus(_) => aac.clone().map(TrackParams::audio),
                _ => Some(t),
            })
            .collect()
    }

    fn finish_opus(&mut self, received_at_ms: i64, out: &mut Vec<StampedEvent>) {
        let Some((_, Some(mut transcoder))) = self.opus.take() else {
            return;
        };
        let mut frames = Vec::new();
        if let Err(e) = transcoder.finish(&mut frames) {
            self.count_error(&e, -1);
        }
        out.extend(frames.into_iter().map(|f| StampedEvent {
            event: StreamEvent::Frame(f),
            received_at_ms,
        }));
    }

    /// Per-frame errors are counted and logged rolled up, never one line per frame.
    fn count_error(&mut self, error: &AvError, pts: i64) {
        self.errors += 1;
        metrics::counter!("floodlight_transcoder_audio_errors_total", "step" => "transcode")
            .increment(1);
        if self.errors % 100 == 1 {
            warn!(%error, pts, errors = self.errors, "Opus frame dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use floodlight_media::{AvcConfig, Frame};

    use super::*;

    fn video_track() -> TrackParams {
        TrackParams::video(AvcConfig {
            record: Bytes::new(),
            sps: vec![],
            pps: vec![],
            nal_length_size: 4,
            profile_idc: 66,
            profile_compatibility: 0xc0,
            level_idc: 31,
            width: 640,
            height: 360,
            frame_rate: None,
        })
    }

    fn stamped(event: StreamEvent) -> StampedEvent {
        StampedEvent {
            event,
            received_at_ms: 1,
        }
    }

    /// Real Opus from libav's libopus encoder, as `av::audio`'s tests make it.
    fn opus_frames() -> Vec<Frame> {
        crate::av::tests_support::opus_sine(2, 1, 0)
    }

    #[test]
    fn opus_track_becomes_aac_in_order_and_ended_flushes() {
        let opus = OpusConfig {
            channels: 2,
            pre_skip: 0,
        };
        let mut converter = OpusTrackConverter::new(128_000);
        let mut out = Vec::new();
        let tracks = vec![video_track(), TrackParams::opus(opus)];
        assert!(needs_stage(&StreamEvent::Tracks(tracks.clone())));
        converter.handle(stamped(StreamEvent::Tracks(tracks)), &mut out);
        let StreamEvent::Tracks(announced) = &out[0].event else {
            panic!("{:?}", out[0]);
        };
        assert!(matches!(announced[1].codec, CodecParams::Aac(ref c) if c.object_type == 2));
        let video = Frame {
            track: TrackKind::Video,
            dts: 0,
            pts: 0,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        };
        converter.handle(stamped(StreamEvent::Frame(video.clone())), &mut out);
        assert_eq!(out[1].event, StreamEvent::Frame(video));
        let input = opus_frames();
        for f in &input {
            converter.handle(stamped(StreamEvent::Frame(f.clone())), &mut out);
        }
        // The same tracks announced again (a new SPS, say) keep the transcoder running.
        let again = vec![video_track(), TrackParams::opus(opus)];
        converter.handle(stamped(StreamEvent::Tracks(again)), &mut out);
        converter.handle(stamped(StreamEvent::Ended), &mut out);
        assert_eq!(out.last().unwrap().event, StreamEvent::Ended);
        let audio: Vec<&Frame> = out
            .iter()
            .filter_map(|e| match &e.event {
                StreamEvent::Frame(f) if f.track == TrackKind::Audio => Some(f),
                _ => None,
            })
            .collect();
        // All of the Opus audio comes out as AAC, flushed before `Ended`.
        assert!(
            audio.len() * 1024 >= input.len() * 960,
            "{} AAC frames",
            audio.len()
        );
        assert!(audio.windows(2).all(|p| p[1].pts - p[0].pts == 1920));
    }

    #[test]
    fn streams_without_opus_pass_through_untouched() {
        let tracks = StreamEvent::Tracks(vec![video_track()]);
        assert!(!needs_stage(&tracks));
        let mut converter = OpusTrackConverter::new(128_000);
        let mut out = Vec::new();
        converter.handle(stamped(tracks.clone()), &mut out);
        assert_eq!(out[0].event, tracks);
    }
}
