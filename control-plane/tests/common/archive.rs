//! An archive for the asset tests: a real [`AssetBuilder`] over an in-memory record of
//! what each event has archived, whose builds do what the test scripts (succeed, fail
//! retryably or for good, or hold until released or cancelled), and which records every
//! call it gets.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use floodlight_control::{
    ArchivedRange, AssetBuilder, AssetSpec, BoxFuture, BuildError, BuiltAsset, BuiltRendition,
    CancelToken, ProgressSink,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;

/// 2026-12-01T18:00:00Z in Unix ms: where the test events' archives start.
pub const T0: i64 = 1_796_148_000_000;

/// Unix ms as RFC 3339.
pub fn at(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// What one build does, in the order scripted; unscripted builds succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Succeed,
    Retryable(String),
    Fatal(String),
    /// Reports progress, then waits for [`TestArchive::release`] (then succeeds) or its
    /// cancel token (then answers `Cancelled`).
    Hold,
}

/// A call the archive got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Range(String),
    Build(AssetSpec),
    Delete(String),
}

pub struct TestArchive {
    ranges: Mutex<HashMap<String, ArchivedRange>>,
    script: Mutex<VecDeque<Step>>,
    calls: Mutex<Vec<Call>>,
    /// A permit per held build to let go.
    release: Semaphore,
    /// `archived_range` answers this retryable error while set (the store is down).
    down: Mutex<Option<String>>,
}

impl Default for TestArchive {
    fn default() -> TestArchive {
        TestArchive {
            ranges: Mutex::default(),
            script: Mutex::default(),
            calls: Mutex::default(),
            release: Semaphore::new(0),
            down: Mutex::default(),
        }
    }
}

impl TestArchive {
    /// The archive holds `[start_ms, end_ms)` of `event_id`.
    pub fn holds(&self, event_id: &str, start_ms: i64, end_ms: i64) {
        self.ranges
            .lock()
            .unwrap()
            .insert(event_id.to_string(), ArchivedRange { start_ms, end_ms });
    }

    /// The next builds do these, in order.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().unwrap().extend(steps);
    }

    /// Lets one held build finish (now, or when it gets to its hold).
    pub fn release(&self) {
        self.release.add_permits(1);
    }

    pub fn set_down(&self, reason: Option<&str>) {
        *self.down.lock().unwrap() = reason.map(str::to_string);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The assets built so far, in order (an asset twice when it was built twice).
    pub fn builds(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Build(spec) => Some(spec.asset_id),
                _ => None,
            })
            .collect()
    }

    pub fn deletes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Delete(asset_id) => Some(asset_id),
                _ => None,
            })
            .collect()
    }

    fn built(&self, spec: &AssetSpec) -> BuiltAsset {
        let held = self.ranges.lock().unwrap().get(&spec.event_id).copied();
        let held = held.unwrap_or(ArchivedRange {
            start_ms: 0,
            end_ms: 0,
        });
        let start_ms = spec.start_ms.unwrap_or(held.start_ms);
        let end_ms = spec.end_ms.unwrap_or(held.end_ms);
        let duration_ms = end_ms - start_ms;
        BuiltAsset {
            duration_ms,
            start_ms,
            end_ms,
            renditions: vec![
                BuiltRendition {
                    name: "720p".to_string(),
                    kind: "video".to_string(),
                    codecs: "avc1.64001f".to_string(),
                    width: Some(1280),
                    height: Some(720),
                    bandwidth_bps: Some(3_000_000),
                    duration_ms,
                },
                BuiltRendition {
                    name: "audio".to_string(),
                    kind: "audio".to_string(),
                    codecs: "mp4a.40.2".to_string(),
                    width: None,
                    height: None,
                    bandwidth_bps: Some(128_000),
                    duration_ms,
                },
            ],
            poster: true,
        }
    }
}

impl AssetBuilder for TestArchive {
    fn archived_range<'a>(
        &'a self,
        event_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ArchivedRange>, BuildError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Range(event_id.to_string()));
            if let Some(reason) = self.down.lock().unwrap().clone() {
                return Err(BuildError::Retryable(reason));
            }
            Ok(self.ranges.lock().unwrap().get(event_id).copied())
        })
    }

    fn build<'a>(
        &'a self,
        spec: &'a AssetSpec,
        progress: &'a dyn ProgressSink,
        cancel: &'a CancelToken,
    ) -> BoxFuture<'a, Result<BuiltAsset, BuildError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(Call::Build(spec.clone()));
            progress.report("copying segments", 0.25);
            let step = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Step::Succeed);
            match step {
                Step::Succeed => {}
                Step::Retryable(reason) => return Err(BuildError::Retryable(reason)),
                Step::Fatal(reason) => return Err(BuildError::Fatal(reason)),
                Step::Hold => {
                    tokio::select! {
                        () = cancel.cancelled() => return Err(BuildError::Cancelled),
                        permit = self.release.acquire() => permit.unwrap().forget(),
                    }
                }
            }
            progress.report("writing the manifest", 0.9);
            Ok(self.built(spec))
        })
    }

    fn delete<'a>(&'a self, asset_id: &'a str) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Delete(asset_id.to_string()));
            Ok(())
        })
    }
}
