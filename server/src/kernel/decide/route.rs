//! Moving a run along its chain: a task's success, the transition its
//! output selects, joins, and the run's end.

use super::renders::failed_render;
use super::step::Step;
use super::{TaskSuccess, event_data, reason, value};
use crate::chain::{CompiledTask, Goto};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, AttemptStatus, RunStatus};

impl Step<'_> {
    pub(super) fn succeed_attempt(&mut self, attempt: AttemptRecord, success: TaskSuccess) {
        let Some(task) = self.chain.task(&attempt.task_id).cloned() else {
            self.fail_run(
                format!(
                    "chain {} has no task {:?}",
                    self.chain.id(),
                    attempt.task_id
                ),
                &attempt.task_id,
                reason::TASK_FAILED,
            );
            return;
        };
        let mut done = attempt.clone();
        done.status = AttemptStatus::Succeeded;
        done.output = Some(value::encode(&success.output));
        done.ended_at = Some(self.now);
        done.input_tokens = success.input_tokens;
        done.output_tokens = success.output_tokens;
        done.backend_id = success.backend_id.clone();
        done.model = success.model.clone();
        // A throttle note (see `attempt::throttle`) does not outlive the wait.
        done.error = None;
        self.update(done);
        self.run.input_tokens += success.input_tokens;
        self.run.output_tokens += success.output_tokens;
        self.attempt_event(pb::RunEventType::TaskSucceeded, &attempt, |event| {
            event.output = Some(success.output.clone());
            event.usage = Some(pb::TokenUsage {
                input_tokens: success.input_tokens,
                output_tokens: success.output_tokens,
            });
        });
        if let Some(limit) = self.chain.token_limit() {
            let spent = (self.run.input_tokens + self.run.output_tokens).max(0) as u64;
            if spent > limit {
                self.fail_run(
                    format!("the run spent {spent} tokens, over its token_limit of {limit}"),
                    &task.id,
                    reason::TOKEN_LIMIT_EXCEEDED,
                );
                return;
            }
        }
        self.advance(&task, success.output);
    }

    /// Evaluates the task's transition on its output and schedules what
    /// follows.
    pub(super) fn advance(&mut self, task: &CompiledTask, output: pb::Value) {
        if let Some(template) = &task.print {
            match self.render(template, &output) {
                Ok(text) => self.event(pb::RunEventType::Message, |event| {
                    event.task_id = task.id.clone();
                    event.message = text;
                }),
                Err(error) => {
                    let (message, why) = failed_render(task, "print", error);
                    self.fail_task(task, message, why);
                    return;
                }
            }
        }
        let text = value::as_text(&output);
        let Some(branch) = (if task.transition.branches.is_empty() {
            None
        } else {
            task.transition.next_branch(&text)
        }) else {
            if task.transition.branches.is_empty() {
                self.transition_event(task, &Goto::End);
                self.finish_if_done();
            } else {
                let shown: String = text.chars().take(200).collect();
                self.fail_task(
                    task,
                    format!("no branch of task {} matched its output {shown:?}", task.id),
                    reason::NO_BRANCH_MATCHED,
                );
            }
            return;
        };
        let goto = branch.goto.clone();
        if let Some(alert) = branch.alert_on_match.clone().filter(|a| !a.is_empty()) {
            self.event(pb::RunEventType::Message, |event| {
                event.task_id = task.id.clone();
                event.message = alert;
            });
        }
        self.transition_event(task, &goto);
        for target in goto.targets() {
            if self.join_ready(target) {
                let now = self.now;
                self.schedule(target, output.clone(), None, 1, now);
            }
        }
        self.finish_if_done();
    }

    pub(super) fn transition_event(&mut self, task: &CompiledTask, goto: &Goto) {
        let next: Vec<String> = match goto {
            Goto::End => vec!["end".to_string()],
            other => other.targets().to_vec(),
        };
        self.event(pb::RunEventType::Transition, |event| {
            event.task_id = task.id.clone();
            event.message = next.join(",");
            event.data = event_data("next", serde_json::json!(next));
        });
    }

    /// A task with `wait_for` starts once every task it waits for has
    /// succeeded in this run, and not while an attempt of it is active.
    pub(super) fn join_ready(&self, target: &str) -> bool {
        let Some(task) = self.chain.task(target) else {
            return true;
        };
        if task.wait_for.is_empty() {
            return true;
        }
        let active = self
            .attempts
            .iter()
            .any(|a| a.task_id == target && a.status.is_active());
        !active
            && task.wait_for.iter().all(|dep| {
                self.attempts
                    .iter()
                    .any(|a| &a.task_id == dep && a.status == AttemptStatus::Succeeded)
            })
    }

    /// Ends the run successfully once nothing is active: the output is that
    /// of the task that reached `end` (several, as a JSON array in declared
    /// task order).
    pub(super) fn finish_if_done(&mut self) {
        if self.run.status.is_terminal() || self.attempts.iter().any(|a| a.status.is_active()) {
            return;
        }
        let mut ended: Vec<(usize, pb::Value)> = Vec::new();
        for (id, output) in self.task_outputs() {
            let Some(task) = self.chain.task(&id) else {
                continue;
            };
            let reaches_end = task.transition.branches.is_empty()
                || task.transition.next(&value::as_text(&output)) == Some(&Goto::End);
            if reaches_end {
                ended.push((self.chain.position(&id).unwrap_or(usize::MAX), output));
            }
        }
        ended.sort_by_key(|(position, _)| *position);
        let output = match ended.len() {
            0 => value::text(""),
            1 => ended.remove(0).1,
            _ => value::json_value(serde_json::Value::Array(
                ended
                    .iter()
                    .map(|(_, output)| value::template_json(output))
                    .collect(),
            )),
        };
        self.run.status = RunStatus::Succeeded;
        self.run.output = Some(value::encode(&output));
        self.run.ended_at = Some(self.now);
        self.event(pb::RunEventType::RunSucceeded, |event| {
            event.output = Some(output)
        });
    }
}
