//! VOD assets in the object store: what an asset is made of, and where its own objects
//! live. An asset is a manifest (`v1/assets/{asset_id}/manifest.json`) that lists, per
//! rendition, the segments to play in order. A segment is either an event's archived
//! segment, referenced by its key and never copied (a `segment` asset of hours of video is
//! ready in seconds), or an object of the asset's own (the re-rendered first and last GOPs
//! of a `frame` asset). VOD playback and retention read manifests; VOD jobs write them.
//!
//! ```text
//! v1/assets/{asset_id}/manifest.json
//! v1/assets/{asset_id}/poster.jpg
//! v1/assets/{asset_id}/renditions/{rendition}/init/{n}.mp4
//! v1/assets/{asset_id}/renditions/{rendition}/segments/{n}.m4s
//! ```

mod build;

pub use build::{delete_asset, read_manifest, segment_asset, write_manifest};

use floodlight_media::push::RenditionDescriptor;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::index::IndexError;
use crate::layout::{EventId, LAYOUT_VERSION, LayoutError, RenditionName, check_component};

/// Largest manifest a reader accepts: a 24-hour asset of 6 renditions lists about 260 000
/// segments of ~250 bytes each.
pub const MAX_MANIFEST_BYTES: usize = 96 * 1024 * 1024;

/// The version every manifest carries; a reader refuses any other.
pub const MANIFEST_FORMAT_VERSION: u64 = 1;

const MANIFEST_FORMAT: &str = "floodlight-asset-manifest";

/// An asset's id, checked to be a safe key component (as [`EventId`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetId(String);

impl AssetId {
    pub fn new(id: impl Into<String>) -> Result<AssetId, LayoutError> {
        let id = id.into();
        check_component("asset id", &id)?;
        Ok(AssetId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `v1/assets/{asset_id}/`: everything the asset owns (what deleting it removes).
    pub fn prefix(&self) -> Path {
        Path::from(format!("{LAYOUT_VERSION}/assets/{}", self.0))
    }

    /// `v1/assets/{asset_id}/manifest.json`
    pub fn manifest(&self) -> Path {
        Path::from(format!("{LAYOUT_VERSION}/assets/{}/manifest.json", self.0))
    }

    /// `v1/assets/{asset_id}/poster.jpg`
    pub fn poster(&self) -> Path {
        Path::from(format!("{LAYOUT_VERSION}/assets/{}/poster.jpg", self.0))
    }

    /// `v1/assets/{asset_id}/renditions/{rendition}/init/{n}.mp4`: an init segment of the
    /// asset's own (a re-rendered GOP's encoder parameters).
    pub fn init(&self, rendition: &RenditionName, n: u32) -> Path {
        Path::from(format!(
            "{LAYOUT_VERSION}/assets/{}/renditions/{rendition}/init/{n}.mp4",
            self.0
        ))
    }

    /// `v1/assets/{asset_id}/renditions/{rendition}/segments/{n}.m4s`: a segment of the
    /// asset's own (a re-rendered or trimmed boundary segment).
    pub fn segment(&self, rendition: &RenditionName, n: u64) -> Path {
        Path::from(format!(
            "{LAYOUT_VERSION}/assets/{}/renditions/{rendition}/segments/{n}.m4s",
            self.0
        ))
    }
}

impl std::fmt::Display for AssetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AssetId {
    type Error = LayoutError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AssetId::new(value)
    }
}

impl From<AssetId> for String {
    fn from(id: AssetId) -> String {
        id.0
    }
}

/// How exactly an asset follows the range asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// The archived segments that overlap the range, referenced as they are.
    Segment,
    /// The exact frames of the range: the GOPs the range cuts are re-rendered.
    Frame,
}

/// Where an asset comes from: a range of an event, in wall-clock (PROGRAM-DATE-TIME) time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetSource {
    pub event_id: EventId,
    /// The range asked for, `[start_ms, end_ms)`, Unix milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One segment an asset plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetSegment {
    /// The object holding the segment: an event's `segments/{msn}.m4s` or the asset's own.
    pub object: String,
    /// The init segment object it decodes with.
    pub init: String,
    /// Duration on the 90 kHz media timeline.
    pub duration_90k: u64,
    /// PROGRAM-DATE-TIME of its first frame, Unix milliseconds.
    pub program_date_time_ms: i64,
    /// Size of `object`; 0 for a gap.
    pub bytes: u64,
    /// Bytes from the start of `object` to the end of the first sync sample's part
    /// (what an I-frame playlist's EXT-X-BYTERANGE addresses); `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iframe_bytes: Option<u64>,
    /// EXT-X-DISCONTINUITY before this segment.
    pub discontinuity: bool,
    /// No media (EXT-X-GAP): the archive lost this segment; it keeps the timeline whole.
    #[serde(default)]
    pub gap: bool,
}

impl AssetSegment {
    pub fn duration_secs(&self) -> f64 {
        self.duration_90k as f64 / f64::from(floodlight_media::TIMESCALE)
    }
}

/// One rendition of an asset: how it is described in the master playlist, and its
/// segments in play order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetRendition {
    pub descriptor: RenditionDescriptor,
    pub segments: Vec<AssetSegment>,
}

impl AssetRendition {
    /// The sum of the segments' durations, 90 kHz ticks.
    pub fn duration_90k(&self) -> u64 {
        self.segments.iter().map(|s| s.duration_90k).sum()
    }

    pub fn name(&self) -> &str {
        &self.descriptor.name
    }
}

/// `v1/assets/{asset_id}/manifest.json`: everything VOD playback needs to serve an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetManifest {
    pub asset_id: AssetId,
    pub source: AssetSource,
    pub precision: Precision,
    pub renditions: Vec<AssetRendition>,
    /// The poster object (a JPEG of the first picture), when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<String>,
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    format: &'static str,
    version: u64,
    #[serde(flatten)]
    manifest: &'a AssetManifest,
}

/// What a reader checks before the rest: a manifest of another version may have other
/// fields.
#[derive(Deserialize)]
struct ManifestHeader {
    format: String,
    version: u64,
}

impl AssetManifest {
    /// The asset's duration in seconds: its longest rendition.
    pub fn duration_secs(&self) -> f64 {
        let ticks = self
            .renditions
            .iter()
            .map(AssetRendition::duration_90k)
            .max()
            .unwrap_or(0);
        ticks as f64 / f64::from(floodlight_media::TIMESCALE)
    }

    pub fn rendition(&self, name: &str) -> Option<&AssetRendition> {
        self.renditions.iter().find(|r| r.name() == name)
    }

    /// One JSON object with a format name and version.
    pub fn encode(&self) -> Vec<u8> {
        let out = ManifestOut {
            format: MANIFEST_FORMAT,
            version: MANIFEST_FORMAT_VERSION,
            manifest: self,
        };
        let mut bytes = serde_json::to_vec(&out).expect("manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Decodes a stored manifest; the error names `object`.
    pub fn decode(object: &str, bytes: &[u8]) -> Result<AssetManifest, IndexError> {
        let corrupt = |reason: String| IndexError::Corrupt {
            object: object.to_string(),
            line: 1,
            reason,
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(IndexError::TooLarge {
                object: object.to_string(),
                bytes: bytes.len(),
                max: MAX_MANIFEST_BYTES,
            });
        }
        let header: ManifestHeader =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.format != MANIFEST_FORMAT {
            return Err(corrupt(format!(
                "format {:?} is not {MANIFEST_FORMAT:?}",
                header.format
            )));
        }
        if header.version != MANIFEST_FORMAT_VERSION {
            return Err(IndexError::UnsupportedVersion {
                object: object.to_string(),
                found: header.version,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
