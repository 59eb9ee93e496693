//! Anthropic's Messages API: `/v1/messages` (SSE when streaming),
//! `/v1/models`. Anthropic has no embeddings.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Auth, Endpoint, Settings, SseEvents};
use super::{
    Bounded, ChatCall, ChatResponse, ObservedModel, ProviderError, Role, TokenUsage, Wire,
};

const API_VERSION: &str = "2023-06-01";
/// The API requires `max_tokens`; used when the request leaves it open.
const DEFAULT_MAX_TOKENS: u32 = 1024;

pub(crate) struct Anthropic;

impl Anthropic {
    pub fn new(settings: Settings<'_>) -> Result<Bounded<Self>, ProviderError> {
        let http = Endpoint::new(
            "anthropic",
            settings,
            Some("https://api.anthropic.com"),
            "/v1",
            Auth::Header("x-api-key"),
        )?;
        Ok(Bounded::new(http, Anthropic))
    }

    /// A request with the API version every Anthropic call names.
    fn versioned(http: &Endpoint, method: Method, path: &str) -> reqwest::RequestBuilder {
        http.request(method, path)
            .header("anthropic-version", API_VERSION)
    }
}

#[async_trait]
impl Wire for Anthropic {
    async fn chat(&self, call: ChatCall<'_>) -> Result<ChatResponse, ProviderError> {
        let (http, request, mut transcript) = (call.http, call.request, call.transcript);
        let stream = transcript.streams();
        let mut system = vec![];
        let mut messages = vec![];
        for message in &request.messages {
            let role = match message.role {
                Role::System => {
                    system.push(message.content.as_str());
                    continue;
                }
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(Message {
                role,
                content: &message.content,
            });
        }
        let body = MessagesBody {
            model: &request.model,
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            messages,
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            temperature: request.temperature,
            stream,
        };
        let builder = Self::versioned(http, Method::POST, "/v1/messages").json(&body);
        if !stream {
            let reply: MessageReply = http.send_json(builder).await?;
            let content = reply
                .content
                .into_iter()
                .filter(|block| block.kind == "text")
                .filter_map(|block| block.text)
                .collect();
            let usage = reply.usage.unwrap_or_default();
            return Ok(ChatResponse {
                content,
                model: reply.model.unwrap_or_else(|| request.model.clone()),
                usage: TokenUsage {
                    input_tokens: usage.input_tokens.unwrap_or_default(),
                    output_tokens: usage.output_tokens.unwrap_or_default(),
                },
                finish_reason: reply.stop_reason,
            });
        }

        let mut events = SseEvents::new(http, http.send(builder).await?);
        let mut model = request.model.clone();
        let mut usage = TokenUsage::default();
        let mut finish_reason = None;
        while let Some(data) = events.next_data().await? {
            match http.parse(&data)? {
                StreamEvent::MessageStart { message } => {
                    model = message.model.unwrap_or(model);
                    if let Some(start) = message.usage {
                        usage.input_tokens = start.input_tokens.unwrap_or_default();
                        usage.output_tokens = start.output_tokens.unwrap_or_default();
                    }
                }
                StreamEvent::ContentBlockDelta { delta } => {
                    // Only `text_delta`s carry `text`; thinking and tool
                    // input deltas are not part of the answer.
                    if let Some(text) = delta.text {
                        transcript.push(&text).await;
                    }
                }
                StreamEvent::MessageDelta {
                    delta,
                    usage: update,
                } => {
                    finish_reason = delta.stop_reason.or(finish_reason);
                    // Counts here are cumulative for the message.
                    if let Some(update) = update {
                        usage.input_tokens = update.input_tokens.unwrap_or(usage.input_tokens);
                        usage.output_tokens = update.output_tokens.unwrap_or(usage.output_tokens);
                    }
                }
                StreamEvent::MessageStop => {
                    return Ok(ChatResponse {
                        content: transcript.into_content(),
                        model,
                        usage,
                        finish_reason,
                    });
                }
                StreamEvent::Error { error } => return Err(http.reported_error(error)),
                StreamEvent::Other => {}
            }
        }
        Err(http.truncated())
    }

    async fn list_models(&self, http: &Endpoint) -> Result<Vec<ObservedModel>, ProviderError> {
        let request = |after: Option<&str>| {
            let builder =
                Self::versioned(http, Method::GET, "/v1/models").query(&[("limit", "1000")]);
            match after {
                Some(after) => builder.query(&[("after_id", after)]),
                None => builder,
            }
        };
        http.pages(request, |page: ModelPage| {
            // Anthropic lists names only.
            let names = page
                .data
                .into_iter()
                .map(|model| ObservedModel {
                    name: model.id,
                    ..ObservedModel::default()
                })
                .collect();
            (names, page.last_id.filter(|_| page.has_more))
        })
        .await
    }
}

#[derive(Serialize)]
struct MessagesBody<'a> {
    model: &'a str,
    max_tokens: u32,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

/// A whole message, or the one announced by `message_start`.
#[derive(Deserialize)]
struct MessageReply {
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Default, Deserialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: MessageReply,
    },
    ContentBlockDelta {
        delta: BlockDelta,
    },
    MessageDelta {
        delta: StopDelta,
        usage: Option<Usage>,
    },
    MessageStop,
    Error {
        error: Value,
    },
    /// `ping`, `content_block_start`, `content_block_stop` and event types
    /// added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct BlockDelta {
    text: Option<String>,
}

#[derive(Deserialize)]
struct StopDelta {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ModelPage {
    #[serde(default)]
    data: Vec<ModelEntry>,
    #[serde(default)]
    has_more: bool,
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}
