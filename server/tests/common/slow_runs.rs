//! Runs of a chain of three slow hook tasks, and the checks the process
//! tests (a killed server, a store that fails) make of them: every
//! acknowledged run finishes exactly once, and a task runs again only after
//! its lease expired.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use taskloom_server::proto::taskloom::v1 as pb;
use tonic::transport::Channel;

use super::{HookServer, raw_header};

/// A chain of three hook tasks; each call takes `delay` at the hook.
pub fn slow_chain() -> pb::Chain {
    let step = |id: &str, next: &str| pb::Task {
        id: id.into(),
        handler: "hook".into(),
        hook: Some(pb::HookCall {
            name: "slow".into(),
            args: Default::default(),
        }),
        transition: Some(pb::Transition {
            on_failure: String::new(),
            branches: vec![pb::Branch {
                operator: "default".into(),
                goto: Some(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(next.into())),
                }),
                ..Default::default()
            }],
        }),
        ..Default::default()
    };
    pb::Chain {
        id: "three-steps".into(),
        tasks: vec![step("a", "b"), step("b", "c"), step("c", "end")],
        ..Default::default()
    }
}

pub async fn prepare(channel: Channel, hook_url: &str) {
    pb::hook_service_client::HookServiceClient::new(channel.clone())
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "slow".into(),
                url: hook_url.into(),
                timeout: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    pb::chain_service_client::ChainServiceClient::new(channel)
        .create_chain(pb::CreateChainRequest {
            chain: Some(slow_chain()),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

/// Starts `count` runs round-robin over `channels`. A start whose server
/// died is retried on the next channel with the same request id, so it
/// counts exactly once; when no server answers, only acknowledged runs
/// count.
pub async fn start_runs(channels: &[Channel], count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let mut acknowledged = None;
        for offset in 0..channels.len() {
            let channel = channels[(i + offset) % channels.len()].clone();
            let run = pb::run_service_client::RunServiceClient::new(channel)
                .start_run(pb::StartRunRequest {
                    chain_id: "three-steps".into(),
                    run_input: Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
                        kind: Some(pb::value::Kind::Text(format!("run {i}"))),
                    })),
                    request_id: format!("crash-run-{i}"),
                    ..Default::default()
                })
                .await;
            if let Ok(run) = run {
                acknowledged = Some(run.into_inner().id);
                break;
            }
        }
        match acknowledged {
            Some(id) => ids.push(id),
            None => break,
        }
    }
    ids
}

/// Waits until the hook has been called `calls` times: work is in flight.
pub async fn wait_for_hook_calls(hook: &HookServer, calls: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while hook.requests().len() < calls {
        assert!(
            Instant::now() < deadline,
            "the hook was never called {calls} times"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of the runs that succeeded.
pub async fn succeeded_runs(channel: &Channel) -> HashSet<String> {
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let mut succeeded = HashSet::new();
    let mut token = String::new();
    loop {
        let page = runs
            .list_runs(pb::ListRunsRequest {
                statuses: vec![pb::RunStatus::Succeeded as i32],
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        succeeded.extend(page.runs.into_iter().map(|run| run.id));
        if page.next_page_token.is_empty() {
            return succeeded;
        }
        token = page.next_page_token;
    }
}

/// Waits until every run of `run_ids` succeeded. (A start committed just
/// before a crash but never acknowledged may add a run that is not listed.)
pub async fn wait_all_succeeded(channel: &Channel, run_ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let succeeded = succeeded_runs(channel).await;
        let missing = run_ids.iter().filter(|id| !succeeded.contains(*id)).count();
        if missing == 0 {
            return;
        }
        if Instant::now() >= deadline {
            let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
            let mut states = Vec::new();
            for id in run_ids.iter().filter(|id| !succeeded.contains(*id)) {
                let run = runs
                    .get_run(pb::GetRunRequest { id: id.clone() })
                    .await
                    .map(|run| run.into_inner());
                states.push(match run {
                    Ok(run) => format!(
                        "{id}: {:?} active {:?} steps {} error {:?}",
                        run.status(),
                        run.active_tasks,
                        run.steps,
                        run.error
                    ),
                    Err(status) => format!("{id}: {status:?}"),
                });
            }
            panic!(
                "{missing} of {} runs did not succeed in {within:?}:\n{}",
                run_ids.len(),
                states.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every run: succeeded exactly once, each task one attempt that succeeded,
/// each task's hook called again only if its lease expired (the crash).
pub async fn check_exactly_once(channel: &Channel, run_ids: &[String], hook: &HookServer) -> usize {
    let mut calls: HashMap<(String, String), usize> = HashMap::new();
    for request in hook.requests() {
        let run = raw_header(&request, "x-taskloom-run-id")
            .unwrap_or_default()
            .to_string();
        let task = raw_header(&request, "x-taskloom-task-id")
            .unwrap_or_default()
            .to_string();
        *calls.entry((run, task)).or_default() += 1;
    }
    let mut runs = pb::run_service_client::RunServiceClient::new(channel.clone());
    let mut expired_leases = 0;
    for run_id in run_ids {
        let events = runs
            .list_run_events(pb::ListRunEventsRequest {
                run_id: run_id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let count =
            |kind: pb::RunEventType| events.iter().filter(|e| e.r#type == kind as i32).count();
        assert_eq!(count(pb::RunEventType::RunSucceeded), 1, "run {run_id}");
        assert_eq!(count(pb::RunEventType::TaskSucceeded), 3, "run {run_id}");
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as i64).collect::<Vec<_>>(),
            "gapless events of {run_id}"
        );
        let attempts = runs
            .list_run_attempts(pb::ListRunAttemptsRequest {
                run_id: run_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .attempts;
        assert_eq!(attempts.len(), 3, "one attempt per task in {run_id}");
        for attempt in &attempts {
            assert_eq!(attempt.status, pb::AttemptStatus::Succeeded as i32);
            let calls = calls
                .get(&(run_id.clone(), attempt.task_id.clone()))
                .copied()
                .unwrap_or(0);
            if attempt.lease_expiries == 0 {
                assert_eq!(calls, 1, "task {} of {run_id} ran once", attempt.task_id);
            } else {
                expired_leases += 1;
                assert!(
                    calls <= 1 + attempt.lease_expiries as usize,
                    "re-run only after its lease expired"
                );
            }
        }
    }
    expired_leases
}
