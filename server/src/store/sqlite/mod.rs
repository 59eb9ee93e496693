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

mod runs;
mod sessions;
mod signals;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Decode, Row, Sqlite, Transaction, Type};

use crate::secrets::SecretBox;

use crate::store::codec::{
    already_exists, conflict, from_json, not_found, page_limits, to_json, truncate_to_micros,
};
use crate::store::sealed;
use crate::store::{
    BUILTIN_POOLS, BackendRecord, BackendState, ChainRecord, Created, HookRecord, IdempotencyKey,
    ModelRecord, Page, PageQuery, PoolRecord, Store, StoreError, StoreResult,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a connection waits for a lock held by another process (e.g. a
/// concurrent `taskloom migrate`) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CONNECTIONS: u32 = 4;
/// Size of the probe write: a disk with less room than this for a
/// transaction counts as full.
const PROBE_BYTES: i64 = 64 * 1024;

const BACKEND_COLUMNS: &str = "b.id, b.name, b.backend_type, b.base_url, b.api_key, b.priority, \
     b.max_concurrency, b.request_timeout_ms, b.labels, b.health, b.models, b.last_error, \
     b.last_sync_at, b.latency_ms, b.revision, b.created_at, b.updated_at";
const POOL_COLUMNS: &str = "p.id, p.description, p.purpose, p.created_at";
const MODEL_COLUMNS: &str = "m.id, m.name, m.context_length, m.capabilities, m.created_at";
const HOOK_COLUMNS: &str = "h.name, h.description, h.url, h.method, h.timeout_ms, h.headers, \
     h.secret_headers, h.queue, h.revision, h.created_at, h.updated_at";
/// Columns of a chain version joined with its head (`h` = chain_heads,
/// `v` = chain_versions).
const CHAIN_COLUMNS: &str =
    "v.id, v.version, v.definition, h.created_at AS chain_created_at, v.created_at, h.deleted";

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    /// Exactly one connection: the only one that writes.
    writer: SqlitePool,
    pub(super) reader: SqlitePool,
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
// Encoding helpers

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

fn check_revision(resource: &'static str, id: &str, expected: i64, actual: i64) -> StoreResult<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(conflict(resource, id, expected, actual))
    }
}

// ---------------------------------------------------------------------------
// Row decoding

/// Reads a column, reporting undecodable values as corrupt data.
pub(super) fn column<'r, T>(row: &'r SqliteRow, name: &str) -> StoreResult<T>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(name).map_err(|error| match error {
        sqlx::Error::ColumnDecode { .. } => StoreError::Corrupt(error.to_string()),
        other => other.into(),
    })
}

fn backend_from_row(row: &SqliteRow, secrets: &SecretBox) -> StoreResult<BackendRecord> {
    let last_sync_at: Option<i64> = column(row, "last_sync_at")?;
    let id: String = column(row, "id")?;
    Ok(BackendRecord {
        api_key: sealed::open_api_key(secrets, &id, column(row, "api_key")?)?,
        id,
        name: column(row, "name")?,
        backend_type: column(row, "backend_type")?,
        base_url: column(row, "base_url")?,
        priority: column(row, "priority")?,
        max_concurrency: column(row, "max_concurrency")?,
        request_timeout_ms: column(row, "request_timeout_ms")?,
        labels: from_json(column(row, "labels")?, "backend labels")?,
        state: BackendState {
            health: column(row, "health")?,
            models: from_json(column(row, "models")?, "backend models")?,
            last_error: column(row, "last_error")?,
            last_sync_at: last_sync_at.map(from_micros).transpose()?,
            latency_ms: column(row, "latency_ms")?,
        },
        revision: column(row, "revision")?,
        created_at: from_micros(column(row, "created_at")?)?,
        updated_at: from_micros(column(row, "updated_at")?)?,
    })
}

fn pool_from_row(row: &SqliteRow) -> StoreResult<PoolRecord> {
    Ok(PoolRecord {
        id: column(row, "id")?,
        description: column(row, "description")?,
        purpose: column(row, "purpose")?,
        created_at: from_micros(column(row, "created_at")?)?,
    })
}

fn model_from_row(row: &SqliteRow) -> StoreResult<ModelRecord> {
    Ok(ModelRecord {
        id: column(row, "id")?,
        name: column(row, "name")?,
        context_length: column(row, "context_length")?,
        capabilities: from_json(column(row, "capabilities")?, "model capabilities")?,
        created_at: from_micros(column(row, "created_at")?)?,
    })
}

fn hook_from_row(row: &SqliteRow, secrets: &SecretBox) -> StoreResult<HookRecord> {
    let name: String = column(row, "name")?;
    Ok(HookRecord {
        secret_headers: sealed::open_headers(
            secrets,
            &name,
            from_json(column(row, "secret_headers")?, "hook secret headers")?,
        )?,
        name,
        description: column(row, "description")?,
        url: column(row, "url")?,
        method: column(row, "method")?,
        timeout_ms: column(row, "timeout_ms")?,
        headers: from_json(column(row, "headers")?, "hook headers")?,
        queue: column(row, "queue")?,
        revision: column(row, "revision")?,
        created_at: from_micros(column(row, "created_at")?)?,
        updated_at: from_micros(column(row, "updated_at")?)?,
    })
}

/// A chain version and whether its chain is deleted.
fn chain_from_row(row: &SqliteRow) -> StoreResult<(ChainRecord, bool)> {
    let record = ChainRecord {
        id: column(row, "id")?,
        version: column(row, "version")?,
        definition: column(row, "definition")?,
        created_at: from_micros(column(row, "chain_created_at")?)?,
        updated_at: from_micros(column(row, "created_at")?)?,
    };
    Ok((record, column(row, "deleted")?))
}

// ---------------------------------------------------------------------------
// Single-row lookups shared by several methods

async fn fetch_backend(
    conn: &mut SqliteConnection,
    id: &str,
    secrets: &SecretBox,
) -> StoreResult<BackendRecord> {
    let row = sqlx::query(&format!(
        "SELECT {BACKEND_COLUMNS} FROM backends b WHERE b.id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => backend_from_row(&row, secrets),
        None => Err(not_found("backend", id)),
    }
}

async fn fetch_pool(conn: &mut SqliteConnection, id: &str) -> StoreResult<PoolRecord> {
    let row = sqlx::query(&format!(
        "SELECT {POOL_COLUMNS} FROM pools p WHERE p.id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => pool_from_row(&row),
        None => Err(not_found("pool", id)),
    }
}

async fn fetch_model(conn: &mut SqliteConnection, name: &str) -> StoreResult<ModelRecord> {
    let row = sqlx::query(&format!(
        "SELECT {MODEL_COLUMNS} FROM models m WHERE m.name = ?"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => model_from_row(&row),
        None => Err(not_found("model", name)),
    }
}

async fn fetch_hook(
    conn: &mut SqliteConnection,
    name: &str,
    secrets: &SecretBox,
) -> StoreResult<HookRecord> {
    let row = sqlx::query(&format!(
        "SELECT {HOOK_COLUMNS} FROM hooks h WHERE h.name = ?"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => hook_from_row(&row, secrets),
        None => Err(not_found("hook", name)),
    }
}

/// The given version (or the latest) of a chain, deleted or not, with its
/// deleted flag.
async fn fetch_chain(
    conn: &mut SqliteConnection,
    id: &str,
    version: Option<i64>,
) -> StoreResult<(ChainRecord, bool)> {
    let row = sqlx::query(&format!(
        "SELECT {CHAIN_COLUMNS} FROM chain_heads h JOIN chain_versions v ON v.id = h.id \
         WHERE h.id = ? AND v.version = COALESCE(?, h.latest_version)"
    ))
    .bind(id)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => chain_from_row(&row),
        None => Err(match version {
            Some(version) => not_found("chain version", format!("{id}@{version}")),
            None => not_found("chain", id),
        }),
    }
}

pub(super) async fn exists(conn: &mut SqliteConnection, sql: &str, key: &str) -> StoreResult<bool> {
    Ok(sqlx::query(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .is_some())
}

async fn stored_revision(
    conn: &mut SqliteConnection,
    sql: &str,
    resource: &'static str,
    key: &str,
) -> StoreResult<i64> {
    sqlx::query_scalar(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_found(resource, key))
}

/// The head of a chain: `(latest_version, deleted)`.
async fn chain_head(conn: &mut SqliteConnection, id: &str) -> StoreResult<Option<(i64, bool)>> {
    Ok(
        sqlx::query_as("SELECT latest_version, deleted FROM chain_heads WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// The latest version of a live chain; `NotFound` if missing or deleted.
async fn live_chain_version(conn: &mut SqliteConnection, id: &str) -> StoreResult<i64> {
    match chain_head(conn, id).await? {
        Some((latest, false)) => Ok(latest),
        _ => Err(not_found("chain", id)),
    }
}

// ---------------------------------------------------------------------------
// Idempotency

/// The resource an earlier request with the same id created.
pub(super) struct PriorResult {
    pub(super) resource_key: String,
    resource_version: Option<i64>,
}

/// Looks up `key`: `None` for a new request id, the earlier result for a
/// repeat with the same payload, `IdempotencyMismatch` for another payload.
pub(super) async fn prior_result(
    conn: &mut SqliteConnection,
    key: Option<&IdempotencyKey>,
) -> StoreResult<Option<PriorResult>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let row: Option<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT request_hash, resource_key, resource_version FROM idempotency_keys \
         WHERE scope = ? AND request_id = ?",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        Some((hash, _, _)) if hash != key.request_hash => Err(StoreError::IdempotencyMismatch {
            request_id: key.request_id.clone(),
        }),
        Some((_, resource_key, resource_version)) => Ok(Some(PriorResult {
            resource_key,
            resource_version,
        })),
    }
}

/// Records the request id in the transaction of the creation it guards.
pub(super) async fn remember_result(
    conn: &mut SqliteConnection,
    key: Option<&IdempotencyKey>,
    resource_key: &str,
    resource_version: Option<i64>,
) -> StoreResult<()> {
    let Some(key) = key else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO idempotency_keys \
         (scope, request_id, request_hash, resource_key, resource_version, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .bind(&key.request_hash)
    .bind(resource_key)
    .bind(resource_version)
    .bind(micros(Utc::now()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The chain version a repeated chain write created.
async fn replayed_chain(
    conn: &mut SqliteConnection,
    prior: PriorResult,
) -> StoreResult<Created<ChainRecord>> {
    let version = prior.resource_version.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "idempotency record of chain {:?} has no version",
            prior.resource_key
        ))
    })?;
    let (record, _deleted) = fetch_chain(conn, &prior.resource_key, Some(version)).await?;
    Ok(Created {
        record,
        replayed: true,
    })
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
        let created_at = micros(now());
        for (id, purpose) in BUILTIN_POOLS {
            sqlx::query(
                "INSERT INTO pools (id, description, purpose, created_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(crate::store::builtin_pool_description(purpose))
            .bind(purpose)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
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
            let id: String = column(row, "id")?;
            let stored: String = column(row, "api_key")?;
            if let Some(resealed) = sealed::reseal_api_key(&self.secrets, &id, &stored)? {
                sqlx::query("UPDATE backends SET api_key = ? WHERE id = ?")
                    .bind(resealed)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                sealed += 1;
            }
        }
        let hooks = sqlx::query("SELECT name, secret_headers FROM hooks")
            .fetch_all(&mut *tx)
            .await?;
        for row in &hooks {
            let name: String = column(row, "name")?;
            let stored = from_json(column(row, "secret_headers")?, "hook secret headers")?;
            if let Some(resealed) = sealed::reseal_headers(&self.secrets, &name, &stored)? {
                sqlx::query("UPDATE hooks SET secret_headers = ? WHERE name = ?")
                    .bind(to_json(&resealed, "hook secret headers")?)
                    .bind(&name)
                    .execute(&mut *tx)
                    .await?;
                sealed += 1;
            }
        }
        tx.commit().await?;
        Ok(sealed)
    }

    // ---- backends ----

    async fn create_backend(
        &self,
        backend: BackendRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<BackendRecord>> {
        let mut tx = self.write_tx().await?;
        if let Some(prior) = prior_result(&mut tx, idempotency.as_ref()).await? {
            let record = fetch_backend(&mut tx, &prior.resource_key, &self.secrets).await?;
            tx.commit().await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        if exists(&mut tx, "SELECT 1 FROM backends WHERE id = ?", &backend.id).await? {
            return Err(already_exists("backend", backend.id));
        }
        if exists(
            &mut tx,
            "SELECT 1 FROM backends WHERE name = ?",
            &backend.name,
        )
        .await?
        {
            return Err(already_exists("backend", backend.name));
        }
        let created_at = now();
        let record = BackendRecord {
            revision: 1,
            created_at,
            updated_at: created_at,
            state: BackendState {
                last_sync_at: backend.state.last_sync_at.map(truncate_to_micros),
                ..backend.state
            },
            ..backend
        };
        sqlx::query(
            "INSERT INTO backends (id, name, backend_type, base_url, api_key, priority, \
             max_concurrency, request_timeout_ms, labels, health, models, last_error, \
             last_sync_at, latency_ms, revision, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&record.id)
        .bind(&record.name)
        .bind(&record.backend_type)
        .bind(&record.base_url)
        .bind(sealed::seal_api_key(
            &self.secrets,
            &record.id,
            record.api_key.as_deref(),
        ))
        .bind(record.priority)
        .bind(record.max_concurrency)
        .bind(record.request_timeout_ms)
        .bind(to_json(&record.labels, "backend labels")?)
        .bind(&record.state.health)
        .bind(to_json(&record.state.models, "backend models")?)
        .bind(&record.state.last_error)
        .bind(record.state.last_sync_at.map(micros))
        .bind(record.state.latency_ms)
        .bind(record.revision)
        .bind(micros(record.created_at))
        .bind(micros(record.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(unique_as_already_exists("backend", &record.id))?;
        remember_result(&mut tx, idempotency.as_ref(), &record.id, None).await?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_backend(&self, id: &str) -> StoreResult<BackendRecord> {
        let mut conn = self.reader.acquire().await?;
        fetch_backend(&mut conn, id, &self.secrets).await
    }

    async fn list_backends(&self, page: PageQuery) -> StoreResult<Page<BackendRecord>> {
        let (limit, fetch) = page_limits(&page);
        let rows = sqlx::query(&format!(
            "SELECT {BACKEND_COLUMNS} FROM backends b \
             WHERE (?1 IS NULL OR b.name > ?1) ORDER BY b.name LIMIT ?2"
        ))
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .iter()
            .map(|row| backend_from_row(row, &self.secrets))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |b| b.name.clone()))
    }

    async fn update_backend(&self, backend: BackendRecord) -> StoreResult<BackendRecord> {
        let mut tx = self.write_tx().await?;
        let actual = stored_revision(
            &mut tx,
            "SELECT revision FROM backends WHERE id = ?",
            "backend",
            &backend.id,
        )
        .await?;
        check_revision("backend", &backend.id, backend.revision, actual)?;
        let name_taken = sqlx::query("SELECT 1 FROM backends WHERE name = ? AND id <> ?")
            .bind(&backend.name)
            .bind(&backend.id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if name_taken {
            return Err(already_exists("backend", backend.name));
        }
        sqlx::query(
            "UPDATE backends SET name = ?, backend_type = ?, base_url = ?, api_key = ?, \
             priority = ?, max_concurrency = ?, request_timeout_ms = ?, labels = ?, \
             revision = revision + 1, updated_at = ? WHERE id = ?",
        )
        .bind(&backend.name)
        .bind(&backend.backend_type)
        .bind(&backend.base_url)
        .bind(sealed::seal_api_key(
            &self.secrets,
            &backend.id,
            backend.api_key.as_deref(),
        ))
        .bind(backend.priority)
        .bind(backend.max_concurrency)
        .bind(backend.request_timeout_ms)
        .bind(to_json(&backend.labels, "backend labels")?)
        .bind(micros(now()))
        .bind(&backend.id)
        .execute(&mut *tx)
        .await
        .map_err(unique_as_already_exists("backend", &backend.name))?;
        let record = fetch_backend(&mut tx, &backend.id, &self.secrets).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn set_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE backends SET health = ?, models = ?, last_error = ?, last_sync_at = ?, \
             latency_ms = ? WHERE id = ?",
        )
        .bind(&state.health)
        .bind(to_json(&state.models, "backend models")?)
        .bind(&state.last_error)
        .bind(state.last_sync_at.map(micros))
        .bind(state.latency_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(not_found("backend", id));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_backend(&self, id: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let actual = stored_revision(
            &mut tx,
            "SELECT revision FROM backends WHERE id = ?",
            "backend",
            id,
        )
        .await?;
        if let Some(expected) = expected_revision {
            check_revision("backend", id, expected, actual)?;
        }
        // Pool memberships go with it (ON DELETE CASCADE).
        sqlx::query("DELETE FROM backends WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- pools ----

    async fn create_pool(
        &self,
        pool: PoolRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<PoolRecord>> {
        let mut tx = self.write_tx().await?;
        if let Some(prior) = prior_result(&mut tx, idempotency.as_ref()).await? {
            let record = fetch_pool(&mut tx, &prior.resource_key).await?;
            tx.commit().await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        if exists(&mut tx, "SELECT 1 FROM pools WHERE id = ?", &pool.id).await? {
            return Err(already_exists("pool", pool.id));
        }
        let record = PoolRecord {
            created_at: now(),
            ..pool
        };
        sqlx::query("INSERT INTO pools (id, description, purpose, created_at) VALUES (?, ?, ?, ?)")
            .bind(&record.id)
            .bind(&record.description)
            .bind(&record.purpose)
            .bind(micros(record.created_at))
            .execute(&mut *tx)
            .await
            .map_err(unique_as_already_exists("pool", &record.id))?;
        remember_result(&mut tx, idempotency.as_ref(), &record.id, None).await?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_pool(&self, id: &str) -> StoreResult<PoolRecord> {
        let mut conn = self.reader.acquire().await?;
        fetch_pool(&mut conn, id).await
    }

    async fn list_pools(&self, page: PageQuery) -> StoreResult<Page<PoolRecord>> {
        let (limit, fetch) = page_limits(&page);
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLUMNS} FROM pools p \
             WHERE (?1 IS NULL OR p.id > ?1) ORDER BY p.id LIMIT ?2"
        ))
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .iter()
            .map(pool_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |p| p.id.clone()))
    }

    async fn delete_pool(&self, id: &str) -> StoreResult<()> {
        if BUILTIN_POOLS.iter().any(|(builtin, _)| *builtin == id) {
            return Err(StoreError::FailedPrecondition(format!(
                "pool {id:?} is built in and cannot be deleted"
            )));
        }
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM pools WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(not_found("pool", id));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn assign_backend_to_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if !exists(&mut tx, "SELECT 1 FROM pools WHERE id = ?", pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        if !exists(&mut tx, "SELECT 1 FROM backends WHERE id = ?", backend_id).await? {
            return Err(not_found("backend", backend_id));
        }
        sqlx::query(
            "INSERT INTO pool_backends (pool_id, backend_id) VALUES (?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(pool_id)
        .bind(backend_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_backend_from_pool(&self, pool_id: &str, backend_id: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let removed = sqlx::query("DELETE FROM pool_backends WHERE pool_id = ? AND backend_id = ?")
            .bind(pool_id)
            .bind(backend_id)
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 {
            return Err(not_found(
                "pool membership",
                format!("{backend_id} in {pool_id}"),
            ));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_pool_backends(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<BackendRecord>> {
        let (limit, fetch) = page_limits(&page);
        let mut tx = self.read_tx().await?;
        if !exists(&mut tx, "SELECT 1 FROM pools WHERE id = ?", pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        let rows = sqlx::query(&format!(
            "SELECT {BACKEND_COLUMNS} FROM backends b \
             JOIN pool_backends pb ON pb.backend_id = b.id \
             WHERE pb.pool_id = ?1 AND (?2 IS NULL OR b.name > ?2) ORDER BY b.name LIMIT ?3"
        ))
        .bind(pool_id)
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(|row| backend_from_row(row, &self.secrets))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |b| b.name.clone()))
    }

    async fn list_backend_pools(
        &self,
        backend_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let (limit, fetch) = page_limits(&page);
        let mut tx = self.read_tx().await?;
        if !exists(&mut tx, "SELECT 1 FROM backends WHERE id = ?", backend_id).await? {
            return Err(not_found("backend", backend_id));
        }
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLUMNS} FROM pools p \
             JOIN pool_backends pb ON pb.pool_id = p.id \
             WHERE pb.backend_id = ?1 AND (?2 IS NULL OR p.id > ?2) ORDER BY p.id LIMIT ?3"
        ))
        .bind(backend_id)
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(pool_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |p| p.id.clone()))
    }

    async fn assign_model_to_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if !exists(&mut tx, "SELECT 1 FROM pools WHERE id = ?", pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        if !exists(&mut tx, "SELECT 1 FROM models WHERE name = ?", model_name).await? {
            return Err(not_found("model", model_name));
        }
        sqlx::query(
            "INSERT INTO pool_models (pool_id, model_name) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(pool_id)
        .bind(model_name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_model_from_pool(&self, pool_id: &str, model_name: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let removed = sqlx::query("DELETE FROM pool_models WHERE pool_id = ? AND model_name = ?")
            .bind(pool_id)
            .bind(model_name)
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 {
            return Err(not_found(
                "pool membership",
                format!("{model_name} in {pool_id}"),
            ));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_pool_models(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ModelRecord>> {
        let (limit, fetch) = page_limits(&page);
        let mut tx = self.read_tx().await?;
        if !exists(&mut tx, "SELECT 1 FROM pools WHERE id = ?", pool_id).await? {
            return Err(not_found("pool", pool_id));
        }
        let rows = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM models m \
             JOIN pool_models pm ON pm.model_name = m.name \
             WHERE pm.pool_id = ?1 AND (?2 IS NULL OR m.name > ?2) ORDER BY m.name LIMIT ?3"
        ))
        .bind(pool_id)
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(model_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |m| m.name.clone()))
    }

    async fn list_model_pools(
        &self,
        model_name: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>> {
        let (limit, fetch) = page_limits(&page);
        let mut tx = self.read_tx().await?;
        if !exists(&mut tx, "SELECT 1 FROM models WHERE name = ?", model_name).await? {
            return Err(not_found("model", model_name));
        }
        let rows = sqlx::query(&format!(
            "SELECT {POOL_COLUMNS} FROM pools p \
             JOIN pool_models pm ON pm.pool_id = p.id \
             WHERE pm.model_name = ?1 AND (?2 IS NULL OR p.id > ?2) ORDER BY p.id LIMIT ?3"
        ))
        .bind(model_name)
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(pool_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |p| p.id.clone()))
    }

    // ---- models ----

    async fn create_model(
        &self,
        model: ModelRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ModelRecord>> {
        let mut tx = self.write_tx().await?;
        if let Some(prior) = prior_result(&mut tx, idempotency.as_ref()).await? {
            let record = fetch_model(&mut tx, &prior.resource_key).await?;
            tx.commit().await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        if exists(&mut tx, "SELECT 1 FROM models WHERE name = ?", &model.name).await? {
            return Err(already_exists("model", model.name));
        }
        let record = ModelRecord {
            created_at: now(),
            ..model
        };
        sqlx::query(
            "INSERT INTO models (name, id, context_length, capabilities, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&record.name)
        .bind(&record.id)
        .bind(record.context_length)
        .bind(to_json(&record.capabilities, "model capabilities")?)
        .bind(micros(record.created_at))
        .execute(&mut *tx)
        .await
        .map_err(unique_as_already_exists("model", &record.name))?;
        remember_result(&mut tx, idempotency.as_ref(), &record.name, None).await?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_model(&self, name: &str) -> StoreResult<ModelRecord> {
        let mut conn = self.reader.acquire().await?;
        fetch_model(&mut conn, name).await
    }

    async fn list_models(&self, page: PageQuery) -> StoreResult<Page<ModelRecord>> {
        let (limit, fetch) = page_limits(&page);
        let rows = sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM models m \
             WHERE (?1 IS NULL OR m.name > ?1) ORDER BY m.name LIMIT ?2"
        ))
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .iter()
            .map(model_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |m| m.name.clone()))
    }

    async fn delete_model(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // Pool memberships go with it (ON DELETE CASCADE).
        let deleted = sqlx::query("DELETE FROM models WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(not_found("model", name));
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- hooks ----

    async fn create_hook(
        &self,
        hook: HookRecord,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<HookRecord>> {
        let mut tx = self.write_tx().await?;
        if let Some(prior) = prior_result(&mut tx, idempotency.as_ref()).await? {
            let record = fetch_hook(&mut tx, &prior.resource_key, &self.secrets).await?;
            tx.commit().await?;
            return Ok(Created {
                record,
                replayed: true,
            });
        }
        if exists(&mut tx, "SELECT 1 FROM hooks WHERE name = ?", &hook.name).await? {
            return Err(already_exists("hook", hook.name));
        }
        let created_at = now();
        let record = HookRecord {
            revision: 1,
            created_at,
            updated_at: created_at,
            ..hook
        };
        sqlx::query(
            "INSERT INTO hooks (name, description, url, method, timeout_ms, headers, \
             secret_headers, queue, revision, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&record.name)
        .bind(&record.description)
        .bind(&record.url)
        .bind(&record.method)
        .bind(record.timeout_ms)
        .bind(to_json(&record.headers, "hook headers")?)
        .bind(to_json(
            &sealed::seal_headers(&self.secrets, &record.name, &record.secret_headers)?,
            "hook secret headers",
        )?)
        .bind(&record.queue)
        .bind(record.revision)
        .bind(micros(record.created_at))
        .bind(micros(record.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(unique_as_already_exists("hook", &record.name))?;
        remember_result(&mut tx, idempotency.as_ref(), &record.name, None).await?;
        tx.commit().await?;
        Ok(Created {
            record,
            replayed: false,
        })
    }

    async fn get_hook(&self, name: &str) -> StoreResult<HookRecord> {
        let mut conn = self.reader.acquire().await?;
        fetch_hook(&mut conn, name, &self.secrets).await
    }

    async fn list_hooks(&self, page: PageQuery) -> StoreResult<Page<HookRecord>> {
        let (limit, fetch) = page_limits(&page);
        let rows = sqlx::query(&format!(
            "SELECT {HOOK_COLUMNS} FROM hooks h \
             WHERE (?1 IS NULL OR h.name > ?1) ORDER BY h.name LIMIT ?2"
        ))
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .iter()
            .map(|row| hook_from_row(row, &self.secrets))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |h| h.name.clone()))
    }

    async fn update_hook(&self, hook: HookRecord) -> StoreResult<HookRecord> {
        let mut tx = self.write_tx().await?;
        let actual = stored_revision(
            &mut tx,
            "SELECT revision FROM hooks WHERE name = ?",
            "hook",
            &hook.name,
        )
        .await?;
        check_revision("hook", &hook.name, hook.revision, actual)?;
        sqlx::query(
            "UPDATE hooks SET description = ?, url = ?, method = ?, timeout_ms = ?, \
             headers = ?, secret_headers = ?, queue = ?, revision = revision + 1, \
             updated_at = ? WHERE name = ?",
        )
        .bind(&hook.description)
        .bind(&hook.url)
        .bind(&hook.method)
        .bind(hook.timeout_ms)
        .bind(to_json(&hook.headers, "hook headers")?)
        .bind(to_json(
            &sealed::seal_headers(&self.secrets, &hook.name, &hook.secret_headers)?,
            "hook secret headers",
        )?)
        .bind(&hook.queue)
        .bind(micros(now()))
        .bind(&hook.name)
        .execute(&mut *tx)
        .await?;
        let record = fetch_hook(&mut tx, &hook.name, &self.secrets).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_hook(&self, name: &str, expected_revision: Option<i64>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let actual = stored_revision(
            &mut tx,
            "SELECT revision FROM hooks WHERE name = ?",
            "hook",
            name,
        )
        .await?;
        if let Some(expected) = expected_revision {
            check_revision("hook", name, expected, actual)?;
        }
        sqlx::query("DELETE FROM hooks WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- chains ----

    async fn create_chain(
        &self,
        id: &str,
        definition: Vec<u8>,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ChainRecord>> {
        let mut tx = self.write_tx().await?;
        if let Some(prior) = prior_result(&mut tx, idempotency.as_ref()).await? {
            let created = replayed_chain(&mut tx, prior).await?;
            tx.commit().await?;
            return Ok(created);
        }
        let created_at = now();
        let version = match chain_head(&mut tx, id).await? {
            Some((_, false)) => return Err(already_exists("chain", id)),
            // A deleted chain's id is reused: numbering continues so that a
            // run pinned to an old version never sees a different definition
            // under the same number. The chain itself is new, so is its
            // creation time.
            Some((latest, true)) => {
                let version = latest + 1;
                sqlx::query(
                    "UPDATE chain_heads SET latest_version = ?, created_at = ?, deleted = 0 \
                     WHERE id = ?",
                )
                .bind(version)
                .bind(micros(created_at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                version
            }
            None => {
                sqlx::query(
                    "INSERT INTO chain_heads (id, latest_version, created_at, deleted) \
                     VALUES (?, 1, ?, 0)",
                )
                .bind(id)
                .bind(micros(created_at))
                .execute(&mut *tx)
                .await
                .map_err(unique_as_already_exists("chain", id))?;
                1
            }
        };
        sqlx::query(
            "INSERT INTO chain_versions (id, version, definition, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(id)
        .bind(version)
        .bind(&definition)
        .bind(micros(created_at))
        .execute(&mut *tx)
        .await?;
        remember_result(&mut tx, idempotency.as_ref(), id, Some(version)).await?;
        tx.commit().await?;
        Ok(Created {
            record: ChainRecord {
                id: id.to_string(),
                version,
                definition,
                created_at,
                updated_at: created_at,
            },
            replayed: false,
        })
    }

    async fn get_chain(
        &self,
        id: &str,
        version: Option<i64>,
        include_deleted: bool,
    ) -> StoreResult<ChainRecord> {
        let mut conn = self.reader.acquire().await?;
        match fetch_chain(&mut conn, id, version).await? {
            (_, true) if !include_deleted => Err(not_found("chain", id)),
            (record, _) => Ok(record),
        }
    }

    async fn list_chains(&self, page: PageQuery) -> StoreResult<Page<ChainRecord>> {
        let (limit, fetch) = page_limits(&page);
        let rows = sqlx::query(&format!(
            "SELECT {CHAIN_COLUMNS} FROM chain_heads h \
             JOIN chain_versions v ON v.id = h.id AND v.version = h.latest_version \
             WHERE h.deleted = 0 AND (?1 IS NULL OR h.id > ?1) ORDER BY h.id LIMIT ?2"
        ))
        .bind(&page.after)
        .bind(fetch)
        .fetch_all(&self.reader)
        .await?;
        let items = rows
            .iter()
            .map(|row| chain_from_row(row).map(|(record, _)| record))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |c| c.id.clone()))
    }

    async fn list_chain_versions(
        &self,
        id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ChainRecord>> {
        let (limit, fetch) = page_limits(&page);
        let before_version = match page.after.as_deref() {
            None => None,
            Some(after) => Some(after.parse::<i64>().map_err(|_| {
                StoreError::FailedPrecondition(format!(
                    "page key {after:?} is not a chain version number"
                ))
            })?),
        };
        let mut tx = self.read_tx().await?;
        live_chain_version(&mut tx, id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {CHAIN_COLUMNS} FROM chain_heads h JOIN chain_versions v ON v.id = h.id \
             WHERE h.id = ?1 AND (?2 IS NULL OR v.version < ?2) \
             ORDER BY v.version DESC LIMIT ?3"
        ))
        .bind(id)
        .bind(before_version)
        .bind(fetch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let items = rows
            .iter()
            .map(|row| chain_from_row(row).map(|(record, _)| record))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::new(items, limit, |c| c.version.to_string()))
    }

    async fn update_chain(
        &self,
        id: &str,
        definition: Vec<u8>,
        expected_version: Option<i64>,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Created<ChainRecord>> {
        let mut tx = self.write_tx().await?;
        if let Some(prior) = prior_result(&mut tx, idempotency.as_ref()).await? {
            let created = replayed_chain(&mut tx, prior).await?;
            tx.commit().await?;
            return Ok(created);
        }
        let latest = live_chain_version(&mut tx, id).await?;
        if let Some(expected) = expected_version {
            check_revision("chain", id, expected, latest)?;
        }
        let version = latest + 1;
        let updated_at = now();
        let chain_created_at: i64 = sqlx::query_scalar(
            "UPDATE chain_heads SET latest_version = ? WHERE id = ? RETURNING created_at",
        )
        .bind(version)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO chain_versions (id, version, definition, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(id)
        .bind(version)
        .bind(&definition)
        .bind(micros(updated_at))
        .execute(&mut *tx)
        .await?;
        remember_result(&mut tx, idempotency.as_ref(), id, Some(version)).await?;
        tx.commit().await?;
        Ok(Created {
            record: ChainRecord {
                id: id.to_string(),
                version,
                definition,
                created_at: from_micros(chain_created_at)?,
                updated_at,
            },
            replayed: false,
        })
    }

    async fn delete_chain(&self, id: &str, expected_version: Option<i64>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let latest = live_chain_version(&mut tx, id).await?;
        if let Some(expected) = expected_version {
            check_revision("chain", id, expected, latest)?;
        }
        sqlx::query("UPDATE chain_heads SET deleted = 1 WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
