//! The kernel's decisions: pure functions from a run's snapshot (and the
//! chain version it pinned) to a [`Plan`] of writes. The store applies a
//! plan in one transaction under the run's row lock, so every transition is
//! atomic, and the path of a run depends only on its chain version, input
//! and recorded task outputs — never on timing or on which replica decided.
//!
//! The decisions callers make, by what they are about:
//! - `start`: a run's first state ([`start`]);
//! - `attempt`: a held lease's result ([`complete`], [`fail`]), progress,
//!   extension and release, and [`expire`] for a lease or deadline that ran
//!   out;
//! - `control`: [`cancel`], [`pause`], [`resume`], [`retry_run`] and
//!   [`submit_input`];
//! - `claim`: what a claim writes besides the lease ([`claimed`]).
//!
//! They share one working state, `step::Step`, which `schedule` creates
//! attempts on, `route` moves along the chain's transitions and `failure`
//! fails attempts, tasks and runs on. Templates are rendered outside
//! decisions (`renders`, [`Renders`]).

mod attempt;
mod claim;
mod control;
mod failure;
mod renders;
mod route;
mod schedule;
mod start;
mod step;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::value;
use crate::chain::CompiledChain;
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, Plan, Rejection, RejectionKind, RunRecord, RunSnapshot};

pub use attempt::{complete, expire, extend, fail, progress, release, throttle};
pub use claim::claimed;
pub use control::{cancel, pause, resume, retry_run, submit_input};
pub use renders::{RenderJob, Renders};
pub use start::start;

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
    pub namespace: String,
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
    /// Not a failure: a call limit held the attempt (docs/limits.md); it
    /// waits `Ready` instead (see [`throttle`]).
    pub throttled: Option<Throttled>,
}

/// A call limit that held an attempt back, and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttled {
    /// The limit, e.g. `backend "slow": 5 calls in flight (max_concurrency 5)`.
    pub limit: String,
    pub retry_at: DateTime<Utc>,
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
            throttled: None,
        }
    }
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

/// The rejection of a call that needs a live run, for a run that ended.
fn run_ended(run: &RunRecord) -> Rejection {
    Rejection {
        kind: RejectionKind::RunNotActive,
        message: format!("run {} already ended ({})", run.id, run.status.as_str()),
    }
}

/// A plan that rejects the decision.
/// A decision given the compiled chain, the snapshot and the time.
pub type ChainDecision = dyn Fn(&Given) -> Plan + Send + Sync;

fn rejected(rejection: Rejection) -> Plan {
    Plan::reject(rejection.kind, rejection.message)
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
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

/// Names `attempt` on an event about it.
fn name_attempt(event: &mut pb::RunEvent, attempt: &AttemptRecord) {
    event.task_id = attempt.task_id.clone();
    event.attempt_id = attempt.id.clone();
    event.attempt = attempt.attempt;
}

/// An event's `data` of one field.
fn event_data(field: &str, data: serde_json::Value) -> Option<prost_types::Struct> {
    Some(prost_types::Struct {
        fields: [(field.to_string(), value::to_proto_json(&data))].into(),
    })
}

#[cfg(test)]
mod tests;
