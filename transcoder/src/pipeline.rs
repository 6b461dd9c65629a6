//! One pipeline task per live stream: events in, the ladder's threads (Opus → AAC, then
//! decode, align, scale and encode per rung), the packager, pushes out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floodlight_media::clock::unix_millis;
use floodlight_media::package::{
    AUDIO_RENDITION, PackagerConfig, PackagerOutput, SOURCE_RENDITION, StreamPackager,
};
use floodlight_media::push::LastPart;
use floodlight_media::{LadderEvent, StampedEvent, StreamEvent, StreamSettings, TIMESCALE};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, error, info, warn};

use crate::audio_stage::{self, AudioStage, needs_stage};
use crate::config::{ConfigError, TranscoderConfig};
use crate::ladder::{
    LadderStage, StageOutput, StageSettings, StatusBoard, TranscoderLoad, process_cpu_seconds,
    spawn_ladder,
};
use crate::push::{
    OriginPusher, PushItem, PushSettings, RESUME_DEADLINE, ResumePoint, resume_point,
};
use floodlight_media::sync::lock;

/// Events queued from ingest to a stream's pipeline.
const SESSION_QUEUE: usize = 1024;

/// The transcoder service: hands each live stream its pipeline.
#[derive(Clone)]
pub struct Transcoder {
    inner: Arc<Inner>,
}

struct Inner {
    config: TranscoderConfig,
    push: PushSettings,
    streams: Mutex<HashMap<String, StreamEntry>>,
    board: Arc<StatusBoard>,
}

/// A publisher session's way into its stream's pipeline.
pub struct StreamSession {
    /// The session's events, in order.
    pub events: mpsc::Sender<StampedEvent>,
    /// The last part the stream's pipeline has packaged (`None` before the first): what
    /// ingest hands the next transcoder if this one dies, so numbering continues.
    pub progress: watch::Receiver<Option<LastPart>>,
}

struct StreamEntry {
    tx: mpsc::Sender<StampedEvent>,
    progress: watch::Receiver<Option<LastPart>>,
    /// Publisher sessions begun on this pipeline; lets a pipeline whose grace period
    /// expires see a session that began but has not sent anything yet.
    sessions: Arc<AtomicU64>,
}

impl Transcoder {
    pub fn new(config: TranscoderConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        if config.origins.is_empty() {
            return Err(ConfigError::Invalid {
                key: "origins",
                reason: "at least one origin URL is needed".to_string(),
            });
        }
        let push = PushSettings {
            client: reqwest::Client::new(),
            token: config.push_token.clone(),
            timeout: Duration::from_millis(config.push_timeout_ms),
            retries: config.push_retries,
            queue: config.push_queue,
        };
        let inner = Arc::new(Inner {
            config,
            push,
            streams: Mutex::default(),
            board: Arc::default(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(report_cpu(Arc::downgrade(&inner)));
        }
        Ok(Transcoder { inner })
    }

    /// A new publisher session of `event_id`: into the stream's running pipeline if it is
    /// still within its reconnect grace period, a new pipeline otherwise. `settings`
    /// apply to a new pipeline; a running one keeps those it started with (PART-TARGET,
    /// say, is fixed for a stream's life). `resume` is the last part another transcoder
    /// packaged for the stream (it died, and ingest moved the stream here): a new
    /// pipeline continues after it, with EXT-X-DISCONTINUITY.
    pub fn begin_session(
        &self,
        event_id: &str,
        settings: &StreamSettings,
        resume: Option<LastPart>,
    ) -> StreamSession {
        let mut streams = lock(&self.inner.streams);
        if let Some(entry) = streams.get(event_id)
            && !entry.tx.is_closed()
        {
            entry.sessions.fetch_add(1, Ordering::SeqCst);
            return StreamSession {
                events: entry.tx.clone(),
                progress: entry.progress.clone(),
            };
        }
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let (progress_tx, progress) = watch::channel(None);
        let sessions = Arc::new(AtomicU64::new(1));
        streams.insert(
            event_id.to_string(),
            StreamEntry {
                tx: tx.clone(),
                progress: progress.clone(),
                sessions: sessions.clone(),
            },
        );
        let span = tracing::info_span!("stream", event = event_id);
        tokio::spawn(
            run_stream(
                self.inner.clone(),
                event_id.to_string(),
                settings.clone(),
                Plumbing {
                    rx,
                    sessions,
                    resume,
                    progress: progress_tx,
                },
            )
            .instrument(span),
        );
        StreamSession {
            events: tx,
            progress,
        }
    }

    /// Streams with a running pipeline (publishing or within their grace period).
    pub fn active_streams(&self) -> usize {
        lock(&self.inner.streams).len()
    }

    /// What this transcoder is running: streams, encoded rungs over all of them, and
    /// their cost against `capacity_rungs`.
    pub fn load(&self) -> TranscoderLoad {
        let streams = lock(&self.inner.streams);
        self.inner.board.load(streams.keys().map(String::as_str))
    }

    /// Whether `event_id` has a running pipeline (publishing or within its grace
    /// period): a session of it joins that pipeline and adds no load.
    pub fn is_running(&self, event_id: &str) -> bool {
        lock(&self.inner.streams)
            .get(event_id)
            .is_some_and(|entry| !entry.tx.is_closed())
    }
}

/// The process's CPU time, every second while the transcoder exists: the autoscaling
/// signal beside the encode speed (rate() of it is the cores in use). A gauge because
/// `metrics` counters are whole numbers, too coarse for seconds; it only grows. /proc is
/// read off the async runtime.
async fn report_cpu(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(CPU_REPORT_INTERVAL);
    loop {
        tick.tick().await;
        if inner.strong_count() == 0 {
            return;
        }
        if let Ok(Some(cpu)) = tokio::task::spawn_blocking(process_cpu_seconds).await {
            metrics::gauge!("floodlight_transcoder_cpu_seconds").set(cpu);
        }
    }
}

/// How often the process's CPU time is reported.
const CPU_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A pipeline's channels to the sessions feeding it.
struct Plumbing {
    rx: mpsc::Receiver<StampedEvent>,
    sessions: Arc<AtomicU64>,
    resume: Option<LastPart>,
    progress: watch::Sender<Option<LastPart>>,
}

/// A stream's pipeline, from its first session to the end of its grace period: plan the
/// ladder, find where the numbering starts, start the ladder and the pushers, feed them
/// until the stream ends, then finish.
async fn run_stream(
    inner: Arc<Inner>,
    event_id: String,
    settings: StreamSettings,
    plumbing: Plumbing,
) {
    let Plumbing {
        rx,
        sessions,
        resume,
        progress,
    } = plumbing;
    let plan = plan_ladder(&inner.config, &settings);
    let start = numbering_start(&inner, &event_id, &plan.renditions, resume.as_ref()).await;
    let packager = new_packager(&plan, &settings, start, resume.is_some());
    let Some(ladder) = start_ladder(&inner, &event_id, plan.stage) else {
        return;
    };
    let first_msn = start.msn;
    let output = Packaging {
        packager,
        pushers: start_pushers(&inner, &event_id),
        progress,
        renditions: Vec::new(),
        errors: 0,
    };
    let mut run = StreamRun {
        inner: &inner,
        event_id: &event_id,
        rx,
        sessions,
        grace: Duration::from_secs(inner.config.reconnect_grace_secs),
        ending: None,
        stage: None,
        ladder,
        output,
    };
    metrics::gauge!("floodlight_transcoder_active_streams").increment(1);
    info!(
        first_msn,
        ladder = plan.ladder_name,
        "stream pipeline started"
    );
    run.feed_until_done().await;
    run.finish().await;
}

/// A stream's ladder, planned from the configuration and the event's settings.
struct StreamPlan<'a> {
    /// The profile's name: the event's, or the default if the event's is not configured.
    ladder_name: &'a str,
    /// The packager's targets, 90 kHz.
    part_target: i64,
    segment_target: i64,
    stage: StageSettings,
    /// Every rendition the ladder may have: where the origins are asked for the numbering.
    renditions: Vec<&'a str>,
}

/// The event's ladder profile (the default if it is not configured here) and the
/// settings of its ladder thread.
fn plan_ladder<'a>(config: &'a TranscoderConfig, settings: &StreamSettings) -> StreamPlan<'a> {
    let ticks = |ms: u32| i64::from(ms * (TIMESCALE / 1000));
    let (ladder_name, profile, known) = config.profile(settings.ladder.as_deref());
    if !known {
        warn!(
            requested = settings.ladder.as_deref().unwrap_or(""),
            ladder = ladder_name,
            "the event's ladder profile is not configured here: using the default"
        );
    }
    let part_target = ticks(settings.part_target_ms.unwrap_or(config.part_target_ms));
    let segment_target = ticks(config.segment_target_ms);
    let stage = StageSettings {
        profile: profile.clone(),
        segment_target,
        // The packager's early tolerance: its cuts land on the same pictures.
        tolerance: part_target / 2,
        preset: config.x264_preset.clone(),
        threads_per_rung: config.threads_per_rung,
        vbv_buffer_ms: config.vbv_buffer_ms,
        thumbnail_interval: i64::from(config.thumbnail_interval_secs) * i64::from(TIMESCALE),
        thumbnail_width: config.thumbnail_width,
        shed_lag_ms: config.shed_lag_ms,
    };
    let mut renditions = vec![SOURCE_RENDITION, AUDIO_RENDITION];
    renditions.extend(profile.rungs.iter().map(|r| r.name.as_str()));
    StreamPlan {
        ladder_name,
        part_target,
        segment_target,
        stage,
        renditions,
    }
}

/// Where the stream's numbering starts: past what the origins know of `renditions`, and
/// past `resume` (the last part a transcoder that died packaged).
async fn numbering_start(
    inner: &Inner,
    event_id: &str,
    renditions: &[&str],
    resume: Option<&LastPart>,
) -> ResumePoint {
    let mut start = resume_point(
        &inner.push,
        &inner.config.origins,
        event_id,
        renditions,
        RESUME_DEADLINE,
    )
    .await;
    if let Some(last) = resume {
        start = start.after(last);
    }
    start
}

/// The stream's packager, numbering from `start`; `resumed` when another transcoder
/// packaged the stream before.
fn new_packager(
    plan: &StreamPlan<'_>,
    settings: &StreamSettings,
    start: ResumePoint,
    resumed: bool,
) -> StreamPackager {
    StreamPackager::new(PackagerConfig {
        part_target: plan.part_target as u32,
        segment_target: plan.segment_target as u32,
        first_msn: start.msn,
        first_init_version: start.init_version,
        // An origin that knew the stream (a transcoder taking over, or a publisher back
        // after the stream ended): numbering continues but the timeline restarts, so the
        // first segment needs EXT-X-DISCONTINUITY (RFC 8216bis §4.4.4.3).
        continues: resumed || start.msn > 0,
        access: settings.access,
        dvr_window_secs: settings.dvr_window_secs,
    })
}

/// The stream's ladder thread; `None`, and the stream dropped, if it cannot start.
fn start_ladder(inner: &Inner, event_id: &str, settings: StageSettings) -> Option<LadderStage> {
    match spawn_ladder(event_id, settings, inner.board.clone()) {
        Ok(ladder) => Some(ladder),
        Err(e) => {
            error!(error = %e, "cannot start the ladder thread: the stream is dropped");
            lock(&inner.streams).remove(event_id);
            None
        }
    }
}

/// One pusher per origin of the stream.
fn start_pushers(inner: &Inner, event_id: &str) -> Vec<OriginPusher> {
    inner
        .config
        .origins
        .iter()
        .map(|o| OriginPusher::spawn(inner.push.clone(), o, event_id))
        .collect()
}

/// A started pipeline: what feeding it needs between its start and its finish.
struct StreamRun<'a> {
    inner: &'a Inner,
    event_id: &'a str,
    rx: mpsc::Receiver<StampedEvent>,
    sessions: Arc<AtomicU64>,
    /// How long the pipeline waits for a publisher to reconnect after `Ended`.
    grace: Duration,
    /// Set after a session's `Ended`: (deadline, sessions begun at that time).
    ending: Option<(Instant, u64)>,
    /// Started by the first session with an Opus track; from then on every event goes
    /// through it, so events stay in order.
    stage: Option<AudioStage>,
    ladder: LadderStage,
    output: Packaging,
}

/// Whether the pipeline goes on after a step.
enum Flow {
    Continue,
    Stop,
}

impl StreamRun<'_> {
    /// Takes the ladder's outputs, the audio stage's and ingest's events as they come,
    /// until the grace period after the last session is over or the ladder thread stops.
    async fn feed_until_done(&mut self) {
        loop {
            let step = tokio::select! {
                received = next_event(&mut self.rx, self.ending) => Step::Received(received),
                staged = stage_output(&mut self.stage) => Step::Staged(staged),
                laddered = self.ladder.recv() => Step::Laddered(laddered),
            };
            let flow = match step {
                Step::Laddered(Some(out)) => {
                    self.output.feed(out);
                    Flow::Continue
                }
                Step::Laddered(None) => self.drop_stream(),
                Step::Staged(Some(stamped)) => self.pass_to_ladder(stamped).await,
                Step::Staged(None) => {
                    self.audio_stage_stopped();
                    Flow::Continue
                }
                Step::Received(None) => self.grace_over(),
                Step::Received(Some(stamped)) => self.received(stamped).await,
            };
            if let Flow::Stop = flow {
                break;
            }
        }
    }

    /// An event from ingest: it starts or cancels the reconnect grace period, starts the
    /// audio stage if it needs it, and goes on to the stage or the ladder.
    async fn received(&mut self, stamped: StampedEvent) -> Flow {
        self.await_reconnect_after(&stamped.event);
        self.start_audio_stage_if_needed(&stamped.event);
        self.route(stamped).await
    }

    /// A session's `Ended` starts the grace period within which a publisher may
    /// reconnect (the numbering then continues with a discontinuity); any other event
    /// cancels it.
    fn await_reconnect_after(&mut self, event: &StreamEvent) {
        if matches!(event, StreamEvent::Ended) {
            self.ending = Some((
                Instant::now() + self.grace,
                self.sessions.load(Ordering::SeqCst),
            ));
        } else {
            self.ending = None;
        }
    }

    /// The grace period is over (or every sender is gone): the stream ends unless a new
    /// session has just begun.
    fn grace_over(&mut self) -> Flow {
        let mut streams = lock(&self.inner.streams);
        match self.ending {
            Some((_, seen)) if self.sessions.load(Ordering::SeqCst) != seen => {
                self.ending = None;
                Flow::Continue
            }
            _ => {
                streams.remove(self.event_id);
                Flow::Stop
            }
        }
    }

    /// Starts the audio stage on the first event that needs it (an Opus track).
    fn start_audio_stage_if_needed(&mut self, event: &StreamEvent) {
        if self.stage.is_none() && needs_stage(event) {
            match audio_stage::spawn(self.event_id, self.inner.config.aac_bitrate_bps) {
                Ok(started) => self.stage = Some(started),
                // The ladder then leaves the Opus track out: video goes on, without audio.
                Err(e) => error!(error = %e, "cannot start the audio stage thread"),
            }
        }
    }

    /// An event into the audio stage while it runs, else into the ladder.
    async fn route(&mut self, stamped: StampedEvent) -> Flow {
        let sent = match &self.stage {
            Some(running) => {
                if running.send(stamped).await.is_err() {
                    self.audio_stage_stopped();
                }
                Ok(())
            }
            None => self.ladder.send(stamped).await,
        };
        if sent.is_err() {
            return self.drop_stream();
        }
        Flow::Continue
    }

    /// An event out of the audio stage into the ladder.
    async fn pass_to_ladder(&mut self, stamped: StampedEvent) -> Flow {
        if self.ladder.send(stamped).await.is_err() {
            return self.drop_stream();
        }
        Flow::Continue
    }

    fn audio_stage_stopped(&mut self) {
        error!("the audio stage stopped: events queued in it are lost");
        self.stage = None;
    }

    /// The ladder thread is gone: so is the stream.
    fn drop_stream(&self) -> Flow {
        error!("the ladder thread stopped: the stream is dropped");
        lock(&self.inner.streams).remove(self.event_id);
        Flow::Stop
    }

    /// The stream's end: the events still in the audio stage go to the ladder, the
    /// ladder's last outputs to the packager, and every origin is told the stream ended.
    async fn finish(self) {
        let StreamRun {
            inner,
            event_id,
            stage,
            ladder,
            mut output,
            ..
        } = self;
        if let Some(stage) = stage {
            for stamped in stage.close().await {
                if ladder.send(stamped).await.is_err() {
                    break;
                }
            }
        }
        for out in ladder.close().await {
            output.feed(out);
        }
        inner.board.remove(event_id);
        for pusher in &mut output.pushers {
            pusher.push(PushItem::End);
        }
        metrics::gauge!("floodlight_transcoder_active_streams").decrement(1);
        info!("stream ended");
    }
}

enum Step {
    Received(Option<StampedEvent>),
    Staged(Option<StampedEvent>),
    Laddered(Option<StageOutput>),
}

/// The next event from ingest; `None` when the grace period after `Ended` is over (or
/// every sender is gone).
async fn next_event(
    rx: &mut mpsc::Receiver<StampedEvent>,
    ending: Option<(Instant, u64)>,
) -> Option<StampedEvent> {
    match ending {
        // A timeout reads as "no event": the grace period is over.
        Some((deadline, _)) => tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_default(),
        None => rx.recv().await,
    }
}

/// The next event out of the audio stage; never resolves without one.
async fn stage_output(stage: &mut Option<AudioStage>) -> Option<StampedEvent> {
    match stage {
        Some(stage) => stage.recv().await,
        None => std::future::pending().await,
    }
}

/// The packager of a stream and the pushers its outputs go to.
struct Packaging {
    packager: StreamPackager,
    pushers: Vec<OriginPusher>,
    progress: watch::Sender<Option<LastPart>>,
    /// The ladder's rung ids in the packager's rendition order (the latest `Renditions`).
    renditions: Vec<u64>,
    errors: u64,
}

impl Packaging {
    fn feed(&mut self, out: StageOutput) {
        let (event, now_ms) = match out {
            StageOutput::Renditions(list) => {
                self.renditions = list.iter().map(|(id, _)| *id).collect();
                let tracks = list.into_iter().map(|(_, track)| track).collect();
                (LadderEvent::Renditions(tracks), unix_millis())
            }
            StageOutput::Frame {
                id,
                frame,
                received_at_ms,
            } => {
                // A shed rung's last frames, encoded after it left the ladder.
                let Some(rendition) = self.renditions.iter().position(|r| *r == id) else {
                    return;
                };
                (LadderEvent::Frame { rendition, frame }, received_at_ms)
            }
            StageOutput::Ended { received_at_ms } => (LadderEvent::Ended, received_at_ms),
            StageOutput::Thumbnail(jpeg) => {
                for pusher in &mut self.pushers {
                    pusher.push(PushItem::Thumbnail(jpeg.clone()));
                }
                return;
            }
            StageOutput::Stopped { rendition, reason } => {
                for pusher in &mut self.pushers {
                    pusher.push(PushItem::Stop {
                        rendition: rendition.clone(),
                        reason,
                    });
                }
                return;
            }
        };
        if let Err(e) = self.packager.handle_ladder(event, now_ms) {
            self.errors += 1;
            metrics::counter!("floodlight_transcoder_packager_errors_total").increment(1);
            if self.errors % 100 == 1 {
                warn!(error = %e, errors = self.errors, "packager rejected input");
            }
        }
        while let Some(output) = self.packager.poll_output() {
            if let PackagerOutput::Part {
                rendition, meta, ..
            } = &output
            {
                // Frame in at ingest → part out of the packager, per rung.
                let latency_ms = (unix_millis() - meta.last_frame_arrival_ms).max(0);
                metrics::histogram!("floodlight_transcoder_rung_latency_seconds", "rung" => rendition.clone())
                    .record(latency_ms as f64 / 1000.0);
                let last = LastPart {
                    msn: meta.msn,
                    part: meta.part,
                    ends_segment: meta.ends_segment,
                    init_version: meta.init_version,
                };
                self.progress.send_if_modified(|current| {
                    let later = current
                        .as_ref()
                        .is_none_or(|c| (last.msn, last.part) > (c.msn, c.part));
                    if later {
                        *current = Some(last);
                    }
                    later
                });
            }
            for pusher in &mut self.pushers {
                pusher.push(PushItem::Output(output.clone()));
            }
        }
    }
}
