//! Decisions on one leased attempt: what its holder reports (a result,
//! progress, an extension, giving the lease back) and what happens when its
//! lease or deadline runs out.

use chrono::{DateTime, Utc};

use super::step::Step;
use super::{Given, TaskFailure, TaskSuccess, rejected};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, AttemptStatus, Plan};

/// A decision on an attempt its caller holds the lease of: `act` runs on
/// the attempt only if the lease is still the caller's and the run can
/// accept results.
fn on_held(
    given: &Given,
    attempt_id: &str,
    lease_token: &str,
    act: impl FnOnce(&mut Step, AttemptRecord),
) -> Plan {
    let mut step = Step::new(given);
    match step.fenced_attempt(attempt_id, lease_token) {
        Ok(attempt) => {
            act(&mut step, attempt);
            step.finish()
        }
        Err(rejection) => rejected(rejection),
    }
}

/// Records a successful attempt and moves the run on.
pub fn complete(given: &Given, attempt_id: &str, lease_token: &str, success: TaskSuccess) -> Plan {
    on_held(given, attempt_id, lease_token, |step, attempt| {
        step.succeed_attempt(attempt, success)
    })
}

/// Records a failed attempt: retry per policy, or fail the task.
pub fn fail(
    given: &Given,
    attempt_id: &str,
    lease_token: &str,
    failure: TaskFailure,
    random_unit: f64,
) -> Plan {
    on_held(given, attempt_id, lease_token, |step, attempt| {
        step.fail_attempt(attempt, failure, random_unit)
    })
}

/// Gives a lease back without spending a retry (graceful worker shutdown).
pub fn release(given: &Given, attempt_id: &str, lease_token: &str) -> Plan {
    on_held(given, attempt_id, lease_token, |step, attempt| {
        let released = released(attempt, step.now);
        step.update(released);
    })
}

/// How a throttled attempt's `error` starts (see [`throttle`]).
pub(super) const THROTTLED_NOTE: &str = "throttled: ";

/// Whether `attempt` waits because a call limit held it back.
pub(super) fn is_throttled(attempt: &AttemptRecord) -> bool {
    attempt
        .error
        .as_deref()
        .is_some_and(|error| error.starts_with(THROTTLED_NOTE))
}

/// Puts a held attempt whose model call a limit held back (docs/limits.md)
/// back to `Ready` until `retry_at`, without spending a retry: throttling
/// is not a failure. The limit is kept as the attempt's error, and a
/// `TASK_THROTTLED` event is written only when it changes, so rechecks
/// held by the same limit stay quiet; success clears it.
pub fn throttle(
    given: &Given,
    attempt_id: &str,
    lease_token: &str,
    limit: &str,
    retry_at: DateTime<Utc>,
) -> Plan {
    on_held(given, attempt_id, lease_token, |step, attempt| {
        let note = format!("{THROTTLED_NOTE}{limit}");
        let first = attempt.error.as_deref() != Some(note.as_str());
        let mut waiting = released(attempt.clone(), step.now);
        waiting.available_at = retry_at.max(step.now);
        waiting.error = Some(note);
        step.update(waiting);
        if first {
            step.attempt_event(pb::RunEventType::TaskThrottled, &attempt, |event| {
                event.message = limit.to_string();
            });
        }
    })
}

/// Records a progress note of a held lease: an event, nothing else.
pub fn progress(
    given: &Given,
    attempt_id: &str,
    lease_token: &str,
    message: &str,
    data: Option<prost_types::Struct>,
) -> Plan {
    on_held(given, attempt_id, lease_token, |step, attempt| {
        step.attempt_event(pb::RunEventType::TaskProgress, &attempt, |event| {
            event.message = message.to_string();
            event.data = data;
        });
    })
}

/// Extends a held lease to `until`.
pub fn extend(given: &Given, attempt_id: &str, lease_token: &str, until: DateTime<Utc>) -> Plan {
    on_held(given, attempt_id, lease_token, |step, mut attempt| {
        attempt.lease_expires_at = Some(until);
        step.update(attempt);
    })
}

/// Handles a leased attempt whose lease expired or whose deadline passed.
/// A lease that expired returns the attempt to `Ready` without spending a
/// retry, at most `max_lease_expiries` times; then the attempt fails as
/// lost. A passed deadline is a timeout. Anything else is a no-op.
pub fn expire(given: &Given, attempt_id: &str, max_lease_expiries: i32, random_unit: f64) -> Plan {
    let now = given.now;
    let mut step = Step::new(given);
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
    let mut released = released(attempt.clone(), now);
    released.lease_expiries += 1;
    step.update(released);
    step.attempt_event(pb::RunEventType::LeaseExpired, &attempt, |event| {
        event.message = format!(
            "lease held by {} expired",
            attempt.lease_owner.as_deref().unwrap_or("?")
        );
    });
    step.finish()
}

/// `attempt` back to `Ready` from `now`, its lease cleared.
fn released(mut attempt: AttemptRecord, now: DateTime<Utc>) -> AttemptRecord {
    attempt.status = AttemptStatus::Ready;
    attempt.available_at = now;
    attempt.lease_owner = None;
    attempt.lease_token = None;
    attempt.lease_expires_at = None;
    attempt.deadline = None;
    attempt.started_at = None;
    attempt
}
