//! Floodlight's LL-HLS origin: receives CMAF parts from transcoders over the push API
//! (`floodlight_media::push`), keeps each stream's live window in memory, and serves
//! master, media and I-frame playlists, init segments, parts, segments and the stream's
//! poster, answering blocking playlist reloads and preload-hinted part requests the
//! moment the awaited part lands (RFC 8216bis §6.2.5.2, §6.2.6).
//!
//! The window logic (ordering, retention, blocking decisions, playlist models) is sans-IO
//! in `window` and `stream`; `origin`, `router`, `push` and `playback` are the axum layer
//! around it.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod access;
mod archive;
mod auth;
mod config;
mod error;
mod metrics;
mod origin;
mod playback;
mod push;
mod recorded;
mod resource;
mod respond;
mod router;
mod stream;
mod window;

pub use access::ViewerSessions;
pub use config::{ConfigError, OriginConfig};
pub use origin::{Origin, run};
pub use stream::{RenditionStatus, ShedRendition, StreamStatus};
