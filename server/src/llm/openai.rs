//! The OpenAI API and the servers that copy it (vLLM, llama.cpp, LM Studio,
//! OpenRouter, Mistral): `/v1/chat/completions` (SSE when streaming),
//! `/v1/embeddings`, `/v1/models`.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Auth, Endpoint, Settings, SseEvents};
use super::{
    Bounded, ChatCall, ChatMessage, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse,
    ObservedModel, ProviderError, TokenUsage, Wire, usage,
};

/// OpenAI itself has replaced `max_tokens` with `max_completion_tokens` (its
/// reasoning models reject the former); compatible servers know only
/// `max_tokens`. The presets are compatible servers with a known default
/// base URL and their own conventions (see [`Dialect::conventions`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Compatible,
    OpenRouter,
    Mistral,
    Vllm,
    LmStudio,
}

impl Dialect {
    /// The backend type's name and the base URL used when none is set.
    fn name_and_default_base(self) -> (&'static str, Option<&'static str>) {
        match self {
            Dialect::OpenAi => ("openai", Some("https://api.openai.com")),
            Dialect::Compatible => ("openai_compatible", None),
            Dialect::OpenRouter => ("openrouter", Some("https://openrouter.ai/api")),
            Dialect::Mistral => ("mistral", Some("https://api.mistral.ai")),
            Dialect::Vllm => ("vllm", Some("http://127.0.0.1:8000")),
            Dialect::LmStudio => ("lm_studio", Some("http://127.0.0.1:1234")),
        }
    }

    /// What the dialect's servers expect beyond the OpenAI wire. Every one
    /// takes its key (when it has one: vLLM's is optional, LM Studio has
    /// none) as a bearer token.
    fn conventions(self) -> Conventions {
        match self {
            // OpenRouter's optional attribution headers name the calling
            // app: `X-Title` says Taskloom; `HTTP-Referer` would need a URL
            // of the deployment, which Taskloom does not know.
            Dialect::OpenRouter => Conventions {
                headers: &[("x-title", "Taskloom")],
                stream_options: true,
            },
            // Mistral rejects fields it does not know (422 "Extra inputs
            // are not permitted", `stream_options` among them) and reports
            // usage at the end of every stream unasked.
            Dialect::Mistral => Conventions {
                headers: &[],
                stream_options: false,
            },
            Dialect::OpenAi | Dialect::Compatible | Dialect::Vllm | Dialect::LmStudio => {
                Conventions {
                    headers: &[],
                    stream_options: true,
                }
            }
        }
    }
}

struct Conventions {
    /// Sent with every request.
    headers: &'static [(&'static str, &'static str)],
    /// Whether streamed calls ask for usage with
    /// `stream_options.include_usage`.
    stream_options: bool,
}

pub(crate) struct OpenAi {
    dialect: Dialect,
    /// Streamed calls ask for usage with `stream_options`.
    stream_options: bool,
}

impl OpenAi {
    pub fn new(settings: Settings<'_>, dialect: Dialect) -> Result<Bounded<Self>, ProviderError> {
        let (name, default_base) = dialect.name_and_default_base();
        let conventions = dialect.conventions();
        let stream_options = conventions.stream_options && !settings.options.omit_stream_options;
        let mut http = Endpoint::new(name, settings, default_base, "/v1", Auth::Bearer)?;
        for (header, value) in conventions.headers {
            http = http.with_header(header, value);
        }
        Ok(Bounded::new(
            http,
            OpenAi {
                dialect,
                stream_options,
            },
        ))
    }
}

#[async_trait]
impl Wire for OpenAi {
    async fn chat(&self, call: ChatCall<'_>) -> Result<ChatResponse, ProviderError> {
        let (http, request, mut transcript) = (call.http, call.request, call.transcript);
        let stream = transcript.streams();
        let (max_tokens, max_completion_tokens) = match self.dialect {
            Dialect::OpenAi => (None, request.max_tokens),
            _ => (request.max_tokens, None),
        };
        let body = ChatBody {
            model: &request.model,
            messages: &request.messages,
            temperature: request.temperature,
            max_tokens,
            max_completion_tokens,
            stream,
            // Without this most servers' streams carry no token counts.
            stream_options: (stream && self.stream_options).then_some(StreamOptions {
                include_usage: true,
            }),
        };
        let builder = http
            .request(Method::POST, "/v1/chat/completions")
            .json(&body);
        if !stream {
            let reply: Completion = http.send_json(builder).await?;
            if let Some(error) = reply.error {
                return Err(http.reported_error(error));
            }
            let choice = reply
                .choices
                .into_iter()
                .next()
                .ok_or_else(|| http.malformed("no choices in the answer"))?;
            let content = choice
                .message
                .and_then(|message| message.content)
                .unwrap_or_default();
            let usage = usage_or_count(http, request, reply.usage, &content).await;
            return Ok(ChatResponse {
                content,
                model: reply.model.unwrap_or_else(|| request.model.clone()),
                usage,
                finish_reason: choice.finish_reason,
            });
        }

        let mut events = SseEvents::new(http, http.send(builder).await?);
        let mut model = None;
        let mut usage = None;
        let mut finish_reason = None;
        while let Some(data) = events.next_data().await? {
            if data.trim() == "[DONE]" {
                let content = transcript.into_content();
                let usage = usage_or_count(http, request, usage, &content).await;
                return Ok(ChatResponse {
                    content,
                    model: model.unwrap_or_else(|| request.model.clone()),
                    usage,
                    finish_reason,
                });
            }
            let chunk: Completion = http.parse(&data)?;
            if let Some(error) = chunk.error {
                return Err(http.reported_error(error));
            }
            model = chunk.model.or(model);
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
            for choice in chunk.choices {
                finish_reason = choice.finish_reason.or(finish_reason);
                if let Some(text) = choice.delta.and_then(|delta| delta.content) {
                    transcript.push(&text).await;
                }
            }
        }
        Err(http.truncated())
    }

    async fn embed(
        &self,
        http: &Endpoint,
        request: &EmbedRequest,
    ) -> Result<EmbedResponse, ProviderError> {
        http.embed_input("/v1/embeddings", request, |reply: EmbeddingList| {
            let vector = reply.data.into_iter().next().map(|item| item.embedding);
            let usage = reply.usage.map(Usage::tokens).unwrap_or_default();
            (vector, reply.model, usage)
        })
        .await
    }

    async fn list_models(&self, http: &Endpoint) -> Result<Vec<ObservedModel>, ProviderError> {
        let reply: ModelList = http
            .send_json(http.request(Method::GET, "/v1/models"))
            .await?;
        Ok(reply.data.into_iter().map(ModelEntry::observed).collect())
    }
}

/// The usage the server reported, else counted (see [`usage::count`]).
async fn usage_or_count(
    http: &Endpoint,
    request: &ChatRequest,
    reported: Option<Usage>,
    answer: &str,
) -> TokenUsage {
    match reported {
        // An all-zero count is no count (no prompt has zero tokens).
        Some(reported) if reported.prompt_tokens + reported.completion_tokens > 0 => {
            reported.tokens()
        }
        _ => usage::count(http, &request.model, &request.messages, answer).await,
    }
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// A whole completion or one streamed chunk (the usage chunk has no
/// choices). Some servers (OpenRouter) report failures mid-stream as
/// `{"error": …}`.
#[derive(Deserialize)]
struct Completion {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<Text>,
    delta: Option<Text>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Text {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl Usage {
    fn tokens(self) -> TokenUsage {
        TokenUsage {
            input_tokens: self.prompt_tokens,
            output_tokens: self.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
struct EmbeddingList {
    #[serde(default)]
    data: Vec<Embedding>,
    model: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Embedding {
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ModelList {
    #[serde(default)]
    data: Vec<ModelEntry>,
}

/// One listed model. Plain OpenAI gives names only; the compatible servers
/// add details, each under its own name (read when present, whatever the
/// preset, since a compatible server may be any of them).
#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    #[serde(flatten)]
    details: serde_json::Map<String, Value>,
}

impl ModelEntry {
    fn observed(self) -> ObservedModel {
        let details = &self.details;
        // vLLM: `max_model_len`; OpenRouter: `context_length`; Mistral and
        // LM Studio: `max_context_length`.
        let context_length = ["max_model_len", "context_length", "max_context_length"]
            .iter()
            .find_map(|key| details.get(*key).and_then(Value::as_i64))
            .map_or(0, |length| length.clamp(0, i64::from(i32::MAX)) as i32);
        let chat = || vec!["chat".to_string(), "prompt".to_string()];
        // Mistral: `capabilities.completion_chat`; LM Studio: `type`.
        let capabilities = match (
            details
                .get("capabilities")
                .and_then(|capabilities| capabilities.get("completion_chat"))
                .and_then(Value::as_bool),
            details.get("type").and_then(Value::as_str),
        ) {
            (Some(true), _) | (None, Some("llm" | "vlm")) => chat(),
            (None, Some("embeddings")) => vec!["embed".to_string()],
            _ => vec![],
        };
        ObservedModel {
            name: self.id,
            context_length,
            capabilities,
            size_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_their_default_base_urls() {
        let cases = [
            (Dialect::OpenAi, "openai", Some("https://api.openai.com")),
            (Dialect::Compatible, "openai_compatible", None),
            (
                Dialect::OpenRouter,
                "openrouter",
                Some("https://openrouter.ai/api"),
            ),
            (Dialect::Mistral, "mistral", Some("https://api.mistral.ai")),
            (Dialect::Vllm, "vllm", Some("http://127.0.0.1:8000")),
            (
                Dialect::LmStudio,
                "lm_studio",
                Some("http://127.0.0.1:1234"),
            ),
        ];
        for (dialect, name, base) in cases {
            assert_eq!(dialect.name_and_default_base(), (name, base));
        }
    }

    #[test]
    fn presets_follow_their_servers_conventions() {
        let openrouter = Dialect::OpenRouter.conventions();
        assert_eq!(openrouter.headers, &[("x-title", "Taskloom")]);
        assert!(openrouter.stream_options);
        // Mistral refuses unknown fields and reports stream usage unasked.
        assert!(!Dialect::Mistral.conventions().stream_options);
        for dialect in [
            Dialect::OpenAi,
            Dialect::Compatible,
            Dialect::Vllm,
            Dialect::LmStudio,
        ] {
            let conventions = dialect.conventions();
            assert!(conventions.headers.is_empty());
            assert!(conventions.stream_options);
        }
    }
}
