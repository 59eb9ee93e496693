//! Worker sessions as each replica publishes them (`ListWorkers` across
//! replicas). Each replica owns its rows: it rewrites them every heartbeat
//! interval and readers ignore rows not refreshed lately, so a killed
//! replica's sessions fade out by themselves.

use std::collections::BTreeMap;

use super::StoreResult;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One connected worker session.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSessionRecord {
    pub session_id: String,
    pub replica: String,
    pub worker_id: String,
    pub name: String,
    pub queues: Vec<String>,
    pub slots: u32,
    pub leases_held: u32,
    pub labels: BTreeMap<String, String>,
    pub sdk_version: String,
    pub connected_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    /// Lease operations refused for a stale or foreign token.
    pub fenced_operations: u64,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Makes `sessions` the replica's published sessions, seen at
    /// `seen_at` (its rows not among them are deleted), and deletes every
    /// row not seen since `forget_before`.
    async fn publish_sessions(
        &self,
        replica: &str,
        sessions: &[WorkerSessionRecord],
        (seen_at, forget_before): (DateTime<Utc>, DateTime<Utc>),
    ) -> StoreResult<()>;

    /// Sessions seen since `since`, by session id.
    async fn list_sessions(&self, since: DateTime<Utc>) -> StoreResult<Vec<WorkerSessionRecord>>;
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}
