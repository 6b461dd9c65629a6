//! What the HTTP API's domains share: the [`AppState`] every handler gets, who is calling
//! ([`Caller`], [`Role`]), errors as problem documents ([`ApiError`]), the JSON, query and
//! path extractors, paging, the field rules several domains apply, and the assembly of the
//! routes and of the OpenAPI document. The routes themselves live with their domains.
//!
//! Every `/v1` route needs an API key ([`Caller`]); `/healthz`, `/readyz`, `/metrics` and
//! the OpenAPI document do not.

mod auth;
mod extract;
pub(crate) mod fields;
mod json;
mod openapi;
mod pagination;
mod problem;
mod router;
mod state;

pub(crate) use auth::Caller;
pub use auth::Role;
pub(crate) use extract::{ApiPath, ApiQuery};
pub(crate) use json::{ApiJson, nullable};
pub(crate) use pagination::{PageQuery, page_cursor, page_limit};
pub(crate) use problem::{ApiError, Problem};
pub(crate) use router::router;
pub(crate) use state::AppState;
