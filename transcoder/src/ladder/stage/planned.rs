//! A publisher session's video ladder: planned for the picture its tracks announce, its
//! encoded rungs started and the decoder opened, then, when the tracks change or the
//! session ends, its rungs stopped. Rungs the new picture no longer has leave the
//! origins' master playlists.

use std::collections::VecDeque;
use std::time::Instant;

use floodlight_media::{AvcConfig, CodecParams, TrackParams};
use tracing::{error, info, warn};

use super::boundaries::SOURCE_BITRATE_BPS;
use super::rung::Rung;
use super::{Ladder, RungId, StageOutput};
use crate::av::VideoDecoder;
use crate::ladder::align::KeyframeAligner;
use crate::ladder::plan::{LadderPlan, SOURCE, SourceVideo, plan};

/// One publisher session's video ladder.
pub(super) struct PlannedLadder {
    pub(super) video: AvcConfig,
    pub(super) plan: LadderPlan,
    /// The passthrough `source`, while it is offered.
    pub(super) passthrough: Option<RungId>,
    /// Encoded rungs, top first.
    pub(super) rungs: Vec<Rung>,
    pub(super) decoder: Option<VideoDecoder>,
    pub(super) aligner: KeyframeAligner,
    /// pts of the source keyframes sent to the decoder and not yet decoded.
    pub(super) keyframes: VecDeque<i64>,
    /// (pts, ingest time) of access units sent to the decoder and not yet decoded.
    pub(super) arrivals: VecDeque<(i64, i64)>,
    /// pts of the latest access units passed through.
    pub(super) passed: VecDeque<i64>,
    /// Pictures since the last boundary (decimation above 60 fps).
    pub(super) since_boundary: u64,
    /// Publisher video bytes and the pts span they cover: its bit rate.
    pub(super) source_bytes: u64,
    pub(super) source_span: Option<(i64, i64)>,
    /// When the speed was last measured.
    pub(super) speed_mark: Instant,
}

impl Ladder {
    pub(super) fn tracks(&mut self, tracks: Vec<TrackParams>) {
        let video = tracks.iter().find_map(|t| match &t.codec {
            CodecParams::H264(c) => Some(c.clone()),
            _ => None,
        });
        // Opus is turned into AAC before the ladder; an Opus track left means its
        // transcoder could not start, and the packager would refuse it.
        let audio = tracks
            .into_iter()
            .find(|t| matches!(t.codec, CodecParams::Aac(_)));
        if self.audio.as_ref().map(|(_, t)| t) != audio.as_ref() {
            self.audio = audio.map(|t| (self.id(), t));
        }
        let same_video = self.session.as_ref().map(|s| &s.video) == video.as_ref();
        let before = self.video_renditions();
        if !same_video {
            self.stop_rungs();
            self.session = video.map(|v| self.start_session(v));
        }
        self.announce();
        // Rungs the new picture size no longer has (a publisher back at a lower
        // resolution: never upscale) leave the origins' master playlists, as shed ones do,
        // rather than stay listed with a playlist that no longer grows.
        let now = self.video_renditions();
        for name in before.into_iter().filter(|name| !now.contains(name)) {
            self.emit(StageOutput::Stopped {
                rendition: name,
                reason: "source-changed",
            });
        }
        self.publish_status(None);
    }

    /// Names of the video renditions the stream has now: the passthrough and the running
    /// encoded rungs.
    fn video_renditions(&self) -> Vec<String> {
        let Some(session) = &self.session else {
            return Vec::new();
        };
        let passthrough = session.passthrough.map(|_| SOURCE.to_string());
        passthrough
            .into_iter()
            .chain(session.rungs.iter().map(|r| r.planned.name.clone()))
            .collect()
    }

    fn start_session(&mut self, video: AvcConfig) -> PlannedLadder {
        let source = SourceVideo {
            width: video.width,
            height: video.height,
            frame_rate: video.frame_rate,
        };
        let plan = plan(&self.settings.profile, &source);
        // A new session plans the whole ladder again: the load may have gone. Its clock
        // may start over: the poster follows it.
        self.shed.clear();
        self.next_thumbnail_pts = None;
        let passthrough = plan.rungs.iter().any(|r| r.passthrough);
        let passthrough = passthrough.then(|| self.id());
        let mut rungs = Vec::new();
        for planned in plan.rungs.iter().filter(|r| !r.passthrough) {
            let bitrate = planned.bitrate_bps.unwrap_or(SOURCE_BITRATE_BPS.0);
            match self.spawn_rung(planned.clone(), bitrate, &plan) {
                Ok(rung) => rungs.push(rung),
                Err(e) => {
                    error!(rung = %planned.name, error = %e, "cannot start the rung: the ladder goes on without it");
                }
            }
        }
        let decoder = if rungs.is_empty() {
            None
        } else {
            match VideoDecoder::new(&video) {
                Ok(d) => Some(d),
                Err(e) => {
                    error!(error = %e, "cannot decode the publisher's video: only the passthrough is offered");
                    None
                }
            }
        };
        if decoder.is_none() {
            rungs.clear();
        }
        let mut plan = plan;
        let mut passthrough = passthrough;
        if rungs.is_empty() && passthrough.is_none() {
            // No rung could start: the publisher's video as it is beats no video.
            warn!("no encoded rung runs: the publisher's video is passed through");
            passthrough = Some(self.id());
            plan.rungs
                .insert(0, crate::ladder::plan::passthrough(&source));
        }
        // The passthrough rung's cut points decide while it is offered.
        let aligner = KeyframeAligner::new(
            self.settings.segment_target,
            self.settings.tolerance,
            passthrough.is_some(),
        );
        info!(
            width = video.width,
            height = video.height,
            rungs = ?plan.rungs.iter().map(|r| &r.name).collect::<Vec<_>>(),
            "ladder planned"
        );
        PlannedLadder {
            video,
            plan,
            passthrough,
            rungs,
            decoder,
            aligner,
            keyframes: VecDeque::new(),
            arrivals: VecDeque::new(),
            passed: VecDeque::new(),
            since_boundary: 0,
            source_bytes: 0,
            source_span: None,
            speed_mark: Instant::now(),
        }
    }

    /// Closes every rung's queue and waits for its last frames.
    pub(super) fn stop_rungs(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        for rung in &mut session.rungs {
            rung.tx = None;
        }
        for rung in &mut session.rungs {
            if let Some(thread) = rung.thread.take()
                && thread.join().is_err()
            {
                error!(rung = %rung.planned.name, "the rung's thread panicked");
            }
        }
        session.rungs.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use floodlight_media::{StreamEvent, TrackKind};
    use tokio::sync::mpsc;

    use super::*;
    use crate::ladder::StatusBoard;
    use crate::ladder::stage::test_support::{capture, settings, stamped};

    #[test]
    fn a_smaller_picture_stops_the_rungs_it_no_longer_has() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let board = Arc::new(StatusBoard::default());
        let mut ladder = Ladder::new("resize".to_string(), settings(), tx, board);
        let Some(StreamEvent::Tracks(tracks)) = capture().into_iter().next() else {
            panic!("the capture starts with its tracks");
        };
        ladder.handle(stamped(StreamEvent::Tracks(tracks.clone())));
        // The publisher comes back at 200x150: 180p would be an upscale.
        let smaller = tracks
            .into_iter()
            .map(|t| match t.codec {
                CodecParams::H264(c) => TrackParams::video(AvcConfig {
                    width: 200,
                    height: 150,
                    ..c
                }),
                _ => t,
            })
            .collect();
        ladder.handle(stamped(StreamEvent::Tracks(smaller)));
        let mut announced = Vec::new();
        let mut stopped = Vec::new();
        while let Ok(out) = rx.try_recv() {
            match out {
                StageOutput::Renditions(list) => announced.push(
                    list.into_iter()
                        .filter(|(_, t)| t.params.kind == TrackKind::Video)
                        .map(|(_, t)| t.name)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                StageOutput::Stopped { rendition, reason } => {
                    stopped.push(format!("{rendition}:{reason}"))
                }
                _ => {}
            }
        }
        assert_eq!(announced, ["source,180p,120p", "source,120p"]);
        assert_eq!(stopped, ["180p:source-changed"]);
    }
}
