//! The HTTP side of the player: it fetches what a low-latency player fetches, in the order
//! it fetches it, stamps every arrival with the clock, and hands everything to the
//! I/O-free `RenditionChecker`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::{Client, StatusCode, Url};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use crate::check::{
    Arrival, PartPosition, PartRef, PartSource, RenditionChecker, has_reached, listed_parts,
    next_position, parts_after, start_position,
};
use crate::playlist::{self, MasterPlaylist, MediaPlaylist, PlaylistError, Variant};
use crate::report::{Distribution, Report};

/// Which variant of the master playlist to follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VariantChoice {
    /// The highest BANDWIDTH, as a player on a good network ends up playing.
    #[default]
    HighestBandwidth,
    LowestBandwidth,
    /// The first variant whose URI contains this text, e.g. `source/`.
    UriContains(String),
}

/// What to follow and for how long. Build with [`PlayerConfig::new`], then set fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlayerConfig {
    pub master_url: String,
    /// How long to follow the stream, from the master playlist request. Following stops
    /// earlier, cleanly, when the stream ends (EXT-X-ENDLIST).
    pub duration: Duration,
    pub variant: VariantChoice,
    /// Also follow the variant's audio rendition (EXT-X-MEDIA TYPE=AUDIO in its AUDIO
    /// group), as a player does; the DEFAULT=YES one if several.
    pub follow_audio: bool,
    /// Timeout of each HTTP request. Must exceed the server's blocking-reload limit
    /// (3 × target duration in Floodlight) so a 503 is seen rather than a client timeout.
    pub request_timeout: Duration,
    /// Ask for a delta update (`_HLS_skip=YES`, RFC 8216bis §6.2.5.1) on every n-th
    /// blocking reload when the server offers them; 0 never asks.
    pub delta_update_every: u32,
}

impl PlayerConfig {
    /// Twenty seconds of the highest variant and its audio, with delta updates on every
    /// second reload.
    pub fn new(master_url: impl Into<String>) -> Self {
        Self {
            master_url: master_url.into(),
            duration: Duration::from_secs(20),
            variant: VariantChoice::HighestBandwidth,
            follow_audio: true,
            request_timeout: Duration::from_secs(10),
            delta_update_every: 2,
        }
    }
}

/// Failures that leave nothing to follow. Everything wrong after that is a finding in
/// `Report::errors`, not an `Err`. The cause is in `source()`: print the chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlayerError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("GET {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("master playlist {url}")]
    Master {
        url: String,
        #[source]
        source: PlaylistError,
    },
    #[error("master playlist {url} lists no variant")]
    NoVariant { url: String },
    #[error("no variant URI contains {wanted:?}")]
    VariantNotFound { wanted: String },
}

/// The URL of a blocking playlist reload for `position` (RFC 8216bis §6.2.5.2), with
/// `_HLS_skip=YES` for a delta update (§6.2.5.1). Existing query parameters (a playback
/// token, say) are kept.
pub fn blocking_reload_url(playlist_url: &Url, (msn, part): (u64, u32), skip: bool) -> Url {
    let mut url = playlist_url.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("_HLS_msn", &msn.to_string())
            .append_pair("_HLS_part", &part.to_string());
        if skip {
            query.append_pair("_HLS_skip", "YES");
        }
    }
    url
}

/// Follows the stream at `config.master_url` and reports what it found.
pub async fn follow(config: PlayerConfig) -> Result<Report, PlayerError> {
    let client = Client::builder()
        .timeout(config.request_timeout)
        .build()
        .map_err(PlayerError::Client)?;
    let master_url = Url::parse(&config.master_url).map_err(|e| PlayerError::InvalidUrl {
        url: config.master_url.clone(),
        reason: e.to_string(),
    })?;
    let start = Instant::now();
    let deadline = start + config.duration;

    let response = get(&client, &master_url)
        .await
        .map_err(|source| PlayerError::Http {
            url: master_url.to_string(),
            source,
        })?;
    if response.status != StatusCode::OK {
        return Err(PlayerError::Status {
            url: master_url.to_string(),
            status: response.status.as_u16(),
        });
    }
    let master = playlist_text(&response.body)
        .and_then(playlist::parse_master)
        .map_err(|source| PlayerError::Master {
            url: master_url.to_string(),
            source,
        })?;
    let variant = choose_variant(&master, &config.variant, &master_url)?;
    let join = |uri: &str| {
        master_url.join(uri).map_err(|e| PlayerError::InvalidUrl {
            url: uri.to_owned(),
            reason: e.to_string(),
        })
    };
    let variant_url = join(&variant.uri)?;
    let audio_url = match audio_rendition_uri(&master, variant).filter(|_| config.follow_audio) {
        Some(uri) => Some(join(uri)?),
        None => None,
    };

    let follow_one = |name: &'static str, url: Url| {
        let follower = Follower::new(&client, name, url, start, deadline, &config);
        follower.run()
    };
    let (video, audio) = tokio::join!(follow_one("video", variant_url), async {
        match audio_url {
            Some(url) => Some(follow_one("audio", url).await),
            None => None,
        }
    });
    let followed = Instant::now().min(deadline) - start;

    let mut errors: Vec<String> = master
        .parser_findings
        .iter()
        .map(|f| format!("master: {master_url}: {f}"))
        .collect();
    Ok(build_report(
        &config.master_url,
        &variant.uri,
        response.body.len() as u64,
        &mut errors,
        std::iter::once(video).chain(audio).collect(),
        followed,
    ))
}

fn choose_variant<'a>(
    master: &'a MasterPlaylist,
    choice: &VariantChoice,
    master_url: &Url,
) -> Result<&'a Variant, PlayerError> {
    let variants = master.variants.iter();
    let chosen = match choice {
        VariantChoice::HighestBandwidth => variants.max_by_key(|v| v.bandwidth),
        VariantChoice::LowestBandwidth => variants.min_by_key(|v| v.bandwidth),
        VariantChoice::UriContains(wanted) => {
            return master
                .variants
                .iter()
                .find(|v| v.uri.contains(wanted.as_str()))
                .ok_or_else(|| PlayerError::VariantNotFound {
                    wanted: wanted.clone(),
                });
        }
    };
    chosen.ok_or_else(|| PlayerError::NoVariant {
        url: master_url.to_string(),
    })
}

/// The audio rendition a player picks for `variant`: in its AUDIO group, with a URI of its
/// own, DEFAULT=YES first (RFC 8216bis §4.4.6.1.1).
fn audio_rendition_uri<'a>(master: &'a MasterPlaylist, variant: &Variant) -> Option<&'a str> {
    let group = variant.audio_group.as_deref()?;
    let mut candidates = master
        .audio
        .iter()
        .filter(|a| a.group_id == group && a.uri.is_some());
    let first = candidates.clone().next();
    candidates
        .find(|a| a.default)
        .or(first)
        .and_then(|a| a.uri.as_deref())
}

fn build_report(
    master_url: &str,
    variant_uri: &str,
    master_bytes: u64,
    errors: &mut Vec<String>,
    outcomes: Vec<(RenditionChecker, bool)>,
    followed: Duration,
) -> Report {
    let summaries: Vec<_> = outcomes
        .iter()
        .map(|(checker, ended)| checker.summary(*ended))
        .collect();
    let all = |samples: fn(&RenditionChecker) -> &Vec<f64>| {
        let merged: Vec<f64> = outcomes
            .iter()
            .flat_map(|(checker, _)| samples(checker).iter().copied())
            .collect();
        Distribution::of(&merged)
    };
    let latency_ms = all(|c| &c.latencies_ms);
    let blocking_reload_ms = all(|c| &c.blocking_reload_ms);
    let sum = |field: fn(&crate::report::RenditionSummary) -> u64| -> u64 {
        summaries.iter().map(field).sum()
    };
    let startup_ms = summaries
        .iter()
        .map(|s| s.first_part_ms)
        .collect::<Option<Vec<u64>>>()
        .and_then(|firsts| firsts.into_iter().max());
    let mut errors_omitted = 0;
    let ended = !outcomes.is_empty() && outcomes.iter().all(|(_, ended)| *ended);
    for (checker, _) in outcomes {
        let (mut found, omitted) = checker.into_errors();
        errors.append(&mut found);
        errors_omitted += omitted;
    }
    Report {
        master_url: master_url.to_owned(),
        variant_uri: variant_uri.to_owned(),
        followed_ms: followed.as_millis() as u64,
        ended,
        startup_ms,
        latency_ms,
        blocking_reload_ms,
        stalls: sum(|s| s.stalls),
        stall_ms: sum(|s| s.stall_ms),
        bytes_fetched: master_bytes + sum(|s| s.bytes_fetched),
        parts_fetched: sum(|s| s.parts_fetched),
        segments_seen: sum(|s| s.segments_seen),
        discontinuities: sum(|s| s.discontinuities),
        parts_over_part_target: sum(|s| s.parts_over_part_target),
        tfdt_gaps: sum(|s| s.tfdt_gaps),
        renditions: summaries,
        errors: std::mem::take(errors),
        errors_omitted,
    }
}

/// RFC 8216bis §4.1: playlists are UTF-8.
fn playlist_text(body: &[u8]) -> Result<&str, PlaylistError> {
    std::str::from_utf8(body).map_err(|e| PlaylistError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })
}

/// An error with its causes: reqwest's own message rarely says what failed.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A completed GET, stamped when its body finished arriving.
struct Fetched {
    status: StatusCode,
    body: Bytes,
    done: Instant,
    unix_ms: f64,
}

async fn get(client: &Client, url: &Url) -> Result<Fetched, reqwest::Error> {
    let response = client.get(url.clone()).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    let done = Instant::now();
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Ok(Fetched {
        status,
        body,
        done,
        unix_ms,
    })
}

/// A request for the EXT-X-PRELOAD-HINT part, sent before the part is listed
/// (RFC 8216bis §4.4.5.3); the server holds it until the part exists. Aborted when dropped.
struct PendingHint {
    url: Url,
    handle: JoinHandle<Result<Fetched, reqwest::Error>>,
}

impl Drop for PendingHint {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The deadline passed: stop following, not an error.
struct DeadlineReached;

struct Follower<'a> {
    client: &'a Client,
    playlist_url: Url,
    start: Instant,
    deadline: tokio::time::Instant,
    delta_update_every: u32,
    checker: RenditionChecker,
    /// The init segment the checker currently decodes with.
    init_url: Option<Url>,
}

impl<'a> Follower<'a> {
    fn new(
        client: &'a Client,
        name: &str,
        playlist_url: Url,
        start: Instant,
        deadline: Instant,
        config: &PlayerConfig,
    ) -> Self {
        Self {
            client,
            checker: RenditionChecker::new(name, playlist_url.as_str()),
            playlist_url,
            start,
            deadline: deadline.into(),
            delta_update_every: config.delta_update_every,
            init_url: None,
        }
    }

    /// Follows until the deadline or the end of the stream; returns the checker and
    /// whether the stream ended.
    async fn run(mut self) -> (RenditionChecker, bool) {
        let ended = self.follow().await.unwrap_or(false);
        let end = Instant::now().min(self.deadline.into_std()) - self.start;
        self.checker.finish(end, ended);
        (self.checker, ended)
    }

    async fn follow(&mut self) -> Result<bool, DeadlineReached> {
        let url = self.playlist_url.clone();
        let mut playlist = loop {
            if let Some(playlist) = self.fetch_playlist(&url).await? {
                self.checker.observe_playlist(&playlist, None, false);
                break playlist;
            }
            self.pause(Duration::from_millis(500)).await?;
        };
        let low_latency =
            playlist.server_control.can_block_reload && playlist.part_target.is_some();
        if !low_latency {
            // Already reported by the checker; there is no part to follow.
            return Ok(false);
        }
        let mut hint: Option<PendingHint> = None;
        let mut reloads = 0u32;
        loop {
            let (parts, source) = match self.checker.last_fetched() {
                None => match start_position(&playlist) {
                    Some(start) => {
                        let parts = listed_parts(&playlist)
                            .into_iter()
                            .filter(|p| p.position >= start)
                            .collect();
                        (parts, PartSource::StartupBacklog)
                    }
                    None => (Vec::new(), PartSource::Playlist),
                },
                Some(last) => {
                    let (parts, gap) = parts_after(&playlist, last);
                    if let Some(gap) = gap {
                        self.checker.error(gap);
                    }
                    (parts, PartSource::Playlist)
                }
            };
            for part in parts {
                hint = self.fetch_part(&part, source, hint).await?;
            }
            if playlist.ended {
                return Ok(true);
            }

            let next = next_position(&playlist, self.checker.last_fetched());
            hint = self.preload(&playlist, hint);
            reloads += 1;
            let skip = self.delta_update_every > 0
                && reloads.is_multiple_of(self.delta_update_every)
                && playlist.server_control.can_skip_until.is_some();
            if let Some(reloaded) = self.blocking_reload(next, skip).await? {
                playlist = reloaded;
            }
        }
    }

    /// Starts (or keeps) the request for the preload-hinted part.
    fn preload(
        &mut self,
        playlist: &MediaPlaylist,
        pending: Option<PendingHint>,
    ) -> Option<PendingHint> {
        let uri = playlist.preload_hint_part.as_deref()?;
        let url = self.resolve(uri)?;
        if let Some(pending) = pending
            && pending.url == url
        {
            return Some(pending);
        }
        let client = self.client.clone();
        let request_url = url.clone();
        Some(PendingHint {
            url,
            handle: tokio::spawn(async move { get(&client, &request_url).await }),
        })
    }

    /// One blocking reload for `next`; `None` when it brought no usable playlist.
    async fn blocking_reload(
        &mut self,
        next: PartPosition,
        skip: bool,
    ) -> Result<Option<MediaPlaylist>, DeadlineReached> {
        let url = blocking_reload_url(&self.playlist_url, next, skip);
        let sent = Instant::now();
        let response = timeout_at(self.deadline, get(self.client, &url))
            .await
            .map_err(|_| DeadlineReached)?;
        let retry_after = Duration::from_secs_f64(self.checker.part_target().unwrap_or(0.5));
        match response {
            Ok(f) if f.status == StatusCode::OK => {
                self.checker.record_blocking_reload(f.done - sent);
                self.checker.add_bytes(f.body.len());
                match playlist_text(&f.body).and_then(playlist::parse_media) {
                    Ok(playlist) => {
                        self.checker.observe_playlist(&playlist, Some(next), skip);
                        if !has_reached(&playlist, next) {
                            // Reported; do not hammer a server that does not block.
                            self.pause(retry_after).await?;
                        }
                        return Ok(Some(playlist));
                    }
                    Err(e) => self.checker.error(format!("{url}: {e}")),
                }
            }
            Ok(f) if f.status == StatusCode::SERVICE_UNAVAILABLE => {
                // RFC 8216bis §6.2.5.2: the server gave up waiting; ask again.
                self.checker.record_blocking_reload_timeout();
                return Ok(None);
            }
            Ok(f) => self.checker.error(format!("{url}: HTTP {}", f.status)),
            Err(e) => self.checker.error(format!("{url}: {}", describe(&e))),
        }
        self.pause(retry_after).await?;
        Ok(None)
    }

    async fn fetch_playlist(
        &mut self,
        url: &Url,
    ) -> Result<Option<MediaPlaylist>, DeadlineReached> {
        let response = timeout_at(self.deadline, get(self.client, url))
            .await
            .map_err(|_| DeadlineReached)?;
        match response {
            Ok(f) if f.status == StatusCode::OK => {
                self.checker.add_bytes(f.body.len());
                match playlist_text(&f.body).and_then(playlist::parse_media) {
                    Ok(playlist) => return Ok(Some(playlist)),
                    Err(e) => self.checker.error(format!("{url}: {e}")),
                }
            }
            Ok(f) => self.checker.error(format!("{url}: HTTP {}", f.status)),
            Err(e) => self.checker.error(format!("{url}: {}", describe(&e))),
        }
        Ok(None)
    }

    /// Fetches one listed part, from the pending preload-hint request if it is that part,
    /// and checks it. Returns the hint request if it was for another part.
    async fn fetch_part(
        &mut self,
        part: &PartRef,
        listed: PartSource,
        hint: Option<PendingHint>,
    ) -> Result<Option<PendingHint>, DeadlineReached> {
        let Some(url) = self.resolve(&part.uri) else {
            return Ok(hint);
        };
        self.ensure_init(part).await?;
        let (msn, index) = part.position;
        let (fetched, hint, source) = match hint {
            Some(mut pending) if pending.url == url => {
                let answer = timeout_at(self.deadline, &mut pending.handle)
                    .await
                    .map_err(|_| DeadlineReached)?;
                match answer {
                    Ok(Ok(f)) if f.status == StatusCode::OK => {
                        (Ok(f), None, PartSource::PreloadHint)
                    }
                    Ok(Ok(f)) => {
                        self.checker.error(format!(
                            "preload hint request {url} answered HTTP {} instead of waiting for part {msn}.{index} \
                             (RFC 8216bis §4.4.5.3)",
                            f.status
                        ));
                        (self.get_before_deadline(&url).await?, None, listed)
                    }
                    Ok(Err(e)) => (Err(describe(&e)), None, listed),
                    Err(join) => (Err(join.to_string()), None, listed),
                }
            }
            other => (self.get_before_deadline(&url).await?, other, listed),
        };
        match fetched {
            Ok(f) if f.status == StatusCode::OK => {
                let arrival = Arrival {
                    since_start: f.done - self.start,
                    unix_ms: f.unix_ms,
                };
                self.checker
                    .check_part(part, url.as_str(), &f.body, arrival, source);
            }
            Ok(f) => {
                self.checker
                    .error(format!("part {msn}.{index} {url}: HTTP {}", f.status));
                self.checker.skip_part(part.position);
            }
            Err(e) => {
                self.checker.error(format!("part {msn}.{index} {url}: {e}"));
                self.checker.skip_part(part.position);
            }
        }
        Ok(hint)
    }

    async fn get_before_deadline(
        &self,
        url: &Url,
    ) -> Result<Result<Fetched, String>, DeadlineReached> {
        timeout_at(self.deadline, get(self.client, url))
            .await
            .map(|r| r.map_err(|e| describe(&e)))
            .map_err(|_| DeadlineReached)
    }

    /// Fetches and checks the init segment of the part's segment when it is not the one in
    /// use (RFC 8216bis §4.4.4.5: EXT-X-MAP applies until the next EXT-X-MAP).
    async fn ensure_init(&mut self, part: &PartRef) -> Result<(), DeadlineReached> {
        let Some(uri) = part.map_uri.as_deref() else {
            if self.init_url.is_none() {
                self.checker.error(format!(
                    "segment {} has no EXT-X-MAP: fMP4 parts need an init segment (RFC 8216bis §4.4.4.5)",
                    part.position.0
                ));
            }
            return Ok(());
        };
        let Some(url) = self.resolve(uri) else {
            return Ok(());
        };
        if self.init_url.as_ref() == Some(&url) {
            return Ok(());
        }
        match self.get_before_deadline(&url).await? {
            Ok(f) if f.status == StatusCode::OK => {
                self.checker.add_bytes(f.body.len());
                self.checker.set_init(url.as_str(), &f.body);
            }
            Ok(f) => self
                .checker
                .error(format!("init segment {url}: HTTP {}", f.status)),
            Err(e) => self.checker.error(format!("init segment {url}: {e}")),
        }
        self.init_url = Some(url);
        Ok(())
    }

    fn resolve(&mut self, uri: &str) -> Option<Url> {
        match self.playlist_url.join(uri) {
            Ok(url) => Some(url),
            Err(e) => {
                self.checker
                    .error(format!("URI {uri:?} does not resolve: {e}"));
                None
            }
        }
    }

    async fn pause(&self, wait: Duration) -> Result<(), DeadlineReached> {
        let until = tokio::time::Instant::now() + wait;
        tokio::time::sleep_until(until.min(self.deadline)).await;
        if until >= self.deadline {
            return Err(DeadlineReached);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playlist::parse_master;

    #[test]
    fn blocking_reload_url_keeps_the_query() {
        let url = Url::parse("http://h/live/e/source/index.m3u8?token=abc").expect("url");
        // RFC 8216bis §6.2.5: delivery directives are query parameters.
        assert_eq!(
            blocking_reload_url(&url, (12, 3), false).as_str(),
            "http://h/live/e/source/index.m3u8?token=abc&_HLS_msn=12&_HLS_part=3"
        );
        assert_eq!(
            blocking_reload_url(&url, (12, 0), true).query(),
            Some("token=abc&_HLS_msn=12&_HLS_part=0&_HLS_skip=YES")
        );
    }

    #[test]
    fn variant_and_audio_choice() {
        let master = parse_master(
            "#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"muxed\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"alt\",URI=\"alt/index.m3u8\"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"main\",DEFAULT=YES,URI=\"audio/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO=\"a\"
low/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000,AUDIO=\"a\"
source/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=100000
audio-free/index.m3u8
",
        )
        .expect("parses");
        let url = Url::parse("http://h/master.m3u8").expect("url");
        let highest =
            choose_variant(&master, &VariantChoice::HighestBandwidth, &url).expect("variant");
        assert_eq!(highest.uri, "source/index.m3u8");
        assert_eq!(
            audio_rendition_uri(&master, highest),
            Some("audio/index.m3u8")
        );
        let lowest =
            choose_variant(&master, &VariantChoice::LowestBandwidth, &url).expect("variant");
        assert_eq!(audio_rendition_uri(&master, lowest), None);
        let low = choose_variant(&master, &VariantChoice::UriContains("low/".into()), &url)
            .expect("variant");
        assert_eq!(low.bandwidth, 800_000);
        assert!(matches!(
            choose_variant(&master, &VariantChoice::UriContains("nope".into()), &url),
            Err(PlayerError::VariantNotFound { .. })
        ));
    }
}
