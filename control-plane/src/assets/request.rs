//! What `POST /v1/assets` accepts, and its rules: each field's as its schema states it,
//! checked on the value as sent, and the range against what the archive holds (a pure
//! function of both, so its edges are unit-tested).

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::http::{ApiError, fields};
use crate::jobs::{ArchivedRange, Precision};

/// `POST /v1/assets`: a VOD asset of a span of an event. Unknown members are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssetRequest {
    /// 1 to 200 characters, not all spaces (trimmed); absent: the event's title.
    #[schema(
        max_length = 200,
        pattern = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    )]
    pub(super) title: Option<String>,
    pub(super) source: AssetSourceRequest,
    /// Default `segment`.
    pub(super) precision: Option<Precision>,
}

/// The span of an archived event to make the asset of.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssetSourceRequest {
    /// The event (it must have published; its archive must hold the span).
    #[schema(pattern = r"^[0-9a-z]{16}$")]
    pub(super) event_id: String,
    /// RFC 3339, kept to the millisecond; absent: from the first archived instant.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(super) start: Option<String>,
    /// RFC 3339, kept to the millisecond, after `start`; absent: to the event's end
    /// (needed while the event is live).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(super) end: Option<String>,
}

pub(super) const TITLE_MAX_CHARS: usize = 200;

/// The title as stored, if one was sent.
pub(super) fn title(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    raw.map(|title| fields::display_text("title", title, TITLE_MAX_CHARS).map(str::to_string))
        .transpose()
}

/// `field`'s RFC 3339 time, kept to the millisecond (the archive's resolution).
pub(super) fn time(field: &str, raw: &str) -> Result<OffsetDateTime, ApiError> {
    let at = crate::rfc3339::parse(raw).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            format!("{field} must be an RFC 3339 date-time such as 2026-12-01T18:00:00.500Z"),
        )
    })?;
    Ok(at
        .replace_nanosecond(at.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(at))
}

pub(super) fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Whether `[start, end)` (Unix ms; `None`: open) lies within what the archive holds of
/// the event. The error names the field at fault and gives the archived span.
pub(super) fn check_range(
    event_id: &str,
    start: Option<i64>,
    end: Option<i64>,
    archived: ArchivedRange,
) -> Result<(), ApiError> {
    let held = || {
        format!(
            "the archive holds event {event_id} from {} to {}",
            format_ms(archived.start_ms),
            format_ms(archived.end_ms)
        )
    };
    if let Some(start) = start
        && !(archived.start_ms..archived.end_ms).contains(&start)
    {
        return Err(ApiError::invalid_field(
            "source.start",
            format!(
                "source.start {} is outside it: {}",
                format_ms(start),
                held()
            ),
        ));
    }
    if let Some(end) = end
        && !(archived.start_ms < end && end <= archived.end_ms)
    {
        return Err(ApiError::invalid_field(
            "source.end",
            format!("source.end {} is outside it: {}", format_ms(end), held()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(result: Result<(), ApiError>) -> Option<String> {
        match result {
            Ok(()) => None,
            Err(ApiError::Invalid { field, detail, .. }) => {
                assert!(
                    detail.contains("the archive holds event e from"),
                    "{detail}"
                );
                field
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn ranges_must_lie_within_the_archive() {
        let archived = ArchivedRange {
            start_ms: 1_000,
            end_ms: 61_000,
        };
        let check = |start, end| field(check_range("e", start, end, archived));
        assert_eq!(check(None, None), None);
        assert_eq!(check(Some(1_000), Some(61_000)), None);
        assert_eq!(check(Some(20_000), None), None);
        assert_eq!(check(None, Some(1_001)), None);
        assert_eq!(
            check(Some(999), Some(5_000)).as_deref(),
            Some("source.start")
        );
        assert_eq!(check(Some(61_000), None).as_deref(), Some("source.start"));
        assert_eq!(
            check(Some(2_000), Some(61_001)).as_deref(),
            Some("source.end")
        );
        assert_eq!(check(None, Some(1_000)).as_deref(), Some("source.end"));
    }

    #[test]
    fn times_are_rfc3339_kept_to_the_millisecond() {
        let at = time("source.start", "2026-12-01T18:00:00.123456789Z").unwrap();
        assert_eq!(at.nanosecond(), 123_000_000);
        assert_eq!(unix_ms(at) % 1000, 123);
        match time("source.end", "yesterday") {
            Err(ApiError::Invalid { field, .. }) => {
                assert_eq!(field.as_deref(), Some("source.end"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
    }
}
