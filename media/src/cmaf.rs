//! CMAF (fragmented MP4) writer on `mp4-atom`: one track per file, as CMAF wants.
//! Init segment = ftyp + moov (mvex/trex); each part/fragment = moof (mfhd, traf with
//! tfhd, tfdt, trun) + mdat.

use bytes::Bytes;

use crate::track::TrackParams;

/// One sample of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track timescale.
    pub duration: u32,
    /// Composition offset (pts - dts) in the track timescale; signed (trun version 1).
    pub composition_offset: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// One `moof` + `mdat`: a part or a whole segment's worth of samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// mfhd sequence_number; strictly increasing per track.
    pub sequence_number: u32,
    /// tfdt baseMediaDecodeTime, track timescale.
    pub base_media_decode_time: u64,
    pub samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmafError {
    #[error("mp4 encoding failed: {0}")]
    Encode(String),
    #[error("empty fragment {sequence_number}: a part needs at least one sample")]
    EmptyFragment { sequence_number: u32 },
}

/// The timescale the track is written in: 90 kHz for video; the sample rate for audio,
/// so AAC frame durations (1024 samples) are exact.
pub fn track_timescale(params: &TrackParams) -> u32 {
    let _ = params;
    todo!()
}

/// Writes the init segment (ftyp + moov) for one track.
pub fn write_init(params: &TrackParams) -> Result<Bytes, CmafError> {
    let _ = params;
    todo!()
}

/// Appends one moof + mdat to `out`.
pub fn write_fragment(out: &mut Vec<u8>, fragment: &Fragment) -> Result<(), CmafError> {
    let _ = (out, fragment);
    todo!()
}
