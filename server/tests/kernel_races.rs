//! The kernel's fencing under real concurrency, on both stores: a
//! completion racing a cancellation, duplicate completions, and stale lease
//! tokens. Drives the kernel as a library against a real database.

use taskloom_server::kernel::{
    ChainSource, Kernel, KernelConfig, KernelError, StartRun, TaskSuccess,
};
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_server::store::{DynStore, RunStatus};

mod common;

use common::Backend;
use common::chains::worker_chain;
use common::stores::StoreHarness;

fn text(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Text(value.into())),
    }
}

async fn start(kernel: &Kernel) -> String {
    let started = kernel
        .start_run(StartRun {
            namespace: "default".to_string(),
            chain: ChainSource::Inline(worker_chain("remote", "jobs")),
            input: text("x"),
            labels: Default::default(),
            priority: 0,
            tenant: String::new(),
            idempotency: None,
            traceparent: None,
        })
        .await
        .unwrap();
    started.run.id
}

/// 40 rounds of complete-vs-cancel on one leased attempt: exactly one wins,
/// and the run's final state agrees with the winner.
async fn cancel_races_completion(store: DynStore) {
    let kernel = Kernel::new(store, KernelConfig::default(), "test-replica".into());
    // Claims name queue keys: `namespace/queue`.
    let queues = vec!["default/jobs".to_string()];
    let mut completions_won = 0;
    let mut cancels_won = 0;
    for _ in 0..40 {
        let run_id = start(&kernel).await;
        let claimed = kernel.claim(&queues, "worker-1", 1).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let attempt = claimed[0].attempt.clone();
        let token = attempt.lease_token.clone().unwrap();
        let complete = {
            let kernel = kernel.clone();
            let (run_id, attempt_id, token) = (run_id.clone(), attempt.id.clone(), token.clone());
            tokio::spawn(async move {
                kernel
                    .complete(
                        &run_id,
                        &attempt_id,
                        &token,
                        TaskSuccess::output(text("done")),
                    )
                    .await
            })
        };
        let cancel = {
            let kernel = kernel.clone();
            let run_id = run_id.clone();
            tokio::spawn(async move {
                kernel
                    .cancel_run("default", &run_id, "race", None, None)
                    .await
            })
        };
        let completed = complete.await.unwrap();
        let cancelled = cancel.await.unwrap();
        let run = kernel.get_run(&run_id).await.unwrap();
        match (&completed, &cancelled) {
            (Ok(_), Err(KernelError::RunNotActive(_))) => {
                assert_eq!(run.status, RunStatus::Succeeded);
                completions_won += 1;
            }
            (Err(KernelError::LeaseFenced(_)), Ok(_)) => {
                assert_eq!(run.status, RunStatus::Cancelled);
                cancels_won += 1;
            }
            other => panic!("exactly one of the racers wins: {other:?}"),
        }
    }
    assert_eq!(completions_won + cancels_won, 40);
}

/// A second completion, a completion with a foreign token, and one after
/// the lease expired and was re-leased are all rejected and change nothing.
async fn fencing_rejects_stale_tokens(store: DynStore) {
    let config = KernelConfig {
        lease: std::time::Duration::from_millis(200),
        ..KernelConfig::default()
    };
    let kernel = Kernel::new(store.clone(), config, "test-replica".into());
    // Claims name queue keys: `namespace/queue`.
    let queues = vec!["default/jobs".to_string()];
    let run_id = start(&kernel).await;
    let first = kernel
        .claim(&queues, "worker-1", 1)
        .await
        .unwrap()
        .remove(0)
        .attempt;
    let first_token = first.lease_token.clone().unwrap();
    let foreign = kernel
        .complete(
            &run_id,
            &first.id,
            "not-the-token",
            TaskSuccess::output(text("x")),
        )
        .await;
    assert!(
        matches!(foreign, Err(KernelError::LeaseFenced(_))),
        "{foreign:?}"
    );
    // The lease expires; the sweeper hands the attempt to another worker.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(kernel.sweep().await.unwrap(), 1);
    let second = kernel
        .claim(&queues, "worker-2", 1)
        .await
        .unwrap()
        .remove(0)
        .attempt;
    assert_eq!(second.id, first.id, "the same attempt, re-leased");
    assert_eq!(second.lease_expiries, 1);
    let late = kernel
        .complete(
            &run_id,
            &first.id,
            &first_token,
            TaskSuccess::output(text("late")),
        )
        .await;
    assert!(matches!(late, Err(KernelError::LeaseFenced(_))), "{late:?}");
    let second_token = second.lease_token.clone().unwrap();
    kernel
        .complete(
            &run_id,
            &second.id,
            &second_token,
            TaskSuccess::output(text("on time")),
        )
        .await
        .unwrap();
    let again = kernel
        .complete(
            &run_id,
            &second.id,
            &second_token,
            TaskSuccess::output(text("twice")),
        )
        .await;
    assert!(
        matches!(again, Err(KernelError::LeaseFenced(_))),
        "{again:?}"
    );
    let run = kernel.get_run(&run_id).await.unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    let output = taskloom_server::kernel::value::decode(run.output.as_deref().unwrap()).unwrap();
    assert_eq!(output, text("on time"));
    let missing = kernel
        .complete(
            &run_id,
            "no-such-attempt",
            "t",
            TaskSuccess::output(text("x")),
        )
        .await;
    assert!(
        matches!(missing, Err(KernelError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cancel_races_completion() {
    let harness = StoreHarness::open(Backend::Sqlite).await;
    cancel_races_completion(harness.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cancel_races_completion() {
    let harness = StoreHarness::open(Backend::Postgres).await;
    cancel_races_completion(harness.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fencing_rejects_stale_tokens() {
    let harness = StoreHarness::open(Backend::Sqlite).await;
    fencing_rejects_stale_tokens(harness.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fencing_rejects_stale_tokens() {
    let harness = StoreHarness::open(Backend::Postgres).await;
    fencing_rejects_stale_tokens(harness.store.clone()).await;
}
