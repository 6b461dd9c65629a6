//! One pipeline task per live stream: events in, packager, pushes out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floodlight_media::package::{
    AUDIO_RENDITION, PackagerConfig, SOURCE_RENDITION, StreamPackager,
};
use floodlight_media::{StampedEvent, StreamEvent, StreamSettings, TIMESCALE};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, error, info, warn};

use crate::audio_stage::{AudioStage, needs_stage};
use crate::config::{ConfigError, TranscoderConfig};
use crate::push::{OriginPusher, PushItem, PushSettings, next_msn};

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

struct StreamEntry {
    tx: mpsc::Sender<StampedEvent>,
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

    /// The sender for a new publisher session of `event_id`: the stream's running pipeline
    /// if it is still within its reconnect grace period, a new pipeline otherwise.
    /// `settings` apply to a new pipeline; a running one keeps those it started with
    /// (PART-TARGET, say, is fixed for a stream's life).
    pub fn begin_session(
        &self,
        event_id: &str,
        settings: &StreamSettings,
    ) -> mpsc::Sender<StampedEvent> {
        let mut streams = lock(&self.inner.streams);
        if let Some(entry) = streams.get(event_id)
            && !entry.tx.is_closed()
        {
            entry.sessions.fetch_add(1, Ordering::SeqCst);
            return entry.tx.clone();
        }
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let sessions = Arc::new(AtomicU64::new(1));
        streams.insert(
            event_id.to_string(),
            StreamEntry {
                tx: tx.clone(),
                sessions: sessions.clone(),
            },
        );
        let span = tracing::info_span!("stream", event = event_id);
        tokio::spawn(
            run_stream(
                self.inner.clone(),
                event_id.to_string(),
                settings.clone(),
                rx,
                sessions,
            )
            .instrument(span),
        );
        tx
    }

    /// Streams with a running pipeline (publishing or within their grace period).
    pub fn active_streams(&self) -> usize {
        lock(&self.inner.streams).len()
    }
}

async fn run_stream(
    inner: Arc<Inner>,
    event_id: String,
    settings: StreamSettings,
    mut rx: mpsc::Receiver<StampedEvent>,
    sessions: Arc<AtomicU64>,
) {
    let config = &inner.config;
    let ticks = |ms: u32| ms * (TIMESCALE / 1000);
    let renditions = [SOURCE_RENDITION, AUDIO_RENDITION];
    let first_msn = next_msn(&inner.push, &config.origins, &event_id, &renditions).await;
    let packager = StreamPackager::new(PackagerConfig {
        part_target: ticks(settings.part_target_ms.unwrap_or(config.part_target_ms)),
        segment_target: ticks(config.segment_target_ms),
        first_msn,
        access: settings.access,
    });
    let pushers: Vec<OriginPusher> = config
        .origins
        .iter()
        .map(|o| OriginPusher::spawn(inner.push.clone(), o, &event_id))
        .collect();
    let mut output = Packaging {
        packager,
        pushers,
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
