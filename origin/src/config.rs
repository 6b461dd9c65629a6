//! `[origin]` in floodlight.toml: every limit the origin enforces, named, with its default.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

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
        }
    }
}

/// The token is a credential: `Debug` (and so every log line or panic message that prints
/// the config) shows only whether one is set.
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
    /// Checks the values at load, naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
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
}
