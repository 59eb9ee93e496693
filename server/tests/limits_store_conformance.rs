//! LimitStore conformance (docs/limits.md): admissions against call limits,
//! settlement, backoffs and pruning, one suite stamped over SQLite and
//! PostgreSQL by `store_tests!`. Time is the caller's: every check passes
//! its own `now`, so windows are tested without waiting. Decisions are the
//! server's own judge (`llm::limits::judge`), as the resolver uses it, with
//! no jitter: rate-limit retry times are then exact.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use taskloom_server::llm::limits;
use taskloom_server::store::{
    self, AdmitOutcome, DynStore, LimitScope, Limits, NewCall, ScopeUsage, Throttle,
};

mod common;

use common::stores::{RawDatabase, test_secrets};

store_tests!(harness;
    (harness.store.clone()) => [
        concurrency_counts_calls_in_flight,
        a_crashed_replicas_calls_free_themselves,
        requests_per_minute_slide_with_the_window,
        tokens_per_minute_settle_to_the_real_count,
        a_model_scope_limits_only_that_model,
        backoffs_hold_until_they_pass,
        old_rows_are_pruned,
    ],
    (harness.store.clone(), harness.database.clone()) => [
        admissions_from_two_replicas_never_exceed_the_limit,
    ],
);

static CALLS: AtomicU64 = AtomicU64::new(0);

fn base() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

fn scope(key: &str, limits: Limits) -> LimitScope {
    LimitScope {
        key: key.to_string(),
        name: format!("scope {key:?}"),
        limits,
    }
}

fn concurrency(max: i32) -> Limits {
    Limits {
        max_concurrency: max,
        ..Limits::default()
    }
}

/// Asks to start a call of `tokens` at `now`, held for a minute; the call
/// id and the outcome.
async fn admit(
    store: &DynStore,
    scopes: &[LimitScope],
    tokens: i64,
    now: DateTime<Utc>,
) -> (String, AdmitOutcome) {
    admit_held(store, scopes, tokens, now, now + secs(60)).await
}

async fn admit_held(
    store: &DynStore,
    scopes: &[LimitScope],
    tokens: i64,
    now: DateTime<Utc>,
    hold_until: DateTime<Utc>,
) -> (String, AdmitOutcome) {
    let call_id = format!("call-{}", CALLS.fetch_add(1, Ordering::Relaxed));
    let judge =
        move |scope: &LimitScope, usage: &ScopeUsage| limits::judge(scope, usage, tokens, now, 0.0);
    let call = NewCall {
        call_id: &call_id,
        scopes,
        estimated_tokens: tokens,
        now,
        hold_until,
    };
    let outcome = store.admit(&call, &judge).await.unwrap();
    (call_id, outcome)
}

#[track_caller]
fn throttled(outcome: &AdmitOutcome) -> &Throttle {
    match outcome {
        AdmitOutcome::Throttled(throttle) => throttle,
        AdmitOutcome::Admitted => panic!("expected a throttle, the call was admitted"),
    }
}

async fn concurrency_counts_calls_in_flight(store: DynStore) {
    let t0 = base();
    let scopes = [scope("backend/c", concurrency(2))];
    let (first, a) = admit(&store, &scopes, 10, t0).await;
    let (_, b) = admit(&store, &scopes, 10, t0).await;
    assert_eq!((a, b), (AdmitOutcome::Admitted, AdmitOutcome::Admitted));
    let (_, third) = admit(&store, &scopes, 10, t0).await;
    let throttle = throttled(&third);
    assert_eq!(throttle.scope, "backend/c");
    assert_eq!(
        throttle.limit,
        "scope \"backend/c\": 2 calls in flight (max_concurrency 2)"
    );
    // No call settled yet: a short recheck, not an exact time.
    let wait = throttle.retry_at - t0;
    assert!(
        wait >= TimeDelta::milliseconds(50) && wait <= TimeDelta::milliseconds(3000),
        "recheck in {wait}"
    );
    // A settled call frees its slot.
    store.settle(&first, 12, t0 + secs(1)).await.unwrap();
    let (_, after) = admit(&store, &scopes, 10, t0 + secs(1)).await;
    assert_eq!(after, AdmitOutcome::Admitted);
    // Settling an unknown call is harmless.
    store.settle("never-admitted", 1, t0).await.unwrap();
}

async fn a_crashed_replicas_calls_free_themselves(store: DynStore) {
    let t0 = base();
    let scopes = [scope("backend/crash", concurrency(1))];
    let (_, held) = admit_held(&store, &scopes, 1, t0, t0 + secs(5)).await;
    assert_eq!(held, AdmitOutcome::Admitted);
    let (_, blocked) = admit(&store, &scopes, 1, t0 + secs(4)).await;
    throttled(&blocked);
    // Never settled: its hold passed, its slot is free again.
    let (_, freed) = admit(&store, &scopes, 1, t0 + secs(6)).await;
    assert_eq!(freed, AdmitOutcome::Admitted);
}

async fn requests_per_minute_slide_with_the_window(store: DynStore) {
    let t0 = base();
    let limits = Limits {
        requests_per_minute: 3,
        ..Limits::default()
    };
    let scopes = [scope("backend/rpm", limits)];
    for at in [0, 10, 20] {
        let (id, outcome) = admit(&store, &scopes, 1, t0 + secs(at)).await;
        assert_eq!(outcome, AdmitOutcome::Admitted, "call at {at}s");
        store.settle(&id, 1, t0 + secs(at)).await.unwrap();
    }
    let (_, fourth) = admit(&store, &scopes, 1, t0 + secs(30)).await;
    let throttle = throttled(&fourth);
    // Exact: when the oldest call leaves the counted window (a minute and
    // a second of slack).
    assert_eq!(throttle.retry_at, t0 + secs(61));
    assert_eq!(
        throttle.limit,
        "scope \"backend/rpm\": 3 calls in the last minute (requests_per_minute 3)"
    );
    let (_, at_retry) = admit(&store, &scopes, 1, throttle.retry_at).await;
    assert_eq!(at_retry, AdmitOutcome::Admitted);
    // Now the calls at 10 s, 20 s and 61 s fill the window until 71 s.
    let (_, again) = admit(&store, &scopes, 1, t0 + secs(66)).await;
    assert_eq!(throttled(&again).retry_at, t0 + secs(71));
}

async fn tokens_per_minute_settle_to_the_real_count(store: DynStore) {
    let t0 = base();
    let limits = Limits {
        tokens_per_minute: 1000,
        ..Limits::default()
    };
    let scopes = [scope("backend/tpm", limits)];
    // A call larger than the whole budget runs alone.
    let (big, outcome) = admit(&store, &scopes, 5000, t0).await;
    assert_eq!(outcome, AdmitOutcome::Admitted);
    let (_, next) = admit(&store, &scopes, 10, t0 + secs(1)).await;
    assert_eq!(throttled(&next).retry_at, t0 + secs(61));
    // Settled at its real count, it leaves room.
    store.settle(&big, 300, t0 + secs(2)).await.unwrap();
    let (_, fits) = admit(&store, &scopes, 600, t0 + secs(3)).await;
    assert_eq!(fits, AdmitOutcome::Admitted);
    // 300 + 600 counted; 200 more do not fit, 100 do.
    let (_, too_many) = admit(&store, &scopes, 200, t0 + secs(4)).await;
    assert!(
        throttled(&too_many)
            .limit
            .contains("tokens_per_minute 1000")
    );
    let (_, enough) = admit(&store, &scopes, 100, t0 + secs(4)).await;
    assert_eq!(enough, AdmitOutcome::Admitted);
}

async fn a_model_scope_limits_only_that_model(store: DynStore) {
    let t0 = base();
    let backend = scope("backend/m", Limits::default());
    let model_a = [backend.clone(), scope("model/m/a", concurrency(1))];
    let model_b = [backend.clone(), scope("model/m/b", Limits::default())];
    let (_, first) = admit(&store, &model_a, 1, t0).await;
    assert_eq!(first, AdmitOutcome::Admitted);
    let (_, second) = admit(&store, &model_a, 1, t0).await;
    assert_eq!(throttled(&second).scope, "model/m/a");
    for _ in 0..3 {
        let (_, other) = admit(&store, &model_b, 1, t0).await;
        assert_eq!(other, AdmitOutcome::Admitted, "model b is free");
    }
}

async fn backoffs_hold_until_they_pass(store: DynStore) {
    let t0 = base();
    let scopes = [
        scope("backend/bo", Limits::default()),
        scope("model/bo/x", Limits::default()),
    ];
    store
        .back_off("model/bo/x", t0 + secs(30), "HTTP 429 with Retry-After 30s")
        .await
        .unwrap();
    // A shorter backoff never shortens a longer one.
    store
        .back_off("model/bo/x", t0 + secs(5), "HTTP 429 with Retry-After 5s")
        .await
        .unwrap();
    let (_, held) = admit(&store, &scopes, 1, t0 + secs(10)).await;
    let throttle = throttled(&held);
    assert_eq!(throttle.scope, "model/bo/x");
    assert_eq!(throttle.retry_at, t0 + secs(30));
    assert!(
        throttle.limit.contains("HTTP 429 with Retry-After 30s"),
        "{}",
        throttle.limit
    );
    let (_, after) = admit(&store, &scopes, 1, t0 + secs(30)).await;
    assert_eq!(after, AdmitOutcome::Admitted);
    // A longer one extends it.
    store
        .back_off("model/bo/x", t0 + secs(90), "HTTP 503 with Retry-After 60s")
        .await
        .unwrap();
    let (_, extended) = admit(&store, &scopes, 1, t0 + secs(31)).await;
    assert_eq!(throttled(&extended).retry_at, t0 + secs(90));
}

async fn old_rows_are_pruned(store: DynStore) {
    let t0 = base();
    let limits = Limits {
        requests_per_minute: 1,
        ..Limits::default()
    };
    let scopes = [scope("backend/prune", limits)];
    let (id, outcome) = admit(&store, &scopes, 1, t0).await;
    assert_eq!(outcome, AdmitOutcome::Admitted);
    store.settle(&id, 1, t0).await.unwrap();
    // A minute (and the second of slack) later the old call is gone: the
    // window is empty.
    let (_, later) = admit(&store, &scopes, 1, t0 + secs(61)).await;
    assert_eq!(later, AdmitOutcome::Admitted);
    let (_, full) = admit(&store, &scopes, 1, t0 + secs(62)).await;
    assert_eq!(throttled(&full).retry_at, t0 + secs(122));
}

/// Two stores on one database (two replicas) admit at once, many times
/// each: never more than the limit in flight.
async fn admissions_from_two_replicas_never_exceed_the_limit(store: DynStore, db: RawDatabase) {
    let url = match &db {
        RawDatabase::Sqlite(path) => path.clone(),
        RawDatabase::Postgres(url) => url.clone(),
    };
    let other = store::open(&url, test_secrets()).await.unwrap();
    let t0 = base();
    let scopes = vec![
        scope("backend/shared", concurrency(5)),
        scope("model/pooled/x", Limits::default()),
    ];
    let mut calls = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let scopes = scopes.clone();
        calls.push(tokio::spawn(async move {
            admit(&store, &scopes, 1, t0).await.1
        }));
    }
    let mut admitted = 0;
    for call in calls {
        if call.await.unwrap() == AdmitOutcome::Admitted {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
}
