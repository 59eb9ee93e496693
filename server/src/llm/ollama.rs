//! Ollama's native API: `/api/chat` (NDJSON when streaming), `/api/embed`,
//! `/api/tags`.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::http::{Auth, Endpoint, Lines, Settings};
use super::{
    Bounded, ChatCall, ChatMessage, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse,
    ProviderError, TokenUsage, Wire,
};

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

    async fn list_models(&self, http: &Endpoint) -> Result<Vec<String>, ProviderError> {
        let reply: TagsReply = http
            .send_json(http.request(Method::GET, "/api/tags"))
            .await?;
        Ok(reply.models.into_iter().map(|model| model.name).collect())
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
}
