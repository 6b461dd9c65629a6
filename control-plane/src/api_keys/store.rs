//! API keys as stored: who may call the control API, in which [`Role`], on whose behalf.
//! Stored as a keyed hash (see `crate::secret`); the key itself is shown once, at creation.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::{Actor, AuditRecord, record_audit};
use crate::db::{
    InvalidCursor, Sql, Store, StoreError, from_unix_micros, query_failed, random_id, stored_time,
    unix_micros,
};
use crate::http::Role;
use crate::secret::random_key;

/// An API key's public id (16 characters of `[0-9a-z]`), shown in lists and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ApiKeyId(pub(crate) String);

impl ApiKeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What [`Store::bootstrap_admin_key`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Bootstrap {
    /// The key table was empty: this generated admin key was stored, to print once.
    Generated(ApiKey),
    /// The key table was empty: the configured key is the admin key now.
    Configured,
    /// The key table has keys, and the configured key (if any) is one of the active ones.
    Unchanged,
    /// The key table has keys and the configured key is not an active one (revoked or
    /// replaced): it stays out. Keys are managed through the API once the table has any.
    ConfiguredIgnored,
}

/// The id of the bootstrap admin key (the generated one, or `control.admin_key`).
pub(crate) const BOOTSTRAP_KEY_ID: &str = "bootstrap-admin";

/// An API key itself: `fl_api_` + 43 characters of `[0-9A-Za-z]` (256 bits). Exists
/// in memory only until the answer that shows it; `Debug` redacts it.
pub struct ApiKey(String);

const API_KEY_PREFIX: &str = "fl_api_";

impl ApiKey {
    fn generate() -> ApiKey {
        ApiKey(random_key(API_KEY_PREFIX))
    }

    /// The key, for the one answer (or the one printout) that shows it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A key to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub role: Role,
    /// Who the key acts for; `None`: the key's own id.
    pub principal: Option<String>,
    pub label: Option<String>,
}

/// An API key as lists show it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub role: Role,
    pub principal: String,
    pub label: Option<String>,
    pub created_at: OffsetDateTime,
    /// Key id of the creator; `None` for the bootstrap key.
    pub created_by: Option<String>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A caller whose key checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated {
    pub key_id: ApiKeyId,
    pub role: Role,
    pub principal: String,
}

impl From<&Authenticated> for Actor {
    fn from(caller: &Authenticated) -> Actor {
        Actor {
            id: caller.key_id.0.clone(),
            role: caller.role.as_str().to_string(),
        }
    }
}

/// Why an API key could not be revoked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeApiKeyError {
    #[error("no API key with this id")]
    NotFound,
    #[error("this is the last active admin key; create another admin key first")]
    LastAdmin,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    role: String,
    principal: String,
    label: Option<String>,
    created_at: i64,
    created_by: Option<String>,
    revoked_at: Option<i64>,
}

const API_KEY_COLUMNS: &str = "id, role, principal, label, created_at, created_by, revoked_at";

fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse().map_err(|()| StoreError::CorruptRow {
        what: "API key role",
        value: text.to_string(),
    })
}

impl TryFrom<ApiKeyRow> for ApiKeyInfo {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<ApiKeyInfo, StoreError> {
        Ok(ApiKeyInfo {
            id: ApiKeyId(row.id),
            role: parse_role(&row.role)?,
            principal: row.principal,
            label: row.label,
            created_at: from_unix_micros(row.created_at)?,
            created_by: row.created_by,
            revoked_at: row.revoked_at.map(from_unix_micros).transpose()?,
        })
    }
}

/// Where the next page of the newest-first API key list starts (opaque to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCursor {
    created_at_us: i64,
    id: String,
}

impl fmt::Display for ApiKeyCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.created_at_us, self.id)
    }
}

impl FromStr for ApiKeyCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<ApiKeyCursor, InvalidCursor> {
        // `{micros}-{id}`; ids are `[0-9a-z-]` (the bootstrap key's has a '-').
        let sign = usize::from(text.starts_with('-'));
        let split = text
            .get(sign..)
            .and_then(|rest| rest.find('-'))
            .ok_or(InvalidCursor)?
            + sign;
        let created_at_us = text[..split].parse().map_err(|_| InvalidCursor)?;
        let id = &text[split + 1..];
        let valid_id = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-');
        if !valid_id {
            return Err(InvalidCursor);
        }
        Ok(ApiKeyCursor {
            created_at_us,
            id: id.to_string(),
        })
    }
}

impl Store {
    /// Makes sure an admin key exists. The bootstrap applies only to an empty key table:
    /// then the configured key (`control.admin_key`) becomes the admin key, or, with none
    /// configured, a generated one is stored and returned this once for the operator to
    /// copy. Once the table has keys, they are managed through the API only: a configured
    /// key that is not an active key (revoked, or replaced) stays out, and the outcome
    /// says so.
    pub async fn bootstrap_admin_key(
        &self,
        configured: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Bootstrap, StoreError> {
        let at = unix_micros(stored_time(now));
        let mut tx = self.write_tx().await?;
        let any: Option<String> = sqlx::query_scalar("SELECT id FROM api_keys LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_failed("count API keys"))?;
        if any.is_some() {
            let Some(key) = configured else {
                return Ok(Bootstrap::Unchanged);
            };
            let active: Option<String> = sqlx::query_scalar(
                "SELECT id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            )
            .bind(self.hasher().digest(key))
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_failed("look up the configured admin key"))?;
            return Ok(match active {
                Some(_) => Bootstrap::Unchanged,
                None => Bootstrap::ConfiguredIgnored,
            });
        }
        let (generated, digest, label, source) = match configured {
            Some(key) => (
                None,
                self.hasher().digest(key),
                "bootstrap (control.admin_key)",
                "control.admin_key",
            ),
            None => {
                let key = ApiKey::generate();
                let digest = self.hasher().digest(key.expose_secret());
                (Some(key), digest, "bootstrap (generated)", "generated")
            }
        };
        // Two control planes starting on one fresh database: one insert wins, the other
        // affects no row and prints nothing.
        let done = sqlx::query(
            "INSERT INTO api_keys (id, key_hash, role, principal, label, created_at) \
             VALUES ($1, $2, 'admin', $1, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(BOOTSTRAP_KEY_ID)
        .bind(digest)
        .bind(label)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(query_failed("insert bootstrap admin key"))?;
        if done.rows_affected() == 0 {
            return Ok(Bootstrap::Unchanged);
        }
        record_audit(
            &mut tx,
            &AuditRecord {
                actor: &Actor::system(),
                action: "api_key.bootstrap",
                target_kind: "api_key",
                target_id: BOOTSTRAP_KEY_ID,
                detail: Some(serde_json::json!({ "source": source })),
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        Ok(match generated {
            Some(key) => Bootstrap::Generated(key),
            None => Bootstrap::Configured,
        })
    }

    /// The caller behind `key`, or `None` for an unknown or revoked key. The key is
    /// neither logged nor kept.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Authenticated>, StoreError> {
        let digest = self.hasher().digest(key);
        let row: Option<(String, String, String, String)> = sqlx::query_as(
            "SELECT id, key_hash, role, principal FROM api_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&digest)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("look up API key"))?;
        let caller = match row {
            Some((id, stored, role, principal)) if self.hasher().matches(&stored, key) => {
                Some(Authenticated {
                    key_id: ApiKeyId(id),
                    role: parse_role(&role)?,
                    principal,
                })
            }
            _ => None,
        };
        let outcome = if caller.is_some() {
            "accepted"
        } else {
            "refused"
        };
        metrics::counter!(API_KEY_CHECKS, "outcome" => outcome).increment(1);
        Ok(caller)
    }

    /// Creates an API key; the answer is the only time the key exists outside the caller.
    pub async fn create_api_key(
        &self,
        new: &NewApiKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<(ApiKeyInfo, ApiKey), StoreError> {
        let now = stored_time(now);
        let at = unix_micros(now);
        let id = random_id();
        let key = ApiKey::generate();
        let info = ApiKeyInfo {
            id: ApiKeyId(id.clone()),
            role: new.role,
            principal: new.principal.clone().unwrap_or_else(|| id.clone()),
            label: new.label.clone(),
            created_at: now,
            created_by: Some(actor.id.clone()),
            revoked_at: None,
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, key_hash, role, principal, label, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(self.hasher().digest(key.expose_secret()))
        .bind(info.role.as_str())
        .bind(&info.principal)
        .bind(info.label.clone())
        .bind(at)
        .bind(actor.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("insert API key"))?;
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "api_key.create",
                target_kind: "api_key",
                target_id: &id,
                detail: Some(serde_json::json!({
                    "role": info.role.as_str(),
                    "principal": info.principal,
                })),
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        tracing::info!(api_key_id = %id, role = %info.role, "API key created");
        Ok((info, key))
    }

    /// Up to `limit` API keys (revoked ones too), newest first, after `after`.
    pub async fn list_api_keys(
        &self,
        limit: u32,
        after: Option<&ApiKeyCursor>,
    ) -> Result<(Vec<ApiKeyInfo>, Option<ApiKeyCursor>), StoreError> {
        let mut sql = Sql::new(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE 1 = 1"
        ));
        sql.newest_first_page(after.map(|c| (c.created_at_us, c.id.clone())), limit);
        let rows: Vec<ApiKeyRow> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("list API keys"))?;
        let more = rows.len() > limit as usize;
        let keys = rows
            .into_iter()
            .take(limit as usize)
            .map(ApiKeyInfo::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match keys.last() {
            Some(last) if more => Some(ApiKeyCursor {
                created_at_us: unix_micros(last.created_at),
                id: last.id.0.clone(),
            }),
            _ => None,
        };
        Ok((keys, next))
    }

    /// The API key with this id, revoked or not.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyInfo>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select API key"))?
        .map(ApiKeyInfo::try_from)
        .transpose()
    }

    /// Revokes an API key at once (its next request is refused). Revoking an already
    /// revoked key changes nothing. The last active admin key cannot be revoked, so the
    /// API never locks itself out.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<ApiKeyInfo, RevokeApiKeyError> {
        let at = unix_micros(stored_time(now));
        let mut tx = self.write_tx().await?;
        // The UPDATE comes first so that the transaction holds the write lock (SQLite)
        // or the row lock (PostgreSQL) before it counts the remaining admins.
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(query_failed("revoke API key"))?;
        if done.rows_affected() > 0 {
            let admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(query_failed("count admin keys"))?;
            let role: String = sqlx::query_scalar("SELECT role FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(query_failed("select API key role"))?;
            if role == Role::Admin.as_str() && admins == 0 {
                return Err(RevokeApiKeyError::LastAdmin);
            }
            record_audit(
                &mut tx,
                &AuditRecord {
                    actor,
                    action: "api_key.revoke",
                    target_kind: "api_key",
                    target_id: id,
                    detail: None,
                },
                at,
            )
            .await?;
        }
        tx.commit().await.map_err(query_failed("commit"))?;
        if done.rows_affected() > 0 {
            tracing::info!(api_key_id = %id, "API key revoked");
        }
        self.api_key(id).await?.ok_or(RevokeApiKeyError::NotFound)
    }
}

const API_KEY_CHECKS: &str = "floodlight_control_api_key_checks_total";

/// Registers the help text of the API key metric with whatever recorder the binary
/// installed.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(
        API_KEY_CHECKS,
        "API key checks by outcome (accepted, refused)"
    );
}
