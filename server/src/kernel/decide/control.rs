//! Decisions that steer a whole run: cancel, pause, resume, retry, and the
//! answer to a `human_input` task.

use super::step::Step;
use super::{Given, HUMAN_OWNER, TaskSuccess, rejected, run_ended, value};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptStatus, Plan, RejectionKind, RunRecord, RunStatus};

/// What a call that moves a run to `wanted` answers without deciding: a
/// no-op when the run is there already, a rejection when it ended.
fn settled(run: &RunRecord, wanted: RunStatus) -> Option<Plan> {
    if run.status == wanted {
        Some(Plan::apply())
    } else if run.status.is_terminal() {
        Some(rejected(run_ended(run)))
    } else {
        None
    }
}

/// Cancels a run. Already cancelled: no-op. Ended otherwise: rejected.
pub fn cancel(given: &Given, why: &str) -> Plan {
    if let Some(plan) = settled(&given.snapshot.run, RunStatus::Cancelled) {
        return plan;
    }
    let mut step = Step::new(given);
    step.cancel_active();
    step.run.status = RunStatus::Cancelled;
    step.run.ended_at = Some(given.now);
    let message = if why.is_empty() {
        "cancelled".to_string()
    } else {
        why.to_string()
    };
    step.event(pb::RunEventType::RunCancelled, |event| {
        event.message = message
    });
    step.finish()
}

/// Pauses dispatch. With `cancel_running`, executing attempts are cancelled
/// and re-queued to run again on resume.
pub fn pause(given: &Given, cancel_running: bool) -> Plan {
    if let Some(plan) = settled(&given.snapshot.run, RunStatus::Paused) {
        return plan;
    }
    let mut step = Step::new(given);
    if cancel_running {
        let leased: Vec<_> = step
            .attempts
            .iter()
            .filter(|a| a.status == AttemptStatus::Leased)
            .cloned()
            .collect();
        for attempt in leased {
            let mut cancelled = attempt.clone();
            cancelled.status = AttemptStatus::Cancelled;
            cancelled.ended_at = Some(given.now);
            cancelled.error = Some("cancelled by PauseRun".to_string());
            step.update(cancelled);
            step.requeue(&attempt);
        }
    }
    step.run.status = RunStatus::Paused;
    step.event(pb::RunEventType::RunPaused, |_| {});
    step.finish()
}

/// Resumes a paused run. Not paused: no-op (if live) or rejected (ended).
pub fn resume(given: &Given) -> Plan {
    let run = &given.snapshot.run;
    match run.status {
        RunStatus::Paused => {}
        status if status.is_terminal() => return rejected(run_ended(run)),
        _ => return Plan::apply(),
    }
    let mut step = Step::new(given);
    // `finish` derives the live status from the attempts.
    step.run.status = RunStatus::Running;
    step.event(pb::RunEventType::RunResumed, |_| {});
    step.finish()
}

/// Answers a `human_input` task. The same `request_key` (request id and
/// payload hash) answering again is a no-op; another key for an answered
/// task is rejected.
pub fn submit_input(
    given: &Given,
    task_id: &str,
    answer: pb::Value,
    request_key: Option<&str>,
) -> Plan {
    let Given {
        chain,
        snapshot,
        now,
        ..
    } = *given;
    let mut step = Step::new(given);
    if chain.task(task_id).is_none() {
        return Plan::reject(
            RejectionKind::NotFound,
            format!("chain {} has no task {task_id:?}", chain.id()),
        );
    }
    if let Some(key) = request_key {
        let answered = step.attempts.iter().any(|a| {
            a.task_id == task_id
                && a.lease_owner.as_deref() == Some(HUMAN_OWNER)
                && a.lease_token.as_deref() == Some(key)
        });
        if answered {
            return Plan::repeat();
        }
    }
    let waiting = step
        .attempts
        .iter()
        .find(|a| a.task_id == task_id && a.status == AttemptStatus::Waiting)
        .cloned();
    let Some(attempt) = waiting else {
        return Plan::reject(
            RejectionKind::FailedPrecondition,
            format!(
                "run {} is not waiting for input on task {task_id:?}",
                snapshot.run.id
            ),
        );
    };
    if step.run.status.is_terminal() {
        return Plan::reject(
            RejectionKind::RunNotActive,
            format!("run {} already ended", snapshot.run.id),
        );
    }
    let mut answered = attempt.clone();
    answered.lease_owner = Some(HUMAN_OWNER.to_string());
    answered.lease_token = request_key.map(str::to_string);
    answered.started_at = Some(now);
    step.update(answered.clone());
    step.event(pb::RunEventType::InputReceived, |event| {
        event.task_id = attempt.task_id.clone();
        event.attempt_id = attempt.id.clone();
        event.output = Some(answer.clone());
    });
    step.succeed_attempt(answered, TaskSuccess::output(answer));
    step.finish()
}

/// Continues a failed run from the task that failed.
///
/// The step budget (`max_steps`) is the whole run's: a run that failed with
/// `MAX_STEPS_EXCEEDED` fails again at once when retried.
pub fn retry_run(given: &Given) -> Plan {
    let Given {
        chain,
        snapshot,
        now,
        ..
    } = *given;
    if snapshot.run.status != RunStatus::Failed {
        return Plan::reject(
            RejectionKind::FailedPrecondition,
            format!(
                "only failed runs can be retried; run {} is {}",
                snapshot.run.id,
                snapshot.run.status.as_str()
            ),
        );
    }
    let mut step = Step::new(given);
    let failed_task = snapshot
        .run
        .error
        .as_ref()
        .map(|error| error.task_id.clone())
        .unwrap_or_default();
    let last_failed = step
        .attempts
        .iter()
        .filter(|a| {
            a.task_id == failed_task
                && matches!(a.status, AttemptStatus::Failed | AttemptStatus::TimedOut)
        })
        .max_by_key(|a| a.step)
        .cloned();
    step.run.status = RunStatus::Running;
    step.run.error = None;
    step.run.ended_at = None;
    step.event(pb::RunEventType::RunRetried, |event| {
        event.task_id = failed_task.clone()
    });
    match last_failed {
        Some(attempt) => step.requeue(&attempt),
        None => {
            // The run failed outside any attempt (e.g. over its token
            // limit): start over from the entry task.
            let input = value::decode(&snapshot.run.input).unwrap_or_default();
            let entry = chain.entry().to_string();
            step.schedule(&entry, input, None, 1, now);
        }
    }
    step.finish()
}
