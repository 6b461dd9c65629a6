//! Floodlight transcoder: turns a live stream's `StreamEvent`s into an ABR ladder of CMAF
//! parts and pushes them to every origin of the stream.
//!
//! Per stream: Opus audio becomes AAC (`audio_stage`), then the ladder (`ladder`) plans
//! the rungs of the event's profile for the publisher's picture, passes `source` and the
//! audio through, decodes the video once, decides the segment boundaries once and encodes
//! every rung on a thread of its own with IDRs on the same pictures; it sheds a rung when
//! the machine cannot keep up. The packager (`floodlight_media::package`) numbers all
//! renditions together. One pipeline task per live stream outlives publisher reconnects
//! for a grace period, so a reconnect continues the numbering with a discontinuity.
// libav's fields that `ffmpeg-next` does not wrap are touched only in `av` (audio.rs,
// video.rs), each with a SAFETY note; everything else is safe code.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod audio_stage;
mod av;
mod config;
mod ladder;
mod pipeline;
mod push;
mod server;
mod thread_stage;
pub mod vod;

pub use config::{ConfigError, LadderProfile, RungProfile, TranscoderConfig};
pub use ladder::TranscoderLoad;
pub use pipeline::Transcoder;
pub use server::serve_transport;
