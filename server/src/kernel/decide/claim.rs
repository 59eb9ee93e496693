//! What a claim writes besides the leases themselves (those are
//! `kernel::lease`'s).

use chrono::{DateTime, Utc};
use prost::Message;

use super::{name_attempt, new_event, to_chrono};
use crate::chain::CompiledChain;
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, Plan, RunRecord, RunStatus};

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
        // A throttled attempt's rechecks are not new starts: its first
        // claim said it started, its TASK_THROTTLED event why it waits.
        if super::attempt::is_throttled(attempt) {
            continue;
        }
        let mut event = new_event(&run.id, pb::RunEventType::TaskStarted, now);
        name_attempt(&mut event, attempt);
        event.message = attempt.lease_owner.clone().unwrap_or_default();
        events.push(event);
    }
    run.updated_at = now;
    plan.run = Some(run);
    plan.events = events.iter().map(Message::encode_to_vec).collect();
    plan
}
