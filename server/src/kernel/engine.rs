//! The engine's operations: what the API, the dispatcher and the runner
//! ask of the kernel. Each operation is one decision applied in one
//! transition (or a claim, or a start), and answers what it did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::decide::{self, TaskFailure, TaskSuccess, Throttled};
use super::lease::ClaimRequest;
use super::transitions::{RunDecision, START_TRIES};
use super::{
    ChainSource, ClaimedAttempt, Kernel, KernelError, KernelResult, StartRun, Started, now, value,
};
use crate::chain::{self, CompiledChain, Handler};
use crate::proto::taskloom::v1 as pb;
use crate::store::{
    AttemptRecord, AttemptStatus, AuditRecord, IdempotencyKey, NewRun, Plan, RejectionKind,
    RunRecord, StoreError,
};
use crate::traces::RunTrace;

/// An attempt a transition wrote, as stored afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptChange {
    pub id: String,
    pub run_id: String,
    pub status: AttemptStatus,
    /// The lease it is held under, while `Leased`.
    pub lease_token: Option<String>,
    /// Failed for good: no retry was scheduled.
    pub dead_lettered: bool,
}

impl AttemptChange {
    pub fn of(attempt: &AttemptRecord) -> AttemptChange {
        AttemptChange {
            id: attempt.id.clone(),
            run_id: attempt.run_id.clone(),
            status: attempt.status,
            lease_token: attempt.lease_token.clone(),
            dead_lettered: attempt.dead_lettered,
        }
    }

    /// Still leased under `token`.
    pub fn leased_under(&self, token: &str) -> bool {
        self.status == AttemptStatus::Leased && self.lease_token.as_deref() == Some(token)
    }
}

/// What a transition did, read off the plan the store applied.
#[derive(Debug, Clone)]
pub struct Transitioned {
    /// The run as stored afterwards (or as it is, for a replayed request).
    pub run: RunRecord,
    /// The attempts it updated or created (none for a replayed request).
    pub attempts: Vec<AttemptChange>,
}

impl Transitioned {
    /// Whether the failure of `attempt_id` recorded here scheduled another
    /// attempt of its task.
    pub fn will_retry(&self, attempt_id: &str) -> bool {
        self.attempts.iter().any(|attempt| {
            attempt.id == attempt_id
                && matches!(
                    attempt.status,
                    AttemptStatus::Failed | AttemptStatus::TimedOut
                )
                && !attempt.dead_lettered
        })
    }
}

/// A start's input must suit its chain's entry task.
fn check_start_input(chain: &CompiledChain, input: &pb::Value) -> KernelResult<()> {
    let Some(entry) = chain.task(chain.entry()) else {
        return Ok(());
    };
    check_entry_input(entry.handler, input).map_err(|message| KernelError::InvalidArgument {
        field: "input".to_string(),
        message,
    })
}

/// Whether the run's input suits the entry task's handler.
fn check_entry_input(handler: Handler, input: &pb::Value) -> Result<(), String> {
    use pb::value::Kind;
    let kind = input.kind.as_ref();
    let fits = match handler {
        Handler::ModelExecution => matches!(kind, Some(Kind::ChatHistory(_) | Kind::Text(_))),
        Handler::Embedding => matches!(kind, Some(Kind::Text(_))),
        Handler::RawString
        | Handler::ConditionKey
        | Handler::ParseNumber
        | Handler::ParseScore
        | Handler::ParseRange => !matches!(kind, Some(Kind::Vector(_)) | None),
        _ => kind.is_some(),
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "the entry task's handler {} cannot take a {} input",
            handler.name(),
            value::value_type(input).as_str_name()
        ))
    }
}

impl Kernel {
    /// Starts a run (or, for a repeated `request_id`, returns the run the
    /// first request started).
    pub async fn start_run(&self, request: StartRun) -> KernelResult<Started> {
        self.start_run_as(request, None).await
    }

    /// As [`Kernel::start_run`], with the new run's id chosen by the caller
    /// (who watches it before it exists); a replayed `request_id` returns
    /// the run it started, whatever its id.
    pub async fn start_run_as(
        &self,
        request: StartRun,
        run_id: Option<String>,
    ) -> KernelResult<Started> {
        if let ChainSource::Inline(definition) = &request.chain {
            // An inline chain is stored before its run: first check what
            // could still refuse the start, so a refused one writes nothing.
            let compiled =
                chain::compile(definition).map_err(|violations| KernelError::InvalidArgument {
                    field: "chain".to_string(),
                    message: violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
            check_start_input(&compiled, &request.input)?;
            if let Some(key) = &request.idempotency
                && let Some(run_id) = self.inner.store.find_request(key).await?
            {
                return Ok(Started {
                    run: self.get_run(&run_id).await?,
                    attempts: None,
                });
            }
        }
        let mut tries = 1;
        loop {
            let (chain_id, version, chain_check) = self
                .resolve_chain(&request.namespace, &request.chain, tries > 1)
                .await?;
            let chain = self.chain(&request.namespace, &chain_id, version).await?;
            check_start_input(&chain, &request.input)?;
            let new = decide::NewRun {
                id: run_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                namespace: request.namespace.clone(),
                chain_id,
                chain_version: version,
                input: request.input.clone(),
                labels: request.labels.clone(),
                priority: request.priority,
                tenant: request.tenant.clone(),
                request_id: request
                    .idempotency
                    .as_ref()
                    .map(|key| key.request_id.clone()),
            };
            let now = now();
            let (mut run, attempts, events) = self.decide_start(&chain, new, now).await;
            run.traceparent = request.traceparent.clone();
            let mut plan = Plan {
                run: None,
                new_attempts: attempts,
                events,
                ..Plan::apply()
            };
            let dispatch = self.lease_new_attempts(&chain, &run, &mut plan, now);
            let attempts = plan.new_attempts;
            let new = NewRun {
                run: plan.run.unwrap_or(run),
                attempts: attempts.clone(),
                events: plan.events,
                idempotency: request.idempotency.clone(),
                chain_check,
            };
            match self.create_batched(new).await {
                Err(KernelError::Store(StoreError::ChainChanged { .. })) if tries < START_TRIES => {
                    // Resolve the chain again, bypassing the cache.
                    tries += 1;
                }
                Err(error) => return Err(error),
                Ok((created, stored_events)) => {
                    crate::metrics::run_committed(&created.record, Some(&chain), &stored_events);
                    self.committed(&stored_events, &[]);
                    if !created.replayed {
                        self.dispatch(dispatch);
                    }
                    let attempts = (!created.replayed).then_some(attempts);
                    return Ok(Started {
                        run: created.record,
                        attempts,
                    });
                }
            }
        }
    }

    /// Records a completion (batched with others).
    pub async fn complete(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        success: TaskSuccess,
    ) -> KernelResult<Transitioned> {
        let chain = self.run_chain(run_id).await?;
        self.complete_in(chain, run_id, attempt_id, lease_token, success)
            .await
    }

    /// As `complete`, for a caller that already holds the run's chain.
    pub async fn complete_in(
        &self,
        chain: Arc<CompiledChain>,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        success: TaskSuccess,
    ) -> KernelResult<Transitioned> {
        self.on_lease(
            chain,
            run_id,
            attempt_id,
            lease_token,
            move |given, id, token| decide::complete(given, id, token, success.clone()),
        )
        .await
    }

    /// Records a failure (batched with others) in a run of `chain`.
    pub async fn fail_in(
        &self,
        chain: Arc<CompiledChain>,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        failure: TaskFailure,
    ) -> KernelResult<Transitioned> {
        let random_unit: f64 = rand::random();
        self.on_lease(
            chain,
            run_id,
            attempt_id,
            lease_token,
            move |given, id, token| decide::fail(given, id, token, failure.clone(), random_unit),
        )
        .await
    }

    /// Puts an attempt a call limit held back in a run of `chain` back to
    /// `Ready` until the limit frees (no retry spent; see
    /// [`decide::throttle`]).
    pub async fn throttle_in(
        &self,
        chain: Arc<CompiledChain>,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        throttled: Throttled,
    ) -> KernelResult<Transitioned> {
        self.on_lease(
            chain,
            run_id,
            attempt_id,
            lease_token,
            move |given, id, token| {
                decide::throttle(given, id, token, &throttled.limit, throttled.retry_at)
            },
        )
        .await
    }

    /// A batched decision on a lease its caller holds: `decide` is given
    /// the attempt id and the lease token.
    async fn on_lease<F>(
        &self,
        chain: Arc<CompiledChain>,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        decide: F,
    ) -> KernelResult<Transitioned>
    where
        F: Fn(&decide::Given, &str, &str) -> Plan + Send + Sync + 'static,
    {
        let (attempt, token) = (attempt_id.to_string(), lease_token.to_string());
        self.batched(run_id, Some(attempt_id), chain, move |given| {
            decide(given, &attempt, &token)
        })
        .await
    }

    pub async fn extend_lease(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        extension: Duration,
    ) -> KernelResult<DateTime<Utc>> {
        let until = now() + chrono::Duration::from_std(extension).unwrap_or(chrono::Duration::MAX);
        let focus = attempt_id;
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        self.transition(run_id, Some(focus), move |given| {
            decide::extend(given, &attempt_id, &token, until)
        })
        .await?;
        Ok(until)
    }

    /// Gives a lease back: the attempt is `Ready` again at once, without
    /// spending a retry (batched).
    pub async fn release_lease(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
    ) -> KernelResult<Transitioned> {
        let chain = self.run_chain(run_id).await?;
        self.on_lease(chain, run_id, attempt_id, lease_token, decide::release)
            .await
    }

    /// Records a progress note of a held lease as a `TASK_PROGRESS` event.
    pub async fn progress(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
        message: String,
        data: Option<prost_types::Struct>,
    ) -> KernelResult<Transitioned> {
        let chain = self.run_chain(run_id).await?;
        self.on_lease(
            chain,
            run_id,
            attempt_id,
            lease_token,
            move |given, id, token| decide::progress(given, id, token, &message, data.clone()),
        )
        .await
    }

    /// Cancels a run; with a request id, a repeat answers the run as it is.
    pub async fn cancel_run(
        &self,
        namespace: &str,
        run_id: &str,
        reason: &str,
        idempotency: Option<IdempotencyKey>,
        audit: Option<AuditRecord>,
    ) -> KernelResult<RunRecord> {
        let reason = reason.to_string();
        self.steer((namespace, run_id), (idempotency, audit), move |given| {
            decide::cancel(given, &reason)
        })
        .await
    }

    pub async fn pause_run(
        &self,
        namespace: &str,
        run_id: &str,
        cancel_running: bool,
        idempotency: Option<IdempotencyKey>,
        audit: Option<AuditRecord>,
    ) -> KernelResult<RunRecord> {
        self.steer((namespace, run_id), (idempotency, audit), move |given| {
            decide::pause(given, cancel_running)
        })
        .await
    }

    pub async fn resume_run(
        &self,
        namespace: &str,
        run_id: &str,
        idempotency: Option<IdempotencyKey>,
        audit: Option<AuditRecord>,
    ) -> KernelResult<RunRecord> {
        self.steer((namespace, run_id), (idempotency, audit), decide::resume)
            .await
    }

    pub async fn submit_input(
        &self,
        namespace: &str,
        run_id: &str,
        task_id: &str,
        answer: pb::Value,
        request_key: Option<String>,
        audit: Option<AuditRecord>,
    ) -> KernelResult<RunRecord> {
        let task_id = task_id.to_string();
        self.steer((namespace, run_id), (None, audit), move |given| {
            decide::submit_input(given, &task_id, answer.clone(), request_key.as_deref())
        })
        .await
    }

    /// Continues a failed run; with a request id, a repeat answers the run
    /// as it is instead of failing because the run is no longer failed.
    pub async fn retry_run(
        &self,
        namespace: &str,
        run_id: &str,
        idempotency: Option<IdempotencyKey>,
        audit: Option<AuditRecord>,
    ) -> KernelResult<RunRecord> {
        self.steer((namespace, run_id), (idempotency, audit), decide::retry_run)
            .await
    }

    /// A decision that steers a whole run (guarded by the caller's request
    /// id, if any, and recorded with the caller's audit record when
    /// applied); answers the run as it is after.
    async fn steer(
        &self,
        (namespace, run_id): (&str, &str),
        call: (Option<IdempotencyKey>, Option<AuditRecord>),
        decide: impl RunDecision,
    ) -> KernelResult<RunRecord> {
        self.transition_once((Some(namespace), run_id), None, call, decide)
            .await
            .map(|done| done.run)
    }

    /// Leases ready attempts of `queues` for `owner`.
    pub async fn claim(
        &self,
        queues: &[String],
        owner: &str,
        limit: u32,
    ) -> KernelResult<Vec<ClaimedAttempt>> {
        let now = now();
        let request = ClaimRequest {
            queues: queues.to_vec(),
            owner: owner.to_string(),
            limit,
            now,
            lease_ms: self.inner.config.lease.as_millis() as i64,
            caps: self.inner.config.caps.clone(),
        };
        let kernel = self.clone();
        let chains_of_runs = Arc::new(std::sync::Mutex::new(HashMap::new()));
        let seen = chains_of_runs.clone();
        let decide_claim = move |run: &RunRecord, attempts: &[AttemptRecord]| {
            seen.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(
                    run.id.clone(),
                    (
                        run.namespace.clone(),
                        run.chain_id.clone(),
                        run.chain_version,
                        RunTrace::of_run(run),
                    ),
                );
            let chain = kernel.cached_chain(&run.namespace, &run.chain_id, run.chain_version);
            decide::claimed(chain.as_deref(), run, attempts, now)
        };
        let claimed =
            crate::metrics::store_call("claim", self.inner.store.claim(&request, &decide_claim))
                .await?;
        claimed.attempts.iter().for_each(crate::metrics::leased);
        let leased: Vec<_> = claimed.attempts.iter().map(AttemptChange::of).collect();
        self.committed(&claimed.events, &leased);
        let chains_of_runs = std::mem::take(
            &mut *chains_of_runs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        Ok(claimed
            .attempts
            .into_iter()
            .filter_map(|attempt| {
                let (namespace, chain_id, chain_version, run_trace) =
                    chains_of_runs.get(&attempt.run_id)?.clone();
                Some(ClaimedAttempt {
                    trace: run_trace.attempt(&attempt.id),
                    attempt,
                    namespace,
                    chain_id,
                    chain_version,
                })
            })
            .collect())
    }

    /// Returns expired leases to `Ready` and times out overdue attempts.
    /// Returns how many attempts were handled; stops at a store fault.
    pub async fn sweep(&self) -> KernelResult<usize> {
        let due =
            crate::metrics::store_call("due_attempts", self.inner.store.due_attempts(now(), 256))
                .await?;
        let max = self.inner.config.max_lease_expiries;
        for item in &due {
            let attempt_id = item.attempt_id.clone();
            let random_unit: f64 = rand::random();
            let result = self
                .transition(&item.run_id, Some(&item.attempt_id), move |given| {
                    decide::expire(given, &attempt_id, max, random_unit)
                })
                .await;
            match result {
                Err(error) if error.is_store_fault() => return Err(error),
                Err(error) => {
                    tracing::warn!(run_id = %item.run_id, attempt_id = %item.attempt_id, error = %error, "sweeping an attempt failed");
                }
                Ok(_) => {}
            }
        }
        Ok(due.len())
    }

    /// Ends a lease at once, as if it had expired: its holder failed the
    /// liveness check, so the attempt goes back to `Ready` for someone else
    /// now rather than when the lease runs out. Counted as a lease expiry
    /// (a task that keeps losing its workers still fails as lost).
    /// `LeaseFenced` unless the attempt is leased under
    /// `lease_token`.
    pub async fn expire_lease(
        &self,
        run_id: &str,
        attempt_id: &str,
        lease_token: &str,
    ) -> KernelResult<Transitioned> {
        let max = self.inner.config.max_lease_expiries;
        let random_unit: f64 = rand::random();
        let (attempt_id, token) = (attempt_id.to_string(), lease_token.to_string());
        let focus = attempt_id.clone();
        self.transition(run_id, Some(&focus), move |given| {
            let mut expired = given.snapshot.clone();
            let held = expired.attempts.iter_mut().find(|a| {
                a.id == attempt_id
                    && a.status == AttemptStatus::Leased
                    && a.lease_token.as_deref() == Some(token.as_str())
            });
            let Some(held) = held else {
                return Plan::reject(
                    RejectionKind::LeaseFenced,
                    format!("attempt {attempt_id} is not leased under this token"),
                );
            };
            held.lease_expires_at = Some(given.now);
            let given = decide::Given {
                snapshot: &expired,
                ..*given
            };
            decide::expire(&given, &attempt_id, max, random_unit)
        })
        .await
    }
}
