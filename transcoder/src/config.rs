use serde::Deserialize;

/// `[transcoder]` in floodlight.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscoderConfig {
    /// LL-HLS PART-TARGET, milliseconds (100–1000). Fixed for a stream's whole life.
    pub part_target_ms: u32,
    /// Segment target, milliseconds; segments are cut at the first keyframe at or after it.
    pub segment_target_ms: u32,
    /// A publisher that reconnects within this many seconds continues the same stream
    /// (same numbering, EXT-X-DISCONTINUITY); after it, the stream ends (EXT-X-ENDLIST).
    pub reconnect_grace_secs: u64,
    /// Base URLs of the origins every part is pushed to (the stream's replica set).
    /// Empty: in `floodlight up`, the origin of the same process.
    pub origins: Vec<String>,
    /// Bearer token for the origins' push API (`[origin] push_token`). In `floodlight up`
    /// both are generated together when neither is set.
    pub push_token: Option<String>,
    /// Time one push request to an origin may take.
    pub push_timeout_ms: u64,
    /// Retries of a failed push before the part is given up on that origin.
    pub push_retries: u32,
    /// Packaged outputs queued per origin before the oldest pushes are dropped.
    pub push_queue: usize,
    /// Bit rate of the AAC-LC the transcoder encodes from a publisher's Opus (WebRTC/WHIP
    /// publishers), bits per second (16 000 – 512 000).
    pub aac_bitrate_bps: u32,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        TranscoderConfig {
            part_target_ms: 200,
            segment_target_ms: 2000,
            reconnect_grace_secs: 30,
            origins: vec![],
            push_token: None,
            push_timeout_ms: 2000,
            push_retries: 3,
            push_queue: 1024,
            aac_bitrate_bps: 128_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("transcoder.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl TranscoderConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        // ARCHITECTURE.md: part target 100 ms – 1 s.
        if !(100..=1000).contains(&self.part_target_ms) {
            return invalid(
                "part_target_ms",
                format!("{} is outside 100..=1000", self.part_target_ms),
            );
        }
        if self.segment_target_ms < 2 * self.part_target_ms {
            return invalid(
                "segment_target_ms",
                format!(
                    "{} must be at least two part targets ({})",
                    self.segment_target_ms,
                    2 * self.part_target_ms
                ),
            );
        }
        if let Some(bad) = self
            .origins
            .iter()
            .find(|o| !o.starts_with("http://") && !o.starts_with("https://"))
        {
            return invalid("origins", format!("{bad:?} is not an http(s) URL"));
        }
        if !(16_000..=512_000).contains(&self.aac_bitrate_bps) {
            return invalid(
                "aac_bitrate_bps",
                format!("{} is outside 16000..=512000", self.aac_bitrate_bps),
            );
        }
        if self.push_queue == 0 {
            return invalid("push_queue", "must be at least 1".to_string());
        }
        Ok(())
    }
}
