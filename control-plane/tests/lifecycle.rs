//! The publish check, publishing's effect on an event's state, the reconciler and the
//! RTSP pull list, through `Control` as the binary uses them, on SQLite and PostgreSQL.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use axum::http::StatusCode;
use common::{Backend, Harness, harness_on};
use floodlight_control::{
    ControlConfig, IngestProtocol, LifecycleKind, LiveStatus, PublishCheck, PublishRefusal,
    RtspTransport, Visibility,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const PUBLISHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

fn check(key: &str, protocol: IngestProtocol) -> PublishCheck<'_> {
    PublishCheck {
        stream_key: key,
        event_id: None,
        protocol,
        remote_ip: PUBLISHER,
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
}

fn hours(n: i64) -> time::Duration {
    time::Duration::hours(n)
}

async fn event(h: &Harness, body: Value) -> (String, String) {
    let created = h.create_with(body).await;
    (
        created["event_id"].as_str().unwrap().to_string(),
        created["stream_key"].as_str().unwrap().to_string(),
    )
}

macro_rules! both_backends {
    ($name:ident, $config:expr, |$h:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($h: Harness) $body

            #[tokio::test]
            async fn sqlite() {
                run(harness_on(Backend::Sqlite, $config).await).await;
            }

            #[tokio::test]
            async fn postgres() {
                run(harness_on(Backend::Postgres, $config).await).await;
            }
        }
    };
}

both_backends!(
    a_good_key_gets_the_events_settings,
    ControlConfig::default(),
    |h| {
        let (id, key) = event(
        &h,
        json!({
            "title": "Settings", "visibility": "entitled", "ladder": "sports",
            "part_target_ms": 250, "dvr_window_secs": 600,
            "ingest": { "backup": true, "srt_passphrase": "0123456789abc", "srt_latency_ms": 300 }
        }),
    )
    .await;
        let permit = h
            .control
            .authorize_publish(check(&key, IngestProtocol::Srt))
            .await
            .unwrap();
        assert_eq!(permit.event_id.as_str(), id);
        assert_eq!(permit.visibility, Visibility::Entitled);
        assert_eq!(permit.ladder.as_deref(), Some("sports"));
        assert_eq!(permit.part_target_ms, Some(250));
        assert_eq!(permit.dvr_window_secs, Some(600));
        assert!(permit.backup_ingest);
        assert_eq!(permit.srt_passphrase.as_deref(), Some("0123456789abc"));
        assert_eq!(permit.srt_latency_ms, Some(300));
        assert!(
            !format!("{permit:?}").contains("0123456789abc"),
            "Debug redacts"
        );

        // Naming the event (WHIP) must name the key's own.
        let named = PublishCheck {
            event_id: Some(&id),
            ..check(&key, IngestProtocol::Whip)
        };
        assert!(h.control.authorize_publish(named).await.is_ok());
        let (other, _) = event(&h, json!({ "title": "Other" })).await;
        let wrong = PublishCheck {
            event_id: Some(&other),
            ..check(&key, IngestProtocol::Whip)
        };
        assert_eq!(
            h.control.authorize_publish(wrong).await.unwrap_err(),
            PublishRefusal::UnknownKey
        );
        assert_eq!(
            h.control
                .authorize_publish(check("fl_live_nope", IngestProtocol::Rtmp))
                .await
                .unwrap_err(),
            PublishRefusal::UnknownKey
        );
        // The key's last use is noted.
        let keys = h
            .get(&format!("/v1/events/{id}/keys"))
            .await
            .expect(StatusCode::OK);
        assert!(keys["items"][0]["last_used_at"].is_string());
    }
);

both_backends!(
    publishing_is_refused_outside_the_rules,
    ControlConfig::default(),
    |h| {
        let now = OffsetDateTime::now_utc();
        let refused = |key: String, protocol| {
            let control = h.control.clone();
            async move {
                match control.authorize_publish(check(&key, protocol)).await {
                    Err(PublishRefusal::Forbidden(reason)) => reason,
                    other => panic!("expected a refusal, got {other:?}"),
                }
            }
        };
        // Too early: the window opens 30 min (control.early_open_secs) before starts_at.
        let (_, early) = event(
            &h,
            json!({ "title": "Tomorrow", "starts_at": rfc3339(now + hours(24)) }),
        )
        .await;
        assert!(
            refused(early, IngestProtocol::Rtmp)
                .await
                .starts_with("publishing opens at")
        );
        // Inside the early-open margin: allowed.
        let (_, soon) = event(
            &h,
            json!({ "title": "Soon", "starts_at": rfc3339(now + time::Duration::minutes(20)) }),
        )
        .await;
        assert!(
            h.control
                .authorize_publish(check(&soon, IngestProtocol::Rtmp))
                .await
                .is_ok()
        );
        // Protocol not allowed.
        let (_, srt_only) = event(
            &h,
            json!({ "title": "SRT", "ingest": { "protocols": ["srt"] } }),
        )
        .await;
        assert_eq!(
            refused(srt_only, IngestProtocol::Rtmp).await,
            "rtmp is not allowed for this event (allowed: srt)"
        );
        // Cancelled.
        let (id, key) = event(&h, json!({ "title": "Off" })).await;
        h.post_empty(&format!("/v1/events/{id}/cancel"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(
            refused(key, IngestProtocol::Rtmp).await,
            "the event is cancelled"
        );
        // A backup key once backup ingest is switched off again.
        let (id, _) = event(
            &h,
            json!({ "title": "Backup", "ingest": { "backup": true } }),
        )
        .await;
        let backup = h
            .post_json(
                &format!("/v1/events/{id}/keys"),
                json!({ "role": "backup" }).to_string(),
            )
            .await
            .expect(StatusCode::CREATED)["stream_key"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            h.control
                .authorize_publish(check(&backup, IngestProtocol::Rtmp))
                .await
                .is_ok()
        );
        h.patch_json(
            &format!("/v1/events/{id}"),
            json!({ "ingest": { "backup": false } }),
        )
        .await
        .expect(StatusCode::OK);
        assert!(
            refused(backup, IngestProtocol::Rtmp)
                .await
                .contains("no backup ingest")
        );
    }
);

both_backends!(
    failed_key_attempts_are_limited_per_address,
    ControlConfig {
        publish_failures_max: 3,
        credential_failure_delay_ms: 200,
        ..ControlConfig::default()
    },
    |h| {
        let (_, key) = event(&h, json!({ "title": "Guarded" })).await;
        for _ in 0..3 {
            assert_eq!(
                h.control
                    .authorize_publish(check("fl_live_guess", IngestProtocol::Rtmp))
                    .await
                    .unwrap_err(),
                PublishRefusal::UnknownKey
            );
        }
        // Over the limit, further guesses are answered rate_limited, late.
        let started = std::time::Instant::now();
        assert_eq!(
            h.control
                .authorize_publish(check("fl_live_guess", IngestProtocol::Rtmp))
                .await
                .unwrap_err(),
            PublishRefusal::RateLimited
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        // Issue 10, finding 4: the right key from that address (a venue's good encoder
        // behind the NAT of a bad one) still publishes.
        assert!(
            h.control
                .authorize_publish(check(&key, IngestProtocol::Rtmp))
                .await
                .is_ok()
        );
        let elsewhere = PublishCheck {
            remote_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            ..check(&key, IngestProtocol::Rtmp)
        };
        assert!(h.control.authorize_publish(elsewhere).await.is_ok());
    }
);

both_backends!(
    publishing_drives_live_and_the_reconciler_ends,
    ControlConfig::default(),
    |h| {
        let mut bus = h.control.subscribe();
        let (id, key) = event(&h, json!({ "title": "Match" })).await;
        assert_eq!(
            bus.recv().await.unwrap().kind,
            LifecycleKind::EventScheduled
        );

        h.control
            .publish_started(&id, IngestProtocol::Rtmp)
            .await
            .unwrap();
        let live = h
            .get(&format!("/v1/events/{id}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(live["state"], "live");
        let message = bus.recv().await.unwrap();
        assert_eq!(
            (message.kind, message.cause.as_str()),
            (LifecycleKind::EventLive, "publish")
        );
        // A second start (reconnect, backup) changes nothing.
        h.control
            .publish_started(&id, IngestProtocol::Srt)
            .await
            .unwrap();
        assert!(bus.try_recv().is_err());

        // The publisher leaves; within the grace period nothing ends.
        h.control
            .publish_stopped(&id, IngestProtocol::Rtmp)
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(
            h.control
                .reconcile(now + time::Duration::seconds(5))
                .await
                .unwrap()
                .is_empty()
        );
        // It comes back (ingest says so) before the grace period is over: the clock resets.
        h.live.set(
            &id,
            LiveStatus {
                publishing: true,
                ..LiveStatus::default()
            },
        );
        assert!(
            h.control
                .reconcile(now + time::Duration::seconds(40))
                .await
                .unwrap()
                .is_empty()
        );
        // Gone for good: the reconciler notices, waits out control.reconnect_grace_secs, ends.
        h.live.set(&id, LiveStatus::default());
        let t = now + time::Duration::seconds(60);
        assert!(
            h.control.reconcile(t).await.unwrap().is_empty(),
            "grace starts now"
        );
        assert!(
            h.control
                .reconcile(t + time::Duration::seconds(29))
                .await
                .unwrap()
                .is_empty()
        );
        let ended = h
            .control
            .reconcile(t + time::Duration::seconds(30))
            .await
            .unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].as_str(), id);
        let message = bus.recv().await.unwrap();
        assert_eq!(
            (message.kind, message.cause.as_str()),
            (LifecycleKind::EventEnded, "publisher_gone")
        );

        // Ended: publishing again is refused.
        assert_eq!(
            h.control
                .authorize_publish(check(&key, IngestProtocol::Rtmp))
                .await
                .unwrap_err(),
            PublishRefusal::Forbidden("the event is ended".to_string())
        );
        let transitions = h
            .get(&format!("/v1/events/{id}/transitions"))
            .await
            .expect(StatusCode::OK);
        let steps: Vec<(String, String, String)> = transitions["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["to"].as_str().unwrap().to_string(),
                    t["cause"].as_str().unwrap().to_string(),
                    t["actor"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expect = |to: &str, cause: &str, actor: &str| {
            (to.to_string(), cause.to_string(), actor.to_string())
        };
        assert_eq!(
            steps,
            [
                expect("scheduled", "created", "bootstrap-admin"),
                expect("live", "publish", "system"),
                expect("ended", "publisher_gone", "system"),
            ]
        );
        // The system's changes are audited too.
        let audit = h
            .get(&format!("/v1/audit?target_id={id}"))
            .await
            .expect(StatusCode::OK);
        let actions: Vec<&str> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["event.end", "event.live", "event.create"]);
    }
);

both_backends!(
    events_end_when_their_window_closes,
    ControlConfig::default(),
    |h| {
        let now = OffsetDateTime::now_utc();
        let ends = now + hours(2);
        let (live_id, _) = event(&h, json!({ "title": "Overrun", "ends_at": rfc3339(ends) })).await;
        let (idle_id, _) = event(&h, json!({ "title": "No show", "ends_at": rfc3339(ends) })).await;
        let (open_id, _) = event(&h, json!({ "title": "Open end" })).await;
        h.control
            .publish_started(&live_id, IngestProtocol::Rtmp)
            .await
            .unwrap();
        h.live.set(
            &live_id,
            LiveStatus {
                publishing: true,
                ..LiveStatus::default()
            },
        );
        // Still inside control.late_close_secs (30 min) after ends_at: nothing ends.
        let ends = ends.replace_nanosecond(0).unwrap();
        assert!(
            h.control
                .reconcile(ends + time::Duration::minutes(29))
                .await
                .unwrap()
                .is_empty()
        );
        let mut ended: Vec<String> = h
            .control
            .reconcile(ends + time::Duration::minutes(31))
            .await
            .unwrap()
            .into_iter()
            .map(|id| id.into_string())
            .collect();
        ended.sort();
        let mut expected = vec![live_id.clone(), idle_id.clone()];
        expected.sort();
        assert_eq!(ended, expected, "on air or not");
        let open = h
            .get(&format!("/v1/events/{open_id}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(open["state"], "scheduled");
        let transitions = h
            .get(&format!("/v1/events/{live_id}/transitions"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(transitions["items"][2]["cause"], "window_closed");
    }
);

both_backends!(
    rtsp_sources_are_listed_inside_their_window,
    ControlConfig::default(),
    |h| {
        let now = OffsetDateTime::now_utc();
        let source = |url: &str| json!({ "url": url, "transport": "udp" });
        let (now_id, _) = event(
            &h,
            json!({ "title": "Cam", "ingest": { "rtsp_source": source("rtsp://u:p@cam1/live") } }),
        )
        .await;
        event(
            &h,
            json!({ "title": "Later", "starts_at": rfc3339(now + hours(5)),
                "ingest": { "rtsp_source": source("rtsp://cam2/live") } }),
        )
        .await;
        let (off_id, _) = event(
            &h,
            json!({ "title": "Off", "ingest": { "rtsp_source": source("rtsp://cam3/live") } }),
        )
        .await;
        h.post_empty(&format!("/v1/events/{off_id}/cancel"))
            .await
            .expect(StatusCode::OK);
        event(&h, json!({ "title": "Push" })).await;

        let sources = h.control.pull_sources().await.unwrap();
        assert_eq!(sources.len(), 1, "{sources:?}");
        assert_eq!(sources[0].event_id.as_str(), now_id);
        assert_eq!(
            sources[0].url, "rtsp://u:p@cam1/live",
            "credentials for ingest"
        );
        assert_eq!(sources[0].transport, RtspTransport::Udp);
        assert!(!format!("{sources:?}").contains("u:p@"), "Debug redacts");
        // Pulling starts like a publish.
        h.control
            .publish_started(&now_id, IngestProtocol::Rtsp)
            .await
            .unwrap();
        let live = h
            .get(&format!("/v1/events/{now_id}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(live["state"], "live");
    }
);

both_backends!(
    after_a_crash_the_grace_counts_from_when_the_publisher_was_last_seen,
    ControlConfig::default(),
    |h| {
        // Issue 10, finding 6: kill -9 with a publisher on air left the event live for a
        // whole grace period after the restart, however long the process was down.
        let (id, _) = event(&h, json!({ "title": "Crash" })).await;
        h.control
            .publish_started(&id, IngestProtocol::Rtmp)
            .await
            .unwrap();
        h.live.set(
            &id,
            LiveStatus {
                publishing: true,
                ..LiveStatus::default()
            },
        );
        let now = OffsetDateTime::now_utc();
        // On air: the reconciler notes it (the lease).
        assert!(h.control.reconcile(now).await.unwrap().is_empty());
        // The process dies (no publish_stopped) and is back 31 s later with nobody on air.
        h.live.set(&id, LiveStatus::default());
        let ended = h
            .control
            .reconcile(now + time::Duration::seconds(31))
            .await
            .unwrap();
        assert_eq!(
            ended,
            vec![floodlight_control::EventId::parse(&id).unwrap()]
        );
        let answer = h
            .get(&format!("/v1/events/{id}"))
            .await
            .expect(StatusCode::OK);
        assert_eq!(answer["state"], "ended");

        // Down for 10 s: the publisher has the rest of its grace (20 s) to come back.
        let (id, _) = event(&h, json!({ "title": "Blip" })).await;
        h.control
            .publish_started(&id, IngestProtocol::Rtmp)
            .await
            .unwrap();
        h.live.set(
            &id,
            LiveStatus {
                publishing: true,
                ..LiveStatus::default()
            },
        );
        assert!(h.control.reconcile(now).await.unwrap().is_empty());
        h.live.set(&id, LiveStatus::default());
        let restart = now + time::Duration::seconds(10);
        assert!(h.control.reconcile(restart).await.unwrap().is_empty());
        assert!(
            h.control
                .reconcile(now + time::Duration::seconds(29))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            h.control
                .reconcile(now + time::Duration::seconds(30))
                .await
                .unwrap()
                .len(),
            1
        );
    }
);
