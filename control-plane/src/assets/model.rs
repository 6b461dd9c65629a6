//! The asset model: a VOD asset made from a span of an archived event, where it is in
//! its build (queued → processing → ready | failed | cancelled), and what was built.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::db::{InvalidCursor, StoreError, parse_time_id_cursor, unix_micros};
use crate::events::Visibility;
use crate::jobs::{BuiltRendition, Precision};

/// Where an asset is in its build.
///
/// ```text
/// queued ──▶ processing ──▶ ready
///   │            │  └──────▶ failed (error says why)
///   └────────────┴─cancel──▶ cancelled
/// ```
/// A retryable failure (the object store is down) keeps the asset where it is, its
/// `stage` saying what it waits for. Deleting an asset removes it from the API at once,
/// whatever its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AssetState {
    /// Waiting for a job runner.
    Queued,
    /// A job runner is building it (`progress`, `stage`).
    Processing,
    /// Built: `playback.hls` plays it.
    Ready,
    /// The build failed for good; `error` says why.
    Failed,
    /// Cancelled (or deleted) before it was built.
    Cancelled,
}

impl AssetState {
    pub(crate) const ALL: [AssetState; 5] = [
        AssetState::Queued,
        AssetState::Processing,
        AssetState::Ready,
        AssetState::Failed,
        AssetState::Cancelled,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AssetState::Queued => "queued",
            AssetState::Processing => "processing",
            AssetState::Ready => "ready",
            AssetState::Failed => "failed",
            AssetState::Cancelled => "cancelled",
        }
    }

    pub(super) fn from_column(text: &str) -> Result<AssetState, StoreError> {
        text.parse().map_err(|()| StoreError::CorruptRow {
            what: "asset state",
            value: text.to_string(),
        })
    }
}

impl FromStr for AssetState {
    type Err = ();

    fn from_str(text: &str) -> Result<AssetState, ()> {
        AssetState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or(())
    }
}

impl fmt::Display for AssetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An asset to make (validated by the API, or made by an event's recording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewAsset {
    pub(crate) title: String,
    pub(crate) event_id: String,
    /// `None`: from the event's first archived instant.
    pub(crate) start: Option<OffsetDateTime>,
    /// `None`: to the event's end.
    pub(crate) end: Option<OffsetDateTime>,
    pub(crate) precision: Precision,
    /// The principal it belongs to: its event's owner.
    pub(crate) owner: Option<String>,
}

/// One rendition of a built asset, as stored in the `renditions` JSON column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AssetRendition {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) codecs: String,
    pub(crate) width: Option<u32>,
    pub(crate) height: Option<u32>,
    pub(crate) bandwidth_bps: Option<u64>,
    pub(crate) duration_ms: i64,
}

impl From<&BuiltRendition> for AssetRendition {
    fn from(built: &BuiltRendition) -> AssetRendition {
        AssetRendition {
            name: built.name.clone(),
            kind: built.kind.clone(),
            codecs: built.codecs.clone(),
            width: built.width,
            height: built.height,
            bandwidth_bps: built.bandwidth_bps,
            duration_ms: built.duration_ms,
        }
    }
}

/// An asset as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Asset {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) event_id: String,
    /// The range asked for (`None` ends: the whole event).
    pub(crate) start: Option<OffsetDateTime>,
    pub(crate) end: Option<OffsetDateTime>,
    pub(crate) precision: Precision,
    pub(crate) state: AssetState,
    /// 0 to 1.
    pub(crate) progress: f64,
    pub(crate) stage: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    /// The span actually covered, once built.
    pub(crate) range: Option<(OffsetDateTime, OffsetDateTime)>,
    pub(crate) renditions: Vec<AssetRendition>,
    pub(crate) poster: bool,
    pub(crate) owner: Option<String>,
    /// Made by the event's automatic recording (not through the API).
    pub(crate) recording: bool,
    /// Its event's: an asset is watched under the same rules as its event.
    pub(crate) visibility: Visibility,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
    pub(crate) started_at: Option<OffsetDateTime>,
    pub(crate) finished_at: Option<OffsetDateTime>,
}

/// Which assets a list shows. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AssetFilter {
    /// Made from any of these events.
    pub(crate) event_ids: Vec<String>,
    /// In any of these states.
    pub(crate) states: Vec<AssetState>,
    /// Belonging to this principal.
    pub(crate) owner: Option<String>,
}

/// Where the next page of the newest-first asset list starts (opaque to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssetCursor {
    pub(super) created_at_us: i64,
    pub(super) id: String,
}

impl AssetCursor {
    pub(super) fn after(asset: &Asset) -> AssetCursor {
        AssetCursor {
            created_at_us: unix_micros(asset.created_at),
            id: asset.id.clone(),
        }
    }
}

impl fmt::Display for AssetCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.created_at_us, self.id)
    }
}

impl FromStr for AssetCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<AssetCursor, InvalidCursor> {
        let (created_at_us, id) = parse_time_id_cursor(text).ok_or(InvalidCursor)?;
        Ok(AssetCursor { created_at_us, id })
    }
}

/// One page of assets, newest first.
#[derive(Debug)]
pub(crate) struct AssetPage {
    pub(crate) assets: Vec<Asset>,
    pub(crate) next: Option<AssetCursor>,
}

/// What cancelling an asset found.
#[derive(Debug)]
pub(crate) enum CancelOutcome {
    /// Cancelled now, or already was: the asset as it is.
    Cancelled(Box<Asset>),
    /// Too late: it is ready or failed.
    Finished(AssetState),
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_issue() {
        let cursor = AssetCursor {
            created_at_us: 1_700_000_000_123_456,
            id: "0123456789abcdef".to_string(),
        };
        assert_eq!(cursor.to_string().parse::<AssetCursor>().unwrap(), cursor);
        assert!("12-short".parse::<AssetCursor>().is_err());
        assert_eq!("ready".parse::<AssetState>(), Ok(AssetState::Ready));
        assert!("deleted".parse::<AssetState>().is_err());
    }
}
