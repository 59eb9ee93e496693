//! Global limits on model calls (docs/limits.md): the calls of each limit
//! scope (a backend, or one model on a backend) in flight and in the last
//! minute, and the backoffs providers asked for. The store only reads and
//! writes, atomically per admission and across replicas; whether a call may
//! start is the caller's [`Judge`] (`crate::llm::limits`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Limits, StoreResult};

/// The window of `requests_per_minute` and `tokens_per_minute`.
pub const LIMIT_WINDOW: Duration = Duration::from_secs(60);
/// How long a call counts in its scope's window: the minute plus a second
/// of slack, for the time between admission and the provider seeing the
/// request (an admission may wait on another's lock) and for clock skew
/// between replicas. A provider counting arrivals never sees more than
/// the limit in a minute; throughput stays within 2 % of it.
pub const COUNTED_WINDOW: Duration = Duration::from_secs(61);

/// Something calls are counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitScope {
    /// Stable key: `backend/ID` or `model/ID/MODEL`.
    pub key: String,
    /// How messages name it: `backend "slow"`, `model "m" on backend "slow"`.
    pub name: String,
    pub limits: Limits,
}

/// A call asking to start.
#[derive(Debug, Clone)]
pub struct NewCall<'a> {
    /// Unique per call; names it in [`LimitStore::settle`].
    pub call_id: &'a str,
    /// Every scope the call counts against, each checked and counted.
    pub scopes: &'a [LimitScope],
    /// Input plus output tokens expected, until the call settles.
    pub estimated_tokens: i64,
    pub now: DateTime<Utc>,
    /// The call frees its concurrency by then even if it never settles (its
    /// replica crashed).
    pub hold_until: DateTime<Utc>,
}

/// What the store read of one scope, under the admission's lock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeUsage {
    /// Calls started and not settled whose hold has not passed.
    pub in_flight: i64,
    /// Calls started within [`COUNTED_WINDOW`] before now.
    pub started: i64,
    /// The oldest of those.
    pub oldest_start: Option<DateTime<Utc>>,
    /// Their tokens: the estimate of calls in flight, the count of settled ones.
    pub tokens: i64,
    /// The mean duration of the settled ones.
    pub mean_call: Option<Duration>,
    /// A provider's backoff that has not passed, and why.
    pub backoff: Option<(DateTime<Utc>, String)>,
}

/// Why a call may not start now, and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// The key of the scope whose limit held.
    pub scope: String,
    /// The limit that held, e.g. `backend "slow": 5 calls in flight
    /// (max_concurrency 5)`.
    pub limit: String,
    pub retry_at: DateTime<Utc>,
}

/// What an admission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitOutcome {
    /// The call is counted; settle it when it ends.
    Admitted,
    Throttled(Throttle),
}

/// Decides, for one scope, whether a call may start given what the store
/// read; `None` lets it.
pub type Judge<'a> = &'a (dyn Fn(&LimitScope, &ScopeUsage) -> Option<Throttle> + Send + Sync);

#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Reads every scope's usage and, if `judge` lets the call start in
    /// every scope, counts it in all of them, atomically (on PostgreSQL
    /// across replicas). Prunes the scopes' rows older than the window.
    async fn admit(&self, call: &NewCall<'_>, judge: Judge<'_>) -> StoreResult<AdmitOutcome>;

    /// Ends an admitted call: frees its concurrency and replaces its token
    /// estimate with `tokens`. Unknown calls (already pruned) are ignored.
    async fn settle(&self, call_id: &str, tokens: i64, now: DateTime<Utc>) -> StoreResult<()>;

    /// Keeps calls of `scope` from starting until `until` (a later backoff
    /// already recorded stays).
    async fn back_off(&self, scope: &str, until: DateTime<Utc>, reason: &str) -> StoreResult<()>;
}

/// The start of the counted window ending at `now`.
pub(super) fn window_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::from_std(COUNTED_WINDOW).unwrap_or_default()
}
