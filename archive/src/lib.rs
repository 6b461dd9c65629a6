//! Floodlight's archive: every complete segment and init version of a live event, kept in
//! an object store (a local directory for `floodlight up`, S3-compatible when
//! distributed), with a per-rendition index that finds any time range of a multi-hour
//! event without listing objects. DVR start-over, VOD playback and VOD jobs read it.
//!
//! - [`layout`]: every object key, versioned (`v1/…`); the contract in `docs/archive.md`.
//! - [`index`]: the sans-IO segment index (records, chunks, head, range lookup).
//! - [`store`]: `[archive]` config and the `Arc<dyn ObjectStore>` it opens.
//! - [`writer`]: [`ArchiveWriter`], the bounded, never-blocking archive writer.
//! - [`reader`]: reading the index back by time range.
//! - [`retention`]: deleting archived media no asset and no start-over window needs.
//! - [`asset`]: VOD assets: the manifest of what an asset plays, and its own objects.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod asset;
mod config_error;
pub mod index;
pub mod layout;
mod metrics;
pub mod reader;
pub mod retention;
pub mod store;
pub mod writer;

pub use asset::{
    AssetId, AssetManifest, AssetRendition, AssetSegment, AssetSource, Precision, delete_asset,
    read_manifest, segment_asset, write_manifest,
};
pub use config_error::ConfigError;
pub use index::{
    CHUNK_RECORDS, Covered, IndexChunk, IndexError, IndexHead, SegmentRecord, covering,
};
pub use layout::{EventId, LayoutError, ObjectKind, RenditionKey, RenditionName};
/// The store trait every reader and writer here takes, for callers that hold one.
pub use object_store::ObjectStore;
pub use reader::{
    ReadError, archived_event_span, archived_span, read_descriptor, read_range, read_renditions,
};
pub use retention::{RetentionConfig, SweepReport, sweep};
pub use store::{ArchiveConfig, S3Config, StoreError, StoreKind, open_store};
pub use writer::{
    ArchiveJob, ArchiveWriter, Descriptor, EventArchiveStatus, InitVersion, MissingRange,
    MissingReason, RenditionArchiveStatus, Segment, WriterConfig, WriterError,
};
