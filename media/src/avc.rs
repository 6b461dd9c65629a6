//! H.264 parameter sets: the sequence parameter set fields a packager and a playlist need
//! (ITU-T H.264 §7.3.2.1.1), the AVCDecoderConfigurationRecord (ISO/IEC 14496-15
//! §5.3.3.1), and Annex B byte streams (what SRT/MPEG-TS and RTSP deliver) turned into the
//! length-prefixed samples that FLV carries and `mdat` wants.

use bytes::{BufMut, Bytes, BytesMut};

use crate::bits::{BitReader, OutOfBits};
use crate::track::AvcConfig;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AvcError {
    #[error("SPS truncated: {field} at bit {bit_offset} runs past the end")]
    SpsTruncated {
        field: &'static str,
        bit_offset: usize,
    },
    #[error("invalid SPS {field} = {value}: {reason}")]
    SpsInvalid {
        field: &'static str,
        value: u64,
        reason: &'static str,
    },
    #[error("expected a {expected} NAL unit, got nal_unit_type {found}")]
    WrongNalUnitType { expected: &'static str, found: u8 },
    #[error(
        "truncated AVCDecoderConfigurationRecord: {what} needs {need} bytes at offset {offset}, record has {len}"
    )]
    RecordTruncated {
        what: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("invalid AVCDecoderConfigurationRecord {what} at offset {offset}: {reason}")]
    RecordInvalid {
        what: &'static str,
        offset: usize,
        reason: String,
    },
    #[error("NAL unit of {len} bytes does not fit a {size}-byte length prefix")]
    NalUnitTooLarge { len: usize, size: u8 },
}

impl From<OutOfBits> for AvcError {
    fn from(e: OutOfBits) -> Self {
        AvcError::SpsTruncated {
            field: e.field,
            bit_offset: e.bit_offset,
        }
    }
}

/// H.264 Table 7-1.
const NAL_UNIT_TYPE_SPS: u8 = 7;
const NAL_UNIT_TYPE_PPS: u8 = 8;

/// What we read out of a sequence parameter set.
#[derive(Debug, Clone, PartialEq)]
pub struct Sps {
    pub profile_idc: u8,
    /// `constraint_set0_flag` … `constraint_set5_flag` and the two reserved bits, as one
    /// byte (the `CC` of RFC 6381 `avc1.PPCCLL`).
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    /// 0 = monochrome, 1 = 4:2:0, 2 = 4:2:2, 3 = 4:4:4 (H.264 Table 6-1).
    pub chroma_format_idc: u32,
    pub bit_depth_luma_minus8: u32,
    pub bit_depth_chroma_minus8: u32,
    pub frame_mbs_only_flag: bool,
    /// Display size after the frame cropping rectangle, in luma samples.
    pub width: u32,
    pub height: u32,
    /// `time_scale / (2 * num_units_in_tick)` from the VUI timing info (H.264 §E.2.1: one
    /// tick is a field period, so a frame is two ticks).
    pub frame_rate: Option<f64>,
}

/// The profiles whose SPS carries chroma_format_idc, bit depths and scaling lists
/// (H.264 §7.3.2.1.1, the `if( profile_idc = = 100 || …)` branch).
fn has_chroma_info(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Removes emulation_prevention_three_byte (H.264 §7.4.1): `00 00 03` → `00 00`.
fn nal_unit_to_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        rbsp.push(byte);
    }
    rbsp
}

fn invalid(field: &'static str, value: impl Into<u64>, reason: &'static str) -> AvcError {
    AvcError::SpsInvalid {
        field,
        value: value.into(),
        reason,
    }
}

/// Parses a sequence parameter set NAL unit (header byte included, emulation prevention
/// bytes still in), ITU-T H.264 §7.3.2.1.1 and the VUI timing info of §E.1.1.
pub fn parse_sps(nal: &[u8]) -> Result<Sps, AvcError> {
    let header = *nal.first().ok_or(AvcError::SpsTruncated {
        field: "nal_unit_header",
        bit_offset: 0,
    })?;
    if header & 0x1f != NAL_UNIT_TYPE_SPS {
        return Err(AvcError::WrongNalUnitType {
            expected: "SPS",
            found: header & 0x1f,
        });
    }
    let rbsp = nal_unit_to_rbsp(nal);
    let mut r = BitReader::new(rbsp.get(1..).unwrap_or_default());

    // u(8) reads fit in a byte.
    let profile_idc = r.u(8, "profile_idc")? as u8;
    let constraint_flags = r.u(8, "constraint_set_flags")? as u8;
    let level_idc = r.u(8, "level_idc")? as u8;
    let seq_parameter_set_id = r.ue("seq_parameter_set_id")?;
    if seq_parameter_set_id > 31 {
        return Err(invalid(
            "seq_parameter_set_id",
            seq_parameter_set_id,
            "must be 0..=31 (§7.4.2.1.1)",
        ));
    }

    let mut chroma_format_idc = 1;
    let mut separate_colour_plane_flag = false;
    let mut bit_depth_luma_minus8 = 0;
    let mut bit_depth_chroma_minus8 = 0;
    if has_chroma_info(profile_idc) {
        chroma_format_idc = r.ue("chroma_format_idc")?;
        if chroma_format_idc > 3 {
            return Err(invalid(
                "chroma_format_idc",
                chroma_format_idc,
                "must be 0..=3 (Table 6-1)",
            ));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane_flag = r.flag("separate_colour_plane_flag")?;
        }
        bit_depth_luma_minus8 = r.ue("bit_depth_luma_minus8")?;
        bit_depth_chroma_minus8 = r.ue("bit_depth_chroma_minus8")?;
        if bit_depth_luma_minus8 > 6 || bit_depth_chroma_minus8 > 6 {
            return Err(invalid(
                "bit_depth_minus8",
                bit_depth_luma_minus8.max(bit_depth_chroma_minus8),
                "must be 0..=6 (§7.4.2.1.1)",
            ));
        }
        r.flag("qpprime_y_zero_transform_bypass_flag")?;
        if r.flag("seq_scaling_matrix_present_flag")? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag("seq_scaling_list_present_flag")? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }

    r.ue("log2_max_frame_num_minus4")?;
    let pic_order_cnt_type = r.ue("pic_order_cnt_type")?;
    match pic_order_cnt_type {
        0 => {
            r.ue("log2_max_pic_order_cnt_lsb_minus4")?;
        }
        1 => {
            r.flag("delta_pic_order_always_zero_flag")?;
            r.se("offset_for_non_ref_pic")?;
            r.se("offset_for_top_to_bottom_field")?;
            let cycle = r.ue("num_ref_frames_in_pic_order_cnt_cycle")?;
            if cycle > 255 {
                return Err(invalid(
                    "num_ref_frames_in_pic_order_cnt_cycle",
                    cycle,
                    "must be 0..=255 (§7.4.2.1.1)",
                ));
            }
            for _ in 0..cycle {
                r.se("offset_for_ref_frame")?;
            }
        }
        2 => {}
        other => {
            return Err(invalid(
                "pic_order_cnt_type",
                other,
                "must be 0..=2 (§7.4.2.1.1)",
            ));
        }
    }
    r.ue("max_num_ref_frames")?;
    r.flag("gaps_in_frame_num_value_allowed_flag")?;
    let pic_width_in_mbs = u64::from(r.ue("pic_width_in_mbs_minus1")?) + 1;
    let pic_height_in_map_units = u64::from(r.ue("pic_height_in_map_units_minus1")?) + 1;
    let frame_mbs_only_flag = r.flag("frame_mbs_only_flag")?;
    if !frame_mbs_only_flag {
        r.flag("mb_adaptive_frame_field_flag")?;
    }
    r.flag("direct_8x8_inference_flag")?;

    // §7.4.2.1.1, equations 7-13 .. 7-20: a field-coded frame has two map units per MB
    // row pair, and crop offsets count in chroma sample units.
    let field_factor: u64 = if frame_mbs_only_flag { 1 } else { 2 };
    let coded_width = pic_width_in_mbs * 16;
    let coded_height = field_factor * pic_height_in_map_units * 16;
    let (mut width, mut height) = (coded_width, coded_height);
    if r.flag("frame_cropping_flag")? {
        let left = u64::from(r.ue("frame_crop_left_offset")?);
        let right = u64::from(r.ue("frame_crop_right_offset")?);
        let top = u64::from(r.ue("frame_crop_top_offset")?);
        let bottom = u64::from(r.ue("frame_crop_bottom_offset")?);
        let chroma_array_type = if separate_colour_plane_flag {
            0
        } else {
            chroma_format_idc
        };
        let (sub_width_c, sub_height_c) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1), // 4:4:4, and monochrome/separate planes where CropUnitX = 1
        };
        let crop_unit_x = sub_width_c;
        let crop_unit_y = sub_height_c * field_factor;
        let crop_x = crop_unit_x * (left + right);
        let crop_y = crop_unit_y * (top + bottom);
        if crop_x >= coded_width || crop_y >= coded_height {
            return Err(invalid(
                "frame_crop_offset",
                crop_x.max(crop_y),
                "cropping removes the whole picture",
            ));
        }
        width -= crop_x;
        height -= crop_y;
    }
    let width = u32::try_from(width).map_err(|_| invalid("width", width, "too large"))?;
    let height = u32::try_from(height).map_err(|_| invalid("height", height, "too large"))?;

    let frame_rate = if r.flag("vui_parameters_present_flag")? {
        vui_frame_rate(&mut r)?
    } else {
        None
    };

    Ok(Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        seq_parameter_set_id,
        chroma_format_idc,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
        frame_mbs_only_flag,
        width,
        height,
        frame_rate,
    })
}

/// scaling_list() of H.264 §7.3.2.1.1.1, read only to get past it.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), AvcError> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta_scale = i64::from(r.se("delta_scale")?);
            next_scale = (last_scale + delta_scale + 256).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// vui_parameters() of H.264 §E.1.1 up to and including timing_info.
fn vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<f64>, AvcError> {
    const EXTENDED_SAR: u32 = 255;
    if r.flag("aspect_ratio_info_present_flag")? && r.u(8, "aspect_ratio_idc")? == EXTENDED_SAR {
        r.u(16, "sar_width")?;
        r.u(16, "sar_height")?;
    }
    if r.flag("overscan_info_present_flag")? {
        r.flag("overscan_appropriate_flag")?;
    }
    if r.flag("video_signal_type_present_flag")? {
        r.u(3, "video_format")?;
        r.flag("video_full_range_flag")?;
        if r.flag("colour_description_present_flag")? {
            r.u(8, "colour_primaries")?;
            r.u(8, "transfer_characteristics")?;
            r.u(8, "matrix_coefficients")?;
        }
    }
    if r.flag("chroma_loc_info_present_flag")? {
        r.ue("chroma_sample_loc_type_top_field")?;
        r.ue("chroma_sample_loc_type_bottom_field")?;
    }
    if !r.flag("timing_info_present_flag")? {
        return Ok(None);
    }
    let num_units_in_tick = r.u(32, "num_units_in_tick")?;
    let time_scale = r.u(32, "time_scale")?;
    // §E.2.1: both "shall be greater than 0"; an encoder that writes 0 told us nothing.
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    Ok(Some(
        f64::from(time_scale) / (2.0 * f64::from(num_units_in_tick)),
    ))
}

/// Reads bytes of the record, reporting a short record with the field and offset.
struct RecordReader<'a> {
    record: &'a [u8],
    offset: usize,
}

impl<'a> RecordReader<'a> {
    fn take(&mut self, need: usize, what: &'static str) -> Result<&'a [u8], AvcError> {
        let bytes = self
            .offset
            .checked_add(need)
            .and_then(|end| self.record.get(self.offset..end))
            .ok_or(AvcError::RecordTruncated {
                what,
                offset: self.offset,
                need,
                len: self.record.len(),
            })?;
        self.offset += need;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, AvcError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, AvcError> {
        let bytes = self.take(2, what)?;
        Ok(bytes.try_into().map(u16::from_be_bytes).unwrap_or_default())
    }

    /// `count` NAL units, each preceded by a 16-bit length.
    fn nal_units(&mut self, count: u8, what: &'static str) -> Result<Vec<Bytes>, AvcError> {
        (0..count)
            .map(|_| {
                let len = usize::from(self.u16(what)?);
                Ok(Bytes::copy_from_slice(self.take(len, what)?))
            })
            .collect()
    }
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1.2), as an FLV
    /// AVC sequence header carries it, and reads size, profile and frame rate from its
    /// first SPS. The record is kept verbatim for `avcC`.
    pub fn from_record(record: Bytes) -> Result<AvcConfig, AvcError> {
        let mut r = RecordReader {
            record: &record,
            offset: 0,
        };
        let configuration_version = r.u8("configurationVersion")?;
        if configuration_version != 1 {
            return Err(AvcError::RecordInvalid {
                what: "configurationVersion",
                offset: 0,
                reason: format!("{configuration_version}, expected 1"),
            });
        }
        r.take(
            3,
            "AVCProfileIndication/profile_compatibility/AVCLevelIndication",
        )?;
        let nal_length_size = (r.u8("lengthSizeMinusOne")? & 0x03) + 1;
        if nal_length_size == 3 {
            // §5.3.3.1.2: "the value 2 is not supported" for lengthSizeMinusOne.
            return Err(AvcError::RecordInvalid {
                what: "lengthSizeMinusOne",
                offset: 4,
                reason: "2 (3-byte NAL unit lengths) is not allowed".into(),
            });
        }
        let sps_offset = r.offset;
        let num_sps = r.u8("numOfSequenceParameterSets")? & 0x1f;
        let sps = r.nal_units(num_sps, "sequenceParameterSetNALUnit")?;
        let num_pps = r.u8("numOfPictureParameterSets")?;
        let pps = r.nal_units(num_pps, "pictureParameterSetNALUnit")?;
        // Anything after the PPS list is the high-profile extension (chroma format, bit
        // depths, SPS extensions); its values repeat the SPS, so it stays in the verbatim
        // record and is not read again here.
        let first_sps = sps.first().ok_or_else(|| AvcError::RecordInvalid {
            what: "numOfSequenceParameterSets",
            offset: sps_offset,
            reason: "no SPS; a decoder cannot start".into(),
        })?;
        if pps.is_empty() {
            return Err(AvcError::RecordInvalid {
                what: "numOfPictureParameterSets",
                offset: r.offset,
                reason: "no PPS; a decoder cannot start".into(),
            });
        }
        let parsed = parse_sps(first_sps)?;
        Ok(AvcConfig {
            record,
            sps,
            pps,
            nal_length_size,
            profile_idc: parsed.profile_idc,
            profile_compatibility: parsed.constraint_flags,
            level_idc: parsed.level_idc,
            width: parsed.width,
            height: parsed.height,
            frame_rate: parsed.frame_rate,
        })
    }

    /// Builds the configuration from in-band SPS and PPS NAL units (SRT/MPEG-TS, RTSP),
    /// writing the AVCDecoderConfigurationRecord of ISO/IEC 14496-15 §5.3.3.1.2 with
    /// 4-byte NAL unit lengths (what `annexb_to_avcc` produces).
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<AvcConfig, AvcError> {
        let parsed = parse_sps(sps)?;
        let pps_type = pps.first().map(|h| h & 0x1f).unwrap_or_default();
        if pps_type != NAL_UNIT_TYPE_PPS {
            return Err(AvcError::WrongNalUnitType {
                expected: "PPS",
                found: pps_type,
            });
        }
        let sps_len = u16::try_from(sps.len()).map_err(|_| AvcError::NalUnitTooLarge {
            len: sps.len(),
            size: 2,
        })?;
        let pps_len = u16::try_from(pps.len()).map_err(|_| AvcError::NalUnitTooLarge {
            len: pps.len(),
            size: 2,
        })?;
        let mut record = BytesMut::with_capacity(11 + sps.len() + pps.len() + 4);
        record.put_u8(1); // configurationVersion
        record.put_u8(parsed.profile_idc);
        record.put_u8(parsed.constraint_flags);
        record.put_u8(parsed.level_idc);
        record.put_u8(0xfc | 3); // reserved '111111'b, lengthSizeMinusOne = 3
        record.put_u8(0xe0 | 1); // reserved '111'b, numOfSequenceParameterSets = 1
        record.put_u16(sps_len);
        record.put_slice(sps);
        record.put_u8(1); // numOfPictureParameterSets
        record.put_u16(pps_len);
        record.put_slice(pps);
        if matches!(parsed.profile_idc, 100 | 110 | 122 | 144) {
            // §5.3.3.1.2: these profiles carry chroma format and bit depths.
            // The values are ≤ 3 and ≤ 6, checked by parse_sps.
            record.put_u8(0xfc | parsed.chroma_format_idc as u8);
            record.put_u8(0xf8 | parsed.bit_depth_luma_minus8 as u8);
            record.put_u8(0xf8 | parsed.bit_depth_chroma_minus8 as u8);
            record.put_u8(0); // numOfSequenceParameterSetExt
        }
        Ok(AvcConfig {
            record: record.freeze(),
            sps: vec![Bytes::copy_from_slice(sps)],
            pps: vec![Bytes::copy_from_slice(pps)],
            nal_length_size: 4,
            profile_idc: parsed.profile_idc,
            profile_compatibility: parsed.constraint_flags,
            level_idc: parsed.level_idc,
            width: parsed.width,
            height: parsed.height,
            frame_rate: parsed.frame_rate,
        })
    }
}

/// The NAL units of an Annex B byte stream (H.264 §B.2), without start codes. Bytes before
/// the first start code and the zero bytes before each start code (trailing_zero_8bits)
/// are not part of any NAL unit.
pub fn annexb_nal_units(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    AnnexBNalUnits {
        rest: skip_to_payload(stream),
    }
}

struct AnnexBNalUnits<'a> {
    /// The stream just after a start code, or empty when done.
    rest: &'a [u8],
}

/// Position just after the next `00 00 01`, if any.
fn start_code_end(data: &[u8]) -> Option<(usize, usize)> {
    data.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|at| (at, at + 3))
}

fn skip_to_payload(stream: &[u8]) -> &[u8] {
    match start_code_end(stream) {
        Some((_, end)) => stream.get(end..).unwrap_or_default(),
        None => &[],
    }
}

impl<'a> Iterator for AnnexBNalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (nal, rest) = match start_code_end(self.rest) {
                Some((at, end)) => (
                    self.rest.get(..at).unwrap_or_default(),
                    self.rest.get(end..).unwrap_or_default(),
                ),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            // A 4-byte start code's leading zero and trailing_zero_8bits end up here; a NAL
            // unit itself never ends in a zero byte (§7.4.1: rbsp_trailing_bits).
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            let nal = nal.get(..end).unwrap_or_default();
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// Converts an Annex B access unit into ISO/IEC 14496-15 sample form: each NAL unit
/// preceded by its 4-byte big-endian length (`nal_length_size` 4).
pub fn annexb_to_avcc(stream: &[u8]) -> Result<Vec<u8>, AvcError> {
    let mut out = Vec::with_capacity(stream.len() + 16);
    for nal in annexb_nal_units(stream) {
        let len = u32::try_from(nal.len()).map_err(|_| AvcError::NalUnitTooLarge {
            len: nal.len(),
            size: 4,
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANNEXB: &[u8] = include_bytes!("../testdata/ffmpeg_h264_320x240_annexb.h264");

    fn parameter_sets(stream: &[u8]) -> (&[u8], &[u8]) {
        let sps = annexb_nal_units(stream)
            .find(|n| n[0] & 0x1f == NAL_UNIT_TYPE_SPS)
            .unwrap();
        let pps = annexb_nal_units(stream)
            .find(|n| n[0] & 0x1f == NAL_UNIT_TYPE_PPS)
            .unwrap();
        (sps, pps)
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        // §7.4.1: 0x000003 within a NAL unit is 0x0000 in the RBSP; 00 00 03 03 keeps
        // the second 03.
        assert_eq!(
            nal_unit_to_rbsp(&[0x67, 0, 0, 3, 1, 0, 0, 3, 3, 0, 0, 3]),
            [0x67, 0, 0, 1, 0, 0, 3, 0, 0]
        );
    }

    #[test]
    fn annexb_stream_splits_into_nal_units() {
        let nals: Vec<&[u8]> = annexb_nal_units(ANNEXB).collect();
        let types: Vec<u8> = nals.iter().map(|n| n[0] & 0x1f).collect();
        // x264 emits SPS, PPS, SEI (its settings) and an IDR slice first, then 4 P-frames.
        assert_eq!(&types[..4], &[7, 8, 6, 5]);
        assert_eq!(types.iter().filter(|&&t| t == 1).count(), 4);
        assert!(
            nals.iter()
                .all(|n| !n.is_empty() && *n.last().unwrap() != 0)
        );

        let avcc = annexb_to_avcc(ANNEXB).unwrap();
        // Walk the length prefixes back: the same NAL units, in order.
        let mut rest = &avcc[..];
        for nal in &nals {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            assert_eq!(&rest[4..4 + len], *nal);
            rest = &rest[4 + len..];
        }
        assert!(rest.is_empty());
        // Three- and four-byte start codes, and leading garbage, split the same way.
        let mixed = [9, 9, 0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0];
        let split: Vec<&[u8]> = annexb_nal_units(&mixed).collect();
        assert_eq!(split, [&[0x67, 1][..], &[0x68, 2][..]]);
        assert_eq!(annexb_nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn sps_of_x264_320x240_high() {
        let (sps, _) = parameter_sets(ANNEXB);
        let sps = parse_sps(sps).unwrap();
        assert_eq!(sps.profile_idc, 100);
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(sps.chroma_format_idc, 1);
        assert!(sps.frame_mbs_only_flag);
        assert_eq!(sps.frame_rate, Some(30.0));
    }

    #[test]
    fn record_from_in_band_parameter_sets() {
        let (sps, pps) = parameter_sets(ANNEXB);
        let config = AvcConfig::from_parameter_sets(sps, pps).unwrap();
        assert_eq!((config.width, config.height), (320, 240));
        assert_eq!(config.nal_length_size, 4);
        // The record we wrote parses back to the same parameter sets.
        let reparsed = AvcConfig::from_record(config.record.clone()).unwrap();
        assert_eq!(reparsed, config);
        // High profile: §5.3.3.1.2 extension present (4:2:0, 8-bit, no SPS ext).
        assert_eq!(
            &config.record[config.record.len() - 4..],
            &[0xfd, 0xf8, 0xf8, 0]
        );

        assert_eq!(
            AvcConfig::from_parameter_sets(sps, sps),
            Err(AvcError::WrongNalUnitType {
                expected: "PPS",
                found: 7
            })
        );
        assert!(matches!(
            AvcConfig::from_parameter_sets(pps, pps),
            Err(AvcError::WrongNalUnitType { .. })
        ));
    }

    #[test]
    fn truncated_sps_is_an_error_never_a_panic() {
        let (sps, _) = parameter_sets(ANNEXB);
        let full = parse_sps(sps).unwrap();
        for len in 0..sps.len() {
            // We stop reading at the VUI timing info, so a cut after it still parses;
            // any cut before it must fail rather than invent a size or rate.
            if let Ok(parsed) = parse_sps(&sps[..len]) {
                assert_eq!(parsed, full, "prefix {len}");
            }
        }
        assert!(parse_sps(&sps[..8]).is_err());
        for byte in 0..=255u8 {
            let mut garbage = sps.to_vec();
            garbage[4] = byte;
            let _ = parse_sps(&garbage);
        }
    }

    #[test]
    fn record_errors_carry_offsets() {
        assert_eq!(
            AvcConfig::from_record(Bytes::from_static(&[1, 100, 0, 13, 0xff, 0xe1, 0, 30])),
            Err(AvcError::RecordTruncated {
                what: "sequenceParameterSetNALUnit",
                offset: 8,
                need: 30,
                len: 8
            })
        );
        assert!(matches!(
            AvcConfig::from_record(Bytes::from_static(&[0, 100, 0, 13])),
            Err(AvcError::RecordInvalid {
                what: "configurationVersion",
                ..
            })
        ));
        assert!(matches!(
            AvcConfig::from_record(Bytes::from_static(&[1, 100, 0, 13, 0xfe, 0xe0, 0])),
            Err(AvcError::RecordInvalid {
                what: "lengthSizeMinusOne",
                ..
            })
        ));
        assert!(matches!(
            AvcConfig::from_record(Bytes::from_static(&[1, 100, 0, 13, 0xff, 0xe0, 0])),
            Err(AvcError::RecordInvalid {
                what: "numOfSequenceParameterSets",
                ..
            })
        ));
    }
}
