//! The audit log's records. A successful control-plane action writes its
//! [`AuditRecord`] in the action's own transaction (each backend's
//! `audit::insert`), so the log never claims an action that did not happen
//! nor misses one that did.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::StoredRow;
use super::{Page, PageQuery, StoreResult};

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// UUIDv7: sorts by time.
    pub id: String,
    pub at: DateTime<Utc>,
    /// `key:<id>`, `local` or `replica:<id>`.
    pub actor: String,
    /// The RPC name, e.g. `CreateChain`.
    pub action: String,
    /// `chain`, `backend`, `pool`, `model`, `hook`, `run`, `queue`, `replica`.
    pub resource_type: String,
    pub resource_id: String,
    /// The request's idempotency key, or empty.
    pub request_id: String,
    /// `OK` or the gRPC code name of the error.
    pub outcome: String,
    pub error_message: String,
    /// The replica that served the call.
    pub replica: String,
    /// The namespace the call named.
    pub namespace: String,
}

impl AuditRecord {
    /// The outcome of an action that succeeded.
    pub const OK: &'static str = "OK";
}

/// Which audit rows a listing returns; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub namespace: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Rows at or after this time.
    pub start: Option<DateTime<Utc>>,
    /// Rows before this time.
    pub end: Option<DateTime<Utc>>,
}

/// The audit log. Successful actions write their rows through the store
/// method that performs them; this appends the others and reads the log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends `record` in a transaction of its own: the row of an action
    /// that failed or was refused (nothing else was written).
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// A page of the rows `filter` selects, newest first (by id, which
    /// sorts by time); the page key is the id, so `page.after` continues
    /// with older rows.
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        page: PageQuery,
    ) -> StoreResult<Page<AuditRecord>>;
}

/// The columns of an audit row, in the order both backends select them.
pub(super) const AUDIT_COLUMNS: &str = "id, at, actor, action, resource_type, resource_id, \
     request_id, outcome, error_message, replica, namespace";

pub(super) fn audit_from_row(row: &impl StoredRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: row.text("id")?,
        at: row.time("at")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        resource_type: row.text("resource_type")?,
        resource_id: row.text("resource_id")?,
        request_id: row.text("request_id")?,
        outcome: row.text("outcome")?,
        error_message: row.text("error_message")?,
        replica: row.text("replica")?,
        namespace: row.text("namespace")?,
    })
}

/// The text filters of `filter` with the columns they match.
pub(super) fn text_filters(filter: &AuditFilter) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("namespace", &filter.namespace),
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("resource_type", &filter.resource_type),
        ("resource_id", &filter.resource_id),
    ]
    .into_iter()
    .filter_map(|(column, value)| Some((column, value.as_deref()?)))
}
