//! The lifecycle of an event on air: may this key publish now (the publish check with
//! its per-address failure limit), what to pull over RTSP, what publishing started or
//! stopped means for the event's state, and the reconciler that ends events whose
//! publisher is gone or whose window has closed.
//!
//! The decisions are pure functions of the event, the time and the config
//! ([`publish_refusal`], [`reconcile_step`]); the methods around them do the I/O.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::bus::{InProcessBus, LifecycleKind, LifecycleMessage, LifecyclePublisher};
use super::live::LiveStatusSource;
use super::metrics::PUBLISH_CHECKS;
use super::model::{
    Event, EventId, EventState, IngestProtocol, RtspTransport, TransitionError, Visibility,
};
use super::store::PublisherTimes;
use super::stream_keys::StreamKeyRole;
use crate::audit::Actor;
use crate::config::ControlConfig;
use crate::db::{Store, StoreError};
use crate::failures::FailureLimiter;
pub use floodlight_media::publish::PublishRefusal;

/// A publisher asking to publish.
#[derive(Clone, Copy)]
pub struct PublishCheck<'a> {
    /// The secret stream key. Never logged.
    pub stream_key: &'a str,
    /// The event the publisher named besides its key (WHIP's `/whip/{event_id}`).
    pub event_id: Option<&'a str>,
    pub protocol: IngestProtocol,
    pub remote_ip: IpAddr,
}

impl fmt::Debug for PublishCheck<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishCheck")
            .field("stream_key", &"<redacted>")
            .field("event_id", &self.event_id)
            .field("protocol", &self.protocol)
            .field("remote_ip", &self.remote_ip)
            .finish()
    }
}

/// A yes: the event, and how it wants to be published and served.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishPermit {
    pub event_id: EventId,
    pub visibility: Visibility,
    pub part_target_ms: Option<u32>,
    pub dvr_window_secs: Option<u32>,
    pub ladder: Option<String>,
    /// A second (backup) publisher may connect beside the live one.
    pub backup_ingest: bool,
    /// SRT AES passphrase the publisher must use.
    pub srt_passphrase: Option<String>,
    pub srt_latency_ms: Option<u32>,
}

impl PublishPermit {
    fn for_event(event: &Event) -> PublishPermit {
        let settings = &event.settings;
        PublishPermit {
            event_id: event.id.clone(),
            visibility: settings.visibility,
            part_target_ms: settings.part_target_ms,
            dvr_window_secs: settings.dvr_window_secs,
            ladder: settings.ladder.clone(),
            backup_ingest: settings.ingest.backup,
            srt_passphrase: settings.ingest.srt_passphrase.clone(),
            srt_latency_ms: settings.ingest.srt_latency_ms,
        }
    }
}

impl fmt::Debug for PublishPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishPermit")
            .field("event_id", &self.event_id)
            .field("visibility", &self.visibility)
            .field("part_target_ms", &self.part_target_ms)
            .field("dvr_window_secs", &self.dvr_window_secs)
            .field("ladder", &self.ladder)
            .field("backup_ingest", &self.backup_ingest)
            .field("srt_passphrase_set", &self.srt_passphrase.is_some())
            .field("srt_latency_ms", &self.srt_latency_ms)
            .finish()
    }
}

/// An event whose feed ingest pulls from an RTSP server, now.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullSourceSpec {
    pub event_id: EventId,
    /// With credentials: never log it whole.
    pub url: String,
    pub transport: RtspTransport,
    pub permit: PublishPermit,
}

impl fmt::Debug for PullSourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSourceSpec")
            .field("event_id", &self.event_id)
            .field("url", &"<redacted>")
            .field("transport", &self.transport)
            .field("permit", &self.permit)
            .finish()
    }
}

fn secs(value: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX))
}

/// When publishing opens and closes for `event`: `early_open_secs` before `starts_at`,
/// `late_close_secs` after `ends_at`; `None` is unbounded.
fn publish_window(
    event: &Event,
    config: &ControlConfig,
) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    let settings = &event.settings;
    (
        settings
            .starts_at
            .map(|at| at.saturating_sub(secs(config.early_open_secs))),
        settings
            .ends_at
            .map(|at| at.saturating_add(secs(config.late_close_secs))),
    )
}

/// Why `event` may not be published to now over `protocol` with a key of `role`, or
/// `None` when it may. The reason is shown to the publisher.
pub(crate) fn publish_refusal(
    event: &Event,
    role: Option<StreamKeyRole>,
    protocol: IngestProtocol,
    now: OffsetDateTime,
    config: &ControlConfig,
) -> Option<String> {
    if !event.state.is_open() {
        return Some(format!("the event is {}", event.state));
    }
    let ingest = &event.settings.ingest;
    if !ingest.allows(protocol) {
        let allowed: Vec<&str> = ingest
            .protocols
            .iter()
            .flatten()
            .map(|p| p.as_str())
            .collect();
        return Some(format!(
            "{protocol} is not allowed for this event (allowed: {})",
            allowed.join(", ")
        ));
    }
    if role == Some(StreamKeyRole::Backup) && !ingest.backup {
        return Some("this is a backup key and the event has no backup ingest".to_string());
    }
    let (opens, closes) = publish_window(event, config);
    let format = |at: OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| at.to_string())
    };
    if let Some(opens) = opens
        && now < opens
    {
        return Some(format!("publishing opens at {}", format(opens)));
    }
    if let Some(closes) = closes
        && now > closes
    {
        return Some(format!("publishing closed at {}", format(closes)));
    }
    None
}

/// What the reconciler does with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReconcileStep {
    Nothing,
    /// A live event's publisher is gone: its grace period started at this time.
    MarkGone(OffsetDateTime),
    /// The publisher is back: forget the grace period.
    ClearGone,
    /// The publisher is on air: renew its lease (when it was last seen).
    NoteSeen,
    /// End the event, for this cause.
    End(&'static str),
}

/// How often the reconciler notes a publisher on air in the store. After a crash, its
/// event's grace counts from the last note, so a restart ends it at most this late.
const SEEN_LEASE: time::Duration = time::Duration::seconds(5);

/// The reconciler's decision for `event` (scheduled or live), given whether a publisher
/// is on air and since when it has been gone.
pub(crate) fn reconcile_step(
    event: &Event,
    publishing: bool,
    times: PublisherTimes,
    now: OffsetDateTime,
    config: &ControlConfig,
) -> ReconcileStep {
    let gone_since = times.gone_since;
    let (_, closes) = publish_window(event, config);
    if closes.is_some_and(|closes| now > closes) && event.state.is_open() {
        return ReconcileStep::End("window_closed");
    }
    if event.state != EventState::Live {
        return ReconcileStep::Nothing;
    }
    match (publishing, gone_since) {
        (true, Some(_)) => ReconcileStep::ClearGone,
        (true, None) => match times.last_seen {
            Some(seen) if now - seen < SEEN_LEASE => ReconcileStep::Nothing,
            _ => ReconcileStep::NoteSeen,
        },
        // Nobody reported the publisher leaving (the process died with it on air, issue
        // 10): it has been gone since it was last seen, not since this pass.
        (false, None) => match times.last_seen {
            Some(seen) if now - seen >= secs(config.reconnect_grace_secs) => {
                ReconcileStep::End("publisher_gone")
            }
            Some(seen) => ReconcileStep::MarkGone(seen),
            None => ReconcileStep::MarkGone(now),
        },
        (false, Some(since)) if now - since >= secs(config.reconnect_grace_secs) => {
            ReconcileStep::End("publisher_gone")
        }
        (false, Some(_)) => ReconcileStep::Nothing,
    }
}

/// The lifecycle side of the control plane, shared by the API and the binary's ingest
/// adapter. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Lifecycle(Arc<Inner>);

struct Inner {
    store: Store,
    config: ControlConfig,
    bus: InProcessBus,
    live: Arc<dyn LiveStatusSource>,
    failures: FailureLimiter,
    /// How long a failure from an address over its limit waits for its answer.
    failure_delay: Duration,
}

impl Lifecycle {
    pub(crate) fn new(
        store: Store,
        config: ControlConfig,
        live: Arc<dyn LiveStatusSource>,
    ) -> Lifecycle {
        Lifecycle(Arc::new(Inner {
            bus: InProcessBus::new(config.event_bus_capacity),
            failures: FailureLimiter::new(
                config.publish_failures_max,
                Duration::from_secs(config.publish_failures_window_secs),
                config.publish_failures_tracked_max,
                "control.publish_failures_tracked_max",
            ),
            failure_delay: Duration::from_millis(config.credential_failure_delay_ms),
            store,
            config,
            live,
        }))
    }

    pub(crate) fn bus(&self) -> &InProcessBus {
        &self.0.bus
    }

    pub(crate) fn announce(&self, kind: LifecycleKind, event_id: &EventId, cause: &str) {
        self.0.bus.publish(LifecycleMessage::new(
            kind,
            event_id,
            OffsetDateTime::now_utc(),
            cause,
        ));
    }

    pub(crate) fn announce_key_revoked(&self, event_id: &EventId, key_id: &str, cause: &str) {
        let mut message = LifecycleMessage::new(
            LifecycleKind::KeyRevoked,
            event_id,
            OffsetDateTime::now_utc(),
            cause,
        );
        message.key_id = Some(key_id.to_string());
        self.0.bus.publish(message);
    }

    pub(crate) async fn authorize_publish(
        &self,
        check: PublishCheck<'_>,
    ) -> Result<PublishPermit, PublishRefusal> {
        let outcome = self.decide(check).await;
        let label = match &outcome {
            Ok(_) => "granted",
            Err(refusal) => refusal.label(),
        };
        metrics::counter!(PUBLISH_CHECKS, "outcome" => label).increment(1);
        match &outcome {
            Ok(permit) => tracing::info!(
                event_id = %permit.event_id,
                protocol = %check.protocol,
                remote_ip = %check.remote_ip,
                "publish granted"
            ),
            Err(denied) => tracing::info!(
                protocol = %check.protocol,
                remote_ip = %check.remote_ip,
                reason = %denied,
                "publish refused"
            ),
        }
        outcome
    }

    async fn decide(&self, check: PublishCheck<'_>) -> Result<PublishPermit, PublishRefusal> {
        let inner = &self.0;
        let keyed = inner
            .store
            .stream_key_event(check.stream_key)
            .await
            .map_err(|error| PublishRefusal::Unavailable(error.to_string()))?;
        let keyed = match keyed {
            Some(keyed)
                if check
                    .event_id
                    .is_none_or(|named| named == keyed.event.id.as_str()) =>
            {
                keyed
            }
            _ => {
                // Issue 10, finding 4: an address over its failures used to be refused
                // before the look-up, so one bad encoder behind a venue's NAT locked out
                // the good one. Now the key is always checked; only failures are slowed.
                let now = Instant::now();
                let throttled = inner.failures.over_limit(check.remote_ip, now);
                inner.failures.record_failure(check.remote_ip, now);
                if throttled {
                    tokio::time::sleep(inner.failure_delay).await;
                    return Err(PublishRefusal::RateLimited);
                }
                return Err(PublishRefusal::UnknownKey);
            }
        };
        let now = OffsetDateTime::now_utc();
        if let Some(reason) = publish_refusal(
            &keyed.event,
            Some(keyed.role),
            check.protocol,
            now,
            &inner.config,
        ) {
            return Err(PublishRefusal::Forbidden(reason));
        }
        if let Err(error) = inner.store.touch_stream_key(&keyed.key_id, now).await {
            tracing::warn!(%error, "could not note the stream key's last use");
        }
        Ok(PublishPermit::for_event(&keyed.event))
    }

    pub(crate) async fn pull_sources(&self) -> Result<Vec<PullSourceSpec>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let events = self.0.store.events_with_rtsp_source().await?;
        Ok(events
            .into_iter()
            .filter(|event| {
                publish_refusal(event, None, IngestProtocol::Rtsp, now, &self.0.config).is_none()
            })
            .filter_map(|event| {
                let source = event.settings.ingest.rtsp_source.clone()?;
                Some(PullSourceSpec {
                    event_id: event.id.clone(),
                    url: source.url,
                    transport: source.transport,
                    permit: PublishPermit::for_event(&event),
                })
            })
            .collect())
    }

    /// A publisher started: a scheduled event goes live (cause `publish`); a live one
    /// forgets any grace period.
    pub(crate) async fn publish_started(
        &self,
        event_id: &EventId,
        protocol: IngestProtocol,
    ) -> Result<(), StoreError> {
        let store = &self.0.store;
        store.set_publisher_gone(event_id, None).await?;
        match store
            .transition(
                event_id,
                EventState::Live,
                "publish",
                &Actor::system(),
                Some("event.live"),
                OffsetDateTime::now_utc(),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(%event_id, %protocol, "event live");
                self.announce(LifecycleKind::EventLive, event_id, "publish");
                Ok(())
            }
            // Already live (a reconnect or the backup), or no longer open: nothing to do.
            Err(TransitionError::NotAllowed { .. } | TransitionError::NotFound) => Ok(()),
            Err(TransitionError::Store(error)) => Err(error),
        }
    }

    /// A publisher stopped: the grace period of a live event starts (the reconciler
    /// ends it when nobody is back in time).
    pub(crate) async fn publish_stopped(
        &self,
        event_id: &EventId,
        protocol: IngestProtocol,
    ) -> Result<(), StoreError> {
        tracing::info!(%event_id, %protocol, "publisher stopped");
        self.0
            .store
            .set_publisher_gone(event_id, Some(OffsetDateTime::now_utc()))
            .await
    }

    /// One reconciler pass at `now`: ends live events whose publisher has been gone
    /// longer than `control.reconnect_grace_secs`, and events past `ends_at` +
    /// `control.late_close_secs`. Returns the events it ended.
    pub(crate) async fn reconcile(&self, now: OffsetDateTime) -> Result<Vec<EventId>, StoreError> {
        let inner = &self.0;
        inner.failures.prune(Instant::now());
        let closed_before = now.saturating_sub(secs(inner.config.late_close_secs));
        let mut ended = Vec::new();
        for (event, times) in inner.store.reconcile_candidates(closed_before).await? {
            let publishing = inner.live.live_status(&event.id).publishing;
            match reconcile_step(&event, publishing, times, now, &inner.config) {
                ReconcileStep::Nothing => {}
                ReconcileStep::MarkGone(since) => {
                    inner
                        .store
                        .set_publisher_gone(&event.id, Some(since))
                        .await?
                }
                ReconcileStep::NoteSeen => inner.store.note_publisher_seen(&event.id, now).await?,
                ReconcileStep::ClearGone => inner.store.set_publisher_gone(&event.id, None).await?,
                ReconcileStep::End(cause) => {
                    match inner
                        .store
                        .transition(
                            &event.id,
                            EventState::Ended,
                            cause,
                            &Actor::system(),
                            Some("event.end"),
                            now,
                        )
                        .await
                    {
                        Ok(_) => {
                            self.announce(LifecycleKind::EventEnded, &event.id, cause);
                            ended.push(event.id);
                        }
                        // Another control plane (or the API) got there first.
                        Err(TransitionError::NotAllowed { .. } | TransitionError::NotFound) => {}
                        Err(TransitionError::Store(error)) => return Err(error),
                    }
                }
            }
        }
        Ok(ended)
    }

    /// Runs [`Lifecycle::reconcile`] every `control.reconcile_interval_ms` until
    /// `shutdown` resolves.
    pub(crate) async fn run_reconciler(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.0.config.reconcile_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(error) = self.reconcile(OffsetDateTime::now_utc()).await {
                        tracing::warn!(%error, "lifecycle reconciler pass failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::events::model::NewEvent;

    fn event(
        state: EventState,
        starts: Option<OffsetDateTime>,
        ends: Option<OffsetDateTime>,
    ) -> Event {
        let mut settings = NewEvent::titled("Final");
        settings.starts_at = starts;
        settings.ends_at = ends;
        Event {
            id: EventId::parse("0123456789abcdef").unwrap(),
            state,
            created_at: datetime!(2026-01-01 0:00 UTC),
            updated_at: datetime!(2026-01-01 0:00 UTC),
            settings,
        }
    }

    #[test]
    fn publishing_opens_early_and_closes_late() {
        let config = ControlConfig::default(); // 1800 s early, 1800 s late
        let starts = datetime!(2026-12-01 18:00 UTC);
        let ends = datetime!(2026-12-01 21:00 UTC);
        let e = event(EventState::Scheduled, Some(starts), Some(ends));
        let refusal = |now| publish_refusal(&e, None, IngestProtocol::Rtmp, now, &config);
        assert_eq!(
            refusal(datetime!(2026-12-01 17:29:59 UTC)).unwrap(),
            "publishing opens at 2026-12-01T17:30:00Z"
        );
        assert_eq!(refusal(datetime!(2026-12-01 17:30 UTC)), None);
        assert_eq!(refusal(datetime!(2026-12-01 21:30 UTC)), None);
        assert_eq!(
            refusal(datetime!(2026-12-01 21:30:01 UTC)).unwrap(),
            "publishing closed at 2026-12-01T21:30:00Z"
        );
        // No window: always open.
        let open = event(EventState::Live, None, None);
        assert_eq!(
            publish_refusal(&open, None, IngestProtocol::Srt, starts, &config),
            None
        );
    }

    #[test]
    fn closed_states_protocols_and_backup_keys_are_refused() {
        let config = ControlConfig::default();
        let now = datetime!(2026-12-01 18:00 UTC);
        for state in [
            EventState::Ended,
            EventState::Cancelled,
            EventState::Archived,
        ] {
            let e = event(state, None, None);
            assert_eq!(
                publish_refusal(&e, None, IngestProtocol::Rtmp, now, &config).unwrap(),
                format!("the event is {state}")
            );
        }
        let mut e = event(EventState::Scheduled, None, None);
        e.settings.ingest.protocols = Some(vec![IngestProtocol::Srt, IngestProtocol::Whip]);
        assert_eq!(
            publish_refusal(&e, None, IngestProtocol::Rtmp, now, &config).unwrap(),
            "rtmp is not allowed for this event (allowed: srt, whip)"
        );
        assert_eq!(
            publish_refusal(&e, None, IngestProtocol::Srt, now, &config),
            None
        );
        let backup = Some(StreamKeyRole::Backup);
        assert!(publish_refusal(&e, backup, IngestProtocol::Srt, now, &config).is_some());
        e.settings.ingest.backup = true;
        assert_eq!(
            publish_refusal(&e, backup, IngestProtocol::Srt, now, &config),
            None
        );
    }

    #[test]
    fn the_reconciler_waits_out_the_grace_period_then_ends() {
        let config = ControlConfig::default(); // 30 s grace
        let now = datetime!(2026-12-01 18:00 UTC);
        let live = event(EventState::Live, None, None);
        let none = PublisherTimes::default();
        let gone = |since| PublisherTimes {
            gone_since: since,
            last_seen: None,
        };
        let seen = |at| PublisherTimes {
            gone_since: None,
            last_seen: Some(at),
        };
        assert_eq!(
            reconcile_step(&live, true, seen(now), now, &config),
            ReconcileStep::Nothing
        );
        assert_eq!(
            reconcile_step(&live, false, none, now, &config),
            ReconcileStep::MarkGone(now)
        );
        let gone = gone(Some(now - time::Duration::seconds(29)));
        assert_eq!(
            reconcile_step(&live, false, gone, now, &config),
            ReconcileStep::Nothing
        );
        assert_eq!(
            reconcile_step(&live, true, gone, now, &config),
            ReconcileStep::ClearGone
        );
        let gone = PublisherTimes {
            gone_since: Some(now - time::Duration::seconds(30)),
            last_seen: None,
        };
        assert_eq!(
            reconcile_step(&live, false, gone, now, &config),
            ReconcileStep::End("publisher_gone")
        );
        // Past ends_at + late_close_secs: ended even while publishing, and a scheduled
        // event that never went live ends too.
        let ends = Some(now - time::Duration::seconds(1801));
        for state in [EventState::Live, EventState::Scheduled] {
            let late = event(state, None, ends);
            assert_eq!(
                reconcile_step(&late, true, none, now, &config),
                ReconcileStep::End("window_closed")
            );
        }
        let scheduled = event(EventState::Scheduled, None, None);
        assert_eq!(
            reconcile_step(&scheduled, false, none, now, &config),
            ReconcileStep::Nothing
        );
    }

    #[test]
    fn a_publisher_on_air_renews_its_lease_and_a_crash_counts_from_it() {
        let config = ControlConfig::default(); // 30 s grace
        let now = datetime!(2026-12-01 18:00 UTC);
        let live = event(EventState::Live, None, None);
        let seen = |ago: i64| PublisherTimes {
            gone_since: None,
            last_seen: Some(now - time::Duration::seconds(ago)),
        };
        // On air: noted when never seen or the lease is 5 s old.
        assert_eq!(
            reconcile_step(&live, true, PublisherTimes::default(), now, &config),
            ReconcileStep::NoteSeen
        );
        assert_eq!(
            reconcile_step(&live, true, seen(4), now, &config),
            ReconcileStep::Nothing
        );
        assert_eq!(
            reconcile_step(&live, true, seen(5), now, &config),
            ReconcileStep::NoteSeen
        );
        // Issue 10, finding 6: after a restart nobody reported the publisher leaving.
        // Its grace counts from when it was last seen: the rest of it, or none at all.
        assert_eq!(
            reconcile_step(&live, false, seen(12), now, &config),
            ReconcileStep::MarkGone(now - time::Duration::seconds(12))
        );
        assert_eq!(
            reconcile_step(&live, false, seen(30), now, &config),
            ReconcileStep::End("publisher_gone")
        );
    }
}
