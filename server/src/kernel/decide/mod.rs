//! The kernel's decisions: pure functions from a run's snapshot (and the
//! chain version it pinned) to a [`Plan`] of writes. The store applies a
//! plan in one transaction under the run's row lock, so every transition is
//! atomic, and the path of a run depends only on its chain version, input
//! and recorded task outputs — never on timing or on which replica decided.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message;

use super::value;
use crate::chain::template::TemplateError;
use crate::chain::{self, CompiledChain, CompiledTask, Goto, Handler, InputSource};
use crate::proto::taskloom::v1 as pb;
use crate::store::{
    AttemptRecord, AttemptStatus, Plan, RejectionKind, RunFailure, RunRecord, RunSnapshot,
    RunStatus,
};

/// The queue built-in handlers are claimed from.
pub const INTERNAL_QUEUE: &str = "internal";
/// `lease_owner` of an answered `human_input` attempt.
const HUMAN_OWNER: &str = "human";

/// Error reasons recorded on failed runs.
pub mod reason {
    pub const TASK_FAILED: &str = "TASK_FAILED";
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const NO_BRANCH_MATCHED: &str = "NO_BRANCH_MATCHED";
    pub const MAX_STEPS_EXCEEDED: &str = "MAX_STEPS_EXCEEDED";
    pub const TOKEN_LIMIT_EXCEEDED: &str = "TOKEN_LIMIT_EXCEEDED";
    pub const TEMPLATE_ERROR: &str = "TEMPLATE_ERROR";
    /// A template exceeded its fuel, output or memory bound.
    pub const TEMPLATE_LIMIT: &str = "TEMPLATE_LIMIT";
    pub const LEASE_LOST: &str = "LEASE_LOST";
}

/// A new run before it is stored.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub chain_id: String,
    pub chain_version: i64,
    pub input: pb::Value,
    pub labels: BTreeMap<String, String>,
    pub priority: i32,
    pub tenant: String,
    pub request_id: Option<String>,
}

/// What a successful attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSuccess {
    pub output: pb::Value,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub backend_id: Option<String>,
    pub model: Option<String>,
}

impl TaskSuccess {
    pub fn output(output: pb::Value) -> TaskSuccess {
        TaskSuccess {
            output,
            input_tokens: 0,
            output_tokens: 0,
            backend_id: None,
            model: None,
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    pub message: String,
    /// False makes the failure final whatever the retry policy says.
    pub retryable: bool,
    /// Overrides the policy's backoff for the next attempt.
    pub retry_delay: Option<Duration>,
    /// The attempt exceeded its timeout.
    pub timed_out: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl TaskFailure {
    pub fn new(message: impl Into<String>, retryable: bool) -> TaskFailure {
        TaskFailure {
            message: message.into(),
            retryable,
            retry_delay: None,
            timed_out: false,
            input_tokens: 0,
            output_tokens: 0,
        }
    }
}

/// A template render a decision needs: its template and the context it
/// sees.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderJob {
    pub template: String,
    pub context: serde_json::Value,
}

/// The renders a decision may use. Templates are never rendered inside a
/// decision: decisions run in the store's write transaction under the run's
/// lock, and a template may be slow. A decision that needs a render it does
/// not find here records it as missing and rejects as
/// [`RejectionKind::Deferred`]; the kernel renders what is missing outside
/// any transaction and decides again with the results. Renders are found by
/// their exact template and context, so a result is only ever used where
/// rendering in place would have given the same.
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

    fn get(&self, job: RenderJob) -> Result<String, TemplateError> {
        if let Some((_, result)) = self.done.iter().find(|(done, _)| *done == job) {
            return result.clone();
        }
        let mut missing = self
            .missing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !missing.contains(&job) {
            missing.push(job);
        }
        // A stand-in: the decision is rejected, whatever it did with it.
        Ok(String::new())
    }

    /// Whether a decision asked for a render not done yet.
    pub fn has_missing(&self) -> bool {
        !self
            .missing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    /// The renders decisions asked for and did not find.
    pub fn take_missing(&self) -> Vec<RenderJob> {
        std::mem::take(
            &mut *self
                .missing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// The message and reason a task fails with when its `field` template did
/// not render.
fn failed_render(task: &CompiledTask, field: &str, error: TemplateError) -> (String, &'static str) {
    let why = match error {
        TemplateError::Limit(_) => reason::TEMPLATE_LIMIT,
        TemplateError::Invalid(_) => reason::TEMPLATE_ERROR,
    };
    (format!("task {}: {field}: {error}", task.id), why)
}

/// What every decision on a run is given: the chain version the run
/// pinned, the run's snapshot, the renders done for it, and the time.
#[derive(Clone, Copy)]
pub struct Given<'a> {
    pub chain: &'a CompiledChain,
    pub snapshot: &'a RunSnapshot,
    pub renders: &'a Renders,
    pub now: DateTime<Utc>,
}

/// Builds the first state of a run: the run row, the entry task's attempt
/// and the first events.
pub fn start(
    chain: &CompiledChain,
    new: NewRun,
    renders: &Renders,
    now: DateTime<Utc>,
) -> (RunRecord, Vec<AttemptRecord>, Vec<Vec<u8>>) {
    let run = RunRecord {
        id: new.id,
        chain_id: new.chain_id,
        chain_version: new.chain_version,
        status: RunStatus::Queued,
        input: value::encode(&new.input),
        output: None,
        error: None,
        labels: new.labels,
        priority: new.priority,
        tenant: new.tenant,
        request_id: new.request_id,
        steps: 0,
        executions: 0,
        heads: Some(Vec::new()),
        input_tokens: 0,
        output_tokens: 0,
        last_seq: 0,
        created_at: now,
        started_at: None,
        ended_at: None,
        updated_at: now,
    };
    let snapshot = RunSnapshot {
        run,
        attempts: Vec::new(),
    };
    let mut step = Step::new(chain, &snapshot, renders, now);
    step.event(pb::RunEventType::RunCreated, |event| {
        event.message = format!("chain {} version {}", chain.id(), step_version(&snapshot));
    });
    let entry = chain.entry().to_string();
    step.schedule(&entry, new.input, None, 1, now);
    let plan = step.finish();
    let run = plan.run.unwrap_or(snapshot.run);
    (run, plan.new_attempts, plan.events)
}

fn step_version(snapshot: &RunSnapshot) -> i64 {
    snapshot.run.chain_version
}

/// Records a successful attempt and moves the run on.
pub fn complete(given: &Given, attempt_id: &str, lease_token: &str, success: TaskSuccess) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    let mut step = Step::new(chain, snapshot, renders, now);
    let attempt = match step.fenced_attempt(attempt_id, lease_token) {
        Ok(attempt) => attempt,
        Err((kind, message)) => return Plan::reject(kind, message),
    };
    step.succeed_attempt(attempt, success);
    step.finish()
}

/// Records a failed attempt: retry per policy, or fail the task.
pub fn fail(
    given: &Given,
    attempt_id: &str,
    lease_token: &str,
    failure: TaskFailure,
    random_unit: f64,
) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    let mut step = Step::new(chain, snapshot, renders, now);
    let attempt = match step.fenced_attempt(attempt_id, lease_token) {
        Ok(attempt) => attempt,
        Err((kind, message)) => return Plan::reject(kind, message),
    };
    step.fail_attempt(attempt, failure, random_unit);
    step.finish()
}

/// Handles a leased attempt whose lease expired or whose deadline passed.
/// A lease that expired returns the attempt to `Ready` without spending a
/// retry, at most `max_lease_expiries` times; then the attempt fails as
/// lost. A passed deadline is a timeout. Anything else is a no-op.
pub fn expire(given: &Given, attempt_id: &str, max_lease_expiries: i32, random_unit: f64) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    let mut step = Step::new(chain, snapshot, renders, now);
    let Some(attempt) = step.attempt(attempt_id).cloned() else {
        return Plan::apply();
    };
    if attempt.status != AttemptStatus::Leased || step.run.status.is_terminal() {
        return Plan::apply();
    }
    if attempt.deadline.is_some_and(|deadline| deadline <= now) {
        let mut failure = TaskFailure::new(
            format!("task {} exceeded its timeout", attempt.task_id),
            true,
        );
        failure.timed_out = true;
        step.fail_attempt(attempt, failure, random_unit);
        return step.finish();
    }
    if attempt.lease_expires_at.is_none_or(|expiry| expiry > now) {
        return Plan::apply();
    }
    if attempt.lease_expiries + 1 > max_lease_expiries {
        let failure = TaskFailure::new(
            format!(
                "lease on task {} expired {} times; the attempt is lost",
                attempt.task_id,
                attempt.lease_expiries + 1
            ),
            true,
        );
        step.fail_attempt(attempt, failure, random_unit);
        return step.finish();
    }
    let mut released = attempt.clone();
    released.status = AttemptStatus::Ready;
    released.lease_expiries += 1;
    released.available_at = now;
    clear_lease(&mut released);
    step.update(released);
    step.event(pb::RunEventType::LeaseExpired, |event| {
        event.task_id = attempt.task_id.clone();
        event.attempt_id = attempt.id.clone();
        event.attempt = attempt.attempt;
        event.message = format!(
            "lease held by {} expired",
            attempt.lease_owner.as_deref().unwrap_or("?")
        );
    });
    step.finish()
}

/// Gives a lease back without spending a retry (graceful worker shutdown).
pub fn release(given: &Given, attempt_id: &str, lease_token: &str) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    let mut step = Step::new(chain, snapshot, renders, now);
    let attempt = match step.fenced_attempt(attempt_id, lease_token) {
        Ok(attempt) => attempt,
        Err((kind, message)) => return Plan::reject(kind, message),
    };
    let mut released = attempt.clone();
    released.status = AttemptStatus::Ready;
    released.available_at = now;
    clear_lease(&mut released);
    step.update(released);
    step.finish()
}

/// Records a progress note of a held lease: an event, nothing else.
pub fn progress(
    given: &Given,
    attempt_id: &str,
    lease_token: &str,
    message: &str,
    data: Option<prost_types::Struct>,
) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    let mut step = Step::new(chain, snapshot, renders, now);
    let attempt = match step.fenced_attempt(attempt_id, lease_token) {
        Ok(attempt) => attempt,
        Err((kind, message)) => return Plan::reject(kind, message),
    };
    step.event(pb::RunEventType::TaskProgress, |event| {
        event.task_id = attempt.task_id.clone();
        event.attempt_id = attempt.id.clone();
        event.attempt = attempt.attempt;
        event.message = message.to_string();
        event.data = data;
    });
    step.finish()
}

/// Extends a held lease to `until`.
pub fn extend(given: &Given, attempt_id: &str, lease_token: &str, until: DateTime<Utc>) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    let mut step = Step::new(chain, snapshot, renders, now);
    let attempt = match step.fenced_attempt(attempt_id, lease_token) {
        Ok(attempt) => attempt,
        Err((kind, message)) => return Plan::reject(kind, message),
    };
    let mut extended = attempt;
    extended.lease_expires_at = Some(until);
    step.update(extended);
    step.finish()
}

/// Cancels a run. Already cancelled: no-op. Ended otherwise: rejected.
pub fn cancel(given: &Given, why: &str) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    match snapshot.run.status {
        RunStatus::Cancelled => return Plan::apply(),
        RunStatus::Succeeded | RunStatus::Failed => {
            return Plan::reject(
                RejectionKind::RunNotActive,
                format!(
                    "run {} already ended ({})",
                    snapshot.run.id,
                    snapshot.run.status.as_str()
                ),
            );
        }
        _ => {}
    }
    let mut step = Step::new(chain, snapshot, renders, now);
    step.cancel_active();
    step.run.status = RunStatus::Cancelled;
    step.run.ended_at = Some(now);
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
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    match snapshot.run.status {
        RunStatus::Paused => return Plan::apply(),
        status if status.is_terminal() => {
            return Plan::reject(
                RejectionKind::RunNotActive,
                format!(
                    "run {} already ended ({})",
                    snapshot.run.id,
                    status.as_str()
                ),
            );
        }
        _ => {}
    }
    let mut step = Step::new(chain, snapshot, renders, now);
    if cancel_running {
        let leased: Vec<AttemptRecord> = step
            .latest_attempts()
            .into_iter()
            .filter(|a| a.status == AttemptStatus::Leased)
            .collect();
        for attempt in leased {
            let mut cancelled = attempt.clone();
            cancelled.status = AttemptStatus::Cancelled;
            cancelled.ended_at = Some(now);
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
    let Given {
        chain,
        snapshot,
        renders,
        now,
    } = *given;
    match snapshot.run.status {
        RunStatus::Paused => {}
        status if status.is_terminal() => {
            return Plan::reject(
                RejectionKind::RunNotActive,
                format!(
                    "run {} already ended ({})",
                    snapshot.run.id,
                    status.as_str()
                ),
            );
        }
        _ => return Plan::apply(),
    }
    let mut step = Step::new(chain, snapshot, renders, now);
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
        renders,
        now,
    } = *given;
    let mut step = Step::new(chain, snapshot, renders, now);
    if chain.task(task_id).is_none() {
        return Plan::reject(
            RejectionKind::NotFound,
            format!("chain {} has no task {task_id:?}", chain.id()),
        );
    }
    if let Some(key) = request_key {
        let answered = step.latest_attempts().into_iter().any(|a| {
            a.task_id == task_id
                && a.lease_owner.as_deref() == Some(HUMAN_OWNER)
                && a.lease_token.as_deref() == Some(key)
        });
        if answered {
            return Plan::apply();
        }
    }
    let waiting = step
        .latest_attempts()
        .into_iter()
        .find(|a| a.task_id == task_id && a.status == AttemptStatus::Waiting);
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
pub fn retry_run(given: &Given) -> Plan {
    let Given {
        chain,
        snapshot,
        renders,
        now,
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
    let mut step = Step::new(chain, snapshot, renders, now);
    let failed_task = snapshot
        .run
        .error
        .as_ref()
        .map(|error| error.task_id.clone())
        .unwrap_or_default();
    let last_failed = step
        .latest_attempts()
        .into_iter()
        .filter(|a| {
            a.task_id == failed_task
                && matches!(a.status, AttemptStatus::Failed | AttemptStatus::TimedOut)
        })
        .max_by_key(|a| a.step);
    step.run.status = RunStatus::Running;
    step.run.error = None;
    step.run.ended_at = None;
    step.event(pb::RunEventType::RunRetried, |event| {
        event.task_id = failed_task.clone()
    });
    match last_failed {
        Some(attempt) => step.requeue(&attempt),
        None => {
            // The run failed outside any attempt (e.g. the step budget):
            // start over from the entry task.
            let input = value::decode(&snapshot.run.input).unwrap_or_default();
            let entry = chain.entry().to_string();
            step.schedule(&entry, input, None, 1, now);
        }
    }
    step.finish()
}

/// Marks the run started and sets deadlines for attempts just leased from
/// it.
pub fn claimed(
    chain: Option<&CompiledChain>,
    run: &RunRecord,
    attempts: &[AttemptRecord],
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::apply();
    let mut run = run.clone();
    let mut events = Vec::new();
    if run.status == RunStatus::Queued {
        run.status = RunStatus::Running;
        run.started_at = Some(now);
        events.push(new_event(&run.id, pb::RunEventType::RunStarted, now));
    }
    for attempt in attempts {
        let timeout = chain
            .and_then(|chain| chain.task(&attempt.task_id))
            .and_then(|task| task.timeout);
        if let Some(timeout) = timeout {
            let mut updated = attempt.clone();
            updated.deadline = Some(now + to_chrono(timeout));
            plan.attempt_updates.push(updated);
        }
        let mut event = new_event(&run.id, pb::RunEventType::TaskStarted, now);
        event.task_id = attempt.task_id.clone();
        event.attempt_id = attempt.id.clone();
        event.attempt = attempt.attempt;
        event.message = attempt.lease_owner.clone().unwrap_or_default();
        events.push(event);
    }
    run.updated_at = now;
    plan.run = Some(run);
    plan.events = events.iter().map(Message::encode_to_vec).collect();
    plan
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

fn clear_lease(attempt: &mut AttemptRecord) {
    attempt.lease_owner = None;
    attempt.lease_token = None;
    attempt.lease_expires_at = None;
    attempt.deadline = None;
    attempt.started_at = None;
}

fn new_event(run_id: &str, kind: pb::RunEventType, now: DateTime<Utc>) -> pb::RunEvent {
    pb::RunEvent {
        run_id: run_id.to_string(),
        r#type: kind as i32,
        time: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
        ..Default::default()
    }
}

/// The attempts the next decision on a run needs, of all it knows: the
/// active ones, and each task's latest and latest successful. Every attempt
/// that can become one of these is among them now or created by this
/// decision, so a decision never misses one it needs.
fn heads(attempts: &[AttemptRecord]) -> Vec<String> {
    let mut latest: BTreeMap<&str, &AttemptRecord> = BTreeMap::new();
    let mut latest_success: BTreeMap<&str, &AttemptRecord> = BTreeMap::new();
    let mut heads: Vec<&AttemptRecord> = Vec::new();
    let later = |a: &AttemptRecord, b: &AttemptRecord| (a.step, &a.id) > (b.step, &b.id);
    for attempt in attempts {
        if attempt.status.is_active() {
            heads.push(attempt);
        }
        let task = attempt.task_id.as_str();
        if latest.get(task).is_none_or(|known| later(attempt, known)) {
            latest.insert(task, attempt);
        }
        if attempt.status == AttemptStatus::Succeeded
            && latest_success
                .get(task)
                .is_none_or(|known| later(attempt, known))
        {
            latest_success.insert(task, attempt);
        }
    }
    heads.extend(latest.into_values());
    heads.extend(latest_success.into_values());
    heads.sort_by(|a, b| (a.step, &a.id).cmp(&(b.step, &b.id)));
    heads.dedup_by(|a, b| a.id == b.id);
    heads.into_iter().map(|a| a.id.clone()).collect()
}

/// The working state of one decision.
struct Step<'a> {
    chain: &'a CompiledChain,
    renders: &'a Renders,
    now: DateTime<Utc>,
    run: RunRecord,
    /// Snapshot attempts with this step's updates applied, then new ones.
    attempts: Vec<AttemptRecord>,
    snapshot_len: usize,
    updated: Vec<String>,
    events: Vec<pb::RunEvent>,
    /// Tasks this decision failed because their template did not render.
    template_failures: u32,
}

/// Most tasks one decision fails because their template did not render:
/// `on_failure` pointing back at a task whose template always fails would
/// otherwise go round within one decision until the step budget ran out.
const MAX_TEMPLATE_FAILURES: u32 = 16;

impl<'a> Step<'a> {
    fn new(
        chain: &'a CompiledChain,
        snapshot: &RunSnapshot,
        renders: &'a Renders,
        now: DateTime<Utc>,
    ) -> Step<'a> {
        Step {
            chain,
            renders,
            now,
            run: snapshot.run.clone(),
            attempts: snapshot.attempts.clone(),
            snapshot_len: snapshot.attempts.len(),
            updated: Vec::new(),
            events: Vec::new(),
            template_failures: 0,
        }
    }

    fn attempt(&self, id: &str) -> Option<&AttemptRecord> {
        self.attempts.iter().find(|a| a.id == id)
    }

    fn latest_attempts(&self) -> Vec<AttemptRecord> {
        self.attempts.clone()
    }

    /// The leased attempt named by a completion or failure, if the caller
    /// still holds its lease and the run can accept results.
    fn fenced_attempt(
        &self,
        attempt_id: &str,
        lease_token: &str,
    ) -> Result<AttemptRecord, (RejectionKind, String)> {
        let Some(attempt) = self.attempt(attempt_id) else {
            return Err((
                RejectionKind::NotFound,
                format!("attempt {attempt_id:?} not found in run {}", self.run.id),
            ));
        };
        if attempt.status != AttemptStatus::Leased
            || attempt.lease_token.as_deref() != Some(lease_token)
        {
            return Err((
                RejectionKind::LeaseFenced,
                format!(
                    "stale lease on attempt {attempt_id}: it is {} and the token does not match the current lease",
                    attempt.status.as_str()
                ),
            ));
        }
        if self.run.status.is_terminal() {
            return Err((
                RejectionKind::RunNotActive,
                format!(
                    "run {} already ended ({})",
                    self.run.id,
                    self.run.status.as_str()
                ),
            ));
        }
        Ok(attempt.clone())
    }

    fn update(&mut self, attempt: AttemptRecord) {
        if let Some(index) = self.attempts.iter().position(|a| a.id == attempt.id) {
            if index < self.snapshot_len && !self.updated.contains(&attempt.id) {
                self.updated.push(attempt.id.clone());
            }
            self.attempts[index] = attempt;
        }
    }

    fn event(&mut self, kind: pb::RunEventType, fill: impl FnOnce(&mut pb::RunEvent)) {
        let mut event = new_event(&self.run.id, kind, self.now);
        fill(&mut event);
        self.events.push(event);
    }

    /// The latest successful output of each task, in step order.
    fn task_outputs(&self) -> Vec<(String, pb::Value)> {
        let mut outputs: Vec<(String, pb::Value)> = Vec::new();
        for attempt in &self.attempts {
            if attempt.status != AttemptStatus::Succeeded {
                continue;
            }
            let Some(bytes) = &attempt.output else {
                continue;
            };
            let Ok(output) = value::decode(bytes) else {
                continue;
            };
            outputs.retain(|(id, _)| id != &attempt.task_id);
            outputs.push((attempt.task_id.clone(), output));
        }
        outputs
    }

    fn latest_output(&self, task_id: &str) -> Option<pb::Value> {
        self.task_outputs()
            .into_iter()
            .find(|(id, _)| id == task_id)
            .map(|(_, output)| output)
    }

    fn run_input(&self) -> pb::Value {
        value::decode(&self.run.input).unwrap_or_default()
    }

    /// Creates the next attempt of `task_id`. `previous` is the output that
    /// led here (None for the entry task: the run's input).
    fn schedule(
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
            id: uuid::Uuid::now_v7().to_string(),
            run_id: self.run.id.clone(),
            task_id: task.id.clone(),
            attempt: attempt_number,
            step: self.run.steps,
            status: if task.handler == Handler::HumanInput {
                AttemptStatus::Waiting
            } else {
                AttemptStatus::Ready
            },
            queue: task
                .queue
                .clone()
                .unwrap_or_else(|| INTERNAL_QUEUE.to_string()),
            priority: self.run.priority,
            available_at,
            deadline: None,
            lease_owner: None,
            lease_token: None,
            lease_expires_at: None,
            lease_expiries: 0,
            input: value::encode(&input),
            prompt: None,
            output: None,
            error: None,
            dead_lettered: false,
            backend_id: None,
            model: None,
            input_tokens: 0,
            output_tokens: 0,
            created_at: self.now,
            started_at: None,
            ended_at: None,
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
                self.event(pb::RunEventType::TaskFailed, |event| {
                    event.task_id = task.id.clone();
                    event.attempt_id = attempt.id.clone();
                    event.attempt = attempt.attempt;
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
        self.event(pb::RunEventType::TaskReady, |event| {
            event.task_id = task.id.clone();
            event.attempt_id = attempt.id.clone();
            event.attempt = attempt.attempt;
        });
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
    fn task_input(&self, task: &CompiledTask, previous: pb::Value) -> pb::Value {
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
    fn render_prompt(
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
    fn render(&self, template: &str, previous: &pb::Value) -> Result<String, TemplateError> {
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
    fn requeue(&mut self, attempt: &AttemptRecord) {
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

    fn succeed_attempt(&mut self, attempt: AttemptRecord, success: TaskSuccess) {
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
        self.update(done);
        self.run.input_tokens += success.input_tokens;
        self.run.output_tokens += success.output_tokens;
        self.event(pb::RunEventType::TaskSucceeded, |event| {
            event.task_id = attempt.task_id.clone();
            event.attempt_id = attempt.id.clone();
            event.attempt = attempt.attempt;
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
    fn advance(&mut self, task: &CompiledTask, output: pb::Value) {
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

    fn transition_event(&mut self, task: &CompiledTask, goto: &Goto) {
        let next: Vec<String> = match goto {
            Goto::End => vec!["end".to_string()],
            other => other.targets().to_vec(),
        };
        self.event(pb::RunEventType::Transition, |event| {
            event.task_id = task.id.clone();
            event.message = next.join(",");
            event.data = Some(prost_types::Struct {
                fields: [(
                    "next".to_string(),
                    value::to_proto_json(&serde_json::json!(next)),
                )]
                .into(),
            });
        });
    }

    /// A task with `wait_for` starts once every task it waits for has
    /// succeeded in this run, and not while an attempt of it is active.
    fn join_ready(&self, target: &str) -> bool {
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
    fn finish_if_done(&mut self) {
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

    fn fail_attempt(&mut self, attempt: AttemptRecord, failure: TaskFailure, random_unit: f64) {
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
        self.event(kind, |event| {
            event.task_id = attempt.task_id.clone();
            event.attempt_id = attempt.id.clone();
            event.attempt = attempt.attempt;
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
    fn fail_task(&mut self, task: &CompiledTask, message: String, why: &str) {
        match task.transition.on_failure.clone() {
            Some(handler_task) => {
                self.event(pb::RunEventType::Transition, |event| {
                    event.task_id = task.id.clone();
                    event.message = handler_task.clone();
                    event.data = Some(prost_types::Struct {
                        fields: [(
                            "on_failure".to_string(),
                            value::to_proto_json(&serde_json::json!(handler_task)),
                        )]
                        .into(),
                    });
                });
                let now = self.now;
                self.schedule(&handler_task, value::text(message), None, 1, now);
                self.finish_if_done();
            }
            None => self.fail_run(message, &task.id, why),
        }
    }

    fn fail_run(&mut self, message: String, task_id: &str, why: &str) {
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
            event.data = Some(prost_types::Struct {
                fields: [(
                    "reason".to_string(),
                    value::to_proto_json(&serde_json::json!(why)),
                )]
                .into(),
            });
        });
    }

    fn cancel_active(&mut self) {
        let now = self.now;
        let active: Vec<AttemptRecord> = self
            .attempts
            .iter()
            .filter(|a| a.status.is_active())
            .cloned()
            .collect();
        for mut attempt in active {
            attempt.status = AttemptStatus::Cancelled;
            attempt.ended_at = Some(now);
            self.update(attempt);
        }
    }

    /// The live status follows the attempts unless the run is paused or
    /// over.
    fn settle_status(&mut self) {
        if self.run.status.is_terminal() || self.run.status == RunStatus::Paused {
            return;
        }
        let waiting = self
            .attempts
            .iter()
            .any(|a| a.status == AttemptStatus::Waiting);
        let executing = self
            .attempts
            .iter()
            .any(|a| matches!(a.status, AttemptStatus::Ready | AttemptStatus::Leased));
        self.run.status = if waiting && !executing {
            RunStatus::WaitingInput
        } else if self.run.started_at.is_none() && !waiting {
            RunStatus::Queued
        } else {
            RunStatus::Running
        };
        if self.run.status != RunStatus::Queued && self.run.started_at.is_none() {
            self.run.started_at = Some(self.now);
        }
    }

    fn finish(mut self) -> Plan {
        if self.renders.has_missing() {
            return Plan::reject(
                RejectionKind::Deferred,
                "the decision needs templates rendered first",
            );
        }
        self.settle_status();
        self.run.updated_at = self.now;
        self.run.heads = Some(heads(&self.attempts));
        let mut plan = Plan::apply();
        let new_attempts = self.attempts.split_off(self.snapshot_len);
        plan.attempt_updates = self
            .attempts
            .into_iter()
            .filter(|a| self.updated.contains(&a.id))
            .collect();
        plan.new_attempts = new_attempts;
        plan.events = self.events.iter().map(Message::encode_to_vec).collect();
        plan.run = Some(self.run);
        plan
    }
}

#[cfg(test)]
mod tests;
