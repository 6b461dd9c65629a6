//! A rung's thread: it takes the pictures of its bounded queue in order, times and counts
//! them for the speed and lag measurements, has them encoded ([`scale`](super::scale)),
//! hands the frames out, and flushes the encoder when the queue closes. A shed rung drops
//! what it has queued.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, mpsc as sync_mpsc};
use std::time::Instant;

use ffmpeg_next::frame;
use floodlight_media::Frame;
use floodlight_media::clock::unix_millis;
use tokio::sync::mpsc;
use tracing::warn;

use super::{RungId, StageOutput};
use crate::av::{Scaler, VideoEncoder};

/// Counters a rung thread shares with the ladder thread.
#[derive(Default)]
pub(super) struct RungStats {
    /// How long the last picture the rung took had waited in its queue, ms.
    pub(super) wait_ms: AtomicU64,
    /// Pictures sent to the rung and not yet encoded.
    pub(super) pending: AtomicU64,
    pub(super) busy_ns: AtomicU64,
    pub(super) media_ticks: AtomicI64,
    /// Set when the rung is shed: the thread drops what it has queued.
    pub(super) stop: AtomicBool,
}

/// A picture for a rung thread.
pub(super) struct RungPicture {
    pub(super) picture: Arc<frame::Video>,
    pub(super) pts: i64,
    pub(super) idr: bool,
    pub(super) received_at_ms: i64,
    pub(super) queued_at: Instant,
}

/// One rung's thread: scale, encode, hand the frames out.
pub(super) struct RungWorker {
    pub(super) id: RungId,
    pub(super) name: String,
    pub(super) size: (u32, u32),
    pub(super) encoder: VideoEncoder,
    pub(super) out: mpsc::UnboundedSender<StageOutput>,
    pub(super) stats: Arc<RungStats>,
    pub(super) errors: u64,
}

impl RungWorker {
    pub(super) fn run(mut self, rx: sync_mpsc::Receiver<RungPicture>) {
        let mut last_pts: Option<i64> = None;
        // swscale's context stays on this thread (it is not `Send`).
        let mut scaler: Option<Scaler> = None;
        while let Ok(job) = rx.recv() {
            if self.stats.stop.load(Ordering::Relaxed) {
                return;
            }
            let waited = job.queued_at.elapsed().as_millis() as u64;
            self.stats.wait_ms.store(waited, Ordering::Relaxed);
            let started = Instant::now();
            let result = self.encode(&job, &mut scaler);
            self.stats
                .busy_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if let Some(last) = last_pts
                && job.pts > last
            {
                self.stats
                    .media_ticks
                    .fetch_add(job.pts - last, Ordering::Relaxed);
            }
            last_pts = Some(job.pts);
            // After the frames are out: a caller that sees no pending picture sees them.
            let sent = result.map(|frames| self.send(frames, job.received_at_ms));
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            match sent {
                Ok(()) => {}
                Err(e) => {
                    self.errors += 1;
                    metrics::counter!("floodlight_transcoder_frames_dropped_total", "reason" => "encode_error")
                        .increment(1);
                    if self.errors % 100 == 1 {
                        warn!(rung = %self.name, error = %e, pts = job.pts, errors = self.errors, "picture not encoded");
                    }
                }
            }
        }
        match self.encoder.flush() {
            Ok(frames) => self.send(frames, unix_millis()),
            Err(e) => warn!(rung = %self.name, error = %e, "flushing the encoder"),
        }
    }

    fn send(&self, frames: Vec<Frame>, received_at_ms: i64) {
        for frame in frames {
            // The pipeline is gone only when the stream is ending.
            let _ = self.out.send(StageOutput::Frame {
                id: self.id,
                frame,
                received_at_ms,
            });
        }
    }
}
