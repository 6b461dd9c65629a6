//! The SQL store: events and their stream keys.
//!
//! SQLite today, PostgreSQL later (issue 5), so the SQL is portable: `$n` parameters
//! (which sqlx's SQLite driver also binds), TEXT and BIGINT columns, times as Unix
//! microseconds. Everything outside this module sees only [`Store`] and its types.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use time::OffsetDateTime;

use crate::config::{ControlConfig, DEFAULT_DATABASE_FILE};

/// A store operation that failed. Messages never contain a stream key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control.database_url is not a valid SQLite URL: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[source] MigrateError),
    #[error("database query failed ({operation}): {source}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored {what} is invalid: {value}")]
    CorruptRow { what: &'static str, value: String },
}

/// The migrations in `control-plane/migrations`, embedded so the binary runs from any
/// working directory. (`sqlx::migrate!` would embed them too, but needs sqlx's `macros`
/// feature and its compile-time database machinery; this list is all it would produce.)
/// A test checks the list against the directory.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "events and stream keys",
    include_str!("../migrations/0001_events_and_stream_keys.sql"),
)];

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// An event's public id, used in playback URLs: 16 characters of `[0-9a-z]` (82 random
/// bits). One case only, so it survives case-insensitive file systems (the DVR archive
/// lives under the data dir) and host names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventId(String);

const EVENT_ID_LEN: usize = 16;
const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

impl EventId {
    fn generate() -> EventId {
        EventId(random_id())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn random_id() -> String {
    let mut rng = rand::rng();
    (0..EVENT_ID_LEN)
        // random_range(0..36) is always a valid index into the 36-byte alphabet.
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

/// Where an event is in its life. Issue 5 adds scheduled, live, ended, archived and
/// cancelled; the column is plain TEXT so that needs no table rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EventState {
    /// Created through the API; nothing has happened to it yet.
    Created,
}

impl EventState {
    fn as_str(self) -> &'static str {
        match self {
            EventState::Created => "created",
        }
    }

    fn from_column(text: &str) -> Result<EventState, StoreError> {
        match text {
            "created" => Ok(EventState::Created),
            other => Err(StoreError::CorruptRow {
                what: "event state",
                value: other.to_string(),
            }),
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    pub id: EventId,
    pub title: String,
    pub state: EventState,
    /// Microsecond precision, as stored.
    pub created_at: OffsetDateTime,
}

/// A secret that lets its holder publish to one event.
///
/// Format: `fl_live_` + 43 characters of `[0-9A-Za-z]` (43 × log2(62) ≈ 256 bits from
/// the thread-local CSPRNG, which rand seeds from the OS). The prefix lets people and
/// secret scanners recognise a leaked key; the alphabet is safe in an RTMP path, an SRT
/// stream id and an HTTP header without escaping.
///
/// Exists in memory only between creation and the one answer that shows it; `Debug`
/// redacts it so it cannot reach a log by accident.
pub struct StreamKey(String);

const STREAM_KEY_PREFIX: &str = "fl_live_";
const STREAM_KEY_RANDOM_CHARS: usize = 43;

impl StreamKey {
    fn generate() -> StreamKey {
        let random: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(STREAM_KEY_RANDOM_CHARS)
            .map(char::from)
            .collect();
        StreamKey(format!("{STREAM_KEY_PREFIX}{random}"))
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

/// What is stored instead of a key: lowercase hex SHA-256 of the whole key string.
///
/// A fast hash is enough here. Slow password hashes (argon2, bcrypt) exist to make
/// guessing low-entropy human passwords expensive; a 256-bit random key cannot be
/// guessed, so its plain digest reveals nothing and lets the key be found by an indexed
/// lookup. Comparing in constant time is moot for the same reason: the lookup is by
/// digest, and an attacker learns nothing about a key from timing on its digest.
fn stream_key_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new event and its first stream key: the only time the key is available.
#[derive(Debug)]
#[non_exhaustive]
pub struct CreatedEvent {
    pub event: Event,
    pub stream_key: StreamKey,
}

/// Position after which the next page of the newest-first event list starts. Clients
/// see it as an opaque string (`Display`/`FromStr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    created_at_us: i64,
    id: EventId,
}

/// A `cursor` that this API did not issue.
#[derive(Debug, thiserror::Error)]
#[error("not a cursor from a previous page's next_cursor")]
pub struct InvalidCursor;

impl EventCursor {
    fn after(event: &Event) -> EventCursor {
        EventCursor {
            created_at_us: unix_micros(event.created_at),
            id: event.id.clone(),
        }
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.created_at_us, self.id)
    }
}

impl FromStr for EventCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<EventCursor, InvalidCursor> {
        // Event ids are [0-9a-z], so the first '-' after an optional sign separates.
        let sign = usize::from(text.starts_with('-'));
        let split = text
            .get(sign..)
            .and_then(|rest| rest.find('-'))
            .ok_or(InvalidCursor)?
            + sign;
        let (micros, id) = (text.get(..split), text.get(split + 1..));
        let created_at_us = micros
            .and_then(|micros| micros.parse().ok())
            .ok_or(InvalidCursor)?;
        let id = id
            .filter(|id| id.len() == EVENT_ID_LEN && id.bytes().all(|b| ID_ALPHABET.contains(&b)))
            .ok_or(InvalidCursor)?;
        Ok(EventCursor {
            created_at_us,
            id: EventId(id.to_string()),
        })
    }
}

/// One page of events, newest first.
#[derive(Debug)]
#[non_exhaustive]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<EventCursor>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    title: String,
    state: String,
    created_at: i64,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Event, StoreError> {
        Ok(Event {
            id: EventId(row.id),
            title: row.title,
            state: EventState::from_column(&row.state)?,
            created_at: from_unix_micros(row.created_at)?,
        })
    }
}

/// Unix time in microseconds. `OffsetDateTime` spans ±9999 years, ≈ ±3.2 × 10^17 µs,
/// well inside i64.
fn unix_micros(at: OffsetDateTime) -> i64 {
    at.unix_timestamp() * 1_000_000 + i64::from(at.microsecond())
}

fn from_unix_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).map_err(|_| {
        StoreError::CorruptRow {
            what: "timestamp",
            value: micros.to_string(),
        }
    })
}

const EVENTS_CREATED: &str = "floodlight_control_events_created_total";
const STREAM_KEY_CHECKS: &str = "floodlight_control_stream_key_checks_total";

/// Registers help texts with whatever recorder the binary installed.
pub(crate) fn describe_metrics() {
    metrics::describe_counter!(EVENTS_CREATED, "Events created through the API");
    metrics::describe_counter!(
        STREAM_KEY_CHECKS,
        "Stream key checks by outcome (accepted, refused); a run of refusals is someone guessing"
    );
}

fn query_failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

/// The control plane's database. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens the database `config` names (by default `floodlight.db` in `data_dir`,
    /// creating the directory and file) and applies the embedded migrations.
    pub async fn open(config: &ControlConfig, data_dir: &Path) -> Result<Store, StoreError> {
        let options = match &config.database_url {
            Some(url) => SqliteConnectOptions::from_str(url).map_err(StoreError::DatabaseUrl)?,
            None => {
                tokio::fs::create_dir_all(data_dir)
                    .await
                    .map_err(|source| StoreError::DataDir {
                        path: data_dir.to_path_buf(),
                        source,
                    })?;
                let file = data_dir.join(DEFAULT_DATABASE_FILE);
                tracing::info!(database = %file.display(), "opening SQLite database");
                // Built from the path rather than a URL so any directory name works.
                // WAL lets API reads proceed while a write commits.
                SqliteConnectOptions::new()
                    .filename(file)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
            }
        };
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        migrator().run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Store { pool })
    }

    /// Creates an event titled `title` (already validated by the caller) with its first
    /// stream key, at `now`.
    pub async fn create_event(
        &self,
        title: &str,
        now: OffsetDateTime,
    ) -> Result<CreatedEvent, StoreError> {
        let created_at_us = unix_micros(now);
        let event = Event {
            id: EventId::generate(),
            title: title.to_string(),
            state: EventState::Created,
            created_at: from_unix_micros(created_at_us)?,
        };
        let stream_key = StreamKey::generate();

        let mut tx = self.pool.begin().await.map_err(query_failed("begin"))?;
        sqlx::query("INSERT INTO events (id, title, state, created_at) VALUES ($1, $2, $3, $4)")
            .bind(event.id.as_str())
            .bind(&event.title)
            .bind(event.state.as_str())
            .bind(created_at_us)
            .execute(&mut *tx)
            .await
            .map_err(query_failed("insert event"))?;
        sqlx::query(
            "INSERT INTO stream_keys (id, event_id, key_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(random_id())
        .bind(event.id.as_str())
        .bind(stream_key_digest(stream_key.expose_secret()))
        .bind(created_at_us)
        .execute(&mut *tx)
        .await
        .map_err(query_failed("insert stream key"))?;
        tx.commit().await.map_err(query_failed("commit"))?;

        metrics::counter!(EVENTS_CREATED).increment(1);
        tracing::info!(event_id = %event.id, "event created");
        Ok(CreatedEvent { event, stream_key })
    }

    /// The event with this id, if any.
    pub async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        sqlx::query_as::<_, EventRow>(
            "SELECT id, title, state, created_at FROM events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_failed("select event"))?
        .map(Event::try_from)
        .transpose()
    }

    /// Up to `limit` events, newest first, starting after `after` (keyset pagination on
    /// `(created_at, id)`, so pages stay consistent while events are added).
    pub async fn list_events(
        &self,
        limit: u32,
        after: Option<&EventCursor>,
    ) -> Result<EventPage, StoreError> {
        // One extra row tells whether another page follows.
        let fetch = i64::from(limit) + 1;
        let query = match after {
            None => sqlx::query_as::<_, EventRow>(
                "SELECT id, title, state, created_at FROM events \
                 ORDER BY created_at DESC, id DESC LIMIT $1",
            )
            .bind(fetch),
            Some(cursor) => sqlx::query_as::<_, EventRow>(
                "SELECT id, title, state, created_at FROM events \
                 WHERE created_at < $1 OR (created_at = $1 AND id < $2) \
                 ORDER BY created_at DESC, id DESC LIMIT $3",
            )
            .bind(cursor.created_at_us)
            .bind(cursor.id.as_str())
            .bind(fetch),
        };
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list events"))?;
        let more = rows.len() > limit as usize;
        let events = rows
            .into_iter()
            .take(limit as usize)
            .map(Event::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            events.last().map(EventCursor::after)
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    /// The event a stream key may publish to, or `None` for an unknown or revoked key.
    /// Ingest calls this before accepting a single media byte. The key is neither
    /// logged nor kept.
    pub async fn authorize_stream_key(&self, key: &str) -> Result<Option<EventId>, StoreError> {
        let event_id: Option<String> = sqlx::query_scalar(
            "SELECT event_id FROM stream_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(stream_key_digest(key))
        .fetch_optional(&self.pool)
        .await
        .map_err(query_failed("look up stream key"))?;
        let outcome = if event_id.is_some() {
            "accepted"
        } else {
            "refused"
        };
        metrics::counter!(STREAM_KEY_CHECKS, "outcome" => outcome).increment(1);
        Ok(event_id.map(EventId))
    }

    /// Whether the database answers a trivial query (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_failed("ping"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use time::Duration;

    use super::*;

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&ControlConfig::default(), dir.path())
            .await
            .unwrap();
        (dir, store)
    }

    #[test]
    fn embedded_migrations_match_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<(i64, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .map(|path| {
                let name = path.file_name().unwrap().to_str().unwrap().to_string();
                let version = name.split('_').next().unwrap().parse().unwrap();
                (version, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        files.sort();
        let embedded: Vec<(i64, String)> = MIGRATIONS
            .iter()
            .map(|&(version, _, sql)| (version, sql.to_string()))
            .collect();
        assert_eq!(
            files, embedded,
            "a migration file is missing from MIGRATIONS"
        );
    }

    #[test]
    fn stream_keys_are_prefixed_256_bit_and_distinct() {
        let keys: HashSet<String> = (0..100)
            .map(|_| StreamKey::generate().expose_secret().to_string())
            .collect();
        assert_eq!(keys.len(), 100);
        for key in &keys {
            let random = key.strip_prefix(STREAM_KEY_PREFIX).unwrap();
            assert_eq!(random.len(), 43);
            assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        // 43 base-62 digits carry at least 256 bits.
        assert!(43.0 * 62f64.log2() >= 256.0);
        assert_eq!(
            format!("{:?}", StreamKey::generate()),
            "StreamKey(<redacted>)"
        );
    }

    #[test]
    fn cursor_round_trips_and_rejects_foreign_text() {
        let cursor = EventCursor {
            created_at_us: 1_700_000_000_123_456,
            id: EventId("0123456789abcdef".to_string()),
        };
        assert_eq!(cursor.to_string().parse::<EventCursor>().unwrap(), cursor);
        let before_epoch = EventCursor {
            created_at_us: -5,
            id: cursor.id.clone(),
        };
        assert_eq!(
            before_epoch.to_string().parse::<EventCursor>().unwrap(),
            before_epoch
        );
        for bad in [
            "",
            "-",
            "12",
            "12-",
            "x-0123456789abcdef",
            "12-0123456789ABCDEF",
            "12-short",
            "12-0123456789abcdef-",
            "99999999999999999999-0123456789abcdef",
        ] {
            assert!(bad.parse::<EventCursor>().is_err(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn authorizes_only_the_issued_key() {
        let (_dir, store) = temp_store().await;
        let created = store
            .create_event("Cup final", OffsetDateTime::now_utc())
            .await
            .unwrap();
        let key = created.stream_key.expose_secret();
        assert_eq!(
            store.authorize_stream_key(key).await.unwrap(),
            Some(created.event.id.clone())
        );
        let mut wrong = key.to_string();
        wrong.pop();
        assert_eq!(store.authorize_stream_key(&wrong).await.unwrap(), None);
        assert_eq!(store.authorize_stream_key("").await.unwrap(), None);
        assert_eq!(
            store.event(created.event.id.as_str()).await.unwrap(),
            Some(created.event)
        );
    }

    #[tokio::test]
    async fn pages_walk_newest_first_without_gaps_or_repeats() {
        let (_dir, store) = temp_store().await;
        let start = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut created = Vec::new();
        for i in 0..7i64 {
            // Two events share each instant, so the id tiebreak is exercised.
            let at = start + Duration::seconds(i / 2);
            created.push(
                store
                    .create_event(&format!("e{i}"), at)
                    .await
                    .unwrap()
                    .event,
            );
        }
        let mut expected = created.clone();
        expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));

        let mut seen = Vec::new();
        let mut cursor: Option<EventCursor> = None;
        loop {
            let page = store.list_events(3, cursor.as_ref()).await.unwrap();
            assert!(page.events.len() <= 3);
            seen.extend(page.events);
            match page.next {
                // A cursor survives the trip through its text form.
                Some(next) => cursor = Some(next.to_string().parse().unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, expected);

        let exact = store.list_events(7, None).await.unwrap();
        assert_eq!(exact.events.len(), 7);
        assert!(exact.next.is_none(), "no next cursor when nothing follows");
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_migrations_are_idempotent() {
        let (dir, store) = temp_store().await;
        let created = store
            .create_event("Derby", OffsetDateTime::now_utc())
            .await
            .unwrap();
        drop(store);
        let store = Store::open(&ControlConfig::default(), dir.path())
            .await
            .unwrap();
        assert_eq!(
            store
                .authorize_stream_key(created.stream_key.expose_secret())
                .await
                .unwrap(),
            Some(created.event.id)
        );
        store.ping().await.unwrap();
    }
}
