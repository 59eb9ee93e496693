//! Worker sessions as each replica publishes them (`ListWorkers` across
//! replicas). Each replica owns its rows: it rewrites them every heartbeat
//! interval and readers ignore rows not refreshed lately, so a killed
//! replica's sessions fade out by themselves.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::sqlite::{from_micros, micros};
use super::{PostgresStore, SqliteStore, StoreError, StoreResult};

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
        seen_at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Sessions seen since `seen_after`, by session id.
    async fn list_sessions(
        &self,
        seen_after: DateTime<Utc>,
    ) -> StoreResult<Vec<WorkerSessionRecord>>;
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("worker session {what}: {error}"))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn publish_sessions(
        &self,
        replica: &str,
        sessions: &[WorkerSessionRecord],
        seen_at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM worker_sessions WHERE replica = ? OR seen_at < ?")
            .bind(replica)
            .bind(micros(forget_before))
            .execute(&mut *tx)
            .await?;
        for session in sessions {
            sqlx::query(
                "INSERT OR REPLACE INTO worker_sessions (session_id, replica, worker_id, name, \
                 queues, slots, leases_held, labels, sdk_version, connected_at, last_heartbeat, \
                 fenced_operations, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&session.session_id)
            .bind(replica)
            .bind(&session.worker_id)
            .bind(&session.name)
            .bind(to_json(&session.queues))
            .bind(session.slots as i64)
            .bind(session.leases_held as i64)
            .bind(to_json(&session.labels))
            .bind(&session.sdk_version)
            .bind(micros(session.connected_at))
            .bind(micros(session.last_heartbeat))
            .bind(session.fenced_operations as i64)
            .bind(micros(seen_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_sessions(
        &self,
        seen_after: DateTime<Utc>,
    ) -> StoreResult<Vec<WorkerSessionRecord>> {
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT session_id, replica, worker_id, name, queues, slots, leases_held, labels, \
             sdk_version, connected_at, last_heartbeat, fenced_operations FROM worker_sessions \
             WHERE seen_at >= ? ORDER BY session_id",
        )
        .bind(micros(seen_after))
        .fetch_all(&mut *tx)
        .await?;
        rows.iter()
            .map(|row| {
                let queues: String = row.try_get("queues")?;
                let labels: String = row.try_get("labels")?;
                Ok(WorkerSessionRecord {
                    session_id: row.try_get("session_id")?,
                    replica: row.try_get("replica")?,
                    worker_id: row.try_get("worker_id")?,
                    name: row.try_get("name")?,
                    queues: serde_json::from_str(&queues).map_err(|e| corrupt("queues", e))?,
                    slots: row.try_get::<i64, _>("slots")?.max(0) as u32,
                    leases_held: row.try_get::<i64, _>("leases_held")?.max(0) as u32,
                    labels: serde_json::from_str(&labels).map_err(|e| corrupt("labels", e))?,
                    sdk_version: row.try_get("sdk_version")?,
                    connected_at: from_micros(row.try_get("connected_at")?)?,
                    last_heartbeat: from_micros(row.try_get("last_heartbeat")?)?,
                    fenced_operations: row.try_get::<i64, _>("fenced_operations")?.max(0) as u64,
                })
            })
            .collect()
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn publish_sessions(
        &self,
        replica: &str,
        sessions: &[WorkerSessionRecord],
        seen_at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM worker_sessions WHERE replica = $1 OR seen_at < $2")
            .bind(replica)
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        let col = |f: &dyn Fn(&WorkerSessionRecord) -> String| -> Vec<String> {
            sessions.iter().map(f).collect()
        };
        sqlx::query(
            "INSERT INTO worker_sessions (session_id, replica, worker_id, name, queues, slots, \
             leases_held, labels, sdk_version, connected_at, last_heartbeat, fenced_operations, \
             seen_at) \
             SELECT s.session_id, $2, s.worker_id, s.name, s.queues::jsonb, s.slots, \
             s.leases_held, s.labels::jsonb, s.sdk_version, s.connected_at, s.last_heartbeat, \
             s.fenced_operations, $3 \
             FROM UNNEST($1::text[], $4::text[], $5::text[], $6::text[], $7::int4[], \
             $8::int4[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], \
             $13::int8[]) \
             AS s(session_id, worker_id, name, queues, slots, leases_held, labels, \
             sdk_version, connected_at, last_heartbeat, fenced_operations) \
             ON CONFLICT (session_id) DO UPDATE SET replica = EXCLUDED.replica, \
             slots = EXCLUDED.slots, leases_held = EXCLUDED.leases_held, \
             last_heartbeat = EXCLUDED.last_heartbeat, \
             fenced_operations = EXCLUDED.fenced_operations, seen_at = EXCLUDED.seen_at",
        )
        .bind(col(&|s| s.session_id.clone()))
        .bind(replica)
        .bind(seen_at)
        .bind(col(&|s| s.worker_id.clone()))
        .bind(col(&|s| s.name.clone()))
        .bind(col(&|s| to_json(&s.queues)))
        .bind(sessions.iter().map(|s| s.slots as i32).collect::<Vec<_>>())
        .bind(
            sessions
                .iter()
                .map(|s| s.leases_held as i32)
                .collect::<Vec<_>>(),
        )
        .bind(col(&|s| to_json(&s.labels)))
        .bind(col(&|s| s.sdk_version.clone()))
        .bind(sessions.iter().map(|s| s.connected_at).collect::<Vec<_>>())
        .bind(
            sessions
                .iter()
                .map(|s| s.last_heartbeat)
                .collect::<Vec<_>>(),
        )
        .bind(
            sessions
                .iter()
                .map(|s| s.fenced_operations as i64)
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_sessions(
        &self,
        seen_after: DateTime<Utc>,
    ) -> StoreResult<Vec<WorkerSessionRecord>> {
        let rows = sqlx::query(
            "SELECT session_id, replica, worker_id, name, queues::text AS queues, slots, \
             leases_held, labels::text AS labels, sdk_version, connected_at, last_heartbeat, \
             fenced_operations FROM worker_sessions WHERE seen_at >= $1 ORDER BY session_id",
        )
        .bind(seen_after)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let queues: String = row.try_get("queues")?;
                let labels: String = row.try_get("labels")?;
                Ok(WorkerSessionRecord {
                    session_id: row.try_get("session_id")?,
                    replica: row.try_get("replica")?,
                    worker_id: row.try_get("worker_id")?,
                    name: row.try_get("name")?,
                    queues: serde_json::from_str(&queues).map_err(|e| corrupt("queues", e))?,
                    slots: row.try_get::<i32, _>("slots")?.max(0) as u32,
                    leases_held: row.try_get::<i32, _>("leases_held")?.max(0) as u32,
                    labels: serde_json::from_str(&labels).map_err(|e| corrupt("labels", e))?,
                    sdk_version: row.try_get("sdk_version")?,
                    connected_at: row.try_get("connected_at")?,
                    last_heartbeat: row.try_get("last_heartbeat")?,
                    fenced_operations: row.try_get::<i64, _>("fenced_operations")?.max(0) as u64,
                })
            })
            .collect()
    }
}
