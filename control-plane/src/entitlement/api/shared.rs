//! What several entitlement routes share: the roles that act for viewers, refusals with
//! a reason, times as requests send them.

use axum::http::StatusCode;
use time::OffsetDateTime;

use crate::http::{ApiError, Role};

/// The viewer-facing backend (and admins): accounts, subscriptions, purchases, playback,
/// sessions.
pub(super) const VIEWER_SERVICE: &[Role] = &[Role::Admin, Role::ViewerService];

pub(super) fn parse_time(field: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    crate::rfc3339::parse(text).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            format!("{field} must be an RFC 3339 date-time such as 2026-12-01T18:00:00Z"),
        )
    })
}

/// A refusal with a machine-readable `reason`.
pub(super) fn refused(
    status: StatusCode,
    reason: &'static str,
    detail: impl Into<String>,
) -> ApiError {
    ApiError::Refused {
        status,
        reason: Some(reason),
        detail: detail.into(),
    }
}

pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
