//! Every HTTP error the origin answers, as `application/problem+json` (RFC 9457).

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::window::PushError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// The push API's bearer token is missing or wrong (RFC 6750 §3.1).
    #[error("{0}")]
    Unauthorized(String),
    /// A token stream's request came without a playback token.
    #[error("{0}")]
    TokenRequired(String),
    /// A token stream's request came with a token that does not admit it; `reason` is the
    /// machine-readable why (`expired`, `wrong_event`, `revoked`, …).
    #[error("{detail}")]
    Forbidden {
        reason: &'static str,
        detail: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but its values cannot be accepted (a part's duration).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    /// A body that is not the media type the route takes (a thumbnail that is no JPEG).
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A Range request no byte of the object satisfies (RFC 9110 §15.5.17); the object's
    /// length goes in `Content-Range: bytes */{length}`.
    #[error("{detail}")]
    RangeNotSatisfiable { length: u64, detail: String },
    /// Something stored is unreadable (a corrupt archive object, named in the log).
    #[error("{0}")]
    Internal(String),
    /// An extractor refused the request (bad path, query or body, body too large).
    #[error("{detail}")]
    Rejected { status: StatusCode, detail: String },
}

impl ApiError {
    pub(crate) fn unknown_event(event_id: &str) -> Self {
        ApiError::NotFound(format!("no stream for event {event_id:?} on this origin"))
    }

    pub(crate) fn unknown_rendition(event_id: &str, rendition: &str) -> Self {
        ApiError::NotFound(format!("event {event_id:?} has no rendition {rendition:?}"))
    }

    /// A refused push, with the stream and rendition it was for.
    pub(crate) fn push(event_id: &str, rendition: &str, error: PushError) -> Self {
        let detail = format!("{event_id}/{rendition}: {error}");
        match error {
            PushError::InvalidDescriptor(_) => ApiError::BadRequest(detail),
            PushError::InvalidDuration { .. } | PushError::InvalidSyncSampleBytes { .. } => {
                ApiError::Unprocessable(detail)
            }
            PushError::UnknownRendition(_) => ApiError::NotFound(detail),
            _ => ApiError::Conflict(detail),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::TokenRequired(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Rejected { status, .. } => *status,
        }
    }
}

/// RFC 9457 §3.1 members; `type` stays the default `about:blank`, so `title` is the
/// status phrase and `detail` says what to do about it. A refused playback token adds the
/// extension member `reason` (§3.2).
#[derive(Serialize)]
struct Problem<'a> {
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // RFC 9110 §11.6.1: a 401 names the scheme the client must use (RFC 6750 §3).
        let challenge = match self {
            ApiError::Unauthorized(_) => Some("Bearer realm=\"floodlight-push\""),
            ApiError::TokenRequired(_) => Some("Bearer realm=\"floodlight-playback\""),
            _ => None,
        };
        let reason = match self {
            ApiError::Forbidden { reason, .. } => Some(reason),
            _ => None,
        };
        let content_range = match self {
            ApiError::RangeNotSatisfiable { length, .. } => {
                HeaderValue::from_str(&format!("bytes */{length}")).ok()
            }
            _ => None,
        };
        let problem = Problem {
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            reason,
        };
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        // Errors describe a moment of the live edge; a cache must not replay them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(content_range) = content_range {
            headers.insert(header::CONTENT_RANGE, content_range);
        }
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                ApiError::Rejected { status: rejection.status(), detail: rejection.body_text() }
            }
        }
    )*};
}

from_rejection!(BytesRejection, JsonRejection, PathRejection, QueryRejection);
