//! Storage shapes of the execution state: runs, task attempts and run
//! events, and the plan type through which the kernel changes them.
//!
//! The store does not decide anything about runs. Every change goes through
//! [`RunStore::transition`] or [`RunStore::claim`]: the store opens one transaction,
//! locks the run row, loads a [`RunSnapshot`], hands it to a kernel closure
//! that returns a [`Plan`], and applies the plan — or nothing, if the plan
//! rejects. Payloads (inputs, outputs, event bodies) are opaque bytes to the
//! store (encoded protobuf messages).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{AuditRecord, Created, IdempotencyKey, Page, PageQuery, StoreResult};

/// The state of a run (see docs/kernel.md, "State and transitions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Running,
    WaitingInput,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::WaitingInput,
        RunStatus::Paused,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::WaitingInput => "waiting_input",
            RunStatus::Paused => "paused",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No further transition is possible (except `RetryRun` from `Failed`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// Attempts of a run in this state may be leased.
    pub fn is_dispatchable(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// The state of one task attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptStatus {
    /// Claimable once `available_at` has passed.
    Ready,
    /// A `human_input` attempt waiting for `SubmitInput`; never claimed.
    Waiting,
    Leased,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl AttemptStatus {
    pub const ALL: [AttemptStatus; 7] = [
        AttemptStatus::Ready,
        AttemptStatus::Waiting,
        AttemptStatus::Leased,
        AttemptStatus::Succeeded,
        AttemptStatus::Failed,
        AttemptStatus::Cancelled,
        AttemptStatus::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Ready => "ready",
            AttemptStatus::Waiting => "waiting",
            AttemptStatus::Leased => "leased",
            AttemptStatus::Succeeded => "succeeded",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Cancelled => "cancelled",
            AttemptStatus::TimedOut => "timed_out",
        }
    }

    pub fn parse(text: &str) -> Option<AttemptStatus> {
        AttemptStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Ready, waiting or leased: the attempt may still produce a result.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            AttemptStatus::Ready | AttemptStatus::Waiting | AttemptStatus::Leased
        )
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    pub message: String,
    pub task_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// UUIDv7: ids sort by creation time.
    pub id: String,
    /// Written at creation only; its chain's too.
    pub namespace: String,
    pub chain_id: String,
    pub chain_version: i64,
    pub status: RunStatus,
    /// Encoded `taskloom.v1.Value`. Written at creation only.
    pub input: Vec<u8>,
    /// Encoded `taskloom.v1.Value`, once succeeded.
    pub output: Option<Vec<u8>>,
    pub error: Option<RunFailure>,
    /// Written at creation only.
    pub labels: BTreeMap<String, String>,
    /// Written at creation only.
    pub priority: i32,
    /// Written at creation only.
    pub tenant: String,
    /// Written at creation only.
    pub request_id: Option<String>,
    /// Task attempts created so far.
    pub steps: i32,
    /// Task executions started so far, retries excluded (the `max_steps`
    /// budget).
    pub executions: i32,
    /// The attempts the next decision needs (the kernel's choice: active
    /// ones, each task's latest and latest successful), so a transition
    /// reads those instead of every attempt of a long run. `None` (runs
    /// written before heads were kept): all of them.
    pub heads: Option<Vec<String>>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Sequence number of the last stored event; the store maintains it.
    pub last_seq: i64,
    /// Written at creation only.
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The W3C `traceparent` the run was started with, normalised: its
    /// span's parent. Written at creation only.
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// UUIDv7.
    pub id: String,
    pub run_id: String,
    pub task_id: String,
    /// Attempt number of this task execution, from 1 (retries count up).
    pub attempt: i32,
    /// The run's step counter when the attempt was created; orders a run's
    /// attempts together with `id`.
    pub step: i32,
    pub status: AttemptStatus,
    /// `internal` for built-in handlers, else a worker queue.
    pub queue: String,
    /// Copied from the run: higher is claimed first.
    pub priority: i32,
    pub available_at: DateTime<Utc>,
    /// The task's own deadline, set when leased if the task has a timeout.
    pub deadline: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How often a lease on this attempt expired.
    pub lease_expiries: i32,
    /// Encoded `taskloom.v1.Value`. Written at creation only.
    pub input: Vec<u8>,
    /// The rendered prompt template, if any. Written at creation only.
    pub prompt: Option<String>,
    /// Encoded `taskloom.v1.Value`, once succeeded.
    pub output: Option<Vec<u8>>,
    pub error: Option<String>,
    /// Failed for good with no retry left.
    pub dead_lettered: bool,
    pub backend_id: Option<String>,
    pub model: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Written at creation only.
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl AttemptRecord {
    /// Attempt 1 of `task_id` at step 1 of `run_id`, ready on the default
    /// queue and created and available at `at`: not leased, with no input,
    /// result or usage yet. Callers set what differs by struct update.
    pub fn ready(id: String, run_id: String, task_id: String, at: DateTime<Utc>) -> AttemptRecord {
        AttemptRecord {
            id,
            run_id,
            task_id,
            attempt: 1,
            step: 1,
            status: AttemptStatus::Ready,
            queue: String::new(),
            priority: 0,
            available_at: at,
            deadline: None,
            lease_owner: None,
            lease_token: None,
            lease_expires_at: None,
            lease_expiries: 0,
            input: Vec::new(),
            prompt: None,
            output: None,
            error: None,
            dead_lettered: false,
            backend_id: None,
            model: None,
            input_tokens: 0,
            output_tokens: 0,
            created_at: at,
            started_at: None,
            ended_at: None,
        }
    }
}

/// A stored run event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub run_id: String,
    /// From 1, without gaps, per run.
    pub seq: i64,
    /// Encoded `taskloom.v1.RunEvent` (its `seq` field is not relied on;
    /// readers set it from `seq`).
    pub payload: Vec<u8>,
}

/// A run with the attempts a decision needs, read under the run's row
/// lock: those its `heads` name (every attempt when it has none) and those
/// the decision names itself ([`Decision::focus`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    pub run: RunRecord,
    /// Ordered by `(step, id)`.
    pub attempts: Vec<AttemptRecord>,
}

/// What a kernel closure decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Apply the plan.
    Apply,
    /// Write nothing; report this to the caller.
    Reject(Rejection),
}

/// A refused transition, e.g. a stale lease token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    NotFound,
    /// The lease named is not held under the token given (fencing).
    LeaseFenced,
    /// The run already ended.
    RunNotActive,
    /// The run is not in the state the decision needs.
    FailedPrecondition,
    InvalidArgument,
    /// The decision needs work done outside the transaction first (the
    /// kernel's template renders); the kernel does it and decides again.
    Deferred,
}

/// Writes one transition makes. Applied in one transaction, in this order:
/// the run row (`run`, if set: every mutable column — status, output, error,
/// steps, tokens, started/ended/updated times), attempt updates (mutable
/// columns only: status, available_at, deadline, lease fields, lease_expiries,
/// output, error, dead_lettered, backend/model, tokens, started/ended),
/// new attempts, then events with sequence numbers `last_seq + 1 ..`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub verdict: Verdict,
    pub run: Option<RunRecord>,
    pub attempt_updates: Vec<AttemptRecord>,
    pub new_attempts: Vec<AttemptRecord>,
    /// Encoded `taskloom.v1.RunEvent` payloads.
    pub events: Vec<Vec<u8>>,
    /// The decision found its request applied before (an answer given
    /// again): nothing is written, not even the decision's audit row.
    pub repeat: bool,
}

impl Plan {
    /// A plan that writes nothing and reports `rejection`.
    pub fn reject(kind: RejectionKind, message: impl Into<String>) -> Plan {
        Plan {
            verdict: Verdict::Reject(Rejection {
                kind,
                message: message.into(),
            }),
            run: None,
            attempt_updates: Vec::new(),
            new_attempts: Vec::new(),
            events: Vec::new(),
            repeat: false,
        }
    }

    /// An accepted plan with no writes yet.
    pub fn apply() -> Plan {
        Plan {
            verdict: Verdict::Apply,
            run: None,
            attempt_updates: Vec::new(),
            new_attempts: Vec::new(),
            events: Vec::new(),
            repeat: false,
        }
    }

    /// An accepted plan for a request applied before: writes nothing.
    pub fn repeat() -> Plan {
        Plan {
            repeat: true,
            ..Plan::apply()
        }
    }

    /// Whether an applied plan writes `audit`'s row: it does unless it
    /// repeats a request applied before.
    pub fn audited<'a>(&self, audit: Option<&'a AuditRecord>) -> Option<&'a AuditRecord> {
        audit.filter(|_| !self.repeat)
    }
}

/// What a transition did.
// Returned once per transition and matched at once: boxing the run would
// cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TransitionOutcome {
    /// The plan was applied; the run as stored afterwards and the events
    /// written (for live fan-out).
    Applied {
        run: RunRecord,
        events: Vec<EventRecord>,
    },
    Rejected(Rejection),
    /// The decision's request id was applied before (with the same
    /// payload): nothing was decided or written; the run as it is now.
    Replayed(RunRecord),
}

/// The kernel's decision for one run: the attempts it names (read into the
/// snapshot whether or not they are heads) and the function that decides.
pub struct Decision {
    pub focus: Vec<String>,
    /// The caller's request id (AIP-155), reserved in the transaction that
    /// applies the plan: a repeat of an applied request is
    /// [`TransitionOutcome::Replayed`] without a decision; a rejected plan
    /// keeps no key.
    pub idempotency: Option<IdempotencyKey>,
    /// The audit record of the control-plane call this decision serves
    /// (cancel, pause, …): written in the transaction that applies the
    /// plan, not for a rejected, replayed or repeated one.
    pub audit: Option<AuditRecord>,
    decide: Box<dyn Fn(&RunSnapshot) -> Plan + Send + Sync>,
}

impl Decision {
    pub fn new(decide: impl Fn(&RunSnapshot) -> Plan + Send + Sync + 'static) -> Decision {
        Decision {
            focus: Vec::new(),
            idempotency: None,
            audit: None,
            decide: Box::new(decide),
        }
    }

    /// The same decision, guarded by the caller's request id.
    pub fn with_idempotency(mut self, idempotency: Option<IdempotencyKey>) -> Decision {
        self.idempotency = idempotency;
        self
    }

    /// The same decision, recorded in the audit log when applied.
    pub fn with_audit(mut self, audit: Option<AuditRecord>) -> Decision {
        self.audit = audit;
        self
    }

    /// The same decision, also reading these attempts.
    pub fn with_focus(mut self, focus: Vec<String>) -> Decision {
        self.focus = focus;
        self
    }

    pub fn decide(&self, snapshot: &RunSnapshot) -> Plan {
        (self.decide)(snapshot)
    }

    /// The attempt ids a snapshot of `run` holds: its heads and the focus;
    /// `None` for all of them.
    pub fn attempt_ids(&self, run: &RunRecord) -> Option<Vec<String>> {
        let heads = run.heads.as_ref()?;
        let mut ids: Vec<String> = heads.iter().chain(&self.focus).cloned().collect();
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    }
}

/// The kernel's decision for the runs touched by a claim: given a run and
/// the attempts just leased from it (already in their leased state), the
/// run update and events to write. Must not reject.
pub type ClaimFn = dyn Fn(&RunRecord, &[AttemptRecord]) -> Plan + Send + Sync;

/// Checks that a batch names each run once and carries no request id or
/// audit record (those are honoured by single transitions only).
pub(super) fn check_distinct_runs(items: &[(String, Decision)]) -> Result<(), super::StoreError> {
    if let Some((run_id, _)) = items.iter().find(|(_, d)| d.idempotency.is_some()) {
        return Err(super::StoreError::Corrupt(format!(
            "a transition batch carries a request id (run {run_id:?})"
        )));
    }
    if let Some((run_id, _)) = items.iter().find(|(_, d)| d.audit.is_some()) {
        return Err(super::StoreError::Corrupt(format!(
            "a transition batch carries an audit record (run {run_id:?})"
        )));
    }
    let mut ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    match ids.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(super::StoreError::Corrupt(format!(
            "a transition batch names run {:?} twice",
            pair[0]
        ))),
        None => Ok(()),
    }
}

/// A run to insert (see [`RunStore::create_runs`]).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub run: RunRecord,
    pub attempts: Vec<AttemptRecord>,
    /// Encoded events, stored with sequence numbers from 1.
    pub events: Vec<Vec<u8>>,
    pub idempotency: Option<IdempotencyKey>,
    pub chain_check: Option<ChainCheck>,
}

/// What the run's chain must still look like when the run is written: the
/// kernel resolves chains from a cache, and this check (one query per batch)
/// keeps that cache from ever starting a run on a deleted chain or on a
/// version that is no longer the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    /// The chain (of the run's namespace) must exist and not be deleted.
    pub chain_id: String,
    /// When set, this must still be its latest version.
    pub latest_version: Option<i64>,
}

/// The run a create wrote (or, for a replayed idempotency key, found), and
/// the events it stored.
pub type CreatedRun = (Created<RunRecord>, Vec<EventRecord>);

/// Duplicate idempotency keys within one `create_runs` call.
pub(super) fn check_distinct_keys(runs: &[NewRun]) -> Result<(), super::StoreError> {
    let mut keys: Vec<(&str, &str)> = runs
        .iter()
        .filter_map(|new| new.idempotency.as_ref())
        .map(|key| (key.scope.as_str(), key.request_id.as_str()))
        .collect();
    let count = keys.len();
    keys.sort_unstable();
    keys.dedup();
    if keys.len() == count {
        Ok(())
    } else {
        Err(super::StoreError::Corrupt(
            "create_runs got one request id twice".into(),
        ))
    }
}

/// The kernel's side of a claim (`kernel::lease::ClaimRequest`): what to
/// claim, the cap policy, fed the leased counts the store reads, and the
/// lease of each attempt taken. The store only selects and locks candidates
/// in claim order and applies what this decides. Called inside the claim's
/// transaction: it must not block, lock or do I/O.
pub trait ClaimPolicy: Send + Sync {
    /// Claim only from these queues.
    fn queues(&self) -> &[String];
    /// At most this many attempts.
    fn limit(&self) -> u32;
    /// Claim attempts whose `available_at <= now`.
    fn now(&self) -> DateTime<Utc>;
    /// Whether the claim needs the attempts leased now of this queue.
    fn queue_capped(&self, queue: &str) -> bool;
    /// Whether the claim needs the attempts leased now of this tenant's
    /// runs.
    fn tenant_capped(&self, tenant: &str) -> bool;
    /// How many attempts each queue may take given what is leased now (of
    /// the capped queues), sorted by queue; queues without room are left
    /// out.
    fn quotas(&self, leased_per_queue: &HashMap<String, u32>) -> Vec<(String, u32)>;
    /// Which candidates (in claim order: queue, tenant) to take within the
    /// quotas and the tenants' room; also the tenants found without room
    /// while candidates of theirs were left (to leave out of a re-read).
    fn within_caps(
        &self,
        candidates: &[(&str, &str)],
        quotas: &HashMap<String, u32>,
        leased_per_tenant: &HashMap<String, u32>,
    ) -> (Vec<usize>, Vec<String>);
    /// The attempt leased (status, owner, token, expiry, start); a
    /// rejection fails the claim.
    fn lease(&self, attempt: &AttemptRecord) -> Result<AttemptRecord, Rejection>;
}

/// Result of a claim: the leased attempts and the events written, in claim
/// order.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub attempts: Vec<AttemptRecord>,
    pub events: Vec<EventRecord>,
}

/// Filters of `list_runs`; empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Runs of this namespace only.
    pub namespace: String,
    pub statuses: Vec<RunStatus>,
    pub chain_id: Option<String>,
    /// Runs carrying all of these labels.
    pub labels: BTreeMap<String, String>,
    pub tenant: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// An attempt whose lease expired or whose deadline passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAttempt {
    pub run_id: String,
    pub attempt_id: String,
}

impl From<(String, String)> for DueAttempt {
    /// From a `(run_id, attempt_id)` row.
    fn from((run_id, attempt_id): (String, String)) -> DueAttempt {
        DueAttempt { run_id, attempt_id }
    }
}

/// Persistence of the execution state. Implemented by both stores and
/// checked by the same conformance suite.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Inserts runs, each with its first attempts and events (sequence
    /// numbers from 1; `run.last_seq` is set by the store), in one
    /// transaction (a batch of starts: one commit instead of one per run).
    /// Results come back in the order of `runs`. Per run: idempotent by its
    /// key like the other creates (the key names the run id; a replay writes
    /// nothing and returns no events); `AlreadyExists` if the run id is
    /// taken; `ChainChanged` if its [`ChainCheck`] fails. Any other error
    /// fails the whole batch and writes nothing. Idempotency keys must be
    /// distinct within one call (`Corrupt` otherwise).
    async fn create_runs(&self, runs: Vec<NewRun>) -> StoreResult<Vec<StoreResult<CreatedRun>>>;
    /// One run; see [`RunStore::create_runs`].
    async fn create_run(
        &self,
        run: RunRecord,
        attempts: Vec<AttemptRecord>,
        events: Vec<Vec<u8>>,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<CreatedRun> {
        let new = NewRun {
            run,
            attempts,
            events,
            idempotency,
            chain_check: None,
        };
        let mut results = self.create_runs(vec![new]).await?;
        results
            .pop()
            .unwrap_or_else(|| Err(super::StoreError::Corrupt("create_runs lost a run".into())))
    }
    async fn get_run(&self, id: &str) -> StoreResult<RunRecord>;
    /// What a request id guarded so far: the key (run id) of the run it
    /// started, `None` if it is unused, `IdempotencyMismatch` if it was used
    /// with another payload. A read: it reserves nothing.
    async fn find_request(&self, key: &IdempotencyKey) -> StoreResult<Option<String>>;
    /// Runs matching `filter`, newest first (descending id; the page key is
    /// the id).
    async fn list_runs(&self, filter: &RunFilter, page: PageQuery) -> StoreResult<Page<RunRecord>>;
    async fn get_attempt(&self, id: &str) -> StoreResult<AttemptRecord>;
    /// The ready, waiting and leased attempts of these runs, in no order
    /// (what a list of runs shows of each: its active tasks, its input
    /// request).
    async fn active_attempts(&self, run_ids: &[&str]) -> StoreResult<Vec<AttemptRecord>>;
    /// A run's attempts by ascending `step` (the page key is the step).
    /// `NotFound` if the run does not exist.
    async fn list_attempts(
        &self,
        run_id: &str,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>>;
    /// A run's events with `seq > after_seq`, ascending, at most `limit`.
    /// `NotFound` if the run does not exist.
    async fn list_events(
        &self,
        run_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<EventRecord>>;
    /// One kernel transition, atomically: lock the run row, read the
    /// snapshot, call `decide`, apply its plan (or nothing if it rejects).
    /// `decide` may be called more than once if the database asks for a
    /// retry (deadlock, serialization failure); only the last plan counts.
    /// `NotFound` if the run does not exist. A decision with a request id
    /// that was applied before is `Replayed` (the same id with another
    /// payload: `IdempotencyMismatch`).
    async fn transition(&self, run_id: &str, decide: Decision) -> StoreResult<TransitionOutcome>;
    /// Several transitions of distinct runs in one transaction (a batch of
    /// completions: one commit instead of one per task). Each item is
    /// decided and applied as `transition` would; results come back in the
    /// order of `items`. A missing run is that item's `NotFound`; a rejected
    /// plan writes nothing for its run. Any other error fails the whole
    /// batch and writes nothing. Run ids must be distinct (`Corrupt`
    /// otherwise).
    async fn transition_many(
        &self,
        items: Vec<(String, Decision)>,
    ) -> StoreResult<Vec<StoreResult<TransitionOutcome>>>;
    /// Leases up to `policy.limit()` `Ready` attempts of `policy.queues()`
    /// with `available_at <= now` whose run is `Queued` or `Running`,
    /// highest priority first, then oldest `available_at`, then id, within
    /// the caps `policy` decides on the leased counts the store reads; skips
    /// attempts another transaction holds. Each attempt taken is written as
    /// `policy.lease` leased it. Then, per run touched (in run id order,
    /// under the run row lock), `decide(run, leased attempts of that run)`
    /// gives the run update, attempt updates and events to apply. One
    /// transaction.
    async fn claim(&self, policy: &dyn ClaimPolicy, decide: &ClaimFn) -> StoreResult<Claimed>;
    /// Leased attempts whose lease expired or whose deadline passed at
    /// `now`, oldest first, at most `limit`.
    async fn due_attempts(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<DueAttempt>>;
    /// Dead-lettered attempts of `namespace`'s runs, newest first
    /// (descending id; the page key is the id), optionally of one queue
    /// (its key).
    async fn list_dead_letters(
        &self,
        namespace: &str,
        queue: Option<&str>,
        page: PageQuery,
    ) -> StoreResult<Page<AttemptRecord>>;
    /// The earliest `available_at` later than `after` among `Ready`
    /// attempts of `queues`, whatever their run's state: when the next
    /// retry or delayed task of those queues falls due. A few index seeks
    /// per queue (one per distinct priority of its ready attempts; the
    /// first [`NEXT_READY_PRIORITIES`] only), however long its backlog.
    async fn next_ready_at(
        &self,
        queues: &[String],
        after: DateTime<Utc>,
    ) -> StoreResult<Option<DateTime<Utc>>>;
}

/// Distinct priorities of one queue's ready attempts `next_ready_at` looks
/// at, highest first (work of lower ones is found by the claim loops' poll).
pub const NEXT_READY_PRIORITIES: i32 = 64;
