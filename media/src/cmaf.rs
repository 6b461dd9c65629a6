//! CMAF (fragmented MP4) writer on `mp4-atom`: one track per file, as CMAF wants.
//! Init segment = ftyp + moov (mvex/trex); each part/fragment = moof (mfhd, traf with
//! tfhd, tfdt, trun) + mdat. [`read_init`] and [`read_segment`] read them back.

mod read;

use bytes::Bytes;
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Codec, Dinf, Dref, Encode, Esds, FixedPoint, Ftyp, Hdlr, Mdhd, Mdia,
    Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak,
    Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};

use crate::track::{AacConfig, AvcConfig, CodecParams, TrackParams};
pub use read::{InitTrack, MAX_SEGMENT_SAMPLES, ReadError, ReadFragment, read_init, read_segment};

/// One sample of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track timescale.
    pub duration: u32,
    /// Composition offset (pts - dts) in the track timescale; signed (trun version 1).
    pub composition_offset: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// One `moof` + `mdat`: a part or a whole segment's worth of samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// mfhd sequence_number; strictly increasing per track.
    pub sequence_number: u32,
    /// tfdt baseMediaDecodeTime, track timescale.
    pub base_media_decode_time: u64,
    pub samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmafError {
    #[error("mp4 encoding failed: {0}")]
    Encode(String),
    #[error("empty fragment {sequence_number}: a part needs at least one sample")]
    EmptyFragment { sequence_number: u32 },
    #[error("AVCDecoderConfigurationRecord does not fit avcC: {0}")]
    InvalidAvcRecord(String),
    /// Codecs that travel between ingest and the transcoder but are never packaged (Opus,
    /// which the transcoder turns into AAC).
    #[error("{0} is not packaged into CMAF; transcode it first")]
    UnsupportedCodec(&'static str),
    #[error("{what} {value} does not fit its mp4 field")]
    OutOfRange { what: &'static str, value: u64 },
}

impl From<mp4_atom::Error> for CmafError {
    fn from(e: mp4_atom::Error) -> Self {
        CmafError::Encode(e.to_string())
    }
}

/// Every track we write is track 1: CMAF puts each track in its own file.
const TRACK_ID: u32 = 1;

/// The timescale the track is written in: 90 kHz for video; the sample rate for audio,
/// so AAC frame durations (1024 samples) are exact.
pub fn track_timescale(params: &TrackParams) -> u32 {
    match &params.codec {
        CodecParams::H264(_) => crate::frame::TIMESCALE,
        CodecParams::Aac(aac) => aac.sample_rate,
        CodecParams::Opus(_) => crate::track::OpusConfig::SAMPLE_RATE,
    }
}

/// ftyp brands: `iso6` covers tfdt/trun version 1 and default-base-is-moof (ISO/IEC
/// 14496-12 §10), `cmfc` declares a CMAF track file (ISO/IEC 23000-19 §7.2), and `mp41`
/// is what older players look for. hls.js, Safari and ffmpeg accept this set.
fn ftyp() -> Ftyp {
    Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    }
}

/// Writes the init segment (ftyp + moov) for one track.
pub fn write_init(params: &TrackParams) -> Result<Bytes, CmafError> {
    let timescale = track_timescale(params);
    let (tkhd, hdlr, minf_header, codec) = match &params.codec {
        CodecParams::H264(avc) => {
            let (width, height) = video_size(avc)?;
            let tkhd = Tkhd {
                width: FixedPoint::from(width),
                height: FixedPoint::from(height),
                ..track_header()
            };
            let hdlr = Hdlr {
                handler: b"vide".into(),
                name: "VideoHandler".into(),
            };
            let minf = Minf {
                vmhd: Some(Vmhd::default()),
                ..Default::default()
            };
            (tkhd, hdlr, minf, avc1(avc, width, height)?)
        }
        CodecParams::Aac(aac) => {
            let tkhd = Tkhd {
                volume: FixedPoint::from(1),
                ..track_header()
            };
            let hdlr = Hdlr {
                handler: b"soun".into(),
                name: "SoundHandler".into(),
            };
            let minf = Minf {
                smhd: Some(Smhd::default()),
                ..Default::default()
            };
            (tkhd, hdlr, minf, mp4a(aac)?)
        }
        CodecParams::Opus(_) => return Err(CmafError::UnsupportedCodec("Opus")),
    };

    let moov = Moov {
        mvhd: Mvhd {
            timescale,
            duration: 0,
            rate: FixedPoint::from(1),
            volume: FixedPoint::from(1),
            next_track_id: TRACK_ID + 1,
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: vec![Trex {
                track_id: TRACK_ID,
                default_sample_description_index: 1,
                ..Default::default()
            }],
        }),
        trak: vec![Trak {
            tkhd,
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale,
                    duration: 0,
                    language: "und".into(),
                    ..Default::default()
                },
                hdlr,
                minf: Minf {
                    dinf: Dinf {
                        dref: Dref {
                            // An empty location means "self-contained": the media is in
                            // this file (ISO/IEC 14496-12 §8.7.2).
                            entries: vec![Url::default().into()],
                        },
                    },
                    stbl: Stbl {
                        stsd: Stsd {
                            codecs: vec![codec],
                        },
                        // Fragmented: the sample tables are empty, samples live in moofs.
                        stco: Some(Stco::default()),
                        ..Default::default()
                    },
                    ..minf_header
                },
            },
            ..Default::default()
        }],
        ..Default::default()
    };

    let mut out = Vec::new();
    ftyp().encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(Bytes::from(out))
}

fn track_header() -> Tkhd {
    Tkhd {
        track_id: TRACK_ID,
        enabled: true,
        in_movie: true,
        ..Default::default()
    }
}

fn video_size(avc: &AvcConfig) -> Result<(u16, u16), CmafError> {
    let dimension = |what, value: u32| {
        u16::try_from(value).map_err(|_| CmafError::OutOfRange {
            what,
            value: value.into(),
        })
    };
    Ok((
        dimension("width", avc.width)?,
        dimension("height", avc.height)?,
    ))
}

/// The `avc1` sample entry (ISO/IEC 14496-15 §5.4.2.1) with `avcC` holding the publisher's
/// AVCDecoderConfigurationRecord. mp4-atom models `avcC` as fields, so the record is
/// decoded and re-encoded; for a conforming record (reserved bits set, as §5.3.3.1.2
/// requires) that is byte-for-byte the same record.
fn avc1(avc: &AvcConfig, width: u16, height: u16) -> Result<Codec, CmafError> {
    let mut record = &avc.record[..];
    let avcc =
        Avcc::decode_body(&mut record).map_err(|e| CmafError::InvalidAvcRecord(e.to_string()))?;
    if !record.is_empty() {
        return Err(CmafError::InvalidAvcRecord(format!(
            "{} bytes after the parameter sets",
            record.len()
        )));
    }
    Ok(Avc1 {
        visual: Visual {
            data_reference_index: 1,
            width,
            height,
            ..Default::default()
        },
        avcc,
        btrt: None,
        colr: None,
        pasp: None,
        taic: None,
        fiel: None,
        spatial: None,
    }
    .into())
}

/// MPEG-4 Systems objectTypeIndication for ISO/IEC 14496-3 audio (ISO/IEC 14496-1
/// Table 5) and streamType AudioStream (Table 6).
const OBJECT_TYPE_INDICATION_AAC: u8 = 0x40;
const STREAM_TYPE_AUDIO: u8 = 0x05;

/// The `mp4a` sample entry with `esds` carrying the AudioSpecificConfig as
/// DecoderSpecificInfo (ISO/IEC 14496-14 §5.6, ISO/IEC 14496-1 §7.2.6.5–7).
fn mp4a(aac: &AacConfig) -> Result<Codec, CmafError> {
    // ISO/IEC 14496-12 §12.2.3: samplerate is 16.16 and cannot hold rates above 65535 Hz;
    // players read the real rate from the AudioSpecificConfig, so write 0 then.
    let sample_rate = u16::try_from(aac.sample_rate).unwrap_or(0);
    Ok(Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: aac.channels.into(),
            sample_size: 16,
            sample_rate: FixedPoint::from(sample_rate),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: 0,
                dec_config: DecoderConfig {
                    object_type_indication: OBJECT_TYPE_INDICATION_AAC,
                    stream_type: STREAM_TYPE_AUDIO,
                    dec_specific: Some(DecoderSpecific {
                        raw: aac.asc.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                sl_config: SLConfig::default(),
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    }
    .into())
}

/// ISO/IEC 14496-12 §8.8.3.1 sample flags: a sync sample depends on no other
/// (sample_depends_on = 2); any other sample depends on others (1) and has
/// sample_is_non_sync_sample set.
const SAMPLE_FLAGS_SYNC: u32 = 2 << 24;
const SAMPLE_FLAGS_NON_SYNC: u32 = (1 << 24) | (1 << 16);

const MDAT_HEADER_LEN: usize = 8;

/// Appends one moof + mdat to `out`.
pub fn write_fragment(out: &mut Vec<u8>, fragment: &Fragment) -> Result<(), CmafError> {
    if fragment.samples.is_empty() {
        return Err(CmafError::EmptyFragment {
            sequence_number: fragment.sequence_number,
        });
    }
    let entries = fragment
        .samples
        .iter()
        .map(|s| {
            let size = u32::try_from(s.data.len()).map_err(|_| CmafError::OutOfRange {
                what: "sample size",
                value: s.data.len() as u64,
            })?;
            Ok(TrunEntry {
                duration: Some(s.duration),
                size: Some(size),
                flags: Some(if s.keyframe {
                    SAMPLE_FLAGS_SYNC
                } else {
                    SAMPLE_FLAGS_NON_SYNC
                }),
                cts: Some(s.composition_offset.into()),
            })
        })
        .collect::<Result<Vec<_>, CmafError>>()?;

    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: fragment.sequence_number,
        },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id: TRACK_ID,
                // Data offsets count from the start of this moof (ISO/IEC 14496-12
                // §8.8.7.1), so a part is self-contained and can be served alone.
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: fragment.base_media_decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                samples: entries.into(),
            }],
            ..Default::default()
        }],
    };

    // trun data_offset: from the first byte of the moof to the first sample byte, which
    // follows the mdat header. The field has a fixed width, so sizing the moof with a
    // placeholder offset gives its final size.
    let mut sized = Vec::new();
    moof.encode(&mut sized)?;
    let moof_len = sized.len();
    let data_offset = moof_len + MDAT_HEADER_LEN;
    let data_offset_i32 = i32::try_from(data_offset).map_err(|_| CmafError::OutOfRange {
        what: "trun data_offset",
        value: data_offset as u64,
    })?;
    for traf in &mut moof.traf {
        for trun in &mut traf.trun {
            trun.data_offset = Some(data_offset_i32);
        }
    }

    let payload_len: usize = fragment.samples.iter().map(|s| s.data.len()).sum();
    let mdat_len = MDAT_HEADER_LEN + payload_len;
    let mdat_len_u32 = u32::try_from(mdat_len).map_err(|_| CmafError::OutOfRange {
        what: "mdat size",
        value: mdat_len as u64,
    })?;

    let start = out.len();
    out.reserve(moof_len + mdat_len);
    moof.encode(out)?;
    if out.len() - start != moof_len {
        return Err(CmafError::Encode(format!(
            "moof size changed from {moof_len} to {} when data_offset was set",
            out.len() - start
        )));
    }
    out.extend_from_slice(&mdat_len_u32.to_be_bytes());
    out.extend_from_slice(mp4_atom::Mdat::KIND.as_ref());
    for sample in &fragment.samples {
        out.extend_from_slice(&sample.data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use mp4_atom::{Decode, Mdat, TrunSamples};

    use super::*;
    use crate::flv::{
        AudioTag, FlvFileReader, FlvTagType, VideoTag, parse_audio_tag, parse_video_tag,
    };
    use crate::frame::Frame;

    const BFRAMES: &[u8] = include_bytes!("../testdata/ffmpeg_h264_aac_bframes.flv");

    pub(super) struct Capture {
        pub(super) video: AvcConfig,
        pub(super) audio: AacConfig,
        pub(super) video_frames: Vec<Frame>,
        pub(super) audio_frames: Vec<Frame>,
    }

    pub(super) fn capture() -> Capture {
        let (mut video, mut audio) = (None, None);
        let (mut video_frames, mut audio_frames) = (Vec::new(), Vec::new());
        for tag in FlvFileReader::new(BFRAMES).unwrap() {
            let tag = tag.unwrap();
            match tag.tag_type {
                FlvTagType::Video => match parse_video_tag(tag.body, tag.timestamp_ms).unwrap() {
                    VideoTag::SequenceHeader(c) => video = Some(c),
                    VideoTag::Frame(f) => video_frames.push(f),
                    VideoTag::EndOfSequence | VideoTag::Command => {}
                },
                FlvTagType::Audio => match parse_audio_tag(tag.body, tag.timestamp_ms).unwrap() {
                    AudioTag::SequenceHeader(c) => audio = Some(c),
                    AudioTag::Frame(f) => audio_frames.push(f),
                },
                FlvTagType::ScriptData => {}
            }
        }
        Capture {
            video: video.unwrap(),
            audio: audio.unwrap(),
            video_frames,
            audio_frames,
        }
    }

    /// Frames to samples: each duration is the DTS step to the next frame (the last frame
    /// repeats the previous step), in the track timescale.
    pub(super) fn samples(frames: &[Frame], timescale: u32) -> Vec<Sample> {
        let scale = |t: i64| t * i64::from(timescale) / 90_000;
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let next = frames
                    .get(i + 1)
                    .map_or_else(|| 2 * f.dts - frames[i - 1].dts, |n| n.dts);
                Sample {
                    duration: (scale(next) - scale(f.dts)) as u32,
                    composition_offset: scale(f.cts()) as i32,
                    keyframe: f.keyframe,
                    data: f.data.clone(),
                }
            })
            .collect()
    }

    fn decode_init(init: &[u8]) -> (Ftyp, Moov) {
        let mut buf = init;
        let ftyp = Ftyp::decode(&mut buf).unwrap();
        let moov = Moov::decode(&mut buf).unwrap();
        assert!(buf.is_empty());
        (ftyp, moov)
    }

    #[test]
    fn video_init_segment() {
        let c = capture();
        let params = TrackParams::video(c.video.clone());
        assert_eq!(track_timescale(&params), 90_000);
        let (ftyp, moov) = decode_init(&write_init(&params).unwrap());
        assert_eq!(ftyp.major_brand, b"iso6".into());
        assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));

        assert_eq!(moov.mvhd.timescale, 90_000);
        assert_eq!(moov.mvhd.next_track_id, 2);
        let trex = &moov.mvex.as_ref().unwrap().trex;
        assert_eq!((trex.len(), trex[0].track_id), (1, 1));
        assert_eq!(trex[0].default_sample_description_index, 1);
        let trak = &moov.trak[0];
        assert_eq!(trak.tkhd.track_id, 1);
        assert!(trak.tkhd.enabled && trak.tkhd.in_movie);
        assert_eq!(
            (trak.tkhd.width.integer(), trak.tkhd.height.integer()),
            (320, 240)
        );
        assert_eq!(trak.mdia.mdhd.timescale, 90_000);
        assert_eq!(trak.mdia.hdlr.handler, b"vide".into());
        assert!(trak.mdia.minf.vmhd.is_some());
        let Codec::Avc1(avc1) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("avc1 sample entry");
        };
        assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
        // ISO/IEC 14496-15 §5.4.2.1: avcC is the AVCDecoderConfigurationRecord; ffmpeg's
        // record comes back byte for byte.
        let mut avcc = Vec::new();
        avc1.avcc.encode_body(&mut avcc).unwrap();
        assert_eq!(avcc, c.video.record);
    }

    #[test]
    fn audio_init_segment() {
        let c = capture();
        let params = TrackParams::audio(c.audio.clone());
        assert_eq!(track_timescale(&params), 48_000);
        let (_, moov) = decode_init(&write_init(&params).unwrap());
        assert_eq!(moov.mvhd.timescale, 48_000);
        let trak = &moov.trak[0];
        assert_eq!(trak.mdia.mdhd.timescale, 48_000);
        assert_eq!(trak.mdia.hdlr.handler, b"soun".into());
        assert!(trak.mdia.minf.smhd.is_some());
        let Codec::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
            panic!("mp4a sample entry");
        };
        assert_eq!(mp4a.audio.channel_count, 2);
        assert_eq!(mp4a.audio.sample_size, 16);
        assert_eq!(mp4a.audio.sample_rate.integer(), 48_000);
        let dec_config = &mp4a.esds.es_desc.dec_config;
        assert_eq!(dec_config.object_type_indication, 0x40);
        assert_eq!(dec_config.stream_type, 5);
        assert_eq!(
            dec_config.dec_specific.as_ref().unwrap().raw,
            c.audio.asc.to_vec()
        );
    }

    #[test]
    fn a_record_mp4_atom_would_rewrite_is_refused() {
        let mut avc = capture().video;
        let mut record = avc.record.to_vec();
        record.push(0);
        avc.record = record.into();
        assert!(matches!(
            write_init(&TrackParams::video(avc)),
            Err(CmafError::InvalidAvcRecord(_))
        ));
    }

    /// Parses moof + mdat back and checks them against the fragment written.
    fn check_fragment(bytes: &[u8], fragment: &Fragment) {
        let mut buf = bytes;
        let moof = Moof::decode(&mut buf).unwrap();
        let moof_len = bytes.len() - buf.len();
        let mdat = Mdat::decode(&mut buf).unwrap();
        assert!(buf.is_empty());

        assert_eq!(moof.mfhd.sequence_number, fragment.sequence_number);
        let traf = &moof.traf[0];
        assert_eq!(traf.tfhd.track_id, 1);
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(
            traf.tfdt.as_ref().unwrap().base_media_decode_time,
            fragment.base_media_decode_time
        );
        let trun = &traf.trun[0];
        let TrunSamples::Explicit(entries) = &trun.samples else {
            panic!("per-sample trun entries");
        };
        assert_eq!(entries.len(), fragment.samples.len());
        for (entry, sample) in entries.iter().zip(&fragment.samples) {
            assert_eq!(entry.duration, Some(sample.duration));
            assert_eq!(entry.size, Some(sample.data.len() as u32));
            assert_eq!(entry.cts, Some(sample.composition_offset.into()));
            // §8.8.3.1: sample_depends_on 2 for sync samples; 1 plus is_non_sync else.
            let flags = entry.flags.unwrap();
            if sample.keyframe {
                assert_eq!(flags, 0x0200_0000);
            } else {
                assert_eq!(flags, 0x0101_0000);
            }
        }
        // data_offset lands on the first payload byte, and the payload is the samples.
        let data_offset = trun.data_offset.unwrap() as usize;
        assert_eq!(data_offset, moof_len + 8);
        let payload: Vec<u8> = fragment
            .samples
            .iter()
            .flat_map(|s| s.data.iter().copied())
            .collect();
        assert_eq!(&bytes[data_offset..], &payload[..]);
        assert_eq!(mdat.data, payload);
    }

    #[test]
    fn video_fragments_with_b_frames() {
        let c = capture();
        let samples = samples(&c.video_frames, 90_000);
        // A 200 ms part (6 frames at 30 fps), the rest of the first GOP, the second GOP.
        let bounds = [0, 6, 60, samples.len()];
        let fragments: Vec<Fragment> = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| Fragment {
                sequence_number: i as u32 + 1,
                base_media_decode_time: c.video_frames[w[0]].dts as u64,
                samples: samples[w[0]..w[1]].to_vec(),
            })
            .collect();
        assert!(
            fragments[0]
                .samples
                .iter()
                .any(|s| s.composition_offset > 0)
        );
        assert!(fragments[2].samples[0].keyframe);
        for fragment in &fragments {
            let mut out = b"prefix".to_vec();
            write_fragment(&mut out, fragment).unwrap();
            assert_eq!(&out[..6], b"prefix");
            check_fragment(&out[6..], fragment);
        }
    }

    #[test]
    fn audio_fragment_and_single_sample_fragment() {
        let c = capture();
        let samples = samples(&c.audio_frames, 48_000);
        // 1024-sample AAC frames; FLV's ms timestamps round, our durations follow them.
        assert!(samples.iter().all(|s| (1008..=1056).contains(&s.duration)));
        let fragment = Fragment {
            sequence_number: 7,
            base_media_decode_time: 0,
            samples: samples[..10].to_vec(),
        };
        let mut out = Vec::new();
        write_fragment(&mut out, &fragment).unwrap();
        check_fragment(&out, &fragment);

        let single = Fragment {
            sequence_number: 8,
            base_media_decode_time: 10 * 1024,
            samples: samples[10..11].to_vec(),
        };
        let mut out = Vec::new();
        write_fragment(&mut out, &single).unwrap();
        check_fragment(&out, &single);
    }

    #[test]
    fn empty_fragment_is_refused() {
        let mut out = Vec::new();
        let err = write_fragment(
            &mut out,
            &Fragment {
                sequence_number: 4,
                base_media_decode_time: 0,
                samples: Vec::new(),
            },
        )
        .unwrap_err();
        assert!(matches!(
            err,
            CmafError::EmptyFragment { sequence_number: 4 }
        ));
        assert!(out.is_empty());
    }

    /// Cross-check with a real demuxer: ffprobe decodes every frame of init + fragments.
    /// ffprobe comes with ffmpeg, which scripts/install-deps.sh installs.
    #[test]
    fn ffprobe_reads_the_fragmented_mp4() {
        let probe = std::process::Command::new("ffprobe")
            .arg("-version")
            .output()
            .expect("ffprobe must be installed (scripts/install-deps.sh)");
        assert!(probe.status.success());
        let c = capture();
        let samples = samples(&c.video_frames, 90_000);
        let mut file = write_init(&TrackParams::video(c.video.clone()))
            .unwrap()
            .to_vec();
        for (i, chunk) in samples.chunks(6).enumerate() {
            let fragment = Fragment {
                sequence_number: i as u32 + 1,
                base_media_decode_time: c.video_frames[i * 6].dts as u64,
                samples: chunk.to_vec(),
            };
            write_fragment(&mut file, &fragment).unwrap();
        }
        let path =
            std::env::temp_dir().join(format!("floodlight-cmaf-test-{}.mp4", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let output = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            output.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "h264,320,240,120"
        );
    }
}
