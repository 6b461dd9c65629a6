//! `[archive]` in floodlight.toml and the object store it opens: a directory under the data
//! dir for `floodlight up` (the embedded default), or an S3-compatible bucket for a
//! distributed deployment. Everything else in the crate takes the store as one
//! `Arc<dyn ObjectStore>`, so tests hand in `object_store::memory::InMemory`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, RetryConfig};
use serde::Deserialize;

use crate::config_error::{ConfigError, invalid};
use crate::retention::RetentionConfig;
use crate::writer::WriterConfig;

mod crypto;

/// `[archive]` in floodlight.toml.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Where the archive lives: `local` (a directory) or `s3` (an S3-compatible bucket).
    pub kind: StoreKind,
    /// `[archive.local]`, used when `kind = "local"`.
    pub local: LocalConfig,
    /// `[archive.s3]`, used when `kind = "s3"`.
    pub s3: S3Config,
    /// `[archive.writer]`: the queue and retries of the archive writer.
    pub writer: WriterConfig,
    /// `[archive.retention]`: when archived media no asset needs is deleted.
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A directory on local disk: one machine, one origin (`floodlight up`).
    #[default]
    Local,
    /// An S3-compatible object store shared by every origin replica.
    S3,
}

/// `[archive.local]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// The archive directory; created if missing. Default: `{data_dir}/archive`.
    pub dir: Option<PathBuf>,
}

/// `[archive.s3]`. Credentials come from `access_key_id` and `secret_access_key` when set,
/// else from the standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity, instance metadata). The secret is never logged and
/// is redacted from this struct's `Debug`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// `https://host[:port]` of an S3-compatible server; none for AWS itself (the
    /// region's endpoint). `http://` is accepted for a server on a private network.
    pub endpoint: Option<String>,
    /// The bucket; required. It must exist: the archive never creates buckets.
    pub bucket: String,
    /// The region requests are signed for (SigV4). S3-compatible servers mostly accept
    /// any; AWS needs the bucket's.
    pub region: String,
    /// Path-style URLs (`{endpoint}/{bucket}/{key}`), which most S3-compatible servers
    /// (MinIO, moto, Ceph) want; otherwise virtual-hosted (`{bucket}.{host}/{key}`), which
    /// AWS prefers.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: None,
            bucket: String::new(),
            region: "us-east-1".to_string(),
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// The secret access key is a credential: `Debug` (and so every log line or panic message
/// that prints the config) shows only whether it is set.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("archive.local.dir: cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// object_store's message names the setting at fault; it never quotes a secret.
    #[error("archive ({kind:?} store): {source}")]
    Open {
        kind: StoreKind,
        source: object_store::Error,
    },
}

impl ArchiveConfig {
    /// Checks the values at load, naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.writer.validate()?;
        self.retention.validate()?;
        if let Some(dir) = &self.local.dir
            && dir.as_os_str().is_empty()
        {
            return invalid(
                "local.dir",
                "must not be empty (leave it out for {data_dir}/archive)",
            );
        }
        if self.kind == StoreKind::S3 {
            self.s3.validate()?;
        }
        Ok(())
    }

    /// The directory a `local` archive uses.
    pub fn local_dir(&self, data_dir: &Path) -> PathBuf {
        self.local
            .dir
            .clone()
            .unwrap_or_else(|| data_dir.join("archive"))
    }
}

impl S3Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.bucket.is_empty() {
            return invalid("s3.bucket", "must be set when kind = \"s3\"");
        }
        if !is_bucket_name(&self.bucket) {
            return invalid(
                "s3.bucket",
                format!(
                    "{:?} must be 3 to 63 of lowercase letters, digits, '.' and '-', starting \
                     and ending with a letter or digit (S3 bucket naming rules)",
                    self.bucket
                ),
            );
        }
        if self.region.is_empty() {
            return invalid("s3.region", "must not be empty (us-east-1 when in doubt)");
        }
        if let Some(endpoint) = &self.endpoint
            && endpoint_host(endpoint).is_none()
        {
            return invalid(
                "s3.endpoint",
                format!("{endpoint:?} must be http://host[:port] or https://host[:port]"),
            );
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) if id.is_empty() || secret.is_empty() => invalid(
                "s3.access_key_id",
                "and s3.secret_access_key must not be empty when set",
            ),
            (Some(_), None) => invalid(
                "s3.secret_access_key",
                "must be set with s3.access_key_id (or leave both out to use the AWS environment)",
            ),
            (None, Some(_)) => invalid(
                "s3.access_key_id",
                "must be set with s3.secret_access_key (or leave both out to use the AWS environment)",
            ),
            _ => Ok(()),
        }
    }

    /// The endpoint object_store addresses: virtual-hosted style puts the bucket in the
    /// host name, and object_store expects it there already when given an endpoint.
    fn endpoint_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim_end_matches('/');
        if self.path_style {
            return Some(endpoint.to_string());
        }
        let (scheme, host) = endpoint.split_once("://")?;
        Some(format!("{scheme}://{}.{host}", self.bucket))
    }
}

/// The host part of an `http(s)://host[:port]` endpoint without a path.
fn endpoint_host(endpoint: &str) -> Option<&str> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))?
        .trim_end_matches('/');
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    valid.then_some(rest)
}

/// S3 bucket naming rules (the parts that matter for a key in a URL).
fn is_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Opens the store `config` names; `data_dir` places the default local directory.
/// Validates first, so a caller that skipped `validate()` still gets the key at fault.
pub fn open_store(
    config: &ArchiveConfig,
    data_dir: &Path,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    config.validate()?;
    match config.kind {
        StoreKind::Local => {
            let dir = config.local_dir(data_dir);
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
                dir: dir.clone(),
                source,
            })?;
            let store =
                LocalFileSystem::new_with_prefix(&dir).map_err(|source| StoreError::Open {
                    kind: StoreKind::Local,
                    source,
                })?;
            Ok(Arc::new(store))
        }
        StoreKind::S3 => Ok(Arc::new(s3_builder(&config.s3).build().map_err(
            |source| StoreError::Open {
                kind: StoreKind::S3,
                source,
            },
        )?)),
    }
}

fn s3_builder(s3: &S3Config) -> AmazonS3Builder {
    // The AWS environment first (credentials, session token, web identity), then the
    // config, which wins where both say something.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_virtual_hosted_style_request(!s3.path_style)
        .with_crypto_provider(Arc::new(crypto::RustCrypto))
        // The writer retries each put with its own bounded backoff and counts every
        // failure; object_store's default (10 retries over up to 3 minutes) on top would
        // multiply the attempts and hide an outage from the writer's status.
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 0,
            retry_timeout: Duration::from_secs(30),
        });
    if let Some(endpoint) = s3.endpoint_url() {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_local_directory_under_the_data_dir() {
        let config = ArchiveConfig::default();
        config.validate().unwrap();
        assert_eq!(config.kind, StoreKind::Local);
        assert_eq!(
            config.local_dir(Path::new("/var/lib/floodlight")),
            Path::new("/var/lib/floodlight/archive")
        );
        let data = tempfile::tempdir().unwrap();
        let store = open_store(&config, data.path()).unwrap();
        assert!(store.to_string().contains("LocalFileSystem"), "{store}");
        assert!(data.path().join("archive").is_dir());
    }

    #[test]
    fn an_s3_config_from_toml_opens_without_network() {
        let config: ArchiveConfig = toml::from_str(
            r#"
            kind = "s3"
            [s3]
            endpoint = "http://127.0.0.1:9000"
            bucket = "floodlight-archive"
            path_style = true
            access_key_id = "AKIDEXAMPLE"
            secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
            [writer]
            queue_segments = 32
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.writer.queue_segments, 32);
        let store = open_store(&config, Path::new("/nonexistent")).unwrap();
        assert!(store.to_string().contains("floodlight-archive"), "{store}");
        // object_store's own Debug redacts the credential too.
        let debug = format!("{store:?}");
        assert!(!debug.contains("wJalrXUtnFEMI"), "{debug}");
        let virtual_hosted = S3Config {
            path_style: false,
            ..config.s3.clone()
        };
        assert_eq!(
            virtual_hosted.endpoint_url().as_deref(),
            Some("http://floodlight-archive.127.0.0.1:9000")
        );
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let config = ArchiveConfig {
            kind: StoreKind::S3,
            s3: S3Config {
                bucket: "b-1".into(),
                access_key_id: Some("AKIDEXAMPLE".into()),
                secret_access_key: Some(secret.into()),
                ..S3Config::default()
            },
            ..ArchiveConfig::default()
        };
        config.validate().unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(secret), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert!(debug.contains("AKIDEXAMPLE"), "{debug}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let s3 = |s3: S3Config| ArchiveConfig {
            kind: StoreKind::S3,
            s3,
            ..ArchiveConfig::default()
        };
        let good = S3Config {
            bucket: "archive".into(),
            ..S3Config::default()
        };
        for (config, key) in [
            (s3(S3Config::default()), "archive.s3.bucket: must be set"),
            (
                s3(S3Config {
                    bucket: "Upper_Case".into(),
                    ..good.clone()
                }),
                "archive.s3.bucket: \"Upper_Case\"",
            ),
            (
                s3(S3Config {
                    region: String::new(),
                    ..good.clone()
                }),
                "archive.s3.region",
            ),
            (
                s3(S3Config {
                    endpoint: Some("ftp://host".into()),
                    ..good.clone()
                }),
                "archive.s3.endpoint",
            ),
            (
                s3(S3Config {
                    endpoint: Some("https://host/path".into()),
                    ..good.clone()
                }),
                "archive.s3.endpoint",
            ),
            (
                s3(S3Config {
                    access_key_id: Some("id".into()),
                    ..good.clone()
                }),
                "archive.s3.secret_access_key",
            ),
            (
                ArchiveConfig {
                    local: LocalConfig {
                        dir: Some(PathBuf::new()),
                    },
                    ..ArchiveConfig::default()
                },
                "archive.local.dir",
            ),
            (
                ArchiveConfig {
                    writer: WriterConfig {
                        queue_segments: 0,
                        ..WriterConfig::default()
                    },
                    ..ArchiveConfig::default()
                },
                "archive.writer.queue_segments",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{key:?}: {err}");
        }
        let err = toml::from_str::<ArchiveConfig>("kind = \"ftp\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ftp"), "{err}");
        let err = toml::from_str::<ArchiveConfig>("[s3]\nbukcet = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bukcet"), "{err}");
    }
}
