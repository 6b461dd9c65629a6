//! RTSP pull: events whose media comes from an RTSP server (an IP camera, an encoder
//! that only serves) rather than a push. A supervisor asks the control plane which
//! sources to pull ([`IngestAuthority::pull_sources`](crate::IngestAuthority)) every
//! `ingest.rtsp.poll_interval_secs` and keeps one puller per source; each puller plays the
//! source with `retina` (RFC 2326 DESCRIBE/SETUP/PLAY, RTP interleaved on the RTSP
//! connection by default, RFC 2326 §10.12) and ends in `StreamEvent`s like every other
//! protocol (`to_stream.rs`). A source that drops is reconnected with backoff, and the
//! stream goes on with a discontinuity.

pub(crate) mod config;
mod pull;
mod to_stream;

use std::collections::{HashMap, HashSet};
use std::future::Future;

use percent_encoding::percent_decode_str;
use retina::client::Credentials;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, warn};
use url::Url;

use crate::neighbours::PullSource;
use crate::publisher::Ingest;
pub use config::{InvalidRtspConfig, RtspConfig};

/// Pulls the RTSP sources the control plane lists until `shutdown` resolves; then stops
/// every pull (each ends its stream's session) and returns once they have.
pub async fn pull_rtsp(ingest: Ingest, shutdown: impl Future<Output = ()>) {
    let config = ingest.config.rtsp.clone();
    let mut pulls = Pulls::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            listed = tokio::time::timeout(config.poll_interval(), ingest.authority.pull_sources()) => {
                match listed {
                    Ok(Ok(sources)) => pulls.reconcile(&ingest, sources),
                    // The pulls under way go on: a control plane that cannot answer for a
                    // moment must not cut every camera.
                    Ok(Err(e)) => warn!(error = %e, "rtsp: cannot list the sources to pull"),
                    Err(_) => warn!(
                        timeout_secs = config.poll_interval_secs,
                        "rtsp: listing the sources to pull timed out"
                    ),
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(config.poll_interval()) => {}
        }
    }
    pulls.stop_all().await;
}

/// One source being pulled.
struct Pull {
    source: PullSource,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Pulls {
    by_event: HashMap<String, Pull>,
    /// Sources left waiting by `max_pulls`, logged once each.
    deferred: HashSet<String>,
}

impl Pulls {
    /// Starts pulls for new sources, stops those no longer listed, and restarts those
    /// whose URL, transport or settings changed. A pull that ended on its own (a URL that
    /// cannot be pulled) stays ended until its source changes.
    fn reconcile(&mut self, ingest: &Ingest, sources: Vec<PullSource>) {
        let listed: HashSet<&str> = sources.iter().map(|s| s.event_id.as_str()).collect();
        let gone: Vec<String> = self
            .by_event
            .keys()
            .filter(|id| !listed.contains(id.as_str()))
            .cloned()
            .collect();
        for event_id in gone {
            if let Some(pull) = self.by_event.remove(&event_id) {
                info!(event = %event_id, "rtsp source no longer listed: stopping its pull");
                let _ = pull.stop.send(true);
            }
        }
        self.deferred.retain(|id| listed.contains(id.as_str()));

        for source in sources {
            let previous = match self.by_event.remove(&source.event_id) {
                Some(pull) if pull.source == source => {
                    self.by_event.insert(source.event_id.clone(), pull);
                    continue;
                }
                Some(pull) => {
                    info!(event = %source.event_id, "rtsp source changed: restarting its pull");
                    let _ = pull.stop.send(true);
                    Some(pull.task)
                }
                None => None,
            };
            if self.by_event.len() >= ingest.config.rtsp.max_pulls {
                if self.deferred.insert(source.event_id.clone()) {
                    warn!(
                        event = %source.event_id,
                        max_pulls = ingest.config.rtsp.max_pulls,
                        "rtsp source not pulled: ingest.rtsp.max_pulls reached"
                    );
                    metrics::counter!("floodlight_ingest_rejected_total", "protocol" => "rtsp", "reason" => "max_pulls").increment(1);
                }
                continue;
            }
            self.deferred.remove(&source.event_id);
            let (stop, stopped) = watch::channel(false);
            let span = tracing::info_span!(
                "rtsp",
                event = %source.event_id,
                source = tracing::field::Empty
            );
            let task = tokio::spawn(
                pull::run(ingest.clone(), source.clone(), stopped, previous).instrument(span),
            );
            self.by_event
                .insert(source.event_id.clone(), Pull { source, stop, task });
        }
        metrics::gauge!("floodlight_ingest_rtsp_pulls").set(self.by_event.len() as f64);
    }

    async fn stop_all(self) {
        for pull in self.by_event.values() {
            let _ = pull.stop.send(true);
        }
        for pull in self.by_event.into_values() {
            let _ = pull.task.await;
        }
        metrics::gauge!("floodlight_ingest_rtsp_pulls").set(0.0);
    }
}

/// A source URL split as retina wants it: the URL without credentials (it goes out in
/// every request line), the credentials apart for HTTP Basic or Digest authentication
/// (RFC 2617, which RTSP/1.0 reuses), and a form safe to log.
struct SourceUrl {
    url: Url,
    credentials: Option<Credentials>,
    /// `host:port/path`: no credentials, no query (cameras put tokens there too).
    redacted: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
enum SourceUrlError {
    #[error("not a URL: {0}")]
    Parse(#[from] url::ParseError),
    #[error("scheme {0:?} is not rtsp")]
    Scheme(String),
    #[error("no host")]
    NoHost,
    #[error("user or password is not valid UTF-8 after percent-decoding")]
    Credentials,
}

impl SourceUrl {
    fn parse(raw: &str) -> Result<Self, SourceUrlError> {
        let mut url = Url::parse(raw)?;
        if url.scheme() != "rtsp" {
            return Err(SourceUrlError::Scheme(url.scheme().to_string()));
        }
        let host = url.host_str().ok_or(SourceUrlError::NoHost)?.to_string();
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| SourceUrlError::Credentials)
        };
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(Credentials {
                username: decode(url.username())?,
                password: decode(url.password().unwrap_or_default())?,
            })
        };
        // Only fails for URLs that cannot have credentials at all, like `rtsp:x`, which
        // have no host either and were refused above.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let redacted = format!(
            "{host}:{}{}",
            url.port().unwrap_or(DEFAULT_RTSP_PORT),
            url.path()
        );
        Ok(SourceUrl {
            url,
            credentials,
            redacted,
        })
    }

    fn host_port(&self) -> (String, u16) {
        let host = self.url.host_str().unwrap_or_default();
        // An IPv6 literal comes bracketed; the resolver wants it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (
            host.to_string(),
            self.url.port().unwrap_or(DEFAULT_RTSP_PORT),
        )
    }
}

/// RFC 2326 §3.2: an `rtsp` URL without a port means port 554.
const DEFAULT_RTSP_PORT: u16 = 554;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_and_the_log_form() {
        let s = SourceUrl::parse("rtsp://admin:p%40ss%3Aw0rd@cam.local:8554/live/main?token=x")
            .unwrap();
        assert_eq!(s.url.as_str(), "rtsp://cam.local:8554/live/main?token=x");
        assert_eq!(
            s.credentials,
            Some(Credentials {
                username: "admin".to_string(),
                password: "p@ss:w0rd".to_string()
            })
        );
        assert_eq!(s.redacted, "cam.local:8554/live/main");
        assert_eq!(s.host_port(), ("cam.local".to_string(), 8554));
    }

    #[test]
    fn url_without_credentials_or_port() {
        let s = SourceUrl::parse("rtsp://[::1]/stream").unwrap();
        assert_eq!(s.credentials, None);
        assert_eq!(s.redacted, "[::1]:554/stream");
        assert_eq!(s.host_port(), ("::1".to_string(), 554));
        let user_only = SourceUrl::parse("rtsp://viewer@10.0.0.2/s").unwrap();
        assert_eq!(
            user_only.credentials,
            Some(Credentials {
                username: "viewer".to_string(),
                password: String::new()
            })
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            SourceUrl::parse("http://cam/x"),
            Err(SourceUrlError::Scheme(s)) if s == "http"
        ));
        assert!(matches!(
            SourceUrl::parse("not a url"),
            Err(SourceUrlError::Parse(_))
        ));
        assert!(matches!(
            SourceUrl::parse("rtsp://u:%ff@cam/x"),
            Err(SourceUrlError::Credentials)
        ));
    }
}
