//! API keys: who may call the control API, in which role, on whose behalf; issued,
//! listed and revoked by admins at `/v1/api-keys`, checked on every `/v1` request.

pub(crate) mod api;
mod store;

pub(crate) use store::describe_metrics;
pub use store::{
    ApiKey, ApiKeyCursor, ApiKeyId, ApiKeyInfo, Authenticated, Bootstrap, NewApiKey,
    RevokeApiKeyError,
};
