//! Floodlight's shared, I/O-free media core: the `Frame` every ingest protocol produces,
//! codec parameters, FLV parsing, the CMAF writer, the LL-HLS packager and the playlist
//! model. No tokio, no sockets, no clock: callers pass time in.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod aac;
pub mod avc;
mod bits;
pub mod clock;
pub mod cmaf;
pub mod codec;
pub mod flv;
pub mod frame;
pub mod package;
pub mod playlist;
pub mod publish;
pub mod push;
pub mod stream;
pub mod sync;
pub mod token;
pub mod track;
pub mod transport;
pub mod ts;

pub use frame::{Frame, TIMESCALE, TrackKind};
pub use stream::{
    LadderEvent, PlaybackAccess, RenditionTrack, StampedEvent, StampedLadderEvent, StreamEvent,
    StreamSettings,
};
pub use track::{AacConfig, AvcConfig, CodecParams, OpusConfig, TrackParams};
