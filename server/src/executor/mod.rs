//! Executes one attempt of a built-in handler. The kernel's runner owns the
//! lease, the timeout and recording the result; this module only turns an
//! attempt's input into an output (or a failure).

use crate::chain::{CompiledTask, Handler};
use crate::kernel::{Kernel, TaskFailure, TaskSuccess, value};
use crate::store::AttemptRecord;

/// The built-in handlers of this replica.
#[derive(Default)]
pub struct Executor {}

impl Executor {
    pub fn new() -> Executor {
        Executor {}
    }

    /// Runs `attempt` of `task`. Dropping the future cancels the work.
    pub async fn execute(
        &self,
        _kernel: &Kernel,
        task: &CompiledTask,
        attempt: &AttemptRecord,
    ) -> Result<TaskSuccess, TaskFailure> {
        let input =
            value::decode(&attempt.input).map_err(|error| TaskFailure::new(error, false))?;
        match task.handler {
            Handler::Noop => Ok(TaskSuccess::output(input)),
            Handler::RaiseError => Err(TaskFailure::new(
                attempt
                    .prompt
                    .clone()
                    .unwrap_or_else(|| format!("task {} raised an error", task.id)),
                false,
            )),
            other => Err(TaskFailure::new(
                format!(
                    "handler {} cannot run on this server: no executor is configured for it",
                    other.name()
                ),
                false,
            )),
        }
    }
}
