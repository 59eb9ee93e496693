//! Creating runs on PostgreSQL: a whole batch, with first attempts, events,
//! idempotency keys and chain checks, in one statement ([`CREATE_RUNS`]).

use std::collections::HashMap;

use sqlx::Postgres;

use super::database_error;
use super::runs::fetch_run;
use super::writes::{bind_inserts, col, heads_column, write_error};
use crate::store::codec::{
    PlainColumns, attempt_as_stored, error_columns, outside_run, run_as_stored,
};
use crate::store::{
    AttemptRecord, ChainCheck, Created, CreatedRun, EventRecord, IdempotencyKey, NewRun,
    PostgresStore, RunRecord, StoreError, StoreResult,
};

/// New runs (`$30`..`$50` and `$58`..`$61`, one array element per run) with their first
/// attempts and events, their idempotency keys (`$54` run ids, `$55`
/// scopes, `$56` request ids, `$57` hashes) and their chain checks (`$51`
/// run ids, `$52` chain ids, `$53` expected latest versions or NULL, `$62`
/// namespaces): one
/// statement, so one round trip and, outside a transaction, one commit for
/// a whole batch of starts. A run whose chain check fails, or whose key
/// exists already, is skipped entirely and returned with the reason
/// (`chain` or `key`). An uncommitted insert of the same key makes the
/// statement wait for it, so a key is never taken twice.
const CREATE_RUNS: &str = concat!(
    "WITH failed_checks AS (\
     SELECT c.run_id FROM UNNEST($51::text[], $52::text[], $53::int8[], $62::text[]) \
     AS c(run_id, chain_id, latest, namespace) \
     LEFT JOIN chain_heads h ON h.namespace = c.namespace AND h.id = c.chain_id \
     WHERE h.id IS NULL OR h.deleted \
     OR (c.latest IS NOT NULL AND c.latest <> h.latest_version)), \
     key_inserts AS (\
     INSERT INTO idempotency_keys (scope, request_id, request_hash, resource_key) \
     SELECT k.scope, k.request_id, k.request_hash, k.run_id \
     FROM UNNEST($54::text[], $55::text[], $56::text[], $57::text[]) \
     AS k(run_id, scope, request_id, request_hash) \
     WHERE k.run_id NOT IN (SELECT run_id FROM failed_checks) \
     ON CONFLICT (scope, request_id) DO NOTHING RETURNING resource_key), \
     taken_keys AS (\
     SELECT k.run_id FROM UNNEST($54::text[]) AS k(run_id) \
     WHERE k.run_id NOT IN (SELECT run_id FROM failed_checks) \
     AND k.run_id NOT IN (SELECT resource_key FROM key_inserts)), \
     skipped AS (SELECT run_id FROM failed_checks UNION ALL SELECT run_id FROM taken_keys), ",
    insert_attempts_and_events!("WHERE u.run_id NOT IN (SELECT run_id FROM skipped)"),
    ", run_inserts AS (\
     INSERT INTO runs (id, chain_id, chain_version, status, input, output, error_message, \
     error_task_id, error_reason, labels, priority, tenant, request_id, steps, input_tokens, \
     output_tokens, last_seq, created_at, started_at, ended_at, updated_at, executions, heads, \
     traceparent, namespace) SELECT id, chain_id, chain_version, status, input, output, \
     error_message, error_task_id, \
     error_reason, labels::jsonb, priority, tenant, request_id, steps, input_tokens, \
     output_tokens, last_seq, created_at, started_at, ended_at, updated_at, executions, heads, \
     traceparent, namespace FROM UNNEST($30::text[], $31::text[], $32::int8[], $33::text[], $34::bytea[], \
     $35::bytea[], $36::bytea[], $37::text[], $38::text[], $39::text[], $40::int4[], \
     $41::text[], $42::text[], $43::int4[], $44::int8[], $45::int8[], $46::int8[], \
     $47::timestamptz[], $48::timestamptz[], $49::timestamptz[], $50::timestamptz[], \
     $58::int4[], $59::text[], $60::text[], $61::text[]) \
     AS u(id, chain_id, chain_version, status, input, output, error_message, error_task_id, \
     error_reason, labels, priority, tenant, request_id, steps, input_tokens, output_tokens, \
     last_seq, created_at, started_at, ended_at, updated_at, executions, heads, traceparent, \
     namespace) \
     WHERE u.id NOT IN (SELECT run_id FROM skipped) RETURNING 1) \
     SELECT run_id, 'chain' AS reason FROM failed_checks \
     UNION ALL SELECT run_id, 'key' AS reason FROM taken_keys"
);

/// Why [`CREATE_RUNS`] skipped a run.
enum Skipped {
    /// Its chain check failed.
    Chain,
    /// Its idempotency key exists already.
    Key,
}

/// Inserts `news` (their records, attempts and events as stored) with their
/// keys and checks in one statement; returns the runs it skipped.
async fn insert_runs<'c, E>(
    executor: E,
    news: &[NewRun],
    records: &[RunRecord],
    attempts: &[AttemptRecord],
    events: &[EventRecord],
) -> StoreResult<HashMap<String, Skipped>>
where
    E: sqlx::Executor<'c, Database = Postgres>,
{
    let errors: Vec<[Option<&str>; 3]> = records
        .iter()
        .map(|r| error_columns(r.error.as_ref()))
        .collect();
    let labels: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(&r.labels).unwrap_or_else(|_| "{}".to_string()))
        .collect();
    let heads = heads_column(records)?;
    let checks: Vec<(&str, &ChainCheck, &str)> = news
        .iter()
        .filter_map(|new| {
            let check = new.chain_check.as_ref()?;
            Some((new.run.id.as_str(), check, new.run.namespace.as_str()))
        })
        .collect();
    let keys: Vec<(&str, &IdempotencyKey)> = news
        .iter()
        .filter_map(|new| Some((new.run.id.as_str(), new.idempotency.as_ref()?)))
        .collect();
    let rows = bind_inserts(sqlx::query(CREATE_RUNS), attempts, events)
        .bind(col(records, |r| r.id.as_str()))
        .bind(col(records, |r| r.chain_id.as_str()))
        .bind(col(records, |r| r.chain_version))
        .bind(col(records, |r| r.status.as_str()))
        .bind(col(records, |r| r.input.as_slice()))
        .bind(col(records, |r| r.output.as_deref()))
        .bind(col(&errors, |e| e[0].map(str::as_bytes)))
        .bind(col(&errors, |e| e[1]))
        .bind(col(&errors, |e| e[2]))
        .bind(&labels)
        .bind(col(records, |r| r.priority))
        .bind(col(records, |r| r.tenant.as_str()))
        .bind(col(records, |r| r.request_id.as_deref()))
        .bind(col(records, |r| r.steps))
        .bind(col(records, |r| r.input_tokens))
        .bind(col(records, |r| r.output_tokens))
        .bind(col(records, |r| r.last_seq))
        .bind(col(records, |r| r.created_at))
        .bind(col(records, |r| r.started_at))
        .bind(col(records, |r| r.ended_at))
        .bind(col(records, |r| r.updated_at))
        .bind(col(&checks, |(run_id, _, _)| *run_id))
        .bind(col(&checks, |(_, c, _)| c.chain_id.as_str()))
        .bind(col(&checks, |(_, c, _)| c.latest_version))
        .bind(col(&keys, |(run_id, _)| *run_id))
        .bind(col(&keys, |(_, k)| k.scope.as_str()))
        .bind(col(&keys, |(_, k)| k.request_id.as_str()))
        .bind(col(&keys, |(_, k)| k.request_hash.as_str()))
        .bind(col(records, |r| r.executions))
        .bind(&heads)
        .bind(col(records, |r| r.traceparent.as_deref()))
        .bind(col(records, |r| r.namespace.as_str()))
        .bind(col(&checks, |(_, _, namespace)| *namespace))
        .fetch_all(executor)
        .await
        .map_err(|err| match database_error(&err) {
            Some(db) if db.constraint() == Some("runs_pkey") => StoreError::AlreadyExists {
                resource: "run",
                id: records
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            _ => write_error(err, attempts),
        })?;
    let mut skipped = HashMap::new();
    for row in &rows {
        let run_id = row.text("run_id")?;
        let reason = row.text("reason")?;
        let why = if reason == "chain" {
            Skipped::Chain
        } else {
            Skipped::Key
        };
        skipped.insert(run_id, why);
    }
    Ok(skipped)
}

/// The earlier creation an existing idempotency key guarded: a replay, a
/// mismatch, or `None` if the key expired meanwhile (the caller tries again).
async fn replay_of(
    pool: &sqlx::PgPool,
    key: &IdempotencyKey,
) -> StoreResult<Option<StoreResult<CreatedRun>>> {
    let existing = sqlx::query(
        "SELECT request_hash, resource_key FROM idempotency_keys \
         WHERE scope = $1 AND request_id = $2",
    )
    .bind(&key.scope)
    .bind(&key.request_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = existing else {
        return Ok(None);
    };
    let request_hash = row.text("request_hash")?;
    if request_hash != key.request_hash {
        return Ok(Some(Err(StoreError::IdempotencyMismatch {
            request_id: key.request_id.clone(),
        })));
    }
    let resource_key = row.text("resource_key")?;
    let mut conn = pool.acquire().await?;
    let record = fetch_run(&mut conn, &resource_key).await?;
    let created = Created {
        record,
        replayed: true,
    };
    Ok(Some(Ok((created, Vec::new()))))
}

impl PostgresStore {
    pub(super) async fn try_create_runs(
        &self,
        runs: &[NewRun],
    ) -> StoreResult<Vec<StoreResult<CreatedRun>>> {
        let mut results: Vec<Option<StoreResult<CreatedRun>>> = runs
            .iter()
            .map(|new| {
                new.attempts
                    .iter()
                    .find(|attempt| attempt.run_id != new.run.id)
                    .map(|stray| {
                        Err(outside_run(
                            &new.run.id,
                            format!("creates attempt {:?} of run {:?}", stray.id, stray.run_id),
                        ))
                    })
            })
            .collect();
        // A key that expires between the insert that found it and the read
        // of what it guarded sends its run round again.
        for _ in 0..3 {
            let pending: Vec<usize> = (0..runs.len()).filter(|i| results[*i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let news: Vec<NewRun> = pending.iter().map(|i| runs[*i].clone()).collect();
            let records: Vec<RunRecord> = news
                .iter()
                .map(|new| RunRecord {
                    last_seq: new.events.len() as i64,
                    ..run_as_stored(new.run.clone())
                })
                .collect();
            let attempts: Vec<AttemptRecord> = news
                .iter()
                .flat_map(|new| new.attempts.iter().cloned().map(attempt_as_stored))
                .collect();
            let events_of = |new: &NewRun| -> Vec<EventRecord> {
                (1..)
                    .zip(&new.events)
                    .map(|(seq, payload)| EventRecord {
                        run_id: new.run.id.clone(),
                        seq,
                        payload: payload.clone(),
                    })
                    .collect()
            };
            let events: Vec<EventRecord> = news.iter().flat_map(events_of).collect();
            // One statement: atomic on its own, so no transaction around it.
            let skipped = insert_runs(self.pool(), &news, &records, &attempts, &events).await?;
            for ((index, new), record) in pending.into_iter().zip(&news).zip(records) {
                results[index] = match skipped.get(&new.run.id) {
                    None => {
                        let created = Created {
                            record,
                            replayed: false,
                        };
                        Some(Ok((created, events_of(new))))
                    }
                    Some(Skipped::Chain) => Some(Err(StoreError::ChainChanged {
                        chain_id: new.run.chain_id.clone(),
                    })),
                    Some(Skipped::Key) => match &new.idempotency {
                        Some(key) => replay_of(self.pool(), key).await?,
                        None => Some(Err(StoreError::Corrupt(format!(
                            "run {:?} was skipped for a key it does not have",
                            new.run.id
                        )))),
                    },
                };
            }
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(StoreError::FailedPrecondition(
                        "the run's request_id is being expired concurrently; retry".into(),
                    ))
                })
            })
            .collect())
    }
}
