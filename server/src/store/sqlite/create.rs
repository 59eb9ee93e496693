//! Creating runs on SQLite: a batch of new runs checks its chains in one
//! read and writes in a few statements ([`Writes`]), however many runs it
//! holds. A run that cannot be created (a taken id, a
//! chain that changed, a repeated request) writes nothing and leaves the
//! others alone.

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteConnection;

use super::idempotency::{prior_result, remember_result};
use super::runs::fetch_run;
use super::to_json;
use super::writes::Writes;
use crate::store::codec::already_exists;
use crate::store::{ChainCheck, Created, CreatedRun, NewRun, SqliteStore, StoreError, StoreResult};

/// The heads (`deleted`, `latest_version`) of the chains `checks` name.
async fn chain_heads(
    conn: &mut SqliteConnection,
    checks: &[(&str, &ChainCheck)],
) -> StoreResult<HashMap<(String, String), (bool, i64)>> {
    if checks.is_empty() {
        return Ok(HashMap::new());
    }
    let mut keys: Vec<[&str; 2]> = checks
        .iter()
        .map(|(namespace, check)| [*namespace, check.chain_id.as_str()])
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let rows: Vec<(String, String, bool, i64)> = sqlx::query_as(
        "SELECT namespace, id, deleted, latest_version FROM chain_heads \
         WHERE (namespace, id) IN \
         (SELECT value ->> 0, value ->> 1 FROM json_each(?))",
    )
    .bind(to_json(&keys, "chain keys")?)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(namespace, id, deleted, latest)| ((namespace, id), (deleted, latest)))
        .collect())
}

/// Whether the chain a run was decided on is still the one to start.
fn check_chain(
    namespace: &str,
    check: Option<&ChainCheck>,
    heads: &HashMap<(String, String), (bool, i64)>,
) -> StoreResult<()> {
    let Some(check) = check else {
        return Ok(());
    };
    let current = match heads.get(&(namespace.to_string(), check.chain_id.clone())) {
        Some((false, latest)) => check.latest_version.is_none_or(|v| v == *latest),
        _ => false,
    };
    if current {
        Ok(())
    } else {
        Err(StoreError::ChainChanged {
            chain_id: check.chain_id.clone(),
        })
    }
}

impl SqliteStore {
    pub(super) async fn write_runs(
        &self,
        runs: Vec<NewRun>,
    ) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        crate::store::runs::check_distinct_keys(&runs)?;
        let mut tx = self.write_tx().await?;
        let checks: Vec<(&str, &ChainCheck)> = runs
            .iter()
            .filter_map(|new| Some((new.run.namespace.as_str(), new.chain_check.as_ref()?)))
            .collect();
        let heads = chain_heads(&mut tx, &checks).await?;
        // Run ids this batch takes: a repeat is AlreadyExists.
        let mut taken = HashSet::new();
        let mut writes = Writes::default();
        let mut results = Vec::with_capacity(runs.len());
        let mut keys = Vec::new();
        for new in runs {
            let NewRun {
                run,
                attempts,
                events,
                idempotency,
                chain_check,
            } = new;
            if let Some(prior) = prior_result(&mut tx, idempotency.as_ref()).await? {
                let record = fetch_run(&mut tx, &prior.resource_key).await?;
                let created = Created {
                    record,
                    replayed: true,
                };
                results.push(Ok((created, Vec::new())));
                continue;
            }
            if let Err(error) = check_chain(&run.namespace, chain_check.as_ref(), &heads) {
                results.push(Err(error));
                continue;
            }
            if taken.contains(&run.id) {
                results.push(Err(already_exists("run", &run.id)));
                continue;
            }
            let created = writes
                .new_run(run, attempts, events)
                .map(|(record, events)| {
                    taken.insert(record.id.clone());
                    if let Some(key) = idempotency {
                        keys.push((key, record.id.clone()));
                    }
                    let created = Created {
                        record,
                        replayed: false,
                    };
                    (created, events)
                });
            results.push(created);
        }
        let stored_already = writes.write(&mut tx).await?;
        for result in &mut results {
            if let Ok((created, _)) = result
                && !created.replayed
                && stored_already.contains(&created.record.id)
            {
                *result = Err(already_exists("run", &created.record.id));
            }
        }
        for (key, run_id) in &keys {
            if !stored_already.contains(run_id) {
                remember_result(&mut tx, Some(key), run_id, None).await?;
            }
        }
        tx.commit().await?;
        Ok(results)
    }
}
