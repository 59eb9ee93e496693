//! Failure: an attempt that failed (retried per policy, or failing its
//! task), a task that failed for good (`on_failure`, or failing the run),
//! and a failed run.

use super::step::Step;
use super::{TaskFailure, event_data, reason, to_chrono, value};
use crate::chain::CompiledTask;
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, AttemptStatus, RunFailure, RunStatus};

impl Step<'_> {
    pub(super) fn fail_attempt(
        &mut self,
        attempt: AttemptRecord,
        failure: TaskFailure,
        random_unit: f64,
    ) {
        let Some(task) = self.chain.task(&attempt.task_id).cloned() else {
            self.fail_run(failure.message, &attempt.task_id, reason::TASK_FAILED);
            return;
        };
        let mut failed = attempt.clone();
        failed.status = if failure.timed_out {
            AttemptStatus::TimedOut
        } else {
            AttemptStatus::Failed
        };
        failed.error = Some(failure.message.clone());
        failed.ended_at = Some(self.now);
        failed.input_tokens = failure.input_tokens;
        failed.output_tokens = failure.output_tokens;
        self.run.input_tokens += failure.input_tokens;
        self.run.output_tokens += failure.output_tokens;
        let will_retry = failure.retryable && task.retry.can_retry(attempt.attempt.max(0) as u32);
        failed.dead_lettered = !will_retry;
        self.update(failed);
        let kind = if failure.timed_out {
            pb::RunEventType::TaskTimedOut
        } else {
            pb::RunEventType::TaskFailed
        };
        self.attempt_event(kind, &attempt, |event| {
            event.message = failure.message.clone();
        });
        if will_retry {
            let delay = failure
                .retry_delay
                .unwrap_or_else(|| task.retry.delay(attempt.attempt.max(1) as u32, random_unit));
            let available_at = self.now + to_chrono(delay);
            self.event(pb::RunEventType::TaskRetryScheduled, |event| {
                event.task_id = attempt.task_id.clone();
                event.attempt = attempt.attempt + 1;
                event.message = format!("retry in {} ms", delay.as_millis());
            });
            let task_id = attempt.task_id.clone();
            self.schedule(
                &task_id,
                pb::Value::default(),
                Some(&attempt),
                attempt.attempt + 1,
                available_at,
            );
            return;
        }
        let why = if failure.timed_out {
            reason::TIMEOUT
        } else {
            reason::TASK_FAILED
        };
        let message = if attempt.attempt > 1 {
            format!(
                "failed after {} attempts: {}",
                attempt.attempt, failure.message
            )
        } else {
            failure.message
        };
        self.fail_task(&task, message, why);
    }

    /// A task failed for good: follow `on_failure` (its input is the error
    /// message), or fail the run.
    pub(super) fn fail_task(&mut self, task: &CompiledTask, message: String, why: &str) {
        match task.transition.on_failure.clone() {
            Some(handler_task) => {
                self.event(pb::RunEventType::Transition, |event| {
                    event.task_id = task.id.clone();
                    event.message = handler_task.clone();
                    event.data = event_data("on_failure", serde_json::json!(handler_task));
                });
                let now = self.now;
                self.schedule(&handler_task, value::text(message), None, 1, now);
                self.finish_if_done();
            }
            None => self.fail_run(message, &task.id, why),
        }
    }

    pub(super) fn fail_run(&mut self, message: String, task_id: &str, why: &str) {
        if self.run.status.is_terminal() {
            return;
        }
        self.cancel_active();
        self.run.status = RunStatus::Failed;
        self.run.ended_at = Some(self.now);
        self.run.error = Some(RunFailure {
            message: message.clone(),
            task_id: task_id.to_string(),
            reason: why.to_string(),
        });
        self.event(pb::RunEventType::RunFailed, |event| {
            event.task_id = task_id.to_string();
            event.message = message;
            event.data = event_data("reason", serde_json::json!(why));
        });
    }
}
