//! The template renders a decision uses, done before it.

use std::sync::Mutex;

use super::reason;
use crate::chain::CompiledTask;
pub use crate::chain::template::RenderJob;
use crate::chain::template::TemplateError;

/// The renders a decision may use. Templates are never rendered inside a
/// decision: decisions run in the store's write transaction under the run's
/// lock, and a template may be slow. A decision that needs a render it does
/// not find here records it as missing and rejects as
/// [`RejectionKind::Deferred`](crate::store::RejectionKind::Deferred); the
/// kernel renders what is missing outside any transaction and decides again
/// with the results. Renders are found by their exact template and context,
/// so a result is only ever used where rendering in place would have given
/// the same.
#[derive(Debug, Default)]
pub struct Renders {
    done: Vec<(RenderJob, Result<String, TemplateError>)>,
    missing: Mutex<Vec<RenderJob>>,
}

impl Renders {
    /// Renders `done` with their results.
    pub fn new(done: Vec<(RenderJob, Result<String, TemplateError>)>) -> Renders {
        Renders {
            done,
            missing: Mutex::default(),
        }
    }

    /// The renders done so far, to add more to.
    pub fn into_done(self) -> Vec<(RenderJob, Result<String, TemplateError>)> {
        self.done
    }

    pub(super) fn get(&self, job: RenderJob) -> Result<String, TemplateError> {
        if let Some((_, result)) = self.done.iter().find(|(done, _)| *done == job) {
            return result.clone();
        }
        let mut missing = self.missing();
        if !missing.contains(&job) {
            missing.push(job);
        }
        // A stand-in: the decision is rejected, whatever it did with it.
        Ok(String::new())
    }

    /// Whether a decision asked for a render not done yet.
    pub fn has_missing(&self) -> bool {
        !self.missing().is_empty()
    }

    /// The renders decisions asked for and did not find.
    pub fn take_missing(&self) -> Vec<RenderJob> {
        std::mem::take(&mut *self.missing())
    }

    fn missing(&self) -> std::sync::MutexGuard<'_, Vec<RenderJob>> {
        self.missing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The message and reason a task fails with when its `field` template did
/// not render.
pub(super) fn failed_render(
    task: &CompiledTask,
    field: &str,
    error: TemplateError,
) -> (String, &'static str) {
    let why = match error {
        TemplateError::Limit(_) => reason::TEMPLATE_LIMIT,
        TemplateError::Invalid(_) => reason::TEMPLATE_ERROR,
    };
    (format!("task {}: {field}: {error}", task.id), why)
}
