//! LLM provider clients: one provider-neutral request/response model and a
//! [`Provider`] trait, implemented for Ollama, OpenAI and OpenAI-compatible
//! servers (vLLM, llama.cpp, LM Studio, OpenRouter, Mistral), Gemini and
//! Anthropic over one shared [`HttpClient`].
//!
//! Every call is bounded by the timeout given at construction and runs
//! entirely inside the returned future: dropping the future aborts the HTTP
//! request, which is how task timeouts and cancellations stop model calls.
//! Errors say whether a retry (or another backend) may help, and never carry
//! the API key.

mod anthropic;
mod gemini;
mod http;
pub mod limits;
mod ollama;
mod openai;
pub mod resolver;
mod selection;
mod usage;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::outbound::{HttpClient, OutboundPolicy};
pub use crate::store::ObservedModel;

/// Who said a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The lower-case wire name (`system`, `user`, `assistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub content: String,
    /// The model that answered, as the provider reports it (the requested
    /// model when the provider does not say).
    pub model: String,
    pub usage: TokenUsage,
    /// The provider's own stop reason (`stop`, `end_turn`, `STOP`, …).
    pub finish_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub model: String,
    pub input: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedResponse {
    pub vector: Vec<f32>,
    pub model: String,
    pub usage: TokenUsage,
}

/// One progress report of a model download, as the provider words it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub status: String,
    pub completed_bytes: i64,
    /// 0 while unknown.
    pub total_bytes: i64,
}

/// Whether a failed call may succeed if tried again (possibly elsewhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connection failures, timeouts, 408/409/429/5xx, truncated streams,
    /// errors reported inside an accepted stream.
    Retryable,
    /// Other 4xx, malformed answers, unsupported operations, bad
    /// configuration: the same call will fail the same way.
    Fatal,
    /// The caller gave up on the call (see [`cancellable`]).
    Cancelled,
}

/// A failed provider call. The message names the provider and never contains
/// the API key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub message: String,
    /// The HTTP status, when the provider answered with an error status.
    pub status: Option<u16>,
    /// How long the provider asked to be left alone (`Retry-After` on a 429
    /// or 503).
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, message)
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }

    /// An error for an HTTP error status, classified by the status.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        let kind = if is_retryable_status(status) {
            ErrorKind::Retryable
        } else {
            ErrorKind::Fatal
        };
        ProviderError {
            status: Some(status),
            ..Self::new(kind, message)
        }
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The provider does not serve the model it was asked for (HTTP 404,
    /// as Ollama, OpenAI, Gemini and Anthropic answer an unknown model):
    /// another candidate may, though the same call will not succeed here.
    pub fn is_model_not_served(&self) -> bool {
        self.status == Some(404)
    }
}

/// Statuses worth retrying: request timeout, conflict, rate limit, server
/// errors (Anthropic's 529 "overloaded" included).
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 429 | 500..=599)
}

/// A model provider. Every call is bounded by the provider's timeout;
/// dropping the returned future cancels the HTTP request.
#[async_trait]
pub trait Provider: Send + Sync {
    /// One chat completion. With `deltas`, the provider's streaming mode is
    /// used and each text delta is sent as it arrives (a closed receiver is
    /// ignored); the full response with usage is returned either way.
    async fn chat(
        &self,
        request: &ChatRequest,
        deltas: Option<mpsc::Sender<String>>,
    ) -> Result<ChatResponse, ProviderError>;

    /// The embedding of one input.
    async fn embed(&self, request: &EmbedRequest) -> Result<EmbedResponse, ProviderError>;

    /// The models the backend serves, by names usable in requests, with
    /// what the provider says of them (context length, capabilities, size).
    async fn list_models(&self) -> Result<Vec<ObservedModel>, ProviderError>;

    /// Downloads a model onto the backend (Ollama), sending progress as it
    /// arrives. A download may take far longer than one call: the timeout
    /// bounds each wait for the next progress report instead. A model the
    /// provider's registry does not have fails with status 404.
    async fn pull_model(
        &self,
        model: &str,
        progress: mpsc::Sender<PullProgress>,
    ) -> Result<(), ProviderError>;
}

/// One chat call as a provider makes it: the endpoint it goes to, the
/// request, and the transcript its text goes into (streamed on to a
/// listener when the caller asked for deltas).
struct ChatCall<'a> {
    http: &'a http::Endpoint,
    request: &'a ChatRequest,
    transcript: http::Transcript,
}

/// One provider's calls on the wire, unbounded: [`Bounded`] makes them a
/// [`Provider`], so every provider gets the same deadline and the same
/// scrubbing of its key from errors.
#[async_trait]
trait Wire: Send + Sync {
    async fn chat(&self, call: ChatCall<'_>) -> Result<ChatResponse, ProviderError>;

    /// Embeddings, for providers that have them.
    async fn embed(
        &self,
        http: &http::Endpoint,
        _request: &EmbedRequest,
    ) -> Result<EmbedResponse, ProviderError> {
        Err(ProviderError::fatal(format!(
            "{}: embeddings are unsupported by this provider",
            http.provider
        )))
    }

    async fn list_models(&self, http: &http::Endpoint)
    -> Result<Vec<ObservedModel>, ProviderError>;

    /// Model downloads, for providers that have them.
    async fn pull_model(
        &self,
        http: &http::Endpoint,
        _model: &str,
        _progress: mpsc::Sender<PullProgress>,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::fatal(format!(
            "{}: model downloads are unsupported by this provider",
            http.provider
        )))
    }
}

/// A provider: its [`Wire`] calls on its endpoint, each bounded by the
/// endpoint's timeout.
struct Bounded<W> {
    http: http::Endpoint,
    wire: W,
}

impl<W> Bounded<W> {
    fn new(http: http::Endpoint, wire: W) -> Self {
        Bounded { http, wire }
    }
}

#[async_trait]
impl<W: Wire> Provider for Bounded<W> {
    async fn chat(
        &self,
        request: &ChatRequest,
        deltas: Option<mpsc::Sender<String>>,
    ) -> Result<ChatResponse, ProviderError> {
        let call = ChatCall {
            http: &self.http,
            request,
            transcript: http::Transcript::new(deltas),
        };
        self.http.bounded(self.wire.chat(call)).await
    }

    async fn embed(&self, request: &EmbedRequest) -> Result<EmbedResponse, ProviderError> {
        self.http
            .bounded(self.wire.embed(&self.http, request))
            .await
    }

    async fn list_models(&self) -> Result<Vec<ObservedModel>, ProviderError> {
        self.http.bounded(self.wire.list_models(&self.http)).await
    }

    async fn pull_model(
        &self,
        model: &str,
        progress: mpsc::Sender<PullProgress>,
    ) -> Result<(), ProviderError> {
        let result = self.wire.pull_model(&self.http, model, progress).await;
        self.http.scrubbed(result)
    }
}

/// The backend types [`provider_for`] accepts.
pub const BACKEND_TYPES: &[&str] = &[
    "ollama",
    "openai",
    "openai_compatible",
    "gemini",
    "anthropic",
    "openrouter",
    "mistral",
    "vllm",
    "lm_studio",
];

/// How a backend's server departs from its wire format's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProviderOptions {
    /// Never send `stream_options` (OpenAI wire): for servers that reject
    /// it. Usage of streamed answers is then counted another way.
    pub omit_stream_options: bool,
}

/// A client for one backend. An empty `base_url` means the provider's public
/// endpoint (or local Ollama); `openai_compatible` needs one. Base URLs work
/// with or without the API version suffix (`/v1`, `/v1beta`).
pub fn provider_for(
    backend_type: &str,
    base_url: &str,
    api_key: Option<&str>,
    timeout: Duration,
    client: HttpClient,
) -> Result<Box<dyn Provider>, ProviderError> {
    provider_with_options(
        backend_type,
        base_url,
        api_key,
        timeout,
        client,
        ProviderOptions::default(),
    )
}

/// [`provider_for`] with the backend's [`ProviderOptions`].
pub fn provider_with_options(
    backend_type: &str,
    base_url: &str,
    api_key: Option<&str>,
    timeout: Duration,
    client: HttpClient,
    options: ProviderOptions,
) -> Result<Box<dyn Provider>, ProviderError> {
    let settings = http::Settings {
        client,
        base_url,
        api_key,
        timeout,
        options,
    };
    Ok(match backend_type {
        "ollama" => Box::new(ollama::Ollama::new(settings)?),
        "openai" => Box::new(openai::OpenAi::new(settings, openai::Dialect::OpenAi)?),
        "openai_compatible" => {
            Box::new(openai::OpenAi::new(settings, openai::Dialect::Compatible)?)
        }
        "openrouter" => Box::new(openai::OpenAi::new(settings, openai::Dialect::OpenRouter)?),
        "mistral" => Box::new(openai::OpenAi::new(settings, openai::Dialect::Mistral)?),
        "vllm" => Box::new(openai::OpenAi::new(settings, openai::Dialect::Vllm)?),
        "lm_studio" => Box::new(openai::OpenAi::new(settings, openai::Dialect::LmStudio)?),
        "gemini" => Box::new(gemini::Gemini::new(settings)?),
        "anthropic" => Box::new(anthropic::Anthropic::new(settings)?),
        other => {
            return Err(ProviderError::fatal(format!(
                "unknown backend type {other:?} (expected one of {})",
                BACKEND_TYPES.join(", ")
            )));
        }
    })
}

/// An outbound client with the default policy, to share across providers.
/// Per-call deadlines come from each provider's timeout, not from here.
pub fn http_client() -> Result<HttpClient, ProviderError> {
    HttpClient::new(OutboundPolicy::default())
        .map_err(|error| ProviderError::fatal(format!("cannot build the HTTP client: {error}")))
}

/// Runs a provider call until it finishes or `cancel` resolves, whichever
/// comes first; on cancellation the call's future is dropped (aborting its
/// HTTP request) and a [`ErrorKind::Cancelled`] error is returned.
pub async fn cancellable<T>(
    call: impl Future<Output = Result<T, ProviderError>>,
    cancel: impl Future<Output = ()>,
) -> Result<T, ProviderError> {
    tokio::select! {
        biased;
        () = cancel => Err(ProviderError::cancelled("the model call was cancelled")),
        result = call => result,
    }
}
