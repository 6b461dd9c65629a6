//! Floodlight ingest: terminates publisher protocols and turns every one of them into the
//! same thing, a sequence of [`StampedEvent`]s (track parameters, then `Frame`s) per
//! publisher session. It authorizes the stream key before accepting a single media byte.
//!
//! Protocols live in their own module and end in `StreamEvent`s (`rtmp/`, `srt/`, `whip/`;
//! RTSP comes next). What ingest needs from its neighbours is named by two small traits,
//! [`IngestAuthority`] (the control plane) and [`StreamHandler`] (the transcoder),
//! which the binary wires in-process or over the network.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod config;
mod remote;
mod rollup;
mod rtmp;
mod rtsp;
mod session;
mod srt;
mod tracks;
mod whip;

pub use config::{IngestConfig, RtmpConfig};
pub use floodlight_media::StampedEvent;
pub use remote::{DirectoryError, RemoteSettings, RemoteTranscoders, TranscoderDirectory};
pub use rtmp::serve_rtmp;
pub use rtsp::{InvalidRtspConfig, RtspConfig, pull_rtsp};
pub use session::{
    BoxFuture, Ingest, IngestAuthority, Protocol, PublishGrant, PublishRefusal, PublishRequest,
    PullSource, RtspTransport, SessionChange, SessionStatus, SlotTaken, StreamHandler,
};
pub use srt::{SrtConfig, bind_srt, serve_srt};
pub use whip::{InvalidWhipConfig, PortRange, WhipConfig, serve_whip};

/// Parsers of outside input, re-exported for fuzz/ only: not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::srt::stream_id::{StreamIdError, publish_key};
    pub use crate::whip::stun::{PEER_REFLEXIVE_PRIORITY, add_missing_priority};
}
