//! `[origin]` in floodlight.toml: every limit the origin enforces, named, with its default.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[origin]` in floodlight.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Address the binary binds the origin's HTTP listener to (playback, push API, metrics).
    pub listen: SocketAddr,
    /// DVR window: seconds of complete segments kept in memory per rendition behind the
    /// live edge. Never less than three target durations (RFC 8216bis §6.2.2).
    pub dvr_window_secs: f64,
    /// Hard cap on segments kept per rendition, whatever their duration, so a stream of
    /// very short segments cannot grow the window without bound.
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
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            dvr_window_secs: 60.0,
            max_window_segments: 600,
            max_push_body_bytes: 16 * 1024 * 1024,
            block_timeout_target_durations: 3.0,
            ended_stream_retention_secs: 300,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("origin.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl OriginConfig {
    /// Checks the values at load, naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
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
        Ok(())
    }
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
    }
}
