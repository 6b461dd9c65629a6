//! Stream keys: secrets that let their holder publish to one event. Several per event
//! (a primary and backups), rotated and revoked through the API, stored as a keyed hash
//! (see `crate::secret`), shown once.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use super::metrics::STREAM_KEY_CHECKS;
use super::model::{Event, EventId, NewEvent};
use super::store::{EVENT_COLUMNS, EventRow};
use crate::audit::{Actor, AuditRecord, record_audit};
use crate::db::{
    Store, StoreError, from_unix_micros, query_failed, random_id, stored_time, unix_micros,
};
use crate::secret::random_key;

/// A secret that lets its holder publish to one event.
///
/// Format: `fl_live_` + 43 characters of `[0-9A-Za-z]` (256 bits). Exists in memory only
/// between creation and the one answer that shows it; `Debug` redacts it so it cannot
/// reach a log by accident.
pub struct StreamKey(String);

pub(crate) const STREAM_KEY_PREFIX: &str = "fl_live_";

impl StreamKey {
    fn generate() -> StreamKey {
        StreamKey(random_key(STREAM_KEY_PREFIX))
    }

    /// The key itself, for the creation answer only.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}

/// Which publisher a key is for.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum StreamKeyRole {
    /// The main feed.
    #[default]
    Primary,
    /// A redundant feed that takes over when the primary stops sending; needs the
    /// event's `ingest.backup`.
    Backup,
}

impl StreamKeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKeyRole::Primary => "primary",
            StreamKeyRole::Backup => "backup",
        }
    }

    fn from_column(text: &str) -> Result<StreamKeyRole, StoreError> {
        match text {
            "primary" => Ok(StreamKeyRole::Primary),
            "backup" => Ok(StreamKeyRole::Backup),
            other => Err(StoreError::CorruptRow {
                what: "stream key role",
                value: other.to_string(),
            }),
        }
    }
}

/// A stream key as lists show it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamKeyInfo {
    pub id: String,
    pub event_id: EventId,
    pub role: StreamKeyRole,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A new event and its first (primary) stream key: the only time the key is available.
#[derive(Debug)]
#[non_exhaustive]
pub struct CreatedEvent {
    pub event: Event,
    pub stream_key: StreamKey,
    pub key: StreamKeyInfo,
}

/// What a presented stream key unlocks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeyedEvent {
    pub key_id: String,
    pub role: StreamKeyRole,
    pub event: Event,
}

/// A stream-key operation on an event that did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamKeyError {
    #[error("no such event")]
    EventNotFound,
    #[error("the event has no stream key with this id")]
    KeyNotFound,
    #[error("the key is revoked; rotate an active key")]
    KeyRevoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    event_id: String,
    role: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<KeyRow> for StreamKeyInfo {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<StreamKeyInfo, StoreError> {
        Ok(StreamKeyInfo {
            id: row.id,
            event_id: EventId(row.event_id),
            role: StreamKeyRole::from_column(&row.role)?,
            created_at: from_unix_micros(row.created_at)?,
            last_used_at: row.last_used_at.map(from_unix_micros).transpose()?,
            revoked_at: row.revoked_at.map(from_unix_micros).transpose()?,
        })
    }
}

const KEY_COLUMNS: &str = "id, event_id, role, created_at, last_used_at, revoked_at";

impl Store {
    /// Creates an event (state `scheduled`) with its primary stream key, recording the
    /// first transition and the audit entry, in one transaction.
    pub async fn create_event(
        &self,
        settings: &NewEvent,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<CreatedEvent, StoreError> {
        let mut tx = self.write_tx().await?;
        let event = Store::insert_event(&mut tx, settings, actor, now).await?;
        let (key, stream_key) = self
            .insert_key(&mut tx, &event.id, StreamKeyRole::Primary, now)
            .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        tracing::info!(event_id = %event.id, "event created");
        Ok(CreatedEvent {
            event,
            stream_key,
            key,
        })
    }

    async fn insert_key(
        &self,
        conn: &mut sqlx::AnyConnection,
        event_id: &EventId,
        role: StreamKeyRole,
        now: OffsetDateTime,
    ) -> Result<(StreamKeyInfo, StreamKey), StoreError> {
        let now = stored_time(now);
        let key = StreamKey::generate();
        let info = StreamKeyInfo {
            id: random_id(),
            event_id: event_id.clone(),
            role,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO stream_keys (id, event_id, key_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&info.id)
        .bind(event_id.as_str())
        .bind(self.hasher().digest(key.expose_secret()))
        .bind(role.as_str())
        .bind(unix_micros(now))
        .execute(&mut *conn)
        .await
        .map_err(query_failed("insert stream key"))?;
        Ok((info, key))
    }

    /// Issues another stream key for the event.
    pub async fn create_stream_key(
        &self,
        event_id: &EventId,
        role: StreamKeyRole,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<(StreamKeyInfo, StreamKey), StreamKeyError> {
        let mut tx = self.write_tx().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM events WHERE id = $1")
            .bind(event_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_failed("select event"))?;
        if exists.is_none() {
            return Err(StreamKeyError::EventNotFound);
        }
        let (info, key) = self.insert_key(&mut tx, event_id, role, now).await?;
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "stream_key.create",
                target_kind: "stream_key",
                target_id: &info.id,
                detail: Some(serde_json::json!({
                    "event_id": event_id.as_str(),
                    "role": role.as_str(),
                })),
            },
            unix_micros(info.created_at),
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        tracing::info!(%event_id, key_id = %info.id, role = role.as_str(), "stream key created");
        Ok((info, key))
    }

    /// The event's stream keys (revoked ones too), oldest first.
    pub async fn stream_keys(&self, event_id: &EventId) -> Result<Vec<StreamKeyInfo>, StoreError> {
        sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM stream_keys WHERE event_id = $1 ORDER BY created_at, id"
        )))
        .bind(event_id.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("list stream keys"))?
        .into_iter()
        .map(StreamKeyInfo::try_from)
        .collect()
    }

    async fn key_of_event(
        &self,
        conn: &mut sqlx::AnyConnection,
        event_id: &EventId,
        key_id: &str,
    ) -> Result<StreamKeyInfo, StreamKeyError> {
        let row = sqlx::query_as::<_, KeyRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM stream_keys WHERE id = $1 AND event_id = $2"
        )))
        .bind(key_id)
        .bind(event_id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_failed("select stream key"))?;
        match row {
            Some(row) => Ok(StreamKeyInfo::try_from(row)?),
            None => Err(StreamKeyError::KeyNotFound),
        }
    }

    /// Revokes a key at once: ingest refuses it from the next publish attempt. Revoking
    /// a revoked key changes nothing. Returns the key and whether this call revoked it.
    pub async fn revoke_stream_key(
        &self,
        event_id: &EventId,
        key_id: &str,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<(StreamKeyInfo, bool), StreamKeyError> {
        let at = unix_micros(stored_time(now));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE stream_keys SET revoked_at = $1 \
             WHERE id = $2 AND event_id = $3 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(key_id)
        .bind(event_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("revoke stream key"))?;
        let revoked = done.rows_affected() > 0;
        if revoked {
            record_audit(
                &mut tx,
                &AuditRecord {
                    actor,
                    action: "stream_key.revoke",
                    target_kind: "stream_key",
                    target_id: key_id,
                    detail: Some(serde_json::json!({ "event_id": event_id.as_str() })),
                },
                at,
            )
            .await?;
        }
        let info = self.key_of_event(&mut tx, event_id, key_id).await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        if revoked {
            tracing::info!(%event_id, key_id, "stream key revoked");
        }
        Ok((info, revoked))
    }

    /// Replaces an active key with a new one of the same role: the old one is revoked
    /// and the new one returned, in one transaction.
    pub async fn rotate_stream_key(
        &self,
        event_id: &EventId,
        key_id: &str,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<(StreamKeyInfo, StreamKey), StreamKeyError> {
        let at = unix_micros(stored_time(now));
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE stream_keys SET revoked_at = $1 \
             WHERE id = $2 AND event_id = $3 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(key_id)
        .bind(event_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(query_failed("revoke stream key"))?;
        let old = self.key_of_event(&mut tx, event_id, key_id).await?;
        if done.rows_affected() == 0 {
            return Err(StreamKeyError::KeyRevoked);
        }
        let (info, key) = self.insert_key(&mut tx, event_id, old.role, now).await?;
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "stream_key.rotate",
                target_kind: "stream_key",
                target_id: key_id,
                detail: Some(serde_json::json!({
                    "event_id": event_id.as_str(),
                    "replaced_by": info.id,
                })),
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        tracing::info!(%event_id, key_id, new_key_id = %info.id, "stream key rotated");
        Ok((info, key))
    }

    /// The event an active stream key unlocks, or `None` for an unknown or revoked key.
    /// The key is neither logged nor kept.
    pub async fn stream_key_event(&self, key: &str) -> Result<Option<KeyedEvent>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            key_id: String,
            key_hash: String,
            key_role: String,
            #[sqlx(flatten)]
            event: EventRow,
        }
        let row = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
            "SELECT stream_keys.id AS key_id, stream_keys.key_hash, \
             stream_keys.role AS key_role, {EVENT_COLUMNS} \
             FROM stream_keys JOIN events ON events.id = stream_keys.event_id \
             WHERE stream_keys.key_hash = $1 AND stream_keys.revoked_at IS NULL"
        )))
        .bind(self.hasher().digest(key))
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("look up stream key"))?;
        let keyed = match row {
            Some(row) if self.hasher().matches(&row.key_hash, key) => {
                let role = StreamKeyRole::from_column(&row.key_role)?;
                let mut events = self.with_tags(vec![row.event]).await?;
                events.pop().map(|event| KeyedEvent {
                    key_id: row.key_id,
                    role,
                    event,
                })
            }
            _ => None,
        };
        let outcome = if keyed.is_some() {
            "accepted"
        } else {
            "refused"
        };
        metrics::counter!(STREAM_KEY_CHECKS, "outcome" => outcome).increment(1);
        Ok(keyed)
    }

    /// Notes that a key was just used to publish.
    pub(crate) async fn touch_stream_key(
        &self,
        key_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE stream_keys SET last_used_at = $1 WHERE id = $2")
            .bind(unix_micros(stored_time(now)))
            .bind(key_id)
            .execute(self.pool())
            .await
            .map_err(query_failed("touch stream key"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::ControlConfig;

    /// Another connection holds SQLite's write lock (a transaction not yet rolled back):
    /// a write transaction that reads before it writes waits for it rather than failing
    /// with "database is locked" (seen in CI right after an update that matched no row).
    #[tokio::test]
    async fn a_write_waits_for_the_sqlite_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&ControlConfig::default(), dir.path())
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let created = store
            .create_event(&NewEvent::titled("lock"), &Actor::system(), now)
            .await
            .unwrap();
        let mut holder = store.write_tx().await.unwrap();
        sqlx::query("UPDATE events SET title = title WHERE id = $1")
            .bind(created.event.id.as_str())
            .execute(&mut *holder)
            .await
            .unwrap();
        let writer = {
            let store = store.clone();
            let id = created.event.id.clone();
            tokio::spawn(async move {
                store
                    .create_stream_key(&id, StreamKeyRole::Backup, &Actor::system(), now)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        holder.rollback().await.unwrap();
        writer
            .await
            .unwrap()
            .expect("the key is created once the lock is free");
    }
}
