//! Ollama's native API: `/api/chat` (NDJSON when streaming), `/api/embed`,
//! `/api/tags` with `/api/show` for each model's details, `/api/pull`.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::StreamExt as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::http::{Auth, Endpoint, Lines, Settings};
use super::{
    Bounded, ChatCall, ChatMessage, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse,
    ObservedModel, ProviderError, PullProgress, TokenUsage, Wire,
};

/// Models whose details one listing asks `/api/show` for; the others are
/// listed by name and size only (a hostile server cannot make a listing
/// cost thousands of calls).
const MAX_SHOWN: usize = 64;

/// `/api/show` calls in flight at once.
const SHOW_CONCURRENCY: usize = 4;

pub(crate) struct Ollama;

impl Ollama {
    pub fn new(settings: Settings<'_>) -> Result<Bounded<Self>, ProviderError> {
        // Ollama has no keys of its own; a key is sent as a bearer token for
        // servers behind an authenticating proxy.
        let http = Endpoint::new(
            "ollama",
            settings,
            Some("http://127.0.0.1:11434"),
            "/api",
            Auth::Bearer,
        )?;
        Ok(Bounded::new(http, Ollama))
    }
}

#[async_trait]
impl Wire for Ollama {
    async fn chat(&self, call: ChatCall<'_>) -> Result<ChatResponse, ProviderError> {
        let (http, request, mut transcript) = (call.http, call.request, call.transcript);
        let stream = transcript.streams();
        let body = ChatBody {
            model: &request.model,
            messages: &request.messages,
            stream,
            options: Options {
                temperature: request.temperature,
                num_predict: request.max_tokens,
            },
        };
        let builder = http.request(Method::POST, "/api/chat").json(&body);
        if !stream {
            let reply: ChatLine = http.send_json(builder).await?;
            if let Some(error) = reply.error {
                return Err(http.reported_error(error));
            }
            let content = reply_content(&reply).to_string();
            return Ok(reply.into_response(content, request));
        }

        let mut lines = Lines::new(http, http.send(builder).await?);
        while let Some(line) = lines.next_line().await? {
            if line.trim().is_empty() {
                continue;
            }
            let chunk: ChatLine = http.parse(&line)?;
            if let Some(error) = chunk.error {
                return Err(http.reported_error(error));
            }
            transcript.push(reply_content(&chunk)).await;
            if chunk.done {
                return Ok(chunk.into_response(transcript.into_content(), request));
            }
        }
        Err(http.truncated())
    }

    async fn embed(
        &self,
        http: &Endpoint,
        request: &EmbedRequest,
    ) -> Result<EmbedResponse, ProviderError> {
        http.embed_input("/api/embed", request, |reply: EmbedReply| {
            let usage = TokenUsage {
                input_tokens: reply.prompt_eval_count,
                output_tokens: 0,
            };
            (reply.embeddings.into_iter().next(), reply.model, usage)
        })
        .await
    }

    async fn list_models(&self, http: &Endpoint) -> Result<Vec<ObservedModel>, ProviderError> {
        let reply: TagsReply = http
            .send_json(http.request(Method::GET, "/api/tags"))
            .await?;
        let names: Vec<String> = reply
            .models
            .iter()
            .take(MAX_SHOWN)
            .map(|model| model.name.clone())
            .collect();
        let shown: HashMap<String, ShowReply> = futures::stream::iter(names)
            .map(|name: String| async move {
                // Details are optional: a model that cannot be shown is
                // still listed.
                let body = serde_json::json!({ "model": name });
                let builder = http.request(Method::POST, "/api/show").json(&body);
                let shown = http.send_json::<ShowReply>(builder).await.ok();
                shown.map(|shown| (name, shown))
            })
            .buffer_unordered(SHOW_CONCURRENCY)
            .filter_map(|shown| async move { shown })
            .collect()
            .await;
        Ok(reply
            .models
            .into_iter()
            .map(|model| {
                let details = shown.get(&model.name);
                ObservedModel {
                    context_length: details.map_or(0, ShowReply::context_length),
                    capabilities: details.map(ShowReply::capabilities).unwrap_or_default(),
                    size_bytes: model.size.max(0),
                    name: model.name,
                }
            })
            .collect())
    }

    async fn pull_model(
        &self,
        http: &Endpoint,
        model: &str,
        progress: mpsc::Sender<PullProgress>,
    ) -> Result<(), ProviderError> {
        let body = serde_json::json!({ "model": model, "stream": true });
        let builder = http.request(Method::POST, "/api/pull").json(&body);
        let response = http.bounded(http.send(builder)).await?;
        let mut lines = Lines::new(http, response);
        loop {
            let line = match tokio::time::timeout(http.timeout(), lines.next_line()).await {
                Ok(line) => line?,
                Err(_) => {
                    return Err(ProviderError::retryable(format!(
                        "{}: no progress of the download of {model:?} within {:?}",
                        http.provider,
                        http.timeout()
                    )));
                }
            };
            let Some(line) = line else {
                return Err(http.truncated());
            };
            if line.trim().is_empty() {
                continue;
            }
            let line: PullLine = http.parse(&line)?;
            if let Some(error) = line.error {
                return Err(pull_error(http, model, &error));
            }
            let done = line.status == "success";
            // A listener that went away does not stop the download.
            let _ = progress
                .send(PullProgress {
                    status: line.status,
                    completed_bytes: line.completed.max(0),
                    total_bytes: line.total.max(0),
                })
                .await;
            if done {
                return Ok(());
            }
        }
    }
}

/// A failure reported inside the pull stream. Ollama reports a model its
/// registry does not have as an error line (`file does not exist`), which
/// becomes a 404 like every other provider's "no such model".
fn pull_error(http: &Endpoint, model: &str, error: &str) -> ProviderError {
    let missing = ["file does not exist", "not found", "does not exist"];
    if missing.iter().any(|phrase| error.contains(phrase)) {
        return ProviderError {
            status: Some(404),
            ..ProviderError::fatal(format!(
                "{}: model {model:?} not found: {error}",
                http.provider
            ))
        };
    }
    ProviderError::retryable(format!(
        "{}: the download of {model:?} failed: {error}",
        http.provider
    ))
}

/// One NDJSON line of `/api/pull`.
#[derive(Deserialize)]
struct PullLine {
    #[serde(default)]
    status: String,
    #[serde(default)]
    total: i64,
    #[serde(default)]
    completed: i64,
    error: Option<String>,
}

/// What `/api/show` says of a model (only the fields used).
#[derive(Deserialize)]
struct ShowReply {
    #[serde(default)]
    model_info: HashMap<String, Value>,
    #[serde(default)]
    capabilities: Vec<String>,
}

impl ShowReply {
    /// `<architecture>.context_length` of `model_info`.
    fn context_length(&self) -> i32 {
        self.model_info
            .iter()
            .filter(|(key, _)| key.ends_with(".context_length"))
            .find_map(|(_, value)| value.as_i64())
            .map_or(0, |length| length.clamp(0, i64::from(i32::MAX)) as i32)
    }

    /// Ollama's `completion` means chat and prompt calls, `embedding`
    /// embeddings; other capabilities (`tools`, `vision`…) are not ours.
    fn capabilities(&self) -> Vec<String> {
        let mut capabilities: Vec<String> = vec![];
        for capability in &self.capabilities {
            match capability.as_str() {
                "completion" => capabilities.extend(["chat".into(), "prompt".into()]),
                "embedding" => capabilities.push("embed".into()),
                _ => {}
            }
        }
        capabilities.sort();
        capabilities.dedup();
        capabilities
    }
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    options: Options,
}

#[derive(Serialize)]
struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
}

/// A whole non-streamed answer, or one NDJSON line of a streamed one (the
/// last has `done` and the token counts).
#[derive(Deserialize)]
struct ChatLine {
    model: Option<String>,
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
    error: Option<String>,
}

#[derive(Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
}

fn reply_content(line: &ChatLine) -> &str {
    line.message
        .as_ref()
        .map_or("", |message| message.content.as_str())
}

impl ChatLine {
    fn into_response(self, content: String, request: &ChatRequest) -> ChatResponse {
        ChatResponse {
            content,
            model: self.model.unwrap_or_else(|| request.model.clone()),
            usage: TokenUsage {
                input_tokens: self.prompt_eval_count,
                output_tokens: self.eval_count,
            },
            finish_reason: self.done_reason,
        }
    }
}

#[derive(Deserialize)]
struct EmbedReply {
    model: Option<String>,
    #[serde(default)]
    embeddings: Vec<Vec<f32>>,
    #[serde(default)]
    prompt_eval_count: u64,
}

#[derive(Deserialize)]
struct TagsReply {
    #[serde(default)]
    models: Vec<TagsModel>,
}

#[derive(Deserialize)]
struct TagsModel {
    name: String,
    #[serde(default)]
    size: i64,
}
