//! The resources of the control plane that both backends keep with one
//! create/get/list/update/delete shape (backends, pools, models, hooks),
//! each described once: its table, its columns, how a row decodes and what
//! a record writes. Each backend builds its statements from the description
//! ([`Resources`], in `sqlite/resources.rs` and `postgres/resources.rs`);
//! the store traits of these resources are implemented here, once, on it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::{
    StoredRow, backend_from_row, hook_from_row, model_from_row, pool_from_row, truncate_to_micros,
};
use super::{
    AuditRecord, BackendRecord, BackendState, BackendStore, Created, HookRecord, HookStore,
    IdempotencyKey, ModelRecord, ModelStore, Page, PageQuery, PoolRecord, PoolStore, StoreError,
    StoreResult, sealed,
};
use crate::secrets::SecretBox;

/// A value a record writes to a column; each backend binds it its own way
/// (times as microseconds or TIMESTAMPTZ, JSON as text or JSONB, lists as
/// JSON text or TEXT[]).
pub(super) enum Value {
    Text(String),
    OptionalText(Option<String>),
    Int(i64),
    OptionalInt(Option<i64>),
    Int32(i32),
    Time(DateTime<Utc>),
    OptionalTime(Option<DateTime<Utc>>),
    Json(serde_json::Value),
    Strings(Vec<String>),
}

impl Value {
    /// The text of a text value (the keys of a record are text).
    pub(super) fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }
}

fn json(value: &impl serde::Serialize, what: &str) -> StoreResult<Value> {
    serde_json::to_value(value)
        .map(Value::Json)
        .map_err(|e| StoreError::Corrupt(format!("encode {what}: {e}")))
}

/// How a resource is kept: one row of `TABLE` per record.
pub(super) trait Resource: Sized + Send + Sync + 'static {
    /// What errors call it (`"backend"`).
    const NAME: &'static str;
    const TABLE: &'static str;
    /// The alias its statements give the table.
    const ALIAS: &'static str;
    /// Every column, in the order of [`Resource::values`].
    const COLUMNS: &'static [&'static str];
    /// The column that keys it.
    const KEY: &'static str;
    /// The column naming the namespace it belongs to; `None` for shared
    /// resources. Lists are of one namespace; the key includes it.
    const NAMESPACE: Option<&'static str> = None;
    /// The column its pages follow.
    const ORDER: &'static str;
    /// Columns besides the key that must be free for a create or update.
    const UNIQUE: &'static [&'static str] = &[];
    /// The columns an update replaces (it also bumps `revision` and sets
    /// `updated_at`); empty for a resource without updates.
    const UPDATED: &'static [&'static str] = &[];

    fn decode(row: &impl StoredRow, secrets: &SecretBox) -> StoreResult<Self>;
    fn key(&self) -> String;
    fn page_key(&self) -> String;
    /// The record as a creation at `now` stores it.
    fn created(self, now: DateTime<Utc>) -> Self;
    /// The value of each of [`Resource::COLUMNS`], secrets sealed.
    fn values(&self, secrets: &SecretBox) -> StoreResult<Vec<Value>>;
}

/// The columns of `R` selected from its alias: `b.id, b.name, ...`.
pub(super) fn select_list<R: Resource>() -> String {
    let alias = R::ALIAS;
    let columns: Vec<String> = R::COLUMNS.iter().map(|c| format!("{alias}.{c}")).collect();
    columns.join(", ")
}

/// `<alias>.<column>` of `R`.
pub(super) fn qualified<R: Resource>(column: &str) -> String {
    format!("{}.{column}", R::ALIAS)
}

/// `SELECT <every column> FROM <table> <alias> WHERE <condition>`.
pub(super) fn select_where<R: Resource>(condition: &str) -> String {
    let (list, table, alias) = (select_list::<R>(), R::TABLE, R::ALIAS);
    format!("SELECT {list} FROM {table} {alias} WHERE {condition}")
}

/// The key of hook `name` of `namespace`: its generated `hook_key` column.
fn hook_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The built-in pools, as migrating seeds them at `now`.
pub(super) fn builtin_pools(now: DateTime<Utc>) -> impl Iterator<Item = PoolRecord> {
    super::BUILTIN_POOLS
        .iter()
        .map(move |(id, purpose)| PoolRecord {
            id: id.to_string(),
            description: super::builtin_pool_description(purpose),
            purpose: purpose.to_string(),
            policy: String::new(),
            discover_models: false,
            created_at: now,
        })
}

/// The columns `R`'s update replaces, with the values `record` writes.
pub(super) fn updated_values<R: Resource>(
    record: &R,
    secrets: &SecretBox,
) -> StoreResult<Vec<(&'static str, Value)>> {
    let values = record.values(secrets)?;
    Ok(R::COLUMNS
        .iter()
        .copied()
        .zip(values)
        .filter(|(column, _)| R::UPDATED.contains(column))
        .collect())
}

/// The value `record` writes to `column`, when it is text.
pub(super) fn text_of<R: Resource>(
    record: &R,
    secrets: &SecretBox,
    column: &str,
) -> Option<String> {
    let index = R::COLUMNS.iter().position(|c| *c == column)?;
    let values = record.values(secrets).ok()?;
    values.get(index)?.as_text().map(str::to_string)
}

/// The key an `AlreadyExists` for `record` names: the first of
/// [`Resource::UNIQUE`] (the key itself only clashes on create, where each
/// backend names it).
pub(super) fn taken_key<R: Resource>(record: &R, secrets: &SecretBox) -> String {
    R::UNIQUE
        .first()
        .and_then(|column| text_of(record, secrets, column))
        .unwrap_or_else(|| record.key())
}

impl Resource for BackendRecord {
    const NAME: &'static str = "backend";
    const TABLE: &'static str = "backends";
    const ALIAS: &'static str = "b";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "name",
        "backend_type",
        "base_url",
        "api_key",
        "priority",
        "max_concurrency",
        "requests_per_minute",
        "tokens_per_minute",
        "model_limits",
        "omit_stream_options",
        "request_timeout_ms",
        "labels",
        "health",
        "models",
        "observed_models",
        "models_at",
        "last_error",
        "last_sync_at",
        "latency_ms",
        "revision",
        "created_at",
        "updated_at",
    ];
    const KEY: &'static str = "id";
    const ORDER: &'static str = "name";
    const UNIQUE: &'static [&'static str] = &["name"];
    const UPDATED: &'static [&'static str] = &[
        "name",
        "backend_type",
        "base_url",
        "api_key",
        "priority",
        "max_concurrency",
        "requests_per_minute",
        "tokens_per_minute",
        "model_limits",
        "omit_stream_options",
        "request_timeout_ms",
        "labels",
    ];

    fn decode(row: &impl StoredRow, secrets: &SecretBox) -> StoreResult<Self> {
        backend_from_row(row, secrets)
    }
    fn key(&self) -> String {
        self.id.clone()
    }
    fn page_key(&self) -> String {
        self.name.clone()
    }
    fn created(mut self, now: DateTime<Utc>) -> Self {
        self.revision = 1;
        self.created_at = now;
        self.updated_at = now;
        self.state.last_sync_at = self.state.last_sync_at.map(truncate_to_micros);
        self.state.models_at = self.state.models_at.map(truncate_to_micros);
        self
    }
    fn values(&self, secrets: &SecretBox) -> StoreResult<Vec<Value>> {
        let api_key = sealed::seal_api_key(secrets, &self.id, self.api_key.as_deref());
        Ok(vec![
            Value::Text(self.id.clone()),
            Value::Text(self.name.clone()),
            Value::Text(self.backend_type.clone()),
            Value::Text(self.base_url.clone()),
            Value::OptionalText(api_key),
            Value::Int32(self.priority),
            Value::Int32(self.max_concurrency),
            Value::Int32(self.requests_per_minute),
            Value::Int(self.tokens_per_minute),
            json(&self.model_limits, "backend model limits")?,
            Value::Int32(i32::from(self.omit_stream_options)),
            Value::Int(self.request_timeout_ms),
            json(&self.labels, "backend labels")?,
            Value::Text(self.state.health.clone()),
            Value::Strings(self.state.models.clone()),
            json(&self.state.observed_models, "backend observed models")?,
            Value::OptionalTime(self.state.models_at),
            Value::Text(self.state.last_error.clone()),
            Value::OptionalTime(self.state.last_sync_at),
            Value::OptionalInt(self.state.latency_ms),
            Value::Int(self.revision),
            Value::Time(self.created_at),
            Value::Time(self.updated_at),
        ])
    }
}

impl Resource for HookRecord {
    const NAME: &'static str = "hook";
    const TABLE: &'static str = "hooks";
    const ALIAS: &'static str = "h";
    const COLUMNS: &'static [&'static str] = &[
        "namespace",
        "name",
        "description",
        "url",
        "method",
        "timeout_ms",
        "headers",
        "secret_headers",
        "queue",
        "revision",
        "created_at",
        "updated_at",
    ];
    /// Generated: `namespace/name`.
    const KEY: &'static str = "hook_key";
    const ORDER: &'static str = "name";
    const NAMESPACE: Option<&'static str> = Some("namespace");
    const UPDATED: &'static [&'static str] = &[
        "description",
        "url",
        "method",
        "timeout_ms",
        "headers",
        "secret_headers",
        "queue",
    ];

    fn decode(row: &impl StoredRow, secrets: &SecretBox) -> StoreResult<Self> {
        hook_from_row(row, secrets)
    }
    fn key(&self) -> String {
        hook_key(&self.namespace, &self.name)
    }
    fn page_key(&self) -> String {
        self.name.clone()
    }
    fn created(mut self, now: DateTime<Utc>) -> Self {
        self.revision = 1;
        self.created_at = now;
        self.updated_at = now;
        self
    }
    fn values(&self, secrets: &SecretBox) -> StoreResult<Vec<Value>> {
        let secret_headers = sealed::seal_headers(secrets, &self.name, &self.secret_headers)?;
        Ok(vec![
            Value::Text(self.namespace.clone()),
            Value::Text(self.name.clone()),
            Value::Text(self.description.clone()),
            Value::Text(self.url.clone()),
            Value::Text(self.method.clone()),
            Value::Int(self.timeout_ms),
            json(&self.headers, "hook headers")?,
            Value::Json(secret_headers),
            Value::Text(self.queue.clone()),
            Value::Int(self.revision),
            Value::Time(self.created_at),
            Value::Time(self.updated_at),
        ])
    }
}

impl Resource for ModelRecord {
    const NAME: &'static str = "model";
    const TABLE: &'static str = "models";
    const ALIAS: &'static str = "m";
    const COLUMNS: &'static [&'static str] =
        &["id", "name", "context_length", "capabilities", "created_at"];
    const KEY: &'static str = "name";
    const ORDER: &'static str = "name";

    fn decode(row: &impl StoredRow, _: &SecretBox) -> StoreResult<Self> {
        model_from_row(row)
    }
    fn key(&self) -> String {
        self.name.clone()
    }
    fn page_key(&self) -> String {
        self.name.clone()
    }
    fn created(self, now: DateTime<Utc>) -> Self {
        ModelRecord {
            created_at: now,
            ..self
        }
    }
    fn values(&self, _: &SecretBox) -> StoreResult<Vec<Value>> {
        Ok(vec![
            Value::Text(self.id.clone()),
            Value::Text(self.name.clone()),
            Value::Int32(self.context_length),
            Value::Strings(self.capabilities.clone()),
            Value::Time(self.created_at),
        ])
    }
}

impl Resource for PoolRecord {
    const NAME: &'static str = "pool";
    const TABLE: &'static str = "pools";
    const ALIAS: &'static str = "p";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "description",
        "purpose",
        "policy",
        "discover_models",
        "created_at",
    ];
    const KEY: &'static str = "id";
    const ORDER: &'static str = "id";

    fn decode(row: &impl StoredRow, _: &SecretBox) -> StoreResult<Self> {
        pool_from_row(row)
    }
    fn key(&self) -> String {
        self.id.clone()
    }
    fn page_key(&self) -> String {
        self.id.clone()
    }
    fn created(self, now: DateTime<Utc>) -> Self {
        PoolRecord {
            created_at: now,
            ..self
        }
    }
    fn values(&self, _: &SecretBox) -> StoreResult<Vec<Value>> {
        Ok(vec![
            Value::Text(self.id.clone()),
            Value::Text(self.description.clone()),
            Value::Text(self.purpose.clone()),
            Value::Text(self.policy.clone()),
            Value::Int32(i32::from(self.discover_models)),
            Value::Time(self.created_at),
        ])
    }
}

/// A page of records, or why not.
type Paged<T> = StoreResult<Page<T>>;

/// A table that links pools to their members (backends or models).
pub(super) struct Membership {
    /// What `NotFound` calls a missing link.
    pub(super) name: &'static str,
    pub(super) table: &'static str,
    /// The column that keys the member.
    pub(super) member: &'static str,
}

const POOL_BACKENDS: Membership = Membership {
    name: "pool backend",
    table: "pool_backends",
    member: "backend_id",
};

const POOL_MODELS: Membership = Membership {
    name: "pool model",
    table: "pool_models",
    member: "model_name",
};

/// One pool's link to one member.
pub(super) struct Link<'a> {
    pub(super) of: &'static Membership,
    pub(super) pool_id: &'a str,
    pub(super) member: &'a str,
}

/// Which side of a [`Membership`] a listing starts from: its parent.
pub(super) enum Parent {
    /// The members of a pool.
    Pool,
    /// The pools of a member.
    Member,
}

impl Membership {
    fn link<'a>(&'static self, pool_id: &'a str, member: &'a str) -> Link<'a> {
        Link {
            of: self,
            pool_id,
            member,
        }
    }

    /// The link table's columns that key the listing's parent and the
    /// listed records.
    pub(super) fn columns(&self, parent: &Parent) -> (&'static str, &'static str) {
        match parent {
            Parent::Pool => ("pool_id", self.member),
            Parent::Member => (self.member, "pool_id"),
        }
    }
}

/// The statements a backend provides for every [`Resource`], and for what
/// is special to backends and pools.
#[async_trait]
pub(super) trait Resources: Send + Sync {
    /// Creates `record` once per request id: `AlreadyExists` when its key
    /// or a unique column is taken.
    async fn create<R: Resource>(
        &self,
        record: R,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<R>>;
    /// The `R` keyed `key`; `NotFound` if none.
    async fn get<R: Resource>(&self, key: &str) -> StoreResult<R>;
    /// A page of `R` in the order of its [`Resource::ORDER`].
    /// A page of `R`, of `namespace` when `R` belongs to namespaces.
    async fn list<R: Resource>(&self, namespace: &str, page: PageQuery) -> StoreResult<Page<R>>;
    /// Replaces the [`Resource::UPDATED`] columns of `record` if its stored
    /// revision is still `revision`; returns the stored record.
    async fn update<R: Resource>(
        &self,
        record: R,
        revision: i64,
        audit: &AuditRecord,
    ) -> StoreResult<R>;
    /// Deletes the `R` keyed `key` once its revision is `expected` (when
    /// given): `NotFound` without a row, `Conflict` on another revision.
    async fn delete<R: Resource>(
        &self,
        key: &str,
        expected: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// Deletes the `R` keyed `key`, which has no revision; `NotFound` if
    /// none.
    async fn remove<R: Resource>(&self, key: &str, audit: &AuditRecord) -> StoreResult<()>;
    /// Records reconciler observations; does not bump the revision.
    async fn write_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()>;
    /// Links a member `M` to a pool (idempotent) once both are found.
    async fn add_member<M: Resource>(&self, link: Link<'_>, audit: &AuditRecord)
    -> StoreResult<()>;
    /// Unlinks a member; `NotFound` if it was not one.
    async fn remove_member(&self, link: Link<'_>, audit: &AuditRecord) -> StoreResult<()>;
    /// A page of the `T` linked to the `P` keyed `key` (`NotFound` if
    /// there is none), in one snapshot.
    async fn list_members<P: Resource, T: Resource>(
        &self,
        (key, parent): (&str, Parent),
        of: &Membership,
        page: PageQuery,
    ) -> StoreResult<Page<T>>;
}

#[async_trait]
impl<S: Resources> BackendStore for S {
    async fn create_backend(
        &self,
        backend: BackendRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<BackendRecord>> {
        self.create(backend, idempotency, audit).await
    }
    async fn get_backend(&self, id: &str) -> StoreResult<BackendRecord> {
        self.get(id).await
    }
    async fn list_backends(&self, page: PageQuery) -> Paged<BackendRecord> {
        self.list("", page).await
    }
    async fn update_backend(
        &self,
        backend: BackendRecord,
        audit: &AuditRecord,
    ) -> StoreResult<BackendRecord> {
        let revision = backend.revision;
        self.update(backend, revision, audit).await
    }
    async fn set_backend_state(&self, id: &str, state: BackendState) -> StoreResult<()> {
        self.write_backend_state(id, state).await
    }
    async fn delete_backend(
        &self,
        id: &str,
        expected_revision: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        // Pool memberships go with it (ON DELETE CASCADE).
        self.delete::<BackendRecord>(id, expected_revision, audit)
            .await
    }
}

#[async_trait]
impl<S: Resources> HookStore for S {
    async fn create_hook(
        &self,
        hook: HookRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<HookRecord>> {
        self.create(hook, idempotency, audit).await
    }
    async fn get_hook(&self, namespace: &str, name: &str) -> StoreResult<HookRecord> {
        self.get(&hook_key(namespace, name)).await
    }
    async fn list_hooks(&self, namespace: &str, page: PageQuery) -> Paged<HookRecord> {
        self.list(namespace, page).await
    }
    async fn update_hook(&self, hook: HookRecord, audit: &AuditRecord) -> StoreResult<HookRecord> {
        let revision = hook.revision;
        self.update(hook, revision, audit).await
    }
    async fn delete_hook(
        &self,
        namespace: &str,
        name: &str,
        expected_revision: Option<i64>,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.delete::<HookRecord>(&hook_key(namespace, name), expected_revision, audit)
            .await
    }
}

#[async_trait]
impl<S: Resources> ModelStore for S {
    async fn create_model(
        &self,
        model: ModelRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<ModelRecord>> {
        self.create(model, idempotency, audit).await
    }
    async fn get_model(&self, name: &str) -> StoreResult<ModelRecord> {
        self.get(name).await
    }
    async fn list_models(&self, page: PageQuery) -> Paged<ModelRecord> {
        self.list("", page).await
    }
    async fn delete_model(&self, name: &str, audit: &AuditRecord) -> StoreResult<()> {
        // Pool memberships go with it (ON DELETE CASCADE).
        self.remove::<ModelRecord>(name, audit).await
    }
}

#[async_trait]
impl<S: Resources> PoolStore for S {
    async fn create_pool(
        &self,
        pool: PoolRecord,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> StoreResult<Created<PoolRecord>> {
        self.create(pool, idempotency, audit).await
    }
    async fn get_pool(&self, id: &str) -> StoreResult<PoolRecord> {
        self.get(id).await
    }
    async fn list_pools(&self, page: PageQuery) -> Paged<PoolRecord> {
        self.list("", page).await
    }
    async fn delete_pool(&self, id: &str, audit: &AuditRecord) -> StoreResult<()> {
        refuse_builtin_pool(id)?;
        // Memberships go with it (ON DELETE CASCADE).
        self.remove::<PoolRecord>(id, audit).await
    }
    async fn assign_backend_to_pool(
        &self,
        pool_id: &str,
        backend_id: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let link = POOL_BACKENDS.link(pool_id, backend_id);
        self.add_member::<BackendRecord>(link, audit).await
    }
    async fn remove_backend_from_pool(
        &self,
        pool_id: &str,
        backend_id: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.remove_member(POOL_BACKENDS.link(pool_id, backend_id), audit)
            .await
    }
    async fn list_pool_backends(&self, id: &str, page: PageQuery) -> Paged<BackendRecord> {
        let pool = (id, Parent::Pool);
        self.list_members::<PoolRecord, _>(pool, &POOL_BACKENDS, page)
            .await
    }
    async fn list_backend_pools(&self, id: &str, page: PageQuery) -> Paged<PoolRecord> {
        let backend = (id, Parent::Member);
        self.list_members::<BackendRecord, _>(backend, &POOL_BACKENDS, page)
            .await
    }
    async fn assign_model_to_pool(
        &self,
        pool_id: &str,
        model_name: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        let link = POOL_MODELS.link(pool_id, model_name);
        self.add_member::<ModelRecord>(link, audit).await
    }
    async fn remove_model_from_pool(
        &self,
        pool_id: &str,
        model_name: &str,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.remove_member(POOL_MODELS.link(pool_id, model_name), audit)
            .await
    }
    async fn list_pool_models(&self, id: &str, page: PageQuery) -> Paged<ModelRecord> {
        let pool = (id, Parent::Pool);
        self.list_members::<PoolRecord, _>(pool, &POOL_MODELS, page)
            .await
    }
    async fn list_model_pools(&self, name: &str, page: PageQuery) -> Paged<PoolRecord> {
        let model = (name, Parent::Member);
        self.list_members::<ModelRecord, _>(model, &POOL_MODELS, page)
            .await
    }
}

/// `FailedPrecondition` for a built-in pool, which cannot be deleted.
fn refuse_builtin_pool(id: &str) -> StoreResult<()> {
    if super::BUILTIN_POOLS
        .iter()
        .any(|(builtin, _)| *builtin == id)
    {
        return Err(StoreError::FailedPrecondition(format!(
            "pool {id:?} is built in and cannot be deleted"
        )));
    }
    Ok(())
}
