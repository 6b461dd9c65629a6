//! Paging of the list routes: the `limit` and `cursor` query parameters. Each list's
//! cursor is a type of its domain's (`EventCursor`, `AuditCursor`, …); here it is only
//! parsed.

use serde::Deserialize;

use super::problem::ApiError;
use crate::config::ControlConfig;

/// Query parameters as text, so that a bad value gets an error naming its parameter.
#[derive(Deserialize)]
pub(crate) struct PageQuery {
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

/// The `limit` query parameter: the configured default when absent, else 1 to
/// `control.max_page_size`; 400 naming `limit` otherwise.
pub(crate) fn page_limit(config: &ControlConfig, limit: Option<&str>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(config.default_page_size),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=config.max_page_size).contains(limit))
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    "limit",
                    format!(
                        "limit must be a whole number from 1 to {}",
                        config.max_page_size
                    ),
                )
            }),
    }
}

/// The `cursor` query parameter parsed as `T`; 400 naming `cursor` when it is not one
/// this API issued.
pub(crate) fn page_cursor<T: std::str::FromStr>(
    cursor: Option<&str>,
) -> Result<Option<T>, ApiError> {
    cursor
        .map(|text| {
            text.parse::<T>().map_err(|_| {
                ApiError::bad_parameter("cursor", "cursor is not a next_cursor this API issued")
            })
        })
        .transpose()
}
