//! `ReplayRun`: re-derives a run's path from its recorded outputs, calling
//! no model, hook or worker, and compares it with what was recorded. Pure.
//!
//! The replay walks the chain from the entry task in a canonical order
//! (breadth first, targets in declared order), taking each task's recorded
//! executions in the order they happened. Which tasks run, and how often,
//! is a function of the outputs alone; the interleaving of parallel branches
//! is not, so the fingerprint hashes the canonical walk and is the same for
//! every replay of the same record.

use std::collections::{BTreeMap, VecDeque};

use prost::Message;
use sha2::{Digest, Sha256};

use super::{KernelError, KernelResult, value};
use crate::chain::{CompiledChain, Goto};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, AttemptStatus, RunRecord};

/// How one recorded task execution (its attempts, retries included) ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Succeeded(pb::Value),
    /// Failed for good (no retry left).
    Failed,
    /// Still running, or cancelled.
    Unfinished,
}

struct Execution {
    step: i32,
    outcome: Outcome,
}

/// Groups a run's attempts into executions per task, in step order.
fn executions(attempts: &[AttemptRecord]) -> KernelResult<BTreeMap<String, Vec<Execution>>> {
    let mut by_task: BTreeMap<String, Vec<Execution>> = BTreeMap::new();
    let mut ordered: Vec<&AttemptRecord> = attempts.iter().collect();
    ordered.sort_by_key(|a| a.step);
    for attempt in ordered {
        let outcome = match attempt.status {
            AttemptStatus::Succeeded => {
                let bytes = attempt.output.as_deref().unwrap_or_default();
                Outcome::Succeeded(value::decode(bytes).map_err(KernelError::Corrupt)?)
            }
            AttemptStatus::Failed | AttemptStatus::TimedOut if attempt.dead_lettered => {
                Outcome::Failed
            }
            _ => Outcome::Unfinished,
        };
        let executions = by_task.entry(attempt.task_id.clone()).or_default();
        match executions.last_mut() {
            // A retry continues the execution it retries.
            Some(last) if attempt.attempt > 1 => last.outcome = outcome,
            _ => executions.push(Execution {
                step: attempt.step,
                outcome,
            }),
        }
    }
    Ok(by_task)
}

pub fn replay(
    chain: &CompiledChain,
    run: &RunRecord,
    attempts: &[AttemptRecord],
) -> KernelResult<pb::ReplayRunResponse> {
    let executions = executions(attempts)?;
    let mut consumed: BTreeMap<String, usize> = BTreeMap::new();
    let mut succeeded: BTreeMap<String, usize> = BTreeMap::new();
    let mut hasher = Sha256::new();
    hasher.update(run.chain_id.as_bytes());
    hasher.update(run.chain_version.to_be_bytes());
    hasher.update(&run.input);
    let mut path = Vec::new();
    let mut divergences = Vec::new();
    let mut queue: VecDeque<String> = VecDeque::from([chain.entry().to_string()]);
    // Bounded by the record: a walk longer than it cannot be replayed.
    let budget = attempts.len() + chain.tasks().len() + 1;
    while let Some(task_id) = queue.pop_front() {
        if path.len() >= budget {
            break;
        }
        let index = consumed.entry(task_id.clone()).or_default();
        let Some(execution) = executions.get(&task_id).and_then(|list| list.get(*index)) else {
            if run.status.is_terminal() {
                divergences.push(pb::Divergence {
                    step: path.len() as i32,
                    task_id: task_id.clone(),
                    recorded: "no execution".to_string(),
                    replayed: format!("task {task_id} runs"),
                });
            }
            continue;
        };
        *index += 1;
        path.push(task_id.clone());
        hasher.update(task_id.as_bytes());
        let Some(task) = chain.task(&task_id) else {
            continue;
        };
        let next: Vec<String> = match &execution.outcome {
            Outcome::Unfinished => {
                hasher.update(b"unfinished");
                continue;
            }
            Outcome::Failed => {
                hasher.update(b"failed");
                task.transition.on_failure.clone().into_iter().collect()
            }
            Outcome::Succeeded(output) => {
                *succeeded.entry(task_id.clone()).or_default() += 1;
                hasher.update(output.encode_to_vec());
                let text = value::as_text(output);
                if task.transition.branches.is_empty() {
                    Vec::new()
                } else {
                    match task.transition.next(&text) {
                        Some(Goto::End) => Vec::new(),
                        Some(goto) => goto.targets().to_vec(),
                        // No branch matched: the failure path.
                        None => task.transition.on_failure.clone().into_iter().collect(),
                    }
                }
            }
        };
        hasher.update(next.join(",").as_bytes());
        for target in next {
            let ready = chain
                .task(&target)
                .is_none_or(|t| t.wait_for.iter().all(|dep| succeeded.contains_key(dep)));
            if ready && !queue.contains(&target) {
                queue.push_back(target);
            }
        }
    }
    // Recorded executions the replay never reached.
    for (task_id, list) in &executions {
        let reached = consumed.get(task_id).copied().unwrap_or(0);
        for execution in list.iter().skip(reached) {
            divergences.push(pb::Divergence {
                step: execution.step,
                task_id: task_id.clone(),
                recorded: format!("task {task_id} ran"),
                replayed: "not reached from the recorded outputs".to_string(),
            });
        }
    }
    let digest = hasher.finalize();
    Ok(pb::ReplayRunResponse {
        fingerprint: digest.iter().map(|b| format!("{b:02x}")).collect(),
        diverged: !divergences.is_empty(),
        path,
        divergences,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::kernel::decide::{self, NewRun, Renders};
    use crate::store::RunStatus;

    fn chain(json: serde_json::Value) -> CompiledChain {
        // Built from protos to stay independent of any JSON mapping.
        let tasks = json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| pb::Task {
                id: t["id"].as_str().unwrap().into(),
                handler: "noop".into(),
                wait_for: t["wait_for"]
                    .as_array()
                    .map(|w| w.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default(),
                transition: Some(pb::Transition {
                    on_failure: t["on_failure"].as_str().unwrap_or("").into(),
                    branches: t["branches"]
                        .as_array()
                        .map(|b| {
                            b.iter()
                                .map(|b| pb::Branch {
                                    operator: b[0].as_str().unwrap().into(),
                                    when: b[1].as_str().unwrap().into(),
                                    goto: Some(value::to_proto_json(&b[2])),
                                    ..Default::default()
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                ..Default::default()
            })
            .collect();
        crate::chain::compile(&pb::Chain {
            id: "c".into(),
            tasks,
            ..Default::default()
        })
        .unwrap()
    }

    /// A run started on a one-task chain, and its first attempt: what the
    /// tests' records are made from.
    fn started() -> (RunRecord, AttemptRecord) {
        let new = NewRun {
            id: "r".into(),
            namespace: "default".into(),
            chain_id: "c".into(),
            chain_version: 1,
            input: value::text("in"),
            labels: Default::default(),
            priority: 0,
            tenant: String::new(),
            request_id: None,
        };
        let chain = chain(serde_json::json!({"tasks": [{"id": "a"}]}));
        let (run, mut attempts, _) = decide::start(&chain, new, &Renders::default(), Utc::now());
        (run, attempts.remove(0))
    }

    fn run(status: RunStatus) -> RunRecord {
        RunRecord {
            status,
            ..started().0
        }
    }

    fn attempt(
        step: i32,
        task: &str,
        number: i32,
        status: AttemptStatus,
        output: &str,
    ) -> AttemptRecord {
        AttemptRecord {
            id: format!("a{step}"),
            task_id: task.into(),
            attempt: number,
            step,
            status,
            output: (status == AttemptStatus::Succeeded)
                .then(|| value::encode(&value::text(output))),
            dead_lettered: status == AttemptStatus::Failed,
            ..started().1
        }
    }

    /// One successful attempt per `(task, output)`, in step order.
    fn succeeded(path: &[(&str, &str)]) -> Vec<AttemptRecord> {
        path.iter()
            .zip(1..)
            .map(|(&(task, output), step)| attempt(step, task, 1, AttemptStatus::Succeeded, output))
            .collect()
    }

    fn diamond() -> CompiledChain {
        chain(serde_json::json!({"tasks": [
            {"id": "a", "branches": [["default", "", ["b", "c"]]]},
            {"id": "b", "branches": [["default", "", "d"]]},
            {"id": "c", "branches": [["default", "", "d"]]},
            {"id": "d", "wait_for": ["b", "c"], "branches": [["default", "", "end"]]},
        ]}))
    }

    #[test]
    fn the_fingerprint_ignores_the_interleaving_of_parallel_branches() {
        let chain = diamond();
        let one = succeeded(&[("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")]);
        // c finished first: the same executions, another step order.
        let other = succeeded(&[("a", "x"), ("c", "z"), ("b", "y"), ("d", "w")]);
        let first = replay(&chain, &run(RunStatus::Succeeded), &one).unwrap();
        let second = replay(&chain, &run(RunStatus::Succeeded), &other).unwrap();
        assert!(!first.diverged, "{first:?}");
        assert_eq!(first.path, vec!["a", "b", "c", "d"]);
        assert_eq!(first.fingerprint, second.fingerprint);
        let changed = succeeded(&[("a", "x"), ("b", "CHANGED"), ("c", "z"), ("d", "w")]);
        let third = replay(&chain, &run(RunStatus::Succeeded), &changed).unwrap();
        assert_ne!(
            first.fingerprint, third.fingerprint,
            "outputs are part of the fingerprint"
        );
    }

    #[test]
    fn a_recorded_execution_the_outputs_do_not_lead_to_is_a_divergence() {
        let chain = chain(serde_json::json!({"tasks": [
            {"id": "route", "branches": [["equals", "left", "left"], ["default", "", "right"]]},
            {"id": "left"},
            {"id": "right"},
        ]}));
        let record = succeeded(&[("route", "left"), ("right", "r")]);
        let result = replay(&chain, &run(RunStatus::Succeeded), &record).unwrap();
        assert!(result.diverged);
        let tasks: Vec<&str> = result
            .divergences
            .iter()
            .map(|d| d.task_id.as_str())
            .collect();
        assert_eq!(
            tasks,
            vec!["left", "right"],
            "left was expected and missing; right was not expected"
        );
    }

    #[test]
    fn retries_and_failure_paths_replay() {
        let chain = chain(serde_json::json!({"tasks": [
            {"id": "try", "on_failure": "recover", "branches": [["default", "", "end"]]},
            {"id": "recover"},
        ]}));
        let record = [
            attempt(1, "try", 1, AttemptStatus::Failed, ""),
            attempt(2, "try", 2, AttemptStatus::Failed, ""),
            attempt(3, "recover", 1, AttemptStatus::Succeeded, "fixed"),
        ];
        let mut first_failed = record.clone();
        first_failed[0].dead_lettered = false;
        let result = replay(&chain, &run(RunStatus::Succeeded), &first_failed).unwrap();
        assert!(!result.diverged, "{result:?}");
        assert_eq!(result.path, vec!["try", "recover"]);
        // A run still running replays as far as it got, without divergence.
        let partial = [attempt(1, "try", 1, AttemptStatus::Leased, "")];
        let result = replay(&chain, &run(RunStatus::Running), &partial).unwrap();
        assert!(!result.diverged);
        assert_eq!(result.path, vec!["try"]);
    }
}
