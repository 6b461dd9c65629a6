//! `/v1/events`: scheduling events (create, read, list with filters, change), their
//! lifecycle (cancel, archive, the transition record).
//!
//! Who may do what: admin and ops act on every event; a broadcaster creates events that
//! belong to its principal and sees and changes only those (others' are 404 to it, so it
//! learns nothing about them); the viewer service reads the schedule.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::api_keys::validate_principal;
use super::fields::{self, CountryCode, Label};
use super::openapi::Problem;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, page_cursor, page_limit};
use crate::bus::LifecycleKind;
use crate::config::PublicUrls;
use crate::live::{IngestProtocol, LiveStatus};
use crate::store::{
    Event, EventCursor, EventFilter, EventState, GeoRules, NewEvent, Role, RtspSource,
    RtspTransport, Transition, TransitionError, Visibility,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(create_event).get(list_events))
        .route("/v1/events/{event_id}", get(get_event).patch(update_event))
        .route("/v1/events/{event_id}/cancel", post(cancel_event))
        .route("/v1/events/{event_id}/archive", post(archive_event))
        .route("/v1/events/{event_id}/transitions", get(list_transitions))
}

/// Roles that manage events (broadcasters only their own).
pub(super) const MANAGERS: &[Role] = &[Role::Admin, Role::Ops, Role::Broadcaster];
/// Roles that may read events (the viewer service shows the schedule).
const READERS: &[Role] = &[
    Role::Admin,
    Role::Ops,
    Role::Broadcaster,
    Role::ViewerService,
];

/// `null` → `Some(None)`, absent → `None` (with `#[serde(default)]`), a value →
/// `Some(Some(v))`: what a PATCH needs to tell "clear it" from "leave it".
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /v1/events` (title required) and `PATCH /v1/events/{id}` (any subset; `null`
/// clears an optional setting). Unknown members are refused rather than ignored, so a
/// misspelt field is an error the caller sees, not a setting silently lost.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EventRequest {
    /// 1 to 200 characters, not all spaces (trimmed). Required to create.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(
        value_type = Option<String>,
        max_length = 200,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    title: Option<Option<String>>,
    /// Up to 5000 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 5000)]
    description: Option<Option<String>>,
    /// RFC 3339; absent: publishing is open now.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = DateTime)]
    starts_at: Option<Option<String>>,
    /// RFC 3339; absent: no end.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = DateTime)]
    ends_at: Option<Option<String>>,
    /// Default `public`.
    visibility: Option<Visibility>,
    /// What subscription plans include; lowercase `[a-z0-9_-]`, 1 to 64 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Label>)]
    category: Option<Option<String>>,
    /// Up to 20, each like a category.
    #[schema(max_items = 20, value_type = Option<Vec<Label>>)]
    tags: Option<Vec<String>>,
    /// Ladder profile name: 1 to 64 characters of letters, digits, '_' and '-'.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    ladder: Option<Option<String>>,
    /// LL-HLS PART-TARGET, 100 to 1000 ms.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, minimum = 100, maximum = 1000)]
    part_target_ms: Option<Option<u32>>,
    /// 1 to 86400 s.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 86400)]
    dvr_window_secs: Option<Option<u32>>,
    ingest: Option<IngestRequest>,
    geo: Option<GeoRequest>,
    /// The principal the event belongs to (admin and ops only).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    owner: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IngestRequest {
    /// Allowed publisher protocols; `null` or absent: all.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<IngestProtocol>>)]
    protocols: Option<Option<Vec<IngestProtocol>>>,
    /// Allow a backup publisher.
    backup: Option<bool>,
    /// SRT AES passphrase, 10 to 79 characters. Write-only.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, min_length = 10, max_length = 79)]
    srt_passphrase: Option<Option<String>>,
    /// SRT receiver latency, 1 to 10000 ms.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    srt_latency_ms: Option<Option<u32>>,
    /// An RTSP server to pull the feed from.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RtspSourceRequest>)]
    rtsp_source: Option<Option<RtspSourceRequest>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RtspSourceRequest {
    /// `rtsp://[user:password@]host[:port]/path` (or `rtsps://`), at most 2048 bytes;
    /// answers show it without credentials.
    #[schema(
        pattern = r"^rtsps?://([!-.0-~]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[!-~]*)?$",
        max_length = 2048
    )]
    url: String,
    /// Default `tcp`.
    transport: Option<RtspTransport>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GeoRequest {
    /// ISO 3166-1 alpha-2 codes; non-empty: only these countries may watch.
    #[schema(max_items = 300, value_type = Option<Vec<CountryCode>>)]
    allow: Option<Vec<String>>,
    /// ISO 3166-1 alpha-2 codes that may not watch (none of those in `allow`).
    #[schema(max_items = 300, value_type = Option<Vec<CountryCode>>)]
    deny: Option<Vec<String>>,
}

const TITLE_MAX_CHARS: usize = 200;
const DESCRIPTION_MAX_CHARS: usize = 5000;
const MAX_TAGS: usize = 20;
const MAX_GEO_CODES: usize = 300;
const RTSP_URL_MAX_BYTES: usize = 2048;

fn validate_time(field: &str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    crate::rfc3339::parse(raw.trim()).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            format!("{field} must be an RFC 3339 date-time such as 2026-12-01T18:00:00Z"),
        )
    })
}

/// `rtsp://` or `rtsps://`, optional `userinfo@`, a host name or bracketed IPv6 address,
/// an optional port, an optional path of printable ASCII; at most 2048 bytes. Exactly
/// the schema's pattern (`RtspSourceRequest::url`).
fn validate_rtsp_url(url: &str) -> Result<String, ApiError> {
    let field = "ingest.rtsp_source.url";
    if url.len() > RTSP_URL_MAX_BYTES || !rtsp_url_shape(url) {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "{field} must be rtsp://[user:password@]host[:port][/path], printable ASCII, \
                 at most {RTSP_URL_MAX_BYTES} bytes"
            ),
        ));
    }
    Ok(url.to_string())
}

/// Whether `url` matches
/// `^rtsps?://([!-.0-~]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[!-~]*)?$`.
fn rtsp_url_shape(url: &str) -> bool {
    let printable = |b: u8| (b'!'..=b'~').contains(&b);
    let Some(rest) = url
        .strip_prefix("rtsp://")
        .or_else(|| url.strip_prefix("rtsps://"))
    else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !path.bytes().all(printable) {
        return false;
    }
    // Host characters never include '@': userinfo runs to the last one.
    let host_port = match authority.rfind('@') {
        Some(at) => {
            let user = &authority[..at];
            if user.is_empty() || !user.bytes().all(printable) {
                return false;
            }
            &authority[at + 1..]
        }
        None => authority,
    };
    let (host_ok, port) = match host_port.strip_prefix('[') {
        Some(inner) => match inner.split_once(']') {
            Some((address, port)) => (
                !address.is_empty()
                    && address
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
                port,
            ),
            None => (false, ""),
        },
        None => {
            let (host, port) = host_port.split_at(host_port.find(':').unwrap_or(host_port.len()));
            (
                !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
                port,
            )
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| {
            (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        });
    host_ok && port_ok
}

/// The URL without `user:password@`, as answers show it.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}{path}")
}

fn validate_countries(field: &str, codes: &[String]) -> Result<Vec<String>, ApiError> {
    if codes.len() > MAX_GEO_CODES {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} has more than {MAX_GEO_CODES} codes"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(codes.len());
    for (i, code) in codes.iter().enumerate() {
        let code = fields::country_code(&format!("{field}[{i}]"), code)?;
        if !out.contains(&code) {
            out.push(code);
        }
    }
    Ok(out)
}

fn in_range(
    field: &str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ApiError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("{field} must be from {} to {}", range.start(), range.end()),
        ))
    }
}

/// `request` applied on top of `base`, validated as a whole. `creating`: the title is
/// required and a window must not already be over.
fn apply(
    request: EventRequest,
    mut settings: NewEvent,
    caller: &Caller,
    creating: bool,
    now: OffsetDateTime,
) -> Result<NewEvent, ApiError> {
    match request.title {
        Some(Some(title)) => {
            settings.title = fields::display_text("title", &title, TITLE_MAX_CHARS)?.to_string()
        }
        Some(None) => return Err(ApiError::invalid_field("title", "title must not be null")),
        None if creating => {
            return Err(ApiError::invalid_field("title", "missing field `title`"));
        }
        None => {}
    }
    if let Some(description) = request.description {
        // Counted as sent (the schema's maxLength), stored trimmed.
        if let Some(d) = &description
            && d.chars().count() > DESCRIPTION_MAX_CHARS
        {
            return Err(ApiError::invalid_field(
                "description",
                format!("description is longer than {DESCRIPTION_MAX_CHARS} characters"),
            ));
        }
        settings.description = description
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty());
    }
    let window_changed = request.starts_at.is_some() || request.ends_at.is_some();
    if let Some(starts_at) = request.starts_at {
        settings.starts_at = starts_at
            .map(|t| validate_time("starts_at", &t))
            .transpose()?;
    }
    if let Some(ends_at) = request.ends_at {
        settings.ends_at = ends_at.map(|t| validate_time("ends_at", &t)).transpose()?;
    }
    if let (Some(starts), Some(ends)) = (settings.starts_at, settings.ends_at)
        && ends <= starts
    {
        return Err(ApiError::invalid_field(
            "ends_at",
            "ends_at must be after starts_at",
        ));
    }
    if (creating || window_changed) && settings.ends_at.is_some_and(|ends| ends <= now) {
        return Err(ApiError::invalid_field("ends_at", "ends_at is in the past"));
    }
    if let Some(visibility) = request.visibility {
        settings.visibility = visibility;
    }
    if let Some(category) = request.category {
        settings.category = category
            .map(|c| fields::label("category", &c))
            .transpose()?;
    }
    if let Some(tags) = request.tags {
        if tags.len() > MAX_TAGS {
            return Err(ApiError::invalid_field(
                "tags",
                format!("at most {MAX_TAGS} tags"),
            ));
        }
        let mut clean: Vec<String> = Vec::with_capacity(tags.len());
        for (i, tag) in tags.iter().enumerate() {
            let tag = fields::label(&format!("tags[{i}]"), tag)?;
            if !clean.contains(&tag) {
                clean.push(tag);
            }
        }
        settings.tags = clean;
    }
    if let Some(ladder) = request.ladder {
        settings.ladder = ladder
            .map(|name| {
                let valid = (1..=64).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if valid {
                    Ok(name.to_string())
                } else {
                    Err(ApiError::invalid_field(
                        "ladder",
                        "ladder must be 1 to 64 characters of letters, digits, '_' and '-'",
                    ))
                }
            })
            .transpose()?;
    }
    if let Some(part_target) = request.part_target_ms {
        // ARCHITECTURE.md, "LL-HLS packaging rules": part target 100 ms – 1 s.
        settings.part_target_ms = part_target
            .map(|ms| in_range("part_target_ms", ms, 100..=1000))
            .transpose()?;
    }
    if let Some(dvr) = request.dvr_window_secs {
        settings.dvr_window_secs = dvr
            .map(|secs| in_range("dvr_window_secs", secs, 1..=86_400))
            .transpose()?;
    }
    if let Some(ingest) = request.ingest {
        apply_ingest(ingest, &mut settings)?;
    }
    if settings.ingest.rtsp_source.is_some() && !settings.ingest.allows(IngestProtocol::Rtsp) {
        return Err(ApiError::invalid_field(
            "ingest.rtsp_source",
            "an RTSP source needs rtsp among ingest.protocols",
        ));
    }
    if let Some(geo) = request.geo {
        if let Some(allow) = geo.allow {
            settings.geo.allow = validate_countries("geo.allow", &allow)?;
        }
        if let Some(deny) = geo.deny {
            settings.geo.deny = validate_countries("geo.deny", &deny)?;
        }
        if let Some(both) = settings
            .geo
            .allow
            .iter()
            .find(|c| settings.geo.deny.contains(c))
        {
            return Err(ApiError::invalid_field(
                "geo.deny",
                format!("{both} is in both geo.allow and geo.deny"),
            ));
        }
    }
    if let Some(owner) = request.owner {
        let owner = owner.map(|o| validate_principal("owner", &o)).transpose()?;
        if !caller.sees_all() && owner.as_deref() != Some(caller.principal.as_str()) {
            return Err(ApiError::forbidden(
                "only admin and ops keys assign an event's owner",
            ));
        }
        settings.owner = owner;
    }
    Ok(settings)
}

fn apply_ingest(request: IngestRequest, settings: &mut NewEvent) -> Result<(), ApiError> {
    let ingest = &mut settings.ingest;
    if let Some(protocols) = request.protocols {
        ingest.protocols = match protocols {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(ApiError::invalid_field(
                    "ingest.protocols",
                    "ingest.protocols needs at least one protocol; null allows all",
                ));
            }
            Some(list) => {
                let mut clean: Vec<IngestProtocol> = Vec::with_capacity(list.len());
                for protocol in list {
                    if !clean.contains(&protocol) {
                        clean.push(protocol);
                    }
                }
                Some(clean)
            }
        };
    }
    if let Some(backup) = request.backup {
        ingest.backup = backup;
    }
    if let Some(passphrase) = request.srt_passphrase {
        // SRT's PBKEYLEN passphrase: 10 to 79 characters (SRT API, SRTO_PASSPHRASE).
        if let Some(p) = &passphrase
            && !(10..=79).contains(&p.chars().count())
        {
            return Err(ApiError::invalid_field(
                "ingest.srt_passphrase",
                "ingest.srt_passphrase must be 10 to 79 characters",
            ));
        }
        ingest.srt_passphrase = passphrase;
    }
    if let Some(latency) = request.srt_latency_ms {
        ingest.srt_latency_ms = latency
            .map(|ms| in_range("ingest.srt_latency_ms", ms, 1..=10_000))
            .transpose()?;
    }
    if let Some(source) = request.rtsp_source {
        ingest.rtsp_source = source
            .map(|source| {
                Ok::<_, ApiError>(RtspSource {
                    url: validate_rtsp_url(&source.url)?,
                    transport: source.transport.unwrap_or_default(),
                })
            })
            .transpose()?;
    }
    Ok(())
}

/// An event as the API shows it. The stream key appears only in the creation answer;
/// the SRT passphrase and RTSP credentials never.
#[derive(Serialize, ToSchema)]
pub(super) struct EventBody {
    event_id: String,
    title: String,
    description: Option<String>,
    state: EventState,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    starts_at: Option<OffsetDateTime>,
    #[serde(serialize_with = "crate::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    ends_at: Option<OffsetDateTime>,
    visibility: Visibility,
    category: Option<String>,
    tags: Vec<String>,
    ladder: Option<String>,
    part_target_ms: Option<u32>,
    dvr_window_secs: Option<u32>,
    ingest: IngestBody,
    geo: GeoBody,
    owner: Option<String>,
    /// Creation answer only: the primary stream key, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key_id: Option<String>,
    playback: PlaybackBody,
    /// `GET /v1/events/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<LiveStatus>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct IngestBody {
    /// Allowed protocols (all when unrestricted).
    protocols: Vec<IngestProtocol>,
    backup: bool,
    srt_passphrase_set: bool,
    srt_latency_ms: Option<u32>,
    rtsp_source: Option<RtspSourceBody>,
    rtmp: RtmpIngestBody,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RtspSourceBody {
    /// Without credentials.
    url: String,
    transport: RtspTransport,
}

/// OBS takes `url` as "Server" and the key separately; ffmpeg takes `full_url`.
#[derive(Serialize, ToSchema)]
pub(super) struct RtmpIngestBody {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct GeoBody {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl From<&GeoRules> for GeoBody {
    fn from(geo: &GeoRules) -> GeoBody {
        GeoBody {
            allow: geo.allow.clone(),
            deny: geo.deny.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct PlaybackBody {
    /// The master playlist.
    hls: String,
}

impl EventBody {
    fn new(event: &Event, urls: &PublicUrls) -> EventBody {
        let s = &event.settings;
        let ingest = &s.ingest;
        EventBody {
            event_id: event.id.as_str().to_string(),
            title: s.title.clone(),
            description: s.description.clone(),
            state: event.state,
            created_at: event.created_at,
            updated_at: event.updated_at,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            visibility: s.visibility,
            category: s.category.clone(),
            tags: s.tags.clone(),
            ladder: s.ladder.clone(),
            part_target_ms: s.part_target_ms,
            dvr_window_secs: s.dvr_window_secs,
            ingest: IngestBody {
                protocols: ingest
                    .protocols
                    .clone()
                    .unwrap_or_else(|| IngestProtocol::ALL.to_vec()),
                backup: ingest.backup,
                srt_passphrase_set: ingest.srt_passphrase.is_some(),
                srt_latency_ms: ingest.srt_latency_ms,
                rtsp_source: ingest.rtsp_source.as_ref().map(|source| RtspSourceBody {
                    url: without_credentials(&source.url),
                    transport: source.transport,
                }),
                rtmp: RtmpIngestBody {
                    url: urls.rtmp_url().to_string(),
                    stream_key: None,
                    full_url: None,
                },
            },
            geo: GeoBody::from(&s.geo),
            owner: s.owner.clone(),
            stream_key: None,
            stream_key_id: None,
            playback: PlaybackBody {
                hls: urls.hls_master_playlist(event.id.as_str()),
            },
            live: None,
        }
    }
}

#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body = EventRequest,
    responses(
        (status = 201, description = "The event with its primary stream key, shown this once", body = EventBody),
        (status = 400, description = "Malformed JSON", body = Problem),
        (status = 401, description = "No or unknown API key", body = Problem),
        (status = 403, description = "Role not allowed", body = Problem),
        (status = 415, description = "Not application/json", body = Problem),
        (status = 422, description = "A field is invalid; `field` names it", body = Problem),
    ))]
/// Schedules an event (admin, ops, broadcaster). A broadcaster's event belongs to its
/// principal.
pub(super) async fn create_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<EventRequest>,
) -> Result<Response, ApiError> {
    caller.require(MANAGERS)?;
    let now = OffsetDateTime::now_utc();
    let mut base = NewEvent::titled("");
    if !caller.sees_all() {
        base.owner = Some(caller.principal.clone());
    }
    let settings = apply(request, base, &caller, true, now)?;
    let created = state
        .store()
        .create_event(&settings, &caller.actor(), now)
        .await?;
    state
        .lifecycle()
        .announce(LifecycleKind::EventScheduled, &created.event.id, "api");
    let key = created.stream_key.expose_secret();
    let urls = state.urls();
    let mut body = EventBody::new(&created.event, urls);
    body.stream_key = Some(key.to_string());
    body.stream_key_id = Some(created.key.id.clone());
    body.ingest.rtmp.stream_key = Some(key.to_string());
    body.ingest.rtmp.full_url = Some(urls.rtmp_publish_url(key));
    let location = format!("/v1/events/{}", created.event.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Query parameters as text, so that a bad value gets an error naming its parameter.
#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    state: Option<String>,
    starts_from: Option<String>,
    starts_to: Option<String>,
    tags: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EventListBody {
    items: Vec<EventBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

fn comma_list(text: &str) -> impl Iterator<Item = &str> {
    // As sent, like the documented pattern: no spaces, no empty items.
    text.split(',')
}

fn list_filter(query: &ListQuery, caller: &Caller) -> Result<EventFilter, ApiError> {
    let mut filter = EventFilter {
        owner: (caller.role == Role::Broadcaster).then(|| caller.principal.clone()),
        ..EventFilter::default()
    };
    if let Some(states) = &query.state {
        for name in comma_list(states) {
            let state = name.parse::<EventState>().map_err(|()| {
                ApiError::bad_parameter(
                    "state",
                    format!(
                        "state {name:?} is not one of scheduled, live, ended, archived, cancelled"
                    ),
                )
            })?;
            filter.states.push(state);
        }
    }
    let time = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                crate::rfc3339::parse(t).ok_or_else(|| {
                    ApiError::bad_parameter(
                        name,
                        format!(
                            "{name} must be an RFC 3339 date-time such as 2026-12-01T18:00:00Z"
                        ),
                    )
                })
            })
            .transpose()
    };
    filter.starts_from = time("starts_from", &query.starts_from)?;
    filter.starts_to = time("starts_to", &query.starts_to)?;
    if let Some(tags) = &query.tags {
        for tag in comma_list(tags) {
            filter.tags.push(
                fields::label("tags", tag)
                    .map_err(|error| ApiError::bad_parameter("tags", error.to_string()))?,
            );
        }
    }
    Ok(filter)
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(
        ("limit" = Option<u32>, Query, description = "Items per page"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("state" = Option<String>, Query, description = "Comma-separated states, any of them",
            pattern = r"^(scheduled|live|ended|archived|cancelled)(,(scheduled|live|ended|archived|cancelled))*$"),
        ("starts_from" = Option<String>, Query, format = DateTime, description = "starts_at at or after (RFC 3339)"),
        ("starts_to" = Option<String>, Query, format = DateTime, description = "starts_at before (RFC 3339)"),
        ("tags" = Option<String>, Query, description = "Comma-separated tags, all of them",
            pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(,[A-Za-z0-9][A-Za-z0-9_-]{0,63})*$"),
    ),
    responses(
        (status = 200, body = EventListBody),
        (status = 400, description = "A bad parameter; `field` names it", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
    ))]
/// Lists events, newest first, filtered by state, start time and tags; broadcasters see
/// only their own.
pub(super) async fn list_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<EventListBody>, ApiError> {
    caller.require(READERS)?;
    let limit = page_limit(state.config(), query.limit.as_deref())?;
    let cursor = page_cursor::<EventCursor>(query.cursor.as_deref())?;
    let filter = list_filter(&query, &caller)?;
    let page = state
        .store()
        .list_events(&filter, limit, cursor.as_ref())
        .await?;
    Ok(Json(EventListBody {
        items: page
            .events
            .iter()
            .map(|event| EventBody::new(event, state.urls()))
            .collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// The event `event_id` if the caller may see it; 404 otherwise (a broadcaster learns
/// nothing about other broadcasters' events).
pub(super) async fn visible_event(
    state: &AppState,
    caller: &Caller,
    event_id: &str,
) -> Result<Event, ApiError> {
    let not_found = || ApiError::not_found(format!("no event with id {event_id:?}"));
    let event = state.store().event(event_id).await?.ok_or_else(not_found)?;
    if caller.role == Role::Broadcaster
        && event.settings.owner.as_deref() != Some(caller.principal.as_str())
    {
        return Err(not_found());
    }
    Ok(event)
}

#[utoipa::path(get, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "The event with its live status", body = EventBody),
        (status = 404, body = Problem),
    ))]
/// One event with its live status.
pub(super) async fn get_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<EventBody>, ApiError> {
    caller.require(READERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let mut body = EventBody::new(&event, state.urls());
    body.live = Some(state.live().live_status(&event.id));
    Ok(Json(body))
}

#[utoipa::path(patch, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path)),
    request_body = EventRequest,
    responses(
        (status = 200, description = "The changed event", body = EventBody),
        (status = 404, body = Problem),
        (status = 409, description = "The event is over, or changed meanwhile", body = Problem),
        (status = 422, description = "A field is invalid; `field` names it", body = Problem),
    ))]
/// Changes a scheduled or live event's settings (any subset; `null` clears).
pub(super) async fn update_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
    ApiJson(request): ApiJson<EventRequest>,
) -> Result<Json<EventBody>, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    if !event.state.is_open() {
        return Err(ApiError::conflict(format!(
            "the event is {}; only scheduled or live events change",
            event.state
        )));
    }
    let now = OffsetDateTime::now_utc();
    let settings = apply(request, event.settings.clone(), &caller, false, now)?;
    let updated = state
        .store()
        .update_event(&event.id, event.updated_at, &settings, &caller.actor(), now)
        .await?
        .ok_or_else(|| {
            ApiError::conflict("the event changed meanwhile; read it again and retry")
        })?;
    Ok(Json(EventBody::new(&updated, state.urls())))
}

/// Moves an event to `to` through the API, announcing it on the bus.
async fn transition(
    state: &AppState,
    caller: &Caller,
    event_id: &str,
    to: EventState,
    kind: LifecycleKind,
    action: &str,
) -> Result<Json<EventBody>, ApiError> {
    caller.require(MANAGERS)?;
    let event = visible_event(state, caller, event_id).await?;
    let moved = state
        .store()
        .transition(
            &event.id,
            to,
            "api",
            &caller.actor(),
            Some(action),
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(|error| match error {
            TransitionError::NotFound => {
                ApiError::not_found(format!("no event with id {event_id:?}"))
            }
            TransitionError::NotAllowed { .. } => ApiError::conflict(error.to_string()),
            TransitionError::Store(error) => error.into(),
        })?;
    state.lifecycle().announce(kind, &moved.id, "api");
    Ok(Json(EventBody::new(&moved, state.urls())))
}

#[utoipa::path(post, path = "/v1/events/{event_id}/cancel", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "The event, now cancelled", body = EventBody),
        (status = 404, body = Problem),
        (status = 409, description = "Not scheduled or live", body = Problem),
    ))]
/// Calls a scheduled or live event off: publishing is refused from now on.
pub(super) async fn cancel_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<EventBody>, ApiError> {
    transition(
        &state,
        &caller,
        &event_id,
        EventState::Cancelled,
        LifecycleKind::EventCancelled,
        "event.cancel",
    )
    .await
}

#[utoipa::path(post, path = "/v1/events/{event_id}/archive", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, description = "The event, now archived", body = EventBody),
        (status = 404, body = Problem),
        (status = 409, description = "Not ended or cancelled", body = Problem),
    ))]
/// Puts an ended or cancelled event away.
pub(super) async fn archive_event(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<EventBody>, ApiError> {
    transition(
        &state,
        &caller,
        &event_id,
        EventState::Archived,
        LifecycleKind::EventArchived,
        "event.archive",
    )
    .await
}

/// One recorded state change.
#[derive(Serialize, ToSchema)]
pub(super) struct TransitionBody {
    seq: i64,
    /// `null` for the creation.
    from: Option<EventState>,
    to: EventState,
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
    /// `created`, `api`, `publish`, `publisher_gone`, `window_closed`.
    cause: String,
    /// API key id, or `system`.
    actor: String,
}

impl From<Transition> for TransitionBody {
    fn from(t: Transition) -> TransitionBody {
        TransitionBody {
            seq: t.seq,
            from: t.from,
            to: t.to,
            at: t.at,
            cause: t.cause,
            actor: t.actor,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct TransitionListBody {
    /// Oldest first.
    items: Vec<TransitionBody>,
}

#[utoipa::path(get, path = "/v1/events/{event_id}/transitions", tag = "events",
    params(("event_id" = String, Path)),
    responses(
        (status = 200, body = TransitionListBody),
        (status = 404, body = Problem),
    ))]
/// Every state change of the event: from, to, when, why, who.
pub(super) async fn list_transitions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Json<TransitionListBody>, ApiError> {
    caller.require(READERS)?;
    let event = visible_event(&state, &caller, &event_id).await?;
    let transitions = state.store().transitions(&event.id).await?;
    Ok(Json(TransitionListBody {
        items: transitions.into_iter().map(TransitionBody::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters() {
        let title =
            |raw: &str| fields::display_text("title", raw, TITLE_MAX_CHARS).map(str::to_string);
        assert_eq!(title("  Cup final \n").unwrap(), "Cup final");
        assert!(title(" \t ").is_err());
        // 200 two-byte characters are within the limit: it counts characters, not bytes.
        let long = "é".repeat(TITLE_MAX_CHARS);
        assert_eq!(title(&long).unwrap(), long);
        assert!(title(&format!("{long}e")).is_err());
    }

    #[test]
    fn rtsp_urls_lose_their_credentials_in_answers() {
        assert_eq!(
            without_credentials("rtsp://user:p@ss@cam.example:554/live/1"),
            "rtsp://cam.example:554/live/1"
        );
        assert_eq!(without_credentials("rtsp://cam/x"), "rtsp://cam/x");
        assert_eq!(without_credentials("rtsp://u:p@cam"), "rtsp://cam");
        assert!(validate_rtsp_url("http://cam/x").is_err());
        assert!(validate_rtsp_url("rtsp://u:p@/x").is_err());
        assert!(validate_rtsp_url("rtsp://cam/a b").is_err());
        assert_eq!(validate_rtsp_url("rtsps://cam/x").unwrap(), "rtsps://cam/x");
        // Checked as sent: the schema's pattern cannot say "after trimming".
        assert!(validate_rtsp_url(" rtsps://cam/x ").is_err());
        for good in [
            "rtsp://user:p@ss@cam.example:554/live/1",
            "rtsp://[fe80::1]:8554/x",
            "rtsp://10.0.0.2",
        ] {
            assert!(validate_rtsp_url(good).is_ok(), "{good}");
        }
        for bad in [
            "rtsp://cam:123456/x",
            "rtsp://@cam/x",
            "rtsp://c_m/x",
            "rtsp://[]/x",
        ] {
            assert!(validate_rtsp_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_and_countries_are_normalized() {
        assert_eq!(fields::label("category", "Football").unwrap(), "football");
        // Checked as sent: the schema's pattern cannot say "after trimming".
        assert!(fields::label("category", " Football ").is_err());
        assert!(fields::label("category", "-x").is_err());
        assert!(fields::label("category", "a,b").is_err());
        assert_eq!(
            validate_countries("geo.allow", &["us".into(), "CA".into(), "US".into()]).unwrap(),
            ["US", "CA"]
        );
        assert!(validate_countries("geo.allow", &["USA".into()]).is_err());
    }
}
