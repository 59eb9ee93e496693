//! Namespaces (docs/security.md). Their rows change the key revision
//! ([`super::KeyStore::api_key_revision`]) too, so every replica's cache of
//! keys and namespaces reloads both.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::StoredRow;
use super::{AuditRecord, RunStatus, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub name: String,
    pub description: String,
    /// The pools its LLM tasks may use; empty for every pool.
    pub pools: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

#[async_trait]
pub trait NamespaceStore: Send + Sync {
    /// Inserts `namespace` (its time truncated to microseconds) with
    /// `audit`. `AlreadyExists` if the name is taken, `NotFound` for a pool
    /// that does not exist.
    async fn create_namespace(
        &self,
        namespace: &NamespaceRecord,
        audit: &AuditRecord,
    ) -> StoreResult<NamespaceRecord>;
    /// Every namespace, by name.
    async fn list_namespaces(&self) -> StoreResult<Vec<NamespaceRecord>>;
    /// `NotFound` if there is none.
    async fn get_namespace(&self, name: &str) -> StoreResult<NamespaceRecord>;
    /// Replaces the description and pools. `NotFound` for the namespace or
    /// a pool.
    async fn update_namespace(
        &self,
        name: &str,
        (description, pools): (&str, &[String]),
        audit: &AuditRecord,
    ) -> StoreResult<NamespaceRecord>;
    /// Deletes the namespace with its hooks, runs, paused queues and
    /// idempotency keys, marks its chains deleted (as `delete_chain` does:
    /// a chain made again continues its version numbers), and revokes the
    /// keys bound to it at `at`, in one transaction; returns how many runs
    /// went. `FailedPrecondition` while
    /// it holds a run that has not finished, `NotFound` if there is none.
    async fn delete_namespace(
        &self,
        name: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<u64>;
}

/// The columns of a namespace row, in the order both backends select them.
pub(super) const NAMESPACE_COLUMNS: &str = "name, description, pools, created_at, created_by";

pub(super) fn namespace_from_row(row: &impl StoredRow) -> StoreResult<NamespaceRecord> {
    Ok(NamespaceRecord {
        name: row.text("name")?,
        description: row.text("description")?,
        pools: row.strings("pools", "namespace pools")?,
        created_at: row.time("created_at")?,
        created_by: row.text("created_by")?,
    })
}

/// The statuses of runs that have not finished, as stored.
pub(super) fn unfinished_statuses() -> Vec<&'static str> {
    RunStatus::ALL
        .into_iter()
        .filter(|status| !status.is_terminal())
        .map(RunStatus::as_str)
        .collect()
}

/// The `FailedPrecondition` of a delete refused for `unfinished` runs.
pub(super) fn holds_unfinished_runs(name: &str, unfinished: i64) -> StoreError {
    StoreError::FailedPrecondition(format!(
        "namespace {name:?} holds {unfinished} run(s) that have not finished: \
         cancel them or wait for them to end"
    ))
}
