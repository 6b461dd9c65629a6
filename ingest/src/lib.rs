//! Floodlight ingest: terminates publisher protocols and turns every one of them into the
//! same thing, a sequence of [`StampedEvent`]s (track parameters, then `Frame`s) per
//! publisher session. It authorizes the stream key before accepting a single media byte.
//!
//! Protocols live in their own module and end in `StreamEvent`s (`rtmp/`, `srt/`, `whip/`,
//! and `rtsp/`, which pulls). Each hands its publisher's media to the publisher registry
//! (`publisher/`), where a sans-IO state machine (`takeover.rs`) decides which of an
//! event's publishers goes downstream. What ingest needs from its neighbours is named by
//! two small traits (`neighbours.rs`), [`IngestAuthority`] (the control plane) and
//! [`StreamHandler`] (the transcoder), which the binary wires in-process or over the
//! network (`transcoder_link/`).
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod config;
mod neighbours;
mod publisher;
mod rollup;
mod rtmp;
mod rtsp;
mod srt;
mod takeover;
#[cfg(test)]
mod test_fixtures;
mod tracks;
mod transcoder_link;
mod whip;

pub use config::{IngestConfig, RtmpConfig};
pub use floodlight_media::StampedEvent;
pub use neighbours::{
    BoxFuture, IngestAuthority, Protocol, PublishGrant, PublishRefusal, PublishRequest, PullSource,
    RtspTransport, SessionChange, StreamHandler,
};
pub use publisher::{Ingest, SessionStatus, SlotTaken};
pub use rtmp::serve_rtmp;
pub use rtsp::{InvalidRtspConfig, RtspConfig, pull_rtsp};
pub use srt::{SrtConfig, bind_srt, serve_srt};
pub use transcoder_link::{DirectoryError, RemoteSettings, RemoteTranscoders, TranscoderDirectory};
pub use whip::{InvalidWhipConfig, PortRange, WhipConfig, serve_whip};

/// Parsers of outside input, re-exported for fuzz/ only: not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::srt::stream_id::{StreamIdError, publish_key};
    pub use crate::whip::stun::{PEER_REFLEXIVE_PRIORITY, add_missing_priority};

    /// The RTMP server's step over a connection's bytes: rml_rtmp's results, or `None`
    /// where the server closes the connection (a session error, or a panic in rml_rtmp,
    /// which it contains).
    pub fn rtmp_handle_input(
        session: &mut rml_rtmp::sessions::ServerSession,
        bytes: &[u8],
    ) -> Option<Vec<rml_rtmp::sessions::ServerSessionResult>> {
        crate::rtmp::handle_input(session, bytes, &mut 0).ok()
    }
}
