//! The working state of one decision: the run and its attempts as the
//! decision changes them, the events it emits, and the [`Plan`] it ends in.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message;

use super::{Given, Renders, name_attempt, new_event, run_ended, value};
use crate::chain::CompiledChain;
use crate::proto::taskloom::v1 as pb;
use crate::store::{
    AttemptRecord, AttemptStatus, Plan, Rejection, RejectionKind, RunRecord, RunStatus,
};

/// The working state of one decision.
pub(super) struct Step<'a> {
    pub(super) chain: &'a CompiledChain,
    pub(super) renders: &'a Renders,
    pub(super) now: DateTime<Utc>,
    pub(super) run: RunRecord,
    /// Snapshot attempts with this step's updates applied, then new ones.
    pub(super) attempts: Vec<AttemptRecord>,
    snapshot_len: usize,
    updated: Vec<String>,
    events: Vec<pb::RunEvent>,
    /// Tasks this decision failed because their template did not render.
    pub(super) template_failures: u32,
}

impl<'a> Step<'a> {
    pub(super) fn new(given: &Given<'a>) -> Step<'a> {
        Step {
            chain: given.chain,
            renders: given.renders,
            now: given.now,
            run: given.snapshot.run.clone(),
            attempts: given.snapshot.attempts.clone(),
            snapshot_len: given.snapshot.attempts.len(),
            updated: Vec::new(),
            events: Vec::new(),
            template_failures: 0,
        }
    }

    pub(super) fn attempt(&self, id: &str) -> Option<&AttemptRecord> {
        self.attempts.iter().find(|a| a.id == id)
    }

    /// The leased attempt named by a completion or failure, if the caller
    /// still holds its lease and the run can accept results.
    pub(super) fn fenced_attempt(
        &self,
        attempt_id: &str,
        lease_token: &str,
    ) -> Result<AttemptRecord, Rejection> {
        let Some(attempt) = self.attempt(attempt_id) else {
            return Err(Rejection {
                kind: RejectionKind::NotFound,
                message: format!("attempt {attempt_id:?} not found in run {}", self.run.id),
            });
        };
        if attempt.status != AttemptStatus::Leased
            || attempt.lease_token.as_deref() != Some(lease_token)
        {
            return Err(Rejection {
                kind: RejectionKind::LeaseFenced,
                message: format!(
                    "stale lease on attempt {attempt_id}: it is {} and the token does not match the current lease",
                    attempt.status.as_str()
                ),
            });
        }
        if self.run.status.is_terminal() {
            return Err(run_ended(&self.run));
        }
        Ok(attempt.clone())
    }

    pub(super) fn update(&mut self, attempt: AttemptRecord) {
        if let Some(index) = self.attempts.iter().position(|a| a.id == attempt.id) {
            if index < self.snapshot_len && !self.updated.contains(&attempt.id) {
                self.updated.push(attempt.id.clone());
            }
            self.attempts[index] = attempt;
        }
    }

    pub(super) fn event(&mut self, kind: pb::RunEventType, fill: impl FnOnce(&mut pb::RunEvent)) {
        let mut event = new_event(&self.run.id, kind, self.now);
        fill(&mut event);
        self.events.push(event);
    }

    /// An event about `attempt`.
    pub(super) fn attempt_event(
        &mut self,
        kind: pb::RunEventType,
        attempt: &AttemptRecord,
        fill: impl FnOnce(&mut pb::RunEvent),
    ) {
        self.event(kind, |event| {
            name_attempt(event, attempt);
            fill(event);
        });
    }

    /// The latest successful output of each task, in step order.
    pub(super) fn task_outputs(&self) -> Vec<(String, pb::Value)> {
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

    pub(super) fn latest_output(&self, task_id: &str) -> Option<pb::Value> {
        self.task_outputs()
            .into_iter()
            .find(|(id, _)| id == task_id)
            .map(|(_, output)| output)
    }

    pub(super) fn run_input(&self) -> pb::Value {
        value::decode(&self.run.input).unwrap_or_default()
    }

    pub(super) fn cancel_active(&mut self) {
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

    /// The writes this decision makes, or its deferral when it needs
    /// templates rendered first.
    pub(super) fn finish(mut self) -> Plan {
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
