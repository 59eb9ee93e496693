//! [`SessionStore`] for the embedded store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::store::sessions::{corrupt, to_json};
use crate::store::{SessionStore, StoreResult, WorkerSessionRecord};

use super::{SqliteStore, from_micros, micros};

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
