//! Google's Gemini API (v1beta): `models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `:embedContent`, `GET models`.

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Auth, Endpoint, Settings, SseEvents, Transcript};
use super::{
    Bounded, ChatCall, ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, ObservedModel,
    ProviderError, Role, TokenUsage, Wire,
};

pub(crate) struct Gemini;

impl Gemini {
    pub fn new(settings: Settings<'_>) -> Result<Bounded<Self>, ProviderError> {
        let http = Endpoint::new(
            "gemini",
            settings,
            Some("https://generativelanguage.googleapis.com"),
            "/v1beta",
            Auth::Header("x-goog-api-key"),
        )?;
        Ok(Bounded::new(http, Gemini))
    }

    /// `/v1beta/models/{model}:{method}`. The model goes into the path, so
    /// it must not be able to change the path.
    fn model_path(&self, model: &str, method: &str) -> Result<String, ProviderError> {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let safe = !model.is_empty()
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !safe {
            return Err(ProviderError::fatal(format!(
                "gemini: invalid model name {model:?}"
            )));
        }
        Ok(format!("/v1beta/models/{model}:{method}"))
    }
}

#[async_trait]
impl Wire for Gemini {
    async fn chat(&self, call: ChatCall<'_>) -> Result<ChatResponse, ProviderError> {
        let (http, request, transcript) = (call.http, call.request, call.transcript);
        let stream = transcript.streams();
        let mut system_parts = vec![];
        let mut contents = vec![];
        for message in &request.messages {
            let part = Part {
                text: &message.content,
            };
            match message.role {
                Role::System => system_parts.push(part),
                Role::User => contents.push(Content {
                    role: Some("user"),
                    parts: vec![part],
                }),
                Role::Assistant => contents.push(Content {
                    role: Some("model"),
                    parts: vec![part],
                }),
            }
        }
        let body = GenerateBody {
            contents,
            system_instruction: (!system_parts.is_empty()).then_some(Content {
                role: None,
                parts: system_parts,
            }),
            generation_config: GenerationConfig {
                temperature: request.temperature,
                max_output_tokens: request.max_tokens,
            },
        };
        let builder = if stream {
            let path = self.model_path(&request.model, "streamGenerateContent")?;
            http.request(Method::POST, &path).query(&[("alt", "sse")])
        } else {
            let path = self.model_path(&request.model, "generateContent")?;
            http.request(Method::POST, &path)
        }
        .json(&body);

        let mut answer = Answer::new(request, transcript);
        if !stream {
            let reply: GenerateReply = http.send_json(builder).await?;
            answer.add(http, reply).await?;
            if answer.finish_reason.is_none() {
                return Err(http.malformed("no finished candidate in the answer"));
            }
            return answer.finish(http);
        }
        let mut events = SseEvents::new(http, http.send(builder).await?);
        while let Some(data) = events.next_data().await? {
            answer.add(http, http.parse(&data)?).await?;
        }
        answer.finish(http)
    }

    async fn embed(
        &self,
        http: &Endpoint,
        request: &EmbedRequest,
    ) -> Result<EmbedResponse, ProviderError> {
        let path = self.model_path(&request.model, "embedContent")?;
        let model = request
            .model
            .strip_prefix("models/")
            .unwrap_or(&request.model);
        let body = EmbedBody {
            model: format!("models/{model}"),
            content: Content {
                role: None,
                parts: vec![Part {
                    text: &request.input,
                }],
            },
        };
        let builder = http.request(Method::POST, &path).json(&body);
        let reply: EmbedReply = http.send_json(builder).await?;
        Ok(EmbedResponse {
            vector: reply.embedding.values,
            model: request.model.clone(),
            // Gemini does not report token counts for embeddings.
            usage: TokenUsage::default(),
        })
    }

    async fn list_models(&self, http: &Endpoint) -> Result<Vec<ObservedModel>, ProviderError> {
        let request = |token: Option<&str>| {
            let builder = http
                .request(Method::GET, "/v1beta/models")
                .query(&[("pageSize", "1000")]);
            match token {
                Some(token) => builder.query(&[("pageToken", token)]),
                None => builder,
            }
        };
        http.pages(request, |page: ModelPage| {
            let models = page.models.into_iter().map(ModelEntry::observed).collect();
            (
                models,
                page.next_page_token.filter(|token| !token.is_empty()),
            )
        })
        .await
    }
}

/// Folds one or more `GenerateContentResponse`s (a whole answer, or the
/// events of a stream) into a [`ChatResponse`]. A stream has no end marker:
/// it is complete once a candidate carries a finish reason.
struct Answer {
    transcript: Transcript,
    model: String,
    usage: TokenUsage,
    finish_reason: Option<String>,
}

impl Answer {
    fn new(request: &ChatRequest, transcript: Transcript) -> Self {
        Answer {
            transcript,
            model: request.model.clone(),
            usage: TokenUsage::default(),
            finish_reason: None,
        }
    }

    async fn add(&mut self, http: &Endpoint, reply: GenerateReply) -> Result<(), ProviderError> {
        if let Some(error) = reply.error {
            return Err(http.reported_error(error));
        }
        if let Some(reason) = reply
            .prompt_feedback
            .as_ref()
            .and_then(|feedback| feedback["blockReason"].as_str())
        {
            return Err(ProviderError::fatal(format!(
                "gemini: the prompt was blocked ({reason})"
            )));
        }
        if let Some(version) = reply.model_version {
            self.model = version;
        }
        if let Some(usage) = reply.usage_metadata {
            self.usage = TokenUsage {
                input_tokens: usage.prompt_token_count,
                // Thinking tokens are billed as output.
                output_tokens: usage.candidates_token_count + usage.thoughts_token_count,
            };
        }
        if let Some(candidate) = reply.candidates.into_iter().next() {
            let parts = candidate.content.map(|content| content.parts);
            for part in parts.into_iter().flatten().filter(|part| !part.thought) {
                if let Some(text) = part.text {
                    self.transcript.push(&text).await;
                }
            }
            if candidate.finish_reason.is_some() {
                self.finish_reason = candidate.finish_reason;
            }
        }
        Ok(())
    }

    fn finish(self, http: &Endpoint) -> Result<ChatResponse, ProviderError> {
        if self.finish_reason.is_none() {
            return Err(http.truncated());
        }
        Ok(ChatResponse {
            content: self.transcript.into_content(),
            model: self.model,
            usage: self.usage,
            finish_reason: self.finish_reason,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateBody<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    generation_config: GenerationConfig,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateReply {
    #[serde(default)]
    candidates: Vec<Candidate>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    prompt_feedback: Option<Value>,
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<CandidateContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<ReplyPart>,
}

#[derive(Deserialize)]
struct ReplyPart {
    text: Option<String>,
    /// Thought summaries of thinking models are not part of the answer.
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

#[derive(Serialize)]
struct EmbedBody<'a> {
    model: String,
    content: Content<'a>,
}

#[derive(Deserialize)]
struct EmbedReply {
    embedding: EmbeddingValues,
}

#[derive(Deserialize)]
struct EmbeddingValues {
    values: Vec<f32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelPage {
    #[serde(default)]
    models: Vec<ModelEntry>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelEntry {
    name: String,
    #[serde(default)]
    input_token_limit: i64,
    #[serde(default)]
    supported_generation_methods: Vec<String>,
}

impl ModelEntry {
    /// `generateContent` means chat and prompt calls, `embedContent`
    /// embeddings.
    fn observed(self) -> ObservedModel {
        let mut capabilities: Vec<String> = vec![];
        for method in &self.supported_generation_methods {
            match method.as_str() {
                "generateContent" => capabilities.extend(["chat".into(), "prompt".into()]),
                "embedContent" => capabilities.push("embed".into()),
                _ => {}
            }
        }
        capabilities.sort();
        capabilities.dedup();
        ObservedModel {
            name: self
                .name
                .strip_prefix("models/")
                .map(str::to_string)
                .unwrap_or(self.name),
            context_length: self.input_token_limit.clamp(0, i64::from(i32::MAX)) as i32,
            capabilities,
            size_bytes: 0,
        }
    }
}
