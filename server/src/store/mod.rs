//! Persistence. The only module with SQL: a [`Store`] trait with a SQLite
//! implementation (embedded default, one process) and a Postgres
//! implementation (many replicas). Both pass the same conformance suite
//! (`server/tests/store_conformance.rs`).
//!
//! Records here are storage shapes, not API messages: the API layer converts.
//! Every method is one transaction. Mutable records carry a `revision` that
//! the store bumps on every change; updates and deletes that name an expected
//! revision fail with [`StoreError::Conflict`] when it no longer matches
//! (optimistic concurrency; the API exposes it as an etag).

mod audit;
mod codec;
mod control;
mod fleet;
mod keys;
mod limits;
mod namespaces;
mod operations;
mod postgres;
mod resource;
mod retention;
mod runs;
mod sealed;
mod sessions;
mod signals;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::secrets::SecretBox;

pub use audit::{AuditFilter, AuditRecord, AuditStore};
pub use control::{
    BackendRecord, BackendState, BackendStore, ChainRecord, ChainStore, HookRecord, HookStore,
    Limits, ModelRecord, ModelStore, ObservedModel, PoolRecord, PoolStore,
};
pub use fleet::FleetStore;
pub use keys::{ApiKeyRecord, KeyStore};
pub use limits::{
    AdmitOutcome, COUNTED_WINDOW, Judge, LIMIT_WINDOW, LimitScope, LimitStore, NewCall, ScopeUsage,
    Throttle,
};
pub use namespaces::{NamespaceRecord, NamespaceStore};
pub use operations::{
    HeldLease, OperationsStore, QueuePause, QueueRecord, ReplicaRecord, ReplicaState,
};
pub use postgres::PostgresStore;
pub use retention::{DeleteCheck, RetentionStore, RunDeletion};
pub use runs::{
    AttemptRecord, AttemptStatus, ChainCheck, ClaimFn, ClaimPolicy, Claimed, CreatedRun, Decision,
    DueAttempt, EventRecord, NewRun, Plan, Rejection, RejectionKind, RunFailure, RunFilter,
    RunRecord, RunSnapshot, RunStatus, RunStore, TransitionOutcome, Verdict,
};
pub use sessions::{SessionStore, WorkerSessionRecord};
pub use signals::{Announcement, Delta, DeltaBatch, Signal, Signals};
pub use sqlite::SqliteStore;

/// Pools every install has; they cannot be deleted.
pub const BUILTIN_POOLS: [(&str, &str); 3] = [
    ("internal_tasks_pool", "tasks"),
    ("internal_embed_pool", "embed"),
    ("internal_chat_pool", "chat"),
];

/// The description a built-in pool is created with.
pub(crate) fn builtin_pool_description(purpose: &str) -> String {
    match purpose {
        "chat" => "Built-in pool for chat models (model_execution tasks)".to_string(),
        "embed" => "Built-in pool for embedding models (embedding tasks)".to_string(),
        _ => "Built-in pool for prompt tasks (raw_string, condition_key, parse_*)".to_string(),
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{resource} {id:?} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("{resource} {id:?} already exists")]
    AlreadyExists { resource: &'static str, id: String },
    /// The expected revision (etag) no longer matches.
    #[error(
        "{resource} {id:?} was modified concurrently (expected revision {expected}, found {actual})"
    )]
    Conflict {
        resource: &'static str,
        id: String,
        expected: i64,
        actual: i64,
    },
    /// The request id was used before with a different payload.
    #[error("request_id {request_id:?} was already used with a different request")]
    IdempotencyMismatch { request_id: String },
    /// The operation is not allowed in the record's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A run's [`ChainCheck`] failed: its chain was deleted or has a newer
    /// version than the one the run was built from.
    #[error("chain {chain_id:?} changed while the run was being started")]
    ChainChanged { chain_id: String },
    /// The database cannot be reached or cannot serve now (connection
    /// refused or lost, pool exhausted, PostgreSQL shutting down or
    /// starting up, SQLite file locked or unreadable). Retry later; a write
    /// whose connection was lost at commit may have been applied, so retry
    /// with the same request id.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// `53100`); reads still work. Usually nothing was written, but SQLite
    /// also reports a failed checkpoint after a commit this way, so retry
    /// with the same request id.
    #[error("the database's storage is full: {0}")]
    StorageFull(String),
    /// Any other database error: a fault of this server.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// The store itself failed ([`StoreError::Unavailable`] or
    /// [`StoreError::StorageFull`]): the same call may succeed once it
    /// recovers.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::StorageFull(_)
        )
    }

    /// A copy of a store fault, for every caller of a batch it failed.
    pub fn fault_copy(&self) -> Option<StoreError> {
        match self {
            StoreError::Unavailable(cause) => Some(StoreError::Unavailable(cause.clone())),
            StoreError::StorageFull(cause) => Some(StoreError::StorageFull(cause.clone())),
            _ => None,
        }
    }
}

/// Every database error becomes a `StoreError` here, classified once: the
/// store's own faults are told apart from faults of this server.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        let classified = match fault_of(&error) {
            Some(Fault::Full) => StoreError::StorageFull(error.to_string()),
            Some(Fault::Unavailable) => StoreError::Unavailable(error.to_string()),
            None => StoreError::Database(error),
        };
        if classified.is_fault() {
            FAULTS.send_modify(|count| *count += 1);
        }
        crate::metrics::store_error(error_kind(&classified));
        classified
    }
}

enum Fault {
    Unavailable,
    Full,
}

/// The kind of a database error, as `taskloom_store_errors_total` counts
/// it: a store fault, a collision the PostgreSQL store retries (deadlock,
/// serialization failure, `NOWAIT` lock), an integrity violation (mostly a
/// duplicate the caller is told about), or anything else.
fn error_kind(error: &StoreError) -> &'static str {
    const SQLITE_CONSTRAINT: i32 = 19;
    match error {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::StorageFull(_) => "storage_full",
        StoreError::Database(sqlx::Error::Database(db)) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                match code.parse::<i32>() {
                    Ok(code) if code & 0xff == SQLITE_CONSTRAINT => "constraint",
                    _ => "database",
                }
            } else if matches!(code, "40P01" | "40001" | "55P03") {
                "conflict"
            } else if code.starts_with("23") {
                "constraint"
            } else {
                "database"
            }
        }
        _ => "database",
    }
}

fn fault_of(error: &sqlx::Error) -> Option<Fault> {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Fault::Unavailable),
        sqlx::Error::Database(db) => {
            let code = db.code();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                sqlite_fault(code.as_deref())
            } else {
                postgres_fault(code.as_deref())
            }
        }
        _ => None,
    }
}

/// SQLite result codes (reported extended; the primary code is the low
/// byte): https://sqlite.org/rescode.html
fn sqlite_fault(code: Option<&str>) -> Option<Fault> {
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    const PROTOCOL: i32 = 15;
    match code?.parse::<i32>().ok()? & 0xff {
        FULL => Some(Fault::Full),
        BUSY | LOCKED | NOMEM | READONLY | IOERR | CANTOPEN | PROTOCOL => Some(Fault::Unavailable),
        _ => None,
    }
}

/// PostgreSQL SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
fn postgres_fault(code: Option<&str>) -> Option<Fault> {
    let code = code?;
    match code {
        // disk_full
        "53100" => Some(Fault::Full),
        // admin_shutdown, crash_shutdown, cannot_connect_now (starting up,
        // shutting down, in recovery), too_many_connections,
        // read_only_sql_transaction (a standby), out_of_memory,
        // insufficient_resources
        "57P01" | "57P02" | "57P03" | "53300" | "25006" | "53200" | "53000" => {
            Some(Fault::Unavailable)
        }
        // connection_exception, system_error (I/O)
        _ if code.starts_with("08") || code.starts_with("58") => Some(Fault::Unavailable),
        _ => None,
    }
}

/// Counts the store faults (`Unavailable`, `StorageFull`) this process has
/// met. The count is a hint for the health monitor, which confirms it with
/// [`Store::probe`]; it is process-wide because errors are classified where
/// they are converted, without a store at hand.
static FAULTS: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// Changes whenever a store fault is met.
pub fn fault_hints() -> tokio::sync::watch::Receiver<u64> {
    FAULTS.subscribe()
}

/// Calls `call` again, with growing pauses (at most a second apart), while
/// its error is a store fault (`is_fault`): an outage delays the work that
/// needs the store instead of failing it. The caller bounds the wait (a
/// task's timeout, a lease it stops renewing).
pub async fn through_faults<T, E, F, Fut>(
    is_fault: impl Fn(&E) -> bool,
    mut call: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        match call().await {
            Err(error) if is_fault(&error) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            done => return done,
        }
    }
}

/// Keyset pagination: items strictly after `after` in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    /// Maximum items to return; at least 1.
    pub limit: u32,
    /// Key of the last item of the previous page.
    pub after: Option<String>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Key to pass as `PageQuery::after` for the next page; `None` on the
    /// last page.
    pub next_after: Option<String>,
    /// Each item's key, in order.
    pub keys: Vec<String>,
}

impl<T> Page<T> {
    /// A page of `items` with their keys, `limit` at most: fetched with one
    /// extra row, which says whether another page follows.
    pub fn new(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
        let more = items.len() > limit;
        items.truncate(limit);
        let keys: Vec<String> = items.iter().map(key).collect();
        Page {
            next_after: more.then(|| keys.last().cloned()).flatten(),
            items,
            keys,
        }
    }

    /// The same page, each item turned into another (its key unchanged).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_after: self.next_after,
            keys: self.keys,
        }
    }
}

/// An idempotency key (AIP-155) reserved in the same transaction as the
/// creation it guards, so concurrent duplicates cannot both execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The operation, e.g. `CreateBackend`.
    pub scope: String,
    /// The caller's request id.
    pub request_id: String,
    /// Hash of the request payload; a reuse with another hash is rejected.
    pub request_hash: String,
}

/// The result of a create: either new, or the original resource returned for
/// a repeated request id.
#[derive(Debug, Clone, PartialEq)]
pub struct Created<T> {
    pub record: T,
    /// True when the request id had been seen and nothing was written.
    pub replayed: bool,
}

/// The storage layer. Implementations must be safe to share across tasks.
///
/// Each resource is kept by its own trait (see `control.rs`).
#[async_trait]
pub trait Store:
    RunStore
    + SessionStore
    + Signals
    + BackendStore
    + PoolStore
    + ModelStore
    + HookStore
    + ChainStore
    + LimitStore
    + FleetStore
    + RetentionStore
    + AuditStore
    + OperationsStore
    + KeyStore
    + NamespaceStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// Applies pending migrations and seeds the built-in pools. Idempotent.
    async fn migrate(&self) -> StoreResult<()>;

    /// Commits a small write (the one row of `store_probe`) to learn
    /// whether the store can write; the health monitor calls it while the
    /// store is failing.
    async fn probe(&self) -> StoreResult<()>;
    /// Encrypts the secrets that versions before encryption at rest stored
    /// in plain text, and checks that every stored secret opens with this
    /// store's key (`Corrupt`, naming the key, when one does not). Returns
    /// how many were encrypted. Idempotent; safe while other replicas run.
    async fn seal_stored_secrets(&self) -> StoreResult<usize>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store a database URL names: `postgres://…`/`postgresql://…`,
/// or `sqlite://PATH` / a plain file path for SQLite (created if missing).
/// Secrets are sealed with `secrets`.
pub async fn open(database_url: &str, secrets: SecretBox) -> StoreResult<DynStore> {
    match sqlite_path(database_url) {
        None => Ok(Arc::new(
            PostgresStore::connect(database_url, secrets).await?,
        )),
        Some(path) => Ok(Arc::new(SqliteStore::open(path, secrets).await?)),
    }
}

/// The SQLite file a database URL names; `None` for PostgreSQL.
pub fn sqlite_path(database_url: &str) -> Option<&str> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return None;
    }
    Some(
        database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
            .unwrap_or(database_url),
    )
}
