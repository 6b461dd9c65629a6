//! What `POST /v1/events` and `PATCH /v1/events/{id}` accept: the request body, and its
//! rules, applied on top of an event's settings and validated as a whole. Each rule is
//! the one its schema states, checked on the value as sent.

use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::model::{IngestProtocol, NewEvent, RtspSource, RtspTransport, Visibility};
use crate::http::fields::{self, CountryCode, Label};
use crate::http::{ApiError, Caller, nullable};

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
    /// How far back start-over reaches, 0 to 86400 s (0: no start-over); absent or
    /// `null`: the configured default.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 86400)]
    dvr_window_secs: Option<Option<u32>>,
    ingest: Option<IngestRequest>,
    geo: Option<GeoRequest>,
    /// The principal the event belongs to (admin and ops only).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    owner: Option<Option<String>>,
    /// Make a whole-event VOD asset of it when it ends (default `true`).
    record: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IngestRequest {
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
struct RtspSourceRequest {
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
struct GeoRequest {
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
pub(super) fn without_credentials(url: &str) -> String {
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
pub(super) fn apply(
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
            .map(|secs| in_range("dvr_window_secs", secs, 0..=86_400))
            .transpose()?;
    }
    if let Some(record) = request.record {
        settings.record = record;
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
        let owner = owner.map(|o| fields::principal("owner", &o)).transpose()?;
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
