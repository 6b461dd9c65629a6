//! Codec parameters of a track, as the packager and the playlists need them.

use bytes::Bytes;

use crate::frame::TrackKind;

/// H.264 decoder configuration: the parameter sets plus what we parsed out of the SPS.
#[derive(Debug, Clone, PartialEq)]
pub struct AvcConfig {
    /// The AVCDecoderConfigurationRecord exactly as the publisher sent it (FLV sequence
    /// header) or as built from in-band SPS/PPS; written verbatim as the `avcC` box body.
    pub record: Bytes,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Bytes in each NAL unit length prefix of the samples (1, 2 or 4).
    pub nal_length_size: u8,
    pub profile_idc: u8,
    /// The constraint flags byte (`constraint_set0_flag` ... ), RFC 6381 `avc1.PPCCLL`.
    pub profile_compatibility: u8,
    pub level_idc: u8,
    /// Display size after SPS cropping, in pixels.
    pub width: u32,
    pub height: u32,
    /// Frames per second from the SPS VUI timing info, when present.
    pub frame_rate: Option<f64>,
}

/// AAC decoder configuration (ISO/IEC 14496-3 AudioSpecificConfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacConfig {
    /// The AudioSpecificConfig bytes, written verbatim into `esds`.
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC, 5 = HE-AAC/SBR, 29 = HE-AACv2/PS).
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

/// Opus decoder configuration: what a decoder needs besides the packets (RFC 7845 §5.1,
/// the OpusHead fields). WebRTC's Opus (RFC 7587 §7) always runs at 48 kHz and signals two
/// channels; a mono sender's packets decode as two equal channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Output channels: 1 or 2 (mapping family 0, RFC 7845 §5.1.1.1).
    pub channels: u8,
    /// Samples at 48 kHz to discard from the decoder's output at the start.
    pub pre_skip: u16,
}

impl OpusConfig {
    /// Opus decodes at 48 kHz whatever the encoder's input rate (RFC 7845 §5.1).
    pub const SAMPLE_RATE: u32 = 48_000;
}

/// How a track is coded. Opus exists only between ingest and the transcoder, which turns
/// it into AAC: the packager refuses it (HLS players expect AAC in fMP4).
#[derive(Debug, Clone, PartialEq)]
pub enum CodecParams {
    H264(AvcConfig),
    Aac(AacConfig),
    Opus(OpusConfig),
}

/// One track of a publisher's feed: what it is and how to decode it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackParams {
    pub kind: TrackKind,
    pub codec: CodecParams,
}

impl TrackParams {
    pub fn video(config: AvcConfig) -> Self {
        TrackParams {
            kind: TrackKind::Video,
            codec: CodecParams::H264(config),
        }
    }

    pub fn audio(config: AacConfig) -> Self {
        TrackParams {
            kind: TrackKind::Audio,
            codec: CodecParams::Aac(config),
        }
    }

    pub fn opus(config: OpusConfig) -> Self {
        TrackParams {
            kind: TrackKind::Audio,
            codec: CodecParams::Opus(config),
        }
    }
}
