//! Model-backed handlers, hooks and one-shot model calls against a real
//! server process, with scripted fake providers speaking each provider's
//! wire format over real HTTP on loopback.

mod common;

use common::chains::{branch, chain, goto, task, text_value, then};

use std::time::{Duration, Instant};

use common::{TestServer, assert_invalid};
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

api_tests!(
    prompt_handlers_record_backend_model_and_usage,
    watchers_see_token_deltas_live,
    preference_order_and_failover,
    every_provider_wire_format_serves_a_run,
    retries_back_off_and_timeouts_cancel_the_call,
    embedding_and_chat_history,
    hooks_are_called_with_input_and_args,
    one_shot_prompt_and_embed,
    token_limit_stops_a_run,
);

fn with_models(mut task: pb::Task, models: &[&str]) -> pb::Task {
    task.execute_config = Some(pb::ExecuteConfig {
        models: models.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    });
    task
}

/// Registers a backend of `kind` at `url` in the three built-in pools.
async fn add_backend(
    server: &TestServer,
    name: &str,
    kind: pb::BackendType,
    url: &str,
    priority: i32,
) -> String {
    let mut backends = server.backends();
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: name.into(),
                r#type: kind as i32,
                base_url: url.into(),
                api_key: "test-key".into(),
                priority,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for pool in [
        "internal_tasks_pool",
        "internal_chat_pool",
        "internal_embed_pool",
    ] {
        backends
            .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
                pool_id: pool.into(),
                backend_id: backend.id.clone(),
            })
            .await
            .unwrap();
    }
    backend.id
}

async fn execute(
    server: &TestServer,
    chain: pb::Chain,
    input: pb::Value,
) -> pb::ExecuteChainResponse {
    server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(input)),
            ..Default::default()
        })
        .await
        .expect("execute chain")
        .into_inner()
}

fn one_task_chain(id: &str, task: pb::Task) -> pb::Chain {
    pb::Chain {
        id: id.into(),
        tasks: vec![task],
        ..Default::default()
    }
}

async fn attempts(server: &TestServer, run_id: &str) -> Vec<pb::TaskAttempt> {
    server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attempts
}

async fn prompt_handlers_record_backend_model_and_usage(server: TestServer) {
    let fake = FakeLlm::start().await;
    let backend_id = add_backend(
        &server,
        "fake",
        pb::BackendType::OpenaiCompatible,
        &fake.url(),
        0,
    )
    .await;
    fake.script("classifier", Reply::text("Yes.").usage(7, 2));
    fake.script("scorer", Reply::text("I'd give it 8 out of 10").usage(5, 4));
    let mut classify = with_models(
        task(
            "classify",
            "condition_key",
            vec![
                branch("equals", "yes", goto("score")),
                branch("default", "", goto("end")),
            ],
        ),
        &["classifier"],
    );
    classify.valid_conditions = [("yes".to_string(), true), ("no".to_string(), true)].into();
    classify.prompt_template = "Is this a question? {{ input }}".into();
    classify.system_instruction = "Answer yes or no.".into();
    let score = with_models(
        task("score", "parse_score", vec![branch("gt", "5", goto("end"))]),
        &["scorer"],
    );
    let chain = pb::Chain {
        id: "classify-score".into(),
        tasks: vec![classify, score],
        ..Default::default()
    };
    let response = execute(&server, chain, text_value("Why is the sky blue?")).await;
    let run = response.run.unwrap();
    assert_eq!(
        run.status,
        pb::RunStatus::Succeeded as i32,
        "{:?}",
        run.error
    );
    assert_eq!(
        response.output,
        Some(pb::Value {
            kind: Some(pb::value::Kind::Number(8.0))
        })
    );
    assert_eq!(
        run.usage,
        Some(pb::TokenUsage {
            input_tokens: 12,
            output_tokens: 6
        })
    );
    let trace = &response.trace;
    assert_eq!(trace[0].model, "classifier");
    assert_eq!(trace[0].backend_id, backend_id);
    assert_eq!(trace[0].next, vec!["score".to_string()]);
    assert_eq!(
        trace[0].usage,
        Some(pb::TokenUsage {
            input_tokens: 7,
            output_tokens: 2
        })
    );
    let recorded = attempts(&server, &run.id).await;
    assert_eq!(
        recorded[0].output,
        Some(text_value("yes")),
        "condition_key yields the key"
    );
    assert_eq!(recorded[0].model, "classifier");
    // Each attempt says what it was given and the prompt it rendered.
    assert_eq!(recorded[0].input, Some(text_value("Why is the sky blue?")));
    assert_eq!(
        recorded[0].prompt,
        "Is this a question? Why is the sky blue?"
    );
    assert_eq!(recorded[1].input, Some(text_value("yes")));
    assert_eq!(recorded[1].prompt, "", "score has no prompt template");
    // The rendered template and the system instruction reached the model.
    let request = &fake.requests()[0];
    let messages = request.body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["content"], "Answer yes or no.");
    assert_eq!(
        messages[1]["content"],
        "Is this a question? Why is the sky blue?"
    );
    assert_eq!(request.header("authorization"), Some("Bearer test-key"));
}

async fn watchers_see_token_deltas_live(server: TestServer) {
    let fake = FakeLlm::start().await;
    add_backend(&server, "fake", pb::BackendType::Ollama, &fake.url(), 0).await;
    fake.script(
        "streamer",
        // The delay gives the watcher time to attach before the first token.
        Reply::chunks(["one ", "two ", "three"])
            .usage(3, 3)
            .delay(Duration::from_millis(500))
            .chunk_delay(Duration::from_millis(150)),
    );
    // Started before anyone watches, the call streams because the task
    // asks it to (a watcher that comes first makes it stream by itself).
    let mut say = with_models(task("say", "raw_string", vec![]), &["streamer"]);
    if let Some(config) = say.execute_config.as_mut() {
        config.stream = true;
    }
    let run = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(one_task_chain("stream", say)),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value(
                "count",
            ))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = server
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: run.id.clone(),
            after_seq: 0,
            include_deltas: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut deltas = Vec::new();
    let mut stored_after_deltas = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .unwrap()
        .unwrap()
    {
        if event.r#type == pb::RunEventType::TokenDelta as i32 {
            deltas.push(event.delta.clone());
        } else if !deltas.is_empty() {
            stored_after_deltas.push(event.r#type);
        }
    }
    assert_eq!(deltas.concat(), "one two three");
    assert!(deltas.len() >= 2, "streamed in pieces: {deltas:?}");
    assert_eq!(
        stored_after_deltas.first(),
        Some(&(pb::RunEventType::TaskSucceeded as i32))
    );
    // Without include_deltas nothing but stored events arrive.
    let events = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(
        events
            .iter()
            .all(|e| e.r#type != pb::RunEventType::TokenDelta as i32)
    );
}

async fn preference_order_and_failover(server: TestServer) {
    let primary = FakeLlm::start().await;
    let secondary = FakeLlm::start().await;
    // Both fakes serve every pool; whichever the policy puts first, the
    // outcome below is the same.
    add_backend(
        &server,
        "primary",
        pb::BackendType::OpenaiCompatible,
        &primary.url(),
        10,
    )
    .await;
    add_backend(
        &server,
        "secondary",
        pb::BackendType::OpenaiCompatible,
        &secondary.url(),
        1,
    )
    .await;
    // The first preferred model answers from whichever backend comes first.
    primary.set_default_reply(Reply::text("from primary"));
    secondary.set_default_reply(Reply::text("from secondary"));
    for _ in 0..3 {
        let response = execute(
            &server,
            one_task_chain(
                "prefer",
                with_models(
                    task("t", "raw_string", vec![]),
                    &["first-choice", "second-choice"],
                ),
            ),
            text_value("hi"),
        )
        .await;
        assert_eq!(response.trace[0].model, "first-choice");
    }
    // A retryable error on every backend for the first model fails over to
    // the next backend, then to the next model, in preference order.
    primary.script("flaky", Reply::error(503, "overloaded"));
    secondary.script("flaky", Reply::error(500, "broken"));
    primary.script("steady", Reply::error(429, "slow down"));
    let response = execute(
        &server,
        one_task_chain(
            "failover",
            with_models(task("t", "raw_string", vec![]), &["flaky", "steady"]),
        ),
        text_value("hi"),
    )
    .await;
    let run = response.run.unwrap();
    assert_eq!(
        run.status,
        pb::RunStatus::Succeeded as i32,
        "{:?}",
        run.error
    );
    assert_eq!(response.trace[0].model, "steady");
    assert_eq!(response.output, Some(text_value("from secondary")));
    // A model the backends do not serve ("not found") moves on to the next
    // preferred model instead of failing the run.
    for fake in [&primary, &secondary] {
        fake.script(
            "m-missing",
            Reply::error(404, "model 'm-missing' not found"),
        );
    }
    let response = execute(
        &server,
        one_task_chain(
            "not-served",
            with_models(task("t", "raw_string", vec![]), &["m-missing", "m-b"]),
        ),
        text_value("hi"),
    )
    .await;
    let run = response.run.unwrap();
    assert_eq!(
        run.status,
        pb::RunStatus::Succeeded as i32,
        "{:?}",
        run.error
    );
    assert_eq!(response.trace[0].model, "m-b");
    // A fatal error does not fail over.
    primary.script("forbidden", Reply::error(401, "bad key"));
    primary.script("forbidden", Reply::error(401, "bad key"));
    secondary.script("forbidden", Reply::error(401, "bad key"));
    let response = execute(
        &server,
        one_task_chain(
            "fatal",
            with_models(task("t", "raw_string", vec![]), &["forbidden"]),
        ),
        text_value("hi"),
    )
    .await;
    let run = response.run.unwrap();
    assert_eq!(run.status, pb::RunStatus::Failed as i32);
    assert!(run.error.unwrap().message.contains("401"));
}

async fn every_provider_wire_format_serves_a_run(server: TestServer) {
    for (kind, name) in [
        (pb::BackendType::Ollama, "ollama"),
        (pb::BackendType::OpenaiCompatible, "compatible"),
        (pb::BackendType::Openai, "openai"),
        (pb::BackendType::Gemini, "gemini"),
        (pb::BackendType::Anthropic, "anthropic"),
    ] {
        let fake = FakeLlm::start().await;
        let backend_id = add_backend(&server, name, kind, &fake.url(), 0).await;
        fake.set_default_reply(Reply::text(format!("hello from {name}")).usage(2, 3));
        let response = execute(
            &server,
            one_task_chain(
                &format!("chain-{name}"),
                with_models(task("t", "raw_string", vec![]), &["m"]),
            ),
            text_value("hi"),
        )
        .await;
        assert_eq!(
            response.output,
            Some(text_value(&format!("hello from {name}"))),
            "{name}"
        );
        assert_eq!(
            response.trace[0].usage,
            Some(pb::TokenUsage {
                input_tokens: 2,
                output_tokens: 3
            }),
            "{name}"
        );
        server
            .backends()
            .delete_backend(pb::DeleteBackendRequest {
                id: backend_id,
                etag: String::new(),
            })
            .await
            .unwrap();
    }
}

async fn retries_back_off_and_timeouts_cancel_the_call(server: TestServer) {
    let fake = FakeLlm::start().await;
    add_backend(
        &server,
        "fake",
        pb::BackendType::OpenaiCompatible,
        &fake.url(),
        0,
    )
    .await;
    fake.script("wobbly", Reply::error(500, "one"));
    fake.script("wobbly", Reply::error(500, "two"));
    fake.script("wobbly", Reply::text("third time"));
    let mut retried = with_models(task("t", "raw_string", vec![]), &["wobbly"]);
    retried.retry = Some(pb::RetryPolicy {
        max_attempts: 3,
        backoff: "exponential".into(),
        initial_delay: "200ms".into(),
        multiplier: 2.0,
        ..Default::default()
    });
    let response = execute(
        &server,
        one_task_chain("retried", retried),
        text_value("hi"),
    )
    .await;
    let run = response.run.unwrap();
    assert_eq!(response.output, Some(text_value("third time")));
    assert_eq!(response.trace[0].attempts, 3);
    assert_eq!(response.trace[0].errors.len(), 2);
    let recorded = attempts(&server, &run.id).await;
    let started = |i: usize| {
        let t = recorded[i].start_time.unwrap();
        Duration::new(t.seconds as u64, t.nanos as u32)
    };
    let ended = |i: usize| {
        let t = recorded[i].end_time.unwrap();
        Duration::new(t.seconds as u64, t.nanos as u32)
    };
    assert!(
        started(1) - ended(0) >= Duration::from_millis(200),
        "first backoff"
    );
    assert!(
        started(2) - ended(1) >= Duration::from_millis(400),
        "exponential backoff"
    );

    // A task timeout cancels the model call itself.
    fake.script(
        "sleepy",
        Reply::text("too late").delay(Duration::from_secs(10)),
    );
    let mut slow = with_models(task("t", "raw_string", vec![]), &["sleepy"]);
    slow.timeout = "300ms".into();
    let began = Instant::now();
    let response = execute(&server, one_task_chain("slow", slow), text_value("hi")).await;
    let run = response.run.unwrap();
    assert_eq!(run.status, pb::RunStatus::Failed as i32);
    assert_eq!(run.error.unwrap().reason, "TIMEOUT");
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(
        fake.wait_for_cancelled(1, Duration::from_secs(5)).await,
        "the HTTP call was cancelled"
    );
    let recorded = attempts(&server, &run.id).await;
    assert_eq!(recorded[0].status, pb::AttemptStatus::TimedOut as i32);
}

async fn embedding_and_chat_history(server: TestServer) {
    let fake = FakeLlm::start().await;
    add_backend(&server, "fake", pb::BackendType::Ollama, &fake.url(), 0).await;
    fake.set_embedding(vec![0.25, -0.5, 1.0]);
    let response = execute(
        &server,
        one_task_chain(
            "embed",
            with_models(task("e", "embedding", vec![]), &["embedder"]),
        ),
        text_value("embed me"),
    )
    .await;
    assert_eq!(
        response.output,
        Some(pb::Value {
            kind: Some(pb::value::Kind::Vector(pb::Vector {
                values: vec![0.25, -0.5, 1.0]
            }))
        })
    );
    assert_eq!(response.output_type, pb::ValueType::Vector as i32);

    fake.script("chatty", Reply::text("Hello again").usage(4, 2));
    let mut chat = with_models(task("c", "model_execution", vec![]), &["chatty"]);
    chat.system_instruction = "Be brief.".into();
    let history = pb::Value {
        kind: Some(pb::value::Kind::ChatHistory(pb::ChatHistory {
            messages: vec![pb::ChatMessage {
                role: "user".into(),
                content: "Hi".into(),
            }],
            ..Default::default()
        })),
    };
    let response = execute(&server, one_task_chain("chat", chat), history.clone()).await;
    let Some(pb::Value {
        kind: Some(pb::value::Kind::ChatHistory(out)),
    }) = response.output
    else {
        panic!("a chat history comes out: {:?}", response.output);
    };
    // The output is the input history plus exactly one answer; the task's
    // instruction led its call but is not recorded.
    let roles: Vec<&str> = out.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, vec!["user", "assistant"]);
    assert_eq!(out.messages[1].content, "Hello again");
    assert_eq!(out.model, "chatty");
    assert_eq!((out.input_tokens, out.output_tokens), (4, 2));
    assert_eq!(
        sent_messages(&fake, "chatty"),
        vec![vec!["system: Be brief.", "user: Hi"]]
    );

    // Two chained chat tasks: each call leads with its own instruction.
    fake.script("first", Reply::text("One").usage(1, 1));
    fake.script("second", Reply::text("Two").usage(1, 1));
    let mut first = with_models(task("first", "model_execution", vec![]), &["first"]);
    first.system_instruction = "You are the first.".into();
    first.transition = then("second");
    let mut second = with_models(task("second", "model_execution", vec![]), &["second"]);
    second.system_instruction = "You are the second.".into();
    let response = execute(&server, chain("two-chats", vec![first, second]), history).await;
    let Some(pb::Value {
        kind: Some(pb::value::Kind::ChatHistory(out)),
    }) = response.output
    else {
        panic!("a chat history comes out: {:?}", response.output);
    };
    let messages: Vec<(&str, &str)> = out
        .messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        messages,
        vec![("user", "Hi"), ("assistant", "One"), ("assistant", "Two")]
    );
    assert_eq!(
        sent_messages(&fake, "first"),
        vec![vec!["system: You are the first.", "user: Hi"]]
    );
    assert_eq!(
        sent_messages(&fake, "second"),
        vec![vec![
            "system: You are the second.",
            "user: Hi",
            "assistant: One"
        ]]
    );
}

/// The chat messages of every request `fake` received for `model`, each
/// as `role: content`.
fn sent_messages(fake: &FakeLlm, model: &str) -> Vec<Vec<String>> {
    fake.requests()
        .iter()
        .filter(|request| request.body["model"] == model)
        .map(|request| {
            request.body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{}: {}",
                        m["role"].as_str().unwrap_or_default(),
                        m["content"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .collect()
}

/// A one-shot HTTP server answering every request with `body`; returns its
/// URL and a channel of the raw requests it received.
async fn hook_server(
    status: u16,
    body: &'static str,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buffer.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = sender.send(String::from_utf8_lossy(&buffer).into_owned());
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, receiver)
}

async fn hooks_are_called_with_input_and_args(server: TestServer) {
    let (url, mut received) = hook_server(200, r#"{"results": ["doc-1"]}"#).await;
    server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: "search".into(),
                url,
                timeout: Some(prost_types::Duration {
                    seconds: 5,
                    nanos: 0,
                }),
                secret_headers: [(
                    "Authorization".to_string(),
                    "Bearer hook-secret".to_string(),
                )]
                .into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut call = task("lookup", "hook", vec![]);
    call.hook = Some(pb::HookCall {
        name: "search".into(),
        args: [("query".to_string(), "about {{ input }}".to_string())].into(),
    });
    let response = execute(
        &server,
        one_task_chain("hooked", call.clone()),
        text_value("rust"),
    )
    .await;
    assert_eq!(response.output_type, pb::ValueType::Json as i32);
    let request = received.recv().await.unwrap();
    assert!(request.starts_with("POST /hook"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer hook-secret")
    );
    assert!(request.contains(r#""query":"about rust""#), "{request}");
    assert!(request.contains(r#""input":"rust""#), "{request}");

    let (url, _received) = hook_server(404, r#"{"error": "nope"}"#).await;
    server
        .hooks()
        .update_hook(pb::UpdateHookRequest {
            hook: Some(pb::Hook {
                name: "search".into(),
                url,
                ..Default::default()
            }),
            update_mask: vec!["url".into()],
            etag: String::new(),
        })
        .await
        .unwrap();
    let response = execute(&server, one_task_chain("hooked", call), text_value("rust")).await;
    let run = response.run.unwrap();
    assert_eq!(run.status, pb::RunStatus::Failed as i32);
    assert!(run.error.unwrap().message.contains("HTTP 404"));
}

async fn one_shot_prompt_and_embed(server: TestServer) {
    let mut backends = server.backends();
    let error = backends
        .execute_prompt(pb::ExecutePromptRequest {
            prompt: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Code::FailedPrecondition,
        "no backend configured yet"
    );
    let fake = FakeLlm::start().await;
    let backend_id = add_backend(
        &server,
        "fake",
        pb::BackendType::OpenaiCompatible,
        &fake.url(),
        0,
    )
    .await;
    fake.script("m", Reply::text("pong").usage(1, 1));
    let answer = backends
        .execute_prompt(pb::ExecutePromptRequest {
            prompt: "ping".into(),
            models: vec!["m".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.text, "pong");
    assert_eq!(answer.backend_id, backend_id);
    assert_eq!(
        answer.usage,
        Some(pb::TokenUsage {
            input_tokens: 1,
            output_tokens: 1
        })
    );
    fake.set_embedding(vec![1.0, 2.0]);
    let embedded = backends
        .embed(pb::EmbedRequest {
            text: "x".into(),
            models: vec!["e".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(embedded.vector.unwrap().values, vec![1.0, 2.0]);
    let error = backends
        .execute_prompt(pb::ExecutePromptRequest {
            prompt: String::new(),
            temperature: Some(7.0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["prompt", "temperature"]);
}

async fn token_limit_stops_a_run(server: TestServer) {
    let fake = FakeLlm::start().await;
    add_backend(
        &server,
        "fake",
        pb::BackendType::OpenaiCompatible,
        &fake.url(),
        0,
    )
    .await;
    fake.set_default_reply(Reply::text("words").usage(6, 4));
    let mut chain = pb::Chain {
        id: "budget".into(),
        tasks: vec![
            with_models(
                task(
                    "first",
                    "raw_string",
                    vec![branch("default", "", goto("second"))],
                ),
                &["m"],
            ),
            with_models(
                task(
                    "second",
                    "raw_string",
                    vec![branch("default", "", goto("third"))],
                ),
                &["m"],
            ),
            with_models(task("third", "raw_string", vec![]), &["m"]),
        ],
        ..Default::default()
    };
    chain.token_limit = 15;
    let response = execute(&server, chain, text_value("go")).await;
    let run = response.run.unwrap();
    assert_eq!(run.status, pb::RunStatus::Failed as i32);
    let error = run.error.unwrap();
    assert_eq!(error.reason, "TOKEN_LIMIT_EXCEEDED");
    assert_eq!(error.task_id, "second");
    assert_eq!(
        run.usage,
        Some(pb::TokenUsage {
            input_tokens: 12,
            output_tokens: 8
        })
    );
}
