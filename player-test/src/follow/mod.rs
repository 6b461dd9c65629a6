//! The HTTP side of the player: it fetches what a player fetches, in the order it fetches
//! it, stamps every arrival with the clock, and hands everything to the I/O-free
//! `RenditionChecker`. This module reads the master playlist and runs one `Follower` per
//! rendition; `live` follows LL-HLS, `recorded` start-over, time-shift and VOD playlists.

mod live;
mod master;
mod recorded;
mod rendition;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::{Client, StatusCode, Url};

use crate::check::RenditionChecker;
use crate::playlist::{self, ByteRange, PlaylistError};
use crate::report::{
    Distribution, IFrameSummary, RecordedReport, RecordedSummary, RenditionSummary, Report,
};
use master::{TimeShift, audio_rendition_uri, choose_variant, iframe_uri_for};
use rendition::Follower;

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

/// How fast a recorded playlist's segments are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordedPace {
    /// Each segment as soon as the previous one arrived: checks a long recording quickly.
    #[default]
    AsFastAsPossible,
    /// As a player playing at 1× does: a segment once the playhead (from the first
    /// segment's arrival, held back by stalls) is within three target durations of it.
    RealTime,
}

/// What to follow and for how long. Build with [`PlayerConfig::new`], then set fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlayerConfig {
    pub master_url: String,
    /// How long to follow a live or growing (EVENT) stream, from the master playlist
    /// request. Following stops earlier, cleanly, when the stream ends (EXT-X-ENDLIST).
    pub duration: Duration,
    /// How long to spend on a finished recorded playlist (PLAYLIST-TYPE VOD, or
    /// EXT-X-ENDLIST at the first load); `None` (the default) fetches it to its end.
    pub finished_duration: Option<Duration>,
    /// How fast to fetch the segments of a recorded playlist.
    pub pace: RecordedPace,
    /// When the variant's playlist is recorded, also check its I-frame playlist
    /// (EXT-X-I-FRAME-STREAM-INF) as a player scrubbing through it reads it: each
    /// I-frame fetched with a Range request and decoded.
    pub check_iframes: bool,
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
    /// second reload; a finished recording to its end, as fast as possible, with its
    /// I-frame playlist.
    pub fn new(master_url: impl Into<String>) -> Self {
        Self {
            master_url: master_url.into(),
            duration: Duration::from_secs(20),
            finished_duration: None,
            pace: RecordedPace::AsFastAsPossible,
            check_iframes: true,
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
    let iframe_url = match iframe_uri_for(&master, variant, &variant_url, &master_url)
        .filter(|_| config.check_iframes)
    {
        Some(uri) => Some(join(uri)?),
        None => None,
    };

    let mut errors: Vec<String> = master
        .parser_findings
        .iter()
        .map(|f| format!("master: {master_url}: {f}"))
        .collect();
    let shift = TimeShift::of(&master_url);
    for url in std::iter::once(&variant_url)
        .chain(&audio_url)
        .chain(&iframe_url)
    {
        errors.extend(shift.check_carried(url));
    }
    let context = FollowContext {
        client: &client,
        config: &config,
        start,
        deadline,
        master_independent: master.independent_segments,
        expect_recorded: shift.is_set(),
    };
    let follow_one = |name: &'static str, url: Url, iframes: Option<Url>| {
        Follower::new(&context, name, url, iframes).run()
    };
    let (video, audio) = tokio::join!(follow_one("video", variant_url, iframe_url), async {
        match audio_url {
            Some(url) => Some(follow_one("audio", url, None).await),
            None => None,
        }
    });

    Ok(build_report(
        &config.master_url,
        &variant.uri,
        response.body.len() as u64,
        &mut errors,
        std::iter::once(video).chain(audio).collect(),
    ))
}

/// What every rendition's `Follower` shares.
pub(super) struct FollowContext<'a> {
    pub(super) client: &'a Client,
    pub(super) config: &'a PlayerConfig,
    /// When the master playlist was requested.
    pub(super) start: Instant,
    /// `start` + `config.duration`.
    pub(super) deadline: Instant,
    /// The master carries EXT-X-INDEPENDENT-SEGMENTS (RFC 8216bis §4.4.2.1).
    pub(super) master_independent: bool,
    /// The master URL asked for a start-over or time-shift range (`?start=`).
    pub(super) expect_recorded: bool,
}

/// How following one rendition went.
pub(super) struct Outcome {
    pub(super) checker: RenditionChecker,
    /// The rendition reached EXT-X-ENDLIST.
    pub(super) ended: bool,
    /// When following it stopped, since the master playlist request.
    pub(super) stopped: Duration,
    /// Its I-frame playlist, when it was recorded and checking I-frames was asked.
    pub(super) iframes: Option<Box<Outcome>>,
}

fn build_report(
    master_url: &str,
    variant_uri: &str,
    master_bytes: u64,
    errors: &mut Vec<String>,
    mut outcomes: Vec<Outcome>,
) -> Report {
    let followed = outcomes.iter().map(|o| o.stopped).max().unwrap_or_default();
    let summaries: Vec<_> = outcomes
        .iter()
        .map(|o| o.checker.summary(o.ended))
        .collect();
    let all = |samples: fn(&RenditionChecker) -> &Vec<f64>| {
        let merged: Vec<f64> = outcomes
            .iter()
            .flat_map(|o| samples(&o.checker).iter().copied())
            .collect();
        Distribution::of(&merged)
    };
    let latency_ms = all(|c| &c.latencies_ms);
    let blocking_reload_ms = all(|c| &c.blocking_reload_ms);
    let sum = |field: fn(&RenditionSummary) -> u64| -> u64 { summaries.iter().map(field).sum() };
    let startup_ms = summaries
        .iter()
        .map(|s| s.first_part_ms)
        .collect::<Option<Vec<u64>>>()
        .and_then(|firsts| firsts.into_iter().max());
    let iframes = outcomes.iter_mut().find_map(|o| o.iframes.take());
    let recorded = recorded_report(&summaries, iframes.as_deref());
    let mut errors_omitted = 0;
    let ended = !outcomes.is_empty() && outcomes.iter().all(|o| o.ended);
    for checker in outcomes
        .into_iter()
        .map(|o| o.checker)
        .chain(iframes.map(|o| o.checker))
    {
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
        recorded,
        errors: std::mem::take(errors),
        errors_omitted,
    }
}

/// The recorded side of the report, when a rendition was recorded.
fn recorded_report(
    summaries: &[RenditionSummary],
    iframes: Option<&Outcome>,
) -> Option<RecordedReport> {
    let recorded: Vec<&RecordedSummary> = summaries
        .iter()
        .filter_map(|s| s.recorded.as_ref())
        .collect();
    let first = recorded.first()?;
    Some(RecordedReport {
        playlist_type: first.playlist_type.clone(),
        segments_fetched: recorded.iter().map(|r| r.segments_fetched).sum(),
        gap_segments: recorded.iter().map(|r| r.gap_segments).sum(),
        media_seconds: recorded
            .iter()
            .map(|r| r.media_seconds)
            .fold(f64::INFINITY, f64::min),
        behind_live_edge_ms: recorded.iter().filter_map(|r| r.behind_live_edge_ms).max(),
        iframes: iframes.map(|o| {
            let summary = o.checker.summary(o.ended);
            let recorded = summary.recorded.as_ref();
            IFrameSummary {
                playlist_url: summary.playlist_url.clone(),
                iframes_checked: recorded.map_or(0, |r| r.segments_fetched),
                gap_entries: recorded.map_or(0, |r| r.gap_segments),
                ended: o.ended,
                bytes_fetched: summary.bytes_fetched,
                errors: summary.errors,
            }
        }),
    })
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
    /// The Content-Range header of a 206 answer.
    content_range: Option<String>,
}

async fn get(client: &Client, url: &Url) -> Result<Fetched, reqwest::Error> {
    get_range(client, url, None).await
}

/// A GET, of `range` only when given (RFC 9110 §14.2 `Range: bytes=first-last`).
async fn get_range(
    client: &Client,
    url: &Url,
    range: Option<ByteRange>,
) -> Result<Fetched, reqwest::Error> {
    let mut request = client.get(url.clone());
    if let Some(range) = range {
        let last = (range.offset + range.length).saturating_sub(1);
        request = request.header(
            reqwest::header::RANGE,
            format!("bytes={}-{last}", range.offset),
        );
    }
    let response = request.send().await?;
    let status = response.status();
    let content_range = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
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
        content_range,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
