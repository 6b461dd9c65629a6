//! `floodlight-player`: an LL-HLS client that follows a live stream the way a
//! low-latency player does (hls.js in low-latency mode, AVPlayer) and checks and measures
//! what it gets.
//!
//! It reads the master playlist, picks a variant and its audio rendition, starts
//! PART-HOLD-BACK from the live edge on an independent part, then loops on blocking
//! playlist reloads (`_HLS_msn`/`_HLS_part`, some with `_HLS_skip=YES`) while requesting
//! the preload-hinted part in parallel. A recorded playlist (start-over and time-shift
//! `EXT-X-PLAYLIST-TYPE:EVENT`, a finished range or VOD asset) is followed as a plain HLS
//! player does instead: every segment in order, reloading an EVENT playlist about every
//! target duration, with the variant's I-frame playlist read by Range requests. Every
//! playlist is read with quick-m3u8 and every init segment, part and segment with
//! mp4-atom — parsers we did not write — and checked against RFC 8216bis and Floodlight's
//! packaging rules. See `README.md` for the numbers.
//!
//! ```no_run
//! # async fn run() -> Result<(), floodlight_player::PlayerError> {
//! let mut config = floodlight_player::PlayerConfig::new("http://127.0.0.1:8080/live/ev1/master.m3u8");
//! config.duration = std::time::Duration::from_secs(20);
//! let report = floodlight_player::follow(config).await?;
//! assert!(report.is_clean(), "{report}");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod check;
#[cfg(test)]
mod fake_origin;
pub mod fmp4;
mod follow;
pub mod playlist;
mod report;
mod swarm;

pub use follow::{
    PlayerConfig, PlayerError, RecordedPace, VariantChoice, blocking_reload_url, follow,
};
pub use report::{
    Distribution, IFrameSummary, RecordedReport, RecordedSummary, RenditionSummary, Report,
};
pub use swarm::{SwarmConfig, SwarmReport, swarm};
