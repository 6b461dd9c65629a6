//! RFC 6381 codec strings (the CODECS attribute), computed from the parameter sets.

use crate::track::{AacConfig, AvcConfig, CodecParams};

/// `avc1.PPCCLL` from the SPS profile, constraint flags and level (RFC 6381 §3.3), in
/// lowercase hex as Apple's HLS examples write it (`avc1.64001f`).
pub fn avc_codec_string(config: &AvcConfig) -> String {
    format!(
        "avc1.{:02x}{:02x}{:02x}",
        config.profile_idc, config.profile_compatibility, config.level_idc
    )
}

/// `mp4a.40.N` with N the audio object type in decimal (RFC 6381 §3.3, ISO/IEC 14496-3):
/// `mp4a.40.2` for AAC-LC, `mp4a.40.5` for HE-AAC.
pub fn aac_codec_string(config: &AacConfig) -> String {
    format!("mp4a.40.{}", config.object_type)
}

/// The RFC 6381 codec string of a track. Opus is `Opus`, its ISO BMFF sample entry
/// ("Encapsulation of Opus in ISO Base Media File Format" §4.3).
pub fn codec_string(codec: &CodecParams) -> String {
    match codec {
        CodecParams::H264(c) => avc_codec_string(c),
        CodecParams::Aac(c) => aac_codec_string(c),
        CodecParams::Opus(_) => "Opus".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::flv::{
        AudioTag, FlvFileReader, FlvTagType, VideoTag, parse_audio_tag, parse_video_tag,
    };

    /// The codec parameters of the first video and audio sequence headers of a capture.
    fn codecs(flv: &[u8]) -> Vec<CodecParams> {
        let mut codecs = Vec::new();
        for tag in FlvFileReader::new(flv).unwrap() {
            let tag = tag.unwrap();
            match tag.tag_type {
                FlvTagType::Video => {
                    if let VideoTag::SequenceHeader(c) = parse_video_tag(tag.body, 0).unwrap() {
                        codecs.push(CodecParams::H264(c));
                    }
                }
                FlvTagType::Audio => {
                    if let AudioTag::SequenceHeader(c) = parse_audio_tag(tag.body, 0).unwrap() {
                        codecs.push(CodecParams::Aac(c));
                    }
                }
                FlvTagType::ScriptData => {}
            }
        }
        codecs
    }

    fn strings(flv: &[u8]) -> Vec<String> {
        codecs(flv).iter().map(codec_string).collect()
    }

    #[test]
    fn codec_strings_of_ffmpeg_captures() {
        // RFC 6381 §3.3: profile_idc 100 (High), no constraint flags, level 1.3.
        assert_eq!(
            strings(include_bytes!("../testdata/ffmpeg_h264_aac_bframes.flv")),
            ["avc1.64000d", "mp4a.40.2"]
        );
        // Constrained Baseline: profile 66 with constraint_set0/1 (0xc0), level 1.3.
        assert_eq!(
            strings(include_bytes!(
                "../testdata/ffmpeg_h264_baseline_2997_aac_44100_mono.flv"
            )),
            ["avc1.42c00d", "mp4a.40.2"]
        );
        assert_eq!(
            strings(include_bytes!("../testdata/ffmpeg_h264_1080p25.flv")),
            ["avc1.640028"]
        );
    }

    #[test]
    fn he_aac_is_mp4a_40_5() {
        let he_aac = AacConfig::from_asc(Bytes::from_static(&[0x2b, 0x11, 0x88, 0x00])).unwrap();
        assert_eq!(aac_codec_string(&he_aac), "mp4a.40.5");
    }
}
