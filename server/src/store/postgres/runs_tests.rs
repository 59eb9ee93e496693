//! PostgreSQL-only behaviour of the run store: races between claims and
//! transitions on many connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;

use super::*;
use crate::kernel::lease::ClaimRequest;
use std::collections::{BTreeMap, HashSet};

use crate::store::{AttemptStatus, Plan, RunSnapshot, RunStatus, Store};

async fn fresh_store() -> PostgresStore {
    let url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
        .await
        .unwrap()
        .unwrap();
    let store = PostgresStore::connect(&url, crate::secrets::SecretBox::ephemeral())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + seconds, 0).unwrap()
}

fn run(id: &str) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        namespace: "default".to_string(),
        chain_id: "chain".to_string(),
        chain_version: 1,
        status: RunStatus::Queued,
        input: vec![1, 2, 3],
        output: None,
        error: None,
        labels: BTreeMap::new(),
        priority: 0,
        tenant: String::new(),
        request_id: None,
        steps: 0,
        executions: 0,
        heads: None,
        input_tokens: 0,
        output_tokens: 0,
        last_seq: 0,
        created_at: at(0),
        started_at: None,
        ended_at: None,
        updated_at: at(0),
        traceparent: None,
    }
}

fn ready_attempt(run_id: &str, step: i32) -> AttemptRecord {
    AttemptRecord {
        step,
        queue: "work".to_string(),
        available_at: at(step.into()),
        input: vec![step as u8],
        created_at: at(0),
        ..AttemptRecord::ready(
            format!("{run_id}-a{step:02}"),
            run_id.to_string(),
            format!("task{step}"),
            at(0),
        )
    }
}

fn claim_request(owner: &str, limit: u32) -> ClaimRequest {
    ClaimRequest {
        queues: vec!["work".to_string()],
        owner: owner.to_string(),
        limit,
        now: at(3_600),
        lease_ms: 30_000,
        caps: Default::default(),
    }
}

/// Marks the run running and writes one event per leased attempt.
fn start_run(run: &RunRecord, leased: &[AttemptRecord]) -> Plan {
    Plan {
        run: Some(RunRecord {
            status: RunStatus::Running,
            ..run.clone()
        }),
        events: leased.iter().map(|a| a.id.clone().into_bytes()).collect(),
        ..Plan::apply()
    }
}

/// Claimers lock ready attempts and then wait for their runs;
/// transitions hold a run and rewrite its ready attempts. Neither may
/// fail the other (no deadlock or lock conflict escapes the retries),
/// and no attempt may be leased twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_racing_transitions_never_fail_or_double_lease() {
    const RUNS: usize = 12;
    const ATTEMPTS_PER_RUN: i32 = 4;
    const TOTAL: usize = RUNS * ATTEMPTS_PER_RUN as usize;
    let store = Arc::new(fresh_store().await);
    let run_ids: Vec<String> = (0..RUNS).map(|i| format!("run{i:02}")).collect();
    for id in &run_ids {
        let attempts = (1..=ATTEMPTS_PER_RUN)
            .map(|s| ready_attempt(id, s))
            .collect();
        store
            .create_run(run(id), attempts, Vec::new(), None)
            .await
            .unwrap();
    }

    let leased = Arc::new(Mutex::new(Vec::<AttemptRecord>::new()));
    let mut claimers = Vec::new();
    for worker in 0..4 {
        let store = store.clone();
        let leased = leased.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("worker{worker}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while leased.lock().unwrap().len() < TOTAL {
                assert!(tokio::time::Instant::now() < deadline, "claims stalled");
                let claimed = store.claim(&claim_request(&owner, 3), &start_run).await?;
                leased.lock().unwrap().extend(claimed.attempts);
                tokio::task::yield_now().await;
            }
            StoreResult::Ok(())
        }));
    }
    let decisions = Arc::new(AtomicUsize::new(0));
    let mut touchers = Vec::new();
    for toucher in 0..4 {
        let store = store.clone();
        let run_ids = run_ids.clone();
        let decisions = decisions.clone();
        touchers.push(tokio::spawn(async move {
            let mut applied = BTreeMap::<String, i64>::new();
            for round in 0..6 {
                for id in run_ids.iter().cycle().skip(toucher * 3 + round).take(RUNS) {
                    let decisions = decisions.clone();
                    // Rewrites every ready attempt as it is: a row lock
                    // on each, in the middle of the claimers' work.
                    let decide = Decision::new(move |snapshot: &RunSnapshot| {
                        decisions.fetch_add(1, Ordering::Relaxed);
                        Plan {
                            attempt_updates: snapshot
                                .attempts
                                .iter()
                                .filter(|a| a.status == AttemptStatus::Ready)
                                .cloned()
                                .collect(),
                            events: vec![b"touch".to_vec()],
                            ..Plan::apply()
                        }
                    });
                    match store.transition(id, decide).await? {
                        TransitionOutcome::Applied { .. } => {
                            *applied.entry(id.clone()).or_default() += 1;
                        }
                        other => panic!("nothing rejects or replays here: {other:?}"),
                    }
                }
            }
            StoreResult::Ok(applied)
        }));
    }
    for claimer in claimers {
        claimer.await.unwrap().unwrap();
    }
    let mut touches = BTreeMap::<String, i64>::new();
    for toucher in touchers {
        for (id, count) in toucher.await.unwrap().unwrap() {
            *touches.entry(id).or_default() += count;
        }
    }

    let leased = leased.lock().unwrap().clone();
    let distinct: HashSet<&str> = leased.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(leased.len(), TOTAL, "every attempt leased once");
    assert_eq!(distinct.len(), TOTAL, "no attempt leased twice");
    for attempt in &leased {
        assert_eq!(store.get_attempt(&attempt.id).await.unwrap(), *attempt);
    }
    for id in &run_ids {
        let stored = store.get_run(id).await.unwrap();
        assert_eq!(stored.status, RunStatus::Running);
        let events = store.list_events(id, 0, 1_000).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=stored.last_seq).collect::<Vec<_>>());
        let expected = i64::from(ATTEMPTS_PER_RUN) + touches.get(id).copied().unwrap_or(0);
        assert_eq!(stored.last_seq, expected, "run {id}");
    }
    let transitions: i64 = touches.values().sum();
    eprintln!(
        "{transitions} transitions applied after {} decisions",
        decisions.load(Ordering::Relaxed)
    );
}

/// A claim that waited for a run's lock sees the run as the holder left
/// it: a run paused meanwhile keeps its attempts ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_rechecks_a_run_paused_while_it_waited() {
    let store = fresh_store().await;
    for id in ["r", "s"] {
        store
            .create_run(run(id), vec![ready_attempt(id, 1)], Vec::new(), None)
            .await
            .unwrap();
    }
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM runs WHERE id = 'r' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let claimer = {
        let store = store.clone();
        tokio::spawn(async move { store.claim(&claim_request("w", 10), &start_run).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query("UPDATE runs SET status = 'paused' WHERE id = 'r'")
        .execute(&mut *holder)
        .await
        .unwrap();
    holder.commit().await.unwrap();

    let claimed = claimer.await.unwrap().unwrap();
    let leased: Vec<&str> = claimed.attempts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(leased, ["s-a01"]);
    assert_eq!(
        store.get_attempt("r-a01").await.unwrap(),
        ready_attempt("r", 1)
    );
    let paused = store.get_run("r").await.unwrap();
    assert_eq!((paused.status, paused.last_seq), (RunStatus::Paused, 0));
}

#[tokio::test]
async fn a_taken_attempt_id_is_already_exists_and_creates_nothing() {
    let store = fresh_store().await;
    store
        .create_run(run("r"), vec![ready_attempt("r", 1)], Vec::new(), None)
        .await
        .unwrap();
    let clash = AttemptRecord {
        run_id: "s".to_string(),
        ..ready_attempt("r", 1)
    };
    let created = store
        .create_run(run("s"), vec![clash], vec![b"created".to_vec()], None)
        .await;
    assert!(
        matches!(
            &created,
            Err(StoreError::AlreadyExists { resource: "attempt", id }) if id == "r-a01"
        ),
        "{created:?}"
    );
    assert!(matches!(
        store.get_run("s").await,
        Err(StoreError::NotFound { .. })
    ));
}

/// The database guard behind the Rust checks: a claim plan that updates
/// another run's attempt under its own run id matches no row, and the
/// whole claim, leases included, rolls back.
#[tokio::test]
async fn a_claim_plan_reaching_into_another_run_rolls_back() {
    let store = fresh_store().await;
    store
        .create_run(run("a"), vec![ready_attempt("a", 1)], Vec::new(), None)
        .await
        .unwrap();
    let foreign = AttemptRecord {
        status: AttemptStatus::Waiting,
        ..ready_attempt("b", 1)
    };
    store
        .create_run(run("b"), vec![foreign.clone()], Vec::new(), None)
        .await
        .unwrap();
    let claimed = store
        .claim(&claim_request("w", 10), &move |run, leased| Plan {
            attempt_updates: vec![AttemptRecord {
                run_id: run.id.clone(),
                status: AttemptStatus::Cancelled,
                ..foreign.clone()
            }],
            ..start_run(run, leased)
        })
        .await;
    assert!(
        matches!(claimed, Err(StoreError::Corrupt(_))),
        "{claimed:?}"
    );
    assert_eq!(
        store.get_attempt("a-a01").await.unwrap(),
        ready_attempt("a", 1)
    );
    assert_eq!(
        store.get_attempt("b-a01").await.unwrap().status,
        AttemptStatus::Waiting
    );
    assert_eq!(store.get_run("a").await.unwrap(), run("a"));
}

/// Updates of the attempts a claim just leased are folded into the lease
/// write; what the claim returns is what is stored.
#[tokio::test]
async fn claim_plans_may_amend_the_leased_attempts() {
    let store = fresh_store().await;
    let attempts = vec![ready_attempt("r", 1), ready_attempt("r", 2)];
    store
        .create_run(run("r"), attempts, Vec::new(), None)
        .await
        .unwrap();
    let deadline = at(7_200) + TimeDelta::nanoseconds(1_234_567);
    let claimed = store
        .claim(&claim_request("w", 1), &move |run, leased| Plan {
            attempt_updates: leased
                .iter()
                .map(|a| AttemptRecord {
                    deadline: Some(deadline),
                    ..a.clone()
                })
                .collect(),
            ..start_run(run, leased)
        })
        .await
        .unwrap();
    assert_eq!(claimed.attempts.len(), 1);
    let attempt = &claimed.attempts[0];
    assert_eq!(attempt.id, "r-a01");
    assert_eq!(attempt.status, AttemptStatus::Leased);
    assert_eq!(attempt.deadline, Some(truncate_to_micros(deadline)));
    assert_eq!(attempt.lease_token.as_ref().map(String::len), Some(32));
    assert_eq!(store.get_attempt("r-a01").await.unwrap(), *attempt);
    assert_eq!(claimed.events.len(), 1);
    assert_eq!(store.get_run("r").await.unwrap().last_seq, 1);
}
