//! [`LimitStore`] for PostgreSQL: an admission takes a transaction-scoped
//! advisory lock per scope, in key order (so two admissions never wait on
//! each other in a cycle), then reads and counts; admissions of one scope
//! are serialized across every replica.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::PostgresStore;
use crate::store::limits::window_start;
use crate::store::{AdmitOutcome, Judge, LimitStore, NewCall, ScopeUsage, StoreResult};

/// The seed keeps these locks apart from the claim's capacity locks.
const LOCK_SCOPES: &str = "SELECT pg_advisory_xact_lock(hashtextextended(k, 41)) \
     FROM UNNEST($1::text[]) AS k ORDER BY k";

const USAGE: &str = "SELECT \
     count(*) FILTER (WHERE hold_until > $2) AS in_flight, \
     count(*) FILTER (WHERE started_at > $3) AS started, \
     min(started_at) FILTER (WHERE started_at > $3) AS oldest_start, \
     COALESCE(sum(tokens) FILTER (WHERE started_at > $3), 0)::int8 AS tokens, \
     (EXTRACT(EPOCH FROM avg(settled_at - started_at) \
         FILTER (WHERE started_at > $3 AND settled_at IS NOT NULL)) * 1000000)::float8 \
         AS mean_call \
     FROM limit_calls WHERE scope = $1";

async fn usage(
    conn: &mut PgConnection,
    scope: &str,
    now: DateTime<Utc>,
) -> StoreResult<ScopeUsage> {
    let row = sqlx::query(USAGE)
        .bind(scope)
        .bind(now)
        .bind(window_start(now))
        .fetch_one(&mut *conn)
        .await?;
    let backoff =
        sqlx::query("SELECT until, reason FROM limit_backoffs WHERE scope = $1 AND until > $2")
            .bind(scope)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(ScopeUsage {
        in_flight: row.try_get("in_flight")?,
        started: row.try_get("started")?,
        oldest_start: row.try_get("oldest_start")?,
        tokens: row.try_get("tokens")?,
        mean_call: row
            .try_get::<Option<f64>, _>("mean_call")?
            .map(|micros| Duration::from_micros(micros.max(0.0) as u64)),
        backoff: match backoff {
            Some(row) => Some((row.try_get("until")?, row.try_get("reason")?)),
            None => None,
        },
    })
}

#[async_trait]
impl LimitStore for PostgresStore {
    async fn admit(&self, call: &NewCall<'_>, judge: Judge<'_>) -> StoreResult<AdmitOutcome> {
        let keys: Vec<&str> = call.scopes.iter().map(|s| s.key.as_str()).collect();
        let mut tx = self.pool().begin().await?;
        sqlx::query(LOCK_SCOPES)
            .bind(&keys)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM limit_calls WHERE scope = ANY($1::text[]) AND started_at <= $2 \
             AND (hold_until IS NULL OR hold_until <= $3)",
        )
        .bind(&keys)
        .bind(window_start(call.now))
        .bind(call.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM limit_backoffs WHERE scope = ANY($1::text[]) AND until <= $2")
            .bind(&keys)
            .bind(call.now)
            .execute(&mut *tx)
            .await?;
        for scope in call.scopes {
            let usage = usage(&mut tx, &scope.key, call.now).await?;
            if let Some(throttle) = judge(scope, &usage) {
                tx.commit().await?;
                return Ok(AdmitOutcome::Throttled(throttle));
            }
        }
        sqlx::query(
            "INSERT INTO limit_calls (call_id, scope, started_at, hold_until, tokens) \
             SELECT $1, k, $3, $4, $5 FROM UNNEST($2::text[]) AS k \
             ON CONFLICT (call_id, scope) DO NOTHING",
        )
        .bind(call.call_id)
        .bind(&keys)
        .bind(call.now)
        .bind(call.hold_until)
        .bind(call.estimated_tokens)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AdmitOutcome::Admitted)
    }

    async fn settle(&self, call_id: &str, tokens: i64, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE limit_calls SET hold_until = NULL, settled_at = $2, tokens = $3 \
             WHERE call_id = $1",
        )
        .bind(call_id)
        .bind(now)
        .bind(tokens)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn back_off(&self, scope: &str, until: DateTime<Utc>, reason: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO limit_backoffs (scope, until, reason) VALUES ($1, $2, $3) \
             ON CONFLICT (scope) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason \
             WHERE EXCLUDED.until > limit_backoffs.until",
        )
        .bind(scope)
        .bind(until)
        .bind(reason)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
