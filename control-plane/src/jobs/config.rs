//! `[control.jobs]` in floodlight.toml: how many jobs run at once in this process, how
//! often the queue is looked at, how long a job waits after a retryable failure, and the
//! lease that lets another process take over a job whose process died.

use std::time::Duration;

use serde::Deserialize;

use crate::config_error::ConfigError;

/// `[control.jobs]` in floodlight.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Jobs this process runs at once (asset builds re-encode when frame-precise: keep it
    /// below the cores the live path does not need).
    pub max_concurrent: usize,
    /// How often the queue is looked at for jobs that are due, ms. New jobs, cancels and
    /// ended events also wake it at once.
    pub poll_interval_ms: u64,
    /// The wait after a job's first retryable failure (the object store is down), ms;
    /// doubled after each further one.
    pub retry_backoff_initial_ms: u64,
    /// The longest wait between retries, ms.
    pub retry_backoff_max_ms: u64,
    /// A running job's lease, renewed while it runs. When its process dies (kill -9),
    /// another process (or this one after a restart) takes the job over this long after
    /// the last renewal and runs it again from the start, seconds.
    pub lease_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            max_concurrent: 2,
            poll_interval_ms: 1000,
            retry_backoff_initial_ms: 1000,
            retry_backoff_max_ms: 60_000,
            lease_secs: 30,
        }
    }
}

impl JobsConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if !(1..=64).contains(&self.max_concurrent) {
            return invalid(
                "jobs.max_concurrent",
                format!("{} is outside 1..=64", self.max_concurrent),
            );
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return invalid(
                "jobs.poll_interval_ms",
                format!("{} is outside 10..=60000", self.poll_interval_ms),
            );
        }
        if self.retry_backoff_initial_ms == 0 {
            return invalid(
                "jobs.retry_backoff_initial_ms",
                "must be at least 1".to_string(),
            );
        }
        if self.retry_backoff_max_ms < self.retry_backoff_initial_ms {
            return invalid(
                "jobs.retry_backoff_max_ms",
                format!(
                    "{} is below retry_backoff_initial_ms ({})",
                    self.retry_backoff_max_ms, self.retry_backoff_initial_ms
                ),
            );
        }
        if !(1..=3600).contains(&self.lease_secs) {
            return invalid(
                "jobs.lease_secs",
                format!("{} is outside 1..=3600", self.lease_secs),
            );
        }
        Ok(())
    }

    pub(crate) fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// How long a job waits before its next try after `failures` retryable failures in
    /// a row (1 for the first): the initial backoff, doubled each time, capped.
    pub(crate) fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let ms = self
            .retry_backoff_initial_ms
            .saturating_mul(1_u64 << doublings)
            .min(self.retry_backoff_max_ms);
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let config = JobsConfig::default(); // 1 s doubling to 60 s
        let delays: Vec<u64> = (1..=8)
            .map(|n| config.retry_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
        assert_eq!(config.retry_delay(1000), Duration::from_secs(60));
        assert_eq!(config.retry_delay(0), Duration::from_secs(1));
    }

    #[test]
    fn validation_names_the_key() {
        JobsConfig::default().validate().unwrap();
        for (config, key) in [
            (
                JobsConfig {
                    max_concurrent: 0,
                    ..JobsConfig::default()
                },
                "control.jobs.max_concurrent:",
            ),
            (
                JobsConfig {
                    retry_backoff_max_ms: 10,
                    ..JobsConfig::default()
                },
                "control.jobs.retry_backoff_max_ms:",
            ),
            (
                JobsConfig {
                    lease_secs: 0,
                    ..JobsConfig::default()
                },
                "control.jobs.lease_secs:",
            ),
        ] {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.starts_with(key), "{error}");
        }
    }
}
