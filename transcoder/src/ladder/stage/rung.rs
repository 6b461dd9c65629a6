//! An encoded rung as the ladder thread holds it, and its start: libx264's live settings
//! from the plan (capped VBR at the rung's bit rate, IDRs only where the ladder forces
//! them), a picture queue sized to the shed lag, the counters it shares with its thread,
//! and the thread itself ([`RungWorker`]).

use std::sync::{Arc, mpsc as sync_mpsc};
use std::thread::{self, JoinHandle};

use floodlight_media::AvcConfig;
use tracing::Span;

use super::worker::{RungPicture, RungStats, RungWorker};
use super::{Ladder, RungId};
use crate::av::{RungEncoding, VideoEncoder};
use crate::ladder::plan::{LadderPlan, PlannedRung};
use crate::ladder::shed::LagMonitor;

/// Bounds of a rung's picture queue (decoded pictures are large: 3 MB at 1080p).
const MIN_RUNG_QUEUE: usize = 8;
const MAX_RUNG_QUEUE: usize = 64;

pub(super) struct Rung {
    pub(super) id: RungId,
    pub(super) planned: PlannedRung,
    pub(super) bitrate_bps: u32,
    pub(super) tx: Option<sync_mpsc::SyncSender<RungPicture>>,
    pub(super) thread: Option<JoinHandle<()>>,
    pub(super) stats: Arc<RungStats>,
    pub(super) config: AvcConfig,
    pub(super) lag: LagMonitor,
    /// The queue was full: the rung waits for the next boundary to start clean.
    pub(super) skip_to_boundary: bool,
    /// `(busy_ns, media_ticks)` at the last speed measurement.
    pub(super) speed_mark: (u64, i64),
    pub(super) pixel_rate: u64,
}

impl Ladder {
    pub(super) fn spawn_rung(
        &mut self,
        planned: PlannedRung,
        bitrate_bps: u32,
        plan: &LadderPlan,
    ) -> Result<Rung, crate::av::AvError> {
        let fps = f64::from(plan.frame_rate.0) / f64::from(plan.frame_rate.1);
        let encoding = RungEncoding {
            preset: self.settings.preset.clone(),
            threads: self.settings.threads_per_rung,
            vbv_buffer_ms: self.settings.vbv_buffer_ms,
        };
        let encoder = VideoEncoder::new(&encoding.settings(
            (planned.width, planned.height),
            plan.frame_rate,
            bitrate_bps,
            planned.profile.h264(),
            self.settings.segment_target,
        ))?;
        let mut config = encoder.config().clone();
        if plan.rate_assumed {
            // The encoder's SPS states the assumed rate, but the pictures keep the
            // publisher's capture-clock timing: the packager must time this rung's parts
            // as it does such a source's (docs/packaging.md, PART-TARGET with slack for
            // an unknown rate), or a millisecond of capture jitter closes parts a frame
            // early, under RFC 8216bis §4.4.4.9's 85% floor.
            config.frame_rate = None;
        }
        let id = self.id();
        let stats = Arc::new(RungStats::default());
        let queue = ((fps * f64::from(self.settings.shed_lag_ms) / 1000.0).ceil() as usize + 2)
            .clamp(MIN_RUNG_QUEUE, MAX_RUNG_QUEUE);
        let (tx, rx) = sync_mpsc::sync_channel(queue);
        let worker = RungWorker {
            id,
            name: planned.name.clone(),
            size: (planned.width, planned.height),
            encoder,
            out: self.out.clone(),
            stats: stats.clone(),
            errors: 0,
        };
        let span = Span::current();
        let thread = thread::Builder::new()
            .name(format!("rung-{}-{}", planned.name, self.event_id))
            .spawn(move || {
                let _entered = span.enter();
                worker.run(rx);
            })
            .map_err(|e| crate::av::AvError::InvalidSettings(format!("rung thread: {e}")))?;
        Ok(Rung {
            id,
            bitrate_bps,
            tx: Some(tx),
            thread: Some(thread),
            stats,
            config,
            lag: LagMonitor::default(),
            skip_to_boundary: false,
            speed_mark: (0, 0),
            pixel_rate: (f64::from(planned.width) * f64::from(planned.height) * fps) as u64,
            planned,
        })
    }
}
