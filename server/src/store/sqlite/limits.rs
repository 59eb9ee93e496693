//! [`LimitStore`] for the embedded store: one writer transaction per
//! admission serializes admissions of every scope.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, from_micros, micros};
use crate::store::limits::window_start;
use crate::store::{AdmitOutcome, Judge, LimitStore, NewCall, ScopeUsage, StoreResult};

const USAGE: &str = "SELECT \
     COALESCE(SUM(CASE WHEN hold_until > ?2 THEN 1 ELSE 0 END), 0) AS in_flight, \
     COALESCE(SUM(CASE WHEN started_at > ?3 THEN 1 ELSE 0 END), 0) AS started, \
     MIN(CASE WHEN started_at > ?3 THEN started_at END) AS oldest_start, \
     COALESCE(SUM(CASE WHEN started_at > ?3 THEN tokens ELSE 0 END), 0) AS tokens, \
     AVG(CASE WHEN started_at > ?3 AND settled_at IS NOT NULL \
         THEN settled_at - started_at END) AS mean_call \
     FROM limit_calls WHERE scope = ?1";

async fn usage(
    conn: &mut SqliteConnection,
    scope: &str,
    now: DateTime<Utc>,
) -> StoreResult<ScopeUsage> {
    let row = sqlx::query(USAGE)
        .bind(scope)
        .bind(micros(now))
        .bind(micros(window_start(now)))
        .fetch_one(&mut *conn)
        .await?;
    let backoff =
        sqlx::query("SELECT until, reason FROM limit_backoffs WHERE scope = ? AND until > ?")
            .bind(scope)
            .bind(micros(now))
            .fetch_optional(&mut *conn)
            .await?;
    Ok(ScopeUsage {
        in_flight: row.try_get("in_flight")?,
        started: row.try_get("started")?,
        oldest_start: row
            .try_get::<Option<i64>, _>("oldest_start")?
            .map(from_micros)
            .transpose()?,
        tokens: row.try_get("tokens")?,
        mean_call: row
            .try_get::<Option<f64>, _>("mean_call")?
            .map(|micros| Duration::from_micros(micros.max(0.0) as u64)),
        backoff: match backoff {
            Some(row) => Some((from_micros(row.try_get("until")?)?, row.try_get("reason")?)),
            None => None,
        },
    })
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn admit(&self, call: &NewCall<'_>, judge: Judge<'_>) -> StoreResult<AdmitOutcome> {
        let mut tx = self.write_tx().await?;
        let now = micros(call.now);
        for scope in call.scopes {
            sqlx::query(
                "DELETE FROM limit_calls WHERE scope = ? AND started_at <= ? \
                 AND (hold_until IS NULL OR hold_until <= ?)",
            )
            .bind(&scope.key)
            .bind(micros(window_start(call.now)))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM limit_backoffs WHERE scope = ? AND until <= ?")
                .bind(&scope.key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let usage = usage(&mut tx, &scope.key, call.now).await?;
            if let Some(throttle) = judge(scope, &usage) {
                tx.commit().await?;
                return Ok(AdmitOutcome::Throttled(throttle));
            }
        }
        for scope in call.scopes {
            sqlx::query(
                "INSERT OR REPLACE INTO limit_calls (call_id, scope, started_at, hold_until, tokens) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(call.call_id)
            .bind(&scope.key)
            .bind(now)
            .bind(micros(call.hold_until))
            .bind(call.estimated_tokens)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(AdmitOutcome::Admitted)
    }

    async fn settle(&self, call_id: &str, tokens: i64, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE limit_calls SET hold_until = NULL, settled_at = ?, tokens = ? WHERE call_id = ?",
        )
        .bind(micros(now))
        .bind(tokens)
        .bind(call_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn back_off(&self, scope: &str, until: DateTime<Utc>, reason: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO limit_backoffs (scope, until, reason) VALUES (?, ?, ?) \
             ON CONFLICT (scope) DO UPDATE SET until = excluded.until, reason = excluded.reason \
             WHERE excluded.until > limit_backoffs.until",
        )
        .bind(scope)
        .bind(micros(until))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
