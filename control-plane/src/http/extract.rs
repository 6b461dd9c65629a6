//! Query and path extractors whose rejections are problem documents (400) rather than
//! axum's plain text.

use super::problem::ApiError;

/// Query parameters, rejected as a 400 problem document when the query string does
/// not fit `T`.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs =
            serde_urlencoded::from_str::<Vec<(String, String)>>(query).map_err(|error| {
                ApiError::Invalid {
                    status: axum::http::StatusCode::BAD_REQUEST,
                    field: None,
                    detail: format!("the query string does not parse: {error}"),
                }
            })?;
        // A NUL in a parameter cannot reach the database (PostgreSQL refuses it).
        if let Some((name, _)) = pairs
            .iter()
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::bad_parameter(
                &name.replace('\0', "%00"),
                "query parameters must not contain the NUL character (%00)",
            ));
        }
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|error| ApiError::Invalid {
                status: axum::http::StatusCode::BAD_REQUEST,
                field: None,
                detail: format!("the query string does not parse: {error}"),
            })
    }
}

/// Path parameters, rejected as a 400 problem document (not axum's plain text) when a
/// segment does not decode.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::Invalid {
                status: axum::http::StatusCode::BAD_REQUEST,
                field: None,
                detail: rejection.body_text(),
            })
    }
}
