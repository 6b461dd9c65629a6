//! Floodlight transcoder: turns a live stream's `StreamEvent`s into CMAF parts per
//! rendition and pushes them to every origin of the stream.
//!
//! This ladder is the `source` rendition (video passed through untouched) plus the
//! publisher's audio as AAC: passed through when the publisher sends AAC, transcoded with
//! libav (`av`, on a thread of its own per stream) when it sends Opus (WebRTC/WHIP). The
//! packaging core is `floodlight_media::package`. One pipeline
//! task per live stream outlives publisher reconnects for a grace period, so a reconnect
//! continues the numbering with a discontinuity.
// libav's codec context fields that `ffmpeg-next` does not wrap are read in one place
// (`av::audio`, with a SAFETY note); everything else is safe code.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod audio_stage;
mod av;
mod config;
mod pipeline;
mod push;

pub use config::{ConfigError, TranscoderConfig};
pub use pipeline::Transcoder;
