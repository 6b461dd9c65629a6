//! FLV tag bodies as RTMP carries them (video/audio message payloads), into `Frame`s and
//! codec parameters. Video: AVC only (legacy FLV codec id 7); audio: AAC only (sound
//! format 10). Anything else is a clear `FlvError::UnsupportedCodec`.
//!
//! Also reads FLV *files* (Adobe FLV spec v10.1 §E.2–E.3: header, PreviousTagSize, tag
//! headers), for captures in tests, fuzz targets and tools.

use bytes::Bytes;

use crate::aac::AacError;
use crate::avc::AvcError;
use crate::frame::{Frame, TrackKind};
use crate::track::{AacConfig, AvcConfig};

/// What one FLV video tag body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoTag {
    /// AVCPacketType 0: the AVCDecoderConfigurationRecord.
    SequenceHeader(AvcConfig),
    /// AVCPacketType 1: one access unit; `pts = dts + composition time`.
    Frame(Frame),
    /// AVCPacketType 2: end of sequence.
    EndOfSequence,
    /// FrameType 5: a video info/command frame (seek hints, client-side markers). It
    /// carries no picture; ingest skips it.
    Command,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AudioTag {
    /// AACPacketType 0: the AudioSpecificConfig.
    SequenceHeader(AacConfig),
    /// AACPacketType 1: one raw AAC frame.
    Frame(Frame),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlvError {
    #[error("unsupported {kind} codec id {id} (Floodlight takes H.264 video and AAC audio)")]
    UnsupportedCodec { kind: &'static str, id: u8 },
    /// Enhanced RTMP (veovera E-RTMP) names codecs by FourCC: HEVC, AV1, VP9, Opus, …
    #[error(
        "unsupported enhanced-RTMP {kind} codec {fourcc:?} (Floodlight takes H.264 video and AAC audio)"
    )]
    UnsupportedFourCc { kind: &'static str, fourcc: String },
    #[error("truncated {what}: need {need} bytes at offset {offset}, tag has {len}")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("invalid {what} at offset {offset}: {reason}")]
    Invalid {
        what: &'static str,
        offset: usize,
        reason: String,
    },
}

/// Milliseconds to the 90 kHz `Frame` clock.
fn ms_to_90khz(ms: i64, what: &'static str) -> Result<i64, FlvError> {
    ms.checked_mul(90).ok_or_else(|| FlvError::Invalid {
        what,
        offset: 0,
        reason: format!("timestamp {ms} ms overflows the 90 kHz clock"),
    })
}

/// The bytes `body[offset..offset + need]`, or a `Truncated` error naming the field.
fn field<'a>(
    body: &'a [u8],
    offset: usize,
    need: usize,
    what: &'static str,
) -> Result<&'a [u8], FlvError> {
    offset
        .checked_add(need)
        .and_then(|end| body.get(offset..end))
        .ok_or(FlvError::Truncated {
            what,
            offset,
            need,
            len: body.len(),
        })
}

/// `N` bytes at `offset`, as an array.
fn array<const N: usize>(
    body: &[u8],
    offset: usize,
    what: &'static str,
) -> Result<[u8; N], FlvError> {
    let bytes = field(body, offset, N, what)?;
    Ok(bytes.try_into().unwrap_or([0; N]))
}

fn byte(body: &[u8], offset: usize, what: &'static str) -> Result<u8, FlvError> {
    let [b] = array(body, offset, what)?;
    Ok(b)
}

fn fourcc(body: &[u8], offset: usize, what: &'static str) -> Result<String, FlvError> {
    Ok(String::from_utf8_lossy(&array::<4>(body, offset, what)?).into_owned())
}

/// FLV spec §E.4.3.1 VIDEODATA FrameType.
const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_INFO: u8 = 5;
const CODEC_ID_AVC: u8 = 7;
/// E-RTMP: the top bit of the first byte marks an ExVideoTagHeader.
const VIDEO_EX_HEADER: u8 = 0x80;

fn video_codec_name(id: u8) -> &'static str {
    match id {
        2 => "Sorenson H.263 video",
        3 => "Screen video",
        4 => "On2 VP6 video",
        5 => "On2 VP6-alpha video",
        6 => "Screen video v2",
        12 => "HEVC (non-standard FLV id 12) video",
        _ => "video",
    }
}

/// Parses one FLV video tag body. `timestamp_ms` is the RTMP message timestamp (the DTS),
/// already extended past 32-bit wrap by the caller.
pub fn parse_video_tag(body: &[u8], timestamp_ms: i64) -> Result<VideoTag, FlvError> {
    let header = byte(body, 0, "VideoTagHeader")?;
    if header & VIDEO_EX_HEADER != 0 {
        // E-RTMP ExVideoTagHeader: IsExHeader(1) FrameType(3) PacketType(4) VideoFourCc.
        return Err(FlvError::UnsupportedFourCc {
            kind: "video",
            fourcc: fourcc(body, 1, "VideoFourCc")?,
        });
    }
    let frame_type = header >> 4;
    let codec_id = header & 0x0f;
    if codec_id != CODEC_ID_AVC {
        return Err(FlvError::UnsupportedCodec {
            kind: video_codec_name(codec_id),
            id: codec_id,
        });
    }
    if frame_type == FRAME_TYPE_INFO {
        return Ok(VideoTag::Command);
    }
    let packet_type = byte(body, 1, "AVCPacketType")?;
    let [c0, c1, c2] = array(body, 2, "CompositionTime")?;
    // SI24: sign-extend the 24-bit value.
    let cts_ms = i64::from(i32::from_be_bytes([c0, c1, c2, 0]) >> 8);
    let payload = body.get(5..).unwrap_or_default();
    match packet_type {
        0 => AvcConfig::from_record(Bytes::copy_from_slice(payload))
            .map(VideoTag::SequenceHeader)
            .map_err(|e| avc_record_error(e, body.len())),
        1 => {
            let dts = ms_to_90khz(timestamp_ms, "timestamp")?;
            let pts = ms_to_90khz(timestamp_ms + cts_ms, "CompositionTime")?;
            Ok(VideoTag::Frame(Frame {
                track: TrackKind::Video,
                dts,
                pts,
                keyframe: frame_type == FRAME_TYPE_KEY,
                data: Bytes::copy_from_slice(payload),
            }))
        }
        2 => Ok(VideoTag::EndOfSequence),
        other => Err(FlvError::Invalid {
            what: "AVCPacketType",
            offset: 1,
            reason: format!("{other}, expected 0, 1 or 2"),
        }),
    }
}

/// Maps a record error to tag-body offsets (the record starts at byte 5).
fn avc_record_error(e: AvcError, body_len: usize) -> FlvError {
    const RECORD_OFFSET: usize = 5;
    match e {
        AvcError::RecordTruncated {
            what, offset, need, ..
        } => FlvError::Truncated {
            what,
            offset: RECORD_OFFSET + offset,
            need,
            len: body_len,
        },
        AvcError::RecordInvalid {
            what,
            offset,
            reason,
        } => FlvError::Invalid {
            what,
            offset: RECORD_OFFSET + offset,
            reason,
        },
        other => FlvError::Invalid {
            what: "AVCDecoderConfigurationRecord",
            offset: RECORD_OFFSET,
            reason: other.to_string(),
        },
    }
}

/// FLV spec §E.4.2.1 AUDIODATA SoundFormat.
const SOUND_FORMAT_AAC: u8 = 10;
/// E-RTMP v2: SoundFormat 9 marks an ExAudioTagHeader with an AudioFourCc.
const SOUND_FORMAT_EX_HEADER: u8 = 9;

fn sound_format_name(format: u8) -> &'static str {
    match format {
        0 => "Linear PCM (platform endian) audio",
        1 => "ADPCM audio",
        2 => "MP3 audio",
        3 => "Linear PCM (little endian) audio",
        4..=6 => "Nellymoser audio",
        7 => "G.711 A-law audio",
        8 => "G.711 mu-law audio",
        11 => "Speex audio",
        14 => "MP3 8 kHz audio",
        15 => "device-specific audio",
        _ => "audio",
    }
}

/// Parses one FLV audio tag body.
pub fn parse_audio_tag(body: &[u8], timestamp_ms: i64) -> Result<AudioTag, FlvError> {
    let header = byte(body, 0, "AudioTagHeader")?;
    let sound_format = header >> 4;
    if sound_format == SOUND_FORMAT_EX_HEADER {
        return Err(FlvError::UnsupportedFourCc {
            kind: "audio",
            fourcc: fourcc(body, 1, "AudioFourCc")?,
        });
    }
    if sound_format != SOUND_FORMAT_AAC {
        return Err(FlvError::UnsupportedCodec {
            kind: sound_format_name(sound_format),
            id: sound_format,
        });
    }
    // For AAC the SoundRate/SoundSize/SoundType bits are fixed (44 kHz, 16-bit, stereo)
    // and meaningless (§E.4.2.1); the AudioSpecificConfig is the truth.
    let packet_type = byte(body, 1, "AACPacketType")?;
    let payload = body.get(2..).unwrap_or_default();
    match packet_type {
        0 => AacConfig::from_asc(Bytes::copy_from_slice(payload))
            .map(AudioTag::SequenceHeader)
            .map_err(|e: AacError| FlvError::Invalid {
                what: "AudioSpecificConfig",
                offset: 2,
                reason: e.to_string(),
            }),
        1 => {
            let ts = ms_to_90khz(timestamp_ms, "timestamp")?;
            Ok(AudioTag::Frame(Frame {
                track: TrackKind::Audio,
                dts: ts,
                pts: ts,
                keyframe: true,
                data: Bytes::copy_from_slice(payload),
            }))
        }
        other => Err(FlvError::Invalid {
            what: "AACPacketType",
            offset: 1,
            reason: format!("{other}, expected 0 or 1"),
        }),
    }
}

/// FLV spec §E.4.1 TagType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlvTagType {
    Audio,
    Video,
    ScriptData,
}

/// One tag of an FLV file; error offsets from the reader are file offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvTag<'a> {
    pub tag_type: FlvTagType,
    /// Timestamp (lower 24 bits) and TimestampExtended (upper 8), an SI32 in ms.
    pub timestamp_ms: i64,
    /// The tag body (VIDEODATA/AUDIODATA/SCRIPTDATA), what an RTMP message carries.
    pub body: &'a [u8],
    /// File offset of the tag header.
    pub offset: usize,
}

/// Iterates over the tags of an FLV file (FLV spec §E.2 header, §E.3 body). Stops after
/// the first error; a file that ends exactly after a PreviousTagSize ends cleanly.
pub struct FlvFileReader<'a> {
    file: &'a [u8],
    offset: usize,
    failed: bool,
}

const FLV_TAG_HEADER_LEN: usize = 11;

impl<'a> FlvFileReader<'a> {
    /// Checks the FLV header and positions the reader at the first tag.
    pub fn new(file: &'a [u8]) -> Result<Self, FlvError> {
        let signature = field(file, 0, 3, "FLV header signature")?;
        if signature != b"FLV" {
            return Err(FlvError::Invalid {
                what: "FLV header signature",
                offset: 0,
                reason: format!("{signature:02x?}, expected \"FLV\""),
            });
        }
        let data_offset = u32::from_be_bytes(array(file, 5, "FLV header DataOffset")?) as usize;
        if data_offset < 9 {
            return Err(FlvError::Invalid {
                what: "FLV header DataOffset",
                offset: 5,
                reason: format!("{data_offset}, the header alone is 9 bytes"),
            });
        }
        // PreviousTagSize0 (always 0) follows the header.
        field(file, data_offset, 4, "PreviousTagSize0")?;
        Ok(FlvFileReader {
            file,
            offset: data_offset + 4,
            failed: false,
        })
    }

    fn read_tag(&mut self) -> Result<FlvTag<'a>, FlvError> {
        let start = self.offset;
        let [flags, s0, s1, s2, t0, t1, t2, t_ext, ..] =
            array::<FLV_TAG_HEADER_LEN>(self.file, start, "FLV tag header")?;
        if flags & 0x20 != 0 {
            return Err(FlvError::Invalid {
                what: "FLV tag Filter",
                offset: start,
                reason: "encrypted (filtered) tags are not supported".into(),
            });
        }
        let tag_type = match flags & 0x1f {
            8 => FlvTagType::Audio,
            9 => FlvTagType::Video,
            18 => FlvTagType::ScriptData,
            other => {
                return Err(FlvError::Invalid {
                    what: "FLV TagType",
                    offset: start,
                    reason: format!("{other}, expected 8, 9 or 18"),
                });
            }
        };
        let data_size = u32::from_be_bytes([0, s0, s1, s2]) as usize;
        let timestamp = i32::from_be_bytes([t_ext, t0, t1, t2]);
        let body_offset = start + FLV_TAG_HEADER_LEN;
        let body = field(self.file, body_offset, data_size, "FLV tag body")?;
        let trailer_offset = body_offset + data_size;
        field(self.file, trailer_offset, 4, "PreviousTagSize")?;
        self.offset = trailer_offset + 4;
        Ok(FlvTag {
            tag_type,
            timestamp_ms: i64::from(timestamp),
            body,
            offset: start,
        })
    }
}

impl<'a> Iterator for FlvFileReader<'a> {
    type Item = Result<FlvTag<'a>, FlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.file.len() {
            return None;
        }
        let tag = self.read_tag();
        self.failed = tag.is_err();
        Some(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BFRAMES: &[u8] = include_bytes!("../testdata/ffmpeg_h264_aac_bframes.flv");
    const BASELINE_2997: &[u8] =
        include_bytes!("../testdata/ffmpeg_h264_baseline_2997_aac_44100_mono.flv");
    const H264_1080P: &[u8] = include_bytes!("../testdata/ffmpeg_h264_1080p25.flv");
    const H264_1080I: &[u8] = include_bytes!("../testdata/ffmpeg_h264_1080i25_interlaced.flv");

    fn tags(file: &[u8]) -> Vec<FlvTag<'_>> {
        FlvFileReader::new(file)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn video(file: &[u8]) -> Vec<VideoTag> {
        tags(file)
            .iter()
            .filter(|t| t.tag_type == FlvTagType::Video)
            .map(|t| parse_video_tag(t.body, t.timestamp_ms).unwrap())
            .collect()
    }

    fn audio(file: &[u8]) -> Vec<AudioTag> {
        tags(file)
            .iter()
            .filter(|t| t.tag_type == FlvTagType::Audio)
            .map(|t| parse_audio_tag(t.body, t.timestamp_ms).unwrap())
            .collect()
    }

    fn first_video_config(file: &[u8]) -> AvcConfig {
        match video(file).into_iter().next() {
            Some(VideoTag::SequenceHeader(c)) => c,
            other => panic!("expected an AVC sequence header first, got {other:?}"),
        }
    }

    #[test]
    fn ffmpeg_bframes_capture_video() {
        let video = video(BFRAMES);
        let VideoTag::SequenceHeader(config) = &video[0] else {
            panic!("sequence header first");
        };
        assert_eq!((config.width, config.height), (320, 240));
        assert_eq!(
            (
                config.profile_idc,
                config.profile_compatibility,
                config.level_idc
            ),
            (100, 0, 13)
        );
        assert_eq!(config.nal_length_size, 4);
        assert_eq!(config.frame_rate, Some(30.0));
        assert_eq!((config.sps.len(), config.pps.len()), (1, 1));

        let frames: Vec<&Frame> = video[1..]
            .iter()
            .filter_map(|t| match t {
                VideoTag::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 120); // 4 s at 30 fps
        // ffmpeg's FLV muxer ends with an end-of-sequence tag.
        assert_eq!(video.last(), Some(&VideoTag::EndOfSequence));
        // -g 60 with scene-cut detection off: IDR at frames 0 and 60 only.
        let keyframes: Vec<usize> = (0..frames.len()).filter(|&i| frames[i].keyframe).collect();
        assert_eq!(keyframes, [0, 60]);
        // FLV timestamps are ms; x264 with B-frames makes pts run ahead of dts.
        assert_eq!(frames[0].dts, 0);
        assert_eq!(frames[1].dts, 34 * 90);
        assert!(frames.iter().all(|f| f.dts % 90 == 0 && f.cts() >= 0));
        assert!(frames.windows(2).all(|w| w[0].dts < w[1].dts));
        assert!(frames.iter().filter(|f| f.cts() != 0).count() > 60);
        assert_eq!(frames[0].cts(), 67 * 90);
        assert!(frames.iter().all(|f| f.track == TrackKind::Video));
        // Samples are length-prefixed NAL units that exactly fill the payload.
        for f in &frames {
            let mut rest = &f.data[..];
            while !rest.is_empty() {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                rest = &rest[4 + len..];
            }
        }
    }

    #[test]
    fn ffmpeg_bframes_capture_audio() {
        let audio = audio(BFRAMES);
        let AudioTag::SequenceHeader(config) = &audio[0] else {
            panic!("sequence header first");
        };
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (2, 48000, 2)
        );
        // AAC-LC 48 kHz stereo, then ffmpeg's backward-compatible "no SBR" sync extension
        // (syncExtensionType 0x2b7, §1.6.5.2), kept verbatim for esds.
        assert_eq!(&config.asc[..], &[0x11, 0x90, 0x56, 0xe5, 0x00]);
        let frames: Vec<&Frame> = audio[1..]
            .iter()
            .map(|t| match t {
                AudioTag::Frame(f) => f,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // 1024-sample frames at 48 kHz are 21.33 ms; 4 s is ~188 of them.
        assert!((185..=190).contains(&frames.len()), "{}", frames.len());
        assert!(
            frames
                .iter()
                .all(|f| f.keyframe && f.pts == f.dts && f.track == TrackKind::Audio)
        );
        // ffmpeg starts audio at 46 ms (AAC priming); then 21.33 ms steps, ms-rounded.
        assert_eq!(frames[0].dts, 46 * 90);
        assert!(
            frames
                .windows(2)
                .all(|w| matches!(w[1].dts - w[0].dts, 1890 | 1980))
        );
    }

    #[test]
    fn sps_sizes_and_rates_of_captures() {
        let c = first_video_config(BASELINE_2997);
        assert_eq!((c.profile_idc, c.width, c.height), (66, 320, 240));
        // x264: num_units_in_tick 1001, time_scale 60000.
        assert_eq!(c.frame_rate, Some(30000.0 / 1001.0));

        // 1920x1080 is coded as 1088 lines (68 macroblock rows) and cropped by 8.
        let c = first_video_config(H264_1080P);
        assert_eq!((c.profile_idc, c.level_idc), (100, 40));
        assert_eq!((c.width, c.height), (1920, 1080));
        assert_eq!(c.frame_rate, Some(25.0));

        // Interlaced: frame_mbs_only_flag 0, 34 map units of field MB pairs, crop unit 4.
        let sps = crate::avc::parse_sps(&c.sps[0]).unwrap();
        assert!(sps.frame_mbs_only_flag);
        let c = first_video_config(H264_1080I);
        let sps = crate::avc::parse_sps(&c.sps[0]).unwrap();
        assert!(!sps.frame_mbs_only_flag);
        assert_eq!((c.width, c.height), (1920, 1080));
    }

    #[test]
    fn mono_44100_audio() {
        let AudioTag::SequenceHeader(c) = &audio(BASELINE_2997)[0] else {
            panic!("sequence header first");
        };
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 1));
    }

    #[test]
    fn negative_composition_time_is_sign_extended() {
        // FLV §E.4.3.1: CompositionTime is SI24. 0xFFFFF6 = -10 ms.
        let tag = [0x27, 1, 0xff, 0xff, 0xf6, 0, 0, 0, 1, 0x41];
        let VideoTag::Frame(f) = parse_video_tag(&tag, 1000).unwrap() else {
            panic!("frame");
        };
        assert_eq!((f.dts, f.pts, f.keyframe), (90_000, 89_100, false));
        assert_eq!(&f.data[..], &tag[5..]);
    }

    #[test]
    fn unsupported_codecs_are_named() {
        // VP6 video, codec id 4.
        let err = parse_video_tag(&[0x14, 0, 0], 0).unwrap_err();
        assert_eq!(
            err,
            FlvError::UnsupportedCodec {
                kind: "On2 VP6 video",
                id: 4
            }
        );
        assert!(err.to_string().contains("H.264"));
        // E-RTMP ExVideoTagHeader: IsExHeader | FrameType 1 | PacketType 0, 'hvc1'.
        assert_eq!(
            parse_video_tag(&[0x90, b'h', b'v', b'c', b'1', 1], 0),
            Err(FlvError::UnsupportedFourCc {
                kind: "video",
                fourcc: "hvc1".into()
            })
        );
        // MP3 audio, sound format 2.
        assert_eq!(
            parse_audio_tag(&[0x2f, 0xff, 0xfb], 0),
            Err(FlvError::UnsupportedCodec {
                kind: "MP3 audio",
                id: 2
            })
        );
        // E-RTMP v2 audio: SoundFormat 9 | AudioPacketType 0, 'Opus'.
        assert_eq!(
            parse_audio_tag(&[0x90, b'O', b'p', b'u', b's'], 0),
            Err(FlvError::UnsupportedFourCc {
                kind: "audio",
                fourcc: "Opus".into()
            })
        );
    }

    #[test]
    fn truncated_tags_are_errors_with_offsets() {
        let tags = tags(BFRAMES);
        let header = tags
            .iter()
            .find(|t| t.tag_type == FlvTagType::Video)
            .unwrap();
        let frame = tags
            .iter()
            .filter(|t| t.tag_type == FlvTagType::Video)
            .nth(1)
            .unwrap();
        let audio = tags
            .iter()
            .find(|t| t.tag_type == FlvTagType::Audio)
            .unwrap();
        // Any cut before the end of the PPS fails; the last 4 bytes are the optional
        // high-profile extension of §5.3.3.1.2.
        for len in 0..header.body.len() - 4 {
            assert!(
                parse_video_tag(&header.body[..len], 0).is_err(),
                "sequence header cut at {len}"
            );
        }
        for len in 0..5 {
            assert!(parse_video_tag(&frame.body[..len], 0).is_err());
        }
        for len in 0..frame.body.len() {
            let _ = parse_video_tag(&frame.body[..len], 0);
        }
        // The ASC head (object type, rate, channels) takes 2 bytes after the 2-byte header.
        for len in 0..4 {
            assert!(parse_audio_tag(&audio.body[..len], 0).is_err());
        }
        assert_eq!(
            parse_video_tag(&header.body[..8], 0),
            Err(FlvError::Truncated {
                what: "AVCProfileIndication/profile_compatibility/AVCLevelIndication",
                offset: 6,
                need: 3,
                len: 8
            })
        );
        assert_eq!(
            parse_video_tag(&[0x17, 1, 0], 0),
            Err(FlvError::Truncated {
                what: "CompositionTime",
                offset: 2,
                need: 3,
                len: 3
            })
        );
        // Garbage in every byte of the sequence header never panics.
        for i in 0..header.body.len() {
            for b in [0x00, 0x1f, 0x80, 0xff] {
                let mut body = header.body.to_vec();
                body[i] = b;
                let _ = parse_video_tag(&body, 0);
            }
        }
    }

    #[test]
    fn flv_file_reader_errors() {
        assert!(matches!(
            FlvFileReader::new(b"FLX\x01\x05\0\0\0\x09\0\0\0\0"),
            Err(FlvError::Invalid {
                what: "FLV header signature",
                ..
            })
        ));
        // Every truncation of a real file either yields a short list of tags then an
        // error, or a clean end exactly at a tag boundary; never a panic.
        let full = tags(H264_1080P).len();
        for len in 0..H264_1080P.len() {
            let Ok(reader) = FlvFileReader::new(&H264_1080P[..len]) else {
                assert!(len < 13);
                continue;
            };
            let result: Result<Vec<_>, _> = reader.collect();
            if let Ok(tags) = result {
                assert!(tags.len() < full);
            }
        }
        // The tags of a file: script data first, timestamps in ms.
        let tags = tags(BFRAMES);
        assert_eq!(tags[0].tag_type, FlvTagType::ScriptData);
        assert_eq!(tags[1].offset, 13 + 11 + tags[0].body.len() + 4);
    }
}
