//! What building and deleting VOD assets needs from the archive: the [`AssetBuilder`]
//! trait the binary implements over `floodlight-archive` and the transcoder's smart
//! renderer, the types that cross it, and the [`CancelToken`] a job stops on.
//!
//! The control plane depends on no service crate (ARCHITECTURE.md, "The crates"), so it
//! names what it needs here and the binary, which knows every crate, fills it in.
//! Futures are boxed by hand (`BoxFuture`) so the trait is object-safe without a
//! proc-macro dependency.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A boxed, sendable future: what the [`AssetBuilder`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What building and deleting assets needs from the archive (implemented by the binary
/// over floodlight-archive and the transcoder's smart renderer).
pub trait AssetBuilder: Send + Sync + 'static {
    /// What the archive holds of an event: the first and last archived instants (Unix ms,
    /// [first segment PDT, last segment end)), None when nothing is archived.
    fn archived_range<'a>(
        &'a self,
        event_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ArchivedRange>, BuildError>>;

    /// Builds the asset: writes its manifest to the object store, reports progress, stops
    /// early with BuildError::Cancelled when `cancel` fires.
    ///
    /// A job whose process died is run again from the start for the same `asset_id`, so
    /// what it writes must be safe to write twice (the archive's writes are idempotent).
    fn build<'a>(
        &'a self,
        spec: &'a AssetSpec,
        progress: &'a dyn ProgressSink,
        cancel: &'a CancelToken,
    ) -> BoxFuture<'a, Result<BuiltAsset, BuildError>>;

    /// Deletes what only this asset uses from the object store (idempotent).
    fn delete<'a>(&'a self, asset_id: &'a str) -> BoxFuture<'a, Result<(), BuildError>>;
}

/// The span of an event the archive holds, Unix milliseconds: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivedRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What to build: which event, which span of it, how precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetSpec {
    pub asset_id: String,
    pub event_id: String,
    /// Unix ms; `None`: from the first archived instant.
    pub start_ms: Option<i64>,
    /// Unix ms; `None`: to the last archived instant.
    pub end_ms: Option<i64>,
    pub precision: Precision,
}

/// How exactly an asset's ends follow the range asked for.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The archived segments that overlap the range, referenced as they are: never
    /// re-encoded, ready in seconds; the asset covers the range to within a segment.
    #[default]
    Segment,
    /// Starts and ends on the exact frames asked: only the GOPs the range cuts are
    /// re-encoded, the rest is copied.
    Frame,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Segment => "segment",
            Precision::Frame => "frame",
        }
    }

    pub(crate) fn from_column(text: &str) -> Option<Precision> {
        match text {
            "segment" => Some(Precision::Segment),
            "frame" => Some(Precision::Frame),
            _ => None,
        }
    }
}

/// What a build made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltAsset {
    pub duration_ms: i64,
    /// The span actually covered, Unix ms (a `segment` asset's reaches the segment
    /// boundaries around the range asked for).
    pub start_ms: i64,
    pub end_ms: i64,
    pub renditions: Vec<BuiltRendition>,
    /// A poster image was written beside the manifest.
    pub poster: bool,
}

/// One rendition of a built asset, as its master playlist lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRendition {
    pub name: String,
    /// `video` or `audio`.
    pub kind: String,
    /// RFC 6381 codecs, e.g. `avc1.64001f`.
    pub codecs: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bandwidth_bps: Option<u64>,
    pub duration_ms: i64,
}

/// Where a build reports how far it got. Cheap and synchronous: the job runner keeps the
/// latest report and writes it to the store at most about once a second.
pub trait ProgressSink: Send + Sync {
    /// `stage` in a few words (`copying segments`, `rendering 720p`), `progress` from 0
    /// to 1.
    fn report(&self, stage: &str, progress: f64);
}

/// Why a build or delete did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// the store is unreachable etc.: the job waits and retries, and says so
    #[error("{0}")]
    Retryable(String),
    /// the job fails with this reason (e.g. a corrupt index object, named)
    #[error("{0}")]
    Fatal(String),
    /// `cancel` fired.
    #[error("cancelled")]
    Cancelled,
}

/// Tells a running build to stop: the asset was cancelled or deleted, the control plane
/// is shutting down, or another process took the job over. Cheap to clone; clones share
/// the state.
#[derive(Clone)]
pub struct CancelToken(Arc<watch::Sender<bool>>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken(Arc::new(watch::Sender::new(false)))
    }

    /// Fires the token: every [`CancelToken::cancelled`] completes, now and later.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once [`CancelToken::cancel`] has been called (at once if it was).
    pub async fn cancelled(&self) {
        let mut receiver = self.0.subscribe();
        // Fails only when the sender is gone, and `self` holds it.
        let _ = receiver.wait_for(|&cancelled| cancelled).await;
    }
}

impl Default for CancelToken {
    fn default() -> CancelToken {
        CancelToken::new()
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CancelToken")
            .field(&self.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_token_wakes_every_waiter_before_and_after_it_fires() {
        let token = CancelToken::new();
        assert!(!token.is_cancelled());
        let waiter = tokio::spawn({
            let token = token.clone();
            async move { token.cancelled().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        token.clone().cancel();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(token.is_cancelled());
        // Already fired: completes at once.
        tokio::time::timeout(Duration::from_millis(10), token.cancelled())
            .await
            .unwrap();
    }
}
