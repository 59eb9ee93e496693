//! Queues and replicas as operators see them: queue figures read from the
//! attempts, paused queues (which the claims skip in their own
//! transaction), and the registry of the server processes sharing the
//! store, with their heartbeats.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AuditRecord, StoreResult};

/// One queue's figures at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    pub name: String,
    /// Attempts `Ready` and due now.
    pub ready: i64,
    /// The `available_at` of the oldest attempt counted in `ready`.
    pub oldest_ready_at: Option<DateTime<Utc>>,
    pub leased: i64,
    /// Attempts `Ready` but due later (retry backoff, throttling, delays).
    pub scheduled: i64,
    /// Set while the queue is paused.
    pub pause: Option<QueuePause>,
}

/// Who paused a queue, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePause {
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
}

/// A replica's state in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    Active,
    Draining,
    Gone,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Active => "active",
            ReplicaState::Draining => "draining",
            ReplicaState::Gone => "gone",
        }
    }

    pub fn parse(text: &str) -> StoreResult<ReplicaState> {
        match text {
            "active" => Ok(ReplicaState::Active),
            "draining" => Ok(ReplicaState::Draining),
            "gone" => Ok(ReplicaState::Gone),
            other => Err(super::StoreError::Corrupt(format!(
                "unknown replica state {other:?}"
            ))),
        }
    }
}

/// One server process sharing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: String,
    pub listen_address: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub state: ReplicaState,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Runs with an attempt leased by the replica or its worker sessions
    /// (read by `list_replicas`; ignored by `register_replica`).
    pub runs_held: i64,
    /// Attempts leased by the replica or its worker sessions.
    pub leases_held: i64,
    /// Worker sessions the replica published lately.
    pub worker_sessions: i64,
}

/// A lease as its holder must name it to settle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    pub run_id: String,
    pub attempt_id: String,
    pub lease_token: String,
}

#[async_trait]
pub trait OperationsStore: Send + Sync {
    /// Every queue with a ready, scheduled or leased attempt, or paused,
    /// by name; `now` splits ready from scheduled.
    async fn list_queues(&self, now: DateTime<Utc>) -> StoreResult<Vec<QueueRecord>>;

    /// Pauses a queue with `audit` in the same transaction. Idempotent: a
    /// queue already paused keeps its first pause (and nothing is
    /// written). Returns the pause in force.
    async fn pause_queue(&self, name: &str, audit: &AuditRecord) -> StoreResult<QueuePause>;

    /// Resumes a queue with `audit` in the same transaction. Idempotent: a
    /// queue not paused is left as it is (and nothing is written).
    async fn resume_queue(&self, name: &str, audit: &AuditRecord) -> StoreResult<()>;

    /// The names of the paused queues.
    async fn paused_queues(&self) -> StoreResult<Vec<String>>;

    /// Adds this replica to the registry, `Active` (or re-activates it
    /// after others declared it gone).
    async fn register_replica(&self, replica: &ReplicaRecord) -> StoreResult<()>;

    /// Writes a replica's heartbeat; returns its state, `None` when it is
    /// not registered or was declared `Gone` (nothing is written then).
    async fn heartbeat_replica(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<ReplicaState>>;

    /// Replicas not `Gone`, and those that stopped at `stopped_since` or
    /// later, by id, with what they hold (worker sessions published at
    /// `sessions_since` or later).
    async fn list_replicas(
        &self,
        stopped_since: DateTime<Utc>,
        sessions_since: DateTime<Utc>,
    ) -> StoreResult<Vec<ReplicaRecord>>;

    /// Marks a replica `Draining` with `audit` (if any: a replica that
    /// drains on SIGTERM records none) in the same transaction and returns
    /// it. Idempotent for a replica already draining; `NotFound` if
    /// unknown; `FailedPrecondition` if it is `Gone`.
    async fn drain_replica(
        &self,
        id: &str,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<ReplicaRecord>;

    /// Marks a replica `Gone` at `at` (a clean stop).
    async fn stop_replica(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()>;

    /// Marks `Gone` every replica not `Gone` whose heartbeat is older than
    /// `heartbeat_before`; returns their ids. Each is returned by one
    /// caller only, however many replicas ask at once.
    async fn declare_gone(
        &self,
        heartbeat_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<String>>;

    /// The attempts leased under `owner` now.
    async fn leases_held_by(&self, owner: &str) -> StoreResult<Vec<HeldLease>>;
}
