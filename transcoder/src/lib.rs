//! Floodlight transcoder: turns a live stream's `StreamEvent`s into CMAF parts per
//! rendition and pushes them to every origin of the stream.
//!
//! This ladder is the `source` rendition (video passed through untouched) plus the
//! publisher's AAC audio; the packaging core is `floodlight_media::package`. One pipeline
//! task per live stream outlives publisher reconnects for a grace period, so a reconnect
//! continues the numbering with a discontinuity.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod config;
mod pipeline;
mod push;

pub use config::{ConfigError, TranscoderConfig};
pub use pipeline::Transcoder;
