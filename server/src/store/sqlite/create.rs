//! Creating runs on SQLite: a batch in one write transaction, each run with
//! its first attempts and events, its chain check and its idempotency key.

use sqlx::sqlite::SqliteConnection;

use super::idempotency::{prior_result, remember_result};
use super::runs::fetch_run;
use super::writes::{insert_attempt, insert_events, insert_run};
use crate::store::codec::{outside_run, run_as_stored};
use crate::store::{Created, CreatedRun, NewRun, RunRecord, SqliteStore, StoreError, StoreResult};

/// One run of a `create_runs` batch, inside its transaction. An error
/// other than a database error (`Database`, `Unavailable`, `StorageFull`)
/// has written nothing.
async fn create_one_run(conn: &mut SqliteConnection, new: NewRun) -> StoreResult<CreatedRun> {
    let NewRun {
        run,
        attempts,
        events,
        idempotency,
        chain_check,
    } = new;
    if let Some(prior) = prior_result(conn, idempotency.as_ref()).await? {
        let record = fetch_run(conn, &prior.resource_key).await?;
        let created = Created {
            record,
            replayed: true,
        };
        return Ok((created, Vec::new()));
    }
    if let Some(check) = &chain_check {
        let head: Option<(bool, i64)> =
            sqlx::query_as("SELECT deleted, latest_version FROM chain_heads WHERE id = ?")
                .bind(&check.chain_id)
                .fetch_optional(&mut *conn)
                .await?;
        let current = match head {
            Some((false, latest)) => check.latest_version.is_none_or(|v| v == latest),
            _ => false,
        };
        if !current {
            return Err(StoreError::ChainChanged {
                chain_id: check.chain_id.clone(),
            });
        }
    }
    // A run id taken already fails the insert (unique key): AlreadyExists.
    if let Some(stray) = attempts.iter().find(|attempt| attempt.run_id != run.id) {
        return Err(outside_run(
            &run.id,
            format!("creates attempt {:?} of run {:?}", stray.id, stray.run_id),
        ));
    }
    let record = RunRecord {
        last_seq: events.len() as i64,
        ..run_as_stored(run)
    };
    insert_run(conn, &record).await?;
    for attempt in &attempts {
        insert_attempt(conn, attempt).await?;
    }
    let events = insert_events(conn, &record.id, 0, events).await?;
    remember_result(conn, idempotency.as_ref(), &record.id, None).await?;
    let created = Created {
        record,
        replayed: false,
    };
    Ok((created, events))
}

impl SqliteStore {
    pub(super) async fn write_runs(
        &self,
        runs: Vec<NewRun>,
    ) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        crate::store::runs::check_distinct_keys(&runs)?;
        let mut tx = self.write_tx().await?;
        let mut results = Vec::with_capacity(runs.len());
        for new in runs {
            results.push(match create_one_run(&mut tx, new).await {
                Err(error @ StoreError::Database(_)) => return Err(error),
                Err(error) if error.is_fault() => return Err(error),
                result => result,
            });
        }
        tx.commit().await?;
        Ok(results)
    }
}
