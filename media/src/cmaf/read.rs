//! Reading CMAF back: an init segment's track ([`read_init`]) and a segment's fragments
//! as samples ([`read_segment`]), the inverse of [`super::write_init`] and
//! [`super::write_fragment`]. VOD rendering reads archived segments with it to cut them on
//! exact frames.
//!
//! Archived objects come from our own packager, but a reader of stored bytes must hold up
//! against anything (a torn upload, a bit flip, a hostile bucket): every size and offset
//! is checked before use, errors carry the byte offset of the box at fault, and nothing
//! here panics or allocates in proportion to an untrusted count.

use bytes::Bytes;
use mp4_atom::{Atom, Codec, Decode, FourCC, Moof, Moov, Trex};

use super::{Fragment, Sample};
use crate::track::{AacConfig, AvcConfig, TrackParams};

/// Samples one segment may hold. A 10 s segment at 60 fps has 600 video samples, 48 kHz
/// AAC about 470; the bound stops a forged `trun` count from allocating gigabytes.
pub const MAX_SEGMENT_SAMPLES: usize = 1 << 16;

/// ISO/IEC 14496-12 §8.8.3.1: `sample_is_non_sync_sample`.
const SAMPLE_IS_NON_SYNC: u32 = 1 << 16;
/// Box header: 32-bit size and 32-bit type; a 64-bit `largesize` follows a size of 1.
const BOX_HEADER: usize = 8;
const LARGE_BOX_HEADER: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes are not what ISO/IEC 14496-12 allows (or were cut short).
    #[error("byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    /// Well-formed, but not a single-track H.264 or AAC CMAF file we can cut.
    #[error("byte {offset}: unsupported: {reason}")]
    Unsupported { offset: usize, reason: String },
}

impl ReadError {
    /// The same error with its offset counted from `by` bytes earlier (an error found in
    /// a box's body, reported in the whole object).
    fn shifted(self, by: usize) -> ReadError {
        match self {
            ReadError::Malformed { offset, reason } => malformed(offset + by, reason),
            ReadError::Unsupported { offset, reason } => unsupported(offset + by, reason),
        }
    }
}

fn malformed(offset: usize, reason: impl Into<String>) -> ReadError {
    ReadError::Malformed {
        offset,
        reason: reason.into(),
    }
}

fn unsupported(offset: usize, reason: impl Into<String>) -> ReadError {
    ReadError::Unsupported {
        offset,
        reason: reason.into(),
    }
}

/// The track an init segment describes.
#[derive(Debug, Clone, PartialEq)]
pub struct InitTrack {
    pub track_id: u32,
    /// mdhd timescale: 90 kHz for our video, the sample rate for our audio.
    pub timescale: u32,
    pub params: TrackParams,
    /// `trex` defaults (§8.8.3), for fragments whose `tfhd`/`trun` leave fields out.
    defaults: SampleDefaults,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SampleDefaults {
    duration: u32,
    size: u32,
    flags: u32,
}

/// One fragment of a segment, with where it lies in the segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFragment {
    pub fragment: Fragment,
    /// Offset of the `moof` in the segment.
    pub offset: usize,
}

/// One top-level box: its type, and the byte ranges of the whole box and of its body.
struct BoxSpan {
    kind: FourCC,
    start: usize,
    body: usize,
    end: usize,
}

/// The top-level boxes of `bytes`, each checked to fit.
fn boxes(bytes: &[u8]) -> impl Iterator<Item = Result<BoxSpan, ReadError>> + '_ {
    let mut at = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= bytes.len() {
            return None;
        }
        let span = box_at(bytes, at);
        match &span {
            Ok(span) => at = span.end,
            Err(_) => failed = true,
        }
        Some(span)
    })
}

fn box_at(bytes: &[u8], start: usize) -> Result<BoxSpan, ReadError> {
    let rest = &bytes[start..];
    if rest.len() < BOX_HEADER {
        return Err(malformed(
            start,
            format!("{} bytes left, a box header needs 8", rest.len()),
        ));
    }
    let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let kind = FourCC::new(&[rest[4], rest[5], rest[6], rest[7]]);
    let (size, body) = match size32 {
        // §4.2: size 0 is "to the end of the file".
        0 => (rest.len(), BOX_HEADER),
        1 => {
            if rest.len() < LARGE_BOX_HEADER {
                return Err(malformed(start, format!("{kind} box: truncated largesize")));
            }
            let mut large = [0u8; 8];
            large.copy_from_slice(&rest[8..16]);
            let size = usize::try_from(u64::from_be_bytes(large)).unwrap_or(usize::MAX);
            (size, LARGE_BOX_HEADER)
        }
        n => (n as usize, BOX_HEADER),
    };
    if size < body {
        return Err(malformed(
            start,
            format!("{kind} box: size {size} is smaller than its header"),
        ));
    }
    if size > rest.len() {
        return Err(malformed(
            start,
            format!(
                "{kind} box: size {size} runs past the end ({} bytes left)",
                rest.len()
            ),
        ));
    }
    Ok(BoxSpan {
        kind,
        start,
        body: start + body,
        end: start + size,
    })
}

/// The children each container box may hold here: what CMAF track files (ours, and
/// ffmpeg's) put there. Anything else is refused by [`check_structure`] before mp4-atom
/// decodes the tree.
const ALLOWED: [(&[u8; 4], &[&[u8; 4]]); 10] = [
    (
        b"moov",
        &[b"mvhd", b"trak", b"mvex", b"udta", b"meta", b"iods"],
    ),
    (b"trak", &[b"tkhd", b"edts", b"mdia", b"udta", b"tref"]),
    (b"edts", &[b"elst"]),
    (b"mdia", &[b"mdhd", b"hdlr", b"minf"]),
    (b"minf", &[b"vmhd", b"smhd", b"nmhd", b"dinf", b"stbl"]),
    (
        b"stbl",
        &[
            b"stsd", b"stts", b"stsc", b"stsz", b"stco", b"co64", b"stss", b"ctts", b"sdtp",
        ],
    ),
    (b"mvex", &[b"mehd", b"trex"]),
    (b"dinf", &[b"dref"]),
    (b"moof", &[b"mfhd", b"traf"]),
    (b"traf", &[b"tfhd", b"tfdt", b"trun", b"sdtp"]),
];

/// Refuses a box where this reader does not expect one (a sample group description,
/// an audio sample entry loose in `moov`, …) before mp4-atom decodes the tree: its
/// decoders (0.17) trust counts and nesting, and two corrupt trees the `cmaf_read` fuzz
/// target built made them allocate until memory ran out. What we read is media our
/// packager wrote; a box it never writes, where it never writes it, is not ours.
fn check_structure(bytes: &[u8], span: &BoxSpan, depth: usize) -> Result<(), ReadError> {
    let Some((_, allowed)) = ALLOWED
        .iter()
        .find(|(kind, _)| span.kind == FourCC::new(kind))
    else {
        return Ok(());
    };
    if depth > 8 {
        return Err(unsupported(
            span.start,
            "boxes nested deeper than CMAF nests them",
        ));
    }
    let body = &bytes[span.body..span.end];
    for child in boxes(body) {
        let child = child.map_err(|e| e.shifted(span.body))?;
        if !allowed.iter().any(|k| child.kind == FourCC::new(k)) {
            return Err(unsupported(
                child.start + span.body,
                format!(
                    "a {} box in {}, which CMAF media we wrote never has",
                    child.kind, span.kind
                ),
            ));
        }
        let child = BoxSpan {
            kind: child.kind,
            start: child.start + span.body,
            body: child.body + span.body,
            end: child.end + span.body,
        };
        check_structure(bytes, &child, depth + 1)?;
    }
    Ok(())
}

/// Reads an init segment (`ftyp` + `moov`, as [`super::write_init`] writes it): its one
/// track's id, timescale and codec parameters.
pub fn read_init(bytes: &[u8]) -> Result<InitTrack, ReadError> {
    let mut moov = None;
    for span in boxes(bytes) {
        let span = span?;
        if span.kind == Moov::KIND {
            if moov.is_some() {
                return Err(malformed(span.start, "a second moov"));
            }
            check_structure(bytes, &span, 0)?;
            let decoded = Moov::decode(&mut &bytes[span.start..span.end])
                .map_err(|e| malformed(span.start, format!("moov: {e}")))?;
            moov = Some((span.start, decoded));
        }
    }
    let Some((at, moov)) = moov else {
        return Err(malformed(0, "no moov box: not an init segment"));
    };
    // CMAF puts each track in its own file (ISO/IEC 23000-19 §7.3.1).
    let [trak] = moov.trak.as_slice() else {
        return Err(unsupported(
            at,
            format!("{} tracks; a CMAF track file has one", moov.trak.len()),
        ));
    };
    let track_id = trak.tkhd.track_id;
    let timescale = trak.mdia.mdhd.timescale;
    if timescale == 0 {
        return Err(malformed(at, format!("track {track_id}: mdhd timescale 0")));
    }
    let params = match trak.mdia.minf.stbl.stsd.codecs.as_slice() {
        [Codec::Avc1(avc1)] => {
            let mut record = Vec::new();
            avc1.avcc
                .encode_body(&mut record)
                .map_err(|e| malformed(at, format!("avcC: {e}")))?;
            let config = AvcConfig::from_record(Bytes::from(record))
                .map_err(|e| malformed(at, format!("avcC: {e}")))?;
            TrackParams::video(config)
        }
        [Codec::Mp4a(mp4a)] => {
            let Some(specific) = &mp4a.esds.es_desc.dec_config.dec_specific else {
                return Err(malformed(at, "esds without an AudioSpecificConfig"));
            };
            let config = AacConfig::from_asc(Bytes::copy_from_slice(&specific.raw))
                .map_err(|e| malformed(at, format!("esds AudioSpecificConfig: {e}")))?;
            TrackParams::audio(config)
        }
        [other] => {
            return Err(unsupported(
                at,
                format!("sample entry {other:?}: only avc1 and mp4a are cut")
                    .chars()
                    .take(120)
                    .collect::<String>(),
            ));
        }
        entries => {
            return Err(unsupported(
                at,
                format!("{} sample entries; CMAF has one", entries.len()),
            ));
        }
    };
    let defaults = moov
        .mvex
        .as_ref()
        .and_then(|mvex| mvex.trex.iter().find(|t| t.track_id == track_id))
        .map_or_else(SampleDefaults::default, |t: &Trex| SampleDefaults {
            duration: t.default_sample_duration,
            size: t.default_sample_size,
            flags: t.default_sample_flags,
        });
    Ok(InitTrack {
        track_id,
        timescale,
        params,
        defaults,
    })
}

/// Reads a segment (any number of `moof` + `mdat` pairs, as the packager's parts are
/// concatenated) of the track `init` describes: each fragment's sequence number, decode
/// time and samples, the sample data sliced out of `bytes` without a copy.
pub fn read_segment(bytes: &Bytes, init: &InitTrack) -> Result<Vec<ReadFragment>, ReadError> {
    let mut fragments = Vec::new();
    let mut pending: Option<(BoxSpan, Moof)> = None;
    let mut total_samples = 0;
    for span in boxes(bytes) {
        let span = span?;
        if span.kind == Moof::KIND {
            if let Some((moof, _)) = pending {
                return Err(malformed(moof.start, "moof without an mdat"));
            }
            check_structure(bytes, &span, 0)?;
            let moof = Moof::decode(&mut &bytes[span.start..span.end])
                .map_err(|e| malformed(span.start, format!("moof: {e}")))?;
            pending = Some((span, moof));
        } else if span.kind == FourCC::new(b"mdat") {
            let Some((moof_span, moof)) = pending.take() else {
                return Err(malformed(span.start, "mdat without a moof before it"));
            };
            let fragment = fragment(bytes, init, &moof_span, &moof, &span, &mut total_samples)?;
            fragments.push(ReadFragment {
                fragment,
                offset: moof_span.start,
            });
        } else if !is_ignorable(span.kind) {
            return Err(unsupported(
                span.start,
                format!("{} box in a media segment", span.kind),
            ));
        }
    }
    if let Some((moof, _)) = pending {
        return Err(malformed(moof.start, "moof without an mdat"));
    }
    if fragments.is_empty() {
        return Err(malformed(0, "no moof + mdat: not a media segment"));
    }
    Ok(fragments)
}

/// Boxes a CMAF segment may carry besides moof/mdat that say nothing about its samples
/// (ISO/IEC 23000-19 §7.3.2.2: styp, prft, emsg, sidx; free space).
fn is_ignorable(kind: FourCC) -> bool {
    [b"styp", b"sidx", b"prft", b"emsg", b"free", b"skip"]
        .iter()
        .any(|k| kind == FourCC::new(k))
}

/// The samples of one `moof`, their data inside the `mdat` that follows it.
fn fragment(
    bytes: &Bytes,
    init: &InitTrack,
    moof_span: &BoxSpan,
    moof: &Moof,
    mdat: &BoxSpan,
    total_samples: &mut usize,
) -> Result<Fragment, ReadError> {
    let at = moof_span.start;
    let [traf] = moof.traf.as_slice() else {
        return Err(unsupported(
            at,
            format!(
                "{} track fragments; a CMAF fragment has one",
                moof.traf.len()
            ),
        ));
    };
    let tfhd = &traf.tfhd;
    if tfhd.track_id != init.track_id {
        return Err(malformed(
            at,
            format!(
                "track fragment of track {}, the init segment's track is {}",
                tfhd.track_id, init.track_id
            ),
        ));
    }
    let Some(tfdt) = &traf.tfdt else {
        // CMAF requires tfdt (ISO/IEC 23000-19 §7.5.16); without it a fragment cannot be
        // placed in time on its own.
        return Err(malformed(at, "track fragment without tfdt"));
    };
    if traf.senc.is_some() || !traf.saiz.is_empty() {
        return Err(unsupported(at, "encrypted samples (senc/saiz)"));
    }
    let duration = tfhd
        .default_sample_duration
        .unwrap_or(init.defaults.duration);
    let size = tfhd.default_sample_size.unwrap_or(init.defaults.size);
    let flags = tfhd.default_sample_flags.unwrap_or(init.defaults.flags);
    // §8.8.7.1: data offsets count from base_data_offset when given, else from the moof
    // (default-base-is-moof, and also the rule for the first track fragment without it).
    let base = match tfhd.base_data_offset {
        Some(offset) => usize::try_from(offset).unwrap_or(usize::MAX),
        None => moof_span.start,
    };
    let mut samples = Vec::new();
    let mut next_data = base;
    for trun in &traf.trun {
        if let Some(offset) = trun.data_offset {
            next_data = base
                .checked_add_signed(offset as isize)
                .ok_or_else(|| malformed(at, format!("trun data_offset {offset}")))?;
        }
        *total_samples += trun.samples.len();
        if *total_samples > MAX_SEGMENT_SAMPLES {
            return Err(malformed(
                at,
                format!("more than {MAX_SEGMENT_SAMPLES} samples in one segment"),
            ));
        }
        for (i, entry) in trun.samples.iter().enumerate() {
            let len = entry.size.unwrap_or(size) as usize;
            let end = next_data.saturating_add(len);
            if next_data < mdat.body || end > mdat.end {
                return Err(malformed(
                    at,
                    format!(
                        "sample {i} at bytes {next_data}..{end} lies outside the mdat \
                         ({}..{})",
                        mdat.body, mdat.end
                    ),
                ));
            }
            let sample_flags = entry.flags.unwrap_or(flags);
            let cts = entry.cts.unwrap_or(0);
            let composition_offset = i32::try_from(cts)
                .map_err(|_| malformed(at, format!("sample {i}: composition offset {cts}")))?;
            samples.push(Sample {
                duration: entry.duration.unwrap_or(duration),
                composition_offset,
                keyframe: sample_flags & SAMPLE_IS_NON_SYNC == 0,
                data: bytes.slice(next_data..end),
            });
            next_data = end;
        }
    }
    if samples.is_empty() {
        return Err(malformed(at, "track fragment without samples"));
    }
    Ok(Fragment {
        sequence_number: moof.mfhd.sequence_number,
        base_media_decode_time: tfdt.base_media_decode_time,
        samples,
    })
}

#[cfg(test)]
mod tests;
