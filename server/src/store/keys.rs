//! API keys kept in the store (docs/security.md): records with the
//! SHA-256 digest of each secret, never the secret. Every replica caches
//! them all (`api::auth`) and reloads when [`KeyStore::api_key_revision`]
//! moves, so a key check reads no row.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::{StoredRow, from_json};
use super::{AuditRecord, StoreResult};

/// One key. `role` is `admin`, `operator`, `worker` or `viewer` (the API
/// layer checks it); `namespace` `None` is every namespace; `queues` empty
/// is every queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub namespace: Option<String>,
    pub queues: Vec<String>,
    /// The first 8 characters of the secret.
    pub prefix: String,
    /// SHA-256 of the secret.
    pub secret_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts `key` (its times as given, truncated to microseconds) with
    /// `audit` in one transaction and bumps the key revision.
    /// `AlreadyExists` when its id or digest is taken.
    async fn create_api_key(&self, key: &ApiKeyRecord, audit: &AuditRecord) -> StoreResult<()>;
    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// The key whose secret has this digest.
    async fn find_api_key(&self, secret_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>>;
    /// Marks the key revoked at `at` (a revoked key keeps its first
    /// revocation time) with `audit`, and bumps the key revision.
    /// `NotFound` for an unknown id.
    async fn revoke_api_key(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> StoreResult<ApiKeyRecord>;
    /// A number that changes whenever a key is created or revoked: one
    /// row, read by every replica a few times a second.
    async fn api_key_revision(&self) -> StoreResult<i64>;
    /// Records when keys were last used (batched by the caller; unknown ids
    /// are skipped). Does not move the revision.
    async fn touch_api_keys(&self, used: &[(String, DateTime<Utc>)]) -> StoreResult<()>;
}

/// The columns of a key row, in the order both backends select them.
pub(super) const KEY_COLUMNS: &str = "id, name, role, namespace, queues, prefix, secret_hash, \
     created_at, created_by, last_used_at, expires_at, revoked_at";

pub(super) fn key_from_row(row: &impl StoredRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        role: row.text("role")?,
        namespace: row.optional_text("namespace")?,
        queues: from_json(&row.text("queues")?, "api key queues")?,
        prefix: row.text("prefix")?,
        secret_hash: row.bytes("secret_hash")?,
        created_at: row.time("created_at")?,
        created_by: row.text("created_by")?,
        last_used_at: row.optional_time("last_used_at")?,
        expires_at: row.optional_time("expires_at")?,
        revoked_at: row.optional_time("revoked_at")?,
    })
}
