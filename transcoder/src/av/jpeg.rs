//! JPEG posters from decoded pictures (the event's `thumbnail.jpg`), with libav's `mjpeg`
//! encoder: baseline JPEG/JFIF that every browser and image tool reads.

use bytes::Bytes;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::{Packet, Rational, codec, encoder, frame};

use super::video::Scaler;
use super::{AvError, init};

/// Full-range 4:2:0, JPEG's (JFIF's) own YUV: libav's `mjpeg` encoder takes it without
/// relaxed compliance, and swscale converts the video range on the way.
const JPEG_FORMAT: Pixel = Pixel::YUVJ420P;

/// Encodes pictures of any size and format as JPEG at a requested size. Keeps its scaler
/// and encoder while the sizes and quality stay the same, as they do for one stream's
/// periodic poster.
#[derive(Default)]
pub(crate) struct JpegEncoder {
    scaler: Option<Scaler>,
    /// The open encoder and the (width, height, quality) it was opened for.
    encoder: Option<(encoder::Video, (u32, u32, u8))>,
    /// Pictures given to the open encoder: their pts, which libav wants increasing.
    sent: i64,
}

impl JpegEncoder {
    pub(crate) fn new() -> Self {
        JpegEncoder::default()
    }

    /// `picture` resized to `width`×`height` and encoded as one JPEG. `quality` is 1
    /// (smallest) to 100 (best).
    pub(crate) fn encode(
        &mut self,
        picture: &frame::Video,
        width: u32,
        height: u32,
        quality: u8,
    ) -> Result<Bytes, AvError> {
        init();
        if !(1..=100).contains(&quality) {
            return Err(AvError::InvalidSettings(format!(
                "JPEG quality {quality}: expected 1..=100"
            )));
        }
        if width == 0 || height == 0 {
            return Err(AvError::InvalidSettings(format!(
                "JPEG size {width}x{height}: empty picture"
            )));
        }
        let reuse = self
            .scaler
            .as_ref()
            .is_some_and(|s| s.accepts(picture) && s.output_size() == (width, height));
        if !reuse {
            self.scaler = Some(Scaler::to_format(
                picture.width(),
                picture.height(),
                picture.format(),
                width,
                height,
                JPEG_FORMAT,
            )?);
        }
        let Some(scaler) = self.scaler.as_mut() else {
            unreachable!("set just above");
        };
        let mut scaled = scaler.scale(picture)?;
        let key = (width, height, quality);
        if self.encoder.as_ref().is_none_or(|(_, k)| *k != key) {
            self.encoder = Some((open(width, height, quality)?, key));
            self.sent = 0;
        }
        // libav's mjpeg encoder refuses a pts that does not increase; the poster's own
        // time does not matter, so the encoder gets a picture count.
        scaled.set_pts(Some(self.sent));
        self.sent += 1;
        let Some((encoder, _)) = self.encoder.as_mut() else {
            unreachable!("set just above");
        };
        encoder
            .send_frame(&scaled)
            .map_err(AvError::codec("encoding JPEG"))?;
        let mut packet = Packet::empty();
        encoder
            .receive_packet(&mut packet)
            .map_err(AvError::codec("encoding JPEG"))?;
        let data = packet.data().unwrap_or_default();
        Ok(Bytes::copy_from_slice(data))
    }
}

fn open(width: u32, height: u32, quality: u8) -> Result<encoder::Video, AvError> {
    let codec = encoder::find(codec::Id::MJPEG).ok_or(AvError::CodecMissing("mjpeg encoder"))?;
    let mut setup = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(AvError::codec("creating the JPEG encoder"))?;
    setup.set_width(width);
    setup.set_height(height);
    setup.set_format(JPEG_FORMAT);
    setup.set_time_base(Rational::new(1, 25));
    // A fixed quantizer scale, 2 (best) to 31 (JPEG's coarsest in libav's scale), pinned by
    // qmin = qmax: what `ffmpeg -q:v` does, without a rate control goal.
    let qscale = 2 + (100 - i32::from(quality)) * 29 / 99;
    setup.set_qmin(qscale);
    setup.set_qmax(qscale);
    setup
        .open_as(codec)
        .map_err(AvError::codec("opening the JPEG encoder"))
}

#[cfg(test)]
mod tests {
    use ffmpeg_next::decoder;

    use super::*;
    use crate::av::video::tests::test_picture;

    fn decode(jpeg: &[u8]) -> (u32, u32) {
        let codec = decoder::find(codec::Id::MJPEG).unwrap();
        let mut dec = codec::Context::new_with_codec(codec)
            .decoder()
            .video()
            .unwrap();
        dec.send_packet(&Packet::copy(jpeg)).unwrap();
        dec.send_eof().unwrap();
        let mut picture = frame::Video::empty();
        dec.receive_frame(&mut picture).unwrap();
        (picture.width(), picture.height())
    }

    #[test]
    fn poster_is_a_decodable_jpeg_of_the_requested_size() {
        let mut jpeg = JpegEncoder::new();
        let picture = test_picture(640, 360, 5);
        let best = jpeg.encode(&picture, 320, 180, 90).unwrap();
        // JPEG (ITU-T T.81 Annex B): SOI FF D8 first, EOI FF D9 last.
        assert_eq!(&best[..2], &[0xff, 0xd8]);
        assert_eq!(&best[best.len() - 2..], &[0xff, 0xd9]);
        assert_eq!(decode(&best), (320, 180));
        let small = jpeg.encode(&picture, 320, 180, 10).unwrap();
        assert!(
            small.len() < best.len(),
            "{} vs {}",
            small.len(),
            best.len()
        );
        // The periodic poster: the same encoder again and again.
        for n in 0..3 {
            let again = jpeg
                .encode(&test_picture(640, 360, n), 320, 180, 10)
                .unwrap();
            assert_eq!(decode(&again), (320, 180));
        }
        // Another source size and an odd output size reuse nothing stale.
        let other = test_picture(256, 144, 1);
        assert_eq!(
            decode(&jpeg.encode(&other, 161, 91, 75).unwrap()),
            (161, 91)
        );
        assert!(jpeg.encode(&other, 160, 90, 0).is_err());
        assert!(jpeg.encode(&other, 0, 90, 50).is_err());
    }
}
