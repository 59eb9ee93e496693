//! The PostgreSQL claim: reads candidates in claim order, locks them
//! (`SKIP LOCKED`), counts what capped queues and tenants hold, and applies
//! what the kernel's [`ClaimPolicy`] decides.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::PgConnection;

use super::transitions::lock_runs;
use super::writes::Writes;
use crate::store::codec::{
    PlainColumns, attempt_from_row, decode_all, fold_claim_plan, lease_refused,
    sort_in_claim_order, truncate_to_micros,
};
use crate::store::{AttemptRecord, ClaimFn, ClaimPolicy, Claimed, PostgresStore, StoreResult};

/// Ready attempts to lease, in claim order, locked; `SKIP LOCKED` passes
/// over attempts another claim holds, so this never waits. Paused queues
/// offer nothing (read here, in the claim's own statement, so a pause is
/// seen by every claim that starts after it commits). One ordered scan
/// of the partial ready index per queue: a plain `queue = ANY($1)` would
/// read and sort every ready attempt of those queues. Up to `limit` rows per
/// queue are locked; the unused ones are released at commit.
const CLAIM_CANDIDATES: &str = concat!(
    "SELECT c.* FROM UNNEST($1::text[], $3::int8[]) AS q(queue, quota) CROSS JOIN LATERAL (SELECT ",
    attempt_columns!(),
    ", r.namespace || '/' || r.tenant AS run_tenant FROM attempts a JOIN runs r ON r.id = a.run_id \
     WHERE a.status = 'ready' AND a.queue = q.queue AND a.available_at <= $2 \
     AND r.status IN ('queued', 'running') AND r.namespace || '/' || r.tenant <> ALL($5::text[]) \
     AND a.id <> ALL($6::text[]) \
     AND NOT EXISTS (SELECT 1 FROM paused_queues p WHERE p.name = q.queue) \
     ORDER BY a.priority DESC, a.available_at, a.id LIMIT q.quota \
     FOR UPDATE OF a SKIP LOCKED) AS c \
     ORDER BY c.priority DESC, c.available_at, c.id LIMIT $4"
);

/// Serializes the claims of capped queues or tenants across replicas (one
/// transaction-scoped advisory lock per name, taken in name order) so two
/// claims cannot both see room under a cap.
const LOCK_CAPS: &str = "SELECT pg_advisory_xact_lock(hashtextextended(k, 7)) \
     FROM UNNEST($1::text[]) AS k ORDER BY k";

/// Attempts leased now, per capped queue.
const LEASED_PER_QUEUE: &str = "SELECT queue AS name, count(*) AS leased FROM attempts \
     WHERE status = 'leased' AND queue = ANY($1::text[]) GROUP BY queue";

/// Attempts leased now, per capped tenant key (`namespace/tenant`).
const LEASED_PER_TENANT: &str = "SELECT r.namespace || '/' || r.tenant AS name, \
     count(*) AS leased FROM attempts a JOIN runs r ON r.id = a.run_id \
     WHERE a.status = 'leased' AND r.namespace || '/' || r.tenant = ANY($1::text[]) \
     GROUP BY 1";

/// Leased attempts per name, from [`LEASED_PER_QUEUE`] or [`LEASED_PER_TENANT`].
async fn leased_counts(
    conn: &mut PgConnection,
    query: &str,
    names: &[&str],
) -> StoreResult<HashMap<String, u32>> {
    let rows = sqlx::query(query).bind(names).fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let name = row.text("name")?;
            let leased = row.int("leased")?;
            Ok((name, leased.max(0) as u32))
        })
        .collect()
}

impl PostgresStore {
    pub(super) async fn try_claim(
        &self,
        policy: &dyn ClaimPolicy,
        decide: &ClaimFn,
    ) -> StoreResult<Claimed> {
        let now = truncate_to_micros(policy.now());
        let limit = policy.limit();
        let mut queues: Vec<&str> = policy.queues().iter().map(String::as_str).collect();
        queues.sort_unstable();
        queues.dedup();

        let mut tx = self.begin_hot().await?;
        let capped_queues: Vec<&str> = queues
            .iter()
            .copied()
            .filter(|queue| policy.queue_capped(queue))
            .collect();
        let leased_per_queue = if capped_queues.is_empty() {
            HashMap::new()
        } else {
            let locks: Vec<String> = capped_queues.iter().map(|q| format!("queue:{q}")).collect();
            sqlx::query(LOCK_CAPS)
                .bind(&locks)
                .execute(&mut *tx)
                .await?;
            leased_counts(&mut tx, LEASED_PER_QUEUE, &capped_queues).await?
        };
        let quotas = policy.quotas(&leased_per_queue);
        let quota_queues: Vec<&str> = quotas.iter().map(|(q, _)| q.as_str()).collect();
        let quota_limits: Vec<i64> = quotas.iter().map(|(_, n)| i64::from(*n)).collect();
        // A tenant found without room after a read sends the read round
        // again without it (and without the rows already kept), so its
        // backlog does not hide other tenants' work.
        let quota_map: HashMap<String, u32> = quotas.iter().cloned().collect();
        let mut excluded: Vec<String> = Vec::new();
        let mut locked_tenants: HashSet<String> = HashSet::new();
        let mut leased_per_tenant: HashMap<String, u32> = HashMap::new();
        let mut kept: Vec<(AttemptRecord, String)> = Vec::new();
        for _ in 0..3 {
            if quotas.is_empty() {
                break;
            }
            let kept_ids: Vec<&str> = kept.iter().map(|(a, _)| a.id.as_str()).collect();
            let rows = sqlx::query(CLAIM_CANDIDATES)
                .bind(&quota_queues)
                .bind(now)
                .bind(&quota_limits)
                .bind(i64::from(limit))
                .bind(&excluded)
                .bind(&kept_ids)
                .fetch_all(&mut *tx)
                .await?;
            let read = decode_all(&rows, attempt_from_row)?;
            let tenants: Vec<String> = rows
                .iter()
                .map(|row| row.text("run_tenant"))
                .collect::<StoreResult<_>>()?;
            let read_count = read.len();
            let mut all: Vec<(AttemptRecord, String)> = std::mem::take(&mut kept);
            all.extend(read.into_iter().zip(tenants));
            sort_in_claim_order(&mut all, |(attempt, _)| attempt);
            let mut new_tenants: Vec<&str> = all
                .iter()
                .map(|(_, t)| t.as_str())
                .filter(|t| policy.tenant_capped(t) && !locked_tenants.contains(*t))
                .collect();
            new_tenants.sort_unstable();
            new_tenants.dedup();
            if !new_tenants.is_empty() {
                let locks: Vec<String> =
                    new_tenants.iter().map(|t| format!("tenant:{t}")).collect();
                sqlx::query(LOCK_CAPS)
                    .bind(&locks)
                    .execute(&mut *tx)
                    .await?;
                leased_per_tenant
                    .extend(leased_counts(&mut tx, LEASED_PER_TENANT, &new_tenants).await?);
                locked_tenants.extend(new_tenants.iter().map(|t| t.to_string()));
            }
            let order: Vec<(&str, &str)> = all
                .iter()
                .map(|(a, t)| (a.queue.as_str(), t.as_str()))
                .collect();
            let (keep, full) = policy.within_caps(&order, &quota_map, &leased_per_tenant);
            let dropped = keep.len() < all.len();
            let mut all: Vec<Option<(AttemptRecord, String)>> = all.into_iter().map(Some).collect();
            kept = keep.into_iter().filter_map(|i| all[i].take()).collect();
            let new_full: Vec<String> =
                full.into_iter().filter(|t| !excluded.contains(t)).collect();
            if read_count == 0 || !dropped || new_full.is_empty() || kept.len() == limit as usize {
                break;
            }
            // Rows locked for full tenants are released at commit.
            excluded.extend(new_full);
        }
        let candidates: Vec<AttemptRecord> = kept.into_iter().map(|(a, _)| a).collect();
        let mut candidates_by_run: BTreeMap<&str, Vec<&AttemptRecord>> = BTreeMap::new();
        for candidate in &candidates {
            candidates_by_run
                .entry(candidate.run_id.as_str())
                .or_default()
                .push(candidate);
        }
        // In id order, so claims that want the same runs queue up rather
        // than deadlock. A run may have been paused or cancelled since the
        // candidates were read: waiting for its lock re-reads it, and only
        // dispatchable runs get their attempts leased.
        let run_ids: Vec<&str> = candidates_by_run.keys().copied().collect();
        let runs = lock_runs(&mut tx, &run_ids).await?;

        let mut writes = Writes::default();
        let mut leased_by_id: HashMap<String, AttemptRecord> = HashMap::new();
        let mut events = Vec::new();
        for run in runs.iter().filter(|run| run.status.is_dispatchable()) {
            let Some(candidates) = candidates_by_run.get(run.id.as_str()) else {
                continue;
            };
            let leased = candidates
                .iter()
                .map(|candidate| policy.lease(candidate))
                .collect::<Result<Vec<_>, _>>()
                .map_err(lease_refused)?;
            let mut plan = decide(run, &leased);
            let leased = fold_claim_plan(run, leased, &mut plan)?;
            let (_, run_events) = writes.stage(run, plan)?;
            events.extend(run_events);
            writes.attempt_updates.extend(leased.values().cloned());
            leased_by_id.extend(leased);
        }
        writes.apply(&mut tx).await?;
        tx.commit().await?;

        let attempts = candidates
            .iter()
            .filter_map(|candidate| leased_by_id.remove(&candidate.id))
            .collect();
        Ok(Claimed { attempts, events })
    }
}
