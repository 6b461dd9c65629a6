//! The database every domain keeps its tables in: the [`Store`] handle (its pool, the
//! embedded migrations, the hasher keys are stored with) and [`StoreError`], and what the
//! domains' queries share: the [`Sql`] builder, ids, times as stored, keyset cursors.
//!
//! One set of migrations and one set of queries run on SQLite (the embedded default) and
//! PostgreSQL (distributed), through sqlx's `Any` driver, which picks the database from
//! the URL's scheme. The SQL is portable: `$n` parameters (SQLite binds them too), TEXT
//! and BIGINT columns only (booleans 0/1, lists as comma-separated TEXT), times as Unix
//! microseconds, random TEXT ids instead of auto-increment. Each domain adds its queries
//! to [`Store`] in an `impl Store` block of its own (`events/store.rs`,
//! `api_keys/store.rs`, …), so outside the domains only [`Store`] and their types show.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use sqlx::AnyPool;
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Arguments, ConnectOptions, Connection, Encode, SqlSafeStr, Type};
use time::OffsetDateTime;

use crate::config::{ControlConfig, DEFAULT_DATABASE_FILE};
use crate::secret::{KeyHasher, KeySecretError};

/// A store operation that failed. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("control.database_url is not a database URL this build can open: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[source] MigrateError),
    #[error(transparent)]
    KeySecret(#[from] KeySecretError),
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
///
/// Numbering: 0001–0099 events, keys and audit; 0100–0199 entitlement; 0200–0299 assets
/// and jobs.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "events and stream keys",
        include_str!("../migrations/0001_events_and_stream_keys.sql"),
    ),
    (
        2,
        "schedule, keys and audit",
        include_str!("../migrations/0002_schedule_keys_and_audit.sql"),
    ),
    (
        3,
        "publisher seen",
        include_str!("../migrations/0003_publisher_seen.sql"),
    ),
    (
        4,
        "event recording",
        include_str!("../migrations/0004_event_recording.sql"),
    ),
    (
        100,
        "entitlement",
        include_str!("../migrations/0100_entitlement.sql"),
    ),
    (
        200,
        "assets and jobs",
        include_str!("../migrations/0200_assets_and_jobs.sql"),
    ),
];

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

/// The control plane's database. Cheap to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    hasher: KeyHasher,
    /// The database is SQLite (else PostgreSQL).
    sqlite: bool,
}

impl Store {
    /// Opens the database `config` names (by default `floodlight.db` in `data_dir`,
    /// creating the directory and file) and applies the embedded migrations. The key
    /// secret comes from `control.key_secret` or `{data_dir}/control.key`.
    pub async fn open(config: &ControlConfig, data_dir: &Path) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => default_sqlite_url(data_dir).await?,
        };
        let hasher = KeyHasher::load(
            config.key_secret.as_ref().map(|s| s.expose_secret()),
            data_dir,
        )
        .await?;
        if config.key_secret.is_none() && !url.starts_with("sqlite:") {
            tracing::warn!(
                "control.key_secret is unset: stream and API keys are hashed with the secret \
                 in this data dir; every control plane sharing this database needs the same"
            );
        }
        let options =
            sqlx::any::AnyConnectOptions::from_str(&url).map_err(StoreError::DatabaseUrl)?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.database_max_connections)
            .acquire_timeout(Duration::from_secs(config.database_acquire_timeout_secs))
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        migrator().run(&pool).await.map_err(StoreError::Migrate)?;
        let sqlite = url.starts_with("sqlite:");
        Ok(Store {
            pool,
            hasher,
            sqlite,
        })
    }

    /// The connection pool, for the domains' queries.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Hashes stream and API keys for storage and checks presented ones.
    pub(crate) fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// A transaction that writes. On SQLite it takes the write lock at its start
    /// (`BEGIN IMMEDIATE`), waiting out the busy timeout while another connection holds
    /// it. A deferred transaction would take it only at its first write, after a read,
    /// and SQLite refuses that upgrade at once ("database is locked", no busy wait) while
    /// another connection holds the lock, as a transaction dropped on an early return
    /// does until its connection goes back to the pool and rolls it back. PostgreSQL
    /// locks rows, not the database: a plain `BEGIN`.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let begun = if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        } else {
            self.pool.begin().await
        };
        begun.map_err(query_failed("begin"))
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

/// Creates the data dir and the SQLite file in WAL mode, and returns its URL.
///
/// WAL lets API reads proceed while a write commits; it is a property of the database
/// file, so setting it once on a direct connection holds for the `Any` pool's
/// connections, whose URL form cannot carry it.
async fn default_sqlite_url(data_dir: &Path) -> Result<String, StoreError> {
    tokio::fs::create_dir_all(data_dir)
        .await
        .map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
    let file = std::path::absolute(data_dir.join(DEFAULT_DATABASE_FILE)).map_err(|source| {
        StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        }
    })?;
    tracing::info!(database = %file.display(), "opening SQLite database");
    // Built from the path rather than parsed from text so any directory name works; the
    // URL it renders percent-encodes the path.
    let options = SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    options
        .connect()
        .await
        .map_err(StoreError::Connect)?
        .close()
        .await
        .map_err(StoreError::Connect)?;
    Ok(options.to_url_lossy().to_string())
}

/// A statement assembled at run time with its bound values, numbering the placeholders
/// `$1, $2, …` as both databases accept them. (sqlx's `QueryBuilder` writes `?` for the
/// `Any` driver, which PostgreSQL refuses.)
#[derive(Default)]
pub(crate) struct Sql {
    text: String,
    args: AnyArguments,
    binds: usize,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            ..Sql::default()
        }
    }

    /// Appends SQL text (never a value from a request).
    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind<'t, T>(&mut self, value: T) -> &mut Sql
    where
        T: Encode<'t, sqlx::Any> + Type<sqlx::Any>,
    {
        self.binds += 1;
        self.text.push('$');
        self.text.push_str(&self.binds.to_string());
        // Encoding into the `Any` buffer only copies the value; it cannot fail for the
        // plain types this store binds.
        self.args
            .add(value)
            .expect("binding a plain value to an Any statement");
        self
    }

    /// Keyset pagination, newest first: keeps the rows after the previous page's last one
    /// (`after`: its `created_at` in µs and id), orders by `created_at DESC, id DESC`, and
    /// limits to one row past `limit`, which tells whether another page follows. The text
    /// so far must end inside a `WHERE` clause.
    pub(crate) fn newest_first_page(
        &mut self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> &mut Sql {
        if let Some((created_at_us, id)) = after {
            self.push(" AND (created_at < ")
                .bind(created_at_us)
                .push(" OR (created_at = ")
                .bind(created_at_us)
                .push(" AND id < ")
                .bind(id)
                .push("))");
        }
        self.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(i64::from(limit) + 1)
    }

    /// Appends `$a, $b, …` bound to `values`, for `IN (…)`.
    pub(crate) fn bind_list<'t, T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Sql
    where
        T: Encode<'t, sqlx::Any> + Type<sqlx::Any>,
    {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self
    }

    pub(crate) fn query(self) -> sqlx::query::Query<'static, sqlx::Any, AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args)
    }

    pub(crate) fn query_as<O>(self) -> sqlx::query::QueryAs<'static, sqlx::Any, O, AnyArguments>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.text), self.args)
    }
}

/// Maps a sqlx error to [`StoreError::Query`] naming the operation.
pub(crate) fn query_failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

const ID_LEN: usize = 16;
const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// 16 characters of `[0-9a-z]` (82 random bits): ids of events, keys, audit entries.
/// One case only, so an id survives case-insensitive file systems and host names.
pub(crate) fn random_id() -> String {
    let mut rng = rand::rng();
    (0..ID_LEN)
        // random_range(0..36) is always a valid index into the 36-byte alphabet.
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

pub(crate) fn is_id(text: &str) -> bool {
    text.len() == ID_LEN && text.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// Unix time in microseconds, the stored form of every time. `OffsetDateTime` spans
/// ±9999 years, ≈ ±3.2 × 10^17 µs, well inside i64.
pub(crate) fn unix_micros(at: OffsetDateTime) -> i64 {
    at.unix_timestamp() * 1_000_000 + i64::from(at.microsecond())
}

pub(crate) fn from_unix_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).map_err(|_| {
        StoreError::CorruptRow {
            what: "timestamp",
            value: micros.to_string(),
        }
    })
}

/// `now` truncated to the microseconds the store keeps, so a value handed back from a
/// write equals the same value read later.
pub(crate) fn stored_time(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_nanosecond(now.microsecond() * 1000)
        .unwrap_or(now)
}

/// A `cursor` that this API did not issue.
#[derive(Debug, thiserror::Error)]
#[error("not a cursor from a previous page's next_cursor")]
pub struct InvalidCursor;

/// `{micros}-{id}`, the shape of every cursor here. Ids are `[0-9a-z]`, so the first
/// '-' after an optional sign separates.
pub(crate) fn parse_time_id_cursor(text: &str) -> Option<(i64, String)> {
    let sign = usize::from(text.starts_with('-'));
    let split = text.get(sign..)?.find('-')? + sign;
    let micros = text.get(..split)?.parse().ok()?;
    let id = text.get(split + 1..).filter(|id| is_id(id))?;
    Some((micros, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sql_numbers_its_placeholders() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(1_i64)
            .push(" AND b IN (")
            .bind_list(["x", "y"])
            .push(")");
        assert_eq!(sql.text, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
    }

    #[test]
    fn ids_are_lowercase_alphanumeric() {
        for _ in 0..100 {
            assert!(is_id(&random_id()));
        }
        assert!(!is_id("0123456789ABCDEF"));
        assert!(!is_id("short"));
    }
}
