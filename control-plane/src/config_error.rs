//! [`ConfigError`]: a `[control]` value that cannot work. Its own file because every
//! section reports with it: `config.rs` for `[control]` itself and each domain for the
//! section it owns (`[control.entitlement]`), so none of them imports another for it.

/// A `[control]` value that cannot work, named by its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("control.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}
