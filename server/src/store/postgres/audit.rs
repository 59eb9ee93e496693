//! Audit rows for PostgreSQL.

use sqlx::PgConnection;

use crate::store::StoreResult;
use crate::store::audit::AuditRecord;

/// Writes `record` within the caller's transaction.
pub(crate) async fn insert(conn: &mut PgConnection, record: &AuditRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor, action, resource_type, resource_id, \
         request_id, outcome, error_message, replica) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .execute(conn)
    .await?;
    Ok(())
}
