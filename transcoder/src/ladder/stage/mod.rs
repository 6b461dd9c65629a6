//! The ladder's threads. One ladder thread per stream takes the session's events in
//! order: it passes the `source` video and the audio through, decodes the publisher's
//! video once, decides the segment boundaries ([`KeyframeAligner`]) and hands every
//! picture to one thread per encoded rung (scale + x264). Nothing here runs on the async
//! runtime, and nothing waits on a rung: a rung's queue is bounded and a full one makes
//! that rung skip to the next boundary, so a slow rung never holds up ingest, the
//! passthrough or the other rungs.
//!
//! Outputs leave through one unbounded channel, tagged with a [`RungId`] that stays the
//! same while the ladder changes (a shed rung, `source` re-encoded): the pipeline maps ids
//! to the packager's rendition indexes of the latest `Renditions`.
//!
//! This file owns the ladder thread itself: its settings and outputs, its start, its
//! state, the dispatch of the session's events, the `Renditions` and status it reports
//! and the end of a session. The rest, one concern a file:
//! - [`planned`]: a publisher session's ladder, planned on its tracks, and its rungs
//!   stopped;
//! - [`rung`]: an encoded rung's start (x264's live settings, its queue, its thread);
//! - [`worker`]: a rung's thread, running its queue of pictures;
//! - [`scale`]: a picture fitted to the rung's size (swscale) and encoded;
//! - [`decode`]: the publisher's access units, passed through and decoded once;
//! - [`boundaries`]: each decoded picture against the segment boundaries, IDRs forced on
//!   the rungs, and `source` re-encoded from the first forced boundary;
//! - [`shedding`]: the rungs' encode speed measured, a rung that stays behind shed;
//! - [`poster`]: the poster JPEG.
//!
//! [`KeyframeAligner`]: super::align::KeyframeAligner

mod boundaries;
mod decode;
mod planned;
mod poster;
mod rung;
mod scale;
mod shedding;
#[cfg(test)]
mod test_support;
mod worker;

use std::sync::Arc;

use bytes::Bytes;
use floodlight_media::clock::unix_millis;
use floodlight_media::{Frame, RenditionTrack, StampedEvent, StreamEvent, TrackKind, TrackParams};
use tokio::sync::mpsc;
use tracing::warn;

use super::plan::SOURCE;
use super::{RungStatus, StatusBoard, StreamStatus};
use crate::av::JpegEncoder;
use crate::config::LadderProfile;
use crate::thread_stage::ThreadStage;
use planned::PlannedLadder;

/// Events queued into the ladder thread before the pipeline waits for it.
const STAGE_QUEUE: usize = 256;

/// Identifies a rendition's outputs across ladder changes.
pub(crate) type RungId = u64;

/// What a stream's ladder needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct StageSettings {
    pub(crate) profile: LadderProfile,
    /// Segment target and the alignment tolerance (half a part target), 90 kHz.
    pub(crate) segment_target: i64,
    pub(crate) tolerance: i64,
    pub(crate) preset: String,
    pub(crate) threads_per_rung: u32,
    pub(crate) vbv_buffer_ms: u32,
    /// 90 kHz; 0: no poster.
    pub(crate) thumbnail_interval: i64,
    pub(crate) thumbnail_width: u32,
    pub(crate) shed_lag_ms: u32,
}

#[derive(Debug)]
pub(crate) enum StageOutput {
    /// The stream's renditions from now on (`LadderEvent::Renditions`), with their ids.
    Renditions(Vec<(RungId, RenditionTrack)>),
    Frame {
        id: RungId,
        frame: Frame,
        received_at_ms: i64,
    },
    Ended {
        received_at_ms: i64,
    },
    /// A JPEG poster of the live picture.
    Thumbnail(Bytes),
    /// A rendition stopped for good within the stream (`reason`: `shed-cpu`).
    Stopped {
        rendition: String,
        reason: &'static str,
    },
}

/// The pipeline's handle on a stream's ladder thread.
pub(crate) type LadderStage = ThreadStage<StageOutput>;

/// Starts the ladder thread of one stream.
pub(crate) fn spawn(
    event_id: &str,
    settings: StageSettings,
    board: Arc<StatusBoard>,
) -> std::io::Result<LadderStage> {
    let event_id = event_id.to_string();
    ThreadStage::spawn(
        format!("ladder-{event_id}"),
        STAGE_QUEUE,
        move |mut input_rx, output_tx| {
            let mut ladder = Ladder::new(event_id, settings, output_tx, board);
            while let Some(event) = input_rx.blocking_recv() {
                ladder.handle(event);
            }
            ladder.end_session(unix_millis(), false);
        },
    )
}

/// The ladder thread's state for the stream.
struct Ladder {
    event_id: String,
    settings: StageSettings,
    out: mpsc::UnboundedSender<StageOutput>,
    board: Arc<StatusBoard>,
    next_id: RungId,
    audio: Option<(RungId, TrackParams)>,
    session: Option<PlannedLadder>,
    /// Rungs shed in this stream, for the status.
    shed: Vec<RungStatus>,
    next_thumbnail_pts: Option<i64>,
    /// The stream's poster encoder: it keeps its scaler and libav encoder from one poster
    /// to the next while the size stays the same.
    jpeg: JpegEncoder,
    errors: u64,
}

impl Ladder {
    fn new(
        event_id: String,
        settings: StageSettings,
        out: mpsc::UnboundedSender<StageOutput>,
        board: Arc<StatusBoard>,
    ) -> Self {
        Ladder {
            event_id,
            settings,
            out,
            board,
            next_id: 0,
            audio: None,
            session: None,
            shed: Vec::new(),
            next_thumbnail_pts: None,
            jpeg: JpegEncoder::new(),
            errors: 0,
        }
    }

    fn emit(&self, output: StageOutput) {
        // The pipeline is gone only when the stream is ending: nothing left to tell it.
        let _ = self.out.send(output);
    }

    fn id(&mut self) -> RungId {
        self.next_id += 1;
        self.next_id
    }

    fn handle(&mut self, stamped: StampedEvent) {
        let at = stamped.received_at_ms;
        match stamped.event {
            StreamEvent::Tracks(tracks) => self.tracks(tracks),
            StreamEvent::Frame(frame) => match frame.track {
                TrackKind::Audio => {
                    if let Some((id, _)) = &self.audio {
                        self.emit(StageOutput::Frame {
                            id: *id,
                            frame,
                            received_at_ms: at,
                        });
                    }
                }
                TrackKind::Video => self.video(frame, at),
            },
            StreamEvent::Ended => self.end_session(at, true),
        }
    }

    /// `Renditions` for the current ladder: video top first, then audio.
    fn announce(&self) {
        let mut list = Vec::new();
        if let Some(session) = &self.session {
            if let Some(id) = session.passthrough {
                list.push((
                    id,
                    RenditionTrack {
                        name: SOURCE.to_string(),
                        params: TrackParams::video(session.video.clone()),
                        bandwidth_hint_bps: None,
                    },
                ));
            }
            for rung in &session.rungs {
                list.push((
                    rung.id,
                    RenditionTrack {
                        name: rung.planned.name.clone(),
                        params: TrackParams::video(rung.config.clone()),
                        bandwidth_hint_bps: Some(u64::from(rung.bitrate_bps)),
                    },
                ));
            }
        }
        if let Some((id, track)) = &self.audio {
            list.push((
                *id,
                RenditionTrack {
                    name: floodlight_media::package::AUDIO_RENDITION.to_string(),
                    params: track.clone(),
                    bandwidth_hint_bps: None,
                },
            ));
        }
        self.emit(StageOutput::Renditions(list));
    }

    fn publish_status(&self, speed: Option<f64>) {
        let mut rungs = Vec::new();
        if let Some(session) = &self.session {
            if session.passthrough.is_some()
                && let Some(p) = session.plan.rungs.iter().find(|r| r.passthrough)
            {
                rungs.push(RungStatus {
                    name: p.name.clone(),
                    width: p.width,
                    height: p.height,
                    bitrate_bps: None,
                    passthrough: true,
                    shed: None,
                });
            }
            rungs.extend(session.rungs.iter().map(|r| RungStatus {
                name: r.planned.name.clone(),
                width: r.planned.width,
                height: r.planned.height,
                bitrate_bps: Some(r.bitrate_bps),
                passthrough: false,
                shed: None,
            }));
        }
        rungs.extend(self.shed.iter().cloned());
        let speed = speed.or_else(|| self.board.get(&self.event_id).and_then(|s| s.speed));
        self.board
            .set(&self.event_id, StreamStatus { rungs, speed });
    }

    fn count_error(&mut self, reason: &'static str, error: &crate::av::AvError, pts: i64) {
        self.errors += 1;
        metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => reason)
            .increment(1);
        // Rolled up: a broken stream fails every frame.
        if self.errors % 100 == 1 {
            warn!(%error, pts, errors = self.errors, reason, "video frame dropped");
        }
    }

    /// Ends the session: the decoder's held pictures are encoded, every rung finishes and
    /// its last frames go out before `Ended` (if `ended`, else the stream just stops).
    fn end_session(&mut self, at: i64, ended: bool) {
        if let Some(session) = self.session.as_mut()
            && let Some(decoder) = session.decoder.as_mut()
        {
            for picture in decoder.flush() {
                self.picture(picture.frame, picture.pts);
            }
        }
        self.stop_rungs();
        self.session = None;
        self.audio = None;
        if ended {
            self.emit(StageOutput::Ended { received_at_ms: at });
        }
        self.publish_status(None);
    }
}
