//! The segment index of one rendition, sans-IO: one [`SegmentRecord`] per archived segment,
//! grouped by MSN into chunks of [`CHUNK_RECORDS`], and a small [`IndexHead`] that says
//! where each chunk starts in time. A reader of a multi-hour event reads the head, picks
//! the chunks that cover a time range ([`IndexHead::chunks_for_range`]), reads those and
//! selects the records ([`covering`]): two or three small objects, never a listing.
//!
//! Chunk `n` holds MSNs `n × CHUNK_RECORDS ..< (n + 1) × CHUNK_RECORDS`, so the chunk of an
//! MSN is computed, not looked up, and two writers that start at different MSNs still
//! agree on every chunk's key. Encodings are JSON lines (chunks) and one JSON line (head),
//! each with a format name and version; decoding never panics and names the object and
//! line at fault. See `docs/archive.md` for the contract.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// MSNs per index chunk: 256 two-second segments are about 8.5 minutes, a chunk is about
/// 35 KB, and a 24-hour rendition has about 170 chunks listed in its head.
pub const CHUNK_RECORDS: u64 = 256;

/// The version every index object carries; a reader refuses any other.
pub const INDEX_FORMAT_VERSION: u64 = 1;

/// Largest chunk object a reader accepts: a full chunk is about 35 KB.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Largest head object a reader accepts: a year of 2 s segments lists about 62 000
/// chunks, 4.5 MB.
pub const MAX_HEAD_BYTES: usize = 8 * 1024 * 1024;

const CHUNK_FORMAT: &str = "floodlight-archive-index-chunk";
const HEAD_FORMAT: &str = "floodlight-archive-index-head";

/// Ticks of the 90 kHz media timeline per millisecond.
const TICKS_PER_MS: u64 = floodlight_media::TIMESCALE as u64 / 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexError {
    #[error("{object}: line {line}: {reason}")]
    Corrupt {
        object: String,
        line: usize,
        reason: String,
    },
    #[error(
        "{object}: index format version {found} is not readable here (this build reads version {INDEX_FORMAT_VERSION})"
    )]
    UnsupportedVersion { object: String, found: u64 },
    #[error("{object}: {bytes} bytes, over the {max} an index object may have")]
    TooLarge {
        object: String,
        bytes: usize,
        max: usize,
    },
    #[error("segment record MSN {msn}: {reason}")]
    InvalidRecord { msn: u64, reason: String },
}

/// One archived segment, as the index lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRecord {
    /// Media sequence number, assigned by the packager (the same on every replica).
    pub msn: u64,
    /// Duration on the 90 kHz media timeline: exact for every video frame rate and for
    /// 48 kHz AAC, where milliseconds would drift over hours.
    pub duration_90k: u64,
    /// EXT-X-PROGRAM-DATE-TIME of the segment's first frame, Unix milliseconds.
    pub program_date_time_ms: i64,
    /// Size of the segment object; 0 for a gap.
    pub bytes: u64,
    /// Bytes from the segment's start to the end of its first sync sample (the
    /// packager's `sync_sample_bytes`; else its first part, when that is independent):
    /// what an I-frame playlist addresses. Absent in records written before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iframe_bytes: Option<u64>,
    /// The init segment version the segment decodes with.
    pub init_version: u32,
    /// The segment follows a discontinuity (a publisher reconnect, a transcoder takeover).
    pub discontinuity: bool,
    /// No media was archived for this MSN (the writer had to drop it); players get
    /// EXT-X-GAP (RFC 8216bis §4.4.4.7) so the timeline keeps its length.
    pub gap: bool,
}

impl SegmentRecord {
    /// The index chunk this record belongs in.
    pub fn chunk(&self) -> u64 {
        chunk_of(self.msn)
    }

    /// Where the segment ends in wall-clock time (PDT + duration), Unix milliseconds.
    pub fn end_ms(&self) -> i64 {
        let duration_ms = self.duration_90k.div_ceil(TICKS_PER_MS);
        self.program_date_time_ms
            .saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX))
    }

    /// The duration in seconds (EXTINF).
    pub fn duration_secs(&self) -> f64 {
        self.duration_90k as f64 / f64::from(floodlight_media::TIMESCALE)
    }

    /// The same MSN and timing, marked as a gap: what the index keeps for a segment whose
    /// media could not be archived.
    pub fn into_gap(self) -> SegmentRecord {
        SegmentRecord {
            bytes: 0,
            iframe_bytes: None,
            gap: true,
            ..self
        }
    }

    /// A record the index can hold: a duration, and bytes exactly when it is no gap.
    pub fn validate(&self) -> Result<(), IndexError> {
        let invalid = |reason: &str| {
            Err(IndexError::InvalidRecord {
                msn: self.msn,
                reason: reason.to_string(),
            })
        };
        if self.duration_90k == 0 {
            return invalid("duration_90k must be positive");
        }
        match (self.gap, self.bytes) {
            (true, 0) | (false, 1..) => Ok(()),
            (true, _) => invalid("a gap has no bytes"),
            (false, 0) => invalid("a segment that is no gap has bytes"),
        }
    }
}

/// The chunk number of an MSN.
pub fn chunk_of(msn: u64) -> u64 {
    msn / CHUNK_RECORDS
}

/// The MSNs chunk `chunk` holds.
pub fn chunk_msns(chunk: u64) -> Range<u64> {
    let start = chunk.saturating_mul(CHUNK_RECORDS);
    start..start.saturating_add(CHUNK_RECORDS)
}

/// What [`IndexChunk::insert`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The MSN was new to the chunk.
    Added,
    /// A gap record was replaced by the segment's real record (another writer archived
    /// what this one had to drop).
    FilledGap,
    /// The chunk already had this record, or a real record where a gap was offered.
    Unchanged,
    /// The chunk holds a different real record for the MSN; it is kept (the first writer
    /// wins, as for the segment object). Only a numbering restart makes this happen.
    Conflict { kept: SegmentRecord },
}

/// One chunk of a rendition's index: records of [`chunk_msns`] sorted by MSN, one per MSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexChunk {
    number: u64,
    records: Vec<SegmentRecord>,
}

#[derive(Serialize, Deserialize)]
struct ChunkHeader {
    format: String,
    version: u64,
    chunk: u64,
}

impl IndexChunk {
    pub fn new(number: u64) -> IndexChunk {
        IndexChunk {
            number,
            records: Vec::new(),
        }
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn records(&self) -> &[SegmentRecord] {
        &self.records
    }

    /// Adds a record, merging by MSN: a real record beats a gap, and between two real
    /// records the one already there stays. Records are facts about deterministic
    /// segments, so the order writers insert them in does not change the result.
    pub fn insert(&mut self, record: SegmentRecord) -> Result<Insert, IndexError> {
        record.validate()?;
        if chunk_of(record.msn) != self.number {
            return Err(IndexError::InvalidRecord {
                msn: record.msn,
                reason: format!(
                    "belongs in index chunk {}, not {}",
                    record.chunk(),
                    self.number
                ),
            });
        }
        match self.records.binary_search_by_key(&record.msn, |r| r.msn) {
            Err(at) => {
                self.records.insert(at, record);
                Ok(Insert::Added)
            }
            Ok(at) => {
                let existing = self.records[at];
                Ok(if existing == record || record.gap {
                    Insert::Unchanged
                } else if existing.gap {
                    self.records[at] = record;
                    Insert::FilledGap
                } else {
                    Insert::Conflict { kept: existing }
                })
            }
        }
    }

    /// Merges `other` (the same chunk as another writer stored it) into this one. Returns
    /// how many MSNs held different real records (kept from `other`, the stored one).
    pub fn merge_stored(&mut self, stored: &IndexChunk) -> usize {
        let mut merged = stored.clone();
        let mut conflicts = 0;
        for record in &self.records {
            if let Ok(Insert::Conflict { .. }) = merged.insert(*record) {
                conflicts += 1;
            }
        }
        *self = merged;
        conflicts
    }

    /// JSON lines: a header line, then one record per line, each line ending in `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.records.len() * 160);
        let header = ChunkHeader {
            format: CHUNK_FORMAT.to_string(),
            version: INDEX_FORMAT_VERSION,
            chunk: self.number,
        };
        // Serializing these plain structs to a Vec cannot fail.
        serde_json::to_writer(&mut out, &header).expect("header serializes");
        out.push(b'\n');
        for record in &self.records {
            serde_json::to_writer(&mut out, record).expect("record serializes");
            out.push(b'\n');
        }
        out
    }

    /// Decodes chunk `number` read from `object` (the key, for error messages). Anything
    /// but a well-formed chunk of this number is an error naming the line at fault.
    pub fn decode(object: &str, number: u64, bytes: &[u8]) -> Result<IndexChunk, IndexError> {
        let corrupt = |line: usize, reason: String| IndexError::Corrupt {
            object: object.to_string(),
            line,
            reason,
        };
        let lines = split_lines(object, bytes, MAX_CHUNK_BYTES)?;
        let Some(header) = lines.first() else {
            return Err(corrupt(1, "empty object: no header line".into()));
        };
        let header: ChunkHeader =
            serde_json::from_str(header).map_err(|e| corrupt(1, format!("header: {e}")))?;
        if header.format != CHUNK_FORMAT {
            return Err(corrupt(
                1,
                format!("format {:?} is not {CHUNK_FORMAT:?}", header.format),
            ));
        }
        if header.version != INDEX_FORMAT_VERSION {
            return Err(IndexError::UnsupportedVersion {
                object: object.to_string(),
                found: header.version,
            });
        }
        if header.chunk != number {
            return Err(corrupt(
                1,
                format!("header says chunk {}, the key says {number}", header.chunk),
            ));
        }
        let mut chunk = IndexChunk::new(number);
        for (i, text) in lines.iter().enumerate().skip(1) {
            let line = i + 1;
            let record: SegmentRecord =
                serde_json::from_str(text).map_err(|e| corrupt(line, e.to_string()))?;
            record
                .validate()
                .map_err(|e| corrupt(line, e.to_string()))?;
            if chunk_of(record.msn) != number {
                return Err(corrupt(
                    line,
                    format!("MSN {} does not belong in chunk {number}", record.msn),
                ));
            }
            if let Some(last) = chunk.records.last()
                && last.msn >= record.msn
            {
                return Err(corrupt(
                    line,
                    format!(
                        "MSN {} after MSN {}: MSNs must increase",
                        record.msn, last.msn
                    ),
                ));
            }
            chunk.records.push(record);
        }
        Ok(chunk)
    }
}

/// Splits a JSON-lines object into its lines, checking size, UTF-8, that no line is
/// empty and that the object ends with a newline (a torn write does not).
fn split_lines<'a>(object: &str, bytes: &'a [u8], max: usize) -> Result<Vec<&'a str>, IndexError> {
    if bytes.len() > max {
        return Err(IndexError::TooLarge {
            object: object.to_string(),
            bytes: bytes.len(),
            max,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        IndexError::Corrupt {
            object: object.to_string(),
            line: 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count(),
            reason: format!("not UTF-8 at byte offset {offset}"),
        }
    })?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err(IndexError::Corrupt {
            object: object.to_string(),
            line: 1 + text.matches('\n').count(),
            reason: "truncated: the last line does not end with a newline".into(),
        });
    };
    let lines: Vec<&str> = body.split('\n').collect();
    if let Some(at) = lines.iter().position(|l| l.trim().is_empty()) {
        return Err(IndexError::Corrupt {
            object: object.to_string(),
            line: at + 1,
            reason: "empty line".into(),
        });
    }
    Ok(lines)
}

/// Where one chunk starts: its lowest MSN and that segment's PDT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkStart {
    pub chunk: u64,
    pub first_msn: u64,
    pub first_program_date_time_ms: i64,
}

/// The head of a rendition's index: every chunk that exists and where it starts. It
/// changes once per chunk (about every 8.5 minutes), so rewriting it is cheap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexHead {
    chunks: BTreeMap<u64, ChunkStart>,
}

#[derive(Serialize, Deserialize)]
struct HeadObject {
    format: String,
    version: u64,
    chunk_records: u64,
    chunks: Vec<ChunkStart>,
}

impl IndexHead {
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkStart> {
        self.chunks.values()
    }

    /// Notes a record: its chunk is listed, starting at the lowest MSN seen. Returns
    /// whether the head changed (and so needs writing).
    pub fn note(&mut self, record: &SegmentRecord) -> bool {
        let start = ChunkStart {
            chunk: record.chunk(),
            first_msn: record.msn,
            first_program_date_time_ms: record.program_date_time_ms,
        };
        self.note_start(start)
    }

    fn note_start(&mut self, start: ChunkStart) -> bool {
        match self.chunks.get(&start.chunk) {
            Some(known) if known.first_msn <= start.first_msn => false,
            _ => {
                self.chunks.insert(start.chunk, start);
                true
            }
        }
    }

    /// Merges the head another writer stored into this one: the union of their chunks.
    pub fn merge_stored(&mut self, stored: &IndexHead) {
        let mut merged = stored.clone();
        for start in self.chunks.values() {
            merged.note_start(*start);
        }
        *self = merged;
    }

    /// The chunks that may hold segments of `[start_ms, end_ms)`: from the last chunk
    /// starting at or before `start_ms` (or the first chunk) to the last one starting
    /// before `end_ms`. PDTs grow with MSNs, so the records of the range are in these.
    pub fn chunks_for_range(&self, start_ms: i64, end_ms: i64) -> Vec<u64> {
        let starts: Vec<&ChunkStart> = self.chunks.values().collect();
        let Some(last) = starts
            .iter()
            .rposition(|c| c.first_program_date_time_ms < end_ms)
        else {
            return Vec::new();
        };
        let first = starts[..=last]
            .iter()
            .rposition(|c| c.first_program_date_time_ms <= start_ms)
            .unwrap_or(0);
        starts[first..=last].iter().map(|c| c.chunk).collect()
    }

    /// One JSON object on one line.
    pub fn encode(&self) -> Vec<u8> {
        let head = HeadObject {
            format: HEAD_FORMAT.to_string(),
            version: INDEX_FORMAT_VERSION,
            chunk_records: CHUNK_RECORDS,
            chunks: self.chunks.values().copied().collect(),
        };
        let mut out = serde_json::to_vec(&head).expect("head serializes");
        out.push(b'\n');
        out
    }

    pub fn decode(object: &str, bytes: &[u8]) -> Result<IndexHead, IndexError> {
        let corrupt = |reason: String| IndexError::Corrupt {
            object: object.to_string(),
            line: 1,
            reason,
        };
        let lines = split_lines(object, bytes, MAX_HEAD_BYTES)?;
        if lines.len() != 1 {
            return Err(IndexError::Corrupt {
                object: object.to_string(),
                line: 2,
                reason: "a head is one line".into(),
            });
        }
        let head: HeadObject =
            serde_json::from_str(lines[0]).map_err(|e| corrupt(e.to_string()))?;
        if head.format != HEAD_FORMAT {
            return Err(corrupt(format!(
                "format {:?} is not {HEAD_FORMAT:?}",
                head.format
            )));
        }
        if head.version != INDEX_FORMAT_VERSION {
            return Err(IndexError::UnsupportedVersion {
                object: object.to_string(),
                found: head.version,
            });
        }
        if head.chunk_records != CHUNK_RECORDS {
            return Err(corrupt(format!(
                "chunk_records {} differs from this layout's {CHUNK_RECORDS}",
                head.chunk_records
            )));
        }
        let mut chunks = BTreeMap::new();
        for start in head.chunks {
            if chunk_of(start.first_msn) != start.chunk {
                return Err(corrupt(format!(
                    "chunk {} cannot start at MSN {}",
                    start.chunk, start.first_msn
                )));
            }
            if chunks
                .keys()
                .next_back()
                .is_some_and(|&last| last >= start.chunk)
            {
                return Err(corrupt(format!(
                    "chunk {} is out of order: chunks must increase",
                    start.chunk
                )));
            }
            chunks.insert(start.chunk, start);
        }
        Ok(IndexHead { chunks })
    }
}

/// One record of a time range, with what a playlist needs before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    pub record: SegmentRecord,
    /// EXT-X-DISCONTINUITY before this segment: the record says so, MSNs are missing
    /// before it (no record at all), or a gap run before it hid a discontinuity.
    pub discontinuity: bool,
    /// EXT-X-MAP before this segment: the first segment, or the init version changed.
    pub new_init: bool,
}

/// The records that cover `[start_ms, end_ms)` in wall-clock time (PDT), in MSN order:
/// every record whose `[PDT, PDT + duration)` overlaps the range, gaps included (a
/// playlist lists them as EXT-X-GAP) except at either end, where they are dropped (a
/// selection starts and ends with media). `records` must be in MSN order (chunks read in
/// order give that). Empty when nothing real is archived in the range.
pub fn covering<'a>(
    records: impl IntoIterator<Item = &'a SegmentRecord>,
    start_ms: i64,
    end_ms: i64,
) -> Vec<Covered> {
    let mut selected: Vec<SegmentRecord> = records
        .into_iter()
        .filter(|r| r.program_date_time_ms < end_ms && r.end_ms() > start_ms)
        .copied()
        .collect();
    let Some(last_real) = selected.iter().rposition(|r| !r.gap) else {
        return Vec::new();
    };
    selected.truncate(last_real + 1);
    let first_real = selected.iter().position(|r| !r.gap).unwrap_or(0);

    let mut out = Vec::with_capacity(selected.len() - first_real);
    let mut previous: Option<SegmentRecord> = None;
    let mut previous_real: Option<SegmentRecord> = None;
    // A discontinuity met inside a gap run applies to the next segment with media.
    let mut pending = false;
    for record in selected.into_iter().skip(first_real) {
        let hole = previous.is_some_and(|p| record.msn != p.msn + 1);
        previous = Some(record);
        if record.gap {
            pending |= record.discontinuity || hole;
            out.push(Covered {
                record,
                discontinuity: false,
                new_init: false,
            });
            continue;
        }
        out.push(Covered {
            record,
            discontinuity: previous_real.is_some() && (record.discontinuity || hole || pending),
            new_init: previous_real.is_none_or(|p| p.init_version != record.init_version),
        });
        pending = false;
        previous_real = Some(record);
    }
    out
}

#[cfg(test)]
mod tests;
