//! The control plane's records and the store traits that keep them, one
//! per resource. Backends, pools, models and hooks are implemented once, in
//! `resource.rs`, over each backend's `resources.rs`; chains in each
//! backend's `chains.rs`. Every write takes the [`AuditRecord`] of the
//! call that makes it and stores it in the write's transaction (a replayed
//! request id writes neither).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AuditRecord, Created, IdempotencyKey, Page, PageQuery, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct BackendRecord {
    pub id: String,
    /// Unique.
    pub name: String,
    /// `ollama`, `openai`, `openai_compatible`, `gemini` or `anthropic`.
    pub backend_type: String,
    pub base_url: String,
    /// Secret: never returned by the API, never logged.
    pub api_key: Option<String>,
    pub priority: i32,
    /// The backend's own limits (0 = unlimited).
    pub max_concurrency: i32,
    pub requests_per_minute: i32,
    pub tokens_per_minute: i64,
    /// Limits of single models on this backend, by model name.
    pub model_limits: BTreeMap<String, Limits>,
    /// Streamed calls never send `stream_options` (servers that reject it).
    pub omit_stream_options: bool,
    /// 0 means the default.
    pub request_timeout_ms: i64,
    pub labels: BTreeMap<String, String>,
    pub state: BackendState,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Limits on calls, across replicas; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub max_concurrency: i32,
    #[serde(default)]
    pub requests_per_minute: i32,
    #[serde(default)]
    pub tokens_per_minute: i64,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.max_concurrency <= 0 && self.requests_per_minute <= 0 && self.tokens_per_minute <= 0
    }
}

/// What the reconciler last observed of a backend. Updating it does not bump
/// the backend's revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendState {
    /// `""` (never synced), `healthy` or `unhealthy`.
    pub health: String,
    /// The names of `observed_models`.
    pub models: Vec<String>,
    pub observed_models: Vec<ObservedModel>,
    /// When the model list was fetched from the provider.
    pub models_at: Option<DateTime<Utc>>,
    pub last_error: String,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub latency_ms: Option<i64>,
}

/// A model a backend reported serving, with what the provider said of it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ObservedModel {
    pub name: String,
    /// 0 when the provider does not say.
    #[serde(default)]
    pub context_length: i32,
    /// `chat`, `prompt`, `embed`, `stream`; empty when the provider does
    /// not say.
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub size_bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolRecord {
    pub id: String,
    pub description: String,
    pub purpose: String,
    /// `round_robin`, `least_loaded`, `random`, `priority`, or `""` for the
    /// server's default.
    pub policy: String,
    /// Tasks may use models the pool's backends report without a
    /// declaration.
    pub discover_models: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelRecord {
    pub id: String,
    /// Unique; the key.
    pub name: String,
    pub context_length: i32,
    /// Sorted, distinct: `chat`, `prompt`, `embed`, `stream`.
    pub capabilities: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HookRecord {
    pub namespace: String,
    /// Unique in its namespace.
    pub name: String,
    pub description: String,
    pub url: String,
    pub method: String,
    pub timeout_ms: i64,
    pub headers: BTreeMap<String, String>,
    /// Secret: never returned by the API, never logged.
    pub secret_headers: BTreeMap<String, String>,
    pub queue: String,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One immutable version of a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRecord {
    pub id: String,
    /// From 1; also the chain's revision.
    pub version: i64,
    /// The definition as the encoded `taskloom.v1.Chain` message.
    pub definition: Vec<u8>,
    /// When the chain was first created.
    pub created_at: DateTime<Utc>,
    /// When this version was created.
    pub updated_at: DateTime<Utc>,
}

/// Backends: keyed by `id`, listed by `name` (the page key).
#[async_trait]
pub trait BackendStore: Send + Sync {
    /// `AlreadyExists` when the id or the name is taken.
    async fn create_backend(
        &self,
        backend: BackendRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<BackendRecord>>;
    async fn get_backend(&self, id: &str) -> StoreResult<BackendRecord>;
    async fn list_backends(&self, page: PageQuery) -> StoreResult<Page<BackendRecord>>;
    /// Replaces the writable fields of `backend.id` if its stored revision is
    /// still `backend.revision`; returns the stored record with the bumped
    /// revision and `updated_at`. `AlreadyExists` if the new name is taken.
    async fn update_backend(
        &self,
        backend: BackendRecord,
        audit: &AuditRecord,
    ) -> StoreResult<BackendRecord>;
    /// Records reconciler observations; does not bump the revision.
    async fn set_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()>;
    /// Deletes the backend and its pool memberships.
    async fn delete_backend(
        &self,
        id: &str,
        expected_revision: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
}

/// Pools, keyed and listed by `id`, and their members.
#[async_trait]
pub trait PoolStore: Send + Sync {
    async fn create_pool(
        &self,
        pool: PoolRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<PoolRecord>>;
    async fn get_pool(&self, id: &str) -> StoreResult<PoolRecord>;
    async fn list_pools(&self, page: PageQuery) -> StoreResult<Page<PoolRecord>>;
    /// `FailedPrecondition` for the built-in pools.
    async fn delete_pool(&self, id: &str, audit: &AuditRecord) -> StoreResult<()>;
    /// Idempotent. `NotFound` if the pool or the backend does not exist.
    async fn assign_backend_to_pool(
        &self,
        pool_id: &str,
        backend_id: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// `NotFound` if the backend was not a member.
    async fn remove_backend_from_pool(
        &self,
        pool_id: &str,
        backend_id: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// `NotFound` if the pool does not exist. Ordered by backend name.
    async fn list_pool_backends(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<BackendRecord>>;
    /// `NotFound` if the backend does not exist. Ordered by pool id.
    async fn list_backend_pools(
        &self,
        backend_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>>;
    /// Idempotent. `NotFound` if the pool or the model does not exist.
    async fn assign_model_to_pool(
        &self,
        pool_id: &str,
        model_name: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// `NotFound` if the model was not a member.
    async fn remove_model_from_pool(
        &self,
        pool_id: &str,
        model_name: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// `NotFound` if the pool does not exist. Ordered by model name.
    async fn list_pool_models(
        &self,
        pool_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ModelRecord>>;
    /// `NotFound` if the model does not exist. Ordered by pool id.
    async fn list_model_pools(
        &self,
        model_name: &str,
        page: PageQuery,
    ) -> StoreResult<Page<PoolRecord>>;
}

/// Models, keyed and listed by `name`.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// `AlreadyExists` when the name is taken.
    async fn create_model(
        &self,
        model: ModelRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<ModelRecord>>;
    async fn get_model(&self, name: &str) -> StoreResult<ModelRecord>;
    async fn list_models(&self, page: PageQuery) -> StoreResult<Page<ModelRecord>>;
    /// Deletes the model and its pool memberships.
    async fn delete_model(&self, name: &str, audit: &AuditRecord) -> StoreResult<()>;
}

/// Hooks of a namespace, keyed and listed by `name`.
#[async_trait]
pub trait HookStore: Send + Sync {
    /// `AlreadyExists` when the name is taken.
    async fn create_hook(
        &self,
        hook: HookRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<HookRecord>>;
    async fn get_hook(&self, namespace: &str, name: &str) -> StoreResult<HookRecord>;
    async fn list_hooks(&self, namespace: &str, page: PageQuery) -> StoreResult<Page<HookRecord>>;
    /// As `update_backend`, keyed by `hook.namespace` and `hook.name`.
    async fn update_hook(&self, hook: HookRecord, audit: &AuditRecord) -> StoreResult<HookRecord>;
    async fn delete_hook(
        &self,
        namespace: &str,
        name: &str,
        expected_revision: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
}

/// Chains of a namespace, keyed and listed by `id`; versions newest first (the page key is the version number).
#[async_trait]
pub trait ChainStore: Send + Sync {
    /// Creates version 1 of a new chain (`chain.version` and timestamps are
    /// set by the store). `AlreadyExists` if a chain with this id exists and
    /// is not deleted; a deleted chain's id can be reused and continues its
    /// version numbering.
    async fn create_chain(
        &self,
        namespace: &str,
        id: &str,
        definition: Vec<u8>,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<ChainRecord>>;
    /// The latest version of a live chain, or the given version. A deleted
    /// chain is `NotFound` unless `include_deleted` (runs read the versions
    /// they pinned).
    async fn get_chain(
        &self,
        namespace: &str,
        id: &str,
        version: Option<i64>,
        include_deleted: bool,
    ) -> StoreResult<ChainRecord>;
    /// Latest versions of live chains, ordered by id.
    async fn list_chains(&self, namespace: &str, page: PageQuery)
    -> StoreResult<Page<ChainRecord>>;
    /// Versions of a live chain, newest first. `NotFound` if the chain does
    /// not exist or is deleted.
    async fn list_chain_versions(
        &self,
        namespace: &str,
        id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<ChainRecord>>;
    /// Appends the next version. With `expected_version`, `Conflict` unless
    /// it is still the latest. `NotFound` for missing or deleted chains.
    async fn update_chain(
        &self,
        namespace: &str,
        id: &str,
        definition: Vec<u8>,
        expected_version: Option<i64>,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<ChainRecord>>;
    /// Marks a chain deleted; its versions stay readable with
    /// `include_deleted`.
    async fn delete_chain(
        &self,
        namespace: &str,
        id: &str,
        expected_version: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
}
