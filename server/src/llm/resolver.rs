//! Which backend and model serve a task: the task's model preference order
//! is honoured (contenox picks at random), candidates are filtered by the
//! pool, capability and context length, a policy orders the backends that
//! serve one model, and a retryable provider error fails over to the next
//! candidate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use super::limits::{self, Admission, Limiter, Metered};
use super::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Provider, ProviderError, selection,
};
use crate::chain::ModelPreference;
use crate::outbound::HttpClient;
use crate::store::{BackendRecord, DynStore, ModelRecord, PageQuery, StoreError, Throttle};

/// What a call needs from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Chat,
    Embed,
}

impl Capability {
    pub(super) fn name(self) -> &'static str {
        match self {
            Capability::Chat => "chat",
            Capability::Embed => "embed",
        }
    }
}

/// How backends serving the same model are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SelectionPolicy {
    #[default]
    RoundRobin,
    LeastLoaded,
    Random,
    Priority,
}

impl SelectionPolicy {
    pub fn parse(name: &str) -> Option<SelectionPolicy> {
        Some(match name {
            "round_robin" => SelectionPolicy::RoundRobin,
            "least_loaded" => SelectionPolicy::LeastLoaded,
            "random" => SelectionPolicy::Random,
            "priority" => SelectionPolicy::Priority,
            _ => return None,
        })
    }
}

/// One way to serve a call.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub backend: BackendRecord,
    pub model: String,
}

/// A served call: which backend and model answered.
#[derive(Debug, Clone)]
pub struct Served<T> {
    pub response: T,
    pub backend_id: String,
    pub model: String,
}

/// Why no call succeeded.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No backend/model combination can serve the call; `retryable` when
    /// what refused may change by itself (a backend recovers, a model is
    /// pulled), not when a model lacks the capability or the context.
    #[error("{message}")]
    NoCandidate { message: String, retryable: bool },
    /// Every candidate failed; the last error.
    #[error("{0}")]
    Provider(ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every candidate is held by a call limit (docs/limits.md); the
    /// earliest retry time and the limit that set it.
    #[error("throttled: {} (retry at {})", .0.limit, .0.retry_at.to_rfc3339())]
    Throttled(Throttle),
}

impl ResolveError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ResolveError::NoCandidate { retryable, .. } => *retryable,
            ResolveError::Provider(error) => error.is_retryable(),
            ResolveError::Store(_) => true,
            ResolveError::Throttled(_) => true,
        }
    }
}

/// When a call whose limits could not be checked (the store failed) is
/// tried again.
const STORE_FAULT_RECHECK: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// Default per-call timeout when a backend sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Resolver {
    store: DynStore,
    client: HttpClient,
    /// The selection policy of pools that set none.
    policy: SelectionPolicy,
    /// Whether every pool may use models its backends report undeclared.
    discover_models: bool,
    rotation: Mutex<HashMap<String, usize>>,
    in_flight: Mutex<HashMap<String, usize>>,
    limiter: Limiter,
}

/// Counts a call in flight on a backend for `least_loaded`.
struct InFlight<'a> {
    resolver: &'a Resolver,
    backend_id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .resolver
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.backend_id) {
            *count = count.saturating_sub(1);
        }
    }
}

impl Resolver {
    pub fn new(
        store: DynStore,
        client: HttpClient,
        policy: SelectionPolicy,
        discover_models: bool,
    ) -> Resolver {
        Resolver {
            limiter: Limiter::new(store.clone()),
            store,
            client,
            policy,
            discover_models,
            rotation: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The global call limits this resolver admits calls through.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    async fn all<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, StoreError>
    where
        F: FnMut(PageQuery) -> Fut,
        Fut: std::future::Future<Output = Result<crate::store::Page<T>, StoreError>>,
    {
        let mut items = Vec::new();
        let mut after = None;
        loop {
            let page = fetch(PageQuery { limit: 1000, after }).await?;
            items.extend(page.items);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// Candidates in the order they will be tried: the models of
    /// [`selection::choose`] in order, each model's backends ordered by the
    /// pool's selection policy (else the server's).
    pub async fn candidates(
        &self,
        preference: &ModelPreference,
        capability: Capability,
        default_pool: &str,
        prompt_chars: usize,
    ) -> Result<Vec<Candidate>, ResolveError> {
        let pool_id = preference.pool.as_deref().unwrap_or(default_pool);
        let store = &self.store;
        let pool = store.get_pool(pool_id).await.map_err(|error| match error {
            StoreError::NotFound { .. } => ResolveError::NoCandidate {
                message: format!("pool {pool_id:?} does not exist"),
                retryable: false,
            },
            other => other.into(),
        })?;
        let mut backends = Self::all(|page| store.list_pool_backends(pool_id, page)).await?;
        if !preference.providers.is_empty() {
            backends.retain(|b| preference.providers.contains(&b.backend_type));
            backends.sort_by_key(|b| {
                preference
                    .providers
                    .iter()
                    .position(|p| p == &b.backend_type)
            });
        }
        let mut declared: Vec<ModelRecord> =
            Self::all(|page| store.list_pool_models(pool_id, page)).await?;
        if declared.is_empty() {
            // A pool without its own models offers every declared model.
            declared = Self::all(|page| store.list_models(page)).await?;
        } else {
            // A model the task names is known by its declaration even when
            // the pool does not list it.
            for name in &preference.models {
                if declared.iter().any(|m| &m.name == name) {
                    continue;
                }
                match store.get_model(name).await {
                    Ok(record) => declared.push(record),
                    Err(StoreError::NotFound { .. }) => {}
                    Err(other) => return Err(other.into()),
                }
            }
        }
        let inputs = selection::Inputs {
            pool: pool_id,
            backends: &backends,
            preferred: &preference.models,
            declared: &declared,
            discover: self.discover_models || pool.discover_models,
            capability,
            prompt_tokens: prompt_chars / 4,
        };
        let choices = selection::choose(&inputs).map_err(|refusal| ResolveError::NoCandidate {
            message: refusal.message,
            retryable: refusal.may_change,
        })?;
        let policy = SelectionPolicy::parse(&pool.policy).unwrap_or(self.policy);
        let mut candidates = Vec::new();
        for choice in choices {
            let mut serving = choice.backends;
            self.order(policy, &mut serving, &format!("{pool_id}/{}", choice.model));
            candidates.extend(serving.into_iter().map(|backend| Candidate {
                backend,
                model: choice.model.clone(),
            }));
        }
        Ok(candidates)
    }

    fn order(&self, policy: SelectionPolicy, backends: &mut [BackendRecord], key: &str) {
        if backends.len() < 2 {
            return;
        }
        match policy {
            SelectionPolicy::RoundRobin => {
                backends.sort_by(|a, b| a.name.cmp(&b.name));
                let mut rotation = self
                    .rotation
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let next = rotation.entry(key.to_string()).or_default();
                let start = *next % backends.len();
                *next = next.wrapping_add(1);
                backends.rotate_left(start);
            }
            SelectionPolicy::LeastLoaded => {
                let counts = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                backends.sort_by_key(|b| (counts.get(&b.id).copied().unwrap_or(0), b.name.clone()));
            }
            SelectionPolicy::Random => {
                use rand::seq::SliceRandom;
                backends.shuffle(&mut rand::rng());
            }
            SelectionPolicy::Priority => {
                backends.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
            }
        }
    }

    /// A client for one backend.
    pub fn provider(&self, backend: &BackendRecord) -> Result<Box<dyn Provider>, ProviderError> {
        let timeout = if backend.request_timeout_ms > 0 {
            Duration::from_millis(backend.request_timeout_ms as u64)
        } else {
            DEFAULT_TIMEOUT
        };
        super::provider_with_options(
            &backend.backend_type,
            &backend.base_url,
            backend.api_key.as_deref(),
            timeout,
            self.client.clone(),
            super::ProviderOptions {
                omit_stream_options: backend.omit_stream_options,
            },
        )
    }

    fn track(&self, backend_id: &str) -> InFlight<'_> {
        *self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(backend_id.to_string())
            .or_default() += 1;
        InFlight {
            resolver: self,
            backend_id: backend_id.to_string(),
        }
    }

    /// Runs a chat call on the first candidate that answers, failing over on
    /// retryable errors. `request.model` is set per candidate.
    pub async fn chat(
        &self,
        candidates: &[Candidate],
        request: &ChatRequest,
        deltas: Option<mpsc::Sender<String>>,
    ) -> Result<Served<ChatResponse>, ResolveError> {
        let prompt_chars = request.messages.iter().map(|m| m.content.len()).sum();
        let estimate = limits::estimate_tokens(prompt_chars, request.max_tokens);
        self.failover(candidates, estimate, |provider, candidate| {
            let mut request = request.clone();
            request.model = candidate.model.clone();
            let deltas = deltas.clone();
            async move { provider.chat(&request, deltas).await }
        })
        .await
    }

    /// Embeds on the first candidate that answers, failing over on retryable
    /// errors.
    pub async fn embed(
        &self,
        candidates: &[Candidate],
        input: &str,
    ) -> Result<Served<EmbedResponse>, ResolveError> {
        let estimate = limits::estimate_tokens(input.len(), Some(0));
        self.failover(candidates, estimate, |provider, candidate| {
            let request = EmbedRequest {
                model: candidate.model.clone(),
                input: input.to_string(),
            };
            async move { provider.embed(&request).await }
        })
        .await
    }

    /// Makes `call` on each candidate's provider in turn until one answers
    /// or fails for good; a retryable failure, or a model the backend does
    /// not serve, moves on to the next. A candidate held by a call limit
    /// (docs/limits.md) is skipped; a provider that answers 429/503 with
    /// `Retry-After` is backed off for that long and skipped too. When no
    /// candidate answered and one was held, the call is
    /// [`ResolveError::Throttled`] until the earliest of their retry times.
    async fn failover<T, Call>(
        &self,
        candidates: &[Candidate],
        estimated_tokens: i64,
        call: impl Fn(Box<dyn Provider>, &Candidate) -> Call,
    ) -> Result<Served<T>, ResolveError>
    where
        T: Metered,
        Call: Future<Output = Result<T, ProviderError>>,
    {
        let mut last = None;
        let mut held: Option<Throttle> = None;
        let mut hold = |throttle: Throttle| {
            if held.as_ref().is_none_or(|h| throttle.retry_at < h.retry_at) {
                held = Some(throttle);
            }
        };
        for candidate in candidates {
            let provider = match self.provider(&candidate.backend) {
                Ok(provider) => provider,
                Err(error) => {
                    last = Some(error);
                    continue;
                }
            };
            let admission = match self
                .limiter
                .admit(&candidate.backend, &candidate.model, estimated_tokens)
                .await
            {
                // The limits cannot be checked while the store fails: the
                // call waits like a throttled one instead of failing.
                Err(error) if error.is_fault() => Admission::Throttled(Throttle {
                    scope: candidate.backend.id.clone(),
                    limit: format!("the call limits cannot be checked now: {error}"),
                    retry_at: chrono::Utc::now() + STORE_FAULT_RECHECK,
                }),
                other => other?,
            };
            let permit = match admission {
                Admission::Go(permit) => permit,
                Admission::Throttled(throttle) => {
                    crate::metrics::throttled(crate::metrics::limit_reason(&throttle.limit));
                    tracing::debug!(backend = %candidate.backend.name, model = %candidate.model, limit = %throttle.limit, "call limit holds this candidate; trying the next");
                    hold(throttle);
                    continue;
                }
            };
            let _in_flight = self.track(&candidate.backend.id);
            let started = std::time::Instant::now();
            let result = call(provider, candidate).await;
            crate::metrics::provider_call(
                &candidate.backend.name,
                &candidate.model,
                started.elapsed(),
                result
                    .as_ref()
                    .map(Metered::usage)
                    .map_err(|error| error.status),
            );
            let tokens = result.as_ref().ok().map(Metered::tokens);
            self.limiter.settle(permit, tokens).await;
            match result {
                Ok(response) => {
                    return Ok(Served {
                        response,
                        backend_id: candidate.backend.id.clone(),
                        model: candidate.model.clone(),
                    });
                }
                Err(ProviderError {
                    status: Some(status @ (429 | 503)),
                    retry_after: Some(wait),
                    ..
                }) => {
                    crate::metrics::throttled("retry_after");
                    let reason = format!("HTTP {status} with Retry-After {}s", wait.as_secs());
                    tracing::info!(backend = %candidate.backend.name, model = %candidate.model, %reason, "provider asked to wait; backing off");
                    let throttle = self
                        .limiter
                        .back_off(&candidate.backend, &candidate.model, wait, &reason)
                        .await;
                    hold(throttle);
                }
                Err(error) if error.is_retryable() || error.is_model_not_served() => {
                    tracing::warn!(backend = %candidate.backend.name, model = %candidate.model, error = %error, "model call failed; trying the next candidate");
                    last = Some(error);
                }
                Err(error) => return Err(ResolveError::Provider(error)),
            }
        }
        if let Some(throttle) = held {
            return Err(ResolveError::Throttled(throttle));
        }
        Err(ResolveError::Provider(last.unwrap_or_else(|| {
            ProviderError::retryable("no candidate was tried")
        })))
    }
}
