//! The SQLite claim: under the single writer nothing else holds the
//! candidates, so it reads them in claim order per queue, counts what capped
//! queues and tenants hold (exact: no other claim runs meanwhile), and
//! applies what the kernel's [`ClaimPolicy`] decides.

use std::collections::{BTreeMap, HashMap};

use sqlx::sqlite::SqliteConnection;

use super::runs::{ATTEMPT_COLUMNS, fetch_runs};
use super::writes::Writes;
use super::{micros, to_json};
use crate::store::codec::{
    PlainColumns, attempt_from_row, fold_claim_plan, lease_refused, not_found, sort_in_claim_order,
};
use crate::store::{
    AttemptRecord, ClaimFn, ClaimPolicy, Claimed, RunStatus, SqliteStore, StoreResult,
};

/// The run statuses whose ready attempts may be claimed, as a JSON array
/// for `json_each`.
fn dispatchable_statuses() -> StoreResult<String> {
    let statuses: Vec<&str> = RunStatus::ALL
        .into_iter()
        .filter(|status| status.is_dispatchable())
        .map(RunStatus::as_str)
        .collect();
    to_json(&statuses, "dispatchable run statuses")
}

/// The count a `SELECT count(*)` for `key` returns.
async fn count_leased(conn: &mut SqliteConnection, sql: &str, key: &str) -> StoreResult<u32> {
    let (leased,): (i64,) = sqlx::query_as(sql).bind(key).fetch_one(&mut *conn).await?;
    Ok(leased.max(0) as u32)
}

impl SqliteStore {
    pub(super) async fn write_claim(
        &self,
        policy: &dyn ClaimPolicy,
        decide: &ClaimFn,
    ) -> StoreResult<Claimed> {
        let limit = policy.limit();
        if policy.queues().is_empty() || limit == 0 {
            return Ok(Claimed {
                attempts: Vec::new(),
                events: Vec::new(),
            });
        }
        let now = micros(policy.now());
        let dispatchable = dispatchable_statuses()?;
        let mut tx = self.write_tx().await?;
        // Under the single writer no other transaction holds these rows, so
        // there is nothing to skip, and counting what is leased is exact: no
        // other claim runs meanwhile.
        let mut leased_per_queue: HashMap<String, u32> = HashMap::new();
        for queue in policy.queues().iter().filter(|q| policy.queue_capped(q)) {
            let leased = count_leased(
                &mut tx,
                "SELECT count(*) FROM attempts WHERE status = 'leased' AND queue = ?",
                queue,
            )
            .await?;
            leased_per_queue.insert(queue.clone(), leased);
        }
        let quotas: HashMap<String, u32> = policy.quotas(&leased_per_queue).into_iter().collect();
        // One index scan per queue, each already in claim order and cut at
        // the limit, then merged: a single query over several queues would
        // sort every ready attempt they hold.
        let mut candidates: Vec<(AttemptRecord, String)> = Vec::new();
        for queue in quotas.keys() {
            let rows = sqlx::query(&format!(
                "SELECT {ATTEMPT_COLUMNS}, r.namespace || '/' || r.tenant AS run_tenant \
                 FROM attempts a CROSS JOIN runs r ON r.id = a.run_id \
                 WHERE a.status = 'ready' AND a.queue = ?1 AND a.available_at <= ?2 \
                   AND r.status IN (SELECT value FROM json_each(?3)) \
                   AND NOT EXISTS (SELECT 1 FROM paused_queues p WHERE p.name = ?1) \
                 ORDER BY a.priority DESC, a.available_at, a.id LIMIT ?4"
            ))
            .bind(queue)
            .bind(now)
            .bind(&dispatchable)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                candidates.push((attempt_from_row(row)?, row.text("run_tenant")?));
            }
        }
        sort_in_claim_order(&mut candidates, |(attempt, _)| attempt);
        let mut tenants: Vec<&str> = candidates
            .iter()
            .map(|(_, tenant)| tenant.as_str())
            .filter(|tenant| policy.tenant_capped(tenant))
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        let mut leased_per_tenant: HashMap<String, u32> = HashMap::new();
        for tenant in tenants {
            let leased = count_leased(
                &mut tx,
                "SELECT count(*) FROM attempts a JOIN runs r ON r.id = a.run_id \
                 WHERE a.status = 'leased' AND r.namespace || '/' || r.tenant = ?",
                tenant,
            )
            .await?;
            leased_per_tenant.insert(tenant.to_string(), leased);
        }
        let order: Vec<(&str, &str)> = candidates
            .iter()
            .map(|(attempt, tenant)| (attempt.queue.as_str(), tenant.as_str()))
            .collect();
        let (kept, _) = policy.within_caps(&order, &quotas, &leased_per_tenant);

        let mut claimed_ids = Vec::with_capacity(kept.len());
        let mut leased_by_run: BTreeMap<String, Vec<AttemptRecord>> = BTreeMap::new();
        for index in kept {
            let leased = policy.lease(&candidates[index].0).map_err(lease_refused)?;
            claimed_ids.push(leased.id.clone());
            leased_by_run
                .entry(leased.run_id.clone())
                .or_default()
                .push(leased);
        }
        let run_ids: Vec<&str> = leased_by_run.keys().map(String::as_str).collect();
        let mut runs = fetch_runs(&mut tx, &run_ids).await?;
        let mut writes = Writes::default();
        let mut leased_by_id: HashMap<String, AttemptRecord> = HashMap::new();
        let mut events = Vec::new();
        for (run_id, leased) in leased_by_run {
            let run = runs
                .remove(&run_id)
                .ok_or_else(|| not_found("run", &run_id))?;
            let mut plan = decide(&run, &leased);
            let leased = fold_claim_plan(&run, leased, &mut plan)?;
            writes.update_attempts(&run.id, leased.values().cloned());
            events.extend(writes.plan(&run, plan)?.1);
            leased_by_id.extend(leased);
        }
        writes.write(&mut tx).await?;
        tx.commit().await?;
        let attempts = claimed_ids
            .iter()
            .filter_map(|id| leased_by_id.remove(id))
            .collect();
        Ok(Claimed { attempts, events })
    }
}
