//! Every API error as `application/problem+json` (RFC 9457), built in one place, and the
//! [`Problem`] schema that the OpenAPI document gives every error answer.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::StoreError;

/// Why a request failed, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ApiError {
    /// The request is malformed (400) or well-formed with unacceptable content (422);
    /// `field` names the body member or query parameter at fault, when there is one.
    #[error("{detail}")]
    Invalid {
        status: StatusCode,
        field: Option<String>,
        detail: String,
    },
    #[error("send the body as Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than control.max_body_bytes allows")]
    BodyTooLarge,
    /// The body could not be read for another reason (the connection failed).
    #[error("{}", .0.body_text())]
    Body(BytesRejection),
    /// 401: no usable API key. `WWW-Authenticate: Bearer` tells the client what to
    /// send (RFC 6750 §3, RFC 9110 §11.6.1).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A refusal a client can act on: 403 (role, ownership, entitlement), 404 (no such
    /// thing, with what was looked for), 409 (state conflict). `reason`, when given, is
    /// a stable machine-readable code shown as the problem's `reason` member.
    #[error("{detail}")]
    Refused {
        status: StatusCode,
        reason: Option<&'static str>,
        detail: String,
    },
    /// 429: this address sent too many unknown API keys lately (`Retry-After` says when
    /// its window ends). A valid key is still accepted.
    #[error("too many failed API key attempts from this address; retry later")]
    TooManyFailures { retry_after_secs: u64 },
    /// The archive a request needs cannot serve it: 503 while it may later (none is
    /// configured in this process, or its object store does not answer), 500 when what
    /// it holds is broken (a corrupt index object, named). `reason` is a stable code.
    #[error("{detail}")]
    Archive {
        status: StatusCode,
        reason: &'static str,
        detail: String,
    },
    #[error("no such resource; the API lives under /v1")]
    RouteNotFound,
    #[error("this method is not allowed on this resource")]
    MethodNotAllowed,
    #[error("the database does not answer")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[from] StoreError),
}

impl ApiError {
    /// 403 with what the caller lacks.
    pub(crate) fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::Refused {
            status: StatusCode::FORBIDDEN,
            reason: None,
            detail: detail.into(),
        }
    }

    /// 404 naming what was looked for, e.g. `no event with id "abc"`.
    pub(crate) fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::Refused {
            status: StatusCode::NOT_FOUND,
            reason: None,
            detail: detail.into(),
        }
    }

    /// 409: the request does not fit the resource's current state.
    pub(crate) fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::Refused {
            status: StatusCode::CONFLICT,
            reason: None,
            detail: detail.into(),
        }
    }

    /// 422 naming the request field at fault.
    pub(crate) fn invalid_field(field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            field: Some(field.into()),
            detail: detail.into(),
        }
    }

    /// 404 for a body field naming something that does not exist (`plan_id`,
    /// `event_id`), with the field.
    pub(crate) fn missing_reference(field: &str, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            status: StatusCode::NOT_FOUND,
            field: Some(field.to_string()),
            detail: detail.into(),
        }
    }

    /// 400 naming the query parameter at fault.
    pub(crate) fn bad_parameter(name: &str, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            status: StatusCode::BAD_REQUEST,
            field: Some(name.to_string()),
            detail: detail.into(),
        }
    }
}

/// An RFC 9457 problem document, as every error of this API is sent
/// (`application/problem+json`): the §3.1 members plus two extension members (§3.2),
/// `field`, naming the request field at fault as a path (`title`, `ingest.rtmp[0]`), and
/// `reason`, a stable code for a refusal (`not_in_plan`, …).
///
/// `type` is `about:blank` throughout, so `title` is the status phrase (§4.2.1) and the
/// status code plus `field` carry the meaning; specific problem types come when a client
/// needs to tell apart two problems with the same status.
#[derive(Serialize, ToSchema)]
pub(crate) struct Problem {
    /// Always `about:blank`: `title` is the status phrase (RFC 9457 §4.2.1).
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// What went wrong, in words a person can act on.
    detail: String,
    /// The request field or query parameter at fault, as a path (`ingest.srt_passphrase`).
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// A stable code for a refusal, when the status alone does not tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { status, .. } => *status,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Body(rejection) => rejection.status(),
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Refused { status, .. } => *status,
            ApiError::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Archive { status, .. } => *status,
            ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            ApiError::Refused { reason, .. } => *reason,
            ApiError::TooManyFailures { .. } => Some("rate_limited"),
            ApiError::Archive { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            // Server-side failures are logged here, once; the client gets no internals.
            ApiError::Internal(error) => tracing::error!(%error, "control API request failed"),
            ApiError::Unavailable(error) => tracing::warn!(%error, "database not ready"),
            ApiError::Archive { detail, .. } => tracing::warn!(%detail, "archive unusable"),
            _ => {}
        }
        let status = self.status();
        let problem = Problem {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            field: self.field().map(str::to_owned),
            reason: self.reason().map(str::to_owned),
        };
        let body = match serde_json::to_vec(&problem) {
            Ok(body) => body,
            // Serializing strings and integers cannot fail; answer plainly if it ever does.
            Err(_) => return status.into_response(),
        };
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyFailures { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
