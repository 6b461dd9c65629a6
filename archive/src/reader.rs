//! Reading a rendition's index back: the head, then only the chunks that cover a time
//! range, never a listing. The first piece of what start-over, VOD playback and VOD jobs
//! read; they build on [`read_range`], [`read_renditions`] and [`archived_span`].

use floodlight_media::push::RenditionDescriptor;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::index::{
    Covered, IndexChunk, IndexError, IndexHead, MAX_CHUNK_BYTES, MAX_HEAD_BYTES, SegmentRecord,
    covering,
};
use crate::layout::{EventId, RenditionKey, RenditionName};

/// Largest descriptor object a reader accepts (a descriptor is about 300 bytes).
const MAX_DESCRIPTOR_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("{rendition}: nothing archived (no index head)")]
    NotArchived { rendition: String },
    #[error("{object}: {source}")]
    Store {
        object: String,
        source: object_store::Error,
    },
    /// A corrupt or unreadable index object; the error names it.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The index head of a rendition.
pub async fn read_head(
    store: &dyn ObjectStore,
    key: &RenditionKey,
) -> Result<IndexHead, ReadError> {
    let path = key.index_head();
    match read_object(store, &path, MAX_HEAD_BYTES).await? {
        Some(bytes) => Ok(IndexHead::decode(path.as_ref(), &bytes)?),
        None => Err(ReadError::NotArchived {
            rendition: key.to_string(),
        }),
    }
}

/// Chunk `number` of a rendition's index; a chunk the head lists but the store lacks is
/// an error naming it.
pub async fn read_chunk(
    store: &dyn ObjectStore,
    key: &RenditionKey,
    number: u64,
) -> Result<IndexChunk, ReadError> {
    let path = key.index_chunk(number);
    match read_object(store, &path, MAX_CHUNK_BYTES).await? {
        Some(bytes) => Ok(IndexChunk::decode(path.as_ref(), number, &bytes)?),
        None => Err(ReadError::Store {
            object: path.to_string(),
            source: object_store::Error::NotFound {
                path: path.to_string(),
                source: "listed in the index head".into(),
            },
        }),
    }
}

/// The archived segments of `[start_ms, end_ms)` (PDT, Unix milliseconds), with the
/// discontinuities and init changes a playlist needs (see [`covering`]): one head read and
/// a chunk read per ~8.5 minutes of range.
pub async fn read_range(
    store: &dyn ObjectStore,
    key: &RenditionKey,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Covered>, ReadError> {
    let head = read_head(store, key).await?;
    let mut records = Vec::new();
    for number in head.chunks_for_range(start_ms, end_ms) {
        records.extend_from_slice(read_chunk(store, key, number).await?.records());
    }
    Ok(covering(&records, start_ms, end_ms))
}

/// An object's bytes, `None` when absent; larger than `max` is refused before reading.
pub(crate) async fn read_object(
    store: &dyn ObjectStore,
    path: &Path,
    max: usize,
) -> Result<Option<bytes::Bytes>, ReadError> {
    let store_error = |source| ReadError::Store {
        object: path.to_string(),
        source,
    };
    let result = match store.get(path).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(store_error(error)),
    };
    if result.meta.size > max as u64 {
        return Err(IndexError::TooLarge {
            object: path.to_string(),
            bytes: usize::try_from(result.meta.size).unwrap_or(usize::MAX),
            max,
        }
        .into());
    }
    result.bytes().await.map(Some).map_err(store_error)
}

/// One archived rendition of an event: its descriptor as last pushed.
pub async fn read_descriptor(
    store: &dyn ObjectStore,
    key: &RenditionKey,
) -> Result<Option<RenditionDescriptor>, ReadError> {
    let path = key.descriptor();
    let Some(bytes) = read_object(store, &path, MAX_DESCRIPTOR_BYTES).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        IndexError::Corrupt {
            object: path.to_string(),
            line: 1,
            reason: error.to_string(),
        }
        .into()
    })
}

/// Every rendition archived for an event, with its descriptor, in name order: one listing
/// of the event's `renditions/` folder (a handful of names), then a read per rendition. A
/// rendition without a descriptor (archived before descriptors were) is left out: no
/// playlist could say what it is.
pub async fn read_renditions(
    store: &dyn ObjectStore,
    event_id: &EventId,
) -> Result<Vec<(RenditionKey, RenditionDescriptor)>, ReadError> {
    let prefix = RenditionKey::renditions_prefix(event_id);
    let listing = store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|source| ReadError::Store {
            object: prefix.to_string(),
            source,
        })?;
    let mut renditions = Vec::new();
    for folder in listing.common_prefixes {
        let Some(name) = folder.filename() else {
            continue;
        };
        let Ok(name) = RenditionName::new(name) else {
            continue;
        };
        let key = RenditionKey::new(event_id.clone(), name);
        if let Some(descriptor) = read_descriptor(store, &key).await? {
            renditions.push((key, descriptor));
        }
    }
    renditions.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(renditions)
}

/// What the archive holds of a rendition, `[first segment's PDT, last segment's end)` in
/// Unix ms; `None` when nothing is. Reads the head and its first and last chunks.
pub async fn archived_span(
    store: &dyn ObjectStore,
    key: &RenditionKey,
) -> Result<Option<(i64, i64)>, ReadError> {
    let head = match read_head(store, key).await {
        Ok(head) => head,
        Err(ReadError::NotArchived { .. }) => return Ok(None),
        Err(error) => return Err(error),
    };
    let (Some(first), Some(last)) = (head.chunks().next(), head.chunks().last()) else {
        return Ok(None);
    };
    let last_chunk = read_chunk(store, key, last.chunk).await?;
    let end = last_chunk
        .records()
        .iter()
        .filter(|r| !r.gap)
        .map(SegmentRecord::end_ms)
        .max();
    let first_chunk = if first.chunk == last.chunk {
        last_chunk
    } else {
        read_chunk(store, key, first.chunk).await?
    };
    let start = first_chunk
        .records()
        .iter()
        .find(|r| !r.gap)
        .map(|r| r.program_date_time_ms);
    Ok(start.zip(end))
}

/// What the archive holds of an event across its renditions: from the earliest start to
/// the latest end; `None` when nothing is archived.
pub async fn archived_event_span(
    store: &dyn ObjectStore,
    event_id: &EventId,
) -> Result<Option<(i64, i64)>, ReadError> {
    let mut span: Option<(i64, i64)> = None;
    for (key, _) in read_renditions(store, event_id).await? {
        if let Some((start, end)) = archived_span(store, &key).await? {
            span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
        }
    }
    Ok(span)
}
