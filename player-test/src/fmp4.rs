//! What the player checks in fMP4 bytes, decoded with mp4-atom (a third-party reader):
//! the init segment must describe one decodable track, and every part must be CMAF
//! chunks (moof + mdat) of that track whose sample table adds up.

use mp4_atom::{Any, Codec, DecodeMaybe, Header, Moof, Moov, Traf, Trex};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Fmp4Error {
    /// The mp4-atom error is part of the message (not a `source()`): these errors end up
    /// as lines of the report.
    #[error("mp4-atom could not decode the box at byte {offset}: {error}")]
    Decode {
        offset: usize,
        error: mp4_atom::Error,
    },
    #[error("truncated box at byte {offset}")]
    Truncated { offset: usize },
    #[error("no {0} box")]
    MissingBox(&'static str),
    #[error("unexpected {kind} box at byte {offset}")]
    UnexpectedBox { kind: String, offset: usize },
    #[error("{found} tracks in the init segment; CMAF wants exactly one (ISO/IEC 23000-19)")]
    TrackCount { found: usize },
    #[error("{found} traf boxes in a moof; a one-track CMAF fragment has exactly one")]
    TrafCount { found: usize },
    #[error("mdhd timescale is 0 (ISO/IEC 14496-12 §8.4.2)")]
    ZeroTimescale,
    #[error("stsd has {found} sample entries; expected one")]
    SampleEntryCount { found: usize },
    #[error("unsupported sample entry {0}: expected avc1 or mp4a")]
    UnsupportedSampleEntry(String),
    #[error(
        "avcC has {sps} SPS and {pps} PPS; a decoder needs at least one of each (ISO/IEC 14496-15 §5.3.3)"
    )]
    MissingParameterSets { sps: usize, pps: usize },
    #[error("esds has no DecoderSpecificInfo: no AudioSpecificConfig to decode AAC with")]
    MissingAudioSpecificConfig,
    #[error("no trex for track {track_id} in mvex (ISO/IEC 14496-12 §8.8.3)")]
    MissingTrex { track_id: u32 },
    #[error("fragment is for track {fragment}, the init segment describes track {init}")]
    TrackMismatch { init: u32, fragment: u32 },
    #[error(
        "tfhd must set default-base-is-moof without base-data-offset (CMAF, ISO/IEC 14496-12 §8.8.7)"
    )]
    BaseNotMoof,
    #[error("trun data_offset {found:?} does not point at the mdat payload (expected {expected})")]
    DataOffset { found: Option<i32>, expected: u64 },
    #[error("trun sample sizes add up to {samples} bytes but the mdat holds {mdat}")]
    MdatSize { samples: u64, mdat: usize },
    #[error("chunk {index} of the part starts at tfdt {found}, previous chunk ended at {expected}")]
    ChunkGap {
        index: usize,
        found: u64,
        expected: u64,
    },
    #[error("fragment has no samples")]
    Empty,
    #[error(
        "the byte range holds {have} bytes but its first sample ends at byte {needed} (RFC 8216bis §4.4.3.6: the range must hold the whole I-frame)"
    )]
    IFrameCut { needed: u64, have: usize },
}

/// The one track an init segment describes.
#[derive(Debug, Clone, PartialEq)]
pub struct InitInfo {
    pub track_id: u32,
    /// mdhd timescale: units per second of tfdt and sample durations.
    pub timescale: u32,
    pub sample_entry: SampleEntry,
    /// trex defaults, the last fallback for sample duration, size and flags.
    defaults: Trex,
}

/// The decodable sample entries this player knows.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleEntry {
    /// H.264 with parameter sets in avcC (ISO/IEC 14496-15 §5.4.2).
    Avc1 {
        width: u16,
        height: u16,
        profile: u8,
        level: u8,
    },
    /// AAC with an AudioSpecificConfig in esds (ISO/IEC 14496-14).
    Mp4a {
        channel_count: u16,
        sample_rate: u16,
        /// MPEG-4 audio object type from the AudioSpecificConfig (2 = AAC-LC).
        object_type: u8,
    },
}

impl std::fmt::Display for SampleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SampleEntry::Avc1 {
                width,
                height,
                profile,
                level,
            } => write!(f, "avc1 {width}x{height} profile {profile} level {level}"),
            SampleEntry::Mp4a {
                channel_count,
                sample_rate,
                object_type,
            } => write!(
                f,
                "mp4a object type {object_type}, {channel_count} ch, {sample_rate} Hz"
            ),
        }
    }
}

/// What one part (one or more CMAF chunks) says about its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// tfdt baseMediaDecodeTime of the first chunk, track timescale.
    pub base_media_decode_time: u64,
    /// Sum of all sample durations, track timescale.
    pub duration: u64,
    pub sample_count: u64,
    /// The first sample's `sample_is_non_sync_sample` flag is clear.
    pub first_sample_is_sync: bool,
}

/// What an I-frame playlist entry's byte range holds (RFC 8216bis §4.4.3.6): a moof and the
/// start of its mdat, through the end of the first sample, the I-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IFrameInfo {
    /// tfdt baseMediaDecodeTime of the chunk, track timescale.
    pub base_media_decode_time: u64,
    /// The first sample's composition offset: it is presented at tfdt + this.
    pub composition_offset: i64,
    pub duration: u32,
    /// The first sample's `sample_is_non_sync_sample` flag is clear.
    pub is_sync: bool,
    /// Bytes from the start of the range through the end of the first sample.
    pub needed: u64,
}

impl IFrameInfo {
    /// Presentation time of the I-frame, track timescale.
    pub fn presentation_time(&self) -> i128 {
        i128::from(self.base_media_decode_time) + i128::from(self.composition_offset)
    }
}

/// Decodes the top-level boxes of `bytes`, with each box's byte offset and length.
fn top_level_boxes(bytes: &[u8]) -> Result<Vec<(usize, usize, Any)>, Fmp4Error> {
    let mut boxes = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let before = rest.len();
        match Any::decode_maybe(&mut rest) {
            Ok(Some(atom)) => boxes.push((offset, before - rest.len(), atom)),
            Ok(None) => return Err(Fmp4Error::Truncated { offset }),
            Err(error) => return Err(Fmp4Error::Decode { offset, error }),
        }
    }
    Ok(boxes)
}

/// Checks that an init segment (ftyp + moov) describes one track a decoder can start
/// from: a timescale, a sample entry with its codec configuration, and trex defaults.
pub fn parse_init(bytes: &[u8]) -> Result<InitInfo, Fmp4Error> {
    let mut ftyp = false;
    let mut moov: Option<Moov> = None;
    for (_, _, atom) in top_level_boxes(bytes)? {
        match atom {
            Any::Ftyp(_) => ftyp = true,
            Any::Moov(m) => moov = Some(m),
            _ => {}
        }
    }
    // ISO/IEC 14496-12 §4.3: files conforming to this edition carry an ftyp.
    if !ftyp {
        return Err(Fmp4Error::MissingBox("ftyp"));
    }
    let moov = moov.ok_or(Fmp4Error::MissingBox("moov"))?;
    let [trak] = moov.trak.as_slice() else {
        return Err(Fmp4Error::TrackCount {
            found: moov.trak.len(),
        });
    };
    let track_id = trak.tkhd.track_id;
    let timescale = trak.mdia.mdhd.timescale;
    if timescale == 0 {
        return Err(Fmp4Error::ZeroTimescale);
    }
    let codecs = &trak.mdia.minf.stbl.stsd.codecs;
    let [codec] = codecs.as_slice() else {
        return Err(Fmp4Error::SampleEntryCount {
            found: codecs.len(),
        });
    };
    let sample_entry = match codec {
        Codec::Avc1(avc1) => {
            let avcc = &avc1.avcc;
            let (sps, pps) = (
                avcc.sequence_parameter_sets.len(),
                avcc.picture_parameter_sets.len(),
            );
            if sps == 0 || pps == 0 {
                return Err(Fmp4Error::MissingParameterSets { sps, pps });
            }
            SampleEntry::Avc1 {
                width: avc1.visual.width,
                height: avc1.visual.height,
                profile: avcc.avc_profile_indication,
                level: avcc.avc_level_indication,
            }
        }
        Codec::Mp4a(mp4a) => {
            let specific = mp4a
                .esds
                .es_desc
                .dec_config
                .dec_specific
                .as_ref()
                .ok_or(Fmp4Error::MissingAudioSpecificConfig)?;
            SampleEntry::Mp4a {
                channel_count: mp4a.audio.channel_count,
                sample_rate: mp4a.audio.sample_rate.integer(),
                object_type: specific.profile,
            }
        }
        other => return Err(Fmp4Error::UnsupportedSampleEntry(format!("{other:?}"))),
    };
    let defaults = moov
        .mvex
        .as_ref()
        .ok_or(Fmp4Error::MissingBox("mvex"))?
        .trex
        .iter()
        .find(|t| t.track_id == track_id)
        .cloned()
        .ok_or(Fmp4Error::MissingTrex { track_id })?;
    Ok(InitInfo {
        track_id,
        timescale,
        sample_entry,
        defaults,
    })
}

/// ISO/IEC 14496-12 §8.8.3.1: bit 16 of the sample flags is `sample_is_non_sync_sample`.
const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// Checks one part: zero or more leading boxes (styp, sidx, prft, emsg, free), then one or more
/// moof + mdat chunks of the init's track, each mdat holding exactly the bytes its trun
/// describes. Returns the part's timing.
pub fn parse_fragment(bytes: &[u8], init: &InitInfo) -> Result<FragmentInfo, Fmp4Error> {
    let mut info: Option<FragmentInfo> = None;
    let mut pending_moof: Option<(usize, Moof)> = None;
    for (index, (offset, length, atom)) in top_level_boxes(bytes)?.into_iter().enumerate() {
        match atom {
            Any::Moof(moof) => {
                if pending_moof.is_some() {
                    return Err(Fmp4Error::UnexpectedBox {
                        kind: "moof".into(),
                        offset,
                    });
                }
                pending_moof = Some((length, moof));
            }
            Any::Mdat(mdat) => {
                let Some((moof_length, moof)) = pending_moof.take() else {
                    return Err(Fmp4Error::UnexpectedBox {
                        kind: "mdat".into(),
                        offset,
                    });
                };
                let header = length - mdat.data.len();
                let chunk = chunk_info(&moof, moof_length, header, mdat.data.len(), init)?;
                info = Some(match info {
                    None => chunk,
                    Some(so_far) => {
                        let expected = so_far.base_media_decode_time + so_far.duration;
                        if chunk.base_media_decode_time != expected {
                            return Err(Fmp4Error::ChunkGap {
                                index,
                                found: chunk.base_media_decode_time,
                                expected,
                            });
                        }
                        FragmentInfo {
                            duration: so_far.duration + chunk.duration,
                            sample_count: so_far.sample_count + chunk.sample_count,
                            ..so_far
                        }
                    }
                });
            }
            Any::Styp(_) | Any::Sidx(_) | Any::Prft(_) | Any::Emsg(_) | Any::Free(_)
                if pending_moof.is_none() => {}
            other => {
                return Err(Fmp4Error::UnexpectedBox {
                    kind: other.kind().to_string(),
                    offset,
                });
            }
        }
    }
    if pending_moof.is_some() {
        return Err(Fmp4Error::MissingBox("mdat"));
    }
    let info = info.ok_or(Fmp4Error::MissingBox("moof"))?;
    if info.sample_count == 0 {
        return Err(Fmp4Error::Empty);
    }
    Ok(info)
}

/// Checks the byte range of an I-frame (RFC 8216bis §4.4.3.6, EXT-X-BYTERANGE §4.4.4.2):
/// leading boxes (styp, sidx, prft, emsg, free), a moof of the init's track, and an mdat
/// whose payload may be cut after the first sample, which the range must hold whole. The
/// moof's own rules (tfhd default-base-is-moof, trun data_offset at the mdat payload) are
/// those of `parse_fragment`.
pub fn parse_iframe(range: &[u8], init: &InitInfo) -> Result<IFrameInfo, Fmp4Error> {
    let mut rest = range;
    let mut moof: Option<(usize, usize, Moof)> = None;
    loop {
        let offset = range.len() - rest.len();
        let mut probe = rest;
        let header = match Header::decode_maybe(&mut probe) {
            Ok(Some(header)) => header,
            Ok(None) if moof.is_some() => return Err(Fmp4Error::MissingBox("mdat")),
            Ok(None) if rest.is_empty() => return Err(Fmp4Error::MissingBox("moof")),
            Ok(None) => return Err(Fmp4Error::Truncated { offset }),
            Err(error) => return Err(Fmp4Error::Decode { offset, error }),
        };
        let header_length = rest.len() - probe.len();
        if header.kind == mp4_atom::FourCC::new(b"mdat") {
            let Some((moof_offset, moof_length, moof)) = moof else {
                return Err(Fmp4Error::UnexpectedBox {
                    kind: "mdat".into(),
                    offset,
                });
            };
            let traf = one_traf(&moof, init)?;
            let first = first_sample(traf, init)?;
            let data_offset = (moof_length + header_length) as u64;
            let found = traf.trun.first().and_then(|t| t.data_offset);
            if found.map(i64::from) != Some(data_offset as i64) {
                return Err(Fmp4Error::DataOffset {
                    found,
                    expected: data_offset,
                });
            }
            let needed = (moof_offset as u64) + data_offset + u64::from(first.size);
            if (range.len() as u64) < needed {
                return Err(Fmp4Error::IFrameCut {
                    needed,
                    have: range.len(),
                });
            }
            return Ok(IFrameInfo {
                base_media_decode_time: traf
                    .tfdt
                    .as_ref()
                    .ok_or(Fmp4Error::MissingBox("tfdt"))?
                    .base_media_decode_time,
                composition_offset: first.cts,
                duration: first.duration,
                is_sync: first.flags & SAMPLE_IS_NON_SYNC == 0,
                needed,
            });
        }
        let before = rest.len();
        let atom = match Any::decode_maybe(&mut rest) {
            Ok(Some(atom)) => atom,
            Ok(None) => return Err(Fmp4Error::Truncated { offset }),
            Err(error) => return Err(Fmp4Error::Decode { offset, error }),
        };
        match atom {
            Any::Moof(m) if moof.is_none() => moof = Some((offset, before - rest.len(), m)),
            Any::Styp(_) | Any::Sidx(_) | Any::Prft(_) | Any::Emsg(_) | Any::Free(_)
                if moof.is_none() => {}
            other => {
                return Err(Fmp4Error::UnexpectedBox {
                    kind: other.kind().to_string(),
                    offset,
                });
            }
        }
    }
}

/// The moof's one traf, for the init's track, based on the moof (CMAF).
fn one_traf<'m>(moof: &'m Moof, init: &InitInfo) -> Result<&'m Traf, Fmp4Error> {
    let [traf] = moof.traf.as_slice() else {
        return Err(Fmp4Error::TrafCount {
            found: moof.traf.len(),
        });
    };
    let tfhd = &traf.tfhd;
    if tfhd.track_id != init.track_id {
        return Err(Fmp4Error::TrackMismatch {
            init: init.track_id,
            fragment: tfhd.track_id,
        });
    }
    if !tfhd.default_base_is_moof || tfhd.base_data_offset.is_some() {
        return Err(Fmp4Error::BaseNotMoof);
    }
    Ok(traf)
}

/// A sample's values after the trun → tfhd → trex fallbacks (ISO/IEC 14496-12 §8.8.8).
struct SampleValues {
    duration: u32,
    size: u32,
    flags: u32,
    cts: i64,
}

fn first_sample(traf: &Traf, init: &InitInfo) -> Result<SampleValues, Fmp4Error> {
    let trun = traf.trun.first().ok_or(Fmp4Error::MissingBox("trun"))?;
    let sample = trun.samples.iter().next().ok_or(Fmp4Error::Empty)?;
    let tfhd = &traf.tfhd;
    Ok(SampleValues {
        duration: sample.duration.unwrap_or(
            tfhd.default_sample_duration
                .unwrap_or(init.defaults.default_sample_duration),
        ),
        size: sample.size.unwrap_or(
            tfhd.default_sample_size
                .unwrap_or(init.defaults.default_sample_size),
        ),
        // mp4-atom folds trun first_sample_flags into the first entry (§8.8.8.1).
        flags: sample.flags.unwrap_or(
            tfhd.default_sample_flags
                .unwrap_or(init.defaults.default_sample_flags),
        ),
        cts: sample.cts.unwrap_or(0),
    })
}

/// One moof + mdat. Sample values resolve trun → tfhd → trex (ISO/IEC 14496-12 §8.8.7,
/// §8.8.8); the sample data must start at the mdat payload (`data_offset` counted from the
/// moof, §8.8.7 default-base-is-moof) and fill it exactly.
fn chunk_info(
    moof: &Moof,
    moof_length: usize,
    mdat_header: usize,
    mdat_payload: usize,
    init: &InitInfo,
) -> Result<FragmentInfo, Fmp4Error> {
    let traf = one_traf(moof, init)?;
    let tfhd = &traf.tfhd;
    let base_media_decode_time = traf
        .tfdt
        .as_ref()
        .ok_or(Fmp4Error::MissingBox("tfdt"))?
        .base_media_decode_time;
    let default_duration = tfhd
        .default_sample_duration
        .unwrap_or(init.defaults.default_sample_duration);
    let default_size = tfhd
        .default_sample_size
        .unwrap_or(init.defaults.default_sample_size);
    let default_flags = tfhd
        .default_sample_flags
        .unwrap_or(init.defaults.default_sample_flags);

    let first_trun = traf.trun.first().ok_or(Fmp4Error::MissingBox("trun"))?;
    let expected_offset = (moof_length + mdat_header) as u64;
    if first_trun.data_offset.map(i64::from) != Some(expected_offset as i64) {
        return Err(Fmp4Error::DataOffset {
            found: first_trun.data_offset,
            expected: expected_offset,
        });
    }
    let mut duration = 0u64;
    let mut size = 0u64;
    let mut sample_count = 0u64;
    let mut first_flags = None;
    for trun in &traf.trun {
        for sample in trun.samples.iter() {
            duration += u64::from(sample.duration.unwrap_or(default_duration));
            size += u64::from(sample.size.unwrap_or(default_size));
            sample_count += 1;
            first_flags.get_or_insert(sample.flags.unwrap_or(default_flags));
        }
    }
    if size != mdat_payload as u64 {
        return Err(Fmp4Error::MdatSize {
            samples: size,
            mdat: mdat_payload,
        });
    }
    Ok(FragmentInfo {
        base_media_decode_time,
        duration,
        sample_count,
        first_sample_is_sync: first_flags.is_some_and(|f| f & SAMPLE_IS_NON_SYNC == 0),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    //! Init segments and parts built with mp4-atom's encoder, so the tests exercise the
    //! same byte layout a CMAF writer produces.

    use super::*;
    use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor};
    use mp4_atom::{
        Audio, Avc1, Avcc, Dinf, Encode, Esds, FixedPoint, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Mfhd,
        Minf, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trun, TrunEntry,
        Visual, Vmhd,
    };

    /// sample_depends_on = 1 (depends on others) + sample_is_non_sync_sample.
    pub(crate) const NON_SYNC: u32 = 0x0101_0000;
    /// sample_depends_on = 2 (an I picture), sync.
    pub(crate) const SYNC: u32 = 0x0200_0000;

    pub(crate) fn video_init(track_id: u32, timescale: u32) -> Vec<u8> {
        let avc1 = Avc1 {
            visual: Visual {
                data_reference_index: 1,
                width: 1280,
                height: 720,
                ..Default::default()
            },
            avcc: Avcc {
                configuration_version: 1,
                avc_profile_indication: 100,
                profile_compatibility: 0,
                avc_level_indication: 31,
                length_size: 4,
                sequence_parameter_sets: vec![vec![0x67, 0x64, 0x00, 0x1f, 0xac]],
                picture_parameter_sets: vec![vec![0x68, 0xee, 0x3c, 0x80]],
                ext: None,
            },
            ..Default::default()
        };
        init(track_id, timescale, b"vide", Codec::Avc1(avc1))
    }

    pub(crate) fn audio_init(track_id: u32, sample_rate: u16) -> Vec<u8> {
        let mp4a = Mp4a {
            audio: Audio {
                data_reference_index: 1,
                channel_count: 2,
                sample_size: 16,
                sample_rate: FixedPoint::new(sample_rate, 0),
            },
            esds: Esds {
                es_desc: EsDescriptor {
                    es_id: 1,
                    dec_config: DecoderConfig {
                        object_type_indication: 0x40,
                        stream_type: 5,
                        dec_specific: Some(DecoderSpecific {
                            profile: 2,
                            freq_index: 3,
                            chan_conf: 2,
                            raw: Vec::new(),
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            btrt: None,
            taic: None,
        };
        init(track_id, u32::from(sample_rate), b"soun", Codec::Mp4a(mp4a))
    }

    fn init(track_id: u32, timescale: u32, handler: &[u8; 4], codec: Codec) -> Vec<u8> {
        let audio = handler == b"soun";
        let moov = Moov {
            mvhd: Mvhd {
                timescale: 1000,
                next_track_id: track_id + 1,
                ..Default::default()
            },
            mvex: Some(Mvex {
                mehd: None,
                trex: vec![Trex {
                    track_id,
                    default_sample_description_index: 1,
                    ..Default::default()
                }],
            }),
            trak: vec![Trak {
                tkhd: Tkhd {
                    track_id,
                    enabled: true,
                    ..Default::default()
                },
                mdia: Mdia {
                    mdhd: Mdhd {
                        timescale,
                        language: "und".into(),
                        ..Default::default()
                    },
                    hdlr: Hdlr {
                        handler: handler.into(),
                        name: "floodlight test".into(),
                    },
                    minf: Minf {
                        vmhd: (!audio).then(Vmhd::default),
                        smhd: audio.then(Smhd::default),
                        dinf: Dinf::default(),
                        stbl: Stbl {
                            stsd: Stsd {
                                codecs: vec![codec],
                            },
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                },
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut out = Vec::new();
        Ftyp {
            major_brand: b"cmf2".into(),
            minor_version: 0,
            compatible_brands: vec![b"iso6".into(), b"cmfc".into()],
        }
        .encode(&mut out)
        .expect("ftyp encodes");
        moov.encode(&mut out).expect("moov encodes");
        out
    }

    /// One moof + mdat with explicit per-sample duration, size and flags, and the
    /// data_offset a CMAF writer computes.
    pub(crate) fn chunk(
        track_id: u32,
        sequence_number: u32,
        tfdt: u64,
        samples: &[(u32, u32)],
    ) -> Vec<u8> {
        let sizes: Vec<u32> = (0..samples.len() as u32).map(|i| 10 + i).collect();
        let build = |data_offset: i32| Moof {
            mfhd: Mfhd { sequence_number },
            traf: vec![Traf {
                tfhd: Tfhd {
                    track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: tfdt,
                }),
                trun: vec![Trun {
                    data_offset: Some(data_offset),
                    samples: samples
                        .iter()
                        .zip(&sizes)
                        .map(|(&(duration, flags), &size)| TrunEntry {
                            duration: Some(duration),
                            size: Some(size),
                            flags: Some(flags),
                            cts: Some(0),
                        })
                        .collect::<Vec<_>>()
                        .into(),
                }],
                ..Default::default()
            }],
        };
        let mut probe = Vec::new();
        build(0).encode(&mut probe).expect("moof encodes");
        let mut out = Vec::new();
        build(probe.len() as i32 + 8)
            .encode(&mut out)
            .expect("moof encodes");
        let payload: usize = sizes.iter().map(|&s| s as usize).sum();
        Mdat {
            data: vec![0xAB; payload],
        }
        .encode(&mut out)
        .expect("mdat encodes");
        out
    }

    #[test]
    fn video_init_decodes() {
        let init = parse_init(&video_init(1, 90_000)).expect("decodes");
        assert_eq!(init.track_id, 1);
        assert_eq!(init.timescale, 90_000);
        assert_eq!(
            init.sample_entry,
            SampleEntry::Avc1 {
                width: 1280,
                height: 720,
                profile: 100,
                level: 31
            }
        );
    }

    #[test]
    fn audio_init_decodes() {
        let init = parse_init(&audio_init(2, 48_000)).expect("decodes");
        assert_eq!(init.timescale, 48_000);
        assert_eq!(
            init.sample_entry,
            SampleEntry::Mp4a {
                channel_count: 2,
                sample_rate: 48_000,
                object_type: 2
            }
        );
    }

    #[test]
    fn init_without_moov_or_with_garbage_is_an_error() {
        let bytes = video_init(1, 90_000);
        // Only the ftyp (first 24 bytes: size 8 + brand 4 + version 4 + 2 brands).
        assert!(matches!(
            parse_init(&bytes[..24]),
            Err(Fmp4Error::MissingBox("moov"))
        ));
        assert!(matches!(
            parse_init(&bytes[..bytes.len() - 3]),
            Err(Fmp4Error::Truncated { .. })
        ));
        assert!(parse_init(b"\0\0\0\x08junk\xff\xff").is_err());
    }

    #[test]
    fn part_timing_and_sync_flags() {
        let init = parse_init(&video_init(1, 90_000)).expect("decodes");
        let part = chunk(
            1,
            7,
            180_000,
            &[(3000, SYNC), (3000, NON_SYNC), (3003, NON_SYNC)],
        );
        let info = parse_fragment(&part, &init).expect("decodes");
        assert_eq!(
            info,
            FragmentInfo {
                base_media_decode_time: 180_000,
                duration: 9003,
                sample_count: 3,
                first_sample_is_sync: true,
            }
        );
        let part = chunk(1, 8, 189_003, &[(3000, NON_SYNC)]);
        assert!(
            !parse_fragment(&part, &init)
                .expect("decodes")
                .first_sample_is_sync
        );
    }

    #[test]
    fn part_of_two_chunks_must_be_continuous() {
        let init = parse_init(&video_init(1, 90_000)).expect("decodes");
        let mut part = chunk(1, 1, 0, &[(3000, SYNC)]);
        part.extend(chunk(1, 2, 3000, &[(3000, NON_SYNC)]));
        let info = parse_fragment(&part, &init).expect("decodes");
        assert_eq!((info.duration, info.sample_count), (6000, 2));

        let mut gap = chunk(1, 1, 0, &[(3000, SYNC)]);
        gap.extend(chunk(1, 2, 3500, &[(3000, NON_SYNC)]));
        assert!(matches!(
            parse_fragment(&gap, &init),
            Err(Fmp4Error::ChunkGap {
                found: 3500,
                expected: 3000,
                ..
            })
        ));
    }

    #[test]
    fn part_for_another_track_or_with_bad_mdat_is_an_error() {
        let init = parse_init(&video_init(1, 90_000)).expect("decodes");
        assert!(matches!(
            parse_fragment(&chunk(2, 1, 0, &[(3000, SYNC)]), &init),
            Err(Fmp4Error::TrackMismatch {
                init: 1,
                fragment: 2
            })
        ));
        // Drop the last mdat byte and fix up the mdat size: trun now claims more bytes.
        let mut short = chunk(1, 1, 0, &[(3000, SYNC)]);
        short.pop();
        let moof_len = u32::from_be_bytes(short[0..4].try_into().expect("4 bytes")) as usize;
        let mdat_len = (short.len() - moof_len) as u32;
        short[moof_len..moof_len + 4].copy_from_slice(&mdat_len.to_be_bytes());
        assert!(matches!(
            parse_fragment(&short, &init),
            Err(Fmp4Error::MdatSize {
                samples: 10,
                mdat: 9
            })
        ));
        // A moof without its mdat.
        let whole = chunk(1, 1, 0, &[(3000, SYNC)]);
        assert!(matches!(
            parse_fragment(&whole[..moof_len], &init),
            Err(Fmp4Error::MissingBox("mdat"))
        ));
    }

    #[test]
    fn iframe_byte_range_holds_moof_and_first_sample() {
        let init = parse_init(&video_init(1, 90_000)).expect("decodes");
        let mut segment = chunk(1, 1, 90_000, &[(3000, SYNC), (3000, NON_SYNC)]);
        segment.extend(chunk(1, 2, 96_000, &[(3000, NON_SYNC)]));
        let moof = u32::from_be_bytes(segment[0..4].try_into().expect("4 bytes")) as usize;
        // moof, mdat header, and the first sample (10 bytes in `chunk`).
        let needed = moof + 8 + 10;
        let info = parse_iframe(&segment[..needed], &init).expect("decodes");
        assert_eq!(
            info,
            IFrameInfo {
                base_media_decode_time: 90_000,
                composition_offset: 0,
                duration: 3000,
                is_sync: true,
                needed: needed as u64,
            }
        );
        // The whole segment holds it too; one byte short does not.
        assert_eq!(
            parse_iframe(&segment, &init).expect("decodes").needed,
            needed as u64
        );
        assert!(matches!(
            parse_iframe(&segment[..needed - 1], &init),
            Err(Fmp4Error::IFrameCut { have, .. }) if have == needed - 1
        ));
        // A range that stops inside the moof, or before the mdat.
        assert!(matches!(
            parse_iframe(&segment[..moof - 1], &init),
            Err(Fmp4Error::Truncated { offset: 0 })
        ));
        assert!(matches!(
            parse_iframe(&segment[..moof], &init),
            Err(Fmp4Error::MissingBox("mdat"))
        ));
        let not_sync = chunk(1, 1, 0, &[(3000, NON_SYNC)]);
        assert!(!parse_iframe(&not_sync, &init).expect("decodes").is_sync);
        assert!(matches!(
            parse_iframe(&chunk(2, 1, 0, &[(3000, SYNC)]), &init),
            Err(Fmp4Error::TrackMismatch { .. })
        ));
    }
}
