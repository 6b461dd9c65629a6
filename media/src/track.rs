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

#[derive(Debug, Clone, PartialEq)]
pub enum CodecParams {
    H264(AvcConfig),
    Aac(AacConfig),
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
}
