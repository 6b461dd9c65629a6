//! AAC configuration: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) that FLV and
//! `esds` carry, and the ADTS frame header (ISO/IEC 14496-3 §1.A.2.2) that MPEG-TS carries,
//! from which we build an AudioSpecificConfig for streams that never send one.

use bytes::Bytes;

use crate::bits::{BitReader, OutOfBits};
use crate::track::AacConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AacError {
    #[error("AAC {what} truncated: {field} at bit {bit_offset} runs past the end")]
    Truncated {
        what: &'static str,
        field: &'static str,
        bit_offset: usize,
    },
    #[error("invalid AAC {field} = {value}: {reason}")]
    Invalid {
        field: &'static str,
        value: u32,
        reason: &'static str,
    },
}

fn truncated(what: &'static str) -> impl Fn(OutOfBits) -> AacError {
    move |e| AacError::Truncated {
        what,
        field: e.field,
        bit_offset: e.bit_offset,
    }
}

/// ISO/IEC 14496-3 Table 1.18: samplingFrequencyIndex 0..=12.
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Explicit SBR and PS signalling (§1.6.5.2, hierarchical): the config names the extension
/// object and the output sampling rate, then the underlying core object type.
const AOT_SBR: u32 = 5;
const AOT_PS: u32 = 29;

fn sampling_frequency(index: u32) -> Result<u32, AacError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| SAMPLING_FREQUENCIES.get(i).copied())
        .ok_or(AacError::Invalid {
            field: "samplingFrequencyIndex",
            value: index,
            reason: "reserved (Table 1.18)",
        })
}

/// Output channels of a channelConfiguration (ISO/IEC 14496-3 Table 1.19 and its
/// amendments: 7 and 12 and 14 are 7.1 layouts, 11 is 6.1, 13 is 22.2).
fn channel_count(channel_configuration: u32) -> Result<u8, AacError> {
    match channel_configuration {
        1..=6 => Ok(channel_configuration as u8),
        7 | 12 | 14 => Ok(8),
        11 => Ok(7),
        13 => Ok(24),
        0 => Err(AacError::Invalid {
            field: "channelConfiguration",
            value: 0,
            reason: "channel layout in a program_config_element is not supported",
        }),
        other => Err(AacError::Invalid {
            field: "channelConfiguration",
            value: other,
            reason: "reserved (Table 1.19)",
        }),
    }
}

/// GetAudioObjectType() of §1.6.2.1: 5 bits, 31 escapes to 32 + 6 more bits.
fn audio_object_type(r: &mut BitReader<'_>) -> Result<u32, OutOfBits> {
    let aot = r.u(5, "audioObjectType")?;
    if aot == 31 {
        Ok(32 + r.u(6, "audioObjectTypeExt")?)
    } else {
        Ok(aot)
    }
}

/// samplingFrequencyIndex, or 0xf and an explicit 24-bit samplingFrequency.
fn sampling_frequency_field(r: &mut BitReader<'_>, field: &'static str) -> Result<u32, AacError> {
    let index = r.u(4, field).map_err(truncated("AudioSpecificConfig"))?;
    if index == 0xf {
        let frequency = r
            .u(24, "samplingFrequency")
            .map_err(truncated("AudioSpecificConfig"))?;
        if frequency == 0 {
            return Err(AacError::Invalid {
                field: "samplingFrequency",
                value: 0,
                reason: "a sampling rate of 0 Hz",
            });
        }
        Ok(frequency)
    } else {
        sampling_frequency(index)
    }
}

impl AacConfig {
    /// Parses the head of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): object type,
    /// sampling rate and channel configuration. With explicit SBR/PS signalling
    /// (object type 5 or 29) the object type stays 5/29, for `mp4a.40.5`/`mp4a.40.29`,
    /// and the sample rate is the SBR output rate: the rate a player renders, and an
    /// exact timescale for HE-AAC's 2048-sample output frames.
    pub fn from_asc(asc: Bytes) -> Result<AacConfig, AacError> {
        let mut r = BitReader::new(&asc);
        let object_type = audio_object_type(&mut r).map_err(truncated("AudioSpecificConfig"))?;
        let mut sample_rate = sampling_frequency_field(&mut r, "samplingFrequencyIndex")?;
        let channel_configuration = r
            .u(4, "channelConfiguration")
            .map_err(truncated("AudioSpecificConfig"))?;
        if object_type == AOT_SBR || object_type == AOT_PS {
            sample_rate = sampling_frequency_field(&mut r, "extensionSamplingFrequencyIndex")?;
            audio_object_type(&mut r).map_err(truncated("AudioSpecificConfig"))?;
        }
        if object_type == 0 {
            return Err(AacError::Invalid {
                field: "audioObjectType",
                value: 0,
                reason: "object type 0 is \"null\" (Table 1.17)",
            });
        }
        let channels = channel_count(channel_configuration)?;
        Ok(AacConfig {
            asc,
            // 5 bits, or 32 + 6 bits: at most 95.
            object_type: object_type as u8,
            sample_rate,
            channels,
        })
    }
}

/// The fixed and variable ADTS header fields we use (ISO/IEC 14496-3 §1.A.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type: the header's `profile_ObjectType` + 1 (2 = AAC-LC).
    pub object_type: u8,
    pub sampling_frequency_index: u8,
    pub channel_configuration: u8,
    /// 7 bytes, or 9 when a CRC follows (`protection_absent` = 0).
    pub header_len: usize,
    /// `aac_frame_length`: the whole ADTS frame, header included.
    pub frame_len: usize,
    /// `number_of_raw_data_blocks_in_frame` + 1.
    pub raw_data_blocks: u8,
}

impl AdtsHeader {
    /// Parses the ADTS header at the start of `data`.
    pub fn parse(data: &[u8]) -> Result<AdtsHeader, AacError> {
        let mut r = BitReader::new(data);
        let t = truncated("ADTS header");
        let syncword = r.u(12, "syncword").map_err(&t)?;
        if syncword != 0xfff {
            return Err(AacError::Invalid {
                field: "syncword",
                value: syncword,
                reason: "expected 0xFFF",
            });
        }
        r.u(1, "ID").map_err(&t)?;
        let layer = r.u(2, "layer").map_err(&t)?;
        if layer != 0 {
            return Err(AacError::Invalid {
                field: "layer",
                value: layer,
                reason: "must be 0 for ADTS",
            });
        }
        let protection_absent = r.flag("protection_absent").map_err(&t)?;
        let profile_object_type = r.u(2, "profile_ObjectType").map_err(&t)?;
        let sampling_frequency_index = r.u(4, "sampling_frequency_index").map_err(&t)?;
        sampling_frequency(sampling_frequency_index)?;
        r.u(1, "private_bit").map_err(&t)?;
        let channel_configuration = r.u(3, "channel_configuration").map_err(&t)?;
        channel_count(channel_configuration)?;
        r.u(4, "original_copy/home/copyright_id_bit/copyright_id_start")
            .map_err(&t)?;
        let frame_len = r.u(13, "aac_frame_length").map_err(&t)? as usize;
        r.u(11, "adts_buffer_fullness").map_err(&t)?;
        let raw_data_blocks = r.u(2, "number_of_raw_data_blocks_in_frame").map_err(&t)? as u8 + 1;
        let header_len = if protection_absent { 7 } else { 9 };
        if frame_len < header_len {
            return Err(AacError::Invalid {
                field: "aac_frame_length",
                value: frame_len as u32,
                reason: "shorter than the ADTS header",
            });
        }
        Ok(AdtsHeader {
            object_type: profile_object_type as u8 + 1,
            sampling_frequency_index: sampling_frequency_index as u8,
            channel_configuration: channel_configuration as u8,
            header_len,
            frame_len,
            raw_data_blocks,
        })
    }

    /// The two-byte AudioSpecificConfig this header implies (§1.6.2.1: 5-bit object type,
    /// 4-bit sampling frequency index, 4-bit channel configuration, GASpecificConfig with
    /// all three flags 0).
    pub fn audio_specific_config(&self) -> Result<AacConfig, AacError> {
        let bits = (u16::from(self.object_type) << 11)
            | (u16::from(self.sampling_frequency_index) << 7)
            | (u16::from(self.channel_configuration) << 3);
        AacConfig::from_asc(Bytes::copy_from_slice(&bits.to_be_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADTS: &[u8] = include_bytes!("../testdata/ffmpeg_aac_44100_mono.adts");

    #[test]
    fn asc_aac_lc() {
        // §1.6.2.1: 00010 (AOT 2) 0011 (48 kHz) 0010 (stereo) 000 = 0x11 0x90.
        let config = AacConfig::from_asc(Bytes::from_static(&[0x11, 0x90])).unwrap();
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (2, 48000, 2)
        );
    }

    #[test]
    fn asc_explicit_sbr_reports_he_aac_and_output_rate() {
        // 00101 (SBR) 0110 (24 kHz core) 0010 (stereo) 0011 (48 kHz output) 00010 (LC).
        let config = AacConfig::from_asc(Bytes::from_static(&[0x2b, 0x11, 0x88, 0x00])).unwrap();
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (5, 48000, 2)
        );
    }

    #[test]
    fn asc_escape_object_type_and_explicit_frequency() {
        // 11111 000010 (AOT 31 escape -> 32 + 2 = 34), 1111 + 24-bit 0x00BB80 (48000),
        // 0001 (mono).
        let config =
            AacConfig::from_asc(Bytes::from_static(&[0xf8, 0x5e, 0x01, 0x77, 0x00, 0x20])).unwrap();
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (34, 48000, 1)
        );
    }

    #[test]
    fn asc_errors() {
        assert!(matches!(
            AacConfig::from_asc(Bytes::from_static(&[0x11])),
            Err(AacError::Truncated {
                field: "samplingFrequencyIndex",
                ..
            })
        ));
        // sampling index 13 is reserved.
        assert!(matches!(
            AacConfig::from_asc(Bytes::from_static(&[0x16, 0x90])),
            Err(AacError::Invalid {
                field: "samplingFrequencyIndex",
                value: 13,
                ..
            })
        ));
        // channelConfiguration 0: layout in a PCE.
        assert!(matches!(
            AacConfig::from_asc(Bytes::from_static(&[0x11, 0x80])),
            Err(AacError::Invalid {
                field: "channelConfiguration",
                value: 0,
                ..
            })
        ));
    }

    #[test]
    fn adts_header_gives_the_asc_ffmpeg_writes() {
        let header = AdtsHeader::parse(ADTS).unwrap();
        assert_eq!(header.object_type, 2);
        assert_eq!(header.header_len, 7);
        let config = header.audio_specific_config().unwrap();
        assert_eq!((config.sample_rate, config.channels), (44100, 1));
        // The ASC ffmpeg puts in FLV for the same encoder settings: 00010 0100 0001 000.
        assert_eq!(&config.asc[..], &[0x12, 0x08]);

        // Every frame header in the capture parses and the frame lengths tile the file.
        let mut rest = ADTS;
        let mut frames = 0;
        while !rest.is_empty() {
            let h = AdtsHeader::parse(rest).unwrap();
            assert_eq!(
                h,
                AdtsHeader {
                    frame_len: h.frame_len,
                    ..header
                }
            );
            rest = &rest[h.frame_len..];
            frames += 1;
        }
        assert!(frames >= 4, "{frames} frames");
    }

    #[test]
    fn adts_truncated_or_garbage_is_an_error() {
        for len in 0..7 {
            assert!(matches!(
                AdtsHeader::parse(&ADTS[..len]),
                Err(AacError::Truncated { .. })
            ));
        }
        assert!(matches!(
            AdtsHeader::parse(&[0x12; 7]),
            Err(AacError::Invalid {
                field: "syncword",
                ..
            })
        ));
    }
}
