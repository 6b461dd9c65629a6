//! One pipeline task per live stream: events in, the ladder's threads (Opus → AAC, then
//! decode, align, scale and encode per rung), the packager, pushes out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    StageOutput, StageSettings, StatusBoard, TranscoderLoad, process_cpu_seconds, spawn_ladder,
};
use crate::push::{OriginPusher, PushItem, PushSettings, RESUME_DEADLINE, resume_point};
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

async fn run_stream(
    inner: Arc<Inner>,
    event_id: String,
    settings: StreamSettings,
    plumbing: Plumbing,
) {
    let Plumbing {
        mut rx,
        sessions,
        resume,
        progress,
    } = plumbing;
    let config = &inner.config;
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
    let stage_settings = StageSettings {
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
    let mut start = resume_point(
        &inner.push,
        &config.origins,
        &event_id,
        &renditions,
        RESUME_DEADLINE,
    )
    .await;
    if let Some(last) = &resume {
        start = start.after(last);
    }
    let packager = StreamPackager::new(PackagerConfig {
        part_target: part_target as u32,
        segment_target: segment_target as u32,
        first_msn: start.msn,
        first_init_version: start.init_version,
        // An origin that knew the stream (a transcoder taking over, or a publisher back
        // after the stream ended): numbering continues but the timeline restarts, so the
        // first segment needs EXT-X-DISCONTINUITY (RFC 8216bis §4.4.4.3).
        continues: resume.is_some() || start.msn > 0,
        access: settings.access,
    });
    let mut ladder = match spawn_ladder(&event_id, stage_settings, inner.board.clone()) {
        Ok(ladder) => ladder,
        Err(e) => {
            error!(error = %e, "cannot start the ladder thread: the stream is dropped");
            lock(&inner.streams).remove(&event_id);
            return;
        }
    };
    let first_msn = start.msn;
    let pushers: Vec<OriginPusher> = config
        .origins
        .iter()
        .map(|o| OriginPusher::spawn(inner.push.clone(), o, &event_id))
        .collect();
    let mut output = Packaging {
        packager,
        pushers,
        progress,
        renditions: Vec::new(),
        errors: 0,
    };
    let grace = Duration::from_secs(config.reconnect_grace_secs);
    metrics::gauge!("floodlight_transcoder_active_streams").increment(1);
    info!(first_msn, ladder = ladder_name, "stream pipeline started");

    // Set after a session's `Ended`: (deadline, sessions begun at that time).
    let mut ending: Option<(Instant, u64)> = None;
    // Started by the first session with an Opus track; from then on every event goes
    // through it, so events stay in order.
    let mut stage: Option<AudioStage> = None;
    loop {
        let step = tokio::select! {
            received = next_event(&mut rx, ending) => Step::Received(received),
            staged = stage_output(&mut stage) => Step::Staged(staged),
            laddered = ladder.recv() => Step::Laddered(laddered),
        };
        let received = match step {
            Step::Laddered(Some(out)) => {
                output.feed(out);
                continue;
            }
            Step::Laddered(None) => {
                error!("the ladder thread stopped: the stream is dropped");
                lock(&inner.streams).remove(&event_id);
                break;
            }
            Step::Staged(Some(stamped)) => {
                if ladder.send(stamped).await.is_err() {
                    error!("the ladder thread stopped: the stream is dropped");
                    lock(&inner.streams).remove(&event_id);
                    break;
                }
                continue;
            }
            Step::Staged(None) => {
                error!("the audio stage stopped: events queued in it are lost");
                stage = None;
                continue;
            }
            Step::Received(received) => received,
        };
        let Some(stamped) = received else {
            // Grace period over: end the stream unless a new session has just begun.
            let mut streams = lock(&inner.streams);
            match ending {
                Some((_, seen)) if sessions.load(Ordering::SeqCst) != seen => {
                    ending = None;
                    continue;
                }
                _ => {
                    streams.remove(&event_id);
                    break;
                }
            }
        };
        if matches!(stamped.event, StreamEvent::Ended) {
            ending = Some((Instant::now() + grace, sessions.load(Ordering::SeqCst)));
        } else {
            ending = None;
        }
        if stage.is_none() && needs_stage(&stamped.event) {
            match audio_stage::spawn(&event_id, config.aac_bitrate_bps) {
                Ok(started) => stage = Some(started),
                // The ladder then leaves the Opus track out: video goes on, without audio.
                Err(e) => error!(error = %e, "cannot start the audio stage thread"),
            }
        }
        let sent = match &stage {
            Some(running) => {
                if running.send(stamped).await.is_err() {
                    error!("the audio stage stopped: events queued in it are lost");
                    stage = None;
                }
                Ok(())
            }
            None => ladder.send(stamped).await,
        };
        if sent.is_err() {
            error!("the ladder thread stopped: the stream is dropped");
            lock(&inner.streams).remove(&event_id);
            break;
        }
    }
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
    inner.board.remove(&event_id);
    for pusher in &mut output.pushers {
        pusher.push(PushItem::End);
    }
    metrics::gauge!("floodlight_transcoder_active_streams").decrement(1);
    info!("stream ended");
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

/// Milliseconds since the Unix epoch.
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
