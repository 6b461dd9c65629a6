//! VOD assets made from archived events (issue 11): the asset model, its store queries,
//! the `/v1/assets` handlers, what the asset jobs do (`work.rs`: build, delete) and what
//! they write (`build_store.rs`), and the automatic recording of ended events
//! (`recording.rs`).
//!
//! Uses `events` (the source event, its visibility and owner), `jobs` (the queue, the
//! runner and the [`crate::jobs::AssetBuilder`] the binary implements) and `audit`.

pub(crate) mod api;
mod build_store;
mod model;
mod recording;
mod request;
mod store;
mod work;

use std::time::Duration;

use crate::jobs::{ArchivedRange, AssetBuilder, BuildError};

pub(crate) use recording::wake_on_ended;
pub(crate) use work::AssetWork;

/// How long a look-up of what the archive holds may take before it counts as the
/// archive not answering: an API answer, or the job runner's poll, waits on it.
const ARCHIVE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// [`AssetBuilder::archived_range`], bounded by [`ARCHIVE_LOOKUP_TIMEOUT`].
async fn archived_range(
    builder: &dyn AssetBuilder,
    event_id: &str,
) -> Result<Option<ArchivedRange>, BuildError> {
    tokio::time::timeout(ARCHIVE_LOOKUP_TIMEOUT, builder.archived_range(event_id))
        .await
        .unwrap_or_else(|_| {
            Err(BuildError::Retryable(format!(
                "the archive did not answer within {} s",
                ARCHIVE_LOOKUP_TIMEOUT.as_secs()
            )))
        })
}
