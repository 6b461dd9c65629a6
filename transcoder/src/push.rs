//! Pushes packaged outputs to one origin over its HTTP push API (`floodlight_media::push`),
//! in order, with bounded retries. One worker per (stream, origin): a slow origin delays
//! only its own queue.

use std::time::{Duration, Instant};

use floodlight_media::package::PackagerOutput;
use floodlight_media::push::PUSH_PREFIX;
use tokio::sync::mpsc;
use tracing::{Instrument, warn};

pub(crate) enum PushItem {
    Output(PackagerOutput),
    /// The stream ended for good: the origin closes its playlists with EXT-X-ENDLIST.
    End,
}

pub(crate) struct OriginPusher {
    tx: mpsc::Sender<PushItem>,
    origin: String,
    dropped: u64,
}

#[derive(Clone)]
pub(crate) struct PushSettings {
    pub(crate) client: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) queue: usize,
}

impl OriginPusher {
    pub(crate) fn spawn(settings: PushSettings, origin: &str, event_id: &str) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue);
        let base = format!("{}{PUSH_PREFIX}/{event_id}", origin.trim_end_matches('/'));
        let span = tracing::info_span!("push", origin, event = event_id);
        tokio::spawn(worker(settings, base, rx).instrument(span));
        OriginPusher {
            tx,
            origin: origin.to_string(),
            dropped: 0,
        }
    }

    /// Queues an item without waiting: packaging must never stall on an origin. A full
    /// queue means the origin is far behind; the item is dropped and counted.
    pub(crate) fn push(&mut self, item: PushItem) {
        if self.tx.try_send(item).is_err() {
            self.dropped += 1;
            metrics::counter!("floodlight_transcoder_push_dropped_total").increment(1);
            // Rolled up: the first drop and every 100th after it.
            if self.dropped % 100 == 1 {
                warn!(origin = %self.origin, dropped = self.dropped, "origin push queue full, dropping outputs");
            }
        }
    }
}

async fn worker(settings: PushSettings, base: String, mut rx: mpsc::Receiver<PushItem>) {
    while let Some(item) = rx.recv().await {
        let kind = match &item {
            PushItem::Output(PackagerOutput::Rendition(_)) => "rendition",
            PushItem::Output(PackagerOutput::Init { .. }) => "init",
            PushItem::Output(PackagerOutput::Part { .. }) => "part",
            PushItem::End => "end",
        };
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = send(&settings, &base, &item).await;
            metrics::histogram!("floodlight_transcoder_push_seconds", "kind" => kind)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    metrics::counter!("floodlight_transcoder_pushes_total", "kind" => kind, "result" => "ok")
                        .increment(1);
                    break;
                }
                Err(e) if attempt < settings.retries => {
                    attempt += 1;
                    warn!(kind, attempt, error = %e, "push failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
                Err(e) => {
                    metrics::counter!("floodlight_transcoder_pushes_total", "kind" => kind, "result" => "failed")
                        .increment(1);
                    warn!(kind, error = %e, "push given up");
                    break;
                }
            }
        }
    }
}

async fn send(settings: &PushSettings, base: &str, item: &PushItem) -> Result<(), reqwest::Error> {
    let client = &settings.client;
    let request = match item {
        PushItem::Output(PackagerOutput::Rendition(descriptor)) => client
            .put(format!("{base}/{}", descriptor.name))
            .json(descriptor),
        PushItem::Output(PackagerOutput::Init {
            rendition,
            version,
            data,
        }) => client
            .put(format!("{base}/{rendition}/init/{version}"))
            .body(data.clone()),
        PushItem::Output(PackagerOutput::Part {
            rendition,
            meta,
            data,
        }) => client
            .put(format!(
                "{base}/{rendition}/part/{}/{}",
                meta.msn, meta.part
            ))
            .query(meta)
            .body(data.clone()),
        PushItem::End => client.post(format!("{base}/end")),
    };
    request
        .timeout(settings.timeout)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}
