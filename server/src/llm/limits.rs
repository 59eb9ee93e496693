//! Global limits on model calls (docs/limits.md): before the resolver calls
//! a candidate it asks the [`Limiter`] for admission against the backend's
//! limits and the model's limits on that backend (`max_concurrency`,
//! `requests_per_minute`, `tokens_per_minute`; 0 = unlimited), counted in
//! the store so every replica shares them, and settles the call with the
//! provider's token count when it ends. A provider's 429/503 with
//! `Retry-After` backs the backend's model off for that long.
//!
//! A backend and model without limits cost nothing: no scope, no store
//! call. Backoffs of such backends are kept by the replica that saw the 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{ChatResponse, EmbedResponse};
use crate::store::{
    AdmitOutcome, BackendRecord, COUNTED_WINDOW, DynStore, LIMIT_WINDOW, LimitScope, Limits,
    NewCall, ScopeUsage, StoreError, Throttle,
};

/// The longest backoff a `Retry-After` can ask for.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Output tokens assumed for a call that names no `max_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: i64 = 256;
/// Bounds of the recheck of a concurrency limit.
const MIN_RECHECK: Duration = Duration::from_millis(100);
const MAX_RECHECK: Duration = Duration::from_secs(2);
/// The hold of a call on a backend without a request timeout (the
/// resolver's default timeout is two minutes).
const DEFAULT_HOLD: Duration = Duration::from_secs(120);
/// The most a rate limit's waiters are spread over.
const MAX_SPREAD: Duration = Duration::from_secs(10);
/// A call's hold outlives its request timeout by this much.
const HOLD_SLACK: Duration = Duration::from_secs(5);

/// Tokens of a call before it is made: 4 characters a token, plus the
/// output it may produce.
pub fn estimate_tokens(prompt_chars: usize, max_tokens: Option<u32>) -> i64 {
    (prompt_chars / 4) as i64 + max_tokens.map_or(DEFAULT_OUTPUT_TOKENS, i64::from)
}

/// The key of a backend's scope.
pub fn backend_scope(backend: &BackendRecord) -> String {
    format!("backend/{}", backend.id)
}

/// The key of one model's scope on a backend (where 429 backoffs go).
pub fn model_scope(backend: &BackendRecord, model: &str) -> String {
    format!("model/{}/{model}", backend.id)
}

/// The scopes a call of `model` on `backend` counts against; none when
/// neither has limits.
pub fn scopes(backend: &BackendRecord, model: &str) -> Vec<LimitScope> {
    let backend_limits = Limits {
        max_concurrency: backend.max_concurrency,
        requests_per_minute: backend.requests_per_minute,
        tokens_per_minute: backend.tokens_per_minute,
    };
    let model_limits = backend.model_limits.get(model).copied().unwrap_or_default();
    if backend_limits.is_unlimited() && model_limits.is_unlimited() {
        return Vec::new();
    }
    // The model's scope is counted even without limits of its own: a
    // backoff of the model is checked there.
    vec![
        LimitScope {
            key: backend_scope(backend),
            name: format!("backend {:?}", backend.name),
            limits: backend_limits,
        },
        LimitScope {
            key: model_scope(backend, model),
            name: format!("model {model:?} on backend {:?}", backend.name),
            limits: model_limits,
        },
    ]
}

/// Whether a call of `estimated_tokens` may start in `scope` given its
/// `usage` at `now`; `jitter` in [0, 1) spreads the waiters' rechecks.
///
/// Retry times: a backoff's end exactly; for a rate limit, the moment the
/// oldest call leaves the counted window (exact with `jitter` 0; see
/// [`COUNTED_WINDOW`]), spread over the next few slot intervals (2 × minute / limit, at most 10 s) so that the
/// calls waiting on one limit do not all recheck at the same instant; for
/// concurrency, a recheck after about a typical call's duration (100 ms to
/// 2 s, ±50 %).
pub fn judge(
    scope: &LimitScope,
    usage: &ScopeUsage,
    estimated_tokens: i64,
    now: DateTime<Utc>,
    jitter: f64,
) -> Option<Throttle> {
    let throttle = |limit: String, retry_at: DateTime<Utc>| {
        Some(Throttle {
            scope: scope.key.clone(),
            limit,
            retry_at: retry_at.max(now),
        })
    };
    let window = chrono::Duration::from_std(COUNTED_WINDOW).unwrap_or_default();
    if let Some((until, reason)) = &usage.backoff {
        return throttle(
            format!(
                "{}: backed off until {} ({reason})",
                scope.name,
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            *until,
        );
    }
    let limits = &scope.limits;
    if limits.max_concurrency > 0 && usage.in_flight >= i64::from(limits.max_concurrency) {
        let typical = usage.mean_call.unwrap_or(MAX_RECHECK / 2);
        let recheck = typical
            .clamp(MIN_RECHECK, MAX_RECHECK)
            .mul_f64(0.5 + jitter);
        return throttle(
            format!(
                "{}: {max} calls in flight (max_concurrency {max})",
                scope.name,
                max = limits.max_concurrency
            ),
            now + chrono::Duration::from_std(recheck).unwrap_or_default(),
        );
    }
    let oldest_leaves = usage.oldest_start.map_or(now, |oldest| oldest + window);
    // Spread over two intervals of a call's share of the window.
    let frees_at = |share: f64| {
        let spread = LIMIT_WINDOW
            .mul_f64(share.clamp(0.0, 1.0) * 2.0)
            .min(MAX_SPREAD);
        oldest_leaves + chrono::Duration::from_std(spread.mul_f64(jitter)).unwrap_or_default()
    };
    if limits.requests_per_minute > 0 && usage.started >= i64::from(limits.requests_per_minute) {
        return throttle(
            format!(
                "{}: {rpm} calls in the last minute (requests_per_minute {rpm})",
                scope.name,
                rpm = limits.requests_per_minute
            ),
            frees_at(1.0 / f64::from(limits.requests_per_minute)),
        );
    }
    // A call larger than the whole budget still runs, alone in its window.
    if limits.tokens_per_minute > 0
        && usage.tokens > 0
        && usage.tokens + estimated_tokens > limits.tokens_per_minute
    {
        return throttle(
            format!(
                "{}: no room for about {estimated_tokens} more tokens in the last minute \
                 (tokens_per_minute {})",
                scope.name, limits.tokens_per_minute
            ),
            frees_at(estimated_tokens as f64 / limits.tokens_per_minute as f64),
        );
    }
    None
}

/// Tokens a response reports using.
pub trait Metered {
    fn tokens(&self) -> i64;
    /// Input and output tokens.
    fn usage(&self) -> (u64, u64);
}

impl Metered for ChatResponse {
    fn tokens(&self) -> i64 {
        (self.usage.input_tokens + self.usage.output_tokens) as i64
    }

    fn usage(&self) -> (u64, u64) {
        (self.usage.input_tokens, self.usage.output_tokens)
    }
}

impl Metered for EmbedResponse {
    fn tokens(&self) -> i64 {
        (self.usage.input_tokens + self.usage.output_tokens) as i64
    }

    fn usage(&self) -> (u64, u64) {
        (self.usage.input_tokens, self.usage.output_tokens)
    }
}

/// Whether a call may start.
pub enum Admission {
    /// Start it; settle the permit when it ends.
    Go(Permit),
    Throttled(Throttle),
}

/// Admits, settles and backs off model calls for one replica.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
}

struct Inner {
    store: DynStore,
    /// Backoffs this replica saw on backends without limits, by scope.
    local_backoffs: Mutex<HashMap<String, (DateTime<Utc>, String)>>,
    /// Called whenever a counted call settles (wakes this replica's runner).
    on_settle: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// An admitted call. Settle it with [`Limiter::settle`]; dropped unsettled
/// (the call was cancelled), it settles with its estimate in the background.
pub struct Permit {
    counted: Option<Counted>,
}

struct Counted {
    limiter: Limiter,
    call_id: String,
    estimated_tokens: i64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(counted) = self.counted.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let tokens = counted.estimated_tokens;
                let limiter = counted.limiter.clone();
                limiter.settle_counted(counted, tokens).await;
            });
        }
    }
}

impl Limiter {
    pub fn new(store: DynStore) -> Limiter {
        Limiter {
            inner: Arc::new(Inner {
                store,
                local_backoffs: Mutex::new(HashMap::new()),
                on_settle: OnceLock::new(),
            }),
        }
    }

    /// Sets what runs when a counted call settles (only the first call
    /// counts).
    pub fn on_settle(&self, wake: impl Fn() + Send + Sync + 'static) {
        let _ = self.inner.on_settle.set(Box::new(wake));
    }

    /// Asks whether a call of `model` on `backend` may start now.
    pub async fn admit(
        &self,
        backend: &BackendRecord,
        model: &str,
        estimated_tokens: i64,
    ) -> Result<Admission, StoreError> {
        let now = Utc::now();
        if let Some(throttle) = self.local_backoff(backend, model, now) {
            return Ok(Admission::Throttled(throttle));
        }
        let scopes = scopes(backend, model);
        if scopes.is_empty() {
            return Ok(Admission::Go(Permit { counted: None }));
        }
        let timeout = match backend.request_timeout_ms {
            ms if ms > 0 => Duration::from_millis(ms as u64),
            _ => DEFAULT_HOLD,
        };
        let hold_until = now + chrono::Duration::from_std(timeout + HOLD_SLACK).unwrap_or_default();
        let call_id = uuid::Uuid::now_v7().to_string();
        let jitter: f64 = rand::random();
        let judge = move |scope: &LimitScope, usage: &ScopeUsage| {
            judge(scope, usage, estimated_tokens, now, jitter)
        };
        let call = NewCall {
            call_id: &call_id,
            scopes: &scopes,
            estimated_tokens,
            now,
            hold_until,
        };
        Ok(match self.inner.store.admit(&call, &judge).await? {
            AdmitOutcome::Admitted => Admission::Go(Permit {
                counted: Some(Counted {
                    limiter: self.clone(),
                    call_id,
                    estimated_tokens,
                }),
            }),
            AdmitOutcome::Throttled(throttle) => Admission::Throttled(throttle),
        })
    }

    /// Ends an admitted call with the tokens it used (`None` or 0: the
    /// provider did not say, so the estimate stands).
    pub async fn settle(&self, mut permit: Permit, tokens: Option<i64>) {
        if let Some(counted) = permit.counted.take() {
            let tokens = tokens
                .filter(|tokens| *tokens > 0)
                .unwrap_or(counted.estimated_tokens);
            self.settle_counted(counted, tokens).await;
        }
    }

    async fn settle_counted(&self, counted: Counted, tokens: i64) {
        // A lost settlement only holds capacity until the hold passes.
        if let Err(error) = self
            .inner
            .store
            .settle(&counted.call_id, tokens, Utc::now())
            .await
        {
            tracing::warn!(error = %error, "cannot settle a limited model call");
        }
        if let Some(wake) = self.inner.on_settle.get() {
            wake();
        }
    }

    /// Backs `model` on `backend` off for `wait` (capped at
    /// [`MAX_BACKOFF`]) because the provider asked; returns the throttle
    /// the backoff means for calls until then.
    pub async fn back_off(
        &self,
        backend: &BackendRecord,
        model: &str,
        wait: Duration,
        reason: &str,
    ) -> Throttle {
        let until =
            Utc::now() + chrono::Duration::from_std(wait.min(MAX_BACKOFF)).unwrap_or_default();
        let scope = model_scope(backend, model);
        let name = format!("model {model:?} on backend {:?}", backend.name);
        if scopes(backend, model).is_empty() {
            self.inner
                .local_backoffs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(scope.clone(), (until, reason.to_string()));
        } else if let Err(error) = self.inner.store.back_off(&scope, until, reason).await {
            tracing::warn!(error = %error, "cannot record a provider's backoff");
        }
        Throttle {
            scope,
            limit: format!(
                "{name}: backed off until {} ({reason})",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            retry_at: until,
        }
    }

    fn local_backoff(
        &self,
        backend: &BackendRecord,
        model: &str,
        now: DateTime<Utc>,
    ) -> Option<Throttle> {
        let mut backoffs = self
            .inner
            .local_backoffs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if backoffs.is_empty() {
            return None;
        }
        backoffs.retain(|_, (until, _)| *until > now);
        let scope = model_scope(backend, model);
        let (until, reason) = backoffs.get(&scope)?;
        Some(Throttle {
            limit: format!(
                "model {model:?} on backend {:?}: backed off until {} ({reason})",
                backend.name,
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            scope,
            retry_at: *until,
        })
    }
}
