//! Ladder planning: a profile's rungs, fitted to one publisher's picture.
//!
//! Rules (issue 4, "Encoding"):
//! - Never upscale. With the `source` passthrough on top, encoded rungs start strictly
//!   below the source's height (a 720p source: `source` is the 720p rung). Without it,
//!   rungs up to the source's height are kept; a profile with nothing left falls back to
//!   the passthrough, so a stream never ends up without video.
//! - Width from the source's display aspect ratio (SPS cropping applied), rounded to even:
//!   4:2:0 chroma needs even sizes. Square pixels are assumed (publishers send them).
//! - The frame rate is kept up to 60 fps (sports); above it every other picture is
//!   encoded (120 → 60, 100 → 50).
//! - H.264 profile per rung: High from 720 lines up (Apple HLS authoring spec §1.2
//!   allows High for all; its efficiency matters most at large sizes), Main for the
//!   middle rungs, Constrained Baseline below 360 lines for the oldest phones.

use crate::av::H264Profile;
use crate::config::LadderProfile;

/// Rendition name of the publisher's video (passed through, or re-encoded at its size).
pub(crate) const SOURCE: &str = floodlight_media::package::SOURCE_RENDITION;
/// Encoded frame rates stop here; above it pictures are decimated by two.
const MAX_FRAME_RATE: f64 = 60.0;
/// Assumed when the SPS has no timing info: the rate control needs one.
pub(crate) const DEFAULT_FRAME_RATE: f64 = 30.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodecProfile {
    Baseline,
    Main,
    High,
}

impl CodecProfile {
    fn for_height(height: u32) -> Self {
        match height {
            720.. => CodecProfile::High,
            360.. => CodecProfile::Main,
            _ => CodecProfile::Baseline,
        }
    }

    pub(crate) fn h264(self) -> H264Profile {
        match self {
            CodecProfile::Baseline => H264Profile::Baseline,
            CodecProfile::Main => H264Profile::Main,
            CodecProfile::High => H264Profile::High,
        }
    }
}

/// What planning needs to know of the publisher's video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SourceVideo {
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// From the SPS VUI, when present.
    pub(crate) frame_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedRung {
    pub(crate) name: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// `None` for the passthrough (its bit rate is the publisher's).
    pub(crate) bitrate_bps: Option<u32>,
    pub(crate) profile: CodecProfile,
    pub(crate) passthrough: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LadderPlan {
    /// Video rungs, top first: the passthrough (if any), then encoded rungs by height.
    pub(crate) rungs: Vec<PlannedRung>,
    /// Frame rate of the encoded rungs, as a fraction (num, den).
    pub(crate) frame_rate: (u32, u32),
    /// Encode every other picture (a source above 60 fps).
    pub(crate) decimate: bool,
    /// The source's SPS gives no frame rate (WebRTC cameras): `frame_rate` is an
    /// assumption, and the pictures are timed by the publisher's capture clock.
    pub(crate) rate_assumed: bool,
}

pub(crate) fn plan(profile: &LadderProfile, source: &SourceVideo) -> LadderPlan {
    let known = source.frame_rate.filter(|f| f.is_finite() && *f > 0.0);
    let fps = known.unwrap_or(DEFAULT_FRAME_RATE);
    let decimate = fps > MAX_FRAME_RATE + 0.5;
    let encoded_fps = if decimate { fps / 2.0 } else { fps };
    let mut encoded: Vec<_> = profile
        .rungs
        .iter()
        .filter(|r| {
            if profile.source {
                r.height < source.height
            } else {
                r.height <= source.height
            }
        })
        .map(|r| PlannedRung {
            name: r.name.clone(),
            width: even_width(source, r.height),
            height: r.height,
            bitrate_bps: Some(r.bitrate_bps),
            profile: CodecProfile::for_height(r.height),
            passthrough: false,
        })
        .collect();
    encoded.sort_by_key(|r| std::cmp::Reverse(r.height));
    let mut rungs = Vec::with_capacity(encoded.len() + 1);
    if profile.source || encoded.is_empty() {
        rungs.push(passthrough(source));
    }
    rungs.extend(encoded);
    LadderPlan {
        rungs,
        frame_rate: rational(encoded_fps),
        decimate,
        rate_assumed: known.is_none(),
    }
}

/// The `source` rung: the publisher's video passed through.
pub(crate) fn passthrough(source: &SourceVideo) -> PlannedRung {
    PlannedRung {
        name: SOURCE.to_string(),
        width: source.width,
        height: source.height,
        bitrate_bps: None,
        profile: CodecProfile::for_height(source.height),
        passthrough: true,
    }
}

/// The width of a rung `height` lines tall with the source's aspect ratio, rounded to the
/// nearest even number.
fn even_width(source: &SourceVideo, height: u32) -> u32 {
    let src_h = u64::from(source.height.max(1));
    let halves = (u64::from(source.width) * u64::from(height) + src_h) / (2 * src_h);
    (halves * 2).clamp(2, u64::from(u32::MAX - 1)) as u32
}

/// A frame rate as a fraction: the NTSC rates (29.97 = 30000/1001) exactly, others in
/// thousandths.
pub(crate) fn rational(fps: f64) -> (u32, u32) {
    let ntsc = (fps * 1.001).round();
    if (fps - ntsc / 1.001).abs() < 0.005 && (fps - fps.round()).abs() > 0.005 {
        return ((ntsc as u32) * 1000, 1001);
    }
    if (fps - fps.round()).abs() < 0.005 {
        return (fps.round() as u32, 1);
    }
    ((fps * 1000.0).round() as u32, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TranscoderConfig;

    fn default_profile() -> LadderProfile {
        TranscoderConfig::default().ladders["default"].clone()
    }

    fn sizes(plan: &LadderPlan) -> Vec<(&str, u32, u32, bool)> {
        plan.rungs
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height, r.passthrough))
            .collect()
    }

    #[test]
    fn a_720p_source_is_the_top_rung_and_encoded_rungs_start_below() {
        let source = SourceVideo {
            width: 1280,
            height: 720,
            frame_rate: Some(30.0),
        };
        let plan = plan(&default_profile(), &source);
        assert_eq!(
            sizes(&plan),
            [
                ("source", 1280, 720, true),
                ("480p", 854, 480, false),
                ("360p", 640, 360, false),
                ("240p", 426, 240, false),
            ]
        );
        assert_eq!(plan.frame_rate, (30, 1));
        assert!(!plan.decimate);
        assert_eq!(plan.rungs[1].bitrate_bps, Some(1_400_000));
        assert_eq!(plan.rungs[1].profile, CodecProfile::Main);
        assert_eq!(plan.rungs[3].profile, CodecProfile::Baseline);
    }

    #[test]
    fn a_360p_source_with_a_1080p_profile_is_never_upscaled() {
        let mut profile = default_profile();
        profile.rungs.insert(
            0,
            crate::config::RungProfile {
                name: "1080p".to_string(),
                height: 1080,
                bitrate_bps: 6_000_000,
            },
        );
        let source = SourceVideo {
            width: 640,
            height: 360,
            frame_rate: Some(25.0),
        };
        let plan = plan(&profile, &source);
        assert_eq!(
            sizes(&plan),
            [("source", 640, 360, true), ("240p", 426, 240, false)]
        );
        // Without the passthrough, the rung at the source's own height is kept.
        profile.source = false;
        let plan = super::plan(&profile, &source);
        assert_eq!(
            sizes(&plan),
            [("360p", 640, 360, false), ("240p", 426, 240, false)]
        );
        // Nothing at or below the source: the passthrough stays, so there is video.
        profile.rungs.retain(|r| r.height > 360);
        let plan = super::plan(&profile, &source);
        assert_eq!(sizes(&plan), [("source", 640, 360, true)]);
        assert!(plan.rungs.iter().all(|r| r.passthrough));
    }

    #[test]
    fn widths_follow_a_4_3_source_and_stay_even() {
        let source = SourceVideo {
            width: 1440,
            height: 1080,
            frame_rate: None,
        };
        let plan = plan(&default_profile(), &source);
        assert_eq!(
            sizes(&plan)[1..],
            [
                ("720p", 960, 720, false),
                ("480p", 640, 480, false),
                ("360p", 480, 360, false),
                ("240p", 320, 240, false),
            ]
        );
        // No timing info in the SPS: the rate control assumes 30 fps, and says so.
        assert_eq!(plan.frame_rate, (30, 1));
        assert!(plan.rate_assumed);
        // 1280x534 (2.40:1): every width is still even.
        let wide = SourceVideo {
            width: 1280,
            height: 534,
            frame_rate: Some(24.0),
        };
        assert!(
            super::plan(&default_profile(), &wide)
                .rungs
                .iter()
                .all(|r| r.width % 2 == 0)
        );
    }

    #[test]
    fn frame_rate_kept_up_to_60_and_halved_above() {
        let at = |fps| {
            plan(
                &default_profile(),
                &SourceVideo {
                    width: 1920,
                    height: 1080,
                    frame_rate: Some(fps),
                },
            )
        };
        assert_eq!((at(60.0).frame_rate, at(60.0).decimate), ((60, 1), false));
        assert_eq!(
            (at(59.94).frame_rate, at(59.94).decimate),
            ((60_000, 1001), false)
        );
        assert_eq!((at(120.0).frame_rate, at(120.0).decimate), ((60, 1), true));
        assert_eq!((at(100.0).frame_rate, at(100.0).decimate), ((50, 1), true));
        assert_eq!(at(29.97).frame_rate, (30_000, 1001));
        assert_eq!(at(12.5).frame_rate, (12_500, 1000));
    }
}
