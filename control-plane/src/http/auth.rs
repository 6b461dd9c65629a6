//! Who is calling: the API key in `Authorization: Bearer` (RFC 6750 §2.1), its [`Role`]
//! and principal. Every `/v1` handler takes a [`Caller`] and says which roles it serves.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use serde::Serialize;

use super::problem::ApiError;
use super::state::AppState;
use crate::audit::Actor;

/// What an API key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Role {
    /// Everything, including API keys.
    Admin,
    /// All events, their keys and the audit log.
    Ops,
    /// Only the events (and their keys and status) that belong to its principal.
    Broadcaster,
    /// Entitlement checks and playback tokens on a viewer's behalf.
    ViewerService,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Ops,
        Role::Broadcaster,
        Role::ViewerService,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ops => "ops",
            Role::Broadcaster => "broadcaster",
            Role::ViewerService => "viewer-service",
        }
    }
}

impl FromStr for Role {
    type Err = ();

    fn from_str(text: &str) -> Result<Role, ()> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or(())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The API key's public id (what the audit log names).
    pub(crate) key_id: String,
    pub(crate) role: Role,
    /// Who the key acts for: a broadcaster's events belong to it.
    pub(crate) principal: String,
}

impl Caller {
    /// `Ok` when the caller has one of `roles`; otherwise 403 naming the roles needed.
    pub(crate) fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let needed: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "this needs an API key with role {}; this key has role {}",
            needed.join(" or "),
            self.role
        )))
    }

    /// Admin and ops act on everything; other roles only on what their principal owns.
    pub(crate) fn sees_all(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Ops)
    }

    /// The caller as the audit log and transitions name it.
    pub(crate) fn actor(&self) -> Actor {
        Actor {
            id: self.key_id.clone(),
            role: self.role.as_str().to_string(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated(
                "send an API key as Authorization: Bearer <key>",
            ))?;
        let key = value
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthenticated(
                "the Authorization header must be Bearer <key>",
            ))?;
        let caller = state
            .store()
            .authenticate(key)
            .await
            .map_err(ApiError::Unavailable)?;
        let Some(caller) = caller else {
            return Err(state.api_key_failed(peer_ip(parts)).await);
        };
        Ok(Caller {
            key_id: caller.key_id.as_str().to_string(),
            role: caller.role,
            principal: caller.principal,
        })
    }
}

/// The client's address, when the server was started with connect info (in-process
/// `Router::oneshot` calls have none and are not counted).
fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn roles_are_checked_and_named() {
        let caller = Caller {
            key_id: "k".to_string(),
            role: Role::Broadcaster,
            principal: "acme".to_string(),
        };
        assert!(caller.require(&[Role::Admin, Role::Broadcaster]).is_ok());
        let error = caller.require(&[Role::Admin, Role::Ops]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("admin or ops") && text.contains("broadcaster"),
            "{text}"
        );
        assert!(!caller.sees_all());
    }
}
