//! Events and their keys: the event model and its schedule, its store queries, its stream
//! keys, its lifecycle on air (the publish check, going live and ending, the reconciler),
//! the bus that announces it, the live status the neighbours report, and the
//! `/v1/events…` handlers.
//!
//! Events record their changes in the audit log; nothing here knows API keys beyond the
//! caller's role, nor entitlement.

pub(crate) mod api;
mod bus;
mod lifecycle;
mod live;
mod metrics;
mod model;
mod request;
mod store;
mod stream_keys;
pub(crate) mod stream_keys_api;

pub use bus::{InProcessBus, LifecycleKind, LifecycleMessage, LifecyclePublisher};
pub(crate) use lifecycle::Lifecycle;
pub use lifecycle::{PublishCheck, PublishPermit, PublishRefusal, PullSourceSpec};
pub use live::{
    ArchiveGap, ArchiveHealth, ArchiveState, LiveStatus, LiveStatusSource, PublisherStatus,
    RenditionStatus, ShedRendition,
};
pub(crate) use metrics::describe_metrics;
pub use model::{
    Event, EventAccess, EventId, EventPatch, EventState, GeoRules, IngestProtocol, IngestSettings,
    NewEvent, RtspSource, RtspTransport, Transition, TransitionError, Visibility,
};
pub use store::{EventCursor, EventFilter, EventPage};
pub use stream_keys::{
    CreatedEvent, KeyedEvent, StreamKey, StreamKeyError, StreamKeyInfo, StreamKeyRole,
};
