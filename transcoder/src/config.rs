use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

/// `[transcoder]` in floodlight.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscoderConfig {
    /// LL-HLS PART-TARGET, milliseconds (100–1000). Fixed for a stream's whole life.
    pub part_target_ms: u32,
    /// Segment target, milliseconds (two part targets – 10 000); segments are cut at the
    /// first keyframe at or after it.
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
    /// `floodlight transcoder`: where ingest connects with the media transport.
    pub listen: SocketAddr,
    /// The address registered for ingest to connect to (`host:port`); unset: `listen`,
    /// with 127.0.0.1 for an unspecified IP (one machine).
    pub advertise: Option<String>,
    /// Rungs this transcoder may run at once; its load over this decides assignment.
    pub capacity_rungs: u32,
    /// `floodlight transcoder`: the HTTP listener with /metrics, /healthz, /readyz.
    pub http_listen: SocketAddr,
    /// Largest media transport message accepted (a frame with its header), bytes; a
    /// larger one closes that connection only.
    pub max_message_bytes: usize,
    /// Media transport keepalive interval, ms; a peer silent for three is gone.
    pub keepalive_ms: u64,
    /// The ladder profile (a key of `ladders`) of events that name none, or name one this
    /// transcoder does not have.
    pub ladder: String,
    /// Named ABR ladder profiles (`[transcoder.ladders.NAME]`).
    pub ladders: BTreeMap<String, LadderProfile>,
    /// libx264 preset of every encoded rung (`ultrafast` … `veryslow`).
    pub x264_preset: String,
    /// Encoder threads per rung (x264 sliced threads: no added latency).
    pub threads_per_rung: u32,
    /// VBV buffer of every encoded rung, milliseconds of its bit rate (capped VBR).
    pub vbv_buffer_ms: u32,
    /// A JPEG poster of the live picture is pushed this often, seconds of media; 0: never.
    pub thumbnail_interval_secs: u32,
    /// Width of the poster, pixels (height from the source's aspect ratio).
    pub thumbnail_width: u32,
    /// A rung whose pictures wait longer than this in its queue for ~2 s is behind real
    /// time: the stream sheds a rung.
    pub shed_lag_ms: u32,
}

/// One ABR ladder profile: the rungs a stream is transcoded into.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderProfile {
    /// Offer the publisher's video untouched as the `source` rendition, the top rung.
    #[serde(default = "default_true")]
    pub source: bool,
    /// Bit rate of `source` when it has to be re-encoded (its keyframes do not line up
    /// with the segment cadence); unset: the publisher's measured bit rate.
    #[serde(default)]
    pub source_bitrate_bps: Option<u32>,
    /// Encoded rungs. Rungs at or above the source's height are dropped (never upscale).
    #[serde(default)]
    pub rungs: Vec<RungProfile>,
}

/// One encoded rung of a ladder profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungProfile {
    /// Rendition name (its path segment in playback URLs), 1–32 of `[a-z0-9_-]`.
    pub name: String,
    /// Picture height, pixels (even); the width follows the source's aspect ratio.
    pub height: u32,
    /// Target bit rate, bits per second.
    pub bitrate_bps: u32,
}

fn default_true() -> bool {
    true
}

/// Common practice for a sports ladder (Apple's HLS authoring spec §2.3 lists similar
/// pairs): the publisher's picture on top, then 720p down to 240p.
fn default_ladders() -> BTreeMap<String, LadderProfile> {
    let rung = |name: &str, height, bitrate_bps| RungProfile {
        name: name.to_string(),
        height,
        bitrate_bps,
    };
    let default = LadderProfile {
        source: true,
        source_bitrate_bps: None,
        rungs: vec![
            rung("720p", 720, 3_000_000),
            rung("480p", 480, 1_400_000),
            rung("360p", 360, 800_000),
            rung("240p", 240, 400_000),
        ],
    };
    BTreeMap::from([("default".to_string(), default)])
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
            listen: SocketAddr::from(([0, 0, 0, 0], 9100)),
            advertise: None,
            capacity_rungs: 16,
            http_listen: SocketAddr::from(([0, 0, 0, 0], 9101)),
            max_message_bytes: 16 << 20,
            keepalive_ms: 500,
            ladder: "default".to_string(),
            ladders: default_ladders(),
            x264_preset: "veryfast".to_string(),
            threads_per_rung: 2,
            vbv_buffer_ms: 1000,
            thumbnail_interval_secs: 10,
            thumbnail_width: 640,
            shed_lag_ms: 1000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("transcoder.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A key inside a table of the section (`ladders.NAME.rungs[i].height`).
    #[error("transcoder.{key}: {reason}")]
    InvalidKey { key: String, reason: String },
}

/// The x264 presets floodlight.toml offers, fastest first (`placebo` is not for live).
const X264_PRESETS: [&str; 9] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// Apple's HLS authoring spec recommends 6 s segments; 10 s is the most a live LL-HLS
/// stream has any use for. It also keeps `ms × 90` ticks far inside `u32`.
const MAX_SEGMENT_TARGET_MS: u32 = 10_000;

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
        if self.segment_target_ms > MAX_SEGMENT_TARGET_MS {
            return invalid(
                "segment_target_ms",
                format!(
                    "{} is above {MAX_SEGMENT_TARGET_MS}",
                    self.segment_target_ms
                ),
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
        if self.capacity_rungs == 0 {
            return invalid("capacity_rungs", "must be at least 1".to_string());
        }
        // A 4K IDR frame is a few MB; below 64 KiB even a 1080p keyframe would not fit.
        if self.max_message_bytes < 64 << 10 {
            return invalid(
                "max_message_bytes",
                format!("{} is below 65536", self.max_message_bytes),
            );
        }
        if !(50..=10_000).contains(&self.keepalive_ms) {
            return invalid(
                "keepalive_ms",
                format!("{} is outside 50..=10000", self.keepalive_ms),
            );
        }
        if self.push_queue == 0 {
            return invalid("push_queue", "must be at least 1".to_string());
        }
        self.validate_ladders()
    }

    fn validate_ladders(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if !self.ladders.contains_key(&self.ladder) {
            return invalid(
                "ladder",
                format!("{:?} is not a profile of transcoder.ladders", self.ladder),
            );
        }
        if !X264_PRESETS.contains(&self.x264_preset.as_str()) {
            return invalid(
                "x264_preset",
                format!("{:?} is not one of {X264_PRESETS:?}", self.x264_preset),
            );
        }
        if !(1..=16).contains(&self.threads_per_rung) {
            return invalid(
                "threads_per_rung",
                format!("{} is outside 1..=16", self.threads_per_rung),
            );
        }
        if !(100..=10_000).contains(&self.vbv_buffer_ms) {
            return invalid(
                "vbv_buffer_ms",
                format!("{} is outside 100..=10000", self.vbv_buffer_ms),
            );
        }
        if !(16..=1920).contains(&self.thumbnail_width) || !self.thumbnail_width.is_multiple_of(2) {
            return invalid(
                "thumbnail_width",
                format!("{} is not an even width in 16..=1920", self.thumbnail_width),
            );
        }
        if !(100..=60_000).contains(&self.shed_lag_ms) {
            return invalid(
                "shed_lag_ms",
                format!("{} is outside 100..=60000", self.shed_lag_ms),
            );
        }
        for (name, profile) in &self.ladders {
            let invalid_key = |key: String, reason: String| {
                Err(ConfigError::InvalidKey {
                    key: format!("ladders.{name}.{key}"),
                    reason,
                })
            };
            if !profile.source && profile.rungs.is_empty() {
                return invalid_key(
                    "rungs".to_string(),
                    "a profile without `source` needs at least one rung".to_string(),
                );
            }
            if let Some(bps) = profile.source_bitrate_bps
                && !(100_000..=100_000_000).contains(&bps)
            {
                return invalid_key(
                    "source_bitrate_bps".to_string(),
                    format!("{bps} is outside 100000..=100000000"),
                );
            }
            for (i, rung) in profile.rungs.iter().enumerate() {
                let key = |field: &str| format!("rungs[{i}].{field}");
                if !valid_rendition_name(&rung.name) {
                    return invalid_key(
                        key("name"),
                        format!("{:?} is not 1-32 characters of [a-z0-9_-]", rung.name),
                    );
                }
                // The packager's own renditions.
                if rung.name == "source" || rung.name == "audio" {
                    return invalid_key(key("name"), format!("{:?} is reserved", rung.name));
                }
                if profile.rungs[..i].iter().any(|r| r.name == rung.name) {
                    return invalid_key(key("name"), format!("{:?} is repeated", rung.name));
                }
                if !(90..=4320).contains(&rung.height) || !rung.height.is_multiple_of(2) {
                    return invalid_key(
                        key("height"),
                        format!("{} is not an even height in 90..=4320", rung.height),
                    );
                }
                if !(50_000..=100_000_000).contains(&rung.bitrate_bps) {
                    return invalid_key(
                        key("bitrate_bps"),
                        format!("{} is outside 50000..=100000000", rung.bitrate_bps),
                    );
                }
            }
        }
        Ok(())
    }

    /// The profile an event's `StreamSettings.ladder` picks: the named one, else the
    /// default (`ladder`). The bool is false when the event named one this transcoder
    /// does not have.
    pub(crate) fn profile(&self, name: Option<&str>) -> (&str, &LadderProfile, bool) {
        if let Some(name) = name
            && let Some((key, profile)) = self.ladders.get_key_value(name)
        {
            return (key, profile, true);
        }
        let (key, profile) = self
            .ladders
            .get_key_value(&self.ladder)
            .expect("validate() checks that the default ladder exists");
        (key, profile, name.is_none())
    }
}

/// The packager's rule for rendition names: their path segment in playback URLs.
fn valid_rendition_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(config: &TranscoderConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn ladder_errors_name_the_key() {
        let mut config = TranscoderConfig::default();
        config.validate().unwrap();
        let rungs = &mut config.ladders.get_mut("default").unwrap().rungs;
        rungs[1].height = 481;
        assert!(
            error(&config).starts_with("transcoder.ladders.default.rungs[1].height: 481"),
            "{}",
            error(&config)
        );
        let mut config = TranscoderConfig::default();
        config.ladders.get_mut("default").unwrap().rungs[2].name = "audio".to_string();
        assert!(error(&config).starts_with("transcoder.ladders.default.rungs[2].name"));
        let config = TranscoderConfig {
            ladder: "sports".to_string(),
            ..TranscoderConfig::default()
        };
        assert!(error(&config).starts_with("transcoder.ladder: \"sports\""));
        let config = TranscoderConfig {
            x264_preset: "warp".to_string(),
            ..TranscoderConfig::default()
        };
        assert!(error(&config).starts_with("transcoder.x264_preset"));
        let config = TranscoderConfig {
            x264_preset: "placebo".to_string(),
            ..TranscoderConfig::default()
        };
        assert!(error(&config).starts_with("transcoder.x264_preset"));
    }

    #[test]
    fn a_segment_target_whose_ticks_overflow_is_refused() {
        let config = TranscoderConfig {
            // × 90 ticks/ms overflows u32.
            segment_target_ms: 50_000_000,
            ..TranscoderConfig::default()
        };
        assert!(error(&config).starts_with("transcoder.segment_target_ms: 50000000 is above"));
        let config = TranscoderConfig {
            segment_target_ms: 10_000,
            ..TranscoderConfig::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn an_unknown_or_missing_profile_falls_back_to_the_default() {
        let mut config = TranscoderConfig::default();
        let small = LadderProfile {
            source: false,
            source_bitrate_bps: None,
            rungs: vec![RungProfile {
                name: "360p".to_string(),
                height: 360,
                bitrate_bps: 800_000,
            }],
        };
        config.ladders.insert("small".to_string(), small.clone());
        assert_eq!(config.profile(Some("small")), ("small", &small, true));
        let (name, _, known) = config.profile(Some("nope"));
        assert_eq!((name, known), ("default", false));
        let (name, _, known) = config.profile(None);
        assert_eq!((name, known), ("default", true));
    }
}
