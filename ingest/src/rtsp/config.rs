//! `[ingest.rtsp]` in floodlight.toml.

use std::time::Duration;

use serde::Deserialize;

/// `[ingest.rtsp]`: pulling the RTSP sources of events (IP cameras, encoders that only
/// serve).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspConfig {
    /// How often the control plane is asked which sources to pull; a new source starts and
    /// a removed one stops within this time.
    pub poll_interval_secs: u64,
    /// Connecting plus DESCRIBE, SETUP and PLAY must finish within this time.
    pub connect_timeout_secs: u64,
    /// A pull that receives no media for this long is dropped and reconnected.
    pub read_timeout_secs: u64,
    /// Wait before the first reconnect after a source drops; doubles on each failed
    /// attempt up to `reconnect_max_ms`, and starts over once media flows again. Keep the
    /// sum of the first waits under `[transcoder] reconnect_grace_secs` so a short outage
    /// continues the stream (with a discontinuity) rather than ending it.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// Sources pulled at once; further ones wait (and are logged) until a pull ends.
    pub max_pulls: usize,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            poll_interval_secs: 5,
            connect_timeout_secs: 10,
            read_timeout_secs: 10,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 10_000,
            max_pulls: 100,
        }
    }
}

/// A configuration value that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("ingest.rtsp.{key}: {reason}")]
#[non_exhaustive]
pub struct InvalidRtspConfig {
    pub key: &'static str,
    pub reason: String,
}

impl RtspConfig {
    /// Rejects values that cannot work: zero intervals and timeouts, a backoff whose
    /// ceiling is below its start.
    pub fn validate(&self) -> Result<(), InvalidRtspConfig> {
        let positive = [
            ("poll_interval_secs", self.poll_interval_secs),
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("read_timeout_secs", self.read_timeout_secs),
            ("reconnect_initial_ms", self.reconnect_initial_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(InvalidRtspConfig {
                key,
                reason: "must be at least 1".to_string(),
            });
        }
        if self.reconnect_max_ms < self.reconnect_initial_ms {
            return Err(InvalidRtspConfig {
                key: "reconnect_max_ms",
                reason: format!(
                    "{} is below reconnect_initial_ms ({})",
                    self.reconnect_max_ms, self.reconnect_initial_ms
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_secs)
    }

    pub(crate) fn reconnect_initial(&self) -> Duration {
        Duration::from_millis(self.reconnect_initial_ms)
    }

    pub(crate) fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert!(RtspConfig::default().validate().is_ok());
        let zero_poll = RtspConfig {
            poll_interval_secs: 0,
            ..RtspConfig::default()
        };
        assert_eq!(zero_poll.validate().unwrap_err().key, "poll_interval_secs");
        let inverted = RtspConfig {
            reconnect_initial_ms: 5000,
            reconnect_max_ms: 1000,
            ..RtspConfig::default()
        };
        let err = inverted.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "ingest.rtsp.reconnect_max_ms: 1000 is below reconnect_initial_ms (5000)"
        );
    }
}
