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
use super::{ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Provider, ProviderError};
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
    fn name(self) -> &'static str {
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
    /// No backend/model combination can serve the call.
    #[error("{0}")]
    NoCandidate(String),
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
            ResolveError::NoCandidate(_) => true,
            ResolveError::Provider(error) => error.is_retryable(),
            ResolveError::Store(_) => true,
            ResolveError::Throttled(_) => true,
        }
    }
}

/// Default per-call timeout when a backend sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Resolver {
    store: DynStore,
    client: HttpClient,
    policy: SelectionPolicy,
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
    pub fn new(store: DynStore, client: HttpClient, policy: SelectionPolicy) -> Resolver {
        Resolver {
            limiter: Limiter::new(store.clone()),
            store,
            client,
            policy,
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

    /// Candidates in the order they will be tried.
    pub async fn candidates(
        &self,
        preference: &ModelPreference,
        capability: Capability,
        default_pool: &str,
        prompt_chars: usize,
    ) -> Result<Vec<Candidate>, ResolveError> {
        let pool = preference.pool.as_deref().unwrap_or(default_pool);
        let store = &self.store;
        let mut backends = Self::all(|page| store.list_pool_backends(pool, page))
            .await
            .map_err(|error| match error {
                StoreError::NotFound { .. } => {
                    ResolveError::NoCandidate(format!("pool {pool:?} does not exist"))
                }
                other => other.into(),
            })?;
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
            Self::all(|page| store.list_pool_models(pool, page)).await?;
        if declared.is_empty() && preference.models.is_empty() {
            // A pool without its own models offers every declared model.
            declared = Self::all(|page| store.list_models(page)).await?;
        }
        let models: Vec<String> = if preference.models.is_empty() {
            let mut names: Vec<String> = declared
                .iter()
                .filter(|m| m.capabilities.iter().any(|c| c == capability.name()))
                .map(|m| m.name.clone())
                .collect();
            // Backends that reported their models also serve undeclared ones.
            for backend in &backends {
                for model in &backend.state.models {
                    if !names.contains(model) && capability == Capability::Chat {
                        names.push(model.clone());
                    }
                }
            }
            names
        } else {
            preference.models.clone()
        };
        let estimated_tokens = prompt_chars / 4;
        let mut candidates = Vec::new();
        // Models refused because the prompt does not fit their context.
        let mut too_small = Vec::new();
        for model in &models {
            if let Some(record) = self.declared_model(&declared, model).await? {
                if !record.capabilities.iter().any(|c| c == capability.name()) {
                    continue;
                }
                if record.context_length > 0 && estimated_tokens > record.context_length as usize {
                    too_small.push(format!("{model:?} has {} tokens", record.context_length));
                    continue;
                }
            }
            let mut serving: Vec<BackendRecord> = backends
                .iter()
                .filter(|b| b.state.models.is_empty() || b.state.models.contains(model))
                .cloned()
                .collect();
            self.order(&mut serving, &format!("{pool}/{model}"));
            candidates.extend(serving.into_iter().map(|backend| Candidate {
                backend,
                model: model.clone(),
            }));
        }
        if candidates.is_empty() {
            if !too_small.is_empty() {
                return Err(ResolveError::NoCandidate(format!(
                    "the prompt needs about {estimated_tokens} tokens of context (4 characters a token); {}",
                    too_small.join(", ")
                )));
            }
            return Err(ResolveError::NoCandidate(format!(
                "no backend in pool {pool:?} serves {} with the {} capability{}",
                if models.is_empty() {
                    "any declared model".to_string()
                } else {
                    format!("any of {models:?}")
                },
                capability.name(),
                if backends.is_empty() {
                    " (the pool has no backends)"
                } else {
                    ""
                }
            )));
        }
        Ok(candidates)
    }

    /// The declared record of a model named by the task, from the pool or
    /// the global declarations.
    async fn declared_model(
        &self,
        pool_models: &[ModelRecord],
        name: &str,
    ) -> Result<Option<ModelRecord>, StoreError> {
        if let Some(record) = pool_models.iter().find(|m| m.name == name) {
            return Ok(Some(record.clone()));
        }
        match self.store.get_model(name).await {
            Ok(record) => Ok(Some(record)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    fn order(&self, backends: &mut [BackendRecord], key: &str) {
        if backends.len() < 2 {
            return;
        }
        match self.policy {
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
        super::provider_for(
            &backend.backend_type,
            &backend.base_url,
            backend.api_key.as_deref(),
            timeout,
            self.client.clone(),
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
            let permit = match self
                .limiter
                .admit(&candidate.backend, &candidate.model, estimated_tokens)
                .await?
            {
                Admission::Go(permit) => permit,
                Admission::Throttled(throttle) => {
                    tracing::debug!(backend = %candidate.backend.name, model = %candidate.model, limit = %throttle.limit, "call limit holds this candidate; trying the next");
                    hold(throttle);
                    continue;
                }
            };
            let _in_flight = self.track(&candidate.backend.id);
            let result = call(provider, candidate).await;
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
