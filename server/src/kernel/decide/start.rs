//! A run's first state.

use chrono::{DateTime, Utc};

use super::step::Step;
use super::{Given, NewRun, Renders, value};
use crate::chain::CompiledChain;
use crate::proto::taskloom::v1 as pb;
use crate::store::{AttemptRecord, RunRecord, RunSnapshot, RunStatus};

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
        namespace: new.namespace,
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
        traceparent: None,
    };
    let snapshot = RunSnapshot {
        run,
        attempts: Vec::new(),
    };
    let mut step = Step::new(&Given {
        chain,
        snapshot: &snapshot,
        renders,
        now,
    });
    step.event(pb::RunEventType::RunCreated, |event| {
        event.message = format!(
            "chain {} version {}",
            chain.id(),
            snapshot.run.chain_version
        );
    });
    let entry = chain.entry().to_string();
    step.schedule(&entry, new.input, None, 1, now);
    let plan = step.finish();
    let run = plan.run.unwrap_or(snapshot.run);
    (run, plan.new_attempts, plan.events)
}
