//! floodlight.toml: one file, every key with a default, every key overridable by an
//! environment variable `FLOODLIGHT_{SECTION}__{KEY}` (double underscore between levels),
//! e.g. `FLOODLIGHT_INGEST__RTMP__LISTEN=0.0.0.0:1936`, `FLOODLIGHT_PUBLIC_HOST=tv.example`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use floodlight_archive::ArchiveConfig;
use floodlight_control::ControlConfig;
use floodlight_control::viewer_sessions::SessionsConfig;
use floodlight_ingest::IngestConfig;
use floodlight_origin::OriginConfig;
use floodlight_transcoder::TranscoderConfig;

const ENV_PREFIX: &str = "FLOODLIGHT_";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded SQLite database and the local archive live.
    pub data_dir: PathBuf,
    /// Host name publishers and viewers use to reach this server; used in the URLs the
    /// control API hands out.
    pub public_host: String,
    /// `tracing` filter, e.g. `info` or `floodlight_ingest=debug,info`.
    pub log: String,
    pub ingest: IngestConfig,
    pub transcoder: TranscoderConfig,
    pub origin: OriginConfig,
    pub control: ControlConfig,
    /// Viewer sessions shared by the control plane and the origins.
    pub sessions: SessionsConfig,
    /// Which transcoder serves each stream.
    pub assignment: AssignmentConfig,
    /// Where the origin archives segments and init versions.
    pub archive: ArchiveSection,
}

/// `[archive]`: `enabled`, then the store and writer keys of
/// [`floodlight_archive::ArchiveConfig`] (`kind`, `[archive.local]`, `[archive.s3]`,
/// `[archive.writer]`). `Debug` redacts the S3 secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveSection {
    /// The origin archives every complete segment and init version (on by default).
    pub enabled: bool,
    pub store: ArchiveConfig,
}

impl Default for ArchiveSection {
    fn default() -> Self {
        ArchiveSection {
            enabled: true,
            store: ArchiveConfig::default(),
        }
    }
}

/// `enabled` is the binary's key, the rest the archive crate's: it is taken out before
/// the rest is read, so unknown keys are still refused by name.
impl<'de> Deserialize<'de> for ArchiveSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(deserializer)?;
        let enabled = match table.remove("enabled") {
            None => true,
            Some(toml::Value::Boolean(enabled)) => enabled,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "archive.enabled: expected true or false, found {other}"
                )));
            }
        };
        let store = ArchiveConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| D::Error::custom(format!("archive: {e}")))?;
        Ok(ArchiveSection { enabled, store })
    }
}

/// Where ingest hands streams: the transcoder in the same process, or remote ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentMode {
    /// `floodlight up` transcodes in its own process.
    #[default]
    Local,
    /// Streams go to `floodlight transcoder` processes registered in Redis, over the
    /// media transport (always so for `floodlight ingest`).
    Remote,
}

/// `[assignment]`: the transcoder registry and how ingest uses it.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssignmentConfig {
    pub mode: AssignmentMode,
    /// Redis holding the registry (`redis://host:port/db`); required by `floodlight
    /// transcoder`, `floodlight ingest` and `mode = "remote"`. Never logged.
    pub redis_url: Option<String>,
    /// Prefix of the registry's Redis keys.
    pub key_prefix: String,
    /// How often a transcoder renews its registration, ms.
    pub heartbeat_ms: u64,
    /// A registration not renewed for this long is gone, ms: a dead transcoder stops being
    /// picked after it.
    pub expiry_ms: u64,
    /// Time ingest gives a transcoder to accept a stream, ms.
    pub connect_timeout_ms: u64,
    /// Frames since the last keyframe ingest keeps per stream to replay to a transcoder
    /// taking over, bytes.
    pub gop_cache_bytes: usize,
    /// Events queued per transcoder connection before ingest drops frames.
    pub send_queue_events: usize,
}

impl Default for AssignmentConfig {
    fn default() -> Self {
        AssignmentConfig {
            mode: AssignmentMode::Local,
            redis_url: None,
            key_prefix: "floodlight:transcoders:".to_string(),
            heartbeat_ms: 1000,
            expiry_ms: 3000,
            connect_timeout_ms: 1000,
            gop_cache_bytes: 16 << 20,
            send_queue_events: 1024,
        }
    }
}

impl std::fmt::Debug for AssignmentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssignmentConfig")
            .field("mode", &self.mode)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("expiry_ms", &self.expiry_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("gop_cache_bytes", &self.gop_cache_bytes)
            .field("send_queue_events", &self.send_queue_events)
            .finish()
    }
}

impl AssignmentConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.mode == AssignmentMode::Remote && self.redis_url.is_none() {
            bail!("assignment.redis_url: required with assignment.mode = \"remote\"");
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(char::is_whitespace) {
            bail!("assignment.key_prefix: must be non-empty without whitespace");
        }
        if !(100..=10_000).contains(&self.heartbeat_ms) {
            bail!(
                "assignment.heartbeat_ms: {} is outside 100..=10000",
                self.heartbeat_ms
            );
        }
        // Two missed heartbeats are tolerated before an entry expires.
        if self.expiry_ms < 2 * self.heartbeat_ms {
            bail!(
                "assignment.expiry_ms: {} must be at least two heartbeats ({})",
                self.expiry_ms,
                2 * self.heartbeat_ms
            );
        }
        if !(50..=30_000).contains(&self.connect_timeout_ms) {
            bail!(
                "assignment.connect_timeout_ms: {} is outside 50..=30000",
                self.connect_timeout_ms
            );
        }
        if self.gop_cache_bytes < 1 << 20 {
            bail!(
                "assignment.gop_cache_bytes: {} is below 1 MiB",
                self.gop_cache_bytes
            );
        }
        if self.send_queue_events < 16 {
            bail!(
                "assignment.send_queue_events: {} is below 16",
                self.send_queue_events
            );
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            public_host: "localhost".to_string(),
            log: "info".to_string(),
            ingest: IngestConfig::default(),
            transcoder: TranscoderConfig::default(),
            origin: OriginConfig::default(),
            control: ControlConfig::default(),
            sessions: SessionsConfig::default(),
            assignment: AssignmentConfig::default(),
            archive: ArchiveSection::default(),
        }
    }
}

impl Config {
    /// Loads the file (if any), then applies `FLOODLIGHT_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Variables the binary reads itself, not config keys.
            if matches!(key, "CONFIG" | "DATA_DIR_OVERRIDE") {
                continue;
            }
            // The name for the bootstrap admin key, kept short for automation.
            let path: Vec<String> = if key == "ADMIN_KEY" {
                vec!["control".to_string(), "admin_key".to_string()]
            } else {
                key.split("__").map(|p| p.to_ascii_lowercase()).collect()
            };
            set_path(&mut table, &path, parse_env_value(&value))
                .with_context(|| format!("environment variable {name}"))?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.public_host.trim().is_empty() {
            bail!("public_host: must not be empty");
        }
        self.transcoder.validate()?;
        self.origin.validate()?;
        self.control.validate()?;
        self.sessions.validate()?;
        self.assignment.validate()?;
        self.archive.store.validate()?;
        // The control plane writes the token under this name; the origin reads it.
        if self.control.entitlement.token_query_param != self.origin.token_query_param {
            bail!(
                "control.entitlement.token_query_param ({:?}) must equal origin.token_query_param ({:?})",
                self.control.entitlement.token_query_param,
                self.origin.token_query_param
            );
        }
        // The origin must not end a stream on its own while its transcoder is still
        // waiting for the publisher to come back.
        if self.origin.idle_end_secs <= self.transcoder.reconnect_grace_secs {
            bail!(
                "origin.idle_end_secs: {} must exceed transcoder.reconnect_grace_secs ({})",
                self.origin.idle_end_secs,
                self.transcoder.reconnect_grace_secs
            );
        }
        Ok(())
    }
}

/// An env value is read as a TOML value when it parses as one (numbers, booleans,
/// arrays), otherwise as a plain string, so `0.0.0.0:8080` needs no quotes.
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    match path {
        [] => bail!("empty key"),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => bail!("{first} is not a section"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_loads_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("floodlight.toml");
        let config = Config::load(Some(&path), []).expect("sample floodlight.toml loads");
        let defaults = Config::default();
        assert_eq!(
            format!("{config:?}"),
            format!("{defaults:?}"),
            "the sample must document the defaults"
        );
    }

    #[test]
    fn env_overrides_nested_keys_with_typed_values() {
        let env = [
            (
                "FLOODLIGHT_INGEST__RTMP__LISTEN".to_string(),
                "127.0.0.1:19350".to_string(),
            ),
            (
                "FLOODLIGHT_TRANSCODER__PART_TARGET_MS".to_string(),
                "300".to_string(),
            ),
            (
                "FLOODLIGHT_PUBLIC_HOST".to_string(),
                "tv.example".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.ingest.rtmp.listen.to_string(), "127.0.0.1:19350");
        let admin_key = "an admin key of more than 32 characters";
        let env = [("FLOODLIGHT_ADMIN_KEY".to_string(), admin_key.to_string())];
        let with_key = Config::load(None, env).unwrap();
        assert_eq!(
            with_key
                .control
                .admin_key
                .as_ref()
                .map(|k| k.expose_secret()),
            Some(admin_key)
        );
        assert!(
            !format!("{with_key:?}").contains(admin_key),
            "redacted in Debug"
        );
        assert_eq!(config.transcoder.part_target_ms, 300);
        assert_eq!(config.public_host, "tv.example");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let env = [(
            "FLOODLIGHT_TRANSCODER__PART_TARGET_MS".to_string(),
            "50".to_string(),
        )];
        let err = format!("{:#}", Config::load(None, env).unwrap_err());
        assert!(err.contains("part_target_ms"), "{err}");
        let env = [(
            "FLOODLIGHT_TRANSCODER__NO_SUCH_KEY".to_string(),
            "1".to_string(),
        )];
        let err = format!("{:#}", Config::load(None, env).unwrap_err());
        assert!(err.contains("no_such_key"), "{err}");
        let env = [(
            "FLOODLIGHT_ARCHIVE__WRITER__QUEUE_SEGMENTS".to_string(),
            "0".to_string(),
        )];
        let err = format!("{:#}", Config::load(None, env).unwrap_err());
        assert!(err.contains("archive.writer.queue_segments"), "{err}");
        let env = [(
            "FLOODLIGHT_ARCHIVE__LOCAL__NO_SUCH_KEY".to_string(),
            "1".to_string(),
        )];
        let err = format!("{:#}", Config::load(None, env).unwrap_err());
        assert!(err.contains("no_such_key"), "{err}");
    }

    #[test]
    fn archive_section_takes_enabled_and_keeps_the_s3_secret_out_of_debug() {
        let secret = "a-secret-access-key-value";
        let env = [
            ("FLOODLIGHT_ARCHIVE__ENABLED", "false"),
            ("FLOODLIGHT_ARCHIVE__KIND", "s3"),
            ("FLOODLIGHT_ARCHIVE__S3__BUCKET", "floodlight-archive"),
            ("FLOODLIGHT_ARCHIVE__S3__ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("FLOODLIGHT_ARCHIVE__S3__SECRET_ACCESS_KEY", secret),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = Config::load(None, env).unwrap();
        assert!(!config.archive.enabled);
        assert_eq!(config.archive.store.s3.bucket, "floodlight-archive");
        assert!(!format!("{config:?}").contains(secret), "redacted in Debug");
        assert!(Config::default().archive.enabled);
    }
}
