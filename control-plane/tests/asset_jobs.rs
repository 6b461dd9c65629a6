//! Asset jobs end to end through `Control` and the API, with the job runner running and
//! an archive of the test's own (`common/archive.rs`), on SQLite and PostgreSQL: a build
//! from queued to ready with its progress; a retryable failure that waits and then
//! succeeds; a fatal one; a cancel mid-build; a delete; a runner killed mid-build whose
//! job another control plane takes over when the lease expires; two control planes
//! sharing the queue, each job built once; a shutdown that gives the job back; and the
//! recording of an event when it ends, once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::archive::{Call, Step, T0, TestArchive, at};
use common::{ADMIN_KEY, Backend, Harness, JobRunner, harness_with_assets};
use floodlight_control::{ControlConfig, JobsConfig};
use serde_json::{Value, json};

fn config(lease_secs: u64) -> ControlConfig {
    ControlConfig {
        jobs: JobsConfig {
            poll_interval_ms: 20,
            retry_backoff_initial_ms: 400,
            retry_backoff_max_ms: 400,
            lease_secs,
            ..JobsConfig::default()
        },
        ..ControlConfig::default()
    }
}

async fn setup(backend: Backend, lease_secs: u64) -> (Harness, Arc<TestArchive>, String) {
    let archive = Arc::new(TestArchive::default());
    let h = harness_with_assets(backend, config(lease_secs), Some(archive.clone())).await;
    let event = h
        .published_with(json!({ "title": "Cup final", "record": false }))
        .await;
    h.end(&event).await;
    archive.holds(&event, T0, T0 + 3_600_000);
    (h, archive, event)
}

/// A 20.5 s asset of `event`; returns its URI.
async fn create(h: &Harness, event: &str) -> String {
    let body = json!({
        "title": "Goal",
        "source": { "event_id": event, "start": at(T0 + 60_000), "end": at(T0 + 80_500) }
    });
    let asset = h
        .post_json("/v1/assets", body.to_string())
        .await
        .expect(StatusCode::ACCEPTED);
    format!("/v1/assets/{}", asset["asset_id"].as_str().unwrap())
}

fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |asset| asset["state"] == state
}

macro_rules! both_backends {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($backend: Backend) $body

            #[tokio::test]
            async fn sqlite() {
                run(Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                run(Backend::Postgres).await;
            }
        }
    };
}

both_backends!(
    a_build_goes_from_queued_through_processing_to_ready,
    |backend| {
        let (h, archive, event) = setup(backend, 30).await;
        archive.script([Step::Hold]);
        let uri = create(&h, &event).await;
        let id = uri.rsplit('/').next().unwrap().to_string();
        // Nothing runs it yet.
        assert_eq!(h.get(&uri).await.json()["state"], "queued");

        let runner = JobRunner::start(&h.control);
        // The build reports 0.25 and holds; the runner writes it within about a second.
        let processing = h
            .wait_until(&uri, |asset| {
                asset["state"] == "processing" && asset["progress"] == 0.25
            })
            .await;
        assert_eq!(processing["stage"], "copying segments");
        assert!(processing["started_at"].is_string());
        assert_eq!(processing["finished_at"], Value::Null);
        let spec = match &archive.calls()[..] {
            [.., Call::Build(spec)] => spec.clone(),
            calls => panic!("{calls:?}"),
        };
        assert_eq!(spec.asset_id, id);
        assert_eq!(spec.event_id, event);
        assert_eq!(spec.start_ms, Some(T0 + 60_000));
        assert_eq!(spec.end_ms, Some(T0 + 80_500));

        archive.release();
        let ready = h.wait_until(&uri, state_is("ready")).await;
        assert_eq!(ready["progress"], 1.0);
        assert_eq!(ready["stage"], "ready");
        assert_eq!(ready["duration_s"], 20.5);
        assert_eq!(
            ready["range"],
            json!({ "start": at(T0 + 60_000), "end": at(T0 + 80_500) })
        );
        assert_eq!(
            ready["renditions"][0],
            json!({ "name": "720p", "kind": "video", "codecs": "avc1.64001f", "width": 1280,
                "height": 720, "bandwidth": 3_000_000, "duration_s": 20.5 })
        );
        assert_eq!(ready["renditions"][1]["kind"], "audio");
        assert_eq!(
            ready["playback"],
            json!({
                "hls": format!("http://media.example.net:8081/vod/{id}/master.m3u8"),
                "poster": format!("http://media.example.net:8081/vod/{id}/poster.jpg"),
            })
        );
        assert!(ready["finished_at"].is_string());
        assert_eq!(archive.builds(), std::slice::from_ref(&id));
        // Too late to cancel; audited as it went.
        h.post_empty(&format!("{uri}/cancel"))
            .await
            .problem(StatusCode::CONFLICT);
        let audit = h
            .get(&format!("/v1/audit?target_id={id}"))
            .await
            .expect(StatusCode::OK);
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["asset.ready", "asset.create"]);

        // Deleted: gone from the API at once, its objects removed by a job.
        let answer = h.call(Some(ADMIN_KEY), Method::DELETE, &uri, None).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        h.get(&uri).await.problem(StatusCode::NOT_FOUND);
        wait(|| archive.deletes() == [id.clone()]).await;
        runner.stop().await;
    }
);

both_backends!(
    a_retryable_failure_waits_saying_why_then_succeeds,
    |backend| {
        let (h, archive, event) = setup(backend, 30).await;
        archive.script([Step::Retryable(
            "the object store does not answer: connection refused".into(),
        )]);
        let runner = JobRunner::start(&h.control);
        let uri = create(&h, &event).await;
        let waiting = h
            .wait_until(&uri, |asset| {
                asset["stage"]
                    .as_str()
                    .is_some_and(|stage| stage.starts_with("waiting: "))
            })
            .await;
        assert_eq!(waiting["state"], "processing");
        assert!(
            waiting["stage"]
                .as_str()
                .unwrap()
                .contains("the object store does not answer: connection refused; retrying at "),
            "{waiting}"
        );
        assert_eq!(waiting["error"], Value::Null);
        let ready = h.wait_until(&uri, state_is("ready")).await;
        assert_eq!(ready["duration_s"], 20.5);
        assert_eq!(archive.builds().len(), 2, "built again after the wait");
        runner.stop().await;
    }
);

both_backends!(
    a_fatal_failure_fails_the_asset_naming_the_reason,
    |backend| {
        let (h, archive, event) = setup(backend, 30).await;
        let reason =
            "index object v1/events/x/renditions/720p/index/000003.jsonl is corrupt: line 7";
        archive.script([Step::Fatal(reason.into())]);
        let runner = JobRunner::start(&h.control);
        let uri = create(&h, &event).await;
        let failed = h.wait_until(&uri, state_is("failed")).await;
        assert_eq!(failed["error"], reason);
        assert!(failed["finished_at"].is_string());
        assert_eq!(failed["playback"]["poster"], Value::Null);
        h.post_empty(&format!("{uri}/cancel"))
            .await
            .problem(StatusCode::CONFLICT);
        // Tried once: a fatal failure is not retried.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(archive.builds().len(), 1);
        runner.stop().await;
    }
);

both_backends!(
    a_cancel_stops_the_build_and_removes_what_it_wrote,
    |backend| {
        let (h, archive, event) = setup(backend, 30).await;
        archive.script([Step::Hold]);
        let runner = JobRunner::start(&h.control);
        let uri = create(&h, &event).await;
        let id = uri.rsplit('/').next().unwrap().to_string();
        h.wait_until(&uri, state_is("processing")).await;
        let cancelled = h
            .post_empty(&format!("{uri}/cancel"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(cancelled["state"], "cancelled");
        // The build saw its token fire; a cleanup job removed what it may have written.
        wait(|| archive.deletes() == [id.clone()]).await;
        let after = h.get(&uri).await.expect(StatusCode::OK);
        assert_eq!(after["state"], "cancelled");
        assert_eq!(
            archive.builds(),
            std::slice::from_ref(&id),
            "not built again"
        );
        // A queued asset cancels without a build at all.
        runner.stop().await;
        let queued = create(&h, &event).await;
        h.post_empty(&format!("{queued}/cancel"))
            .await
            .expect(StatusCode::OK);
        let runner = JobRunner::start(&h.control);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(archive.builds(), [id], "the cancelled one never ran");
        runner.stop().await;
    }
);

both_backends!(
    a_job_whose_runner_died_is_taken_over_when_its_lease_expires,
    |backend| {
        let (h, archive, event) = setup(backend, 1).await;
        archive.script([Step::Hold]);
        let first = JobRunner::start(&h.control);
        let uri = create(&h, &event).await;
        let id = uri.rsplit('/').next().unwrap().to_string();
        h.wait_until(&uri, state_is("processing")).await;
        // kill -9: the build is dropped mid-run, its lease left behind.
        first.kill().await;
        assert_eq!(h.get(&uri).await.json()["state"], "processing");

        // Another control plane on the same database claims it once the lease (1 s) has
        // expired, runs it again from the start, and finishes it.
        let other = h.second_control(archive.clone()).await;
        let second = JobRunner::start(&other);
        let ready = h.wait_until(&uri, state_is("ready")).await;
        assert_eq!(ready["duration_s"], 20.5);
        assert_eq!(archive.builds(), [id.clone(), id]);
        second.stop().await;
    }
);

both_backends!(
    two_control_planes_share_the_queue_and_build_each_asset_once,
    |backend| {
        let (h, archive, event) = setup(backend, 30).await;
        let other = h.second_control(archive.clone()).await;
        let mut uris = Vec::new();
        for _ in 0..8 {
            uris.push(create(&h, &event).await);
        }
        let runners = [JobRunner::start(&h.control), JobRunner::start(&other)];
        for uri in &uris {
            h.wait_until(uri, state_is("ready")).await;
        }
        let mut built = archive.builds();
        built.sort();
        let mut expected: Vec<String> = uris
            .iter()
            .map(|uri| uri.rsplit('/').next().unwrap().to_string())
            .collect();
        expected.sort();
        assert_eq!(built, expected, "each asset built exactly once");
        for runner in runners {
            runner.stop().await;
        }
    }
);

both_backends!(
    a_shutdown_gives_the_job_back_and_the_next_runner_finishes_it,
    |backend| {
        let (h, archive, event) = setup(backend, 30).await;
        archive.script([Step::Hold]);
        let runner = JobRunner::start(&h.control);
        let uri = create(&h, &event).await;
        h.wait_until(&uri, state_is("processing")).await;
        runner.stop().await;
        let queued = h.get(&uri).await.expect(StatusCode::OK);
        assert_eq!(queued["state"], "queued");
        assert!(
            queued["stage"].as_str().unwrap().starts_with("interrupted"),
            "{queued}"
        );
        // At once, not after the 30 s lease.
        let runner = JobRunner::start(&h.control);
        h.wait_until(&uri, state_is("ready")).await;
        assert_eq!(archive.builds().len(), 2);
        runner.stop().await;
    }
);

both_backends!(an_event_records_itself_once_when_it_ends, |backend| {
    let archive = Arc::new(TestArchive::default());
    let h = harness_with_assets(backend, config(30), Some(archive.clone())).await;
    let runner = JobRunner::start(&h.control);
    let recorded = h.published("Final", None).await;
    let unrecorded = h
        .published_with(json!({ "title": "Rehearsal", "record": false }))
        .await;
    let unarchived = h.published("Nothing archived", None).await;
    let never_live = h.create_with(json!({ "title": "Called off" })).await["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    for event in [&recorded, &unrecorded] {
        archive.holds(event, T0, T0 + 5_400_000);
    }
    for event in [&recorded, &unrecorded, &unarchived] {
        h.end(event).await;
    }
    let of = |event: &str| format!("/v1/assets?event_id={event}");
    let listed = h
        .wait_until(&of(&recorded), |list| list["items"][0]["state"] == "ready")
        .await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let asset = &items[0];
    assert_eq!(asset["title"], "Final");
    assert_eq!(asset["recording"], true);
    assert_eq!(asset["precision"], "segment");
    assert_eq!(asset["source"]["start"], Value::Null);
    assert_eq!(asset["source"]["end"], Value::Null);
    assert_eq!(asset["duration_s"], 5400.0);
    let audit = h
        .get(&format!(
            "/v1/audit?target_id={}",
            asset["asset_id"].as_str().unwrap()
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(audit["items"][1]["action"], "asset.create");
    assert_eq!(audit["items"][1]["actor"], "system");

    // A restart, and more reconciler passes: still one recording.
    runner.stop().await;
    let runner = JobRunner::start(&h.control);
    for event in [&recorded, &unrecorded] {
        assert!(
            h.control
                .reconcile(time::OffsetDateTime::now_utc() + time::Duration::hours(3))
                .await
                .unwrap()
                .is_empty(),
            "{event} ended once"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = h.get("/v1/assets").await.expect(StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(archive.builds().len(), 1);
    for event in [&unrecorded, &unarchived, &never_live] {
        assert_eq!(
            h.get(&of(event)).await.json()["items"],
            json!([]),
            "{event}"
        );
    }
    runner.stop().await;
});

/// Waits (5 s at most) until `done` holds.
async fn wait(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
