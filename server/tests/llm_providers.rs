//! The LLM provider clients against the scripted fake provider server
//! (`taskloom_testkit::fake_llm`), over real HTTP: every provider's chat
//! (plain and streamed), embeddings, model listing, auth, error
//! classification, timeouts and cancellation.

use std::time::Duration;

use serde_json::json;
use taskloom_server::llm::{
    ChatMessage, ChatRequest, ChatResponse, EmbedRequest, ErrorKind, Provider, ProviderError,
    ProviderOptions, TokenUsage, cancellable, http_client, provider_for, provider_with_options,
};
use taskloom_testkit::fake_llm::{FakeLlm, RecordedRequest, Reply};
use tokio::sync::mpsc;

const BACKENDS: [&str; 5] = [
    "ollama",
    "openai",
    "openai_compatible",
    "gemini",
    "anthropic",
];
const EMBEDDING_BACKENDS: [&str; 4] = ["ollama", "openai", "openai_compatible", "gemini"];
const MODEL: &str = "test-model";
const KEY: &str = "sk-very-secret-key-123";
const TIMEOUT: Duration = Duration::from_secs(10);

fn provider(fake: &FakeLlm, backend: &str, key: Option<&str>) -> Box<dyn Provider> {
    provider_with_timeout(fake, backend, key, TIMEOUT)
}

fn provider_with_timeout(
    fake: &FakeLlm,
    backend: &str,
    key: Option<&str>,
    timeout: Duration,
) -> Box<dyn Provider> {
    provider_for(backend, &fake.url(), key, timeout, http_client().unwrap()).unwrap()
}

fn chat_request() -> ChatRequest {
    ChatRequest {
        model: MODEL.to_string(),
        messages: vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello."),
            ChatMessage::user("Say hello again"),
        ],
        temperature: Some(0.5),
        max_tokens: None,
    }
}

fn chat_path(backend: &str, stream: bool) -> String {
    match backend {
        "ollama" => "/api/chat".into(),
        "openai" | "openai_compatible" => "/v1/chat/completions".into(),
        "gemini" if stream => format!("/v1beta/models/{MODEL}:streamGenerateContent"),
        "gemini" => format!("/v1beta/models/{MODEL}:generateContent"),
        "anthropic" => "/v1/messages".into(),
        other => panic!("no chat path for {other}"),
    }
}

fn finish_reason(backend: &str) -> &'static str {
    match backend {
        "gemini" => "STOP",
        "anthropic" => "end_turn",
        _ => "stop",
    }
}

fn only_request(fake: &FakeLlm) -> RecordedRequest {
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    requests.into_iter().next().unwrap()
}

/// Runs a streamed chat and collects the deltas as the provider sent them.
async fn streamed_chat(
    provider: &dyn Provider,
    request: &ChatRequest,
) -> (Result<ChatResponse, ProviderError>, Vec<String>) {
    // Capacity 1: the provider must wait for the reader, not drop deltas.
    let (sender, mut receiver) = mpsc::channel(1);
    let collect = async move {
        let mut deltas = vec![];
        while let Some(delta) = receiver.recv().await {
            deltas.push(delta);
        }
        deltas
    };
    tokio::join!(provider.chat(request, Some(sender)), collect)
}

#[tokio::test]
async fn chat_returns_content_usage_and_model() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        fake.script(MODEL, Reply::text("Hello there.").usage(7, 3));
        let response = provider(&fake, backend, None)
            .chat(&chat_request(), None)
            .await
            .unwrap();
        assert_eq!(
            response,
            ChatResponse {
                content: "Hello there.".into(),
                model: MODEL.into(),
                usage: TokenUsage {
                    input_tokens: 7,
                    output_tokens: 3
                },
                finish_reason: Some(finish_reason(backend).into()),
            },
            "{backend}"
        );
        assert_eq!(fake.completed_count(), 1, "{backend}");
        assert_eq!(fake.cancelled_count(), 0, "{backend}");
        let request = only_request(&fake);
        assert_eq!(request.method, "POST", "{backend}");
        assert_eq!(request.path, chat_path(backend, false), "{backend}");
    }
}

#[tokio::test]
async fn chat_requests_follow_each_wire_format() {
    let fake = FakeLlm::start().await;
    let mut request = chat_request();
    request.max_tokens = Some(50);
    for backend in BACKENDS {
        provider(&fake, backend, None)
            .chat(&request, None)
            .await
            .unwrap();
    }
    let bodies: Vec<_> = fake.requests().into_iter().map(|r| r.body).collect();
    let openai_messages = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Say hello again"},
    ]);
    assert_eq!(
        bodies[0],
        json!({
            "model": MODEL, "messages": openai_messages, "stream": false,
            "options": {"temperature": 0.5, "num_predict": 50},
        })
    );
    // OpenAI itself gets `max_completion_tokens`, compatible servers
    // `max_tokens`.
    assert_eq!(
        bodies[1],
        json!({
            "model": MODEL, "messages": openai_messages, "stream": false,
            "temperature": 0.5, "max_completion_tokens": 50,
        })
    );
    assert_eq!(
        bodies[2],
        json!({
            "model": MODEL, "messages": openai_messages, "stream": false,
            "temperature": 0.5, "max_tokens": 50,
        })
    );
    assert_eq!(
        bodies[3],
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello."}]},
                {"role": "user", "parts": [{"text": "Say hello again"}]},
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"temperature": 0.5, "maxOutputTokens": 50},
        })
    );
    assert_eq!(
        bodies[4],
        json!({
            "model": MODEL, "max_tokens": 50, "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Say hello again"},
            ],
            "temperature": 0.5, "stream": false,
        })
    );

    // Anthropic requires max_tokens: a default fills in.
    let fake = FakeLlm::start().await;
    provider(&fake, "anthropic", None)
        .chat(&chat_request(), None)
        .await
        .unwrap();
    assert_eq!(only_request(&fake).body["max_tokens"], 1024);
}

#[tokio::test]
async fn streamed_chat_delivers_deltas_in_order_with_usage() {
    let chunks = ["Hel", "lo, ", "wor", "ld", "!"];
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        fake.script(
            MODEL,
            Reply::chunks(chunks)
                .usage(11, 5)
                .chunk_delay(Duration::from_millis(5)),
        );
        let provider = provider(&fake, backend, None);
        let (response, deltas) = streamed_chat(provider.as_ref(), &chat_request()).await;
        let response = response.unwrap();
        assert_eq!(deltas, chunks, "{backend}");
        assert_eq!(response.content, deltas.concat(), "{backend}");
        assert_eq!(
            response.usage,
            TokenUsage {
                input_tokens: 11,
                output_tokens: 5
            },
            "{backend}"
        );
        assert_eq!(response.model, MODEL, "{backend}");
        assert_eq!(
            response.finish_reason.as_deref(),
            Some(finish_reason(backend)),
            "{backend}"
        );

        let request = only_request(&fake);
        assert_eq!(request.path, chat_path(backend, true), "{backend}");
        match backend {
            "gemini" => assert_eq!(request.query.as_deref(), Some("alt=sse")),
            "openai" | "openai_compatible" => {
                assert_eq!(request.body["stream"], true);
                assert_eq!(request.body["stream_options"]["include_usage"], true);
            }
            _ => assert_eq!(request.body["stream"], true, "{backend}"),
        }
    }
}

#[tokio::test]
async fn streamed_chat_survives_a_closed_receiver() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        fake.script(MODEL, Reply::text("one two three").usage(1, 3));
        let (sender, receiver) = mpsc::channel(1);
        drop(receiver);
        let response = provider(&fake, backend, None)
            .chat(&chat_request(), Some(sender))
            .await
            .unwrap();
        assert_eq!(response.content, "one two three", "{backend}");
        assert_eq!(response.usage.output_tokens, 3, "{backend}");
    }
}

#[tokio::test]
async fn embed_returns_the_vector() {
    let request = EmbedRequest {
        model: MODEL.into(),
        input: "embed me".into(),
    };
    for backend in EMBEDDING_BACKENDS {
        let fake = FakeLlm::start().await;
        fake.set_embedding(vec![0.25, -1.5, 3.0]);
        fake.script(MODEL, Reply::text("").usage(4, 0));
        let response = provider(&fake, backend, None)
            .embed(&request)
            .await
            .unwrap();
        assert_eq!(response.vector, vec![0.25, -1.5, 3.0], "{backend}");
        assert_eq!(response.model, MODEL, "{backend}");
        let sent = only_request(&fake);
        match backend {
            "ollama" => {
                assert_eq!(sent.path, "/api/embed");
                assert_eq!(sent.body, json!({"model": MODEL, "input": "embed me"}));
                assert_eq!(response.usage.input_tokens, 4);
            }
            "gemini" => {
                assert_eq!(sent.path, format!("/v1beta/models/{MODEL}:embedContent"));
                assert_eq!(
                    sent.body,
                    json!({"model": format!("models/{MODEL}"), "content": {"parts": [{"text": "embed me"}]}})
                );
            }
            _ => {
                assert_eq!(sent.path, "/v1/embeddings", "{backend}");
                assert_eq!(sent.body, json!({"model": MODEL, "input": "embed me"}));
                assert_eq!(response.usage.input_tokens, 4, "{backend}");
            }
        }
    }

    let fake = FakeLlm::start().await;
    let error = provider(&fake, "anthropic", None)
        .embed(&request)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(error.message.contains("unsupported"), "{error}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn list_models_reports_names_usable_in_requests() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        fake.set_models(["alpha", "beta:7b"]);
        let models = provider(&fake, backend, None).list_models().await.unwrap();
        let names: Vec<&str> = models.iter().map(|model| model.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta:7b"], "{backend}");
        // Ollama also asks `/api/show` for each model's details.
        let request = fake.requests().remove(0);
        assert_eq!(request.method, "GET");
        let path = match backend {
            "ollama" => "/api/tags",
            "gemini" => "/v1beta/models",
            _ => "/v1/models",
        };
        assert_eq!(request.path, path, "{backend}");
    }
}

#[tokio::test]
async fn api_keys_travel_in_each_providers_header() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        let provider = provider(&fake, backend, Some(KEY));
        provider.chat(&chat_request(), None).await.unwrap();
        provider.list_models().await.unwrap();
        for request in fake.requests() {
            let (header, value) = match backend {
                "gemini" => ("x-goog-api-key", KEY.to_string()),
                "anthropic" => ("x-api-key", KEY.to_string()),
                _ => ("authorization", format!("Bearer {KEY}")),
            };
            assert_eq!(request.header(header), Some(value.as_str()), "{backend}");
            if backend == "anthropic" {
                assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
            }
            // Never in the URL.
            assert!(!request.query.unwrap_or_default().contains(KEY));
        }

        // Without a key, no auth header at all.
        let fake = FakeLlm::start().await;
        provider_for(backend, &fake.url(), None, TIMEOUT, http_client().unwrap())
            .unwrap()
            .list_models()
            .await
            .unwrap();
        // (Ollama's listing also asks `/api/show` for each model.)
        for request in fake.requests() {
            for header in ["authorization", "x-goog-api-key", "x-api-key"] {
                assert_eq!(request.header(header), None, "{backend} {header}");
            }
        }
    }
}

#[tokio::test]
async fn error_messages_never_contain_the_key() {
    let echoing_body =
        json!({"error": {"message": format!("Incorrect API key provided: {KEY}")}}).to_string();
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        fake.script(MODEL, Reply::error(401, &echoing_body));
        fake.script(FakeLlm::LIST_MODELS, Reply::error(403, &echoing_body));
        let provider = provider(&fake, backend, Some(KEY));
        for error in [
            provider.chat(&chat_request(), None).await.unwrap_err(),
            provider.list_models().await.unwrap_err(),
        ] {
            assert_eq!(error.kind, ErrorKind::Fatal, "{backend}: {error}");
            assert!(!error.message.contains(KEY), "{backend}: {error}");
            assert!(!format!("{error:?}").contains(KEY), "{backend}: {error:?}");
            assert!(error.message.contains("[REDACTED]"), "{backend}: {error}");
        }

        // Connection failures too.
        let refused = provider_for(
            backend,
            &format!("http://127.0.0.1:{}", taskloom_testkit::free_port()),
            Some(KEY),
            TIMEOUT,
            http_client().unwrap(),
        )
        .unwrap();
        let error = refused.chat(&chat_request(), None).await.unwrap_err();
        assert!(!format!("{error:?}").contains(KEY), "{backend}: {error:?}");
    }
}

#[tokio::test]
async fn http_errors_are_classified_by_status() {
    let cases = [
        (500, ErrorKind::Retryable),
        (503, ErrorKind::Retryable),
        (429, ErrorKind::Retryable),
        (408, ErrorKind::Retryable),
        (409, ErrorKind::Retryable),
        (400, ErrorKind::Fatal),
        (401, ErrorKind::Fatal),
        (404, ErrorKind::Fatal),
    ];
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        let provider = provider(&fake, backend, None);
        for (status, kind) in cases {
            let body = json!({"error": {"message": format!("scripted {status}")}}).to_string();
            fake.script(MODEL, Reply::error(status, body));
            let error = provider.chat(&chat_request(), None).await.unwrap_err();
            assert_eq!(error.kind, kind, "{backend} {status}: {error}");
            assert_eq!(error.is_retryable(), kind == ErrorKind::Retryable);
            assert_eq!(error.status, Some(status), "{backend}");
            // The provider's own explanation is kept.
            assert!(
                error.message.contains(&format!("scripted {status}")),
                "{error}"
            );
        }
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let url = format!("http://127.0.0.1:{}", taskloom_testkit::free_port());
    for backend in BACKENDS {
        let provider = provider_for(backend, &url, None, TIMEOUT, http_client().unwrap()).unwrap();
        let error = provider.chat(&chat_request(), None).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Retryable, "{backend}: {error}");
        assert_eq!(error.status, None);
        let error = provider.list_models().await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Retryable, "{backend}: {error}");
    }
}

#[tokio::test]
async fn malformed_answers_are_fatal() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        let provider = provider(&fake, backend, None);
        fake.script(MODEL, Reply::malformed());
        let error = provider.chat(&chat_request(), None).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Fatal, "{backend}: {error}");
        assert!(error.message.contains("malformed"), "{error}");

        fake.script(MODEL, Reply::malformed());
        let (result, _) = streamed_chat(provider.as_ref(), &chat_request()).await;
        let error = result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Fatal, "{backend} streamed: {error}");

        fake.script(FakeLlm::LIST_MODELS, Reply::malformed());
        let error = provider.list_models().await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Fatal, "{backend}: {error}");
    }
    for backend in EMBEDDING_BACKENDS {
        let fake = FakeLlm::start().await;
        fake.script(MODEL, Reply::malformed());
        let request = EmbedRequest {
            model: MODEL.into(),
            input: "x".into(),
        };
        let error = provider(&fake, backend, None)
            .embed(&request)
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Fatal, "{backend}: {error}");
    }
}

#[tokio::test]
async fn truncated_streams_are_retryable() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        let provider = provider(&fake, backend, None);
        // A clean end without the final event, and a broken connection.
        for reply in [Reply::truncated, Reply::cut_connection] {
            fake.script(MODEL, reply(Reply::chunks(["partial ", "answer"])));
            let (result, deltas) = streamed_chat(provider.as_ref(), &chat_request()).await;
            let error = result.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Retryable, "{backend}: {error}");
            assert_eq!(deltas, ["partial ", "answer"], "{backend}");
        }
    }
}

#[tokio::test]
async fn timeout_is_retryable_and_cancels_the_request() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        let provider = provider_with_timeout(&fake, backend, None, Duration::from_millis(800));

        // Waiting for the headers.
        fake.script(MODEL, Reply::text("late").delay(Duration::from_secs(30)));
        let started = std::time::Instant::now();
        let error = provider.chat(&chat_request(), None).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(error.kind, ErrorKind::Retryable, "{backend}: {error}");
        assert!(
            fake.wait_for_cancelled(1, Duration::from_secs(5)).await,
            "{backend}: the fake never saw the client go away"
        );

        // In the middle of a stream.
        fake.script(
            MODEL,
            Reply::chunks(["first", "never"]).chunk_delay(Duration::from_millis(500)),
        );
        let (result, deltas) = streamed_chat(provider.as_ref(), &chat_request()).await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::Retryable, "{backend}");
        assert_eq!(deltas, ["first"], "{backend}");
        assert!(
            fake.wait_for_cancelled(2, Duration::from_secs(5)).await,
            "{backend}: the fake never saw the streamed request cancelled"
        );
        assert_eq!(fake.in_flight(), 0, "{backend}");
        assert_eq!(fake.completed_count(), 0, "{backend}");
    }
}

#[tokio::test]
async fn dropping_the_call_cancels_the_request() {
    for backend in BACKENDS {
        let fake = FakeLlm::start().await;
        fake.script(MODEL, Reply::text("never").delay(Duration::from_secs(30)));
        let provider = provider(&fake, backend, None);
        let request = chat_request();
        // The caller's own deadline drops the call future.
        let outcome =
            tokio::time::timeout(Duration::from_millis(200), provider.chat(&request, None)).await;
        assert!(outcome.is_err(), "{backend}");
        assert!(
            fake.wait_for_cancelled(1, Duration::from_secs(5)).await,
            "{backend}"
        );

        // `cancellable` does the same and says so.
        fake.script(MODEL, Reply::text("never").delay(Duration::from_secs(30)));
        let error = cancellable(
            provider.chat(&request, None),
            tokio::time::sleep(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Cancelled, "{backend}");
        assert!(
            fake.wait_for_cancelled(2, Duration::from_secs(5)).await,
            "{backend}"
        );
        assert_eq!(fake.in_flight(), 0, "{backend}");
    }
}

#[tokio::test]
async fn base_urls_work_with_or_without_the_version_suffix() {
    let fake = FakeLlm::start().await;
    let cases = [
        ("ollama", "/"),
        ("openai", "/v1"),
        ("openai", "/v1/"),
        ("openai_compatible", "/v1"),
        ("gemini", "/v1beta"),
        ("anthropic", "/v1/"),
    ];
    for (backend, suffix) in cases {
        let base = format!("{}{suffix}", fake.url());
        let provider = provider_for(backend, &base, None, TIMEOUT, http_client().unwrap()).unwrap();
        provider.chat(&chat_request(), None).await.unwrap();
        let last = fake.requests().pop().unwrap();
        assert_eq!(last.path, chat_path(backend, false), "{backend} {base}");
    }
}

#[tokio::test]
async fn bad_configuration_is_fatal() {
    let client = http_client().unwrap();
    let build = |backend: &str, base: &str, key: Option<&str>| {
        provider_for(backend, base, key, TIMEOUT, client.clone())
            .err()
            .map(|error| (error.kind, error.message))
    };
    let (kind, message) = build("mystery", "http://127.0.0.1:1", None).unwrap();
    assert_eq!(kind, ErrorKind::Fatal);
    assert!(message.contains("mystery"), "{message}");
    // Only openai_compatible has no public default endpoint.
    assert!(build("openai_compatible", "", None).is_some());
    assert!(build("openai", "", None).is_none());
    assert!(build("ollama", "not a url", None).is_some());
    assert!(build("gemini", "ftp://example.com", None).is_some());
    let (_, message) = build("anthropic", "http://127.0.0.1:1", Some("bad\nkey")).unwrap();
    assert!(!message.contains("bad\nkey"), "{message}");

    // A Gemini model name goes into the URL path and may not reshape it.
    let fake = FakeLlm::start().await;
    let mut request = chat_request();
    request.model = "../files?x=".into();
    let error = provider(&fake, "gemini", None)
        .chat(&request, None)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(fake.requests().is_empty());
}

/// The OpenAI-wire presets (each a compatible server with its own default
/// base URL and conventions).
const PRESETS: [&str; 4] = ["openrouter", "mistral", "vllm", "lm_studio"];

fn prompt_text(request: &ChatRequest) -> String {
    request
        .messages
        .iter()
        .map(|message| message.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Four characters a token, rounded up: the documented estimate.
fn estimated_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn chat_requests(fake: &FakeLlm) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|request| request.path == "/v1/chat/completions")
        .collect()
}

#[tokio::test]
async fn stream_usage_missing_is_counted_with_the_servers_tokenizer() {
    // llama.cpp's server and vLLM at /tokenize, llama-cpp-python at
    // /extras/tokenize.
    for path in ["/tokenize", "/extras/tokenize"] {
        let fake = FakeLlm::start().await;
        fake.omit_stream_usage().serve_tokenize(path);
        fake.script(MODEL, Reply::chunks(["one two ", "three"]).usage(50, 60));
        let provider = provider(&fake, "openai_compatible", None);
        let request = chat_request();
        let (response, deltas) = streamed_chat(provider.as_ref(), &request).await;
        let response = response.unwrap();
        assert_eq!(deltas.concat(), "one two three", "{path}");
        assert_eq!(
            response.usage,
            TokenUsage {
                input_tokens: FakeLlm::token_count(&prompt_text(&request)),
                output_tokens: 3,
            },
            "{path}"
        );
        // The model was called once; the counting asked the tokenizer.
        assert_eq!(chat_requests(&fake).len(), 1, "{path}");
        let tokenized: Vec<RecordedRequest> = fake
            .requests()
            .into_iter()
            .filter(|request| request.path == path)
            .collect();
        assert_eq!(tokenized.len(), 2, "{path}: prompt and answer");
        assert_eq!(tokenized[0].body["model"], MODEL, "{path}");
    }
}

#[tokio::test]
async fn stream_usage_missing_without_a_tokenizer_is_estimated() {
    let fake = FakeLlm::start().await;
    fake.omit_stream_usage();
    fake.script(MODEL, Reply::chunks(["one two ", "three"]).usage(50, 60));
    let provider = provider(&fake, "openai_compatible", None);
    let request = chat_request();
    let (response, _) = streamed_chat(provider.as_ref(), &request).await;
    let usage = response.unwrap().usage;
    assert_eq!(
        usage,
        TokenUsage {
            input_tokens: estimated_tokens(&prompt_text(&request)),
            output_tokens: estimated_tokens("one two three"),
        }
    );
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    assert_eq!(
        chat_requests(&fake).len(),
        1,
        "the model is never asked twice"
    );
}

#[tokio::test]
async fn reported_usage_is_taken_as_is() {
    // A server that reports usage is never asked to tokenize.
    let fake = FakeLlm::start().await;
    fake.serve_tokenize("/tokenize");
    fake.script(MODEL, Reply::chunks(["a ", "b"]).usage(9, 2));
    fake.script(MODEL, Reply::text("c d").usage(4, 2));
    let provider = provider(&fake, "openai_compatible", None);
    let (streamed, _) = streamed_chat(provider.as_ref(), &chat_request()).await;
    assert_eq!(
        streamed.unwrap().usage,
        TokenUsage {
            input_tokens: 9,
            output_tokens: 2
        }
    );
    let plain = provider.chat(&chat_request(), None).await.unwrap();
    assert_eq!(
        plain.usage,
        TokenUsage {
            input_tokens: 4,
            output_tokens: 2
        }
    );
    assert!(fake.requests().iter().all(|r| r.path != "/tokenize"));
}

#[tokio::test]
async fn omit_stream_options_never_sends_the_field() {
    let fake = FakeLlm::start().await;
    fake.reject_stream_options().serve_tokenize("/tokenize");
    fake.script(MODEL, Reply::chunks(["x ", "y"]).usage(5, 2));
    // Without the option such a server refuses streamed calls.
    let (refused, _) = streamed_chat(
        provider(&fake, "openai_compatible", None).as_ref(),
        &chat_request(),
    )
    .await;
    assert_eq!(refused.unwrap_err().status, Some(400));

    for backend in [
        "openai",
        "openai_compatible",
        "openrouter",
        "vllm",
        "lm_studio",
    ] {
        let fake = FakeLlm::start().await;
        fake.reject_stream_options().serve_tokenize("/tokenize");
        fake.script(MODEL, Reply::chunks(["x ", "y"]).usage(5, 2));
        let provider = provider_with_options(
            backend,
            &fake.url(),
            None,
            TIMEOUT,
            http_client().unwrap(),
            ProviderOptions {
                omit_stream_options: true,
            },
        )
        .unwrap();
        let (response, deltas) = streamed_chat(provider.as_ref(), &chat_request()).await;
        let response = response.unwrap();
        assert_eq!(deltas.concat(), "x y", "{backend}");
        // The stream carried no usage (nobody asked): the tokenizer counted.
        assert_eq!(response.usage.output_tokens, 2, "{backend}");
        let request = &chat_requests(&fake)[0];
        assert_eq!(request.body["stream"], true, "{backend}");
        assert!(
            request.body.get("stream_options").is_none(),
            "{backend}: {}",
            request.body
        );
    }
}

#[tokio::test]
async fn a_call_without_a_listener_is_a_plain_request() {
    for backend in ["openai", "openai_compatible"].into_iter().chain(PRESETS) {
        let fake = FakeLlm::start().await;
        fake.script(MODEL, Reply::text("plain answer").usage(3, 2));
        let provider = provider(&fake, backend, None);
        let response = provider.chat(&chat_request(), None).await.unwrap();
        assert_eq!(response.content, "plain answer", "{backend}");
        assert_eq!(response.usage.input_tokens, 3, "{backend}");
        let request = only_request(&fake);
        assert_eq!(request.path, "/v1/chat/completions", "{backend}");
        assert_eq!(request.body["stream"], false, "{backend}");
        assert!(request.body.get("stream_options").is_none(), "{backend}");
    }
}

#[tokio::test]
async fn presets_speak_the_openai_wire_with_their_conventions() {
    for preset in PRESETS {
        let fake = FakeLlm::start().await;
        fake.script(MODEL, Reply::chunks(["p ", "q"]).usage(6, 2));
        // The default base URLs are remote: the fake stands in explicitly.
        let provider = provider(&fake, preset, Some(KEY));
        let (response, deltas) = streamed_chat(provider.as_ref(), &chat_request()).await;
        let response = response.unwrap();
        assert_eq!(deltas.concat(), "p q", "{preset}");
        let requests = chat_requests(&fake);
        assert_eq!(requests.len(), 1, "{preset}");
        let request = &requests[0];
        assert_eq!(request.path, "/v1/chat/completions", "{preset}");
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {KEY}").as_str()),
            "{preset}"
        );
        // Compatible servers know `max_tokens` only.
        assert!(request.body.get("max_completion_tokens").is_none());
        match preset {
            "openrouter" => assert_eq!(request.header("x-title"), Some("Taskloom")),
            _ => assert_eq!(request.header("x-title"), None, "{preset}"),
        }
        if preset == "mistral" {
            // Mistral refuses unknown fields and reports usage unasked.
            assert!(request.body.get("stream_options").is_none());
        } else {
            assert_eq!(request.body["stream_options"]["include_usage"], true);
            assert_eq!(response.usage.input_tokens, 6, "{preset}");
        }
    }
    // vLLM without --api-key and LM Studio take no key: none is sent.
    for preset in ["vllm", "lm_studio"] {
        let fake = FakeLlm::start().await;
        provider(&fake, preset, None)
            .chat(&chat_request(), None)
            .await
            .unwrap();
        assert_eq!(
            only_request(&fake).header("authorization"),
            None,
            "{preset}"
        );
    }
}
