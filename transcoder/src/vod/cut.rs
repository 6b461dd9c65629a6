//! Where a frame-precise asset cuts a boundary segment, decided on sample timing alone:
//! no codec, no I/O, so every rule here is tested on numbers.
//!
//! A frame's wall-clock time is its segment's PROGRAM-DATE-TIME plus its presentation
//! time after the segment's first presentation (RFC 8216bis §4.4.4.6: the date applies to
//! the segment's first sample, and media time runs on from there). Comparisons are exact
//! integers (`ms × timescale` against `ticks × 1000`), so a cut at a frame's own
//! millisecond never falls on the wrong side of it by rounding.
//!
//! - Video keeps the frames presented in `[start, end)`: the asset starts on the first
//!   frame presented at or after `start` and ends on the last one presented before `end`.
//! - Audio keeps the AAC frames whose middle lies in `[start, end)`: whole frames only (no
//!   re-encode), so each end lands within half a frame (10.7 ms at 48 kHz) of its cut,
//!   on whichever side is nearer.
//!
//! A video segment is a run of GOPs, each starting with a sync sample. Only a GOP the
//! range cuts is touched: a GOP entirely inside is copied, one entirely outside dropped. A
//! GOP cut at its end keeps a prefix in decode order when that prefix is exactly the
//! frames kept (always so without B-frames: x264's zero-latency rungs): every reference of
//! a kept frame is decoded before it, so the prefix decodes alone and nothing after it is
//! needed. Any other cut GOP (a start cut, which loses the GOP's IDR; an end cut through
//! reordered frames, where a kept B-frame needs a later-presented P-frame) is re-encoded
//! from its decoded pictures.

use std::ops::Range;

/// One sample on its track's timeline, in the track timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timed {
    pub(super) dts: i64,
    pub(super) pts: i64,
    pub(super) duration: i64,
    pub(super) keyframe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Track {
    Video,
    Audio,
}

/// The range an asset asks for, and the segment it is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    /// `[start_ms, end_ms)`, Unix milliseconds.
    pub(super) start_ms: i64,
    pub(super) end_ms: i64,
    /// The segment's PROGRAM-DATE-TIME: the wall clock of its first presentation.
    pub(super) pdt_ms: i64,
    pub(super) timescale: u32,
}

/// What becomes of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SegmentCut {
    /// Every sample is in the range: the archived segment is referenced as it is.
    Whole,
    /// No sample is in the range: the segment leaves the asset.
    Nothing,
    /// Pieces in decode order, each written anew.
    Pieces(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// These samples (decode order) as they are.
    Copy(Range<usize>),
    /// The GOP of samples `gop` (decode order) decoded, and its pictures presented at
    /// `pts` (ascending) encoded anew, the first as an IDR; the last lasts until `end_pts`.
    Encode {
        gop: Range<usize>,
        pts: Vec<i64>,
        end_pts: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum CutError {
    #[error("the segment has no samples")]
    Empty,
    #[error("the segment starts with a sample that is not a sync sample (dts {dts})")]
    NoLeadingSync { dts: i64 },
}

impl Window {
    /// The wall clock of a presentation time, ms, rounded to the nearest.
    pub(super) fn date_ms(&self, pts: i64, first_pts: i64) -> i64 {
        let ts = i128::from(self.timescale);
        let since = i128::from(pts - first_pts) * 1000;
        let ms = (2 * since + ts).div_euclid(2 * ts);
        self.pdt_ms + ms as i64
    }

    /// Whether a moment `offset` ticks after the segment's first presentation, given in
    /// half ticks (`2 × offset`) so an AAC frame's middle is exact, lies in the range.
    fn contains_half_ticks(&self, half_ticks: i64) -> bool {
        let ts = i128::from(self.timescale);
        let at = i128::from(half_ticks) * 1000;
        let from = i128::from(self.start_ms - self.pdt_ms) * ts * 2;
        let to = i128::from(self.end_ms - self.pdt_ms) * ts * 2;
        at >= from && at < to
    }
}

/// The first presentation time of a segment's samples.
pub(super) fn first_pts(samples: &[Timed]) -> Option<i64> {
    samples.iter().map(|s| s.pts).min()
}

/// Cuts one segment's samples (decode order) to `window`.
pub(super) fn cut(
    samples: &[Timed],
    window: &Window,
    track: Track,
) -> Result<SegmentCut, CutError> {
    let first = first_pts(samples).ok_or(CutError::Empty)?;
    let kept: Vec<bool> = samples
        .iter()
        .map(|s| {
            let offset = 2 * (s.pts - first);
            window.contains_half_ticks(match track {
                Track::Video => offset,
                Track::Audio => offset + s.duration,
            })
        })
        .collect();
    if kept.iter().all(|&k| k) {
        return Ok(SegmentCut::Whole);
    }
    if !kept.iter().any(|&k| k) {
        return Ok(SegmentCut::Nothing);
    }
    let pieces = match track {
        // Every AAC frame is a sync sample presented in decode order: the kept frames
        // are one run.
        Track::Audio => {
            let from = kept.iter().position(|&k| k).unwrap_or(0);
            let to = kept.iter().rposition(|&k| k).map_or(from, |i| i + 1);
            vec![Piece::Copy(from..to)]
        }
        Track::Video => video_pieces(samples, &kept)?,
    };
    Ok(SegmentCut::Pieces(pieces))
}

fn video_pieces(samples: &[Timed], kept: &[bool]) -> Result<Vec<Piece>, CutError> {
    if !samples[0].keyframe {
        return Err(CutError::NoLeadingSync {
            dts: samples[0].dts,
        });
    }
    let mut pieces: Vec<Piece> = Vec::new();
    for gop in gops(samples) {
        let count = gop.clone().filter(|&i| kept[i]).count();
        let piece = if count == 0 {
            continue;
        } else if gop.clone().take(count).all(|i| kept[i]) {
            // All of the GOP, or a prefix in decode order that is exactly the kept frames.
            Piece::Copy(gop.start..gop.start + count)
        } else {
            let mut pts: Vec<i64> = gop
                .clone()
                .filter(|&i| kept[i])
                .map(|i| samples[i].pts)
                .collect();
            pts.sort_unstable();
            let last = pts[pts.len() - 1];
            Piece::Encode {
                end_pts: presentation_end(samples, last),
                gop,
                pts,
            }
        };
        match (pieces.last_mut(), &piece) {
            (Some(Piece::Copy(previous)), Piece::Copy(next)) if previous.end == next.start => {
                previous.end = next.end;
            }
            _ => pieces.push(piece),
        }
    }
    Ok(pieces)
}

/// The GOPs of a segment that starts with a sync sample, as decode-order ranges.
fn gops(samples: &[Timed]) -> impl Iterator<Item = Range<usize>> + '_ {
    let starts: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].keyframe)
        .collect();
    (0..starts.len()).map(move |g| starts[g]..starts.get(g + 1).copied().unwrap_or(samples.len()))
}

/// When the frame presented at `pts` stops being shown: the next presentation in the
/// segment, or the segment's end (its last decode time plus that sample's duration),
/// where the next segment's first frame takes over.
pub(super) fn presentation_end(samples: &[Timed], pts: i64) -> i64 {
    let segment_end = samples.last().map_or(pts, |s| s.dts + s.duration);
    samples
        .iter()
        .map(|s| s.pts)
        .filter(|&p| p > pts)
        .min()
        .unwrap_or(segment_end)
        .max(pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDT: i64 = 1_765_000_000_000;
    /// 30 fps on 90 kHz.
    const FRAME: i64 = 3000;

    /// `n` frames of a zero-latency GOP (no B-frames) from `dts`, IDR first.
    fn plain(dts: i64, n: i64) -> Vec<Timed> {
        (0..n)
            .map(|i| Timed {
                dts: dts + i * FRAME,
                pts: dts + i * FRAME,
                duration: FRAME,
                keyframe: i == 0,
            })
            .collect()
    }

    /// An x264 GOP with 2 B-frames as the packager stores it (decode times shifted so the
    /// IDR's composition offset is 0): decode order I0 P3 B1 B2 P6 B4 B5, presentation
    /// frame numbers as given.
    fn bframes(dts: i64) -> Vec<Timed> {
        [0, 3, 1, 2, 6, 4, 5]
            .iter()
            .enumerate()
            .map(|(i, &p)| Timed {
                dts: dts + i as i64 * FRAME,
                pts: dts + p * FRAME,
                duration: FRAME,
                keyframe: i == 0,
            })
            .collect()
    }

    fn window(start_ms: i64, end_ms: i64) -> Window {
        Window {
            start_ms: PDT + start_ms,
            end_ms: PDT + end_ms,
            pdt_ms: PDT,
            timescale: 90_000,
        }
    }

    fn encode(cut: SegmentCut) -> (Range<usize>, Vec<i64>, i64) {
        match cut {
            SegmentCut::Pieces(pieces) => match &pieces[..] {
                [Piece::Encode { gop, pts, end_pts }, ..] => (gop.clone(), pts.clone(), *end_pts),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_start_at_just_before_or_just_after_a_frame() {
        let gop = plain(900_000, 60);
        // Frame 3 is presented at exactly 100 ms; frame 4 at 133.3 ms.
        for (start_ms, first_kept) in [(100, 3), (99, 3), (101, 4), (133, 4), (134, 5)] {
            let (range, pts, end) =
                encode(cut(&gop, &window(start_ms, 2000), Track::Video).unwrap());
            assert_eq!(range, 0..60, "the whole GOP is decoded");
            assert_eq!(pts[0], 900_000 + first_kept * FRAME, "start {start_ms} ms");
            assert_eq!(pts.len(), 60 - first_kept as usize);
            assert_eq!(
                end,
                900_000 + 60 * FRAME,
                "the last frame lasts to the segment's end"
            );
        }
        // At the segment's first frame nothing is cut.
        assert_eq!(
            cut(&gop, &window(0, 2000), Track::Video).unwrap(),
            SegmentCut::Whole
        );
        assert_eq!(
            cut(&gop, &window(-50, 2000), Track::Video).unwrap(),
            SegmentCut::Whole
        );
        // After the last frame's presentation began: nothing of this segment.
        assert_eq!(
            cut(&gop, &window(1967, 4000), Track::Video).unwrap(),
            SegmentCut::Nothing
        );
    }

    #[test]
    fn an_end_without_b_frames_keeps_a_decode_prefix() {
        let gop = plain(0, 60);
        // Frame 30 is presented at 1000 ms exactly: an end there excludes it.
        for (end_ms, kept) in [(1000, 30), (999, 30), (1001, 31), (34, 2), (1, 1)] {
            let cut = cut(&gop, &window(0, end_ms), Track::Video).unwrap();
            assert_eq!(
                cut,
                SegmentCut::Pieces(vec![Piece::Copy(0..kept)]),
                "end {end_ms} ms"
            );
        }
        assert_eq!(
            cut(&gop, &window(0, 0), Track::Video).unwrap(),
            SegmentCut::Nothing
        );
    }

    #[test]
    fn an_end_through_reordered_frames_re_encodes_only_when_the_prefix_is_not_the_kept_frames() {
        let gop = bframes(0);
        // Frames 0..=3 kept: decode prefix I0 P3 B1 B2, exactly them.
        let end_after_3 = 4 * FRAME / 90;
        assert_eq!(
            cut(&gop, &window(0, end_after_3), Track::Video).unwrap(),
            SegmentCut::Pieces(vec![Piece::Copy(0..4)])
        );
        // Frames 0..=4 kept: B4 needs P6, presented after the end: re-encoded.
        let end_after_4 = 5 * FRAME / 90;
        let (range, pts, end) = encode(cut(&gop, &window(0, end_after_4), Track::Video).unwrap());
        assert_eq!(range, 0..7);
        assert_eq!(pts, [0, FRAME, 2 * FRAME, 3 * FRAME, 4 * FRAME]);
        assert_eq!(end, 5 * FRAME, "frame 4 lasts until frame 5 is presented");
        // Frames 0..=1: I0 P3 is the prefix of two, but P3 is not kept.
        let (_, pts, end) = encode(cut(&gop, &window(0, 2 * FRAME / 90), Track::Video).unwrap());
        assert_eq!((pts, end), (vec![0, FRAME], 2 * FRAME));
    }

    #[test]
    fn only_the_gops_a_range_cuts_are_touched() {
        // Two GOPs in one segment (a publisher's 1 s GOP in a 2 s segment).
        let mut segment = bframes(0);
        segment.extend(bframes(7 * FRAME));
        // Start inside the first GOP: it is re-encoded, the second copied as it is.
        let cut_start = cut(&segment, &window(2 * FRAME / 90, 1000), Track::Video).unwrap();
        let SegmentCut::Pieces(pieces) = cut_start else {
            panic!()
        };
        assert!(matches!(&pieces[0], Piece::Encode { gop, pts, end_pts }
            if *gop == (0..7) && pts[0] == 2 * FRAME && pts.len() == 5 && *end_pts == 7 * FRAME));
        assert_eq!(pieces[1], Piece::Copy(7..14));
        // Start in the second GOP: the first is dropped.
        let SegmentCut::Pieces(pieces) = cut(&segment, &window(300, 1000), Track::Video).unwrap()
        else {
            panic!()
        };
        assert!(matches!(&pieces[..], [Piece::Encode { gop, .. }] if *gop == (7..14)));
        // A range inside one GOP: both cuts in one re-encode.
        let (range, pts, end) = encode(cut(&segment, &window(33, 100), Track::Video).unwrap());
        assert_eq!((range, pts, end), (0..7, vec![FRAME, 2 * FRAME], 3 * FRAME));
    }

    #[test]
    fn audio_is_cut_at_the_nearest_frame_boundary() {
        // 48 kHz AAC: 1024-sample frames of 21.33 ms, the segment's PDT on frame 0.
        let frames: Vec<Timed> = (0..94)
            .map(|i| Timed {
                dts: 96_000 + i * 1024,
                pts: 96_000 + i * 1024,
                duration: 1024,
                keyframe: true,
            })
            .collect();
        let at = |start_ms, end_ms| {
            let window = Window {
                timescale: 48_000,
                ..window(start_ms, end_ms)
            };
            match cut(&frames, &window, Track::Audio).unwrap() {
                SegmentCut::Pieces(p) => match &p[..] {
                    [Piece::Copy(r)] => r.clone(),
                    other => panic!("{other:?}"),
                },
                SegmentCut::Whole => 0..94,
                SegmentCut::Nothing => 0..0,
            }
        };
        // Frame 1 starts at 21.33 ms, its middle at 32 ms.
        assert_eq!(at(31, 2000).start, 1);
        assert_eq!(at(32, 2000).start, 1);
        assert_eq!(at(33, 2000).start, 2);
        assert_eq!(at(0, 2000).start, 0);
        // Frame 46 starts at 981.3 ms, its middle at 992 ms: an end at 992 ms drops it.
        assert_eq!(at(0, 992).end, 46);
        assert_eq!(at(0, 993).end, 47);
        for start_ms in 0..100 {
            let first = at(start_ms, 2000).start as f64 * 1024.0 / 48.0;
            assert!((first - start_ms as f64).abs() <= 1024.0 / 48.0 / 2.0 + 1e-9);
        }
    }

    #[test]
    fn dates_round_to_the_nearest_millisecond() {
        let w = window(0, 1);
        assert_eq!(w.date_ms(3000, 0), PDT + 33);
        assert_eq!(w.date_ms(6000, 0), PDT + 67);
        assert_eq!(w.date_ms(90_000, 0), PDT + 1000);
        let audio = Window {
            timescale: 48_000,
            ..w
        };
        assert_eq!(audio.date_ms(1024, 0), PDT + 21);
    }

    #[test]
    fn a_segment_without_a_leading_sync_sample_is_refused() {
        let mut gop = plain(0, 10);
        gop[0].keyframe = false;
        assert_eq!(
            cut(&gop, &window(50, 2000), Track::Video),
            Err(CutError::NoLeadingSync { dts: 0 })
        );
        assert_eq!(cut(&[], &window(0, 1), Track::Video), Err(CutError::Empty));
    }
}
