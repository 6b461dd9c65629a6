//! The event bus: lifecycle messages (`event.scheduled`, `event.live`, `event.ended`,
//! `event.cancelled`, `event.archived`, `key.revoked`) for whoever follows events.
//!
//! In `floodlight up` the bus is in-process (a tokio broadcast channel). Distributed,
//! Kafka carries them (ARCHITECTURE.md, "Replication and scale"): a [`LifecyclePublisher`]
//! is all the control plane needs from a bus, so a Kafka producer replaces the in-process
//! one without touching the code that publishes.

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::model::EventId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum LifecycleKind {
    #[serde(rename = "event.scheduled")]
    EventScheduled,
    #[serde(rename = "event.live")]
    EventLive,
    #[serde(rename = "event.ended")]
    EventEnded,
    #[serde(rename = "event.cancelled")]
    EventCancelled,
    #[serde(rename = "event.archived")]
    EventArchived,
    /// A stream key was revoked (or rotated away): a publisher using it should go.
    #[serde(rename = "key.revoked")]
    KeyRevoked,
}

impl LifecycleKind {
    /// The message type as it appears on the bus (`event.live`), a Kafka topic key.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleKind::EventScheduled => "event.scheduled",
            LifecycleKind::EventLive => "event.live",
            LifecycleKind::EventEnded => "event.ended",
            LifecycleKind::EventCancelled => "event.cancelled",
            LifecycleKind::EventArchived => "event.archived",
            LifecycleKind::KeyRevoked => "key.revoked",
        }
    }
}

/// One lifecycle message; serialized as JSON for an external bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LifecycleMessage {
    #[serde(rename = "type")]
    pub kind: LifecycleKind,
    pub event_id: EventId,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    pub at: OffsetDateTime,
    /// Why: `api`, `publish`, `publisher_gone`, `window_closed`, `rotated`.
    pub cause: String,
    /// `key.revoked` only: the stream key's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl LifecycleMessage {
    pub(crate) fn new(
        kind: LifecycleKind,
        event_id: &EventId,
        at: OffsetDateTime,
        cause: &str,
    ) -> LifecycleMessage {
        LifecycleMessage {
            kind,
            event_id: event_id.clone(),
            at,
            cause: cause.to_string(),
            key_id: None,
        }
    }
}

/// Where lifecycle messages go. Must not block: an implementation queues.
pub trait LifecyclePublisher: Send + Sync {
    fn publish(&self, message: LifecycleMessage);
}

/// The in-process bus: every subscriber gets every message published after it
/// subscribed. A subscriber that falls more than `capacity` messages behind misses the
/// oldest and is told how many (`RecvError::Lagged`).
#[derive(Debug, Clone)]
pub struct InProcessBus {
    sender: broadcast::Sender<LifecycleMessage>,
}

impl InProcessBus {
    pub fn new(capacity: usize) -> InProcessBus {
        let (sender, _) = broadcast::channel(capacity.max(1));
        InProcessBus { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleMessage> {
        self.sender.subscribe()
    }
}

impl LifecyclePublisher for InProcessBus {
    fn publish(&self, message: LifecycleMessage) {
        tracing::debug!(kind = message.kind.as_str(), event_id = %message.event_id, "lifecycle");
        // No subscriber is not an error: nobody is listening yet.
        let _ = self.sender.send(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_messages_as_json_shaped_for_kafka() {
        let bus = InProcessBus::new(4);
        let mut first = bus.subscribe();
        let id = EventId::parse("0123456789abcdef").unwrap();
        let at = time::macros::datetime!(2026-12-01 18:00 UTC);
        bus.publish(LifecycleMessage::new(
            LifecycleKind::EventLive,
            &id,
            at,
            "publish",
        ));
        let message = first.recv().await.unwrap();
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::json!({
                "type": "event.live",
                "event_id": "0123456789abcdef",
                "at": "2026-12-01T18:00:00Z",
                "cause": "publish",
            })
        );
        // A late subscriber sees only what comes after it.
        let mut late = bus.subscribe();
        assert!(late.try_recv().is_err());
    }
}
