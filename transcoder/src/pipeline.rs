//! One pipeline task per live stream: events in, packager, pushes out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floodlight_media::package::{
    AUDIO_RENDITION, PackagerConfig, PackagerOutput, SOURCE_RENDITION, StreamPackager,
};
use floodlight_media::push::LastPart;
use floodlight_media::{StampedEvent, StreamEvent, StreamSettings, TIMESCALE};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument, error, info, warn};

use crate::audio_stage::{AudioStage, needs_stage};
use crate::config::{ConfigError, TranscoderConfig};
use crate::push::{OriginPusher, PushItem, PushSettings, resume_point};

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
        Ok(Transcoder {
            inner: Arc::new(Inner {
                config,
                push,
                streams: Mutex::default(),
            }),
        })
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
}

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
    let ticks = |ms: u32| ms * (TIMESCALE / 1000);
    let renditions = [SOURCE_RENDITION, AUDIO_RENDITION];
    let mut start = resume_point(&inner.push, &config.origins, &event_id, &renditions).await;
    if let Some(last) = &resume {
        start = start.after(last);
    }
    let packager = StreamPackager::new(PackagerConfig {
        part_target: ticks(settings.part_target_ms.unwrap_or(config.part_target_ms)),
        segment_target: ticks(config.segment_target_ms),
        first_msn: start.msn,
        first_init_version: start.init_version,
        continues: resume.is_some(),
        access: settings.access,
    });
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
        errors: 0,
    };
    let grace = Duration::from_secs(config.reconnect_grace_secs);
    metrics::gauge!("floodlight_transcoder_active_streams").increment(1);
    info!(first_msn, "stream pipeline started");

    // Set after a session's `Ended`: (deadline, sessions begun at that time).
    let mut ending: Option<(Instant, u64)> = None;
    // Started by the first session with an Opus track; from then on every event goes
    // through it, so events stay in order.
    let mut stage: Option<AudioStage> = None;
    loop {
        let step = tokio::select! {
            received = next_event(&mut rx, ending) => Step::Received(received),
            staged = stage_output(&mut stage) => Step::Staged(staged),
        };
        let received = match step {
            Step::Staged(Some(stamped)) => {
                output.feed(stamped);
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
            match AudioStage::spawn(&event_id, config.aac_bitrate_bps) {
                Ok(started) => stage = Some(started),
                // The packager then refuses the Opus track: video goes on, without audio.
                Err(e) => error!(error = %e, "cannot start the audio stage thread"),
            }
        }
        match &stage {
            Some(running) => {
                if running.send(stamped).await.is_err() {
                    error!("the audio stage stopped: events queued in it are lost");
                    stage = None;
                }
            }
            None => output.feed(stamped),
        }
    }
    if let Some(stage) = stage {
        for stamped in stage.close().await {
            output.feed(stamped);
        }
    }
    for pusher in &mut output.pushers {
        pusher.push(PushItem::End);
    }
    metrics::gauge!("floodlight_transcoder_active_streams").decrement(1);
    info!("stream ended");
}

enum Step {
    Received(Option<StampedEvent>),
    Staged(Option<StampedEvent>),
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
    errors: u64,
}

impl Packaging {
    fn feed(&mut self, stamped: StampedEvent) {
        if let Err(e) = self
            .packager
            .handle_event(stamped.event, stamped.received_at_ms)
        {
            self.errors += 1;
            metrics::counter!("floodlight_transcoder_packager_errors_total").increment(1);
            if self.errors % 100 == 1 {
                warn!(error = %e, errors = self.errors, "packager rejected input");
            }
        }
        while let Some(output) = self.packager.poll_output() {
            if let PackagerOutput::Part { meta, .. } = &output {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single insert/remove critical sections: a poisoned map is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
