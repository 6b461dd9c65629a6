//! libav (FFmpeg's libraries, through `ffmpeg-next`): the transcoder's codec layer.
//!
//! Everything here is synchronous and CPU-bound. Callers run it on a thread of its own
//! ([`crate::audio_stage`]), never on the async runtime, so a slow codec delays only its
//! own stream. Today: Opus → AAC-LC for WebRTC publishers ([`OpusToAac`]); the ABR ladder
//! (decode once, scale, encode per rung) adds its video codecs beside it.

mod audio;

use std::sync::Once;

use ffmpeg_next as ffmpeg;

pub(crate) use audio::OpusToAac;
#[cfg(test)]
pub(crate) use audio::tests as tests_support;

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
