//! RFC 6381 codec strings (the CODECS attribute), computed from the parameter sets.

use crate::track::{AacConfig, AvcConfig, CodecParams};

/// `avc1.PPCCLL` from the SPS profile, constraint flags and level (RFC 6381 §3.3).
pub fn avc_codec_string(config: &AvcConfig) -> String {
    let _ = config;
    todo!()
}

/// `mp4a.40.N` with N the audio object type (RFC 6381 §3.3, ISO/IEC 14496-3).
pub fn aac_codec_string(config: &AacConfig) -> String {
    let _ = config;
    todo!()
}

pub fn codec_string(codec: &CodecParams) -> String {
    match codec {
        CodecParams::H264(c) => avc_codec_string(c),
        CodecParams::Aac(c) => aac_codec_string(c),
    }
}
