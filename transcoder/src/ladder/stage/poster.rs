//! The stream's poster: a JPEG of the live picture every `thumbnail_interval`, from a
//! decoded picture, or, on a passthrough-only ladder that decodes nothing else, from the
//! keyframe due.

use ffmpeg_next::frame;
use floodlight_media::Frame;

use super::{Ladder, StageOutput};
use crate::av::VideoDecoder;

/// JPEG quality of the poster (1–100).
const THUMBNAIL_QUALITY: u8 = 80;

impl Ladder {
    /// The poster, from a decoded picture.
    pub(super) fn poster(&mut self, picture: &frame::Video, pts: i64) {
        if self.settings.thumbnail_interval <= 0
            || self.next_thumbnail_pts.is_some_and(|next| pts < next)
        {
            return;
        }
        self.next_thumbnail_pts = Some(pts + self.settings.thumbnail_interval);
        let width = self.settings.thumbnail_width.min(picture.width().max(2)) & !1;
        let height = ((u64::from(width) * u64::from(picture.height())
            / u64::from(picture.width().max(1)))
        .max(2) as u32)
            & !1;
        let encoded = self
            .jpeg
            .encode(picture, width, height.max(2), THUMBNAIL_QUALITY);
        match encoded {
            Ok(jpeg) => self.emit(StageOutput::Thumbnail(jpeg)),
            Err(e) => self.count_error("thumbnail_error", &e, pts),
        }
    }

    /// A passthrough-only ladder decodes nothing but the keyframe of each poster.
    pub(super) fn passthrough_thumbnail(&mut self, frame: &Frame) {
        if !frame.keyframe
            || self.settings.thumbnail_interval <= 0
            || self.next_thumbnail_pts.is_some_and(|next| frame.pts < next)
        {
            return;
        }
        let Some(session) = &self.session else { return };
        let decoded = VideoDecoder::new(&session.video).and_then(|mut d| {
            d.send(frame)?;
            Ok(d.flush())
        });
        match decoded {
            Ok(pictures) => {
                if let Some(p) = pictures.into_iter().next() {
                    self.poster(&p.frame, frame.pts);
                }
            }
            Err(e) => self.count_error("thumbnail_error", &e, frame.pts),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ladder::stage::test_support::{capture, run, settings};

    #[test]
    fn a_passthrough_only_ladder_decodes_keyframes_for_the_poster() {
        let mut settings = settings();
        settings.profile.rungs.clear();
        settings.thumbnail_interval = 90_000;
        let out = run(settings, capture());
        assert_eq!(out.frames.keys().collect::<Vec<_>>(), ["source"]);
        // Keyframes at 0 and 2 s, a poster due every second: one per keyframe.
        assert_eq!(out.thumbnails.len(), 2);
        assert!(out.thumbnails.iter().all(|j| j.starts_with(&[0xff, 0xd8])));
    }
}
