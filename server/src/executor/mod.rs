//! Executes one attempt of a built-in handler: model calls through the
//! resolver (streaming token deltas to run watchers that want them), HTTP
//! hooks, and the trivial handlers. The kernel's runner owns the lease, the
//! timeout and recording the result; dropping the future returned by
//! [`Executor::execute`] cancels the work, including an in-flight HTTP call.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::chain::{self, CompiledTask, Handler, ModelPreference};
use crate::kernel::{Kernel, TaskFailure, TaskSuccess, Throttled, value};
use crate::llm::resolver::{Candidate, Capability, ResolveError, Resolver, Served};
use crate::llm::{ChatMessage, ChatRequest, ChatResponse, EmbedResponse, Role};
use crate::outbound::{self, HttpClient};
use crate::proto::taskloom::v1::{self as pb, value::Kind};
use crate::store::{self, AttemptRecord, DynStore, StoreError};
use crate::traces::{self, AttemptTrace};

/// Pools a task uses when its `execute_config` names none.
const TASKS_POOL: &str = "internal_tasks_pool";
const CHAT_POOL: &str = "internal_chat_pool";
const EMBED_POOL: &str = "internal_embed_pool";

/// The built-in handlers of this replica.
pub struct Executor {
    store: DynStore,
    resolver: Resolver,
    http: HttpClient,
}

impl Executor {
    pub fn new(store: DynStore, resolver: Resolver, http: HttpClient) -> Executor {
        Executor {
            store,
            resolver,
            http,
        }
    }

    /// Runs `attempt` of `task`. Dropping the future cancels the work.
    pub async fn execute(
        &self,
        kernel: &Kernel,
        namespace: &str,
        task: &CompiledTask,
        attempt: &AttemptRecord,
        trace: &AttemptTrace,
    ) -> Result<TaskSuccess, TaskFailure> {
        let input =
            value::decode(&attempt.input).map_err(|error| TaskFailure::new(error, false))?;
        match task.handler {
            Handler::Noop => Ok(TaskSuccess::output(input)),
            Handler::RaiseError => Err(TaskFailure::new(
                attempt
                    .prompt
                    .clone()
                    .unwrap_or_else(|| format!("task {} raised an error", task.id)),
                false,
            )),
            Handler::RawString
            | Handler::ConditionKey
            | Handler::ParseNumber
            | Handler::ParseScore
            | Handler::ParseRange => {
                let prompt = attempt
                    .prompt
                    .clone()
                    .unwrap_or_else(|| value::as_text(&input));
                let mut messages = Vec::new();
                if let Some(system) = &task.system_instruction {
                    messages.push(ChatMessage::system(system.clone()));
                }
                messages.push(ChatMessage::user(prompt));
                let served = self
                    .chat(
                        kernel,
                        (namespace, task),
                        attempt,
                        trace,
                        messages,
                        TASKS_POOL,
                    )
                    .await?;
                let answer = served.response.content.clone();
                let output = parse_answer(task, &answer)?;
                Ok(success(output, &served))
            }
            Handler::ModelExecution => {
                let mut history = match input.kind {
                    Some(Kind::ChatHistory(history)) => history,
                    _ => pb::ChatHistory {
                        messages: vec![pb::ChatMessage {
                            role: "user".into(),
                            content: attempt
                                .prompt
                                .clone()
                                .unwrap_or_else(|| value::as_text(&input)),
                        }],
                        ..Default::default()
                    },
                };
                // The task's own instruction leads its own call and is not
                // recorded: the output is the input history plus the
                // answer, so a later task's instruction is never shadowed
                // by this one's.
                let messages = task
                    .system_instruction
                    .iter()
                    .map(|system| ChatMessage::system(system.clone()))
                    .chain(history.messages.iter().map(|m| {
                        ChatMessage::new(
                            Role::parse(&m.role).unwrap_or(Role::User),
                            m.content.clone(),
                        )
                    }))
                    .collect();
                let served = self
                    .chat(
                        kernel,
                        (namespace, task),
                        attempt,
                        trace,
                        messages,
                        CHAT_POOL,
                    )
                    .await?;
                history.messages.push(pb::ChatMessage {
                    role: "assistant".into(),
                    content: served.response.content.clone(),
                });
                history.model = served.model.clone();
                history.input_tokens = served.response.usage.input_tokens as i64;
                history.output_tokens = served.response.usage.output_tokens as i64;
                let output = pb::Value {
                    kind: Some(Kind::ChatHistory(history)),
                };
                Ok(success(output, &served))
            }
            Handler::Embedding => {
                let text = attempt
                    .prompt
                    .clone()
                    .unwrap_or_else(|| value::as_text(&input));
                let candidates = self
                    .candidates(namespace, task, Capability::Embed, EMBED_POOL, text.len())
                    .await?;
                let mut call = traces::Call::provider(trace, "embeddings");
                let served = self.resolver.embed(&candidates, &text).await;
                if let Ok(served) = &served {
                    let usage = &served.response.usage;
                    call.served(
                        &served.backend_id,
                        &served.model,
                        usage.input_tokens,
                        usage.output_tokens,
                    );
                }
                call.end(&served);
                let served = served.map_err(resolve_failure)?;
                Ok(TaskSuccess {
                    output: pb::Value {
                        kind: Some(Kind::Vector(pb::Vector {
                            values: served.response.vector.clone(),
                        })),
                    },
                    input_tokens: served.response.usage.input_tokens as i64,
                    output_tokens: served.response.usage.output_tokens as i64,
                    backend_id: Some(served.backend_id),
                    model: Some(served.model),
                })
            }
            Handler::Hook => {
                self.call_hook(namespace, task, attempt, trace, &input)
                    .await
            }
            Handler::Worker | Handler::HumanInput => Err(TaskFailure::new(
                format!(
                    "handler {} does not run on the server's executor",
                    task.handler.name()
                ),
                false,
            )),
        }
    }

    /// The backends and models that may serve a task, read through store
    /// faults: an outage delays the task, never fails it.
    /// The backends that may serve `task`, from its pool if `namespace`
    /// may use it.
    async fn candidates(
        &self,
        namespace: &str,
        task: &CompiledTask,
        capability: Capability,
        default_pool: &str,
        prompt_chars: usize,
    ) -> Result<Vec<Candidate>, TaskFailure> {
        let pool = task.model.pool.as_deref().unwrap_or(default_pool);
        let allowed =
            store::through_faults(StoreError::is_fault, || self.store.get_namespace(namespace))
                .await
                .map_err(|error| {
                    TaskFailure::new(format!("namespace {namespace:?}: {error}"), false)
                })?;
        if !allowed.pools.is_empty() && !allowed.pools.iter().any(|p| p == pool) {
            return Err(TaskFailure::new(
                format!(
                    "namespace {namespace:?} may not use pool {pool:?} (it may use {})",
                    allowed.pools.join(", ")
                ),
                false,
            ));
        }
        let is_fault =
            |error: &ResolveError| matches!(error, ResolveError::Store(e) if e.is_fault());
        store::through_faults(is_fault, || {
            self.resolver
                .candidates(&task.model, capability, default_pool, prompt_chars)
        })
        .await
        .map_err(resolve_failure)
    }

    /// One chat call with failover. It streams, token deltas going to the
    /// run's watchers, only when a watcher wants them or the task asks for
    /// it; otherwise it is one plain request (which every server answers
    /// with its token usage). The choice is made as the call starts.
    async fn chat(
        &self,
        kernel: &Kernel,
        (namespace, task): (&str, &CompiledTask),
        attempt: &AttemptRecord,
        trace: &AttemptTrace,
        messages: Vec<ChatMessage>,
        default_pool: &str,
    ) -> Result<Served<ChatResponse>, TaskFailure> {
        let prompt_chars = messages.iter().map(|m| m.content.len()).sum();
        let candidates = self
            .candidates(
                namespace,
                task,
                Capability::Chat,
                default_pool,
                prompt_chars,
            )
            .await?;
        let request = ChatRequest {
            model: String::new(),
            messages,
            temperature: task.model.temperature,
            max_tokens: task.model.max_tokens,
        };
        let mut span = traces::Call::provider(trace, "chat");
        let result = if !(task.model.stream || kernel.wants_deltas(&attempt.run_id)) {
            self.resolver.chat(&candidates, &request, None).await
        } else {
            // The text so far is kept for late watchers until the call ends.
            let _streaming = kernel.streaming_call(&attempt.id);
            let (deltas, mut received) = mpsc::channel::<String>(64);
            let call = self.resolver.chat(&candidates, &request, Some(deltas));
            let forward = async {
                while let Some(text) = received.recv().await {
                    kernel.publish_delta(&attempt.run_id, &attempt.task_id, &attempt.id, text);
                }
            };
            let (result, ()) = tokio::join!(call, forward);
            result
        };
        if let Ok(served) = &result {
            let usage = &served.response.usage;
            span.served(
                &served.backend_id,
                &served.model,
                usage.input_tokens,
                usage.output_tokens,
            );
        }
        span.end(&result);
        result.map_err(resolve_failure)
    }

    /// Calls a registered HTTP hook with the task's input and rendered
    /// arguments; a JSON answer becomes a JSON output, anything else text.
    async fn call_hook(
        &self,
        namespace: &str,
        task: &CompiledTask,
        attempt: &AttemptRecord,
        trace: &AttemptTrace,
        input: &pb::Value,
    ) -> Result<TaskSuccess, TaskFailure> {
        let Some(call) = &task.hook else {
            return Err(TaskFailure::new(
                format!("task {} names no hook", task.id),
                false,
            ));
        };
        let hook = match store::through_faults(StoreError::is_fault, || {
            self.store.get_hook(namespace, &call.name)
        })
        .await
        {
            Ok(hook) => hook,
            Err(StoreError::NotFound { .. }) => {
                return Err(TaskFailure::new(
                    format!("hook {:?} is not registered", call.name),
                    false,
                ));
            }
            Err(error) => return Err(TaskFailure::new(error.to_string(), true)),
        };
        let args: serde_json::Value = attempt
            .prompt
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let method = reqwest::Method::from_bytes(hook.method.as_bytes()).map_err(|_| {
            TaskFailure::new(format!("hook {} has an invalid method", hook.name), false)
        })?;
        let url = reqwest::Url::parse(&hook.url).map_err(|error| {
            TaskFailure::new(
                format!("hook {} has an invalid URL: {error}", hook.name),
                false,
            )
        })?;
        let timeout = Duration::from_millis(hook.timeout_ms.max(1) as u64);
        let refused = |refused: &outbound::Refused| {
            TaskFailure::new(format!("hook {}: {refused}", hook.name), false)
        };
        // Never echo URLs with secrets: reqwest errors name the URL only.
        let failed = |doing: &str, error: reqwest::Error| {
            let cause = if error.is_timeout() {
                format!("timed out after {timeout:?}")
            } else {
                format!("failed{doing}: {}", error.without_url())
            };
            TaskFailure::new(format!("hook {} {cause}", hook.name), true)
        };
        let mut request = self
            .http
            .request(method.clone(), url)
            .map_err(|error| refused(&error))?
            .timeout(timeout)
            .header("x-taskloom-run-id", &attempt.run_id)
            .header("x-taskloom-task-id", &attempt.task_id)
            .header("x-taskloom-attempt", attempt.attempt.to_string())
            // The attempt's span: the hook's own spans join the run's trace.
            .header(traces::TRACEPARENT, trace.traceparent());
        for (name, value) in hook.headers.iter().chain(hook.secret_headers.iter()) {
            request = request.header(name, value);
        }
        request = if method == reqwest::Method::GET {
            let query: Vec<(String, String)> = args
                .as_object()
                .map(|object| {
                    object
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            request.query(&query)
        } else {
            request.json(&serde_json::json!({
                "input": value::template_json(input),
                "args": args,
                "run_id": attempt.run_id,
                "task_id": attempt.task_id,
                "attempt": attempt.attempt,
            }))
        };
        let mut span = traces::Call::hook(trace, &hook.name, method.as_str());
        let sent = request.send().await;
        if let Ok(response) = &sent {
            span.http_status(response.status().as_u16());
        }
        span.end(&sent);
        let response = sent.map_err(|error| match outbound::refusal(&error) {
            Some(refusal) => refused(refusal),
            None => failed("", error),
        })?;
        let status = response.status();
        if status.is_redirection() {
            // Following it would hand the secret headers to wherever it
            // points; the hook's URL should name the final address.
            return Err(TaskFailure::new(
                format!(
                    "hook {} answered {}",
                    hook.name,
                    outbound::redirect_description(&response)
                ),
                false,
            ));
        }
        if !status.is_success() {
            // The body may echo the request, secret headers included: every
            // secret value is redacted before the text is cut and recorded.
            let body = outbound::read_error_body(response).await;
            let secrets: Vec<&str> = hook.secret_headers.values().map(String::as_str).collect();
            return Err(TaskFailure::new(
                format!(
                    "hook {} answered HTTP {}: {}",
                    hook.name,
                    status.as_u16(),
                    outbound::error_excerpt(&body, &secrets)
                ),
                crate::llm::is_retryable_status(status.as_u16()),
            ));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| failed(" reading its answer", error))?;
        let output = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(json) => value::json_value(json),
            Err(_) => value::text(String::from_utf8_lossy(&body).into_owned()),
        };
        Ok(TaskSuccess::output(output))
    }
}

/// One-shot model calls outside any run (`ExecutePrompt`, `Embed`): the
/// resolution, failover and default pools of a task's call; nothing is
/// recorded.
impl Executor {
    /// Answers `prompt` (after `system_instruction`, if any) in one chat call.
    pub async fn prompt(
        &self,
        model: &ModelPreference,
        system_instruction: Option<String>,
        prompt: String,
    ) -> Result<Served<ChatResponse>, ResolveError> {
        let messages: Vec<ChatMessage> = system_instruction
            .map(ChatMessage::system)
            .into_iter()
            .chain([ChatMessage::user(prompt)])
            .collect();
        let prompt_chars = messages.iter().map(|m| m.content.len()).sum();
        let candidates = self
            .resolver
            .candidates(model, Capability::Chat, TASKS_POOL, prompt_chars)
            .await?;
        let request = ChatRequest {
            model: String::new(),
            messages,
            temperature: model.temperature,
            max_tokens: model.max_tokens,
        };
        self.resolver.chat(&candidates, &request, None).await
    }

    /// Embeds `text`.
    pub async fn embed(
        &self,
        model: &ModelPreference,
        text: &str,
    ) -> Result<Served<EmbedResponse>, ResolveError> {
        let candidates = self
            .resolver
            .candidates(model, Capability::Embed, EMBED_POOL, text.len())
            .await?;
        self.resolver.embed(&candidates, text).await
    }
}

fn success(output: pb::Value, served: &Served<ChatResponse>) -> TaskSuccess {
    TaskSuccess {
        output,
        input_tokens: served.response.usage.input_tokens as i64,
        output_tokens: served.response.usage.output_tokens as i64,
        backend_id: Some(served.backend_id.clone()),
        model: Some(served.model.clone()),
    }
}

fn resolve_failure(error: ResolveError) -> TaskFailure {
    let retryable = error.is_retryable();
    let throttled = match &error {
        // Not a failure: the runner puts the attempt back to wait.
        ResolveError::Throttled(throttle) => Some(Throttled {
            limit: throttle.limit.clone(),
            retry_at: throttle.retry_at,
        }),
        _ => None,
    };
    TaskFailure {
        throttled,
        ..TaskFailure::new(error.to_string(), retryable)
    }
}

/// Turns a model's answer into the handler's typed output. A model that
/// answered off-format may do better on a retry, so parse errors are
/// retryable.
fn parse_answer(task: &CompiledTask, answer: &str) -> Result<pb::Value, TaskFailure> {
    let parse_failure = |error: chain::ParseError| {
        TaskFailure::new(
            format!(
                "task {}: the model's answer {answer:?} does not fit: {error}",
                task.id
            ),
            true,
        )
    };
    Ok(match task.handler {
        Handler::ConditionKey => value::text(
            chain::parse_condition_key(answer, &task.valid_conditions).map_err(parse_failure)?,
        ),
        Handler::ParseNumber => value::number(chain::parse_number(answer).map_err(parse_failure)?),
        Handler::ParseScore => value::number(chain::parse_score(answer).map_err(parse_failure)?),
        Handler::ParseRange => {
            let (low, high) = chain::parse_range(answer).map_err(parse_failure)?;
            value::json_value(serde_json::json!({ "low": low, "high": high }))
        }
        _ => value::text(answer),
    })
}
