//! The audit log as stored: who (which API key, in which role) did what to which thing,
//! when. The domains write their entries with [`record_audit`], in the same transaction
//! as the change they describe; the log knows nothing of the things it names.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::db::{
    InvalidCursor, Sql, Store, StoreError, from_unix_micros, parse_time_id_cursor, query_failed,
    random_id,
};

/// Who made a change: an API key (by id, with its role), or the control plane itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// API key id, or `system`.
    pub id: String,
    /// The key's role, or `system`.
    pub role: String,
}

impl Actor {
    /// The control plane's own decisions (publish, reconciler).
    pub fn system() -> Actor {
        Actor {
            id: "system".to_string(),
            role: "system".to_string(),
        }
    }
}

/// What an audit entry records; `detail` is a small JSON object, never a secret.
pub(crate) struct AuditRecord<'a> {
    pub(crate) actor: &'a Actor,
    pub(crate) action: &'a str,
    pub(crate) target_kind: &'a str,
    pub(crate) target_id: &'a str,
    pub(crate) detail: Option<serde_json::Value>,
}

/// Writes one audit entry at `at` (Unix microseconds) on `conn`, which should be the
/// transaction that makes the change.
pub(crate) async fn record_audit(
    conn: &mut sqlx::AnyConnection,
    record: &AuditRecord<'_>,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, actor_role, action, target_kind, target_id, \
         detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(random_id())
    .bind(at)
    .bind(record.actor.id.as_str())
    .bind(record.actor.role.as_str())
    .bind(record.action)
    .bind(record.target_kind)
    .bind(record.target_id)
    .bind(record.detail.as_ref().map(|detail| detail.to_string()))
    .execute(&mut *conn)
    .await
    .map_err(query_failed("insert audit entry"))?;
    Ok(())
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AuditEntry {
    pub id: String,
    pub at: OffsetDateTime,
    pub actor: String,
    pub actor_role: String,
    /// `event.create`, `event.cancel`, `stream_key.revoke`, `api_key.create`, …
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub detail: Option<serde_json::Value>,
}

/// Where the next page of the newest-first audit log starts (opaque to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    at_us: i64,
    id: String,
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.at_us, self.id)
    }
}

impl FromStr for AuditCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<AuditCursor, InvalidCursor> {
        let (at_us, id) = parse_time_id_cursor(text).ok_or(InvalidCursor)?;
        Ok(AuditCursor { at_us, id })
    }
}

/// One page of the audit log, newest first.
#[derive(Debug)]
#[non_exhaustive]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<AuditCursor>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    at: i64,
    actor: String,
    actor_role: String,
    action: String,
    target_kind: String,
    target_id: String,
    detail: Option<String>,
}

impl Store {
    /// Up to `limit` audit entries, newest first, after `after`; only those about
    /// `target_id` when given.
    pub async fn audit_log(
        &self,
        target_id: Option<&str>,
        limit: u32,
        after: Option<&AuditCursor>,
    ) -> Result<AuditPage, StoreError> {
        let mut sql = Sql::new(
            "SELECT id, at, actor, actor_role, action, target_kind, target_id, detail \
             FROM audit_log WHERE 1 = 1",
        );
        if let Some(target_id) = target_id {
            sql.push(" AND target_id = ").bind(target_id.to_string());
        }
        if let Some(cursor) = after {
            sql.push(" AND (at < ")
                .bind(cursor.at_us)
                .push(" OR (at = ")
                .bind(cursor.at_us)
                .push(" AND id < ")
                .bind(cursor.id.clone())
                .push("))");
        }
        sql.push(" ORDER BY at DESC, id DESC LIMIT ")
            .bind(i64::from(limit) + 1);
        let rows: Vec<AuditRow> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("list audit log"))?;
        let more = rows.len() > limit as usize;
        let mut next = None;
        let mut entries = Vec::with_capacity(rows.len().min(limit as usize));
        for row in rows.into_iter().take(limit as usize) {
            if more {
                next = Some(AuditCursor {
                    at_us: row.at,
                    id: row.id.clone(),
                });
            }
            entries.push(AuditEntry {
                at: from_unix_micros(row.at)?,
                detail: row
                    .detail
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|_| StoreError::CorruptRow {
                        what: "audit detail",
                        value: row.id.clone(),
                    })?,
                id: row.id,
                actor: row.actor,
                actor_role: row.actor_role,
                action: row.action,
                target_kind: row.target_kind,
                target_id: row.target_id,
            });
        }
        Ok(AuditPage { entries, next })
    }
}
