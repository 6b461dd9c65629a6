//! The packager: `StreamEvent`s of one live stream in, CMAF init segments and LL-HLS parts
//! out, per rendition. Sans-IO: the caller passes the wall clock in and drains outputs.

use bytes::Bytes;

use crate::push::{PartMeta, RenditionDescriptor};
use crate::stream::StreamEvent;

/// Durations are in 90 kHz ticks (the `Frame` timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagerConfig {
    /// PART-TARGET; every part is ≤ it. Default 200 ms.
    pub part_target: u32,
    /// Segment target; segments are cut at the first keyframe at or after it. Default 2 s.
    pub segment_target: u32,
    /// MSN of the first segment (a transcoder taking over continues the numbering).
    pub first_msn: u64,
}

/// What the packager hands downstream, in order: a rendition's descriptor before its init,
/// its init before its first part.
#[derive(Debug, Clone, PartialEq)]
pub enum PackagerOutput {
    Rendition(RenditionDescriptor),
    Init {
        rendition: String,
        version: u32,
        data: Bytes,
    },
    Part {
        rendition: String,
        meta: PartMeta,
        data: Bytes,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackagerError {
    #[error("frame for {track:?} before its codec parameters")]
    NoTrackParams { track: crate::frame::TrackKind },
    #[error("cmaf: {0}")]
    Cmaf(#[from] crate::cmaf::CmafError),
}

/// One per live stream; all renditions of the stream.
pub struct StreamPackager {}

impl StreamPackager {
    pub fn new(config: PackagerConfig) -> Self {
        let _ = config;
        todo!()
    }

    /// Feeds one event of the current publisher session. `now_ms` is the wall clock at
    /// ingest of the event (ms since the Unix epoch).
    pub fn handle_event(&mut self, event: StreamEvent, now_ms: i64) -> Result<(), PackagerError> {
        let _ = (event, now_ms);
        todo!()
    }

    /// The next output, or `None` until more input arrives.
    pub fn poll_output(&mut self) -> Option<PackagerOutput> {
        todo!()
    }
}
