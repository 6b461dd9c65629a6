//! The keys that sign playback tokens: `control.entitlement.playback_signing_keys`, or,
//! when unset, one generated on first start and kept in `{data_dir}/playback.keys` so
//! tokens issued before a restart still play after it.
//!
//! The file holds one `<key id>:<secret>` per line, the current key first; to rotate,
//! put a new line on top (origins accept the first two lines' keys).

use std::path::{Path, PathBuf};

use floodlight_media::token::{KeySpecError, TokenKey};

use super::config::EntitlementConfig;
use crate::config_error::ConfigError;
use crate::secret::{Secret, write_new_private_file};

/// File in the data dir holding the generated signing keys.
pub(crate) const PLAYBACK_KEYS_FILE: &str = "playback.keys";

/// Why the signing keys could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read or create the playback signing keys {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The reason names the line, never its secret.
    #[error("{path} line {line}: {error}")]
    Invalid {
        path: PathBuf,
        line: usize,
        error: KeySpecError,
    },
    #[error("{path} holds no key")]
    Empty { path: PathBuf },
}

/// The signing keys in rotation order, current first, as `<key id>:<secret>` specs (what
/// `origin.playback_keys` takes): the configured ones, or those in
/// `{data_dir}/playback.keys`, generated on first use.
pub async fn playback_signing_keys(
    config: &EntitlementConfig,
    data_dir: &Path,
) -> Result<Vec<Secret>, SigningKeyError> {
    if !config.playback_signing_keys.is_empty() {
        config.signing_keys()?;
        return Ok(config.playback_signing_keys.clone());
    }
    let path = data_dir.join(PLAYBACK_KEYS_FILE);
    let io = |source| SigningKeyError::Io {
        path: path.clone(),
        source,
    };
    tokio::fs::create_dir_all(data_dir).await.map_err(io)?;
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("k{}", hex::encode(rand::random::<[u8; 4]>()));
            let secret = hex::encode(rand::random::<[u8; 32]>());
            write_new_private_file(&path, &format!("{id}:{secret}\n"))
                .await
                .map_err(io)?;
            tracing::info!(path = %path.display(), key_id = id, "generated a playback signing key");
            // Another process may have won the race to create it: read what is there.
            tokio::fs::read_to_string(&path).await.map_err(io)?
        }
        Err(error) => return Err(io(error)),
    };
    let mut specs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        TokenKey::parse(line).map_err(|error| SigningKeyError::Invalid {
            path: path.clone(),
            line: index + 1,
            error,
        })?;
        specs.push(Secret::new(line));
    }
    if specs.is_empty() {
        return Err(SigningKeyError::Empty { path });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_generated_key_is_kept_and_configured_keys_win() {
        let dir = tempfile::tempdir().unwrap();
        let config = EntitlementConfig::default();
        let first = playback_signing_keys(&config, dir.path()).await.unwrap();
        assert_eq!(first.len(), 1);
        let again = playback_signing_keys(&config, dir.path()).await.unwrap();
        assert_eq!(first, again, "the key survives a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(PLAYBACK_KEYS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let configured = EntitlementConfig {
            playback_signing_keys: vec![Secret::new("mine:0123456789abcdef0123456789abcdef")],
            ..EntitlementConfig::default()
        };
        let keys = playback_signing_keys(&configured, dir.path())
            .await
            .unwrap();
        assert_eq!(keys, configured.playback_signing_keys);

        std::fs::write(dir.path().join(PLAYBACK_KEYS_FILE), "# rotated\nbad line\n").unwrap();
        let error = playback_signing_keys(&config, dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
    }
}
