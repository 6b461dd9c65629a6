//! Silent AAC access units: what the audio rendition carries where the publisher sent no
//! audio, so it keeps a segment for every MSN the video has (see `docs/packaging.md`).
//!
//! A silent frame is a `raw_data_block()` (ISO/IEC 14496-3 §4.4.2.1) with one element per
//! channel element of the channel configuration, each coding no spectral data: a long
//! window with `max_sfb = 0`, so there are no sections, scale factors or spectral
//! coefficients (§4.4.2.7, §4.6.2), and the decoder outputs zeros. The bitstream does not
//! depend on the sampling rate. HE-AAC (explicit SBR/PS signalling, object types 5 and
//! 29) has an AAC-LC core; a core frame without SBR or PS extension data is silent too.

use bytes::Bytes;

use crate::track::AacConfig;

/// `id_syn_ele` values (ISO/IEC 14496-3 Table 4.85).
const ID_SCE: u32 = 0;
const ID_CPE: u32 = 1;
const ID_LFE: u32 = 3;
const ID_END: u32 = 7;

/// Any value: with no scale factor bands coded it scales nothing.
const GLOBAL_GAIN: u32 = 100;

/// One silent access unit for `config`, or `None` for a layout we cannot write: object
/// types other than AAC Main/LC/LTP and HE-AAC (v2), or more than 6 channels (channel
/// configurations 7 and up are ambiguous from the channel count alone).
pub(crate) fn silent_access_unit(config: &AacConfig) -> Option<Bytes> {
    if !matches!(config.object_type, 1 | 2 | 4 | 5 | 29) {
        return None;
    }
    // ISO/IEC 14496-3 Table 1.19: the syntactic elements of channelConfiguration 1..=6,
    // in order.
    let elements: &[u32] = match config.channels {
        1 => &[ID_SCE],
        2 => &[ID_CPE],
        3 => &[ID_SCE, ID_CPE],
        4 => &[ID_SCE, ID_CPE, ID_SCE],
        5 => &[ID_SCE, ID_CPE, ID_CPE],
        6 => &[ID_SCE, ID_CPE, ID_CPE, ID_LFE],
        _ => return None,
    };
    let mut bits = BitWriter::default();
    let mut instance_tags = [0_u32; 4];
    for &element in elements {
        bits.put(element, 3);
        // element_instance_tag: elements of one kind are numbered in order.
        let tag = usize::try_from(element)
            .ok()
            .and_then(|e| instance_tags.get_mut(e))?;
        bits.put(*tag, 4);
        *tag += 1;
        if element == ID_CPE {
            // common_window = 0: each channel carries its own ics_info.
            bits.put(0, 1);
            silent_channel_stream(&mut bits);
        }
        silent_channel_stream(&mut bits);
    }
    bits.put(ID_END, 3);
    Some(bits.into_bytes())
}

/// `individual_channel_stream(common_window = 0, scale_flag = 0)` (§4.4.2.7) with its
/// `ics_info()` (§4.4.2.1, Table 4.6) and no coded bands.
fn silent_channel_stream(bits: &mut BitWriter) {
    bits.put(GLOBAL_GAIN, 8);
    bits.put(0, 1); // ics_reserved_bit
    bits.put(0, 2); // window_sequence: ONLY_LONG_SEQUENCE
    bits.put(0, 1); // window_shape: sine
    bits.put(0, 6); // max_sfb: no scale factor bands, so no section/scalefactor data
    bits.put(0, 1); // predictor_data_present (Main: prediction; LTP: ltp_data)
    bits.put(0, 1); // pulse_data_present
    bits.put(0, 1); // tns_data_present
    bits.put(0, 1); // gain_control_data_present
}

/// MSB-first bit writer; the last byte is padded with zeros (byte_alignment()).
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte, 0..8 (0: a new byte starts).
    used: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, width: u32) {
        for i in (0..width).rev() {
            if self.used == 0 {
                self.bytes.push(0);
            }
            if let Some(last) = self.bytes.last_mut() {
                *last |= (((value >> i) & 1) as u8) << (7 - self.used);
            }
            self.used = (self.used + 1) % 8;
        }
    }

    fn into_bytes(self) -> Bytes {
        Bytes::from(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(object_type: u8, channels: u8) -> AacConfig {
        AacConfig {
            asc: Bytes::new(),
            object_type,
            sample_rate: 48_000,
            channels,
        }
    }

    #[test]
    fn silent_frames_for_mono_and_stereo() {
        // Pinned bytes, decoded by ffmpeg to exact silence (docs/packaging.md).
        // SCE: 000 0000 | global_gain 01100100 | ics_info 0 00 0 000000 0 | 0 0 0 | END 111.
        assert_eq!(
            &silent_access_unit(&config(2, 1)).unwrap()[..],
            [0x00, 0xc8, 0x00, 0x07]
        );
        // CPE: 001 0000 | common_window 0 | two channel streams as above | END.
        assert_eq!(
            &silent_access_unit(&config(2, 2)).unwrap()[..],
            [0x20, 0x64, 0x00, 0x01, 0x90, 0x00, 0x0e]
        );
        // HE-AAC: the same core frame; 5.1: SCE, CPE, CPE, LFE (Table 1.19).
        assert_eq!(
            silent_access_unit(&config(5, 2)),
            silent_access_unit(&config(2, 2))
        );
        assert_eq!(silent_access_unit(&config(2, 6)).unwrap().len(), 21);
    }

    #[test]
    fn layouts_without_a_silent_frame() {
        assert!(silent_access_unit(&config(2, 8)).is_none());
        assert!(silent_access_unit(&config(3, 2)).is_none());
    }
}
