//! The embedded SQLite [`Store`]: one file, one process.
//!
//! SQLite admits a single writer at a time, so every write goes through a
//! pool of exactly one connection and starts with `BEGIN IMMEDIATE`: writers
//! queue in-process instead of failing with `SQLITE_BUSY`, and a transaction
//! never has to upgrade a read lock. Reads use a separate pool and, thanks to
//! WAL, never block the writer.
//!
//! Timestamps are stored as INTEGER unix microseconds. The store sets
//! creation and update times itself, truncated to microseconds, so a record
//! returned by a write equals what a later read returns.

mod audit;
mod chains;
mod claim;
mod create;
mod fleet;
mod idempotency;
mod keys;
mod limits;
mod namespaces;
mod operations;
mod resources;
mod retention;
mod runs;
mod sessions;
mod signals;
mod transitions;
mod writes;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, Transaction};

use crate::secrets::SecretBox;
use crate::store::codec::{
    PlainColumns, StoredRow, already_exists, conflict, from_json, into_page, not_found,
    page_limits, to_json, truncate_to_micros,
};
use crate::store::resource::{Resource, builtin_pools};
use crate::store::sealed;
use crate::store::{Page, PageQuery, PoolRecord, Store, StoreError, StoreResult};
use resources::insert_row;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a connection waits for a lock held by another process (e.g. a
/// concurrent `taskloom migrate`) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CONNECTIONS: u32 = 4;
/// Size of the probe write: a disk with less room than this for a
/// transaction counts as full.
const PROBE_BYTES: i64 = 64 * 1024;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    /// Exactly one connection: the only one that writes.
    writer: SqlitePool,
    reader: SqlitePool,
    /// Seals the secret columns.
    secrets: SecretBox,
}

impl SqliteStore {
    /// Opens (creating if missing, readable by its owner only) the
    /// database file at `path`, sealing secrets with `secrets`. Call
    /// [`Store::migrate`] before use.
    pub async fn open(path: &str, secrets: SecretBox) -> StoreResult<SqliteStore> {
        create_private_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // The writer connects first and switches the file to WAL, which is
        // persistent; readers then need no journal-mode change (that would
        // take an exclusive lock).
        let writer = pool_options(1)
            .connect_with(options.clone().journal_mode(SqliteJournalMode::Wal))
            .await?;
        let reader = pool_options(READ_CONNECTIONS).connect_with(options).await?;
        Ok(SqliteStore {
            writer,
            reader,
            secrets,
        })
    }

    pub(super) async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A read transaction, for reads of more than one statement that must see
    /// one snapshot.
    pub(super) async fn read_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.reader.begin().await?)
    }
}

/// Pools whose connections go back only outside a transaction. After a
/// full disk or an I/O error SQLite rolls the transaction back by itself;
/// the ROLLBACK sqlx sends when the failed transaction is dropped then
/// fails, sqlx still counts the transaction as open, and every later
/// `BEGIN` on that connection would fail ("attempted to call begin_with at
/// non-zero transaction depth"). Such a connection is closed instead, and
/// the pool opens a fresh one.
fn pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .after_release(|conn, _| {
            Box::pin(async move {
                // A committed transaction (or none) leaves nothing behind.
                // A dropped one queued its ROLLBACK on the connection's
                // worker thread; a ping returns once it has run.
                if !conn.is_in_transaction() {
                    return Ok(true);
                }
                conn.ping().await?;
                Ok(!conn.is_in_transaction())
            })
        })
}

/// Creates the database file, readable and writable by its owner only, if
/// it does not exist: SQLite creates its `-wal` and `-shm` files with the
/// database file's permissions. An existing file keeps its mode.
fn create_private_file(path: &str) -> StoreResult<()> {
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Database(sqlx::Error::Io(error))),
    }
}

// ---------------------------------------------------------------------------
// Encoding

pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(super) fn from_micros(value: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {value} out of range")))
}

fn now() -> DateTime<Utc> {
    truncate_to_micros(Utc::now())
}

/// Times are INTEGER unix microseconds; JSON documents and lists are TEXT.
impl StoredRow for SqliteRow {
    fn time(&self, name: &str) -> StoreResult<DateTime<Utc>> {
        from_micros(self.int(name)?)
    }

    fn optional_time(&self, name: &str) -> StoreResult<Option<DateTime<Utc>>> {
        self.optional_int(name)?.map(from_micros).transpose()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, name: &str, what: &str) -> StoreResult<T> {
        from_json(&self.text(name)?, what)
    }

    fn strings(&self, name: &str, what: &str) -> StoreResult<Vec<String>> {
        self.json(name, what)
    }

    fn run_text(&self, name: &str) -> StoreResult<Option<String>> {
        self.optional_text(name)
    }
}

// ---------------------------------------------------------------------------
// Reads and checks every resource makes

/// The row `sql` selects by `key`, decoded; `NotFound` names `resource`.
pub(super) async fn fetch_one<T>(
    conn: &mut SqliteConnection,
    sql: &str,
    (resource, key): (&'static str, &str),
    decode: impl FnOnce(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<T> {
    match sqlx::query(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => decode(&row),
        None => Err(not_found(resource, key)),
    }
}

/// One page of the rows `sql` selects. Its parameters, in order: the
/// parent's key (when `parent` is given), the page key (NULL on the first
/// page) and the row limit.
pub(super) async fn fetch_page<T>(
    conn: &mut SqliteConnection,
    sql: &str,
    parent: Option<&str>,
    page: &PageQuery,
    decode: impl Fn(&SqliteRow) -> StoreResult<T>,
    key: impl Fn(&T) -> String,
) -> StoreResult<Page<T>> {
    let mut query = sqlx::query(sql);
    if let Some(parent) = parent {
        query = query.bind(parent);
    }
    let rows = query
        .bind(&page.after)
        .bind(page_limits(page).1)
        .fetch_all(&mut *conn)
        .await?;
    let items = rows.iter().map(decode).collect::<StoreResult<Vec<_>>>()?;
    Ok(into_page(items, page, key))
}

pub(super) async fn exists(conn: &mut SqliteConnection, sql: &str, key: &str) -> StoreResult<bool> {
    Ok(sqlx::query(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

/// `NotFound` unless `sql` finds `key`.
pub(super) async fn require(
    conn: &mut SqliteConnection,
    sql: &str,
    (resource, key): (&'static str, &str),
) -> StoreResult<()> {
    let found = exists(conn, sql, key).await?;
    found.then_some(()).ok_or_else(|| not_found(resource, key))
}

/// `AlreadyExists` if `sql` finds `key`.
pub(super) async fn require_absent(
    conn: &mut SqliteConnection,
    sql: &str,
    (resource, key): (&'static str, &str),
) -> StoreResult<()> {
    match exists(conn, sql, key).await? {
        true => Err(already_exists(resource, key)),
        false => Ok(()),
    }
}

/// Checks the revision `sql` reads for `key` against `expected` (when
/// given): `NotFound` without a row, `Conflict` on another revision.
pub(super) async fn check_stored_revision(
    conn: &mut SqliteConnection,
    sql: &str,
    (resource, key): (&'static str, &str),
    expected: Option<i64>,
) -> StoreResult<()> {
    let actual: i64 = sqlx::query_scalar(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found(resource, key))?;
    check_revision(resource, key, expected, actual)
}

pub(super) fn check_revision(
    resource: &'static str,
    key: &str,
    expected: Option<i64>,
    actual: i64,
) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != actual => Err(conflict(resource, key, expected, actual)),
        _ => Ok(()),
    }
}

/// Deletes what `sql` selects by `keys`; `NotFound` names `resource` and
/// `id` when nothing was there.
pub(super) async fn delete_existing(
    conn: &mut SqliteConnection,
    sql: &str,
    keys: &[&str],
    (resource, id): (&'static str, String),
) -> StoreResult<()> {
    let mut query = sqlx::query(sql);
    for key in keys {
        query = query.bind(*key);
    }
    if query.execute(&mut *conn).await?.rows_affected() == 0 {
        return Err(not_found(resource, id));
    }
    Ok(())
}

/// Maps a unique-constraint violation to `AlreadyExists`. The callers check
/// uniqueness first to name the clashing key; this is the backstop.
pub(super) fn unique_as_already_exists(
    resource: &'static str,
    id: &str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => already_exists(resource, id),
        _ => error.into(),
    }
}

// ---------------------------------------------------------------------------

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await?;
        let mut tx = self.write_tx().await?;
        for pool in builtin_pools(now()) {
            let values = (pool.values(&self.secrets)?, "ON CONFLICT (id) DO NOTHING");
            insert_row::<PoolRecord>(&mut tx, values, StoreError::from).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn probe(&self) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO store_probe (id, probed_at, payload) VALUES (1, ?, zeroblob(?)) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at, \
             payload = excluded.payload",
        )
        .bind(micros(now()))
        .bind(PROBE_BYTES)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn seal_stored_secrets(&self) -> StoreResult<usize> {
        let mut tx = self.write_tx().await?;
        let mut sealed = 0;
        let keys = sqlx::query("SELECT id, api_key FROM backends WHERE api_key IS NOT NULL")
            .fetch_all(&mut *tx)
            .await?;
        for row in &keys {
            let id = row.text("id")?;
            let stored = row.text("api_key")?;
            if let Some(resealed) = sealed::reseal_api_key(&self.secrets, &id, &stored)? {
                sqlx::query("UPDATE backends SET api_key = ? WHERE id = ?")
                    .bind(resealed)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                sealed += 1;
            }
        }
        let hooks = sqlx::query("SELECT hook_key, name, secret_headers FROM hooks")
            .fetch_all(&mut *tx)
            .await?;
        for row in &hooks {
            let name = row.text("name")?;
            let stored = row.json("secret_headers", "hook secret headers")?;
            if let Some(resealed) = sealed::reseal_headers(&self.secrets, &name, &stored)? {
                sqlx::query("UPDATE hooks SET secret_headers = ? WHERE hook_key = ?")
                    .bind(to_json(&resealed, "hook secret headers")?)
                    .bind(row.text("hook_key")?)
                    .execute(&mut *tx)
                    .await?;
                sealed += 1;
            }
        }
        tx.commit().await?;
        Ok(sealed)
    }
}
