//! [`FleetStore`] for the embedded store.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use crate::store::codec::not_found;
use crate::store::{FleetStore, StoreResult};

use super::{SqliteStore, micros};

#[async_trait]
impl FleetStore for SqliteStore {
    async fn take_sync_lease(
        &self,
        id: &str,
        replica: &str,
        (now, until): (DateTime<Utc>, DateTime<Utc>),
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let taken = sqlx::query(
            "UPDATE backends SET sync_owner = ?, sync_until = ? WHERE id = ? AND \
             (sync_owner IS NULL OR sync_owner = ? OR sync_until IS NULL OR sync_until <= ?)",
        )
        .bind(replica)
        .bind(micros(until))
        .bind(id)
        .bind(replica)
        .bind(micros(now))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !taken {
            let exists = sqlx::query("SELECT 1 FROM backends WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !exists {
                return Err(not_found("backend", id));
            }
        }
        tx.commit().await?;
        Ok(taken)
    }

    async fn release_sync_lease(&self, id: &str, replica: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE backends SET sync_owner = NULL, sync_until = NULL \
             WHERE id = ? AND sync_owner = ?",
        )
        .bind(id)
        .bind(replica)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn declared_models_of_backend(&self, id: &str) -> StoreResult<Vec<String>> {
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT DISTINCT pm.model_name FROM pool_backends pb \
             JOIN pool_models pm ON pm.pool_id = pb.pool_id \
             WHERE pb.backend_id = ? ORDER BY pm.model_name",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }
}
