//! Audit rows for PostgreSQL.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::store::audit::{AUDIT_COLUMNS, audit_from_row, text_filters};
use crate::store::codec::decode_all;
use crate::store::{
    AuditFilter, AuditRecord, AuditStore, Page, PageQuery, PostgresStore, StoreResult,
};

/// Writes `record` within the caller's transaction.
pub(crate) async fn insert(conn: &mut PgConnection, record: &AuditRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor, action, resource_type, resource_id, \
         request_id, outcome, error_message, replica, namespace) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&record.id)
    .bind(record.at)
    .bind(&record.actor)
    .bind(&record.action)
    .bind(&record.resource_type)
    .bind(&record.resource_id)
    .bind(&record.request_id)
    .bind(&record.outcome)
    .bind(&record.error_message)
    .bind(&record.replica)
    .bind(&record.namespace)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        insert(&mut tx, record).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        page: PageQuery,
    ) -> StoreResult<Page<AuditRecord>> {
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE TRUE"
        ));
        for (column, value) in text_filters(filter) {
            query
                .push(format!(" AND {column} = "))
                .push_bind(value.to_string());
        }
        if let Some(start) = filter.start {
            query.push(" AND at >= ").push_bind(start);
        }
        if let Some(end) = filter.end {
            query.push(" AND at < ").push_bind(end);
        }
        if let Some(after) = &page.after {
            query.push(" AND id < ").push_bind(after.clone());
        }
        let limit = page.limit.max(1);
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = query.build().fetch_all(self.pool()).await?;
        let records = decode_all(&rows, audit_from_row)?;
        Ok(Page::new(records, limit as usize, |record| {
            record.id.clone()
        }))
    }
}
