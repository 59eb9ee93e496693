//! Creating attempts: the next attempt of a task, with the input it
//! receives and its prompt rendered.

use chrono::{DateTime, Utc};

use super::renders::failed_render;
use super::step::Step;
use super::{INTERNAL_QUEUE, RenderJob, reason, value};
use crate::chain::template::TemplateError;
use crate::chain::{self, CompiledTask, Handler, InputSource};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, AttemptStatus};

/// Most tasks one decision fails because their template did not render:
/// `on_failure` pointing back at a task whose template always fails would
/// otherwise go round within one decision until the step budget ran out.
const MAX_TEMPLATE_FAILURES: u32 = 16;

impl Step<'_> {
    /// Creates the next attempt of `task_id`. `previous` is the output that
    /// led here (None for the entry task: the run's input).
    pub(super) fn schedule(
        &mut self,
        task_id: &str,
        previous: pb::Value,
        retry_of: Option<&AttemptRecord>,
        attempt_number: i32,
        available_at: DateTime<Utc>,
    ) {
        if self.run.status.is_terminal() {
            return;
        }
        let Some(task) = self.chain.task(task_id).cloned() else {
            self.fail_run(
                format!("chain {} has no task {task_id:?}", self.chain.id()),
                task_id,
                reason::TASK_FAILED,
            );
            return;
        };
        if retry_of.is_none() && self.run.executions >= self.chain.max_steps() as i32 {
            self.fail_run(
                format!(
                    "the run reached max_steps ({}) before task {task_id:?}",
                    self.chain.max_steps()
                ),
                task_id,
                reason::MAX_STEPS_EXCEEDED,
            );
            return;
        }
        let (input, prompt) = match retry_of {
            Some(failed) => (
                value::decode(&failed.input).unwrap_or_default(),
                Ok(failed.prompt.clone()),
            ),
            None => {
                let input = self.task_input(&task, previous);
                let prompt = self.render_prompt(&task, &input);
                (input, prompt)
            }
        };
        self.run.steps += 1;
        if retry_of.is_none() {
            self.run.executions += 1;
        }
        let mut attempt = AttemptRecord {
            attempt: attempt_number,
            step: self.run.steps,
            status: if task.handler == Handler::HumanInput {
                AttemptStatus::Waiting
            } else {
                AttemptStatus::Ready
            },
            queue: task.queue.as_deref().map_or_else(
                || INTERNAL_QUEUE.to_string(),
                |queue| crate::namespace::queue_key(&self.run.namespace, queue),
            ),
            priority: self.run.priority,
            available_at,
            input: value::encode(&input),
            ..AttemptRecord::ready(
                uuid::Uuid::now_v7().to_string(),
                self.run.id.clone(),
                task.id.clone(),
                self.now,
            )
        };
        match prompt {
            Ok(prompt) => attempt.prompt = prompt,
            Err((message, why)) => {
                // A template that cannot render fails the task for good.
                attempt.status = AttemptStatus::Failed;
                attempt.error = Some(message.clone());
                attempt.dead_lettered = true;
                attempt.ended_at = Some(self.now);
                self.attempts.push(attempt.clone());
                self.attempt_event(pb::RunEventType::TaskFailed, &attempt, |event| {
                    event.message = message.clone();
                });
                self.template_failures += 1;
                if self.template_failures >= MAX_TEMPLATE_FAILURES {
                    // Do not follow `on_failure` into yet another task that
                    // cannot start.
                    self.fail_run(
                        format!(
                            "{message} ({} tasks failed to render in a row; on_failure was not followed)",
                            self.template_failures
                        ),
                        &task.id,
                        why,
                    );
                } else {
                    self.fail_task(&task, message, why);
                }
                return;
            }
        }
        self.attempts.push(attempt.clone());
        self.attempt_event(pb::RunEventType::TaskReady, &attempt, |_| {});
        if task.handler == Handler::HumanInput {
            let prompt = attempt
                .prompt
                .clone()
                .unwrap_or_else(|| value::as_text(&input));
            self.event(pb::RunEventType::InputRequested, |event| {
                event.task_id = task.id.clone();
                event.attempt_id = attempt.id.clone();
                event.message = prompt;
            });
        }
    }

    /// The value a task receives: the previous output, the run's input, a
    /// named task's output, or for a join the outputs of the tasks it waits
    /// for, merged as a JSON array in declared order.
    pub(super) fn task_input(&self, task: &CompiledTask, previous: pb::Value) -> pb::Value {
        if !task.wait_for.is_empty() {
            let merged: Vec<serde_json::Value> = task
                .wait_for
                .iter()
                .map(|id| {
                    self.latest_output(id)
                        .map(|output| value::template_json(&output))
                        .unwrap_or(serde_json::Value::Null)
                })
                .collect();
            return value::json_value(serde_json::Value::Array(merged));
        }
        match &task.input {
            InputSource::PreviousOutput => previous,
            InputSource::RunInput => self.run_input(),
            InputSource::TaskOutput(id) => {
                self.latest_output(id).unwrap_or_else(|| value::text(""))
            }
        }
    }

    /// The rendered prompt template (for `raise_error`, the rendered error
    /// message), stored on the attempt so executors and workers get it as
    /// recorded. An error is the message and reason to fail the task with.
    pub(super) fn render_prompt(
        &self,
        task: &CompiledTask,
        input: &pb::Value,
    ) -> Result<Option<String>, (String, &'static str)> {
        if task.handler == Handler::Hook {
            // A hook's "prompt" is its rendered arguments, as a JSON object.
            let Some(hook) = &task.hook else {
                return Ok(None);
            };
            let mut args = serde_json::Map::new();
            for (name, template) in &hook.args {
                let rendered = self
                    .render(template, input)
                    .map_err(|error| failed_render(task, &format!("hook.args[{name:?}]"), error))?;
                args.insert(name.clone(), serde_json::Value::String(rendered));
            }
            return Ok(Some(serde_json::Value::Object(args).to_string()));
        }
        let (field, template) = if task.handler == Handler::RaiseError {
            ("error_message", &task.error_message)
        } else {
            ("prompt_template", &task.prompt_template)
        };
        let Some(template) = template else {
            return Ok(None);
        };
        self.render(template, input)
            .map(Some)
            .map_err(|error| failed_render(task, field, error))
    }

    /// A template rendered with this step's context, as the kernel rendered
    /// it before the decision (see [`Renders`]).
    pub(super) fn render(
        &self,
        template: &str,
        previous: &pb::Value,
    ) -> Result<String, TemplateError> {
        let context = chain::template::context(
            value::template_json(&self.run_input()),
            value::template_json(previous),
            self.task_outputs()
                .into_iter()
                .map(|(id, output)| (id, value::template_json(&output))),
        );
        self.renders.get(RenderJob {
            template: template.to_string(),
            context,
        })
    }

    /// A new `Ready` attempt with the same input as `attempt` (a retry or a
    /// re-run after pause/RetryRun).
    pub(super) fn requeue(&mut self, attempt: &AttemptRecord) {
        let task_id = attempt.task_id.clone();
        let now = self.now;
        self.schedule(
            &task_id,
            pb::Value::default(),
            Some(attempt),
            attempt.attempt + 1,
            now,
        );
    }
}
