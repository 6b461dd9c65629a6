//! Every WHIP error answer, as `application/problem+json` (RFC 9457) with a reason the
//! publisher's operator can act on.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::neighbours::PublishRefusal;
use crate::publisher::SlotTaken;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum WhipError {
    /// No `Authorization: Bearer`, or a key no event has (RFC 6750 §3.1).
    #[error("{0}")]
    Unauthorized(String),
    /// The key is valid, but may not publish now (outside the event's window, protocol not
    /// allowed, …).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Trickle ICE and ICE restarts (PATCH, RFC 9725 §4.3) are not offered.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// RFC 9725 §4.2: the offer must be `application/sdp`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An offer that cannot be parsed, or with nothing we can receive.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
}

impl WhipError {
    fn status(&self) -> StatusCode {
        match self {
            WhipError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WhipError::Forbidden(_) => StatusCode::FORBIDDEN,
            WhipError::NotFound(_) => StatusCode::NOT_FOUND,
            WhipError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            WhipError::Conflict(_) => StatusCode::CONFLICT,
            WhipError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WhipError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WhipError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            WhipError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `floodlight_ingest_rejected_total` reason label.
    pub(crate) fn metric(&self) -> &'static str {
        match self {
            WhipError::Unauthorized(_) => "unauthorized",
            WhipError::Forbidden(_) => "forbidden",
            WhipError::NotFound(_) => "not_found",
            WhipError::MethodNotAllowed(_) => "method_not_allowed",
            WhipError::Conflict(_) => "already_publishing",
            WhipError::UnsupportedMediaType(_) => "not_sdp",
            WhipError::Unprocessable(_) => "unusable_offer",
            WhipError::TooManyRequests(_) => "rate_limited",
            WhipError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<PublishRefusal> for WhipError {
    fn from(refusal: PublishRefusal) -> Self {
        let reason = refusal.to_string();
        match refusal {
            PublishRefusal::UnknownKey => WhipError::Unauthorized(format!(
                "{reason}: the bearer token must be the stream key of the event in the URL"
            )),
            PublishRefusal::Forbidden(_) => WhipError::Forbidden(reason),
            PublishRefusal::RateLimited => WhipError::TooManyRequests(reason),
            _ => WhipError::Unavailable(reason),
        }
    }
}

impl From<SlotTaken> for WhipError {
    fn from(taken: SlotTaken) -> Self {
        WhipError::Conflict(taken.to_string())
    }
}

/// RFC 9457 §3.1 members; `type` stays the default `about:blank`, so `title` is the
/// status's reason phrase.
#[derive(Serialize)]
struct Problem<'a> {
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl IntoResponse for WhipError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = self.to_string();
        let body = serde_json::to_vec(&Problem {
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: &detail,
        })
        .unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            WhipError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            WhipError::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("DELETE"));
            }
            WhipError::TooManyRequests(_) | WhipError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
