//! The publish decision's contract between ingest and the control plane: why a publisher
//! may not publish. One type for both sides (they used to mirror each other as
//! `PublishRefusal` and `PublishDenied`), so a new reason cannot be lost in a mapping.

/// A no from the control plane, or no answer at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishRefusal {
    /// No event has this key (or it was revoked), or it belongs to another event than the
    /// one named.
    #[error("unknown stream key")]
    UnknownKey,
    /// The key is valid but publishing is not allowed now; the reason is safe to show the
    /// publisher (outside the event's window, event cancelled, protocol not allowed…).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed key attempts from this address; try again later.
    #[error("too many failed stream key attempts, retry later")]
    RateLimited,
    /// The control plane could not be asked.
    #[error("stream key check unavailable: {0}")]
    Unavailable(String),
}

impl PublishRefusal {
    /// The metric label of the refusal.
    pub fn label(&self) -> &'static str {
        match self {
            PublishRefusal::UnknownKey => "unknown_key",
            PublishRefusal::Forbidden(_) => "forbidden",
            PublishRefusal::RateLimited => "rate_limited",
            PublishRefusal::Unavailable(_) => "unavailable",
        }
    }
}
