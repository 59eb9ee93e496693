//! Deleting runs: `DeleteRun` of one finished run, and the retention loop
//! every replica runs, which deletes the finished runs older than their
//! chain's `run_retention` (or the server's `--run-retention`).
//!
//! The loop deletes in small batches, one short transaction each with a
//! pause in between, so it never holds locks for long: on SQLite every
//! other write waits for a batch, on PostgreSQL batches skip the rows other
//! transactions hold, so replicas sweeping at once share the work.

use std::collections::HashMap;
use std::time::Duration;

use prost::Message;
use tokio::sync::watch;

use super::{Kernel, KernelError, KernelResult};
use crate::chain::duration::parse_retention;
use crate::proto::taskloom::v1 as pb;
use crate::store::{
    AuditRecord, IdempotencyKey, PageQuery, Rejection, RejectionKind, RunDeletion, RunRecord,
};

/// How the retention loop works.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// How long finished runs of chains without their own `run_retention`
    /// are kept; zero keeps them forever.
    pub default: Duration,
    /// Runs deleted per transaction.
    pub batch: u32,
    /// Pause between two batches.
    pub pause: Duration,
    /// Longest wait between two sweeps (shorter when a retention is short).
    pub interval: Duration,
}

impl RetentionConfig {
    /// The defaults around a server-wide retention period.
    pub fn new(default: Duration) -> RetentionConfig {
        RetentionConfig {
            default,
            batch: 500,
            pause: Duration::from_millis(50),
            interval: Duration::from_secs(60),
        }
    }
}

/// Shortest wait between two sweeps.
const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// A pause between two batches lasts at least this many times as long as
/// the batch before it took: retention takes at most a twentieth of the
/// store's time while it works through a backlog (a tenth cost `workers`
/// a tenth of its throughput on both stores in the history bench).
const BUSY_RATIO: u32 = 19;
/// Chains read at once when collecting their retention periods.
const CHAIN_PAGE: u32 = 500;

/// Why `DeleteRun` refuses a run that has not finished.
fn unfinished(run: &RunRecord) -> Option<Rejection> {
    (!run.status.is_terminal()).then(|| Rejection {
        kind: RejectionKind::FailedPrecondition,
        message: format!(
            "run {:?} is {}: only finished runs (succeeded, failed or cancelled) can be deleted; cancel it first",
            run.id,
            run.status.as_str()
        ),
    })
}

impl Kernel {
    /// Deletes a finished run with its attempts and events, writing `audit`
    /// in the same transaction. A repeat of a delete that succeeded (same
    /// request id) succeeds again.
    pub async fn delete_run(
        &self,
        namespace: &str,
        run_id: &str,
        idempotency: Option<IdempotencyKey>,
        audit: &AuditRecord,
    ) -> KernelResult<()> {
        // Another namespace's run is not found, as a missing one.
        let namespace = namespace.to_string();
        let check = move |run: &RunRecord| {
            if run.namespace != namespace {
                return Some(Rejection {
                    kind: RejectionKind::NotFound,
                    message: format!("run {:?} not found", run.id),
                });
            }
            unfinished(run)
        };
        match self
            .store()
            .delete_run(run_id, &check, idempotency, audit)
            .await?
        {
            RunDeletion::Deleted | RunDeletion::Replayed => Ok(()),
            RunDeletion::Rejected(rejection) => Err(KernelError::rejected(rejection)),
        }
    }

    /// Deletes expired finished runs until `stop` turns true: a sweep,
    /// then a wait (shorter for short retention periods), and again.
    pub async fn run_retention(self, config: RetentionConfig, mut stop: watch::Receiver<bool>) {
        loop {
            let wait = match self.sweep_expired(&config, &mut stop).await {
                Ok(sweep) => {
                    if sweep.deleted > 0 {
                        tracing::info!(deleted = sweep.deleted, "retention deleted expired runs");
                    }
                    (sweep.shortest / 2).clamp(MIN_INTERVAL, config.interval.max(MIN_INTERVAL))
                }
                Err(error) => {
                    tracing::warn!(error = %error, "retention sweep failed; trying again later");
                    config.interval.max(MIN_INTERVAL)
                }
            };
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass over every chain's expired runs.
    async fn sweep_expired(
        &self,
        config: &RetentionConfig,
        stop: &mut watch::Receiver<bool>,
    ) -> KernelResult<Sweep> {
        let own = self.chain_retention().await?;
        let periods = own.values().chain([&config.default]);
        let mut sweep = Sweep {
            deleted: 0,
            // Also before the first chain exists, so the first runs of a
            // short default are not left waiting for the longest interval.
            shortest: periods
                .filter(|period| !period.is_zero())
                .min()
                .copied()
                .unwrap_or(Duration::MAX),
        };
        for (namespace, chain_id) in self.store().all_chains().await? {
            let retention = own
                .get(&(namespace.clone(), chain_id.clone()))
                .copied()
                .unwrap_or(config.default);
            if retention.is_zero() {
                continue;
            }
            let Some(ended_before) = chrono::Duration::from_std(retention)
                .ok()
                .and_then(|retention| chrono::Utc::now().checked_sub_signed(retention))
            else {
                continue;
            };
            loop {
                if *stop.borrow() {
                    return Ok(sweep);
                }
                let began = std::time::Instant::now();
                let deleted = self
                    .store()
                    .delete_ended_runs((&namespace, &chain_id), ended_before, config.batch)
                    .await?;
                sweep.deleted += deleted.len();
                if deleted.len() < config.batch as usize {
                    break;
                }
                // Retention takes at most about a twentieth of the store's
                // time (on SQLite every other write waits for a batch), so a
                // long backlog does not slow the runs being served much.
                let pause = config.pause.max(began.elapsed() * BUSY_RATIO);
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => return Ok(sweep),
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
        Ok(sweep)
    }

    /// The retention periods live chains set themselves (latest version).
    async fn chain_retention(&self) -> KernelResult<HashMap<(String, String), Duration>> {
        let mut periods = HashMap::new();
        for namespace in self.store().list_namespaces().await? {
            self.namespace_retention(&namespace.name, &mut periods)
                .await?;
        }
        Ok(periods)
    }

    /// The retention periods of `namespace`'s live chains, into `periods`.
    async fn namespace_retention(
        &self,
        namespace: &str,
        periods: &mut HashMap<(String, String), Duration>,
    ) -> KernelResult<()> {
        let mut after = None;
        loop {
            let page = self
                .store()
                .list_chains(
                    namespace,
                    PageQuery {
                        limit: CHAIN_PAGE,
                        after,
                    },
                )
                .await?;
            for record in &page.items {
                let chain = pb::Chain::decode(record.definition.as_slice()).map_err(|error| {
                    KernelError::Corrupt(format!(
                        "stored chain {} version {} does not decode: {error}",
                        record.id, record.version
                    ))
                })?;
                // Validated when stored; an unreadable one keeps the default.
                if !chain.run_retention.is_empty()
                    && let Ok(period) = parse_retention(&chain.run_retention)
                {
                    periods.insert((namespace.to_string(), record.id.clone()), period);
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }
}

/// What one sweep did.
struct Sweep {
    deleted: usize,
    /// The shortest retention period that applies to some chain.
    shortest: Duration,
}
