//! The HTTP side of the player: it fetches what a player fetches, in the order it fetches
//! it, stamps every arrival with the clock, and hands everything to the I/O-free
//! `RenditionChecker`. This module reads the master playlist and runs one `Follower` per
//! rendition; `live` follows LL-HLS, `recorded` start-over, time-shift and VOD playlists.

mod live;
mod rendition;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::{Client, StatusCode, Url};

use crate::check::RenditionChecker;
use crate::playlist::{self, MasterPlaylist, PlaylistError, Variant};
use crate::report::{Distribution, Report};
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
