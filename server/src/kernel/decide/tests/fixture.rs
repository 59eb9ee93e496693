//! A run under test, held in memory: the compiled chain it pinned, its
//! snapshot as the store would hold it, the clock and the renders done. A
//! decision is made against it the way the kernel makes it (rendering what
//! a decision asks for and deciding again) and its plan is applied the way
//! the store applies it, so a test can walk a run through many decisions
//! without a store, a server or a clock.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prost::Message;

use crate::chain::{self, CompiledChain};
use crate::kernel::decide::{self, Given, NewRun, RenderJob, Renders, TaskFailure, TaskSuccess};
use crate::kernel::value;
use crate::proto::taskloom::v1 as pb;
use crate::store::{
    AttemptRecord, AttemptStatus, Plan, RejectionKind, RunRecord, RunSnapshot, RunStatus, Verdict,
};

/// The instant every test run starts at.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).expect("a valid instant")
}

/// How long the fixture's leases last.
pub const LEASE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Chains

/// A task with no transition: it ends the run.
pub fn task(id: &str, handler: &str) -> pb::Task {
    pb::Task {
        id: id.into(),
        handler: handler.into(),
        ..Default::default()
    }
}

/// A task of the `worker` handler on queue `jobs`.
pub fn worker(id: &str) -> pb::Task {
    pb::Task {
        queue: "jobs".into(),
        ..task(id, "worker")
    }
}

fn target(id: &str) -> Option<prost_types::Value> {
    Some(prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(id.into())),
    })
}

/// Builder methods for the chain definitions the tests decide on.
pub trait TaskSpec: Sized {
    /// Adds a branch `operator when -> goto`.
    fn when(self, operator: &str, when: &str, goto: &str) -> Self;
    /// Adds a branch `operator when -> [targets]` (a fan-out).
    fn fan_out(self, operator: &str, targets: &[&str]) -> Self;
    /// Adds a `default` branch to `goto`.
    fn then(self, goto: &str) -> Self {
        self.when("default", "", goto)
    }
    fn on_failure(self, handler_task: &str) -> Self;
    fn retry(self, policy: pb::RetryPolicy) -> Self;
    fn timeout(self, timeout: &str) -> Self;
    fn wait_for(self, tasks: &[&str]) -> Self;
    fn prompt(self, template: &str) -> Self;
    fn print(self, template: &str) -> Self;
}

impl TaskSpec for pb::Task {
    fn when(mut self, operator: &str, when: &str, goto: &str) -> pb::Task {
        self.transition
            .get_or_insert_default()
            .branches
            .push(pb::Branch {
                operator: operator.into(),
                when: when.into(),
                goto: target(goto),
                ..Default::default()
            });
        self
    }

    fn fan_out(mut self, operator: &str, targets: &[&str]) -> pb::Task {
        let values = targets.iter().filter_map(|id| target(id)).collect();
        self.transition
            .get_or_insert_default()
            .branches
            .push(pb::Branch {
                operator: operator.into(),
                goto: Some(prost_types::Value {
                    kind: Some(prost_types::value::Kind::ListValue(
                        prost_types::ListValue { values },
                    )),
                }),
                ..Default::default()
            });
        self
    }

    fn on_failure(mut self, handler_task: &str) -> pb::Task {
        self.transition.get_or_insert_default().on_failure = handler_task.into();
        self
    }

    fn retry(mut self, policy: pb::RetryPolicy) -> pb::Task {
        self.retry = Some(policy);
        self
    }

    fn timeout(mut self, timeout: &str) -> pb::Task {
        self.timeout = timeout.into();
        self
    }

    fn wait_for(mut self, tasks: &[&str]) -> pb::Task {
        self.wait_for = tasks.iter().map(|id| id.to_string()).collect();
        self
    }

    fn prompt(mut self, template: &str) -> pb::Task {
        self.prompt_template = template.into();
        self
    }

    fn print(mut self, template: &str) -> pb::Task {
        self.print = template.into();
        self
    }
}

/// `max_attempts` attempts, `initial_delay` apart with fixed backoff.
pub fn fixed_retry(max_attempts: i32, initial_delay: &str) -> pb::RetryPolicy {
    pb::RetryPolicy {
        max_attempts,
        backoff: "fixed".into(),
        initial_delay: initial_delay.into(),
        ..Default::default()
    }
}

/// A chain of these tasks, the first one its entry.
pub fn chain(tasks: Vec<pb::Task>) -> pb::Chain {
    pb::Chain {
        id: "chain".into(),
        tasks,
        ..Default::default()
    }
}

/// `first`, then a `noop` task `b`.
pub fn then_b(first: pb::Task) -> pb::Chain {
    chain(vec![first.then("b"), task("b", "noop")])
}

pub fn compile(chain: &pb::Chain) -> CompiledChain {
    chain::compile(chain).unwrap_or_else(|violations| panic!("invalid test chain: {violations:?}"))
}

// ---------------------------------------------------------------------------
// The run

/// A lease the fixture granted, as a worker holds it.
#[derive(Debug, Clone)]
pub struct Lease {
    pub attempt_id: String,
    pub token: String,
}

pub struct TestRun {
    pub chain: CompiledChain,
    pub snapshot: RunSnapshot,
    pub now: DateTime<Utc>,
    /// Renders done for earlier decisions, reused like the kernel reuses
    /// them within one decision.
    renders: Vec<(RenderJob, Result<String, chain::template::TemplateError>)>,
    leases_granted: u32,
}

impl TestRun {
    /// A run of `chain` started at [`epoch`] with a text input.
    pub fn start(chain: pb::Chain, input: &str) -> TestRun {
        TestRun::start_with(chain, value::text(input), |_| {})
    }

    /// A run of `chain` whose [`NewRun`] `edit` adjusts first.
    pub fn start_with(
        chain: pb::Chain,
        input: pb::Value,
        edit: impl FnOnce(&mut NewRun),
    ) -> TestRun {
        let chain = compile(&chain);
        let mut new = NewRun {
            id: "run-1".into(),
            namespace: "default".into(),
            chain_id: chain.id().to_string(),
            chain_version: 1,
            input,
            labels: Default::default(),
            priority: 0,
            tenant: String::new(),
            request_id: None,
        };
        edit(&mut new);
        let now = epoch();
        let mut done = Vec::new();
        let (run, attempts, events) = loop {
            let renders = Renders::new(done);
            let first = decide::start(&chain, new.clone(), &renders, now);
            let missing = renders.take_missing();
            if missing.is_empty() {
                break first;
            }
            done = renders.into_done();
            done.extend(render_all(missing));
        };
        let mut run = TestRun {
            chain,
            snapshot: RunSnapshot { run, attempts },
            now,
            renders: Vec::new(),
            leases_granted: 0,
        };
        run.snapshot.run.last_seq = events.len() as i64;
        run
    }

    /// Makes a decision, rendering what it asks for first, without applying
    /// its plan.
    pub fn decide(&mut self, decision: impl Fn(&Given) -> Plan) -> Plan {
        loop {
            let renders = Renders::new(std::mem::take(&mut self.renders));
            let plan = decision(&Given {
                chain: &self.chain,
                snapshot: &self.snapshot,
                renders: &renders,
                now: self.now,
            });
            let missing = renders.take_missing();
            self.renders = renders.into_done();
            let deferred =
                matches!(&plan.verdict, Verdict::Reject(r) if r.kind == RejectionKind::Deferred);
            if !deferred {
                return plan;
            }
            assert!(!missing.is_empty(), "deferred without naming a render");
            self.renders.extend(render_all(missing));
        }
    }

    /// Makes a decision and applies its plan when it is accepted.
    pub fn step(&mut self, decision: impl Fn(&Given) -> Plan) -> Plan {
        let plan = self.decide(decision);
        if plan.verdict == Verdict::Apply {
            self.apply(&plan);
        }
        plan
    }

    /// Applies an accepted plan as the store does: the run row, then the
    /// attempt updates, the new attempts and the events.
    pub fn apply(&mut self, plan: &Plan) {
        assert_eq!(plan.verdict, Verdict::Apply, "applying a rejected plan");
        if let Some(run) = &plan.run {
            let last_seq = self.snapshot.run.last_seq;
            self.snapshot.run = RunRecord {
                last_seq,
                ..run.clone()
            };
        }
        for update in &plan.attempt_updates {
            let stored = self
                .snapshot
                .attempts
                .iter_mut()
                .find(|a| a.id == update.id)
                .expect("a plan updates only attempts of its run");
            *stored = update.clone();
        }
        self.snapshot
            .attempts
            .extend(plan.new_attempts.iter().cloned());
        self.snapshot.run.last_seq += plan.events.len() as i64;
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += TimeDelta::from_std(by).expect("a short duration");
    }

    pub fn status(&self) -> RunStatus {
        self.snapshot.run.status
    }

    pub fn run(&self) -> &RunRecord {
        &self.snapshot.run
    }

    /// The attempts of `task_id`, oldest first.
    pub fn attempts_of(&self, task_id: &str) -> Vec<&AttemptRecord> {
        self.snapshot
            .attempts
            .iter()
            .filter(|a| a.task_id == task_id)
            .collect()
    }

    /// The newest attempt of `task_id`.
    pub fn latest(&self, task_id: &str) -> &AttemptRecord {
        self.attempts_of(task_id)
            .pop()
            .unwrap_or_else(|| panic!("task {task_id} has no attempt"))
    }

    /// Leases the newest attempt of `task_id` as the store's claim does, then
    /// applies the kernel's `claimed` decision (run started, deadline set).
    pub fn lease(&mut self, task_id: &str) -> Lease {
        let now = self.now;
        self.leases_granted += 1;
        let token = format!("token-{}", self.leases_granted);
        let attempt = self
            .snapshot
            .attempts
            .iter_mut()
            .rev()
            .find(|a| a.task_id == task_id)
            .unwrap_or_else(|| panic!("task {task_id} has no attempt"));
        assert_eq!(
            attempt.status,
            AttemptStatus::Ready,
            "leasing attempt {attempt:?}"
        );
        attempt.status = AttemptStatus::Leased;
        attempt.lease_owner = Some("worker-1".into());
        attempt.lease_token = Some(token.clone());
        attempt.lease_expires_at = Some(now + TimeDelta::from_std(LEASE).expect("short"));
        attempt.started_at = Some(now);
        let leased = attempt.clone();
        let plan = decide::claimed(
            Some(&self.chain),
            &self.snapshot.run,
            std::slice::from_ref(&leased),
            now,
        );
        self.apply(&plan);
        Lease {
            attempt_id: leased.id,
            token,
        }
    }

    /// Leases `task_id` and makes `decision` on the lease (given the
    /// attempt id and the lease token).
    pub fn on_lease(
        &mut self,
        task_id: &str,
        decision: impl Fn(&Given, &str, &str) -> Plan,
    ) -> Plan {
        let lease = self.lease(task_id);
        self.step(|given| decision(given, &lease.attempt_id, &lease.token))
    }

    /// Leases `task_id` and completes it with a text output.
    pub fn complete(&mut self, task_id: &str, output: &str) -> Plan {
        let success = TaskSuccess::output(value::text(output));
        self.on_lease(task_id, |given, attempt_id, token| {
            decide::complete(given, attempt_id, token, success.clone())
        })
    }

    /// Leases `task_id` and fails it.
    pub fn fail(&mut self, task_id: &str, failure: TaskFailure, random_unit: f64) -> Plan {
        self.on_lease(task_id, |given, attempt_id, token| {
            decide::fail(given, attempt_id, token, failure.clone(), random_unit)
        })
    }
}

fn render_all(
    jobs: Vec<RenderJob>,
) -> Vec<(RenderJob, Result<String, chain::template::TemplateError>)> {
    jobs.into_iter()
        .map(|job| {
            let result = chain::template::render(&job.template, &job.context);
            (job, result)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Reading plans

/// The plan's events, decoded.
pub fn events(plan: &Plan) -> Vec<pb::RunEvent> {
    plan.events
        .iter()
        .map(|bytes| pb::RunEvent::decode(bytes.as_slice()).expect("an encoded event"))
        .collect()
}

/// The types of the plan's events, in order.
pub fn event_types(plan: &Plan) -> Vec<pb::RunEventType> {
    events(plan).iter().map(|event| event.r#type()).collect()
}

/// The rejection of a plan, or a panic naming what it did instead.
#[track_caller]
pub fn rejection(plan: &Plan) -> (RejectionKind, String) {
    match &plan.verdict {
        Verdict::Reject(rejection) => (rejection.kind, rejection.message.clone()),
        Verdict::Apply => panic!("expected a rejection, got {plan:?}"),
    }
}

/// Whether the plan is accepted and writes nothing at all.
pub fn is_noop(plan: &Plan) -> bool {
    plan.verdict == Verdict::Apply
        && plan.run.is_none()
        && plan.attempt_updates.is_empty()
        && plan.new_attempts.is_empty()
        && plan.events.is_empty()
}

/// The text of a stored value.
pub fn text_of(bytes: &[u8]) -> String {
    value::as_text(&value::decode(bytes).expect("an encoded value"))
}
