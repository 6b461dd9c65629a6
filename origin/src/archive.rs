//! The origin's side of the archive (`floodlight-archive`, `docs/archive.md`): every init
//! version pushed and every segment completed goes to the [`ArchiveWriter`], whose
//! `try_archive` never waits. A full queue or a failing store is the writer's business
//! (counted, logged, a missing range in the status): the push answers as it would without
//! an archive.

use bytes::Bytes;
use floodlight_archive::{
    ArchiveJob, ArchiveWriter, Descriptor, EventArchiveStatus, EventId, InitVersion, RenditionKey,
    RenditionName, Segment, SegmentRecord, WriterError,
};
use floodlight_media::push::RenditionDescriptor;
use tracing::{debug, warn};

use crate::window::CompletedSegment;

/// The media timeline's clock rate: index records count durations in 90 kHz ticks.
const TIMESCALE: f64 = 90_000.0;

/// One stream's way into the archive.
pub(crate) struct StreamArchive {
    writer: ArchiveWriter,
    event_id: EventId,
}

impl StreamArchive {
    /// `None`, with a warning, for an event id the archive's keys cannot hold (the push API
    /// takes up to 128 characters, an object key component 64): it is served, not archived.
    pub(crate) fn new(writer: &ArchiveWriter, event_id: &str) -> Option<StreamArchive> {
        match EventId::new(event_id) {
            Ok(event_id) => Some(StreamArchive {
                writer: writer.clone(),
                event_id,
            }),
            Err(error) => {
                warn!(%error, "this stream is not archived");
                None
            }
        }
    }

    /// A rendition was declared or its descriptor changed.
    pub(crate) fn descriptor(&self, descriptor: RenditionDescriptor) {
        let Some(rendition) = self.key(&descriptor.name) else {
            return;
        };
        hand_over(self.writer.try_archive(ArchiveJob::Descriptor(Descriptor {
            rendition,
            descriptor,
        })));
    }

    /// A new init version was stored.
    pub(crate) fn init(&self, rendition: &str, version: u32, bytes: Bytes) {
        let Some(rendition) = self.key(rendition) else {
            return;
        };
        hand_over(self.writer.try_archive(ArchiveJob::Init(InitVersion {
            rendition,
            version,
            bytes,
        })));
    }

    /// Segments that completed, as `StreamCore::take_completed` gives them.
    pub(crate) fn segments(&self, completed: Vec<(String, CompletedSegment)>) {
        for (rendition, segment) in completed {
            let Some(rendition) = self.key(&rendition) else {
                continue;
            };
            // The index finds segments by time: one without a date cannot be indexed.
            let Some(program_date_time_ms) = segment.program_date_time_ms else {
                debug!(%rendition, msn = segment.msn, "segment without PROGRAM-DATE-TIME not archived");
                continue;
            };
            let record = SegmentRecord {
                msn: segment.msn,
                duration_90k: (segment.duration * TIMESCALE).round() as u64,
                program_date_time_ms,
                // Filled in by the writer from the bytes.
                bytes: 0,
                iframe_bytes: segment.iframe_bytes,
                init_version: segment.init_version,
                discontinuity: segment.discontinuity,
                gap: false,
            };
            hand_over(self.writer.try_archive(ArchiveJob::Segment(Segment {
                rendition,
                record,
                bytes: segment.bytes,
            })));
        }
    }

    pub(crate) fn status(&self) -> EventArchiveStatus {
        self.writer.event_status(&self.event_id)
    }

    /// The stream left the origin: the writer forgets its status once nothing is queued.
    pub(crate) fn forget(&self) {
        self.writer.forget_event(&self.event_id);
    }

    fn key(&self, rendition: &str) -> Option<RenditionKey> {
        // The push API accepts only names the layout accepts too (1-64 of [A-Za-z0-9_-]).
        RenditionName::new(rendition)
            .ok()
            .map(|name| RenditionKey::new(self.event_id.clone(), name))
    }
}

/// A refused job is already counted, logged (rolled up) and reported by the writer when
/// its queue is full; anything else is logged here.
fn hand_over(result: Result<(), WriterError>) {
    match result {
        Ok(())
        | Err(
            WriterError::QueueFull { .. }
            | WriterError::InitQueueFull { .. }
            | WriterError::DescriptorQueueFull { .. },
        ) => {}
        Err(error) => warn!(%error, "archive refused the job"),
    }
}
