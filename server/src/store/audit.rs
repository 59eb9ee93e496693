//! The audit log's records. A successful control-plane action writes its
//! [`AuditRecord`] in the action's own transaction (each backend's
//! `audit::insert`), so the log never claims an action that did not happen
//! nor misses one that did.

use chrono::{DateTime, Utc};

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
}

impl AuditRecord {
    /// The outcome of an action that succeeded.
    pub const OK: &'static str = "OK";
}
