//! libav (FFmpeg's libraries, through `ffmpeg-next`): the transcoder's codec layer.
//!
//! Everything here is synchronous and CPU-bound. Callers run it on threads of their own
//! ([`crate::audio_stage`], the ladder's rung threads), never on the async runtime, so a
//! slow codec delays only its own stream or rung. What lives here:
//! - `audio`: Opus → AAC-LC for WebRTC publishers ([`OpusToAac`]);
//! - `video`: the ABR ladder's codecs: the publisher's H.264 decoded once
//!   ([`VideoDecoder`]), resized per rung with swscale ([`Scaler`]) and encoded per rung
//!   with libx264 in live settings ([`VideoEncoder`]: zero latency, no B-frames, VBV-capped
//!   bitrate, IDRs only where the caller forces them, so rungs stay aligned);
//! - `jpeg`: the event's poster thumbnail ([`JpegEncoder`]).
//!
//! Timestamps cross this layer on the stream's 90 kHz timeline; each type converts to and
//! from its codec's time base inside.

mod audio;
mod jpeg;
mod video;

use std::sync::Once;

use ffmpeg_next as ffmpeg;

pub(crate) use audio::OpusToAac;
#[cfg(test)]
pub(crate) use audio::tests as tests_support;
pub(crate) use jpeg::JpegEncoder;
pub(crate) use video::{
    ENCODER_FORMAT, EncoderSettings, H264Profile, Picture, RungEncoding, Scaler, VideoDecoder,
    VideoEncoder,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AvError {
    #[error("libav has no {0}")]
    CodecMissing(&'static str),
    #[error("libav {step}: {source}")]
    Codec {
        step: &'static str,
        source: ffmpeg::Error,
    },
    #[error("the AAC encoder's AudioSpecificConfig is unusable: {0}")]
    EncoderConfig(String),
    /// Settings or input a codec cannot take (odd sizes, a picture of the wrong size).
    #[error("invalid codec input: {0}")]
    InvalidSettings(String),
    /// An encoder produced output we cannot package (missing SPS/PPS, bad NAL units).
    #[error("unusable H.264 from libx264: {0}")]
    Bitstream(String),
}

impl AvError {
    fn codec(step: &'static str) -> impl FnOnce(ffmpeg::Error) -> AvError {
        move |source| AvError::Codec { step, source }
    }
}

/// Initializes libav once per process. Its own logging is limited to fatal errors: per
/// packet errors come back as `Err` and are counted and rolled up by the caller.
pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Registers codecs on libav < 4.0; a no-op on the versions we build against.
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}
