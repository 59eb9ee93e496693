//! [`FleetStore`] for PostgreSQL: one conditional UPDATE decides the sync
//! lease, so two replicas racing for it cannot both win.

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::Row;

use crate::store::codec::not_found;
use crate::store::{FleetStore, StoreResult};

use super::PostgresStore;

#[async_trait]
impl FleetStore for PostgresStore {
    async fn take_sync_lease(
        &self,
        id: &str,
        replica: &str,
        (now, until): (DateTime<Utc>, DateTime<Utc>),
    ) -> StoreResult<bool> {
        let taken = sqlx::query(
            "UPDATE backends SET sync_owner = $2, sync_until = $3 WHERE id = $1 AND \
             (sync_owner IS NULL OR sync_owner = $2 OR sync_until IS NULL OR sync_until <= $4)",
        )
        .bind(id)
        .bind(replica)
        .bind(until.trunc_subsecs(6))
        .bind(now.trunc_subsecs(6))
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1;
        if !taken {
            let exists = sqlx::query("SELECT 1 FROM backends WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?
                .is_some();
            if !exists {
                return Err(not_found("backend", id));
            }
        }
        Ok(taken)
    }

    async fn release_sync_lease(&self, id: &str, replica: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE backends SET sync_owner = NULL, sync_until = NULL \
             WHERE id = $1 AND sync_owner = $2",
        )
        .bind(id)
        .bind(replica)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn declared_models_of_backend(&self, id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT pm.model_name FROM pool_backends pb \
             JOIN pool_models pm ON pm.pool_id = pb.pool_id \
             WHERE pb.backend_id = $1 ORDER BY pm.model_name",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }
}
