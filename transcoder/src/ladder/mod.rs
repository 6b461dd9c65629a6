//! The live ABR ladder of a stream: plan the rungs for the publisher's picture
//! ([`plan`]), decide the segment boundaries once ([`align`]), decode once, scale and
//! encode every rung on a thread of its own ([`stage`]), and shed a rung when the machine
//! cannot keep up ([`shed`]).

mod align;
mod plan;
mod shed;
mod stage;

use floodlight_media::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;

pub(crate) use plan::{DEFAULT_FRAME_RATE, rational as frame_rate_fraction};
pub(crate) use stage::{LadderStage, StageOutput, StageSettings, spawn as spawn_ladder};

/// What a transcoder is running: the assignment's load signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscoderLoad {
    /// Streams with a running pipeline.
    pub streams: usize,
    /// Encoded rungs running (a passthrough costs next to nothing and is not counted).
    pub rungs: usize,
    /// What the streams cost in rungs, the load compared with `capacity_rungs`: the sum
    /// over streams of max(encoded rungs, 1), since a stream whose ladder is not planned
    /// yet, or that is passthrough only, still costs its pipeline.
    pub cost: usize,
}

/// A live stream's ladder: what its load and the shed decisions are computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StreamStatus {
    /// Video rungs, top first, shed ones included (with the reason).
    pub(crate) rungs: Vec<RungStatus>,
    /// Media seconds encoded per second the slowest rung spent encoding them, over the
    /// last few seconds: 1.0 is the limit of real time. `None` without encoded rungs.
    pub(crate) speed: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RungStatus {
    pub(crate) name: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// The rung's target bit rate; `None` for the publisher's video passed through.
    pub(crate) bitrate_bps: Option<u32>,
    pub(crate) passthrough: bool,
    /// Why the rung stopped (`shed-cpu`), if it did.
    pub(crate) shed: Option<String>,
}

/// The status of every stream, written by the ladder threads; the metrics that sum over
/// streams are computed from it.
#[derive(Debug, Default)]
pub(crate) struct StatusBoard {
    streams: Mutex<HashMap<String, StreamStatus>>,
}

impl StatusBoard {
    pub(crate) fn set(&self, event_id: &str, status: StreamStatus) {
        let mut streams = lock(&self.streams);
        streams.insert(event_id.to_string(), status);
        publish_totals(&streams);
    }

    pub(crate) fn remove(&self, event_id: &str) {
        let mut streams = lock(&self.streams);
        streams.remove(event_id);
        publish_totals(&streams);
    }

    pub(crate) fn get(&self, event_id: &str) -> Option<StreamStatus> {
        lock(&self.streams).get(event_id).cloned()
    }

    /// The load of `event_ids` (the streams with a running pipeline): their encoded
    /// rungs, and their cost (see [`TranscoderLoad::cost`]).
    pub(crate) fn load<'a>(&self, event_ids: impl Iterator<Item = &'a str>) -> TranscoderLoad {
        let streams = lock(&self.streams);
        let mut load = TranscoderLoad::default();
        for event_id in event_ids {
            let rungs = streams.get(event_id).map_or(0, StreamStatus::encoded_rungs);
            load.streams += 1;
            load.rungs += rungs;
            load.cost += rungs.max(1);
        }
        load
    }
}

impl StreamStatus {
    fn encoded_rungs(&self) -> usize {
        self.rungs
            .iter()
            .filter(|r| !r.passthrough && r.shed.is_none())
            .count()
    }
}

fn encoded_rungs(streams: &HashMap<String, StreamStatus>) -> usize {
    streams.values().map(StreamStatus::encoded_rungs).sum()
}

/// The transcoder-wide gauges: active rungs, and the encode speed of the stream closest
/// to falling behind (the autoscaling signal: below ~1.2 the machine is full).
fn publish_totals(streams: &HashMap<String, StreamStatus>) {
    metrics::gauge!("floodlight_transcoder_active_rungs").set(encoded_rungs(streams) as f64);
    // Without any encoding stream there is no speed to report: 0, not the last stream's
    // value, which would read as a machine still busy (or still keeping up) forever.
    let slowest = streams
        .values()
        .filter_map(|s| s.speed)
        .min_by(f64::total_cmp);
    metrics::gauge!("floodlight_transcoder_encode_speed").set(slowest.unwrap_or(0.0));
}

/// CPU seconds this process has used (user + system), from /proc/self/stat (Linux).
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // proc(5): utime and stime are fields 14 and 15, the rest starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks of USER_HZ, 100 on every Linux architecture we run on (proc(5)).
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(passthrough: bool, shed: Option<&str>) -> RungStatus {
        RungStatus {
            name: "r".into(),
            width: 640,
            height: 360,
            bitrate_bps: None,
            passthrough,
            shed: shed.map(str::to_string),
        }
    }

    #[test]
    fn load_counts_at_least_one_rung_per_stream() {
        let board = StatusBoard::default();
        board.set(
            "ladder",
            StreamStatus {
                rungs: vec![
                    rung(true, None),
                    rung(false, None),
                    rung(false, Some("shed-cpu")),
                    rung(false, None),
                ],
                speed: Some(1.5),
            },
        );
        board.set(
            "passthrough",
            StreamStatus {
                rungs: vec![rung(true, None)],
                speed: None,
            },
        );
        // "planning": a pipeline whose ladder has not reported yet.
        let load = board.load(["ladder", "passthrough", "planning"].into_iter());
        assert_eq!(
            load,
            TranscoderLoad {
                streams: 3,
                rungs: 2,
                cost: 4
            }
        );
    }

    #[test]
    fn process_cpu_time_is_read() {
        let before = process_cpu_seconds().expect("Linux /proc/self/stat");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_cpu_seconds().unwrap() >= before);
    }
}
