//! FLV tag bodies as RTMP carries them (video/audio message payloads), into `Frame`s and
//! codec parameters. Video: AVC only (legacy FLV codec id 7); audio: AAC only (sound
//! format 10). Anything else is a clear `FlvError::UnsupportedCodec`.

use crate::frame::Frame;
use crate::track::{AacConfig, AvcConfig};

/// What one FLV video tag body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    /// AVCPacketType 0: the AVCDecoderConfigurationRecord.
    SequenceHeader(AvcConfig),
    /// AVCPacketType 1: one access unit; `pts = dts + composition time`.
    Frame(Frame),
    /// AVCPacketType 2: end of sequence.
    EndOfSequence,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AudioTag {
    /// AACPacketType 0: the AudioSpecificConfig.
    SequenceHeader(AacConfig),
    /// AACPacketType 1: one raw AAC frame.
    Frame(Frame),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlvError {
    #[error("unsupported {kind} codec id {id} (Floodlight takes H.264 video and AAC audio)")]
    UnsupportedCodec { kind: &'static str, id: u8 },
    #[error("truncated {what}: need {need} bytes at offset {offset}, tag has {len}")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("invalid {what} at offset {offset}: {reason}")]
    Invalid {
        what: &'static str,
        offset: usize,
        reason: String,
    },
}

/// Parses one FLV video tag body. `timestamp_ms` is the RTMP message timestamp (the DTS),
/// already extended past 32-bit wrap by the caller.
pub fn parse_video_tag(body: &[u8], timestamp_ms: i64) -> Result<VideoTag, FlvError> {
    let _ = (body, timestamp_ms);
    todo!()
}

/// Parses one FLV audio tag body.
pub fn parse_audio_tag(body: &[u8], timestamp_ms: i64) -> Result<AudioTag, FlvError> {
    let _ = (body, timestamp_ms);
    todo!()
}
