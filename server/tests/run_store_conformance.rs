//! RunStore conformance: one suite, run against every backend.
//!
//! Same shape as `store_conformance.rs`: each check is written once as
//! `async fn name(store: Runs)`; `store_tests!` (in `common/stores.rs`)
//! stamps out a `#[tokio::test]` per check and backend (`sqlite::name`,
//! `postgres::name`), so `cargo test --test run_store_conformance sqlite`
//! runs the SQLite half. The harness's store is a `dyn Store`, handed to
//! the checks as `Arc<dyn RunStore>`.
//!
//! Contract points the trait docs leave open and this suite pins down:
//! - timestamps are the caller's (the kernel owns time), kept to the
//!   microsecond;
//! - a plan that reaches outside its run (a run update for another id, an
//!   update of a missing or foreign attempt, a new attempt of another run)
//!   fails with `StoreError::Corrupt` and writes nothing;
//! - a claim decision that rejects fails the claim, which writes nothing;
//! - `due_attempts` orders by the moment an attempt became due (the earlier
//!   of lease expiry and deadline), then id.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use taskloom_server::kernel::lease::{Caps, ClaimRequest};
use taskloom_server::store::{
    AttemptRecord, AttemptStatus, ChainCheck, Claimed, Created, Decision, DueAttempt, EventRecord,
    IdempotencyKey, NewRun, Page, PageQuery, Plan, Rejection, RejectionKind, RunFailure, RunFilter,
    RunRecord, RunSnapshot, RunStatus, RunStore, Store, StoreError, StoreResult, TransitionOutcome,
    Verdict,
};

mod common;

use common::stores::{RawDatabase, audit};

type Runs = Arc<dyn RunStore>;

// ---------------------------------------------------------------------------
// The suite

store_tests!(harness;
    (harness.store.clone()) => [
        create_run_round_trips_exactly,
        statuses_round_trip,
        create_run_idempotency,
        concurrent_duplicate_creates_make_one_run,
        create_run_refuses_attempts_of_another_run,
        transition_applies_the_plan,
        transition_rejection_writes_nothing,
        transition_outside_its_run_rolls_back,
        transition_of_unknown_run_is_not_found,
        concurrent_transitions_lose_no_update,
        transition_many_applies_each_item,
        claim_order_and_eligibility,
        claim_applies_decisions_per_run,
        claim_rejecting_decision_writes_nothing,
        claim_without_queues_or_limit_claims_nothing,
        concurrent_claimers_lease_each_attempt_once,
        concurrent_claimers_stay_within_caps,
        due_attempts_by_lease_expiry_and_deadline,
        list_runs_filters,
        list_runs_paginate_newest_first,
        list_attempts_paginate_by_step,
        list_events_after_seq,
        missing_records_are_not_found,
        dead_letters_newest_first,
        next_ready_at_is_the_earliest_future_ready_attempt,
        snapshots_hold_heads_and_focus,
        run_text_with_nul_round_trips,
        create_runs_checks_chains_and_keys,
    ],
    (harness.store.clone(), harness.database.clone()) => [unknown_stored_statuses_are_corrupt],
);

// ---------------------------------------------------------------------------
// Fixtures and helpers

/// Asserts that `result` is an error matching `pattern`.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected {}, got {:?}", stringify!($pattern), other),
        }
    };
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A fixed instant `offset_ms` from the fixtures' epoch, at the microsecond
/// precision both stores keep.
fn at(offset_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_750_000_000_123_456).unwrap()
        + TimeDelta::milliseconds(offset_ms)
}

/// `at(offset_ms)` plus sub-microsecond digits the stores must drop.
fn precise(offset_ms: i64) -> DateTime<Utc> {
    at(offset_ms) + TimeDelta::nanoseconds(789)
}

fn truncated(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap()
}

fn run_as_stored(run: &RunRecord) -> RunRecord {
    RunRecord {
        created_at: truncated(run.created_at),
        started_at: run.started_at.map(truncated),
        ended_at: run.ended_at.map(truncated),
        updated_at: truncated(run.updated_at),
        ..run.clone()
    }
}

fn attempt_as_stored(attempt: &AttemptRecord) -> AttemptRecord {
    AttemptRecord {
        available_at: truncated(attempt.available_at),
        deadline: attempt.deadline.map(truncated),
        lease_expires_at: attempt.lease_expires_at.map(truncated),
        created_at: truncated(attempt.created_at),
        started_at: attempt.started_at.map(truncated),
        ended_at: attempt.ended_at.map(truncated),
        ..attempt.clone()
    }
}

/// A fresh queued run as the kernel would hand it to `create_run`.
fn run(id: &str) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        namespace: "default".to_string(),
        chain_id: "summarize".to_string(),
        chain_version: 2,
        status: RunStatus::Queued,
        input: format!("input of {id}").into_bytes(),
        output: None,
        error: None,
        labels: labels(&[("team", "ml")]),
        priority: 0,
        tenant: "acme".to_string(),
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

/// A ready attempt of `run` on the `internal` queue.
fn attempt(run: &RunRecord, id: &str, step: i32) -> AttemptRecord {
    AttemptRecord {
        id: id.to_string(),
        run_id: run.id.clone(),
        task_id: format!("task-{step}"),
        attempt: 1,
        step,
        status: AttemptStatus::Ready,
        queue: "internal".to_string(),
        priority: run.priority,
        available_at: at(0),
        deadline: None,
        lease_owner: None,
        lease_token: None,
        lease_expires_at: None,
        lease_expiries: 0,
        input: format!("input of {id}").into_bytes(),
        prompt: None,
        output: None,
        error: None,
        dead_lettered: false,
        backend_id: None,
        model: None,
        input_tokens: 0,
        output_tokens: 0,
        created_at: at(0),
        started_at: None,
        ended_at: None,
    }
}

fn payload(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn event(run_id: &str, seq: i64, text: &str) -> EventRecord {
    EventRecord {
        run_id: run_id.to_string(),
        seq,
        payload: payload(text),
    }
}

fn key(scope: &str, request_id: &str, request_hash: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey {
        scope: scope.to_string(),
        request_id: request_id.to_string(),
        request_hash: request_hash.to_string(),
    })
}

/// Creates `run` with `attempts` and one event per text; returns the stored
/// run.
async fn create(
    store: &Runs,
    run: RunRecord,
    attempts: Vec<AttemptRecord>,
    events: &[&str],
) -> RunRecord {
    let events = events.iter().map(|text| payload(text)).collect();
    let (created, _) = store.create_run(run, attempts, events, None).await.unwrap();
    created.record
}

fn decide(f: impl Fn(&RunSnapshot) -> Plan + Send + Sync + 'static) -> Decision {
    Decision::new(f)
}

fn first_page(limit: u32) -> PageQuery {
    PageQuery { limit, after: None }
}

/// A large first page: everything, for small fixtures.
fn everything() -> PageQuery {
    first_page(1000)
}

async fn all_attempts(store: &Runs, run_id: &str) -> Vec<AttemptRecord> {
    let page = store.list_attempts(run_id, everything()).await.unwrap();
    assert_eq!(page.next_after, None);
    page.items
}

async fn all_events(store: &Runs, run_id: &str) -> Vec<EventRecord> {
    store.list_events(run_id, 0, 10_000).await.unwrap()
}

/// Every run of the namespace `default`.
fn default_namespace() -> RunFilter {
    RunFilter {
        namespace: "default".to_string(),
        ..RunFilter::default()
    }
}

async fn run_ids(store: &Runs, filter: &RunFilter) -> Vec<String> {
    let page = store.list_runs(filter, everything()).await.unwrap();
    assert_eq!(page.next_after, None);
    page.items.into_iter().map(|run| run.id).collect()
}

fn ids(attempts: &[AttemptRecord]) -> Vec<&str> {
    attempts.iter().map(|a| a.id.as_str()).collect()
}

/// Follows `next_after` from the first page to the last, checking the page
/// contract on the way: no page over `limit`, a page that promises more is
/// full and its `next_after` is the key of its last item.
async fn all_pages<T, Key, List, Fut>(limit: u32, key_of: Key, mut list: List) -> Vec<Page<T>>
where
    T: Debug,
    Key: Fn(&T) -> String,
    List: FnMut(PageQuery) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    let mut pages: Vec<Page<T>> = Vec::new();
    let mut after = None;
    loop {
        let page = list(PageQuery { limit, after }).await.unwrap();
        assert!(
            page.items.len() <= limit as usize,
            "page over the limit: {page:?}"
        );
        if let Some(next) = &page.next_after {
            assert_eq!(
                page.items.len(),
                limit as usize,
                "short page with more: {page:?}"
            );
            assert_eq!(Some(next.clone()), page.items.last().map(&key_of));
        }
        after = page.next_after.clone();
        pages.push(page);
        if after.is_none() {
            return pages;
        }
        assert!(pages.len() <= 100, "pagination does not terminate");
    }
}

fn page_sizes<T>(pages: &[Page<T>]) -> Vec<usize> {
    pages.iter().map(|page| page.items.len()).collect()
}

fn flatten<T>(pages: Vec<Page<T>>) -> Vec<T> {
    pages.into_iter().flat_map(|page| page.items).collect()
}

fn claim_request(queues: &[&str], owner: &str, limit: u32, now: DateTime<Utc>) -> ClaimRequest {
    ClaimRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        owner: owner.to_string(),
        limit,
        now,
        lease_ms: 30_000,
        caps: Default::default(),
    }
}

/// The arguments of one call of a claim decision.
type ClaimCall = (RunRecord, Vec<AttemptRecord>);

/// A claim decision that writes nothing.
fn accept_claim(_run: &RunRecord, _leased: &[AttemptRecord]) -> Plan {
    Plan::apply()
}

/// What a claim must have made of `original`: leased to `owner` at `now`
/// with a 30 s lease, under the token it reports.
fn leased(original: &AttemptRecord, got: &AttemptRecord, owner: &str, now: DateTime<Utc>) {
    let token = got.lease_token.clone().unwrap_or_default();
    assert!(!token.is_empty(), "no lease token: {got:?}");
    assert_eq!(
        got,
        &AttemptRecord {
            status: AttemptStatus::Leased,
            lease_owner: Some(owner.to_string()),
            lease_token: Some(token),
            lease_expires_at: Some(truncated(now) + TimeDelta::milliseconds(30_000)),
            started_at: Some(truncated(now)),
            ..original.clone()
        }
    );
}

// ---------------------------------------------------------------------------
// Creating runs

async fn create_run_round_trips_exactly(store: Runs) {
    let input = RunRecord {
        status: RunStatus::Failed,
        output: Some(payload("final output")),
        error: Some(RunFailure {
            message: "the hook answered 500".to_string(),
            task_id: "notify".to_string(),
            reason: "handler_error".to_string(),
        }),
        labels: labels(&[("team", "ml"), ("env", "prod"), ("app.io/name", "x\"y")]),
        priority: -3,
        tenant: "globex".to_string(),
        request_id: Some("req-1".to_string()),
        steps: 4,
        input_tokens: 1_234_567_890_123,
        output_tokens: 567,
        // The store sets last_seq from the events.
        last_seq: 99,
        created_at: precise(0),
        started_at: Some(precise(10)),
        ended_at: Some(precise(20)),
        updated_at: precise(30),
        ..run("run-1")
    };
    let full = AttemptRecord {
        attempt: 3,
        status: AttemptStatus::Leased,
        queue: "gpu".to_string(),
        priority: -3,
        available_at: precise(1),
        deadline: Some(precise(50)),
        lease_owner: Some("worker-7".to_string()),
        lease_token: Some("token-1".to_string()),
        lease_expires_at: Some(precise(40)),
        lease_expiries: 2,
        prompt: Some("Summarize: {{ input }} ✓".to_string()),
        output: Some(payload("partial")),
        error: Some("retrying".to_string()),
        dead_lettered: true,
        backend_id: Some("b-1".to_string()),
        model: Some("llama3".to_string()),
        input_tokens: 77,
        output_tokens: 88,
        created_at: precise(2),
        started_at: Some(precise(3)),
        ended_at: Some(precise(4)),
        ..attempt(&input, "att-2", 2)
    };
    // An encoded empty message is zero bytes; it must not come back as NULL.
    let bare = AttemptRecord {
        input: Vec::new(),
        ..attempt(&input, "att-1", 1)
    };
    let (created, events) = store
        .create_run(
            input.clone(),
            vec![full.clone(), bare.clone()],
            vec![payload("created"), payload("queued"), Vec::new()],
            None,
        )
        .await
        .unwrap();
    assert!(!created.replayed);
    let expected = RunRecord {
        last_seq: 3,
        ..run_as_stored(&input)
    };
    assert_eq!(created.record, expected);
    assert_eq!(
        events,
        vec![
            event("run-1", 1, "created"),
            event("run-1", 2, "queued"),
            event("run-1", 3, ""),
        ]
    );
    assert_eq!(store.get_run("run-1").await.unwrap(), expected);
    assert_eq!(
        store.get_attempt("att-2").await.unwrap(),
        attempt_as_stored(&full)
    );
    assert_eq!(store.get_attempt("att-1").await.unwrap(), bare);
    assert_eq!(
        all_attempts(&store, "run-1").await,
        vec![bare, attempt_as_stored(&full)]
    );
    assert_eq!(all_events(&store, "run-1").await, events);

    // No optional fields, no attempts, no events, an empty input.
    let minimal = RunRecord {
        input: Vec::new(),
        labels: BTreeMap::new(),
        ..run("run-2")
    };
    let (created, events) = store
        .create_run(minimal.clone(), Vec::new(), Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(
        created,
        Created {
            record: minimal.clone(),
            replayed: false
        }
    );
    assert!(events.is_empty());
    assert_eq!(store.get_run("run-2").await.unwrap(), minimal);
    assert!(all_attempts(&store, "run-2").await.is_empty());
    assert!(all_events(&store, "run-2").await.is_empty());
}

async fn statuses_round_trip(store: Runs) {
    for (i, (run_status, attempt_status)) in RunStatus::ALL
        .into_iter()
        .zip(AttemptStatus::ALL)
        .enumerate()
    {
        let stored = create(
            &store,
            RunRecord {
                status: run_status,
                ..run(&format!("run-{i}"))
            },
            Vec::new(),
            &[],
        )
        .await;
        let attempt = AttemptRecord {
            status: attempt_status,
            ..attempt(&stored, &format!("att-{i}"), 1)
        };
        // Attempts also arrive through transitions.
        let new_attempt = attempt.clone();
        let outcome = store
            .transition(
                &stored.id,
                decide(move |_| Plan {
                    new_attempts: vec![new_attempt.clone()],
                    ..Plan::apply()
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            TransitionOutcome::Applied {
                run: stored.clone(),
                events: Vec::new()
            }
        );
        assert_eq!(store.get_run(&stored.id).await.unwrap().status, run_status);
        assert_eq!(store.get_attempt(&attempt.id).await.unwrap(), attempt);
    }
}

async fn create_run_idempotency(store: Runs) {
    let original = run("run-1");
    let (first, first_events) = store
        .create_run(
            original.clone(),
            vec![attempt(&original, "att-1", 1)],
            vec![payload("created")],
            key("StartRun", "req-1", "hash-1"),
        )
        .await
        .unwrap();
    assert!(!first.replayed);

    // A repeat returns the stored run and writes nothing, whatever it carries.
    let other = RunRecord {
        priority: 9,
        ..run("run-2")
    };
    let (repeat, repeat_events) = store
        .create_run(
            other.clone(),
            vec![attempt(&other, "att-2", 1)],
            vec![payload("other")],
            key("StartRun", "req-1", "hash-1"),
        )
        .await
        .unwrap();
    assert_eq!(
        repeat,
        Created {
            record: first.record.clone(),
            replayed: true
        }
    );
    assert!(repeat_events.is_empty());
    assert_err!(store.get_run("run-2").await, StoreError::NotFound { .. });
    assert_err!(
        store.get_attempt("att-2").await,
        StoreError::NotFound { .. }
    );
    assert_eq!(all_events(&store, "run-1").await, first_events);

    // The same request id with another payload is refused.
    assert_err!(
        store
            .create_run(
                run("run-3"),
                Vec::new(),
                Vec::new(),
                key("StartRun", "req-1", "hash-other"),
            )
            .await,
        StoreError::IdempotencyMismatch { .. }
    );
    assert_err!(store.get_run("run-3").await, StoreError::NotFound { .. });

    // Request ids are scoped by operation.
    let (scoped, _) = store
        .create_run(
            run("run-3"),
            Vec::new(),
            Vec::new(),
            key("RetryRun", "req-1", "hash-other"),
        )
        .await
        .unwrap();
    assert!(!scoped.replayed);
    assert_eq!(scoped.record.id, "run-3");

    // An id clash writes nothing and does not reserve its request id.
    let clash = RunRecord {
        priority: 5,
        ..run("run-1")
    };
    assert_err!(
        store
            .create_run(
                clash.clone(),
                vec![attempt(&clash, "att-9", 1)],
                vec![payload("clash")],
                key("StartRun", "req-4", "hash-a"),
            )
            .await,
        StoreError::AlreadyExists { .. }
    );
    assert_eq!(store.get_run("run-1").await.unwrap(), first.record);
    assert_err!(
        store.get_attempt("att-9").await,
        StoreError::NotFound { .. }
    );
    assert_eq!(all_events(&store, "run-1").await, first_events);
    let (reused, _) = store
        .create_run(
            run("run-4"),
            Vec::new(),
            Vec::new(),
            key("StartRun", "req-4", "hash-b"),
        )
        .await
        .unwrap();
    assert!(!reused.replayed);
    assert_eq!(
        run_ids(&store, &default_namespace()).await,
        ["run-4", "run-3", "run-1"]
    );
}

async fn concurrent_duplicate_creates_make_one_run(store: Runs) {
    let racers: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let racer = run(&format!("run-{i:02}"));
                let attempts = vec![attempt(&racer, &format!("att-{i:02}"), 1)];
                store
                    .create_run(
                        racer,
                        attempts,
                        vec![payload("created")],
                        key("StartRun", "req-race", "hash-race"),
                    )
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.unwrap().unwrap());
    }
    let winners: Vec<_> = results
        .iter()
        .filter(|(created, _)| !created.replayed)
        .collect();
    assert_eq!(winners.len(), 1);
    let (winner, winner_events) = winners[0];
    assert_eq!(winner_events.len(), 1);
    for (created, events) in &results {
        assert_eq!(created.record, winner.record);
        if created.replayed {
            assert!(events.is_empty());
        }
    }
    assert_eq!(
        run_ids(&store, &default_namespace()).await,
        [winner.record.id.as_str()]
    );
    assert_eq!(all_attempts(&store, &winner.record.id).await.len(), 1);
    assert_eq!(all_events(&store, &winner.record.id).await.len(), 1);
}

async fn create_run_refuses_attempts_of_another_run(store: Runs) {
    let existing = create(&store, run("run-1"), Vec::new(), &[]).await;
    let new = run("run-2");
    assert_err!(
        store
            .create_run(
                new.clone(),
                vec![attempt(&new, "att-1", 1), attempt(&existing, "att-2", 2)],
                vec![payload("created")],
                None,
            )
            .await,
        StoreError::Corrupt(_)
    );
    assert_err!(store.get_run("run-2").await, StoreError::NotFound { .. });
    assert_err!(
        store.get_attempt("att-1").await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.get_attempt("att-2").await,
        StoreError::NotFound { .. }
    );
    assert!(all_attempts(&store, "run-1").await.is_empty());
}

// ---------------------------------------------------------------------------
// Transitions

async fn transition_applies_the_plan(store: Runs) {
    let input = RunRecord {
        steps: 2,
        ..run("run-1")
    };
    // Step order differs from id order: snapshots follow the step.
    let att_z = AttemptRecord {
        prompt: Some("first prompt".to_string()),
        ..attempt(&input, "att-z", 1)
    };
    let att_a = attempt(&input, "att-a", 2);
    let stored = create(
        &store,
        input,
        vec![att_a.clone(), att_z.clone()],
        &["created"],
    )
    .await;

    let failure = RunFailure {
        message: "m".to_string(),
        task_id: "t".to_string(),
        reason: "r".to_string(),
    };
    let run_update = RunRecord {
        status: RunStatus::Running,
        output: Some(payload("run output")),
        error: Some(failure),
        steps: 3,
        input_tokens: 10,
        output_tokens: 20,
        started_at: Some(at(5)),
        ended_at: Some(at(6)),
        updated_at: at(7),
        // Written at creation only, or kept by the store: ignored.
        chain_id: "other-chain".to_string(),
        chain_version: 99,
        input: payload("rewritten"),
        labels: labels(&[("x", "y")]),
        priority: 42,
        tenant: "other-tenant".to_string(),
        request_id: Some("other-request".to_string()),
        last_seq: 1000,
        created_at: at(-1000),
        ..stored.clone()
    };
    let expected_run = RunRecord {
        status: RunStatus::Running,
        output: Some(payload("run output")),
        error: run_update.error.clone(),
        steps: 3,
        input_tokens: 10,
        output_tokens: 20,
        started_at: Some(at(5)),
        ended_at: Some(at(6)),
        updated_at: at(7),
        last_seq: 3,
        ..stored.clone()
    };
    let attempt_update = AttemptRecord {
        status: AttemptStatus::Failed,
        available_at: at(1),
        deadline: Some(at(2)),
        lease_owner: Some("worker-1".to_string()),
        lease_token: Some("token-1".to_string()),
        lease_expires_at: Some(at(3)),
        lease_expiries: 1,
        output: Some(payload("attempt output")),
        error: Some("gave up".to_string()),
        dead_lettered: true,
        backend_id: Some("b-1".to_string()),
        model: Some("llama3".to_string()),
        input_tokens: 11,
        output_tokens: 22,
        started_at: Some(at(4)),
        ended_at: Some(precise(5)),
        // Written at creation only: ignored.
        task_id: "renamed".to_string(),
        attempt: 9,
        step: 99,
        queue: "elsewhere".to_string(),
        priority: 42,
        input: payload("rewritten"),
        prompt: Some("rewritten prompt".to_string()),
        created_at: at(-1000),
        ..att_z.clone()
    };
    let expected_att_z = AttemptRecord {
        task_id: att_z.task_id.clone(),
        attempt: att_z.attempt,
        step: att_z.step,
        queue: att_z.queue.clone(),
        priority: att_z.priority,
        input: att_z.input.clone(),
        prompt: att_z.prompt.clone(),
        created_at: att_z.created_at,
        ended_at: Some(at(5)),
        ..attempt_update.clone()
    };
    let new_attempt = AttemptRecord {
        task_id: "next".to_string(),
        prompt: Some("next prompt".to_string()),
        ..attempt(&stored, "att-c", 3)
    };

    let seen: Arc<Mutex<Vec<RunSnapshot>>> = Arc::default();
    let plan = Plan {
        verdict: Verdict::Apply,
        run: Some(run_update),
        attempt_updates: vec![attempt_update],
        new_attempts: vec![new_attempt.clone()],
        events: vec![payload("failed"), payload("next")],
        repeat: false,
    };
    let recorder = seen.clone();
    let outcome = store
        .transition(
            "run-1",
            decide(move |snapshot| {
                recorder.lock().unwrap().push(snapshot.clone());
                plan.clone()
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![RunSnapshot {
            run: stored.clone(),
            attempts: vec![att_z.clone(), att_a.clone()],
        }]
    );
    assert_eq!(
        outcome,
        TransitionOutcome::Applied {
            run: expected_run.clone(),
            events: vec![event("run-1", 2, "failed"), event("run-1", 3, "next")],
        }
    );
    assert_eq!(store.get_run("run-1").await.unwrap(), expected_run);
    assert_eq!(
        all_attempts(&store, "run-1").await,
        vec![expected_att_z.clone(), att_a.clone(), new_attempt.clone()]
    );
    assert_eq!(
        all_events(&store, "run-1").await,
        vec![
            event("run-1", 1, "created"),
            event("run-1", 2, "failed"),
            event("run-1", 3, "next"),
        ]
    );
    // The update dead-lettered the attempt.
    assert_eq!(
        store
            .list_dead_letters("default", None, everything())
            .await
            .unwrap()
            .items,
        vec![expected_att_z.clone()]
    );

    // Events alone advance last_seq and change nothing else.
    let outcome = store
        .transition(
            "run-1",
            decide(|snapshot| {
                assert_eq!(snapshot.run.last_seq, 3);
                Plan {
                    events: vec![payload("progress")],
                    ..Plan::apply()
                }
            }),
        )
        .await
        .unwrap();
    let after_event = RunRecord {
        last_seq: 4,
        ..expected_run
    };
    assert_eq!(
        outcome,
        TransitionOutcome::Applied {
            run: after_event.clone(),
            events: vec![event("run-1", 4, "progress")],
        }
    );

    // An empty plan is applied and writes nothing.
    let outcome = store
        .transition("run-1", decide(|_| Plan::apply()))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TransitionOutcome::Applied {
            run: after_event.clone(),
            events: Vec::new(),
        }
    );
    assert_eq!(store.get_run("run-1").await.unwrap(), after_event);
    assert_eq!(all_events(&store, "run-1").await.len(), 4);
}

async fn transition_rejection_writes_nothing(store: Runs) {
    let stored = create(
        &store,
        run("run-1"),
        vec![attempt(&run("run-1"), "att-1", 1)],
        &["created"],
    )
    .await;
    let attempts = all_attempts(&store, "run-1").await;
    let rejection = Rejection {
        kind: RejectionKind::FailedPrecondition,
        message: "stale lease token".to_string(),
    };
    // A rejecting plan that carries writes: none of them may land.
    let plan = Plan {
        verdict: Verdict::Reject(rejection.clone()),
        run: Some(RunRecord {
            status: RunStatus::Cancelled,
            steps: 7,
            ..stored.clone()
        }),
        attempt_updates: vec![AttemptRecord {
            status: AttemptStatus::Cancelled,
            ..attempts[0].clone()
        }],
        new_attempts: vec![attempt(&stored, "att-2", 2)],
        events: vec![payload("cancelled")],
        repeat: false,
    };
    let outcome = store
        .transition("run-1", decide(move |_| plan.clone()))
        .await
        .unwrap();
    assert_eq!(outcome, TransitionOutcome::Rejected(rejection));
    assert_eq!(store.get_run("run-1").await.unwrap(), stored);
    assert_eq!(all_attempts(&store, "run-1").await, attempts);
    assert_err!(
        store.get_attempt("att-2").await,
        StoreError::NotFound { .. }
    );
    assert_eq!(
        all_events(&store, "run-1").await,
        vec![event("run-1", 1, "created")]
    );

    // `Plan::reject` reports its kind and message.
    let outcome = store
        .transition(
            "run-1",
            decide(|_| Plan::reject(RejectionKind::InvalidArgument, "bad input")),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        TransitionOutcome::Rejected(Rejection {
            kind: RejectionKind::InvalidArgument,
            message: "bad input".to_string(),
        })
    );
    assert_eq!(store.get_run("run-1").await.unwrap(), stored);
}

async fn transition_outside_its_run_rolls_back(store: Runs) {
    let run_a = create(
        &store,
        run("run-a"),
        vec![attempt(&run("run-a"), "att-a", 1)],
        &["created"],
    )
    .await;
    let run_b = create(
        &store,
        run("run-b"),
        vec![attempt(&run("run-b"), "att-b", 1)],
        &["created"],
    )
    .await;
    let attempt_b = store.get_attempt("att-b").await.unwrap();

    // Each plan starts with valid writes (run update, event) and then
    // reaches outside run-a; the valid writes must roll back too.
    let bad_plans = [
        (
            "update of another run's attempt",
            Plan {
                attempt_updates: vec![AttemptRecord {
                    status: AttemptStatus::Cancelled,
                    ..attempt_b.clone()
                }],
                ..Plan::apply()
            },
        ),
        (
            "update of a missing attempt",
            Plan {
                attempt_updates: vec![AttemptRecord {
                    status: AttemptStatus::Cancelled,
                    ..attempt(&run_a, "att-missing", 2)
                }],
                ..Plan::apply()
            },
        ),
        (
            "new attempt of another run",
            Plan {
                new_attempts: vec![attempt(&run_b, "att-new", 2)],
                ..Plan::apply()
            },
        ),
        (
            "update of another run",
            Plan {
                run: Some(RunRecord {
                    status: RunStatus::Cancelled,
                    ..run_b.clone()
                }),
                ..Plan::apply()
            },
        ),
    ];
    for (what, bad) in bad_plans {
        let plan = Plan {
            run: bad.run.clone().or_else(|| {
                Some(RunRecord {
                    status: RunStatus::Running,
                    steps: 5,
                    ..run_a.clone()
                })
            }),
            events: vec![payload("running")],
            ..bad
        };
        let result = store
            .transition("run-a", decide(move |_| plan.clone()))
            .await;
        assert!(
            matches!(result, Err(StoreError::Corrupt(_))),
            "{what}: expected Corrupt, got {result:?}"
        );
        assert_eq!(store.get_run("run-a").await.unwrap(), run_a, "{what}");
        assert_eq!(store.get_run("run-b").await.unwrap(), run_b, "{what}");
        assert_eq!(
            all_attempts(&store, "run-a").await,
            vec![attempt(&run_a, "att-a", 1)],
            "{what}"
        );
        assert_eq!(
            all_attempts(&store, "run-b").await,
            vec![attempt_b.clone()],
            "{what}"
        );
        assert_eq!(all_events(&store, "run-a").await.len(), 1, "{what}");
        assert_err!(
            store.get_attempt("att-missing").await,
            StoreError::NotFound { .. }
        );
        assert_err!(
            store.get_attempt("att-new").await,
            StoreError::NotFound { .. }
        );
    }
}

async fn transition_of_unknown_run_is_not_found(store: Runs) {
    create(&store, run("run-1"), Vec::new(), &[]).await;
    let called = Arc::new(AtomicBool::new(false));
    let flag = called.clone();
    assert_err!(
        store
            .transition(
                "run-404",
                decide(move |_| {
                    flag.store(true, Ordering::SeqCst);
                    Plan::apply()
                }),
            )
            .await,
        StoreError::NotFound { .. }
    );
    assert!(
        !called.load(Ordering::SeqCst),
        "decide called without a run"
    );
}

async fn concurrent_transitions_lose_no_update(store: Runs) {
    create(&store, run("run-1"), Vec::new(), &[]).await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .transition(
                        "run-1",
                        decide(|snapshot| {
                            let steps = snapshot.run.steps + 1;
                            Plan {
                                run: Some(RunRecord {
                                    steps,
                                    ..snapshot.run.clone()
                                }),
                                events: vec![payload(&format!("step {steps}"))],
                                ..Plan::apply()
                            }
                        }),
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        assert!(matches!(outcome, TransitionOutcome::Applied { .. }));
    }
    let stored = store.get_run("run-1").await.unwrap();
    assert_eq!((stored.steps, stored.last_seq), (20, 20));
    // Each event saw the state its sequence number implies: no transition
    // read a snapshot another one had already moved past.
    let expected: Vec<EventRecord> = (1..=20)
        .map(|seq| event("run-1", seq, &format!("step {seq}")))
        .collect();
    assert_eq!(all_events(&store, "run-1").await, expected);
}

async fn transition_many_applies_each_item(store: Runs) {
    for id in ["run-a", "run-b", "run-c"] {
        create(&store, run(id), Vec::new(), &["created"]).await;
    }
    let bump = || {
        decide(|snapshot| Plan {
            run: Some(RunRecord {
                steps: snapshot.run.steps + 1,
                ..snapshot.run.clone()
            }),
            events: vec![payload("bumped")],
            ..Plan::apply()
        })
    };
    let results = store
        .transition_many(vec![
            ("run-c".to_string(), bump()),
            ("missing".to_string(), bump()),
            (
                "run-b".to_string(),
                decide(|_| Plan::reject(RejectionKind::FailedPrecondition, "no")),
            ),
            ("run-a".to_string(), bump()),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 4);
    match &results[0] {
        Ok(TransitionOutcome::Applied { run, events }) => {
            assert_eq!((run.id.as_str(), run.steps, run.last_seq), ("run-c", 1, 2));
            assert_eq!(events, &vec![event("run-c", 2, "bumped")]);
        }
        other => panic!("run-c applied: {other:?}"),
    }
    assert!(
        matches!(results[1], Err(StoreError::NotFound { .. })),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Ok(TransitionOutcome::Rejected(_))),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(results[3], Ok(TransitionOutcome::Applied { .. })),
        "{:?}",
        results[3]
    );
    assert_eq!(store.get_run("run-a").await.unwrap().steps, 1);
    assert_eq!(
        store.get_run("run-b").await.unwrap().steps,
        0,
        "rejected: untouched"
    );
    assert_eq!(all_events(&store, "run-b").await.len(), 1);
    // A batch naming a run twice is refused whole.
    let refused = store
        .transition_many(vec![
            ("run-a".to_string(), bump()),
            ("run-a".to_string(), bump()),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );
    assert_eq!(store.get_run("run-a").await.unwrap().steps, 1);
    // An item reaching outside its run fails the whole batch: nothing written.
    let stray = store
        .transition_many(vec![
            ("run-a".to_string(), bump()),
            (
                "run-c".to_string(),
                decide(|snapshot| Plan {
                    new_attempts: vec![attempt(&run("run-a"), "stray", 99)],
                    run: Some(snapshot.run.clone()),
                    ..Plan::apply()
                }),
            ),
        ])
        .await;
    assert!(stray.is_err());
    assert_eq!(
        store.get_run("run-a").await.unwrap().steps,
        1,
        "rolled back"
    );
}

// ---------------------------------------------------------------------------
// Claims

async fn claim_order_and_eligibility(store: Runs) {
    let ready =
        |run: &RunRecord, id: &str, queue: &str, priority: i32, available_ms: i64| AttemptRecord {
            queue: queue.to_string(),
            priority,
            available_at: at(available_ms),
            ..attempt(run, id, 1)
        };
    let run_a = run("run-a");
    let a_attempts = vec![
        ready(&run_a, "att-a1", "q", 0, -300),
        ready(&run_a, "att-a2", "q", 5, -100),
        ready(&run_a, "att-a3", "q", 5, -200),
        ready(&run_a, "att-a4", "other", 9, -900),
        // Not yet available.
        ready(&run_a, "att-a5", "q", 9, 1),
        AttemptRecord {
            status: AttemptStatus::Waiting,
            ..ready(&run_a, "att-a6", "q", 9, -900)
        },
        AttemptRecord {
            status: AttemptStatus::Succeeded,
            ..ready(&run_a, "att-a7", "q", 9, -900)
        },
    ];
    let run_b = RunRecord {
        status: RunStatus::Running,
        ..run("run-b")
    };
    let b_attempts = vec![
        // Ties with att-a3 on priority and availability: the id decides.
        ready(&run_b, "att-b1", "q", 5, -200),
        ready(&run_b, "att-b2", "q2", 1, -50),
        // Available exactly now.
        ready(&run_b, "att-b3", "q", 0, 0),
    ];
    let mut originals: BTreeMap<String, AttemptRecord> = BTreeMap::new();
    for attempt in a_attempts.iter().chain(&b_attempts) {
        originals.insert(attempt.id.clone(), attempt.clone());
    }
    create(&store, run_a, a_attempts, &[]).await;
    create(&store, run_b, b_attempts, &[]).await;
    // Runs that may not dispatch: their ready attempts are skipped.
    for (id, status) in [
        ("run-p", RunStatus::Paused),
        ("run-w", RunStatus::WaitingInput),
        ("run-s", RunStatus::Succeeded),
        ("run-f", RunStatus::Failed),
        ("run-c", RunStatus::Cancelled),
    ] {
        let blocked = RunRecord { status, ..run(id) };
        let blocked_attempt = ready(&blocked, &format!("att-{id}"), "q", 9, -900);
        originals.insert(blocked_attempt.id.clone(), blocked_attempt.clone());
        create(&store, blocked, vec![blocked_attempt], &[]).await;
    }

    // `now` carries sub-microsecond digits; leases are computed from the
    // stored precision.
    let now = precise(0);
    let first = store
        .claim(
            &claim_request(&["q", "q2"], "replica-1", 4, now),
            &accept_claim,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&first.attempts),
        ["att-a3", "att-b1", "att-a2", "att-b2"]
    );
    assert!(first.events.is_empty());
    for got in &first.attempts {
        leased(&originals[&got.id], got, "replica-1", now);
        assert_eq!(&store.get_attempt(&got.id).await.unwrap(), got);
    }

    let second = store
        .claim(
            &claim_request(&["q", "q2"], "replica-2", 10, now),
            &accept_claim,
        )
        .await
        .unwrap();
    assert_eq!(ids(&second.attempts), ["att-a1", "att-b3"]);
    for got in &second.attempts {
        leased(&originals[&got.id], got, "replica-2", now);
    }
    let tokens: BTreeSet<_> = first
        .attempts
        .iter()
        .chain(&second.attempts)
        .map(|a| a.lease_token.clone())
        .collect();
    assert_eq!(tokens.len(), 6, "lease tokens are not unique");

    // Nothing else is eligible in these queues.
    let third = store
        .claim(
            &claim_request(&["q", "q2"], "replica-1", 10, now),
            &accept_claim,
        )
        .await
        .unwrap();
    assert_eq!(
        third,
        Claimed {
            attempts: Vec::new(),
            events: Vec::new()
        }
    );
    for id in [
        "att-a4",
        "att-a5",
        "att-a6",
        "att-a7",
        "att-run-p",
        "att-run-w",
        "att-run-s",
        "att-run-f",
        "att-run-c",
    ] {
        assert_eq!(store.get_attempt(id).await.unwrap(), originals[id], "{id}");
    }

    // Other queues are claimed only when asked for; availability is
    // inclusive.
    let other = store
        .claim(
            &claim_request(&["other"], "replica-1", 10, now),
            &accept_claim,
        )
        .await
        .unwrap();
    assert_eq!(ids(&other.attempts), ["att-a4"]);
    let later = store
        .claim(
            &claim_request(&["q"], "replica-1", 10, at(1)),
            &accept_claim,
        )
        .await
        .unwrap();
    assert_eq!(ids(&later.attempts), ["att-a5"]);
    leased(&originals["att-a5"], &later.attempts[0], "replica-1", at(1));
}

async fn next_ready_at_is_the_earliest_future_ready_attempt(store: Runs) {
    let ready =
        |run: &RunRecord, id: &str, queue: &str, priority: i32, available_ms: i64| AttemptRecord {
            queue: queue.to_string(),
            priority,
            available_at: at(available_ms),
            ..attempt(run, id, 1)
        };
    let run_a = run("run-a");
    let mut attempts = vec![
        ready(&run_a, "due-now", "q", 9, -100),
        ready(&run_a, "high-later", "q", 9, 700),
        ready(&run_a, "mid", "q", 5, 300),
        ready(&run_a, "low", "q", 0, 500),
        ready(&run_a, "other-queue", "other", 1, 100),
        AttemptRecord {
            status: AttemptStatus::Succeeded,
            ..ready(&run_a, "not-ready", "q", 3, 50)
        },
    ];
    // Many priorities: the earliest is in the lowest.
    for priority in 0..20 {
        attempts.push(ready(
            &run_a,
            &format!("spread-{priority}"),
            "spread",
            priority,
            1000 - priority as i64,
        ));
    }
    create(&store, run_a, attempts, &[]).await;
    // A paused run's attempts count too: waking for them costs one claim.
    let paused = RunRecord {
        status: RunStatus::Paused,
        ..run("run-p")
    };
    let paused_attempt = ready(&paused, "paused", "held", 0, 40);
    create(&store, paused, vec![paused_attempt], &[]).await;

    let queues = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let next = |names: &[&str], after_ms: i64| {
        let (store, names) = (store.clone(), queues(names));
        async move {
            store
                .next_ready_at(&names, precise(after_ms))
                .await
                .unwrap()
        }
    };
    assert_eq!(next(&["q"], 0).await, Some(at(300)));
    assert_eq!(next(&["q", "other"], 0).await, Some(at(100)));
    // Strictly after: the one due at `after` is claimable already.
    assert_eq!(next(&["q"], 300).await, Some(at(500)));
    assert_eq!(next(&["q"], 500).await, Some(at(700)));
    assert_eq!(next(&["q"], 700).await, None);
    assert_eq!(next(&["spread"], 0).await, Some(at(981)));
    assert_eq!(next(&["held"], 0).await, Some(at(40)));
    assert_eq!(next(&["nobody"], 0).await, None);
    assert_eq!(next(&[], 0).await, None);
}

async fn claim_applies_decisions_per_run(store: Runs) {
    let run_1 = run("run-1");
    let run_2 = run("run-2");
    let run_3 = run("run-3");
    create(
        &store,
        run_1.clone(),
        vec![attempt(&run_1, "att-11", 1), attempt(&run_1, "att-12", 2)],
        &["created"],
    )
    .await;
    // Created second but holds the first attempt in claim order: decisions
    // still go by run id.
    let early = AttemptRecord {
        available_at: at(-100),
        ..attempt(&run_2, "att-21", 1)
    };
    create(&store, run_2.clone(), vec![early], &["created"]).await;
    let elsewhere = AttemptRecord {
        queue: "elsewhere".to_string(),
        ..attempt(&run_3, "att-31", 1)
    };
    let stored_3 = create(&store, run_3, vec![elsewhere.clone()], &["created"]).await;

    let now = at(0);
    // `ClaimFn` is `'static`: the closure owns what it records into.
    let calls: Arc<Mutex<Vec<ClaimCall>>> = Arc::default();
    let recorder = calls.clone();
    let decide_claim = move |run: &RunRecord, leased: &[AttemptRecord]| {
        recorder
            .lock()
            .unwrap()
            .push((run.clone(), leased.to_vec()));
        Plan {
            run: Some(RunRecord {
                status: RunStatus::Running,
                started_at: Some(now),
                updated_at: now,
                ..run.clone()
            }),
            attempt_updates: leased
                .iter()
                .map(|attempt| AttemptRecord {
                    deadline: Some(at(60_000)),
                    ..attempt.clone()
                })
                .collect(),
            events: vec![payload(&format!("leased {}", leased.len()))],
            ..Plan::apply()
        }
    };
    let claimed = store
        .claim(
            &claim_request(&["internal"], "replica-1", 10, now),
            &decide_claim,
        )
        .await
        .unwrap();

    let calls = calls.lock().unwrap().clone();
    let called_runs: Vec<&str> = calls.iter().map(|(run, _)| run.id.as_str()).collect();
    assert_eq!(called_runs, ["run-1", "run-2"]);
    for (run, leased_now) in &calls {
        // The run as stored before the claim's own writes.
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(run.last_seq, 1);
        for attempt in leased_now {
            assert_eq!(attempt.run_id, run.id);
            assert_eq!(attempt.status, AttemptStatus::Leased);
            assert_eq!(attempt.lease_owner.as_deref(), Some("replica-1"));
            assert_eq!(attempt.deadline, None);
        }
    }
    let mut leased_1 = ids(&calls[0].1);
    leased_1.sort();
    assert_eq!(leased_1, ["att-11", "att-12"]);
    assert_eq!(ids(&calls[1].1), ["att-21"]);

    // Claim order, with the decisions' updates applied.
    assert_eq!(ids(&claimed.attempts), ["att-21", "att-11", "att-12"]);
    for got in &claimed.attempts {
        assert_eq!(got.status, AttemptStatus::Leased);
        assert_eq!(got.deadline, Some(at(60_000)));
        assert_eq!(&store.get_attempt(&got.id).await.unwrap(), got);
    }
    let mut events = claimed.events.clone();
    events.sort_by(|a, b| (&a.run_id, a.seq).cmp(&(&b.run_id, b.seq)));
    assert_eq!(
        events,
        vec![event("run-1", 2, "leased 2"), event("run-2", 2, "leased 1")]
    );
    for run_id in ["run-1", "run-2"] {
        let stored = store.get_run(run_id).await.unwrap();
        assert_eq!(stored.status, RunStatus::Running);
        assert_eq!(stored.started_at, Some(now));
        assert_eq!(stored.last_seq, 2);
        assert_eq!(all_events(&store, run_id).await.len(), 2);
    }
    assert_eq!(store.get_run("run-3").await.unwrap(), stored_3);
    assert_eq!(store.get_attempt("att-31").await.unwrap(), elsewhere);
}

async fn claim_rejecting_decision_writes_nothing(store: Runs) {
    let stored = create(
        &store,
        run("run-1"),
        vec![attempt(&run("run-1"), "att-1", 1)],
        &["created"],
    )
    .await;
    let original = store.get_attempt("att-1").await.unwrap();
    let reject = |_: &RunRecord, _: &[AttemptRecord]| Plan {
        events: vec![payload("leased")],
        ..Plan::reject(
            RejectionKind::FailedPrecondition,
            "claim decisions never reject",
        )
    };
    let result = store
        .claim(
            &claim_request(&["internal"], "replica-1", 10, at(0)),
            &reject,
        )
        .await;
    assert!(result.is_err(), "a rejecting claim decision succeeded");
    assert_eq!(store.get_attempt("att-1").await.unwrap(), original);
    assert_eq!(store.get_run("run-1").await.unwrap(), stored);
    assert_eq!(all_events(&store, "run-1").await.len(), 1);

    // The attempt is still claimable.
    let claimed = store
        .claim(
            &claim_request(&["internal"], "replica-1", 10, at(0)),
            &accept_claim,
        )
        .await
        .unwrap();
    assert_eq!(ids(&claimed.attempts), ["att-1"]);
}

async fn claim_without_queues_or_limit_claims_nothing(store: Runs) {
    create(
        &store,
        run("run-1"),
        vec![attempt(&run("run-1"), "att-1", 1)],
        &[],
    )
    .await;
    let original = store.get_attempt("att-1").await.unwrap();
    let nothing = Claimed {
        attempts: Vec::new(),
        events: Vec::new(),
    };
    let no_queues = store
        .claim(&claim_request(&[], "replica-1", 10, at(0)), &accept_claim)
        .await
        .unwrap();
    assert_eq!(no_queues, nothing);
    let no_limit = store
        .claim(
            &claim_request(&["internal"], "replica-1", 0, at(0)),
            &accept_claim,
        )
        .await
        .unwrap();
    assert_eq!(no_limit, nothing);
    assert_eq!(store.get_attempt("att-1").await.unwrap(), original);
}

async fn concurrent_claimers_lease_each_attempt_once(store: Runs) {
    const RUNS: usize = 20;
    const PER_RUN: usize = 10;
    for r in 0..RUNS {
        let parent = run(&format!("run-{r:02}"));
        let attempts = (0..PER_RUN)
            .map(|i| AttemptRecord {
                queue: "q".to_string(),
                available_at: at(-1),
                ..attempt(&parent, &format!("att-{r:02}-{i:02}"), i as i32 + 1)
            })
            .collect();
        create(&store, parent, attempts, &[]).await;
    }

    let claimers: Vec<_> = (0..4)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let owner = format!("claimer-{c}");
                let mut mine: Vec<AttemptRecord> = Vec::new();
                loop {
                    let claimed = store
                        .claim(
                            &claim_request(&["q"], &owner, 7, at(0)),
                            &|_: &RunRecord, leased: &[AttemptRecord]| Plan {
                                events: vec![payload(&format!("leased {}", leased.len()))],
                                ..Plan::apply()
                            },
                        )
                        .await
                        .unwrap();
                    if claimed.attempts.is_empty() {
                        return (owner, mine);
                    }
                    mine.extend(claimed.attempts);
                }
            })
        })
        .collect();

    let mut leased_to: BTreeMap<String, String> = BTreeMap::new();
    for claimer in claimers {
        let (owner, mine) = claimer.await.unwrap();
        for attempt in mine {
            assert_eq!(attempt.lease_owner.as_deref(), Some(owner.as_str()));
            let previous = leased_to.insert(attempt.id.clone(), owner.clone());
            assert_eq!(previous, None, "{} leased twice", attempt.id);
        }
    }
    assert_eq!(leased_to.len(), RUNS * PER_RUN);
    for (id, owner) in &leased_to {
        let stored = store.get_attempt(id).await.unwrap();
        assert_eq!(stored.status, AttemptStatus::Leased);
        assert_eq!(stored.lease_owner.as_ref(), Some(owner));
    }
    // Every run's events stayed gapless, and their counts add up.
    let mut leased_by_events = 0;
    for r in 0..RUNS {
        let run_id = format!("run-{r:02}");
        let events = all_events(&store, &run_id).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
        assert_eq!(
            store.get_run(&run_id).await.unwrap().last_seq,
            events.len() as i64
        );
        for event in events {
            let text = String::from_utf8(event.payload).unwrap();
            let count: usize = text.strip_prefix("leased ").unwrap().parse().unwrap();
            leased_by_events += count;
        }
    }
    assert_eq!(leased_by_events, RUNS * PER_RUN);
}

// ---------------------------------------------------------------------------
// Due attempts

async fn due_attempts_by_lease_expiry_and_deadline(store: Runs) {
    let leased_until =
        |run: &RunRecord, id: &str, expires_ms: i64, deadline_ms: Option<i64>| AttemptRecord {
            status: AttemptStatus::Leased,
            lease_owner: Some("replica-1".to_string()),
            lease_token: Some(format!("token-{id}")),
            lease_expires_at: Some(at(expires_ms)),
            deadline: deadline_ms.map(at),
            started_at: Some(at(-60_000)),
            ..attempt(run, id, 1)
        };
    let run_1 = RunRecord {
        status: RunStatus::Running,
        ..run("run-1")
    };
    let run_2 = RunRecord {
        status: RunStatus::Running,
        ..run("run-2")
    };
    create(
        &store,
        run_1.clone(),
        vec![
            // Due at -10 s (lease).
            leased_until(&run_1, "att-d1", -10_000, None),
            // Due at -30 s (deadline).
            leased_until(&run_1, "att-d2", 100_000, Some(-30_000)),
            // Not due.
            leased_until(&run_1, "att-d3", 100_000, Some(100_000)),
            // Due exactly now.
            leased_until(&run_1, "att-d4", 0, None),
            // Due at -20 s (deadline before lease expiry).
            leased_until(&run_1, "att-d5", -5_000, Some(-20_000)),
            // Not leased: never due, whatever their lease columns say.
            AttemptRecord {
                status: AttemptStatus::Ready,
                ..leased_until(&run_1, "att-r1", -50_000, Some(-50_000))
            },
            AttemptRecord {
                status: AttemptStatus::Succeeded,
                ..leased_until(&run_1, "att-s1", -50_000, Some(-50_000))
            },
        ],
        &[],
    )
    .await;
    create(
        &store,
        run_2.clone(),
        vec![leased_until(&run_2, "att-d6", -15_000, None)],
        &[],
    )
    .await;

    let due = |run_id: &str, attempt_id: &str| DueAttempt {
        run_id: run_id.to_string(),
        attempt_id: attempt_id.to_string(),
    };
    assert_eq!(
        store.due_attempts(at(0), 100).await.unwrap(),
        vec![
            due("run-1", "att-d2"),
            due("run-1", "att-d5"),
            due("run-2", "att-d6"),
            due("run-1", "att-d1"),
            due("run-1", "att-d4"),
        ]
    );
    assert_eq!(
        store.due_attempts(at(0), 2).await.unwrap(),
        vec![due("run-1", "att-d2"), due("run-1", "att-d5")]
    );
    assert_eq!(
        store.due_attempts(at(-25_000), 100).await.unwrap(),
        vec![due("run-1", "att-d2")]
    );
    assert!(
        store
            .due_attempts(at(-40_000), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// Listing

async fn list_runs_filters(store: Runs) {
    let fixtures = [
        (
            "run-1",
            RunStatus::Queued,
            "alpha",
            vec![("team", "ml")],
            "acme",
        ),
        (
            "run-2",
            RunStatus::Running,
            "beta",
            vec![("team", "ml"), ("env", "prod")],
            "acme",
        ),
        (
            "run-3",
            RunStatus::Succeeded,
            "alpha",
            vec![("team", "search"), ("env", "prod")],
            "globex",
        ),
        (
            "run-4",
            RunStatus::Failed,
            "alpha",
            vec![("app.io/name", "x\"y")],
            "acme",
        ),
        (
            "run-5",
            RunStatus::Paused,
            "beta",
            vec![("env", "prod"), ("team", "ml"), ("tier", "gold")],
            "globex",
        ),
    ];
    for (i, (id, status, chain_id, run_labels, tenant)) in fixtures.into_iter().enumerate() {
        create(
            &store,
            RunRecord {
                status,
                chain_id: chain_id.to_string(),
                labels: labels(&run_labels),
                tenant: tenant.to_string(),
                created_at: at(1000 * i as i64),
                updated_at: at(1000 * i as i64),
                ..run(id)
            },
            Vec::new(),
            &[],
        )
        .await;
    }
    let cases = [
        (
            default_namespace(),
            vec!["run-5", "run-4", "run-3", "run-2", "run-1"],
        ),
        (
            RunFilter {
                statuses: vec![RunStatus::Running, RunStatus::Failed],
                ..default_namespace()
            },
            vec!["run-4", "run-2"],
        ),
        (
            RunFilter {
                statuses: vec![RunStatus::Cancelled],
                ..default_namespace()
            },
            vec![],
        ),
        (
            RunFilter {
                chain_id: Some("alpha".to_string()),
                ..default_namespace()
            },
            vec!["run-4", "run-3", "run-1"],
        ),
        (
            RunFilter {
                labels: labels(&[("team", "ml")]),
                ..default_namespace()
            },
            vec!["run-5", "run-2", "run-1"],
        ),
        (
            RunFilter {
                labels: labels(&[("team", "ml"), ("env", "prod")]),
                ..default_namespace()
            },
            vec!["run-5", "run-2"],
        ),
        (
            RunFilter {
                labels: labels(&[("env", "prod"), ("team", "search")]),
                ..default_namespace()
            },
            vec!["run-3"],
        ),
        (
            RunFilter {
                labels: labels(&[("team", "ML")]),
                ..default_namespace()
            },
            vec![],
        ),
        (
            RunFilter {
                labels: labels(&[("env", "dev")]),
                ..default_namespace()
            },
            vec![],
        ),
        (
            RunFilter {
                labels: labels(&[("app.io/name", "x\"y")]),
                ..default_namespace()
            },
            vec!["run-4"],
        ),
        (
            RunFilter {
                tenant: Some("globex".to_string()),
                ..default_namespace()
            },
            vec!["run-5", "run-3"],
        ),
        (
            RunFilter {
                created_after: Some(at(1000)),
                ..default_namespace()
            },
            vec!["run-5", "run-4", "run-3", "run-2"],
        ),
        (
            RunFilter {
                created_before: Some(at(3000)),
                ..default_namespace()
            },
            vec!["run-3", "run-2", "run-1"],
        ),
        (
            RunFilter {
                created_after: Some(at(1000)),
                created_before: Some(at(3000)),
                ..default_namespace()
            },
            vec!["run-3", "run-2"],
        ),
        (
            RunFilter {
                statuses: vec![RunStatus::Queued, RunStatus::Failed, RunStatus::Paused],
                chain_id: Some("alpha".to_string()),
                tenant: Some("acme".to_string()),
                ..default_namespace()
            },
            vec!["run-4", "run-1"],
        ),
        (
            RunFilter {
                statuses: vec![RunStatus::Paused, RunStatus::Running],
                labels: labels(&[("team", "ml")]),
                tenant: Some("globex".to_string()),
                created_after: Some(at(0)),
                ..default_namespace()
            },
            vec!["run-5"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(run_ids(&store, &filter).await, expected, "{filter:?}");
    }
}

async fn list_runs_paginate_newest_first(store: Runs) {
    for i in 1..=7 {
        create(
            &store,
            RunRecord {
                tenant: if i % 2 == 1 { "odd" } else { "even" }.to_string(),
                ..run(&format!("run-{i}"))
            },
            Vec::new(),
            &[],
        )
        .await;
    }
    let all = default_namespace();
    let pages = all_pages(
        3,
        |run: &RunRecord| run.id.clone(),
        |page| store.list_runs(&all, page),
    )
    .await;
    assert_eq!(page_sizes(&pages), [3, 3, 1]);
    let listed: Vec<String> = flatten(pages).into_iter().map(|run| run.id).collect();
    assert_eq!(
        listed,
        [
            "run-7", "run-6", "run-5", "run-4", "run-3", "run-2", "run-1"
        ]
    );

    let odd = RunFilter {
        tenant: Some("odd".to_string()),
        ..default_namespace()
    };
    let pages = all_pages(
        3,
        |run: &RunRecord| run.id.clone(),
        |page| store.list_runs(&odd, page),
    )
    .await;
    assert_eq!(page_sizes(&pages), [3, 1]);
    let listed: Vec<String> = flatten(pages).into_iter().map(|run| run.id).collect();
    assert_eq!(listed, ["run-7", "run-5", "run-3", "run-1"]);

    // A full last page promises nothing more.
    let page = store.list_runs(&odd, first_page(4)).await.unwrap();
    assert_eq!((page.items.len(), page.next_after), (4, None));
}

async fn list_attempts_paginate_by_step(store: Runs) {
    let parent = run("run-1");
    let attempts: Vec<AttemptRecord> = [3, 1, 5, 2, 4]
        .into_iter()
        .map(|step| attempt(&parent, &format!("att-{step}"), step))
        .collect();
    create(&store, parent, attempts, &[]).await;
    create(&store, run("run-empty"), Vec::new(), &[]).await;

    let pages = all_pages(
        2,
        |attempt: &AttemptRecord| attempt.step.to_string(),
        |page| store.list_attempts("run-1", page),
    )
    .await;
    assert_eq!(page_sizes(&pages), [2, 2, 1]);
    assert_eq!(pages[0].next_after.as_deref(), Some("2"));
    let steps: Vec<i32> = flatten(pages).into_iter().map(|a| a.step).collect();
    assert_eq!(steps, [1, 2, 3, 4, 5]);

    let empty = store
        .list_attempts("run-empty", everything())
        .await
        .unwrap();
    assert_eq!(
        empty,
        Page {
            items: Vec::new(),
            next_after: None,
            keys: Vec::new(),
        }
    );
    assert_err!(
        store.list_attempts("run-404", everything()).await,
        StoreError::NotFound { .. }
    );
}

async fn list_events_after_seq(store: Runs) {
    create(
        &store,
        run("run-1"),
        Vec::new(),
        &["e1", "e2", "e3", "e4", "e5"],
    )
    .await;
    create(&store, run("run-2"), Vec::new(), &["other"]).await;
    let texts = |events: Vec<EventRecord>| -> Vec<(i64, String)> {
        events
            .into_iter()
            .map(|e| (e.seq, String::from_utf8(e.payload).unwrap()))
            .collect()
    };
    assert_eq!(
        texts(store.list_events("run-1", 0, 100).await.unwrap()),
        (1..=5).map(|i| (i, format!("e{i}"))).collect::<Vec<_>>()
    );
    assert_eq!(
        texts(store.list_events("run-1", 2, 2).await.unwrap()),
        [(3, "e3".to_string()), (4, "e4".to_string())]
    );
    assert_eq!(
        texts(store.list_events("run-1", 4, 10).await.unwrap()),
        [(5, "e5".to_string())]
    );
    assert!(store.list_events("run-1", 5, 10).await.unwrap().is_empty());
    assert_eq!(
        store.list_events("run-2", 0, 10).await.unwrap(),
        vec![event("run-2", 1, "other")]
    );
    assert_err!(
        store.list_events("run-404", 0, 10).await,
        StoreError::NotFound { .. }
    );
}

async fn missing_records_are_not_found(store: Runs) {
    assert_err!(store.get_run("run-404").await, StoreError::NotFound { .. });
    assert_err!(
        store.get_attempt("att-404").await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.list_attempts("run-404", everything()).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.list_events("run-404", 0, 10).await,
        StoreError::NotFound { .. }
    );
    assert_err!(
        store.transition("run-404", decide(|_| Plan::apply())).await,
        StoreError::NotFound { .. }
    );
    assert!(
        store
            .list_runs(&default_namespace(), everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(store.due_attempts(at(0), 10).await.unwrap().is_empty());
    assert!(
        store
            .list_dead_letters("default", None, everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn dead_letters_newest_first(store: Runs) {
    let dead = |run: &RunRecord, id: &str, queue: &str| AttemptRecord {
        status: AttemptStatus::Failed,
        queue: queue.to_string(),
        error: Some("out of retries".to_string()),
        dead_lettered: true,
        ..attempt(run, id, 1)
    };
    let run_1 = run("run-1");
    let run_2 = run("run-2");
    let attempts_1 = vec![
        dead(&run_1, "att-1", "q1"),
        AttemptRecord {
            dead_lettered: false,
            ..dead(&run_1, "att-2", "q1")
        },
        dead(&run_1, "att-3", "q2"),
    ];
    let attempts_2 = vec![dead(&run_2, "att-4", "q1"), dead(&run_2, "att-5", "q2")];
    let by_id: BTreeMap<String, AttemptRecord> = attempts_1
        .iter()
        .chain(&attempts_2)
        .map(|a| (a.id.clone(), a.clone()))
        .collect();
    create(&store, run_1, attempts_1, &[]).await;
    create(&store, run_2, attempts_2, &[]).await;

    let expect = |wanted: &[&str]| -> Vec<AttemptRecord> {
        wanted.iter().map(|id| by_id[*id].clone()).collect()
    };
    let pages = all_pages(
        2,
        |attempt: &AttemptRecord| attempt.id.clone(),
        |page| store.list_dead_letters("default", None, page),
    )
    .await;
    assert_eq!(page_sizes(&pages), [2, 2]);
    assert_eq!(
        flatten(pages),
        expect(&["att-5", "att-4", "att-3", "att-1"])
    );

    let pages = all_pages(
        1,
        |attempt: &AttemptRecord| attempt.id.clone(),
        |page| store.list_dead_letters("default", Some("q1"), page),
    )
    .await;
    assert_eq!(page_sizes(&pages), [1, 1]);
    assert_eq!(flatten(pages), expect(&["att-4", "att-1"]));
    assert_eq!(
        store
            .list_dead_letters("default", Some("q2"), everything())
            .await
            .unwrap()
            .items,
        expect(&["att-5", "att-3"])
    );
    assert!(
        store
            .list_dead_letters("default", Some("q3"), everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

// ---------------------------------------------------------------------------
// Corrupt data

async fn unknown_stored_statuses_are_corrupt(store: Runs, database: RawDatabase) {
    create(
        &store,
        run("run-1"),
        vec![attempt(&run("run-1"), "att-1", 1)],
        &[],
    )
    .await;
    create(
        &store,
        run("run-2"),
        vec![attempt(&run("run-2"), "att-2", 1)],
        &[],
    )
    .await;

    // A status written by a newer version, say.
    database
        .execute("UPDATE attempts SET status = 'hibernating' WHERE id = 'att-1'")
        .await;
    assert_err!(store.get_attempt("att-1").await, StoreError::Corrupt(_));
    assert_err!(
        store.list_attempts("run-1", everything()).await,
        StoreError::Corrupt(_)
    );
    assert_err!(
        store.transition("run-1", decide(|_| Plan::apply())).await,
        StoreError::Corrupt(_)
    );

    database
        .execute("UPDATE runs SET status = 'hibernating' WHERE id = 'run-1'")
        .await;
    assert_err!(store.get_run("run-1").await, StoreError::Corrupt(_));
    assert_err!(
        store.list_runs(&default_namespace(), everything()).await,
        StoreError::Corrupt(_)
    );

    // Healthy neighbours still read.
    assert_eq!(
        store.get_run("run-2").await.unwrap().status,
        RunStatus::Queued
    );
    assert_eq!(
        store.get_attempt("att-2").await.unwrap().status,
        AttemptStatus::Ready
    );
}

fn new_run(id: &str, chain_id: &str, check: Option<Option<i64>>) -> NewRun {
    let run = RunRecord {
        chain_id: chain_id.to_string(),
        ..run(id)
    };
    NewRun {
        attempts: vec![attempt(&run, &format!("{id}-first"), 1)],
        events: vec![payload("created")],
        idempotency: None,
        chain_check: check.map(|latest_version| ChainCheck {
            chain_id: chain_id.to_string(),
            latest_version,
        }),
        run,
    }
}

/// A batch of creates: each run's chain check and idempotency key settle
/// that run alone; a failed check writes nothing of its run; one request id
/// twice in a call is refused whole.
async fn create_runs_checks_chains_and_keys(store: Arc<dyn Store>) {
    store
        .create_chain("default", "flow", b"v1".to_vec(), None, &audit())
        .await
        .unwrap();
    store
        .update_chain("default", "flow", b"v2".to_vec(), None, None, &audit())
        .await
        .unwrap();
    let results = store
        .create_runs(vec![
            new_run("run-latest", "flow", Some(Some(2))),
            new_run("run-stale", "flow", Some(Some(1))),
            new_run("run-missing", "nowhere", Some(None)),
            new_run("run-pinned", "flow", Some(None)),
            new_run("run-unchecked", "nowhere", None),
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 5);
    for (result, expected) in results.iter().zip([true, false, false, true, true]) {
        match (result, expected) {
            (Ok((created, events)), true) => {
                assert!(!created.replayed);
                assert_eq!(events.len(), 1);
                assert_eq!(created.record.last_seq, 1);
            }
            (Err(StoreError::ChainChanged { .. }), false) => {}
            (other, _) => panic!("unexpected result {other:?}"),
        }
    }
    for id in ["run-latest", "run-pinned", "run-unchecked"] {
        assert_eq!(store.get_run(id).await.unwrap().id, id);
        assert_eq!(all_events(&(store.clone() as Runs), id).await.len(), 1);
    }
    for id in ["run-stale", "run-missing"] {
        assert_err!(store.get_run(id).await, StoreError::NotFound { .. });
        assert_err!(
            store.get_attempt(&format!("{id}-first")).await,
            StoreError::NotFound { .. }
        );
    }

    store
        .delete_chain("default", "flow", None, &audit())
        .await
        .unwrap();
    let results = store
        .create_runs(vec![new_run("run-deleted", "flow", Some(None))])
        .await
        .unwrap();
    assert_err!(&results[0], StoreError::ChainChanged { .. });

    // Idempotency keys in a batch: fresh ones create, a known one replays.
    let keyed = |id: &str, request_id: &str| NewRun {
        idempotency: key("StartRun", request_id, "hash"),
        ..new_run(id, "other", None)
    };
    let first = store
        .create_runs(vec![keyed("run-k1", "k1"), keyed("run-k2", "k2")])
        .await
        .unwrap();
    assert!(first.iter().all(|r| matches!(r, Ok((c, _)) if !c.replayed)));
    let again = store
        .create_runs(vec![keyed("run-k1-again", "k1"), keyed("run-k3", "k3")])
        .await
        .unwrap();
    match &again[0] {
        Ok((created, events)) => {
            assert!(created.replayed);
            assert_eq!(created.record.id, "run-k1");
            assert!(events.is_empty());
        }
        other => panic!("expected a replay, got {other:?}"),
    }
    assert!(matches!(&again[1], Ok((c, _)) if !c.replayed && c.record.id == "run-k3"));
    assert_err!(
        store.get_run("run-k1-again").await,
        StoreError::NotFound { .. }
    );

    assert_err!(
        store
            .create_runs(vec![keyed("run-k4", "k4"), keyed("run-k4b", "k4")])
            .await,
        StoreError::Corrupt(_)
    );
    assert_err!(store.get_run("run-k4").await, StoreError::NotFound { .. });
}

/// Four claimers at once, a queue capped at 3 and every tenant at 2: the
/// caps hold whatever the interleaving, and the rest stays ready.
async fn concurrent_claimers_stay_within_caps(store: Runs) {
    for r in 0..12 {
        let parent = RunRecord {
            tenant: format!("tenant-{}", r % 3),
            ..run(&format!("run-{r:02}"))
        };
        let attempts = vec![AttemptRecord {
            queue: if r < 6 { "capped" } else { "open" }.to_string(),
            available_at: at(-1),
            ..attempt(&parent, &format!("att-{r:02}"), 1)
        }];
        create(&store, parent, attempts, &[]).await;
    }
    let caps = Caps {
        queues: BTreeMap::from([("capped".to_string(), 3)]),
        default_tenant: Some(2),
        ..Caps::default()
    };
    let claimers: Vec<_> = (0..4)
        .map(|c| {
            let store = store.clone();
            let caps = caps.clone();
            tokio::spawn(async move {
                let request = ClaimRequest {
                    caps,
                    ..claim_request(&["capped", "open"], &format!("claimer-{c}"), 10, at(0))
                };
                store.claim(&request, &accept_claim).await.unwrap().attempts
            })
        })
        .collect();
    let mut leased = Vec::new();
    for claimer in claimers {
        leased.extend(claimer.await.unwrap());
    }
    let mut per_queue: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    for attempt in &leased {
        *per_queue.entry(attempt.queue.clone()).or_default() += 1;
        let run = store.get_run(&attempt.run_id).await.unwrap();
        *per_tenant.entry(run.tenant).or_default() += 1;
    }
    assert!(
        per_queue.get("capped").copied().unwrap_or(0) <= 3,
        "{per_queue:?}"
    );
    assert!(per_tenant.values().all(|n| *n <= 2), "{per_tenant:?}");
    // Three tenants at two each: six leased, the rest still ready.
    assert_eq!(leased.len(), 6, "{per_queue:?} {per_tenant:?}");
    for r in 0..12 {
        let stored = store.get_attempt(&format!("att-{r:02}")).await.unwrap();
        let expected = leased.iter().any(|a| a.id == stored.id);
        assert_eq!(stored.status == AttemptStatus::Leased, expected);
        if !expected {
            assert_eq!(stored.status, AttemptStatus::Ready);
        }
    }
}

/// A run that keeps heads is decided on those attempts and the ones the
/// decision names, not on every attempt it has; one without heads (written
/// before heads were kept) on all of them. The plan's heads are stored.
async fn snapshots_hold_heads_and_focus(store: Runs) {
    let base = run("run-1");
    let attempts: Vec<AttemptRecord> = (1..=6)
        .map(|step| attempt(&base, &format!("att-{step}"), step))
        .collect();
    let stored = create(
        &store,
        RunRecord {
            heads: Some(vec!["att-5".into(), "att-2".into()]),
            ..base.clone()
        },
        attempts.clone(),
        &["created"],
    )
    .await;
    assert_eq!(
        stored.heads,
        Some(vec!["att-5".to_string(), "att-2".to_string()])
    );
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let snapshot_ids = |seen: &Arc<Mutex<Vec<Vec<String>>>>, heads: Option<Vec<String>>| {
        let recorder = seen.clone();
        decide(move |snapshot| {
            recorder
                .lock()
                .unwrap()
                .push(snapshot.attempts.iter().map(|a| a.id.clone()).collect());
            Plan {
                run: Some(RunRecord {
                    heads: heads.clone(),
                    ..snapshot.run.clone()
                }),
                ..Plan::apply()
            }
        })
    };
    // Heads and focus, in step order; a focus on another run's attempt or
    // a missing one adds nothing.
    create(
        &store,
        run("run-2"),
        vec![attempt(&run("run-2"), "other", 1)],
        &[],
    )
    .await;
    let decision = snapshot_ids(&seen, Some(vec!["att-6".into()])).with_focus(vec![
        "att-3".into(),
        "other".into(),
        "missing".into(),
    ]);
    store.transition("run-1", decision).await.unwrap();
    assert_eq!(
        seen.lock().unwrap().pop().unwrap(),
        ["att-2", "att-3", "att-5"]
    );
    assert_eq!(
        store.get_run("run-1").await.unwrap().heads,
        Some(vec!["att-6".to_string()])
    );
    // The same through a batch.
    let decision = snapshot_ids(&seen, None).with_focus(vec!["att-1".into()]);
    let results = store
        .transition_many(vec![("run-1".to_string(), decision)])
        .await
        .unwrap();
    assert!(matches!(results[0], Ok(TransitionOutcome::Applied { .. })));
    assert_eq!(seen.lock().unwrap().pop().unwrap(), ["att-1", "att-6"]);
    // No heads: every attempt.
    store
        .transition("run-1", snapshot_ids(&seen, None))
        .await
        .unwrap();
    let all: Vec<String> = attempts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(seen.lock().unwrap().pop().unwrap(), all);
    let decision = snapshot_ids(&seen, None).with_focus(vec!["att-1".into()]);
    store
        .transition_many(vec![("run-1".to_string(), decision)])
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().pop().unwrap(), all);
}

/// Prompts and error messages are run data and may hold U+0000: both stores
/// keep them as given.
async fn run_text_with_nul_round_trips(store: Runs) {
    let base = run("run-1");
    let stored = create(
        &store,
        base.clone(),
        vec![AttemptRecord {
            prompt: Some("a\0prompt".to_string()),
            ..attempt(&base, "att-1", 1)
        }],
        &["created"],
    )
    .await;
    let failed = RunRecord {
        status: RunStatus::Failed,
        error: Some(RunFailure {
            message: "model said \0 and stopped".to_string(),
            task_id: "task-1".to_string(),
            reason: "TASK_FAILED".to_string(),
        }),
        ..stored.clone()
    };
    let mut dead = attempt(&base, "att-1", 1);
    dead.prompt = Some("a\0prompt".to_string());
    dead.status = AttemptStatus::Failed;
    dead.error = Some("hook answered \0".to_string());
    let (run_update, attempt_update) = (failed.clone(), dead.clone());
    store
        .transition(
            "run-1",
            decide(move |_| Plan {
                run: Some(run_update.clone()),
                attempt_updates: vec![attempt_update.clone()],
                ..Plan::apply()
            }),
        )
        .await
        .unwrap();
    let run = store.get_run("run-1").await.unwrap();
    assert_eq!(run.error, failed.error);
    let attempts = all_attempts(&store, "run-1").await;
    assert_eq!(attempts[0].prompt.as_deref(), Some("a\0prompt"));
    assert_eq!(attempts[0].error.as_deref(), Some("hook answered \0"));
}
