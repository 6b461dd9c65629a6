//! The event model: an event's id, its state in its lifecycle (scheduled → live → ended →
//! archived, or cancelled), its settings (schedule, visibility, ingest, geo rules), and
//! the record of its transitions.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::db::{StoreError, is_id, random_id};

/// An event's public id, used in playback URLs: 16 characters of `[0-9a-z]` (82 random
/// bits). One case only, so it survives case-insensitive file systems (the DVR archive
/// lives under the data dir) and host names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventId(pub(crate) String);

impl EventId {
    pub(crate) fn generate() -> EventId {
        EventId(random_id())
    }

    /// The id in `text`, if it has an event id's shape (a cheap check before a look-up).
    pub fn parse(text: &str) -> Option<EventId> {
        is_id(text).then(|| EventId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an event is in its life.
///
/// ```text
/// scheduled ──publish──▶ live ──publisher gone / window closed──▶ ended ──▶ archived
///     │                   │                                         ▲
///     ├──window closed────┼─────────────────────────────────────────┘
///     └──cancel──▶ cancelled ◀──cancel──┘            cancelled ──▶ archived
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventState {
    /// Created; publishing opens `control.early_open_secs` before `starts_at`.
    Scheduled,
    /// A publisher is (or was, within the reconnect grace period) on air.
    Live,
    /// Over: the publisher left for longer than the grace period, or the window closed.
    Ended,
    /// Put away after it ended or was cancelled; kept for the record.
    Archived,
    /// Called off; never publishes again.
    Cancelled,
}

impl EventState {
    pub const ALL: [EventState; 5] = [
        EventState::Scheduled,
        EventState::Live,
        EventState::Ended,
        EventState::Archived,
        EventState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Scheduled => "scheduled",
            EventState::Live => "live",
            EventState::Ended => "ended",
            EventState::Archived => "archived",
            EventState::Cancelled => "cancelled",
        }
    }

    /// The states an event may move to from this one.
    pub fn next_states(self) -> &'static [EventState] {
        match self {
            EventState::Scheduled => &[EventState::Live, EventState::Ended, EventState::Cancelled],
            EventState::Live => &[EventState::Ended, EventState::Cancelled],
            EventState::Ended | EventState::Cancelled => &[EventState::Archived],
            EventState::Archived => &[],
        }
    }

    /// Whether settings may still change (the event has not happened yet or is on air).
    pub fn is_open(self) -> bool {
        matches!(self, EventState::Scheduled | EventState::Live)
    }

    pub(super) fn from_column(text: &str) -> Result<EventState, StoreError> {
        text.parse().map_err(|()| StoreError::CorruptRow {
            what: "event state",
            value: text.to_string(),
        })
    }
}

impl FromStr for EventState {
    type Err = ();

    fn from_str(text: &str) -> Result<EventState, ()> {
        EventState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or(())
    }
}

impl fmt::Display for EventState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may watch.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone with the playback URL.
    #[default]
    Public,
    /// Viewers with a subscription to a plan that includes the event's category, or a
    /// purchase of the event; playback needs a token.
    Entitled,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Entitled => "entitled",
        }
    }

    pub(crate) fn from_column(text: &str) -> Result<Visibility, StoreError> {
        match text {
            "public" => Ok(Visibility::Public),
            "entitled" => Ok(Visibility::Entitled),
            other => Err(StoreError::CorruptRow {
                what: "event visibility",
                value: other.to_string(),
            }),
        }
    }
}

/// Publisher protocols (ARCHITECTURE.md, "The flow").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IngestProtocol {
    Rtmp,
    Srt,
    Whip,
    Rtsp,
}

impl IngestProtocol {
    pub const ALL: [IngestProtocol; 4] = [
        IngestProtocol::Rtmp,
        IngestProtocol::Srt,
        IngestProtocol::Whip,
        IngestProtocol::Rtsp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IngestProtocol::Rtmp => "rtmp",
            IngestProtocol::Srt => "srt",
            IngestProtocol::Whip => "whip",
            IngestProtocol::Rtsp => "rtsp",
        }
    }
}

impl FromStr for IngestProtocol {
    type Err = ();

    fn from_str(text: &str) -> Result<IngestProtocol, ()> {
        IngestProtocol::ALL
            .into_iter()
            .find(|protocol| protocol.as_str() == text)
            .ok_or(())
    }
}

impl fmt::Display for IngestProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an RTSP source is pulled.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP interleaved in the RTSP TCP connection (RFC 7826 §14): crosses NATs.
    #[default]
    Tcp,
    Udp,
}

impl RtspTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
}

/// An RTSP server ingest pulls the event's feed from.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspSource {
    /// `rtsp://[user:password@]host[:port]/path`. Holds credentials: never log it whole.
    pub url: String,
    pub transport: RtspTransport,
}

impl fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtspSource")
            .field("url", &"<redacted>")
            .field("transport", &self.transport)
            .finish()
    }
}

/// How an event may be published.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IngestSettings {
    /// Allowed publisher protocols; `None` allows all.
    pub protocols: Option<Vec<IngestProtocol>>,
    /// A second (backup) publisher may connect beside the live one.
    pub backup: bool,
    /// SRT AES passphrase (10 to 79 characters). Kept as given: ingest needs it.
    pub srt_passphrase: Option<String>,
    /// SRT receiver latency.
    pub srt_latency_ms: Option<u32>,
    pub rtsp_source: Option<RtspSource>,
}

impl IngestSettings {
    pub fn allows(&self, protocol: IngestProtocol) -> bool {
        self.protocols
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&protocol))
    }
}

impl fmt::Debug for IngestSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestSettings")
            .field("protocols", &self.protocols)
            .field("backup", &self.backup)
            .field("srt_passphrase_set", &self.srt_passphrase.is_some())
            .field("srt_latency_ms", &self.srt_latency_ms)
            .field("rtsp_source", &self.rtsp_source)
            .finish()
    }
}

/// Country rules for playback, ISO 3166-1 alpha-2 codes (uppercase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GeoRules {
    /// Non-empty: only these countries may watch.
    pub allow: Vec<String>,
    /// These countries may not watch.
    pub deny: Vec<String>,
}

impl GeoRules {
    /// Whether a viewer in `country` may watch; `None` (unknown country) passes only when
    /// there is no allow list.
    pub fn permits(&self, country: Option<&str>) -> bool {
        match country {
            Some(country) => {
                let country = country.to_ascii_uppercase();
                !self.deny.contains(&country)
                    && (self.allow.is_empty() || self.allow.contains(&country))
            }
            None => self.allow.is_empty(),
        }
    }
}

/// Everything about an event that its owner sets (validated by the API before it gets
/// here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub title: String,
    pub description: Option<String>,
    /// `None`: publishing is open now.
    pub starts_at: Option<OffsetDateTime>,
    /// `None`: no end.
    pub ends_at: Option<OffsetDateTime>,
    pub visibility: Visibility,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub ladder: Option<String>,
    pub part_target_ms: Option<u32>,
    pub dvr_window_secs: Option<u32>,
    pub ingest: IngestSettings,
    pub geo: GeoRules,
    /// The principal the event belongs to.
    pub owner: Option<String>,
    /// When the event ends after going live, a whole-event VOD asset is made of its
    /// archive (`true`, the default).
    pub record: bool,
}

impl NewEvent {
    /// An event titled `title` with every other setting at its default.
    pub fn titled(title: impl Into<String>) -> NewEvent {
        NewEvent {
            title: title.into(),
            description: None,
            starts_at: None,
            ends_at: None,
            visibility: Visibility::Public,
            category: None,
            tags: Vec::new(),
            ladder: None,
            part_target_ms: None,
            dvr_window_secs: None,
            ingest: IngestSettings::default(),
            geo: GeoRules::default(),
            owner: None,
            record: true,
        }
    }
}

/// A change to an event's settings: the whole new settings (the API merges a PATCH into
/// the current ones and validates the result), applied only if nobody changed the event
/// since `seen_updated_at`.
pub type EventPatch = NewEvent;

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    pub id: EventId,
    pub state: EventState,
    /// Microsecond precision, as stored.
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub settings: NewEvent,
}

/// What deciding playback access needs to know about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventAccess {
    pub id: EventId,
    pub state: EventState,
    pub visibility: Visibility,
    pub category: Option<String>,
    pub geo: GeoRules,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// 0 for the creation (`from` is `None`), then 1, 2, …
    pub seq: i64,
    pub from: Option<EventState>,
    pub to: EventState,
    pub at: OffsetDateTime,
    /// `created`, `api`, `publish`, `publisher_gone`, `window_closed`.
    pub cause: String,
    /// API key id, or `system`.
    pub actor: String,
}

/// Why a state change did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    #[error("no such event")]
    NotFound,
    #[error("an event that is {from} cannot become {to}")]
    NotAllowed { from: EventState, to: EventState },
    #[error(transparent)]
    Store(#[from] StoreError),
}
