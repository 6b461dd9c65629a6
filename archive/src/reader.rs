//! Reading a rendition's index back: the head, then only the chunks that cover a time
//! range, never a listing. The first piece of what start-over, VOD playback and VOD jobs
//! read; they build on [`read_range`].

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::index::{
    Covered, IndexChunk, IndexError, IndexHead, MAX_CHUNK_BYTES, MAX_HEAD_BYTES, covering,
};
use crate::layout::RenditionKey;

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
async fn read_object(
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
