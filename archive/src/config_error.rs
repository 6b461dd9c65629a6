//! The error every `[archive.*]` config section's `validate` gives, naming the key. Its
//! own module, so the sections (`store`, `writer`, `retention`) depend on it and not on
//! each other.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("archive.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// `Err(ConfigError::Invalid { key, reason })`.
pub(crate) fn invalid(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.into(),
    })
}
