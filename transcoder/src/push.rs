//! Pushes packaged outputs to one origin over its HTTP push API (`floodlight_media::push`),
//! in order, with bounded retries. One worker per (stream, origin): a slow origin delays
//! only its own queue.
//!
//! Recovery: the worker remembers each rendition's descriptor and current init segment.
//! An origin that answers 404 to a part has lost the stream (it restarted, or it evicted
//! an idle stream), so the worker declares the rendition again and retries; the origin
//! then takes parts again from the next segment start. Other 4xx answers are final for
//! that output (retrying cannot change them); network errors and 5xx are retried.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floodlight_media::package::PackagerOutput;
use floodlight_media::push::{LastPart, PUSH_PREFIX, RenditionDescriptor};
use reqwest::StatusCode;
use tokio::sync::mpsc;
use tracing::{Instrument, warn};

pub(crate) enum PushItem {
    Output(PackagerOutput),
    /// The stream ended for good: the origin closes its playlists with EXT-X-ENDLIST.
    End,
    /// A JPEG poster of the live picture (`PUT …/thumbnail.jpg`).
    Thumbnail(Bytes),
    /// The transcoder stopped producing a rendition (`DELETE …/{rendition}?reason=`), a
    /// rung shed under load: it leaves the master playlist.
    Stop {
        rendition: String,
        reason: &'static str,
    },
}

impl PushItem {
    fn kind(&self) -> &'static str {
        match self {
            PushItem::Output(PackagerOutput::Rendition(_)) => "rendition",
            PushItem::Output(PackagerOutput::Init { .. }) => "init",
            PushItem::Output(PackagerOutput::Part { .. }) => "part",
            PushItem::End => "end",
            PushItem::Thumbnail(_) => "thumbnail",
            PushItem::Stop { .. } => "stop",
        }
    }
}

pub(crate) struct OriginPusher {
    tx: mpsc::Sender<PushItem>,
    origin: String,
    dropped: u64,
}

#[derive(Clone)]
pub(crate) struct PushSettings {
    pub(crate) client: reqwest::Client,
    pub(crate) token: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) queue: usize,
}

impl PushSettings {
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `{origin}/push/v1/{event_id}`.
    pub(crate) fn stream_url(origin: &str, event_id: &str) -> String {
        format!("{}{PUSH_PREFIX}/{event_id}", origin.trim_end_matches('/'))
    }
}

impl OriginPusher {
    pub(crate) fn spawn(settings: PushSettings, origin: &str, event_id: &str) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue);
        let worker = Worker {
            base: PushSettings::stream_url(origin, event_id),
            settings,
            descriptors: HashMap::new(),
            inits: HashMap::new(),
            failures: 0,
        };
        let span = tracing::info_span!("push", origin, event = event_id);
        tokio::spawn(worker.run(rx).instrument(span));
        OriginPusher {
            tx,
            origin: origin.to_string(),
            dropped: 0,
        }
    }

    /// Queues an item without waiting: packaging must never stall on an origin. A full
    /// queue means the origin is far behind; the item is dropped and counted (the origin
    /// takes parts again from the next segment start).
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

struct Worker {
    settings: PushSettings,
    base: String,
    descriptors: HashMap<String, RenditionDescriptor>,
    inits: HashMap<String, (u32, Bytes)>,
    failures: u64,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<PushItem>) {
        while let Some(item) = rx.recv().await {
            match &item {
                PushItem::Output(PackagerOutput::Rendition(d)) => {
                    self.descriptors.insert(d.name.clone(), d.clone());
                }
                PushItem::Output(PackagerOutput::Init {
                    rendition,
                    version,
                    data,
                }) => {
                    self.inits
                        .insert(rendition.clone(), (*version, data.clone()));
                }
                // A stopped rendition is never declared again after a 404.
                PushItem::Stop { rendition, .. } => {
                    self.descriptors.remove(rendition);
                    self.inits.remove(rendition);
                }
                _ => {}
            }
            self.deliver(&item).await;
        }
    }

    async fn deliver(&mut self, item: &PushItem) {
        let kind = item.kind();
        let mut attempt = 0;
        let mut redeclared = false;
        loop {
            let started = Instant::now();
            let result = send(&self.settings, &self.base, item).await;
            metrics::histogram!("floodlight_transcoder_push_seconds", "kind" => kind)
                .record(started.elapsed().as_secs_f64());
            let error = match result {
                Ok(status) if status.is_success() => {
                    metrics::counter!("floodlight_transcoder_pushes_total", "kind" => kind, "result" => "ok")
                        .increment(1);
                    return;
                }
                Ok(StatusCode::NOT_FOUND) if !redeclared => {
                    if let PushItem::Output(PackagerOutput::Part { rendition, .. }) = item {
                        redeclared = true;
                        self.redeclare(rendition).await;
                        continue;
                    }
                    "404 Not Found".to_string()
                }
                Ok(status) if status.is_client_error() => status.to_string(),
                Ok(status) if attempt < self.settings.retries => {
                    attempt += 1;
                    backoff(attempt, &status.to_string()).await;
                    continue;
                }
                Ok(status) => status.to_string(),
                Err(e) if attempt < self.settings.retries => {
                    attempt += 1;
                    backoff(attempt, &e.to_string()).await;
                    continue;
                }
                Err(e) => e.to_string(),
            };
            self.failures += 1;
            metrics::counter!("floodlight_transcoder_pushes_total", "kind" => kind, "result" => "failed")
                .increment(1);
            // Rolled up: a broken origin fails every part.
            if self.failures % 100 == 1 {
                warn!(kind, error, failures = self.failures, "push given up");
            }
            return;
        }
    }

    /// Declares a rendition again (descriptor, then its current init) on an origin that
    /// lost it.
    async fn redeclare(&self, rendition: &str) {
        let mut items = vec![];
        if let Some(d) = self.descriptors.get(rendition) {
            items.push(PushItem::Output(PackagerOutput::Rendition(d.clone())));
        }
        if let Some((version, data)) = self.inits.get(rendition) {
            items.push(PushItem::Output(PackagerOutput::Init {
                rendition: rendition.to_string(),
                version: *version,
                data: data.clone(),
            }));
        }
        warn!(rendition, "origin lost the rendition; declaring it again");
        metrics::counter!("floodlight_transcoder_redeclared_total").increment(1);
        for item in &items {
            if let Err(e) = send(&self.settings, &self.base, item).await {
                warn!(rendition, error = %e, "declaring the rendition again failed");
            }
        }
    }
}

async fn backoff(attempt: u32, error: &str) {
    tracing::debug!(attempt, error, "push failed, retrying");
    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
}

async fn send(
    settings: &PushSettings,
    base: &str,
    item: &PushItem,
) -> Result<StatusCode, reqwest::Error> {
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
        PushItem::Thumbnail(jpeg) => client
            .put(format!("{base}/thumbnail.jpg"))
            .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
            .body(jpeg.clone()),
        PushItem::Stop { rendition, reason } => client
            .delete(format!("{base}/{rendition}"))
            .query(&[("reason", reason)]),
    };
    let response = settings
        .authorize(request)
        .timeout(settings.timeout)
        .send()
        .await?;
    Ok(response.status())
}

/// How long a new pipeline waits for the origins' last parts, all asked at once. Ingest
/// moves a stream within 3 s of its transcoder dying (issue 4): the new one must be
/// packaging well before that. An origin that has not answered by then is left out (the
/// resume point ingest hands over still keeps the numbering going).
pub(crate) const RESUME_DEADLINE: Duration = Duration::from_secs(1);

/// Where a new pipeline for the stream starts: the MSN one past the last segment any
/// origin knows for any of `renditions`, and the init version one past the last (a
/// transcoder taking over, or a publisher returning after the stream ended, continues the
/// numbering instead of restarting it); else 0 and 0. Every origin × rendition is asked
/// concurrently, and whatever has answered within `deadline` counts.
pub(crate) async fn resume_point(
    settings: &PushSettings,
    origins: &[String],
    event_id: &str,
    renditions: &[&str],
    deadline: Duration,
) -> ResumePoint {
    let mut asks = tokio::task::JoinSet::new();
    for origin in origins {
        let base = PushSettings::stream_url(origin, event_id);
        for rendition in renditions {
            let request = settings
                .authorize(settings.client.get(format!("{base}/{rendition}/last")))
                .timeout(deadline);
            asks.spawn(async move {
                let response = request.send().await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response.json::<LastPart>().await.ok()
            });
        }
    }
    let mut next = ResumePoint::default();
    let until = tokio::time::Instant::now() + deadline;
    // Dropping the set aborts the asks still running at the deadline.
    while let Ok(Some(answer)) = tokio::time::timeout_at(until, asks.join_next()).await {
        if let Ok(Some(last)) = answer {
            next = next.after(&last);
        }
    }
    next
}

/// The first MSN and init version of a pipeline that continues a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ResumePoint {
    pub(crate) msn: u64,
    pub(crate) init_version: u32,
}

impl ResumePoint {
    /// The later of this point and the one right after `last`.
    pub(crate) fn after(self, last: &LastPart) -> ResumePoint {
        ResumePoint {
            msn: self.msn.max(last.msn + 1),
            init_version: self.init_version.max(last.init_version + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn settings() -> PushSettings {
        PushSettings {
            client: reqwest::Client::new(),
            token: Some("t".into()),
            timeout: Duration::from_secs(2),
            retries: 0,
            queue: 1,
        }
    }

    /// An origin answering every `GET …/{rendition}/last` after `delay` with the last part
    /// `msn_of(rendition)`; `None`: it never answers.
    async fn origin(delay: Option<Duration>, msn_of: fn(&str) -> u64) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let n = socket.read(&mut request).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&request[..n]).to_string();
                    let Some(delay) = delay else {
                        // Hold the connection without answering.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    };
                    tokio::time::sleep(delay).await;
                    let path = request.split_whitespace().nth(1).unwrap_or("");
                    let rendition = path.rsplit('/').nth(1).unwrap_or("");
                    let body = format!(
                        r#"{{"msn":{},"part":2,"ends_segment":false,"init_version":1}}"#,
                        msn_of(rendition)
                    );
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn every_origin_and_rendition_is_asked_at_once_under_one_deadline() {
        // Audio lags the video by up to a segment; a lower rung is the furthest here.
        let msn_of = |rendition: &str| match rendition {
            "240p" => 9,
            "audio" => 7,
            _ => 8,
        };
        let origins = vec![
            origin(Some(Duration::from_millis(300)), msn_of).await,
            origin(Some(Duration::from_millis(300)), msn_of).await,
            origin(None, msn_of).await,
        ];
        let renditions = ["source", "audio", "720p", "240p"];
        let started = tokio::time::Instant::now();
        let deadline = Duration::from_millis(800);
        let start = resume_point(&settings(), &origins, "evt", &renditions, deadline).await;
        let took = started.elapsed();
        // One after another, the two answering origins alone would take 8 × 300 ms.
        assert!(took < Duration::from_millis(1200), "took {took:?}");
        assert_eq!(
            start,
            ResumePoint {
                msn: 10,
                init_version: 2
            }
        );
    }
}
