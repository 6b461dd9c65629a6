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
//! `source` re-encoding: the passthrough is offered while its keyframes are the
//! boundaries. At the first forced boundary (the publisher's GOP does not line up) it is
//! re-encoded at the source size from that IDR on. The packager sees `source` with new
//! parameters: a new init segment, and EXT-X-DISCONTINUITY on every rendition at that MSN
//! (RFC 8216bis §4.4.3.3 keeps the discontinuity sequence equal across renditions).
//! Each access unit is decoded before it is passed through, so the unit that completes the
//! switch picture is not passed through, nor any after it: the re-encode carries every
//! picture from the switch on and no picture is lost. With B-frames, units decoded before
//! the switch picture may have a later pts (up to the reorder depth): they were passed
//! through already and end the passthrough's last segment, overlapping the re-encode by a
//! frame or two (counted: `floodlight_transcoder_source_overlap_frames_total`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, mpsc as sync_mpsc};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use bytes::Bytes;
use ffmpeg_next::frame;
use floodlight_media::{
    AvcConfig, CodecParams, Frame, RenditionTrack, StampedEvent, StreamEvent, TIMESCALE, TrackKind,
    TrackParams,
};
use tokio::sync::mpsc;
use tracing::{Span, error, info, warn};

use super::align::{Cut, KeyframeAligner};
use super::plan::{CodecProfile, LadderPlan, PlannedRung, SOURCE, SourceVideo, plan};
use super::shed::{LagMonitor, ShedCandidate, choose_shed};
use super::{RungStatus, StatusBoard, StreamStatus};
use crate::av::{
    ENCODER_FORMAT, EncoderSettings, H264Profile, JpegEncoder, Scaler, VideoDecoder, VideoEncoder,
};
use crate::config::LadderProfile;
use crate::thread_stage::ThreadStage;

/// Events queued into the ladder thread before the pipeline waits for it.
const STAGE_QUEUE: usize = 256;
/// Bounds of a rung's picture queue (decoded pictures are large: 3 MB at 1080p).
const MIN_RUNG_QUEUE: usize = 8;
const MAX_RUNG_QUEUE: usize = 64;
/// How often the encode speed is measured, ms.
const SPEED_WINDOW_MS: i64 = 2000;
/// JPEG quality of the poster (1–100).
const THUMBNAIL_QUALITY: u8 = 80;
/// The re-encoded `source` stays within these when it takes the publisher's bit rate.
const SOURCE_BITRATE_BPS: (u32, u32) = (300_000, 20_000_000);
/// H.264 reorders at most 16 pictures (max_dec_frame_buffering, Annex A.3.1).
const MAX_REORDER: usize = 16;
/// Decoded pictures whose ingest time is remembered while they are reordered.
const MAX_PENDING_ARRIVALS: usize = 256;

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
    session: Option<Session>,
    /// Rungs shed in this stream, for the status.
    shed: Vec<RungStatus>,
    next_thumbnail_pts: Option<i64>,
    /// The stream's poster encoder: it keeps its scaler and libav encoder from one poster
    /// to the next while the size stays the same.
    jpeg: JpegEncoder,
    errors: u64,
}

/// One publisher session's video ladder.
struct Session {
    video: AvcConfig,
    plan: LadderPlan,
    /// The passthrough `source`, while it is offered.
    passthrough: Option<RungId>,
    /// Encoded rungs, top first.
    rungs: Vec<Rung>,
    decoder: Option<VideoDecoder>,
    aligner: KeyframeAligner,
    /// pts of the source keyframes sent to the decoder and not yet decoded.
    keyframes: VecDeque<i64>,
    /// (pts, ingest time) of access units sent to the decoder and not yet decoded.
    arrivals: VecDeque<(i64, i64)>,
    /// pts of the latest access units passed through.
    passed: VecDeque<i64>,
    /// Pictures since the last boundary (decimation above 60 fps).
    since_boundary: u64,
    /// Publisher video bytes and the pts span they cover: its bit rate.
    source_bytes: u64,
    source_span: Option<(i64, i64)>,
    /// When the speed was last measured.
    speed_mark: Instant,
}

/// A picture for a rung thread.
struct RungPicture {
    picture: Arc<frame::Video>,
    pts: i64,
    idr: bool,
    received_at_ms: i64,
    queued_at: Instant,
}

/// Counters a rung thread shares with the ladder thread.
#[derive(Default)]
struct RungStats {
    /// How long the last picture the rung took had waited in its queue, ms.
    wait_ms: AtomicU64,
    /// Pictures sent to the rung and not yet encoded.
    pending: AtomicU64,
    busy_ns: AtomicU64,
    media_ticks: AtomicI64,
    /// Set when the rung is shed: the thread drops what it has queued.
    stop: AtomicBool,
}

struct Rung {
    id: RungId,
    planned: PlannedRung,
    bitrate_bps: u32,
    tx: Option<sync_mpsc::SyncSender<RungPicture>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<RungStats>,
    config: AvcConfig,
    lag: LagMonitor,
    /// The queue was full: the rung waits for the next boundary to start clean.
    skip_to_boundary: bool,
    /// `(busy_ns, media_ticks)` at the last speed measurement.
    speed_mark: (u64, i64),
    pixel_rate: u64,
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

    fn tracks(&mut self, tracks: Vec<TrackParams>) {
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

    fn start_session(&mut self, video: AvcConfig) -> Session {
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
            plan.rungs.insert(0, super::plan::passthrough(&source));
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
        Session {
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

    fn spawn_rung(
        &mut self,
        planned: PlannedRung,
        bitrate_bps: u32,
        plan: &LadderPlan,
    ) -> Result<Rung, crate::av::AvError> {
        let fps = f64::from(plan.frame_rate.0) / f64::from(plan.frame_rate.1);
        let segment_frames = (self.settings.segment_target as f64 / f64::from(TIMESCALE)) * fps;
        let encoder = VideoEncoder::new(&EncoderSettings {
            width: planned.width,
            height: planned.height,
            frame_rate: plan.frame_rate,
            bitrate_bps,
            // Capped VBR at the target: the master playlist's BANDWIDTH is a peak.
            max_bitrate_bps: bitrate_bps,
            vbv_buffer_bits: (u64::from(bitrate_bps) * u64::from(self.settings.vbv_buffer_ms)
                / 1000)
                .min(u64::from(u32::MAX)) as u32,
            preset: self.settings.preset.clone(),
            profile: match planned.profile {
                CodecProfile::Baseline => H264Profile::Baseline,
                CodecProfile::Main => H264Profile::Main,
                CodecProfile::High => H264Profile::High,
            },
            threads: self.settings.threads_per_rung,
            // A safety net well past the forced cadence (target + tolerance): x264 never
            // inserts an IDR of its own while the boundaries come.
            keyint_max_frames: (segment_frames * 4.0).ceil().max(1.0) as u32,
        })?;
        let mut config = encoder.config().clone();
        if plan.rate_assumed {
            // The encoder's SPS states the assumed rate, but the pictures keep the
            // publisher's capture-clock timing: the packager must time this rung's parts
            // as it does such a source's (docs/packaging.md, PART-TARGET with slack for
            // an unknown rate), or a millisecond of capture jitter closes parts a frame
            // early, under RFC 8216bis §4.4.4.9's 85% floor.
            config.frame_rate = None;
        }
        let id = self.id();
        let stats = Arc::new(RungStats::default());
        let queue = ((fps * f64::from(self.settings.shed_lag_ms) / 1000.0).ceil() as usize + 2)
            .clamp(MIN_RUNG_QUEUE, MAX_RUNG_QUEUE);
        let (tx, rx) = sync_mpsc::sync_channel(queue);
        let worker = RungWorker {
            id,
            name: planned.name.clone(),
            size: (planned.width, planned.height),
            encoder,
            out: self.out.clone(),
            stats: stats.clone(),
            errors: 0,
        };
        let span = Span::current();
        let thread = thread::Builder::new()
            .name(format!("rung-{}-{}", planned.name, self.event_id))
            .spawn(move || {
                let _entered = span.enter();
                worker.run(rx);
            })
            .map_err(|e| crate::av::AvError::InvalidSettings(format!("rung thread: {e}")))?;
        Ok(Rung {
            id,
            bitrate_bps,
            tx: Some(tx),
            thread: Some(thread),
            stats,
            config,
            lag: LagMonitor::default(),
            skip_to_boundary: false,
            speed_mark: (0, 0),
            pixel_rate: (f64::from(planned.width) * f64::from(planned.height) * fps) as u64,
            planned,
        })
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

    fn video(&mut self, frame: Frame, at: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.source_bytes += frame.data.len() as u64;
        let span = session.source_span.get_or_insert((frame.dts, frame.dts));
        span.1 = span.1.max(frame.dts);
        if session.decoder.is_some() {
            // Decoded before it is passed through: a switch this access unit completes
            // (its own picture, or earlier ones it releases from reordering) stops the
            // passthrough before it.
            self.decode(&frame, at);
        } else {
            self.passthrough_thumbnail(&frame);
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if let Some(id) = session.passthrough {
            session.passed.push_back(frame.pts);
            if session.passed.len() > MAX_REORDER {
                session.passed.pop_front();
            }
            self.emit(StageOutput::Frame {
                id,
                frame,
                received_at_ms: at,
            });
        }
    }

    fn decode(&mut self, frame: &Frame, at: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if frame.keyframe {
            session.keyframes.push_back(frame.pts);
        }
        session.arrivals.push_back((frame.pts, at));
        if session.arrivals.len() > MAX_PENDING_ARRIVALS {
            session.arrivals.pop_front();
        }
        let Some(decoder) = session.decoder.as_mut() else {
            return;
        };
        let sent = decoder.send(frame);
        let mut pictures = Vec::new();
        while let Some(p) = decoder.receive() {
            pictures.push(p);
        }
        if let Err(e) = sent {
            self.count_error("decode_error", &e, frame.pts);
        }
        for picture in pictures {
            self.picture(picture.frame, picture.pts);
        }
    }

    /// One decoded picture, in presentation order.
    fn picture(&mut self, picture: frame::Video, pts: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while session.keyframes.front().is_some_and(|&k| k < pts) {
            session.keyframes.pop_front();
        }
        let keyframe = session.keyframes.front() == Some(&pts);
        let position = session.arrivals.iter().position(|&(p, _)| p == pts);
        let received_at_ms = match position {
            Some(i) => session.arrivals.remove(i).map_or(0, |(_, at)| at),
            None => session.arrivals.front().map_or_else(unix_millis, |a| a.1),
        };
        let cut = session.aligner.picture(pts, keyframe);
        if cut == Cut::Skip {
            metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "before_keyframe")
                .increment(1);
            return;
        }
        if cut.is_boundary() {
            session.since_boundary = 0;
        } else {
            session.since_boundary += 1;
        }
        if cut == Cut::Forced && session.passthrough.is_some() {
            self.switch_source(pts);
        }
        self.poster(&picture, pts);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        // Above 60 fps every other picture; boundaries are always kept.
        if session.plan.decimate && session.since_boundary % 2 == 1 {
            return;
        }
        let picture = Arc::new(picture);
        let now = Instant::now();
        let lag_ms = u64::from(self.settings.shed_lag_ms);
        let mut behind = Vec::new();
        for (i, rung) in session.rungs.iter_mut().enumerate() {
            if rung.skip_to_boundary && !cut.is_boundary() {
                metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "rung_behind")
                    .increment(1);
                continue;
            }
            let Some(tx) = &rung.tx else { continue };
            let sent = tx.try_send(RungPicture {
                picture: picture.clone(),
                pts,
                idr: cut.is_boundary(),
                received_at_ms,
                queued_at: now,
            });
            let full = sent.is_err();
            if !full {
                rung.stats.pending.fetch_add(1, Ordering::Relaxed);
            }
            rung.skip_to_boundary = full;
            if full {
                metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "rung_behind")
                    .increment(1);
            }
            let late = rung.stats.wait_ms.load(Ordering::Relaxed) > lag_ms;
            if rung.lag.observe(full || late, unix_millis()) {
                behind.push(i);
            }
        }
        if let Some(&slow) = behind.first() {
            self.shed(slow);
        }
        self.measure_speed();
    }

    /// The first forced boundary: `source` is re-encoded at its own size from `pts` on.
    fn switch_source(&mut self, pts: i64) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let measured = match session.source_span {
            Some((first, last)) if last > first => {
                (session.source_bytes * 8 * u64::from(TIMESCALE) / (last - first) as u64) as u32
            }
            _ => SOURCE_BITRATE_BPS.0,
        };
        let bitrate = self
            .settings
            .profile
            .source_bitrate_bps
            .unwrap_or_else(|| measured.clamp(SOURCE_BITRATE_BPS.0, SOURCE_BITRATE_BPS.1));
        session.passthrough = None;
        let overlap = session.passed.iter().filter(|&&p| p >= pts).count();
        metrics::counter!("floodlight_transcoder_source_overlap_frames_total")
            .increment(overlap as u64);
        let Some(planned) = session.plan.rungs.iter().find(|r| r.passthrough).cloned() else {
            return;
        };
        let plan = session.plan.clone();
        match self.spawn_rung(planned, bitrate, &plan) {
            Ok(rung) => {
                warn!(
                    pts,
                    bitrate,
                    "the publisher's keyframes do not line up with the segments: re-encoding source"
                );
                metrics::counter!("floodlight_transcoder_source_reencodes_total").increment(1);
                if let Some(session) = self.session.as_mut() {
                    session.rungs.insert(0, rung);
                }
            }
            Err(e) => {
                error!(error = %e, "cannot re-encode source: the ladder goes on without it");
            }
        }
        self.announce();
        self.publish_status(None);
    }

    /// Sheds a rung: `behind` is the one found lagging (the choice is by cost, not by who
    /// lagged: every rung shares the cores).
    fn shed(&mut self, behind: usize) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut candidates = Vec::new();
        if session.passthrough.is_some() {
            candidates.push(ShedCandidate {
                encoded: false,
                pixel_rate: 0,
            });
        }
        let offset = candidates.len();
        candidates.extend(session.rungs.iter().map(|r| ShedCandidate {
            encoded: true,
            pixel_rate: r.pixel_rate,
        }));
        let lagging = session.rungs[behind].planned.name.clone();
        let speed = rung_speed(&session.rungs[behind]).unwrap_or(0.0);
        for rung in &mut session.rungs {
            rung.lag.reset();
        }
        let Some(index) = choose_shed(&candidates) else {
            self.errors += 1;
            if self.errors % 100 == 1 {
                warn!(
                    rung = %lagging,
                    speed, "the machine cannot keep up and no rung may be shed"
                );
            }
            return;
        };
        let mut rung = session.rungs.remove(index - offset);
        rung.stats.stop.store(true, Ordering::Relaxed);
        rung.tx = None;
        warn!(
            rung = %rung.planned.name,
            lagging = %lagging,
            speed,
            shed_lag_ms = self.settings.shed_lag_ms,
            "the machine cannot keep up: rung shed"
        );
        metrics::counter!("floodlight_transcoder_rungs_shed_total").increment(1);
        self.shed.push(RungStatus {
            name: rung.planned.name.clone(),
            width: rung.planned.width,
            height: rung.planned.height,
            bitrate_bps: Some(rung.bitrate_bps),
            passthrough: false,
            shed: Some("shed-cpu".to_string()),
        });
        let name = rung.planned.name.clone();
        // Detached: it drops its queue and exits; its last frames are no longer mapped.
        drop(rung);
        self.announce();
        self.emit(StageOutput::Stopped {
            rendition: name,
            reason: "shed-cpu",
        });
        self.publish_status(None);
    }

    /// Every [`SPEED_WINDOW_MS`]: the encode speed of the slowest stage.
    fn measure_speed(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let elapsed = session.speed_mark.elapsed();
        if elapsed.as_millis() < SPEED_WINDOW_MS as u128 {
            return;
        }
        let mut slowest: Option<f64> = None;
        for rung in &mut session.rungs {
            let busy = rung.stats.busy_ns.load(Ordering::Relaxed);
            let media = rung.stats.media_ticks.load(Ordering::Relaxed);
            let (busy0, media0) = rung.speed_mark;
            rung.speed_mark = (busy, media);
            if busy > busy0 && media > media0 {
                let speed = ((media - media0) as f64 / f64::from(TIMESCALE))
                    / ((busy - busy0) as f64 / 1e9);
                slowest = Some(slowest.map_or(speed, |s: f64| s.min(speed)));
            }
        }
        session.speed_mark = Instant::now();
        if slowest.is_some() {
            self.publish_status(slowest);
        }
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

    /// The poster, from a decoded picture.
    fn poster(&mut self, picture: &frame::Video, pts: i64) {
        if self.settings.thumbnail_interval <= 0
            || self.next_thumbnail_pts.is_some_and(|next| pts < next)
        {
            return;
        }
        self.next_thumbnail_pts = Some(pts + self.settings.thumbnail_interval);
        let width = self.settings.thumbnail_width.min(picture.width().max(2)) & !1;
        let height = ((u64::from(width) * u64::from(picture.height())
            / u64::from(picture.width().max(1)))
        .max(2) as u32)
            & !1;
        let encoded = self
            .jpeg
            .encode(picture, width, height.max(2), THUMBNAIL_QUALITY);
        match encoded {
            Ok(jpeg) => self.emit(StageOutput::Thumbnail(jpeg)),
            Err(e) => self.count_error("thumbnail_error", &e, pts),
        }
    }

    /// A passthrough-only ladder decodes nothing but the keyframe of each poster.
    fn passthrough_thumbnail(&mut self, frame: &Frame) {
        if !frame.keyframe
            || self.settings.thumbnail_interval <= 0
            || self.next_thumbnail_pts.is_some_and(|next| frame.pts < next)
        {
            return;
        }
        let Some(session) = &self.session else { return };
        let decoded = VideoDecoder::new(&session.video).and_then(|mut d| {
            d.send(frame)?;
            Ok(d.flush())
        });
        match decoded {
            Ok(pictures) => {
                if let Some(p) = pictures.into_iter().next() {
                    self.poster(&p.frame, frame.pts);
                }
            }
            Err(e) => self.count_error("thumbnail_error", &e, frame.pts),
        }
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

    /// Closes every rung's queue and waits for its last frames.
    fn stop_rungs(&mut self) {
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

/// The rung's speed over the current window, ×realtime.
fn rung_speed(rung: &Rung) -> Option<f64> {
    let busy = rung.stats.busy_ns.load(Ordering::Relaxed) - rung.speed_mark.0;
    let media = rung.stats.media_ticks.load(Ordering::Relaxed) - rung.speed_mark.1;
    (busy > 0 && media > 0).then(|| (media as f64 / f64::from(TIMESCALE)) / (busy as f64 / 1e9))
}

/// One rung's thread: scale, encode, hand the frames out.
struct RungWorker {
    id: RungId,
    name: String,
    size: (u32, u32),
    encoder: VideoEncoder,
    out: mpsc::UnboundedSender<StageOutput>,
    stats: Arc<RungStats>,
    errors: u64,
}

impl RungWorker {
    fn run(mut self, rx: sync_mpsc::Receiver<RungPicture>) {
        let mut last_pts: Option<i64> = None;
        // swscale's context stays on this thread (it is not `Send`).
        let mut scaler: Option<Scaler> = None;
        while let Ok(job) = rx.recv() {
            if self.stats.stop.load(Ordering::Relaxed) {
                return;
            }
            let waited = job.queued_at.elapsed().as_millis() as u64;
            self.stats.wait_ms.store(waited, Ordering::Relaxed);
            let started = Instant::now();
            let result = self.encode(&job, &mut scaler);
            self.stats
                .busy_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if let Some(last) = last_pts
                && job.pts > last
            {
                self.stats
                    .media_ticks
                    .fetch_add(job.pts - last, Ordering::Relaxed);
            }
            last_pts = Some(job.pts);
            // After the frames are out: a caller that sees no pending picture sees them.
            let sent = result.map(|frames| self.send(frames, job.received_at_ms));
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            match sent {
                Ok(()) => {}
                Err(e) => {
                    self.errors += 1;
                    metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "encode_error")
                        .increment(1);
                    if self.errors % 100 == 1 {
                        warn!(rung = %self.name, error = %e, pts = job.pts, errors = self.errors, "picture not encoded");
                    }
                }
            }
        }
        match self.encoder.flush() {
            Ok(frames) => self.send(frames, unix_millis()),
            Err(e) => warn!(rung = %self.name, error = %e, "flushing the encoder"),
        }
    }

    fn encode(
        &mut self,
        job: &RungPicture,
        scaler: &mut Option<Scaler>,
    ) -> Result<Vec<Frame>, crate::av::AvError> {
        let picture = &*job.picture;
        let native = (picture.width(), picture.height(), picture.format())
            == (self.size.0, self.size.1, ENCODER_FORMAT);
        if native {
            return self.encoder.encode(picture, job.pts, job.idr);
        }
        // A publisher may change size or format mid-session only with new parameter
        // sets (a new session); still, a scaler is remade when the input differs.
        if !scaler.as_ref().is_some_and(|s| s.accepts(picture)) {
            *scaler = Some(Scaler::new(
                picture.width(),
                picture.height(),
                picture.format(),
                self.size.0,
                self.size.1,
            )?);
        }
        let scaled = match scaler.as_mut() {
            Some(scaler) => scaler.scale(picture)?,
            None => return Err(crate::av::AvError::InvalidSettings("no scaler".into())),
        };
        self.encoder.encode(&scaled, job.pts, job.idr)
    }

    fn send(&self, frames: Vec<Frame>, received_at_ms: i64) {
        for frame in frames {
            // The pipeline is gone only when the stream is ending.
            let _ = self.out.send(StageOutput::Frame {
                id: self.id,
                frame,
                received_at_ms,
            });
        }
    }
}

/// Milliseconds since the Unix epoch.
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use floodlight_media::flv::{FlvFileReader, FlvTagType, VideoTag, parse_video_tag};

    use super::*;
    use crate::config::RungProfile;

    /// 4 s of H.264 High 320x240 @ 30 fps, 2 B-frames, IDR every 2 s (media/testdata).
    const BFRAMES_FLV: &[u8] =
        include_bytes!("../../../media/testdata/ffmpeg_h264_aac_bframes.flv");

    fn settings() -> StageSettings {
        let rung = |name: &str, height, bitrate_bps| RungProfile {
            name: name.to_string(),
            height,
            bitrate_bps,
        };
        StageSettings {
            profile: LadderProfile {
                source: true,
                source_bitrate_bps: None,
                rungs: vec![rung("180p", 180, 200_000), rung("120p", 120, 100_000)],
            },
            segment_target: 180_000,
            tolerance: 9_000,
            preset: "ultrafast".to_string(),
            threads_per_rung: 1,
            vbv_buffer_ms: 1000,
            thumbnail_interval: 0,
            thumbnail_width: 160,
            // Generous: a loaded CI machine must not shed in these tests.
            shed_lag_ms: 60_000,
        }
    }

    fn stamped(event: StreamEvent) -> StampedEvent {
        StampedEvent {
            event,
            received_at_ms: 1_000,
        }
    }

    /// What came out of a ladder: renditions announced (name → params), frames per name.
    #[derive(Default)]
    struct Collected {
        announcements: Vec<Vec<(String, TrackParams)>>,
        frames: BTreeMap<String, Vec<Frame>>,
        thumbnails: Vec<Bytes>,
        ended: bool,
    }

    impl Collected {
        fn keyframes(&self, name: &str) -> Vec<i64> {
            self.frames[name]
                .iter()
                .filter(|f| f.keyframe)
                .map(|f| f.pts)
                .collect()
        }

        fn size(&self, name: &str) -> (u32, u32) {
            let params = &self
                .announcements
                .last()
                .unwrap()
                .iter()
                .find(|(n, _)| n == name);
            match params.map(|(_, p)| &p.codec) {
                Some(CodecParams::H264(c)) => (c.width, c.height),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// Runs `events` through a ladder thread's core; the rung threads are real.
    fn run(settings: StageSettings, events: Vec<StreamEvent>) -> Collected {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let board = Arc::new(StatusBoard::default());
        let mut ladder = Ladder::new("test".to_string(), settings, tx, board);
        for event in events {
            ladder.handle(stamped(event));
            // Faster than real time: let the rungs drain their queues, as pacing would.
            while ladder.session.as_ref().is_some_and(|s| {
                s.rungs
                    .iter()
                    .any(|r| r.stats.pending.load(Ordering::Relaxed) > 0)
            }) {
                thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        ladder.handle(stamped(StreamEvent::Ended));
        let mut collected = Collected::default();
        let mut names: BTreeMap<RungId, String> = BTreeMap::new();
        while let Ok(out) = rx.try_recv() {
            match out {
                StageOutput::Renditions(list) => {
                    names = list.iter().map(|(id, t)| (*id, t.name.clone())).collect();
                    collected
                        .announcements
                        .push(list.into_iter().map(|(_, t)| (t.name, t.params)).collect());
                }
                StageOutput::Frame { id, frame, .. } => {
                    // Frames of a rung no longer listed are dropped, as the pipeline does.
                    if let Some(name) = names.get(&id) {
                        collected
                            .frames
                            .entry(name.clone())
                            .or_default()
                            .push(frame);
                    }
                }
                StageOutput::Thumbnail(jpeg) => collected.thumbnails.push(jpeg),
                StageOutput::Ended { .. } => collected.ended = true,
                StageOutput::Stopped { rendition, .. } => panic!("{rendition} shed"),
            }
        }
        collected
    }

    fn capture() -> Vec<StreamEvent> {
        let mut events = Vec::new();
        for tag in FlvFileReader::new(BFRAMES_FLV).unwrap() {
            let tag = tag.unwrap();
            if tag.tag_type != FlvTagType::Video {
                continue;
            }
            match parse_video_tag(tag.body, tag.timestamp_ms).unwrap() {
                VideoTag::SequenceHeader(c) => {
                    events.push(StreamEvent::Tracks(vec![TrackParams::video(c)]))
                }
                VideoTag::Frame(f) => events.push(StreamEvent::Frame(f)),
                _ => {}
            }
        }
        events
    }

    /// A moving gradient, 4:2:0, picture `n`.
    fn picture(width: u32, height: u32, n: usize) -> frame::Video {
        let mut picture = frame::Video::new(ENCODER_FORMAT, width, height);
        for plane in 0..3 {
            let stride = picture.stride(plane);
            let (w, h) = (picture.plane_width(plane), picture.plane_height(plane));
            let data = picture.data_mut(plane);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    data[y * stride + x] = ((x + 2 * y + 4 * n) % 200 + 16 * plane) as u8;
                }
            }
        }
        picture
    }

    /// `seconds` of 320x240 @ 30 fps H.264 with an IDR every `gop` pictures.
    fn generated(seconds: usize, gop: usize) -> Vec<StreamEvent> {
        generated_at(30, seconds, gop)
    }

    /// As [`generated`], at `fps` (whole) frames per second.
    fn generated_at(fps: usize, seconds: usize, gop: usize) -> Vec<StreamEvent> {
        let mut encoder = VideoEncoder::new(&EncoderSettings {
            width: 320,
            height: 240,
            frame_rate: (fps as u32, 1),
            bitrate_bps: 300_000,
            max_bitrate_bps: 300_000,
            vbv_buffer_bits: 300_000,
            preset: "ultrafast".to_string(),
            profile: H264Profile::High,
            threads: 1,
            keyint_max_frames: 0,
        })
        .unwrap();
        let mut events = vec![StreamEvent::Tracks(vec![TrackParams::video(
            encoder.config().clone(),
        )])];
        let interval = 90_000 / fps as i64;
        for n in 0..seconds * fps {
            let frames = encoder
                .encode(&picture(320, 240, n), n as i64 * interval, n % gop == 0)
                .unwrap();
            events.extend(frames.into_iter().map(StreamEvent::Frame));
        }
        events.extend(encoder.flush().unwrap().into_iter().map(StreamEvent::Frame));
        events
    }

    #[test]
    fn a_2_s_gop_keeps_the_passthrough_and_every_rung_has_its_keyframes() {
        let out = run(settings(), capture());
        assert!(out.ended);
        // One announcement: the passthrough stayed.
        assert_eq!(out.announcements.len(), 1);
        let names: Vec<&str> = out.announcements[0]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["source", "180p", "120p"]);
        assert_eq!(out.size("180p"), (240, 180));
        assert_eq!(out.size("120p"), (160, 120));
        let source = out.keyframes("source");
        assert_eq!(source.len(), 2, "IDRs at 0 and 2 s: {source:?}");
        for rung in ["180p", "120p"] {
            assert_eq!(out.keyframes(rung), source, "{rung}");
            let frames = &out.frames[rung];
            assert!(frames.iter().all(|f| f.dts == f.pts));
            // Every picture of the source is encoded, in presentation order.
            assert_eq!(frames.len(), out.frames["source"].len(), "{rung}");
            assert!(frames.windows(2).all(|p| p[1].pts > p[0].pts));
        }
    }

    #[test]
    fn a_4_s_gop_forces_aligned_idrs_and_reencodes_source() {
        let out = run(settings(), generated(9, 120));
        assert_eq!(out.announcements.len(), 2, "source switched once");
        let first: Vec<&str> = out.announcements[0]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let then: Vec<&str> = out.announcements[1]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(first, ["source", "180p", "120p"]);
        assert_eq!(then, ["source", "180p", "120p"]);
        assert_eq!(out.size("source"), (320, 240));
        // Boundaries: the first source IDR, then every 2 s from target + tolerance.
        let boundaries = [0, 189_000, 369_000, 549_000, 729_000];
        assert_eq!(out.keyframes("180p"), boundaries);
        assert_eq!(out.keyframes("120p"), boundaries);
        // `source`: passed through up to the switch, re-encoded from it on.
        let source = &out.frames["source"];
        let switch = source.iter().position(|f| f.pts == 189_000).unwrap();
        assert!(source[..switch].iter().all(|f| f.pts < 189_000));
        let reencoded: BTreeSet<i64> = source[switch..]
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.pts)
            .collect();
        assert_eq!(reencoded, boundaries[1..].iter().copied().collect());
        assert!(source[switch].keyframe);
        assert_eq!(
            source.len(),
            270,
            "no picture lost or doubled at the switch"
        );
    }

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

    #[test]
    fn shedding_drops_the_middle_rung_tells_the_origin_and_shows_in_the_status() {
        let mut settings = settings();
        settings.profile.rungs.push(RungProfile {
            name: "90p".to_string(),
            height: 90,
            bitrate_bps: 60_000,
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let board = Arc::new(StatusBoard::default());
        let mut ladder = Ladder::new("shed".to_string(), settings, tx, board.clone());
        for event in capture().into_iter().take(10) {
            ladder.handle(stamped(event));
        }
        // 120p lagged; the choice is by cost: 180p, the most expensive middle rung.
        ladder.shed(1);
        let status = board.get("shed").unwrap();
        let names: Vec<(&str, Option<&str>)> = status
            .rungs
            .iter()
            .map(|r| (r.name.as_str(), r.shed.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("source", None),
                ("120p", None),
                ("90p", None),
                ("180p", Some("shed-cpu"))
            ]
        );
        // Source and the lowest rung stay: one more shed, then no more.
        ladder.shed(0);
        ladder.shed(0);
        ladder.handle(stamped(StreamEvent::Ended));
        let mut announced = Vec::new();
        let mut stopped = Vec::new();
        while let Ok(out) = rx.try_recv() {
            match out {
                StageOutput::Renditions(list) => announced.push(
                    list.into_iter()
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
        assert_eq!(
            announced,
            ["source,180p,120p,90p", "source,120p,90p", "source,90p"]
        );
        assert_eq!(stopped, ["180p:shed-cpu", "120p:shed-cpu"]);
    }

    #[test]
    fn a_120_fps_source_is_encoded_at_60_with_aligned_keyframes() {
        let out = run(settings(), generated_at(120, 3, 240));
        assert_eq!(out.announcements.len(), 1, "2 s GOP: the passthrough stays");
        assert_eq!(out.frames["source"].len(), 360);
        let source = out.keyframes("source");
        assert_eq!(source, [0, 180_000]);
        for rung in ["180p", "120p"] {
            let frames = &out.frames[rung];
            // Every other picture, the boundaries always among them.
            assert_eq!(frames.len(), 180, "{rung}");
            assert!(frames.windows(2).all(|p| p[1].pts - p[0].pts == 1500));
            assert_eq!(out.keyframes(rung), source, "{rung}");
        }
        let CodecParams::H264(rung) = &out.announcements[0][1].1.codec else {
            panic!()
        };
        assert_eq!(rung.frame_rate, Some(60.0));
    }

    #[test]
    fn a_passthrough_only_ladder_decodes_keyframes_for_the_poster() {
        let mut settings = settings();
        settings.profile.rungs.clear();
        settings.thumbnail_interval = 90_000;
        let out = run(settings, capture());
        assert_eq!(out.frames.keys().collect::<Vec<_>>(), ["source"]);
        // Keyframes at 0 and 2 s, a poster due every second: one per keyframe.
        assert_eq!(out.thumbnails.len(), 2);
        assert!(out.thumbnails.iter().all(|j| j.starts_with(&[0xff, 0xd8])));
    }
}
