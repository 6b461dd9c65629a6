//! The blocking half of a boundary segment: the pieces [`super::cut`] decided, made.
//! Copies take the archived samples as they are; a cut GOP is decoded with libav from the
//! archived init and re-encoded with the rung's own x264 settings ([`RungEncoding`]), its
//! pictures keeping their presentation times so the rest of the timeline lines up.
//! Callers run this on `spawn_blocking`.

use std::ops::Range;

use floodlight_media::cmaf::{Fragment, ReadFragment, Sample};
use floodlight_media::{AvcConfig, Frame, TrackKind};

use super::cut::{Piece, Timed};
use super::params;
use crate::av::{
    ENCODER_FORMAT, EncoderSettings, H264Profile, Picture, RungEncoding, Scaler, VideoDecoder,
    VideoEncoder,
};
use crate::ladder::{DEFAULT_FRAME_RATE, frame_rate_fraction};

/// One segment's samples in decode order, with their timing and fragment.
#[derive(Debug)]
pub(super) struct SegmentMedia {
    pub(super) timed: Vec<Timed>,
    samples: Vec<Sample>,
    /// The mfhd sequence number of each sample's fragment: a rewritten fragment takes
    /// that of its first sample's, so numbers still grow along the rendition.
    sequence: Vec<u32>,
}

impl SegmentMedia {
    pub(super) fn new(fragments: Vec<ReadFragment>) -> Result<SegmentMedia, String> {
        let mut media = SegmentMedia {
            timed: Vec::new(),
            samples: Vec::new(),
            sequence: Vec::new(),
        };
        for read in fragments {
            let fragment = read.fragment;
            let mut dts = i64::try_from(fragment.base_media_decode_time).map_err(|_| {
                format!(
                    "fragment at byte {}: tfdt {} out of range",
                    read.offset, fragment.base_media_decode_time
                )
            })?;
            for sample in fragment.samples {
                let duration = i64::from(sample.duration);
                media.timed.push(Timed {
                    dts,
                    pts: dts + i64::from(sample.composition_offset),
                    duration,
                    keyframe: sample.keyframe,
                });
                media.samples.push(sample);
                media.sequence.push(fragment.sequence_number);
                dts = dts.checked_add(duration).ok_or_else(|| {
                    format!("fragment at byte {}: decode times overflow", read.offset)
                })?;
            }
        }
        Ok(media)
    }
}

/// How a cut GOP of a video rendition is re-encoded.
#[derive(Debug, Clone)]
pub(super) struct Reencode {
    pub(super) encoding: RungEncoding,
    pub(super) bitrate_bps: u32,
    /// The rendition's segment target: x264's keyframe safety net follows it.
    pub(super) segment_target_90k: i64,
}

/// A piece made: its samples as one fragment, and the decoder configuration they need
/// when it is not the archived init's (a re-encoded GOP's own SPS/PPS).
#[derive(Debug)]
pub(super) struct Rendered {
    pub(super) fragment: Fragment,
    pub(super) config: Option<AvcConfig>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum RenderError {
    /// The archived media does not decode.
    #[error("{0}")]
    Corrupt(String),
    /// libx264 refused or failed.
    #[error("{0}")]
    Encode(String),
}

/// Makes `pieces` of `media`. `video` is the archived decoder configuration and how to
/// re-encode; pieces to encode need it.
pub(super) fn render(
    media: &SegmentMedia,
    pieces: &[Piece],
    video: Option<(&AvcConfig, &Reencode)>,
) -> Result<Vec<Rendered>, RenderError> {
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Copy(range) => Ok(Rendered {
                fragment: Fragment {
                    sequence_number: media.sequence[range.start],
                    base_media_decode_time: media.timed[range.start].dts as u64,
                    samples: media.samples[range.clone()].to_vec(),
                },
                config: None,
            }),
            Piece::Encode { gop, pts, end_pts } => {
                let Some((config, reencode)) = video else {
                    return Err(RenderError::Encode(
                        "only video GOPs are re-encoded".to_string(),
                    ));
                };
                encode_gop(media, gop.clone(), pts, *end_pts, config, reencode)
            }
        })
        .collect()
}

/// Decodes the GOP `gop` and re-encodes its pictures presented at `pts`, the first as an
/// IDR. Each encoded sample lasts until the next picture's presentation, the last until
/// `end_pts`; decode time equals presentation time (no B-frames), so the fragment's tfdt
/// is the first picture's presentation time.
fn encode_gop(
    media: &SegmentMedia,
    gop: Range<usize>,
    pts: &[i64],
    end_pts: i64,
    config: &AvcConfig,
    reencode: &Reencode,
) -> Result<Rendered, RenderError> {
    let corrupt = |what: String| RenderError::Corrupt(what);
    let mut decoder =
        VideoDecoder::new(config).map_err(|e| corrupt(format!("the init's avcC: {e}")))?;
    let mut pictures = Vec::with_capacity(pts.len());
    let mut take = |picture: Picture| {
        if pts.binary_search(&picture.pts).is_ok() {
            pictures.push(picture);
        }
    };
    for i in gop.clone() {
        let timed = media.timed[i];
        let frame = Frame {
            track: TrackKind::Video,
            dts: timed.dts,
            pts: timed.pts,
            keyframe: timed.keyframe,
            data: media.samples[i].data.clone(),
        };
        decoder
            .send(&frame)
            .map_err(|e| corrupt(format!("sample at dts {}: {e}", timed.dts)))?;
        std::iter::from_fn(|| decoder.receive()).for_each(&mut take);
    }
    decoder.flush().into_iter().for_each(&mut take);
    pictures.sort_by_key(|p| p.pts);
    pictures.dedup_by_key(|p| p.pts);
    if pictures.len() != pts.len() {
        return Err(corrupt(format!(
            "{} of the {} pictures presented from pts {} did not decode",
            pts.len() - pictures.len(),
            pts.len(),
            pts[0]
        )));
    }

    // The rung's own size, rounded to even for 4:2:0; a publisher's 4:2:2 or 10-bit source
    // is converted to what the live encoder takes.
    let first = &pictures[0].frame;
    let size = (first.width() & !1, first.height() & !1);
    let mut scaler =
        if (first.width(), first.height(), first.format()) != (size.0, size.1, ENCODER_FORMAT) {
            let scaler = Scaler::new(
                first.width(),
                first.height(),
                first.format(),
                size.0,
                size.1,
            )
            .map_err(|e| RenderError::Encode(e.to_string()))?;
            Some(scaler)
        } else {
            None
        };
    let frame_rate = config
        .frame_rate
        .filter(|f| f.is_finite() && *f > 0.0)
        .map_or_else(
            || frame_rate_fraction(DEFAULT_FRAME_RATE),
            frame_rate_fraction,
        );
    let live = reencode.encoding.settings(
        size,
        frame_rate,
        reencode.bitrate_bps,
        profile(config.profile_idc),
        reencode.segment_target_90k,
    );
    let encode_error = |e: crate::av::AvError| RenderError::Encode(e.to_string());
    // x264 writes its parameter sets when it opens. The rung's own settings give the
    // archived ones back on an x264 rung; anything else (a publisher's video) is numbered
    // apart, at the archived level, so that one init can hold both (`params`).
    let mut encoder = VideoEncoder::new(&live).map_err(encode_error)?;
    if encoder.config().record != config.record
        && let Some(id) = params::free_id(config)
    {
        let apart = EncoderSettings {
            parameter_set_id: id,
            level_idc: Some(config.level_idc),
            ..live
        };
        encoder = VideoEncoder::new(&apart).map_err(encode_error)?;
    }
    let mut frames = Vec::with_capacity(pictures.len());
    for (n, picture) in pictures.iter().enumerate() {
        let out = match scaler.as_mut() {
            Some(scaler) => {
                let scaled = scaler.scale(&picture.frame).map_err(encode_error)?;
                encoder.encode(&scaled, picture.pts, n == 0)
            }
            None => encoder.encode(&picture.frame, picture.pts, n == 0),
        };
        frames.extend(out.map_err(encode_error)?);
    }
    frames.extend(encoder.flush().map_err(encode_error)?);
    if frames.len() != pictures.len() || !frames[0].keyframe {
        return Err(RenderError::Encode(format!(
            "libx264 returned {} frames for {} pictures (first an IDR: {})",
            frames.len(),
            pictures.len(),
            frames.first().is_some_and(|f| f.keyframe)
        )));
    }
    let samples = frames
        .iter()
        .enumerate()
        .map(|(n, frame)| {
            let next = frames.get(n + 1).map_or(end_pts, |f| f.pts);
            Sample {
                duration: u32::try_from(next - frame.pts).unwrap_or(0),
                composition_offset: 0,
                keyframe: frame.keyframe,
                data: frame.data.clone(),
            }
        })
        .collect();
    Ok(Rendered {
        fragment: Fragment {
            sequence_number: media.sequence[gop.start],
            base_media_decode_time: pts[0].max(0) as u64,
            samples,
        },
        config: Some(encoder.config().clone()),
    })
}

/// The x264 profile for a rendition's SPS `profile_idc` (H.264 Annex A.2): the live
/// rungs' Baseline, Main and High come back as themselves; a publisher's other profiles
/// (High 10, 4:2:2, ...) become High, the most the 8-bit 4:2:0 encoder writes.
fn profile(profile_idc: u8) -> H264Profile {
    match profile_idc {
        66 => H264Profile::Baseline,
        77 | 88 => H264Profile::Main,
        _ => H264Profile::High,
    }
}
