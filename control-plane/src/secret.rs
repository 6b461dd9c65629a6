//! Secrets: the ones configured in floodlight.toml ([`Secret`], never shown), and those
//! the control plane hands out (stream keys, API keys) and how they are stored: as a
//! keyed hash, HMAC-SHA256 (RFC 2104) under a server secret.
//!
//! Why a keyed hash and not argon2: slow password hashes make guessing low-entropy human
//! passwords expensive. These keys are 256 random bits; nobody guesses them, so a fast
//! hash loses nothing and lets a key be found by an indexed look-up of its digest. The
//! key (server secret) adds that a stolen database alone does not even allow checking a
//! candidate key offline.
//!
//! Why look-up by digest is safe against timing: the index compares MACs that a caller
//! cannot compute without the server secret, so how long a look-up takes says nothing
//! about any stored key. The final equality is still checked in constant time.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A configured secret: `Debug` redacts it so it cannot reach a log with the config.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Shortest configured `admin_key` or `key_secret`: 128 bits of base-64 text is 22
/// characters; 32 leaves room for weaker alphabets.
pub(crate) const MIN_SECRET_CHARS: usize = 32;

/// File in the data dir holding the generated key secret when `control.key_secret` is
/// unset.
pub(crate) const KEY_SECRET_FILE: &str = "control.key";

/// Why the key secret could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySecretError {
    #[error("cannot read or create the key secret {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key secret in {path} is shorter than {MIN_SECRET_CHARS} characters")]
    TooShort { path: PathBuf },
}

/// Hashes keys for storage and checks a presented key against a stored digest.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(<redacted>)")
    }
}

impl KeyHasher {
    pub(crate) fn new(secret: &str) -> KeyHasher {
        KeyHasher {
            // HMAC takes a key of any length (RFC 2104 §2).
            mac: Hmac::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length"),
        }
    }

    /// The configured secret, or the one in `{data_dir}/control.key`, generated (256
    /// random bits as hex, owner-only permissions) on first use.
    pub(crate) async fn load(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> Result<KeyHasher, KeySecretError> {
        if let Some(secret) = configured {
            return Ok(KeyHasher::new(secret));
        }
        let path = data_dir.join(KEY_SECRET_FILE);
        let io = |source| KeySecretError::Io {
            path: path.clone(),
            source,
        };
        tokio::fs::create_dir_all(data_dir).await.map_err(io)?;
        let secret = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text.trim().to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let secret = hex::encode(rand::random::<[u8; 32]>());
                write_new_private_file(&path, &secret).await.map_err(io)?;
                tracing::info!(path = %path.display(), "generated the key secret");
                // Another process may have won the race to create it: read what is there.
                tokio::fs::read_to_string(&path)
                    .await
                    .map_err(io)?
                    .trim()
                    .to_string()
            }
            Err(error) => return Err(io(error)),
        };
        if secret.chars().count() < MIN_SECRET_CHARS {
            return Err(KeySecretError::TooShort { path });
        }
        Ok(KeyHasher::new(&secret))
    }

    /// Lowercase hex HMAC-SHA256 of the whole key.
    pub(crate) fn digest(&self, key: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `key` hashes to `stored`, compared in constant time.
    pub(crate) fn matches(&self, stored: &str, key: &str) -> bool {
        bool::from(self.digest(key).as_bytes().ct_eq(stored.as_bytes()))
    }
}

/// Creates `path` with `contents`, readable by the owner only; an existing file is left
/// alone (`create_new`), so two processes starting together keep one secret (or key).
pub(crate) async fn write_new_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path).await {
        Ok(mut file) => {
            use tokio::io::AsyncWriteExt;
            file.write_all(contents.as_bytes()).await?;
            file.sync_all().await
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// `prefix` + 43 characters of `[0-9A-Za-z]`: 43 × log2(62) ≈ 256 bits from the
/// thread-local CSPRNG (seeded from the OS). The alphabet needs no escaping in an RTMP
/// path, an SRT stream id or an HTTP header; the prefix lets people and secret scanners
/// recognise a leaked key.
pub(crate) fn random_key(prefix: &str) -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(RANDOM_KEY_CHARS)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}

pub(crate) const RANDOM_KEY_CHARS: usize = 43;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_keyed_and_checked() {
        let a = KeyHasher::new("a secret of at least thirty-two characters");
        let b = KeyHasher::new("another secret of at least thirty-two chars");
        let key = random_key("fl_live_");
        assert_eq!(a.digest(&key).len(), 64);
        assert_ne!(
            a.digest(&key),
            b.digest(&key),
            "the digest depends on the secret"
        );
        assert!(a.matches(&a.digest(&key), &key));
        assert!(!a.matches(&a.digest(&key), &key[..key.len() - 1]));
        assert!(!a.matches(&b.digest(&key), &key));
        assert!(!a.matches("", &key));
        // RFC 4231 test case 2: HMAC-SHA256 with key "Jefe".
        assert_eq!(
            KeyHasher::new("Jefe").digest("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn the_generated_secret_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = KeyHasher::load(None, &data).await.unwrap();
        let second = KeyHasher::load(None, &data).await.unwrap();
        assert_eq!(first.digest("k"), second.digest("k"));
        let text = std::fs::read_to_string(data.join(KEY_SECRET_FILE)).unwrap();
        assert_eq!(text.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(KEY_SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let configured = KeyHasher::load(Some("x".repeat(40).as_str()), &data)
            .await
            .unwrap();
        assert_ne!(configured.digest("k"), first.digest("k"));

        std::fs::write(data.join(KEY_SECRET_FILE), "short").unwrap();
        assert!(matches!(
            KeyHasher::load(None, &data).await,
            Err(KeySecretError::TooShort { .. })
        ));
    }
}
