//! [`RunStore`] for [`PostgresStore`]: the hot path of the runtime. This
//! file holds the trait and the reads; `create.rs` creates runs,
//! `transitions.rs` applies decisions, `claim.rs` leases ready attempts and
//! `writes.rs` writes plans, each the same concern as the SQLite file of the
//! same name.
//!
//! Every method is one transaction at READ COMMITTED, with
//! `synchronous_commit` left on: these commits acknowledge starts and
//! completions to clients. Round trips are what a 2-core box runs out of
//! first (see docs/postgres.md), so a plan of any size is written by one
//! statement (`writes::APPLY_WRITES`: data-modifying CTEs over `UNNEST`ed arrays),
//! and a transition costs five round trips: BEGIN, lock the run, read its
//! attempts, apply, COMMIT. A claim costs the same for a whole batch, and
//! creating a batch of runs one: `create::CREATE_RUNS` is a single statement
//! (atomic without an explicit transaction), plus a read per idempotency
//! key that turns out to be a replay.
//!
//! Locking: a transition locks its run row, then writes the run's
//! attempts. A claim locks ready attempts, skipping those another claim
//! holds (`SKIP LOCKED`), then waits for the rows of their runs, in id
//! order. The two orders would deadlock when a transition rewrites a ready
//! attempt (a cancel, say) that a claim holds while the claim waits for the
//! transition's run: Postgres would break that only after
//! `deadlock_timeout` (a second by default). So a transition takes the
//! ready attempts it rewrites with `NOWAIT` and, if a claim has one, rolls
//! back and tries again once the claim is through. Deadlocks, serialization
//! failures and such lock conflicts are retried a few times with a jittered
//! back-off, so `decide` may run more than once.
//!
//! Timestamps are truncated to microseconds (what TIMESTAMPTZ keeps) before
//! they are written, so the records built in memory from the snapshot and
//! the plan equal what a later read returns without reading them back.
//!
//! A plan that reaches outside its run — a run update for another id, an
//! update of an attempt that does not exist or belongs to another run, a new
//! attempt of another run — is a kernel bug: the transaction rolls back with
//! [`StoreError::Corrupt`]. So does a claim decision that rejects.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::retry::retrying;
use super::{fetch_one, into_page, page_limits, require};
use crate::store::codec::{
    PlainColumns, attempt_from_row, decode_all, event_from_row, run_from_row, truncate_to_micros,
};
use crate::store::{
    AttemptRecord, ClaimFn, ClaimPolicy, Claimed, CreatedRun, Decision, DueAttempt, EventRecord,
    IdempotencyKey, NewRun, Page, PageQuery, PostgresStore, RunFilter, RunRecord, RunStore,
    StoreError, StoreResult, TransitionOutcome,
};

// ---------------------------------------------------------------------------
// Reads shared by several methods

pub(super) async fn fetch_run(conn: &mut PgConnection, id: &str) -> StoreResult<RunRecord> {
    let sql = concat!("SELECT ", run_columns!(), " FROM runs r WHERE r.id = $1");
    fetch_one(conn, sql, ("run", id), run_from_row).await
}

async fn require_run(conn: &mut PgConnection, id: &str) -> StoreResult<()> {
    require(conn, "SELECT 1 FROM runs WHERE id = $1", ("run", id)).await
}

// ---------------------------------------------------------------------------

impl PostgresStore {
    /// A page of what `query` selects, newest id first. `query` reads
    /// `SELECT <columns> FROM <table> WHERE <id_column> = ANY(ARRAY(SELECT
    /// <id_column> FROM <table> WHERE <filters>`; the page's bound on
    /// `id_column`, the order, the limit and the closing parentheses are
    /// added here. The page's ids come first, from a subquery that an index
    /// on `(filter column, id)` answers alone: asked for whole rows in id
    /// order, the planner walks the primary key backwards and filters, which
    /// reads every newer row when the filter's matches are not the newest
    /// (a chain that last ran an hour ago under a busy one: 12 ms instead of
    /// 0.7 ms with a million runs, and unbounded as the table grows). An
    /// `ARRAY(...)` rather than `IN (...)`: the generic plan of an `IN`
    /// cannot tell the subquery returns one page and may scan the table.
    async fn fetch_newest_first<T>(
        &self,
        mut query: QueryBuilder<'_, Postgres>,
        (id_column, page): (&str, &PageQuery),
        decode: impl Fn(&PgRow) -> StoreResult<T>,
        key: impl Fn(&T) -> String,
    ) -> StoreResult<Page<T>> {
        if let Some(after) = &page.after {
            query
                .push(format_args!(" AND {id_column} < "))
                .push_bind(after.clone());
        }
        query
            .push(format_args!(" ORDER BY {id_column} DESC LIMIT "))
            .push_bind(page_limits(page).1)
            .push(format_args!(")) ORDER BY {id_column} DESC"));
        let rows = query.build().fetch_all(self.pool()).await?;
        Ok(into_page(decode_all(&rows, decode)?, page, key))
    }
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn create_runs(&self, runs: Vec<NewRun>) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        crate::store::runs::check_distinct_keys(&runs)?;
        retrying(|| self.try_create_runs(&runs)).await
    }

    async fn find_request(&self, key: &IdempotencyKey) -> StoreResult<Option<String>> {
        let row = sqlx::query(
            "SELECT request_hash, resource_key FROM idempotency_keys \
             WHERE scope = $1 AND request_id = $2",
        )
        .bind(&key.scope)
        .bind(&key.request_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let request_hash = row.text("request_hash")?;
        if request_hash != key.request_hash {
            return Err(StoreError::IdempotencyMismatch {
                request_id: key.request_id.clone(),
            });
        }
        Ok(Some(row.text("resource_key")?))
    }

    async fn get_run(&self, id: &str) -> StoreResult<RunRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch_run(&mut conn, id).await
    }

    async fn list_runs(&self, filter: &RunFilter, page: PageQuery) -> StoreResult<Page<RunRecord>> {
        // Only the filters in use become SQL, so the planner sees each
        // statement's real shape and picks the index that narrows.
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs r WHERE r.id = ANY(ARRAY(SELECT r.id FROM runs r WHERE r.namespace = "
        ));
        query.push_bind(filter.namespace.as_str());
        if !filter.statuses.is_empty() {
            let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            query
                .push(" AND r.status = ANY(")
                .push_bind(statuses)
                .push(")");
        }
        if let Some(chain_id) = &filter.chain_id {
            query
                .push(" AND r.chain_id = ")
                .push_bind(chain_id.as_str());
        }
        if !filter.labels.is_empty() {
            query
                .push(" AND r.labels @> ")
                .push_bind(Json(&filter.labels));
        }
        if let Some(tenant) = &filter.tenant {
            query.push(" AND r.tenant = ").push_bind(tenant.as_str());
        }
        if let Some(after) = filter.created_after {
            query
                .push(" AND r.created_at >= ")
                .push_bind(truncate_to_micros(after));
        }
        if let Some(before) = filter.created_before {
            query
                .push(" AND r.created_at < ")
                .push_bind(truncate_to_micros(before));
        }
        let key = |run: &RunRecord| run.id.clone();
        self.fetch_newest_first(query, ("r.id", &page), run_from_row, key)
            .await
    }

    async fn active_attempts(&self, run_ids: &[&str]) -> StoreResult<Vec<AttemptRecord>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool().acquire().await?;
        let sql = concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts a WHERE a.run_id = ANY($1) \
             AND a.status IN ('ready', 'waiting', 'leased')"
        );
        let rows = sqlx::query(sql).bind(run_ids).fetch_all(&mut *conn).await?;
        decode_all(&rows, attempt_from_row)
    }

    async fn get_attempt(&self, id: &str) -> StoreResult<AttemptRecord> {
        let mut conn = self.pool().acquire().await?;
        let sql = concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts a WHERE a.id = $1"
        );
        fetch_one(&mut conn, sql, ("attempt", id), attempt_from_row).await
    }

    async fn list_attempts(
        &self,
        run_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>> {
        let after_step = match page.after.as_deref() {
            None => None,
            Some(after) => Some(after.parse::<i32>().map_err(|_| {
                StoreError::FailedPrecondition(format!("page key {after:?} is not a step number"))
            })?),
        };
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts a WHERE a.run_id = $1 AND a.step > $2 ORDER BY a.step, a.id LIMIT $3"
        ))
        .bind(run_id)
        .bind(after_step.unwrap_or(i32::MIN))
        .bind(page_limits(&page).1)
        .fetch_all(&mut *conn)
        .await?;
        // Attempts exist only with their run; only an empty page needs the
        // run looked up.
        if rows.is_empty() {
            require_run(&mut conn, run_id).await?;
        }
        let items = decode_all(&rows, attempt_from_row)?;
        Ok(into_page(items, &page, |attempt| attempt.step.to_string()))
    }

    async fn list_events(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(
            "SELECT run_id, seq, payload FROM run_events \
             WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            require_run(&mut conn, run_id).await?;
        }
        decode_all(&rows, event_from_row)
    }

    async fn transition_many(
        &self,
        items: Vec<(String, Decision)>,
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>> {
        crate::store::runs::check_distinct_runs(&items)?;
        retrying(|| self.try_transition_many(&items)).await
    }

    async fn transition(&self, run_id: &str, decide: Decision) -> StoreResult<TransitionOutcome> {
        retrying(|| self.try_transition(run_id, &decide)).await
    }

    async fn claim(&self, policy: &dyn ClaimPolicy, decide: &ClaimFn) -> StoreResult<Claimed> {
        if policy.queues().is_empty() || policy.limit() == 0 {
            return Ok(Claimed {
                attempts: Vec::new(),
                events: Vec::new(),
            });
        }
        retrying(|| self.try_claim(policy, decide)).await
    }

    async fn due_attempts(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<DueAttempt>> {
        // Oldest first = the one that fell due earliest: the earlier of its
        // lease expiry and its deadline (LEAST skips NULL). The expression
        // matches attempts_due_idx.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.run_id, a.id FROM attempts a \
             WHERE a.status = 'leased' AND LEAST(a.lease_expires_at, a.deadline) <= $1 \
             ORDER BY LEAST(a.lease_expires_at, a.deadline), a.id LIMIT $2",
        )
        .bind(truncate_to_micros(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(DueAttempt::from).collect())
    }

    async fn list_dead_letters(
        &self,
        namespace: &str,
        queue: Option<&str>,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>> {
        let mut query = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts a WHERE a.id = ANY(ARRAY(SELECT a.id FROM attempts a WHERE a.dead_lettered \
             AND EXISTS (SELECT 1 FROM runs r WHERE r.id = a.run_id AND r.namespace = "
        ));
        query.push_bind(namespace).push(")");
        if let Some(queue) = queue {
            query.push(" AND a.queue = ").push_bind(queue);
        }
        let key = |attempt: &AttemptRecord| attempt.id.clone();
        self.fetch_newest_first(query, ("a.id", &page), attempt_from_row, key)
            .await
    }

    async fn next_ready_at(
        &self,
        queues: &[String],
        after: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for queue in queues {
            let (next,): (Option<DateTime<Utc>>,) = sqlx::query_as(NEXT_READY_AT)
                .bind(queue)
                .bind(truncate_to_micros(after))
                .bind(crate::store::runs::NEXT_READY_PRIORITIES)
                .fetch_one(self.pool())
                .await?;
            if let Some(next) = next {
                earliest = Some(earliest.map_or(next, |known: DateTime<Utc>| known.min(next)));
            }
        }
        Ok(earliest)
    }
}

/// `next_ready_at` of one queue: `attempts_ready_idx` is ordered by
/// priority first, so a plain `min(available_at)` would read every ready
/// attempt of the queue; instead walk its distinct priorities (each a seek)
/// and take the first due time after `$2` of each (a seek too).
const NEXT_READY_AT: &str = "WITH RECURSIVE levels(priority, n) AS ( \
     SELECT (SELECT priority FROM attempts WHERE status = 'ready' AND queue = $1 \
             ORDER BY priority DESC LIMIT 1), 1 \
     UNION ALL \
     SELECT (SELECT a.priority FROM attempts a WHERE a.status = 'ready' AND a.queue = $1 \
             AND a.priority < l.priority ORDER BY a.priority DESC LIMIT 1), l.n + 1 \
     FROM levels l WHERE l.priority IS NOT NULL AND l.n < $3) \
     SELECT min((SELECT a.available_at FROM attempts a WHERE a.status = 'ready' \
             AND a.queue = $1 AND a.priority = l.priority AND a.available_at > $2 \
             ORDER BY a.available_at LIMIT 1)) \
     FROM levels l WHERE l.priority IS NOT NULL";

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
