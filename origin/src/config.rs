//! `[origin]` in floodlight.toml: every limit the origin enforces, named, with its default.

use std::fmt;
use std::net::SocketAddr;

use floodlight_media::token::TokenKey;
use serde::Deserialize;

/// The longest start-over window an event or the default may ask for: 24 h.
pub(crate) const MAX_START_OVER_WINDOW_SECS: u64 = 24 * 3600;

/// `[origin]` in floodlight.toml.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Address the binary binds the origin's HTTP listener to (playback, push API, metrics).
    pub listen: SocketAddr,
    /// Bearer token every push API request must carry (`Authorization: Bearer <token>`,
    /// RFC 6750 §2.1). `None` leaves the push API open, for an origin reachable only by its
    /// own transcoder. 16 to 256 characters of the RFC 6750 `b64token` alphabet. Never
    /// logged, and redacted from this struct's `Debug`.
    pub push_token: Option<String>,
    /// DVR window: seconds of complete segments kept in memory per rendition behind the
    /// live edge. Never less than three target durations (RFC 8216bis §6.2.2).
    pub dvr_window_secs: f64,
    /// Hard cap on segments kept per rendition, whatever their duration, so a stream of
    /// very short segments cannot grow the window without bound. It bounds the listed
    /// window and, separately, the unlisted tail of segments that left the playlist but
    /// stay fetchable (RFC 8216bis §6.2.2).
    pub max_window_segments: usize,
    /// Largest body the push API accepts (descriptor, init segment or one part); larger
    /// bodies are answered 413.
    pub max_push_body_bytes: usize,
    /// How long a blocking playlist reload or a preload-hinted part request may wait, in
    /// target durations, before it is answered 503 (RFC 8216bis §6.2.5.2: three).
    pub block_timeout_target_durations: f64,
    /// How long an ended stream's window stays playable (with EXT-X-ENDLIST) before it is
    /// dropped from memory, seconds.
    pub ended_stream_retention_secs: u64,
    /// A stream that receives no push for this many seconds is ended as `POST .../end`
    /// would end it (EXT-X-ENDLIST, blocked requests answered), so a transcoder that
    /// crashed or lost its end push does not leave the stream live forever. Must exceed
    /// the transcoder's `reconnect_grace_secs`, during which it pushes nothing.
    pub idle_end_secs: u64,
    /// Streams held in memory at once (live, or ended and within their retention); a
    /// descriptor for a further stream is answered 503.
    pub max_streams: usize,
    /// Renditions one stream may declare; a further one is answered 409.
    pub max_renditions_per_stream: usize,
    /// Init segment versions kept per rendition: those the window's segments (listed or
    /// still fetchable) use, plus the latest. Past it, the oldest segments leave first; a
    /// version the window cannot make room for is answered 409.
    pub max_init_versions_per_rendition: usize,
    /// EXT-X-TARGETDURATION = ceil(segment target × this factor), fixed when a stream's
    /// first rendition is declared: RFC 8216bis §6.2.1 says the value MUST NOT change, and
    /// §4.4.3.1 that every EXTINF rounded to the nearest integer MUST be ≤ it. The headroom
    /// covers segments a passthrough publisher's keyframes make longer than the target
    /// (a scene cut's keyframe: a 3.2 s segment against a 2 s target; 2 s × 1.5 declares
    /// 3). A segment longer still keeps the target duration, is logged once per stream
    /// and counted in `floodlight_origin_segments_over_target_duration_total`. 1.0–3.0.
    pub target_duration_factor: f64,
    /// Keys that verify playback tokens, as `<key id>:<secret>` (secret ≥ 32 characters),
    /// the current key first, then the previous one while a rotation is under way: the
    /// control plane signs with its current key, and tokens it signed with the previous
    /// key stay valid until they expire. Streams whose descriptor says `access = token`
    /// need a token signed by one of these on every playlist, init, part and segment
    /// request; with none configured, no token verifies and such streams refuse every
    /// request. Secrets are never logged and are redacted from this struct's `Debug`.
    /// Env: `FLOODLIGHT_ORIGIN__PLAYBACK_KEYS='["k2:…","k1:…"]'`.
    pub playback_keys: Vec<String>,
    /// Query parameter that carries the playback token: the control plane's
    /// `playback_url` puts it on the master playlist URL, and the origin writes it into
    /// every URI of the playlists it serves for a token stream, so players carry it with
    /// no special support.
    pub token_query_param: String,
    /// Verified tokens remembered, so the HMAC is computed once per token rather than on
    /// every part request. Expiry, the event and revocation are still checked on every
    /// request. At the cap, expired entries are dropped, and if that frees nothing the
    /// cache starts over (each token then verifies once more).
    pub token_cache_entries: usize,
    /// Largest JPEG poster a transcoder may push (`PUT /push/v1/{event_id}/thumbnail.jpg`),
    /// bytes; larger ones are answered 413. One is held per stream.
    pub max_thumbnail_bytes: usize,
    /// The master playlist lists first (the variant players start with, per Apple's HLS
    /// authoring spec) the highest variant whose BANDWIDTH is at or below this, bits/s; the
    /// lowest when every variant is above it. The others follow, highest first.
    pub start_variant_max_bandwidth_bps: u64,
    /// How far back start-over (`?start=T`) reaches behind the live edge (or behind the
    /// end of an ended event), seconds, for an event that does not set its own
    /// `dvr_window_secs`. 0 turns start-over off; at most 24 h.
    pub start_over_window_secs: u64,
    /// Bytes of archive objects (segments, init versions, index objects, manifests) kept in
    /// memory for start-over and VOD playback, so a crowd watching the same media reads
    /// each object from the store once. An object over an eighth of it is never kept.
    pub archive_cache_bytes: usize,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            push_token: None,
            dvr_window_secs: 60.0,
            max_window_segments: 600,
            max_push_body_bytes: 16 * 1024 * 1024,
            block_timeout_target_durations: 3.0,
            ended_stream_retention_secs: 300,
            idle_end_secs: 60,
            max_streams: 1000,
            max_renditions_per_stream: 16,
            max_init_versions_per_rendition: 16,
            target_duration_factor: 1.5,
            playback_keys: Vec::new(),
            token_query_param: "token".to_string(),
            token_cache_entries: 100_000,
            max_thumbnail_bytes: 1024 * 1024,
            start_variant_max_bandwidth_bps: 3_000_000,
            start_over_window_secs: 2 * 3600,
            archive_cache_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The push token and the playback key secrets are credentials: `Debug` (and so every log
/// line or panic message that prints the config) shows only whether the token is set and
/// the key ids.
impl fmt::Debug for OriginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginConfig")
            .field("listen", &self.listen)
            .field(
                "push_token",
                &self.push_token.as_ref().map(|_| "<redacted>"),
            )
            .field("dvr_window_secs", &self.dvr_window_secs)
            .field("max_window_segments", &self.max_window_segments)
            .field("max_push_body_bytes", &self.max_push_body_bytes)
            .field(
                "block_timeout_target_durations",
                &self.block_timeout_target_durations,
            )
            .field(
                "ended_stream_retention_secs",
                &self.ended_stream_retention_secs,
            )
            .field("idle_end_secs", &self.idle_end_secs)
            .field("max_streams", &self.max_streams)
            .field("max_renditions_per_stream", &self.max_renditions_per_stream)
            .field(
                "max_init_versions_per_rendition",
                &self.max_init_versions_per_rendition,
            )
            .field("target_duration_factor", &self.target_duration_factor)
            .field(
                "playback_keys",
                &self
                    .playback_keys
                    .iter()
                    .map(|spec| match spec.split_once(':') {
                        Some((id, _)) => format!("{id}:<redacted>"),
                        None => "<redacted>".to_string(),
                    })
                    .collect::<Vec<_>>(),
            )
            .field("token_query_param", &self.token_query_param)
            .field("token_cache_entries", &self.token_cache_entries)
            .field("max_thumbnail_bytes", &self.max_thumbnail_bytes)
            .field(
                "start_variant_max_bandwidth_bps",
                &self.start_variant_max_bandwidth_bps,
            )
            .field("start_over_window_secs", &self.start_over_window_secs)
            .field("archive_cache_bytes", &self.archive_cache_bytes)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("origin.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Shortest push token accepted: 16 characters of even a hex alphabet is 64 bits.
const MIN_PUSH_TOKEN_LEN: usize = 16;
const MAX_PUSH_TOKEN_LEN: usize = 256;

impl OriginConfig {
    /// The playback token keys, current first (`playback_keys`, parsed).
    pub fn playback_token_keys(&self) -> Result<Vec<TokenKey>, ConfigError> {
        let mut keys: Vec<TokenKey> = Vec::with_capacity(self.playback_keys.len());
        for (index, spec) in self.playback_keys.iter().enumerate() {
            // The reason names the entry by position and id, never its secret.
            let key = TokenKey::parse(spec).map_err(|error| ConfigError::Invalid {
                key: "playback_keys",
                reason: format!("entry {index}: {error}"),
            })?;
            if keys.iter().any(|k| k.id() == key.id()) {
                return Err(ConfigError::Invalid {
                    key: "playback_keys",
                    reason: format!("entry {index}: key id {:?} appears twice", key.id()),
                });
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// Checks the values at load, naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        self.playback_token_keys()?;
        if !is_query_param_name(&self.token_query_param) {
            return invalid(
                "token_query_param",
                format!(
                    "{:?} must be 1 to 64 letters, digits, - or _, and must not start with \
                     `_HLS_` (RFC 8216bis §6.2.5 reserves those for delivery directives)",
                    self.token_query_param
                ),
            );
        }
        if self.token_cache_entries == 0 {
            return invalid("token_cache_entries", "must be at least 1".to_string());
        }
        if let Some(token) = &self.push_token {
            // The reason never quotes the token: it is a credential.
            if !(MIN_PUSH_TOKEN_LEN..=MAX_PUSH_TOKEN_LEN).contains(&token.len()) {
                return invalid(
                    "push_token",
                    format!(
                        "must be {MIN_PUSH_TOKEN_LEN} to {MAX_PUSH_TOKEN_LEN} characters long (it is {})",
                        token.len()
                    ),
                );
            }
            if !is_b64token(token) {
                return invalid(
                    "push_token",
                    "must use only letters, digits and - . _ ~ + / (then any '='), the RFC 6750 \
                     §2.1 b64token alphabet that fits an Authorization header"
                        .to_string(),
                );
            }
        }
        if self.start_over_window_secs > MAX_START_OVER_WINDOW_SECS {
            return invalid(
                "start_over_window_secs",
                format!(
                    "{} is over 24 h ({MAX_START_OVER_WINDOW_SECS})",
                    self.start_over_window_secs
                ),
            );
        }
        if !(self.dvr_window_secs.is_finite() && self.dvr_window_secs > 0.0) {
            return invalid(
                "dvr_window_secs",
                format!("{} must be a positive number", self.dvr_window_secs),
            );
        }
        // Three segments at least: the playlist must stay ≥ 3 target durations long
        // (RFC 8216bis §6.2.2), and a segment's duration is at most one target duration.
        if self.max_window_segments < 3 {
            return invalid(
                "max_window_segments",
                format!("{} is below the minimum of 3", self.max_window_segments),
            );
        }
        if self.max_thumbnail_bytes == 0 {
            return invalid("max_thumbnail_bytes", "must be at least 1".to_string());
        }
        if self.max_push_body_bytes == 0 {
            return invalid("max_push_body_bytes", "must be at least 1".to_string());
        }
        // RFC 8216bis §6.2.5.2: a server blocks three target durations before giving up;
        // shorter would fail clients the spec expects to be served.
        if !(self.block_timeout_target_durations.is_finite()
            && self.block_timeout_target_durations >= 3.0)
        {
            return invalid(
                "block_timeout_target_durations",
                format!(
                    "{} must be at least 3 (RFC 8216bis §6.2.5.2)",
                    self.block_timeout_target_durations
                ),
            );
        }
        if self.idle_end_secs == 0 {
            return invalid("idle_end_secs", "must be at least 1".to_string());
        }
        if self.max_streams == 0 {
            return invalid("max_streams", "must be at least 1".to_string());
        }
        if self.max_renditions_per_stream == 0 {
            return invalid(
                "max_renditions_per_stream",
                "must be at least 1".to_string(),
            );
        }
        // The version in use and the next one, pushed before its first part.
        if self.max_init_versions_per_rendition < 2 {
            return invalid(
                "max_init_versions_per_rendition",
                format!(
                    "{} is below the minimum of 2",
                    self.max_init_versions_per_rendition
                ),
            );
        }
        // RFC 8216bis §4.4.3.1: the target duration covers the segment target at least.
        if !(self.target_duration_factor.is_finite()
            && (1.0..=3.0).contains(&self.target_duration_factor))
        {
            return invalid(
                "target_duration_factor",
                format!(
                    "{} must be between 1.0 and 3.0",
                    self.target_duration_factor
                ),
            );
        }
        Ok(())
    }
}

/// A query parameter name that needs no percent-encoding and is no delivery directive.
fn is_query_param_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.starts_with("_HLS_")
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_overrides_one_key() {
        OriginConfig::default().validate().unwrap();
        let config: OriginConfig = toml::from_str("dvr_window_secs = 30.0").unwrap();
        assert_eq!(config.dvr_window_secs, 30.0);
        assert_eq!(
            config.max_push_body_bytes,
            OriginConfig::default().max_push_body_bytes
        );
        let config: OriginConfig =
            toml::from_str("push_token = \"0123456789abcdef0123\"\nidle_end_secs = 90").unwrap();
        config.validate().unwrap();
        assert_eq!(config.push_token.as_deref(), Some("0123456789abcdef0123"));
        assert_eq!(config.idle_end_secs, 90);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let config = OriginConfig {
            block_timeout_target_durations: 1.0,
            ..OriginConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("origin.block_timeout_target_durations"),
            "{err}"
        );
        let err = toml::from_str::<OriginConfig>("no_such_key = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_key"), "{err}");
        for (config, key) in [
            (
                OriginConfig {
                    target_duration_factor: 0.9,
                    ..OriginConfig::default()
                },
                "origin.target_duration_factor",
            ),
            (
                OriginConfig {
                    target_duration_factor: f64::NAN,
                    ..OriginConfig::default()
                },
                "origin.target_duration_factor",
            ),
            (
                OriginConfig {
                    idle_end_secs: 0,
                    ..OriginConfig::default()
                },
                "origin.idle_end_secs",
            ),
            (
                OriginConfig {
                    max_streams: 0,
                    ..OriginConfig::default()
                },
                "origin.max_streams",
            ),
            (
                OriginConfig {
                    max_renditions_per_stream: 0,
                    ..OriginConfig::default()
                },
                "origin.max_renditions_per_stream",
            ),
            (
                OriginConfig {
                    max_init_versions_per_rendition: 1,
                    ..OriginConfig::default()
                },
                "origin.max_init_versions_per_rendition",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn the_push_token_is_checked_but_never_shown() {
        let secret = "s3cr3t-t0ken-value-xyz";
        let config = OriginConfig {
            push_token: Some(secret.to_string()),
            ..OriginConfig::default()
        };
        config.validate().unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");

        for bad in [
            "short",
            "has a space in the middle!!",
            "quote\"inside-1234567",
        ] {
            let config = OriginConfig {
                push_token: Some(bad.to_string()),
                ..OriginConfig::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("origin.push_token"), "{err}");
            assert!(!err.contains(bad), "the reason quotes the token: {err}");
        }
        assert!(is_b64token("abcDEF012-._~+/=="));
        assert!(!is_b64token("==="));
    }

    #[test]
    fn playback_keys_are_parsed_and_never_shown() {
        let secret = "0123456789abcdef0123456789abcdef";
        let config: OriginConfig = toml::from_str(&format!(
            "playback_keys = [\"new:{secret}x\", \"old:{secret}\"]"
        ))
        .unwrap();
        config.validate().unwrap();
        let keys = config.playback_token_keys().unwrap();
        assert_eq!(
            keys.iter().map(TokenKey::id).collect::<Vec<_>>(),
            ["new", "old"]
        );
        let debug = format!("{config:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("new:<redacted>"), "{debug}");

        for (keys, wanted) in [
            (vec!["nocolon".to_string()], "entry 0"),
            (
                vec![format!("k:{secret}"), "k2:short".to_string()],
                "entry 1",
            ),
            (vec![format!("k:{secret}"), format!("k:{secret}")], "twice"),
        ] {
            let config = OriginConfig {
                playback_keys: keys,
                ..OriginConfig::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("origin.playback_keys"), "{err}");
            assert!(err.contains(wanted), "{err}");
            assert!(!err.contains(secret), "{err}");
        }
        for param in ["", "_HLS_msn", "a b", "t%"] {
            let config = OriginConfig {
                token_query_param: param.to_string(),
                ..OriginConfig::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("origin.token_query_param"), "{err}");
        }
    }
}
