//! One init for archived and re-encoded GOPs alike. A GOP re-encoded from a publisher's
//! video (the `source` rendition) gets x264's SPS and PPS, which differ from the
//! publisher's. Rather than a second init and an EXT-X-DISCONTINUITY (which the ffmpeg
//! CLI's HLS demuxer, among others, does not follow: it keeps the first init's parameter
//! sets and fails to decode the rest), the re-encoded GOP's parameter sets take ids the
//! archived ones do not use (x264 `sps-id`), at the archived level, and one avcC lists
//! both (ISO/IEC 14496-15 §5.3.3.1: a record may carry several SPS and PPS; slices name
//! theirs by id). Every segment of the rendition then decodes with that one init, and
//! the timeline needs no discontinuity.

use bytes::{BufMut, Bytes, BytesMut};
use floodlight_media::AvcConfig;
use floodlight_media::avc::parse_sps;

/// x264 numbers its SPS and PPS alike, 0 to 31 (`sps-id`).
const MAX_X264_ID: u8 = 31;
/// Profiles whose avcC carries chroma format and bit depths (ISO/IEC 14496-15
/// §5.3.3.1.2).
const EXTENDED_PROFILES: [u8; 4] = [100, 110, 122, 144];

/// The smallest id that neither an SPS nor a PPS of `config` uses, for x264 to number a
/// re-encoded GOP's parameter sets with.
pub(super) fn free_id(config: &AvcConfig) -> Option<u8> {
    let sps_ids: Vec<u32> = config
        .sps
        .iter()
        .map(|nal| parse_sps(nal).map(|s| s.seq_parameter_set_id))
        .collect::<Result<_, _>>()
        .ok()?;
    let pps_ids: Vec<u32> = config
        .pps
        .iter()
        .map(|nal| pps_id(nal))
        .collect::<Option<_>>()?;
    (0..=MAX_X264_ID)
        .find(|&id| !sps_ids.contains(&u32::from(id)) && !pps_ids.contains(&u32::from(id)))
}

/// The AVCDecoderConfigurationRecord listing `archived`'s parameter sets and then
/// `extra`'s, or `None` when one record cannot describe both: different profiles, ids in
/// common, another NAL unit length, or anything but 8-bit 4:2:0 (the record holds one
/// chroma format and bit depth).
pub(super) fn combined(archived: &AvcConfig, extra: &AvcConfig) -> Option<AvcConfig> {
    if archived.nal_length_size != 4 || extra.nal_length_size != 4 {
        return None;
    }
    if archived.profile_idc != extra.profile_idc {
        return None;
    }
    let mut sps_ids = Vec::new();
    for nal in archived.sps.iter().chain(&extra.sps) {
        let sps = parse_sps(nal).ok()?;
        let eight_bit_420 = sps.chroma_format_idc == 1
            && sps.bit_depth_luma_minus8 == 0
            && sps.bit_depth_chroma_minus8 == 0;
        if !eight_bit_420 || sps_ids.contains(&sps.seq_parameter_set_id) {
            return None;
        }
        sps_ids.push(sps.seq_parameter_set_id);
    }
    let mut pps_ids = Vec::new();
    for nal in archived.pps.iter().chain(&extra.pps) {
        let id = pps_id(nal)?;
        if pps_ids.contains(&id) {
            return None;
        }
        pps_ids.push(id);
    }
    let extended = EXTENDED_PROFILES.contains(&archived.profile_idc);
    if extended && has_sps_extensions(archived)? {
        return None;
    }
    let (sps_count, pps_count) = (sps_ids.len(), pps_ids.len());
    if sps_count > 31 || pps_count > 255 {
        return None;
    }
    let mut record = BytesMut::new();
    record.put_u8(1); // configurationVersion
    record.put_u8(archived.profile_idc);
    // §5.3.3.1.2: the compatibility flags every SPS has, and a level no SPS exceeds.
    record.put_u8(archived.profile_compatibility & extra.profile_compatibility);
    record.put_u8(archived.level_idc.max(extra.level_idc));
    record.put_u8(0xfc | 3); // lengthSizeMinusOne = 3
    record.put_u8(0xe0 | sps_count as u8);
    for nal in archived.sps.iter().chain(&extra.sps) {
        record.put_u16(u16::try_from(nal.len()).ok()?);
        record.put_slice(nal);
    }
    record.put_u8(pps_count as u8);
    for nal in archived.pps.iter().chain(&extra.pps) {
        record.put_u16(u16::try_from(nal.len()).ok()?);
        record.put_slice(nal);
    }
    if extended {
        record.put_u8(0xfc | 1); // chroma_format 4:2:0
        record.put_u8(0xf8); // bit_depth_luma_minus8 = 0
        record.put_u8(0xf8); // bit_depth_chroma_minus8 = 0
        record.put_u8(0); // numOfSequenceParameterSetExt
    }
    AvcConfig::from_record(record.freeze()).ok()
}

/// Whether the record lists SequenceParameterSetExt NAL units (after its PPS list), which
/// a rewritten record would have to carry over. `None` for a record too short to say.
fn has_sps_extensions(config: &AvcConfig) -> Option<bool> {
    let sets: usize = config
        .sps
        .iter()
        .chain(&config.pps)
        .map(|n| 2 + n.len())
        .sum();
    // Header (5), SPS count, PPS count, the sets, then chroma, two depths, the count.
    let at = 5 + 1 + 1 + sets + 3;
    Some(config.record.get(at).copied().unwrap_or(0) > 0)
}

/// `pic_parameter_set_id`, the PPS's first syntax element (H.264 §7.3.2.2): ue(v) after
/// the NAL unit header.
fn pps_id(nal: &[u8]) -> Option<u32> {
    let rbsp = unescape(nal.get(1..)?);
    let bit = |i: usize| rbsp.get(i / 8).map(|b| u32::from(b >> (7 - i % 8) & 1));
    let mut zeros = 0;
    while bit(zeros)? == 0 {
        zeros += 1;
        if zeros > 31 {
            return None;
        }
    }
    let mut value = 0u32;
    for i in 0..zeros {
        value = value << 1 | bit(zeros + 1 + i)?;
    }
    Some((1u32 << zeros) - 1 + value)
}

/// The RBSP of a NAL unit payload: emulation prevention bytes (`00 00 03`) removed
/// (H.264 §7.4.1).
fn unescape(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &byte in payload {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::av::{H264Profile, RungEncoding, VideoEncoder};

    /// x264's parameter sets for 320x240 at 30 fps, numbered `id`, at `level`.
    fn x264(id: u8, level: Option<u8>, profile: H264Profile) -> AvcConfig {
        let encoding = RungEncoding {
            // Not ultrafast: without CABAC x264 writes Baseline whatever profile is asked.
            preset: "veryfast".to_string(),
            threads: 1,
            vbv_buffer_ms: 1000,
        };
        let mut settings = encoding.settings((320, 240), (30, 1), 300_000, profile, 180_000);
        settings.parameter_set_id = id;
        settings.level_idc = level;
        VideoEncoder::new(&settings).unwrap().config().clone()
    }

    #[test]
    fn x264_numbers_its_parameter_sets_apart_at_the_level_asked() {
        let live = x264(0, None, H264Profile::High);
        assert_eq!(free_id(&live), Some(1));
        let apart = x264(1, Some(40), H264Profile::High);
        assert_eq!(parse_sps(&apart.sps[0]).unwrap().seq_parameter_set_id, 1);
        assert_eq!(pps_id(&apart.pps[0]), Some(1));
        assert_eq!(apart.level_idc, 40);

        let both = combined(&live, &apart).unwrap();
        assert_eq!((both.sps.len(), both.pps.len()), (2, 2));
        assert_eq!((&both.sps[0], &both.sps[1]), (&live.sps[0], &apart.sps[0]));
        // ISO/IEC 14496-15 §5.3.3.1.2: the highest level of the sets, the flags they share
        // (AVCLevelIndication, profile_compatibility); the archived SPS stays the first.
        assert_eq!(both.record[3], 40.max(live.level_idc));
        assert_eq!(
            both.record[2],
            live.profile_compatibility & apart.profile_compatibility
        );
        assert_eq!((both.profile_idc, both.level_idc), (100, live.level_idc));
        assert_eq!((both.width, both.height), (320, 240));
        assert_eq!(free_id(&both), Some(2));
    }

    #[test]
    fn one_record_refuses_what_it_cannot_describe() {
        let live = x264(0, None, H264Profile::High);
        // The same ids twice.
        assert!(combined(&live, &live).is_none());
        // Two profiles: the record names one.
        assert!(combined(&live, &x264(1, None, H264Profile::Main)).is_none());
        // 2-byte NAL unit lengths in the archived samples: x264's are 4 bytes.
        let mut record = live.record.to_vec();
        record[4] = 0xfc | 1;
        let short = AvcConfig::from_record(Bytes::from(record)).unwrap();
        assert!(combined(&short, &x264(1, None, H264Profile::High)).is_none());
    }

    #[test]
    fn pps_ids_are_read_as_exp_golomb() {
        // ue(v): 1 → 0, 010 → 1, 011 → 2, 00100 → 3 (H.264 §9.1).
        for (bits, id) in [
            (0b1000_0000, 0),
            (0b0100_0000, 1),
            (0b0110_0000, 2),
            (0b0010_0000, 3),
        ] {
            assert_eq!(pps_id(&[0x68, bits]), Some(id));
        }
        assert_eq!(pps_id(&[0x68]), None);
        assert_eq!(pps_id(&[0x68, 0, 0, 0, 0, 0]), None);
    }
}
