//! A scripted fake LLM provider: a real HTTP server on 127.0.0.1 (random
//! port) that speaks the Ollama, OpenAI, Gemini and Anthropic wire formats on
//! their usual paths, so provider clients can be tested end to end.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use taskloom_testkit::fake_llm::{FakeLlm, Reply};
//!
//! let fake = FakeLlm::start().await;
//! fake.script("llama3", Reply::chunks(["Hel", "lo"]).usage(3, 5).delay(Duration::from_millis(10)));
//! fake.script("llama3", Reply::error(429, r#"{"error":"slow down"}"#));
//! // ... point a client at fake.url() ...
//! assert_eq!(fake.requests()[0].path, "/api/chat");
//! assert!(fake.wait_for_cancelled(1, Duration::from_secs(5)).await);
//! # }
//! ```
//!
//! Chat and embed requests take the next reply scripted for their model (from
//! the JSON body, or the URL for Gemini); model listings take replies scripted
//! under [`FakeLlm::LIST_MODELS`]. An empty queue yields the default reply
//! (`Reply::text("ok").usage(1, 1)` unless changed). Whether a chat is streamed
//! follows the request, as each real provider decides it.
//!
//! Every request is recorded. The server also counts requests in flight and
//! requests whose client went away before the reply was finished, which is how
//! a test proves that a timeout or a dropped future cancelled the HTTP call.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

mod fleet;
pub use fleet::Pull;
use fleet::{ollama_fleet_route, with_model_details};

/// One scripted answer. Build with [`Reply::text`], [`Reply::chunks`],
/// [`Reply::error`] or [`Reply::malformed`], then adjust with the builder
/// methods.
#[derive(Clone, Debug)]
pub struct Reply {
    chunks: Vec<String>,
    input_tokens: u64,
    output_tokens: u64,
    delay: Duration,
    chunk_delay: Duration,
    error: Option<(u16, String)>,
    malformed: bool,
    truncated: bool,
    cut_connection: bool,
    /// `Retry-After` sent with an error reply.
    retry_after: Option<String>,
}

impl Reply {
    /// A successful reply; streamed one word (with its trailing space) per
    /// chunk.
    pub fn text(text: impl Into<String>) -> Self {
        let text = text.into();
        let chunks = text
            .split_inclusive(' ')
            .map(str::to_string)
            .collect::<Vec<_>>();
        Self::chunks(chunks)
    }

    /// A successful reply streamed as exactly these chunks; the full text is
    /// their concatenation.
    pub fn chunks<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Reply {
            chunks: chunks.into_iter().map(Into::into).collect(),
            input_tokens: 0,
            output_tokens: 0,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            error: None,
            malformed: false,
            truncated: false,
            cut_connection: false,
            retry_after: None,
        }
    }

    /// Sends `Retry-After: VALUE` (delay seconds or an HTTP date) with an
    /// error reply.
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// An HTTP error with this status and body (sent as JSON).
    pub fn error(status: u16, body: impl Into<String>) -> Self {
        Reply {
            error: Some((status, body.into())),
            ..Self::chunks(Vec::<String>::new())
        }
    }

    /// A 200 whose body (or first stream event) is not valid JSON.
    pub fn malformed() -> Self {
        Reply {
            malformed: true,
            ..Self::chunks(Vec::<String>::new())
        }
    }

    /// Token usage to report.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    /// Wait this long before sending the response headers.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// When streamed, wait this long before each chunk.
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// When streamed, send the chunks and end the stream cleanly without the
    /// provider's final event (no usage, no end marker).
    pub fn truncated(mut self) -> Self {
        self.truncated = true;
        self
    }

    /// When streamed, send the chunks and then break the connection
    /// mid-response (no final event, no clean end of the body).
    pub fn cut_connection(mut self) -> Self {
        self.truncated = true;
        self.cut_connection = true;
        self
    }

    fn full_text(&self) -> String {
        self.chunks.concat()
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower case.
    pub headers: BTreeMap<String, String>,
    /// The JSON body; `Value::Null` when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// A header's value by (lower case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Shared {
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    default_reply: Mutex<Option<Reply>>,
    models: Mutex<Vec<String>>,
    embedding: Mutex<Vec<f32>>,
    requests: Mutex<Vec<RecordedRequest>>,
    in_flight: AtomicUsize,
    cancelled: AtomicUsize,
    completed: AtomicUsize,
    /// Chat and embed calls whose reply is still being produced, the most
    /// there ever were at once, and when each arrived.
    calls_in_flight: AtomicUsize,
    max_calls_in_flight: AtomicUsize,
    call_times: Mutex<Vec<Instant>>,
    /// When each streamed chunk sent after a pause (`chunk_delay`) left.
    chunk_times: Mutex<Vec<Instant>>,
    /// Per model: calls in flight now and the most at once.
    model_calls: Mutex<HashMap<String, (usize, usize)>>,
    /// OpenAI streams carry no usage, even when asked (llama.cpp's server).
    no_stream_usage: std::sync::atomic::AtomicBool,
    /// OpenAI chats with `stream_options` are refused with 400.
    rejects_stream_options: std::sync::atomic::AtomicBool,
    /// Paths answering `POST {"content"|"prompt"|"input": text}` with
    /// `{"tokens": [...]}`, one token per whitespace-separated word.
    tokenize_paths: Mutex<Vec<String>>,
    /// Extra fields of a model's listing entry, by model name.
    model_details: Mutex<HashMap<String, Value>>,
    /// Ollama `/api/show` answers, by model name (404 for others).
    shows: Mutex<HashMap<String, Value>>,
    /// Scripted `/api/pull` answers, by model name.
    pulls: Mutex<HashMap<String, VecDeque<Pull>>>,
    pulls_in_flight: AtomicUsize,
    max_pulls_in_flight: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn next_reply(&self, key: &str) -> Reply {
        lock(&self.scripts)
            .get_mut(key)
            .and_then(VecDeque::pop_front)
            .or_else(|| lock(&self.default_reply).clone())
            .unwrap_or_else(|| Reply::text("ok").usage(1, 1))
    }
}

/// The running fake server; stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeLlm {
    /// Script key for replies to model-listing requests.
    pub const LIST_MODELS: &'static str = "<list models>";

    /// Starts the server on a random loopback port. Defaults: models
    /// `["fake-model"]`, embedding `[0.1, 0.2, 0.3]`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the fake LLM");
        let addr = listener.local_addr().expect("fake LLM local address");
        let shared = Arc::new(Shared::default());
        *lock(&shared.models) = vec!["fake-model".to_string()];
        *lock(&shared.embedding) = vec![0.1, 0.2, 0.3];
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeLlm {
            addr,
            shared,
            server,
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a reply for the next request naming `model`.
    pub fn script(&self, model: &str, reply: Reply) -> &Self {
        lock(&self.shared.scripts)
            .entry(model.to_string())
            .or_default()
            .push_back(reply);
        self
    }

    /// The reply used when a model's queue is empty.
    pub fn set_default_reply(&self, reply: Reply) {
        *lock(&self.shared.default_reply) = Some(reply);
    }

    /// The models every listing endpoint reports.
    pub fn set_models<I: IntoIterator<Item = S>, S: Into<String>>(&self, models: I) {
        *lock(&self.shared.models) = models.into_iter().map(Into::into).collect();
    }

    /// The vector every embedding endpoint returns.
    pub fn set_embedding(&self, vector: Vec<f32>) {
        *lock(&self.shared.embedding) = vector;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Requests whose reply is still being produced.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Requests whose client disconnected before the reply was finished.
    pub fn cancelled_count(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Requests whose reply was sent in full (errors included).
    pub fn completed_count(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Like llama.cpp's server: OpenAI-format streams carry no token usage,
    /// even with `stream_options.include_usage` (non-streamed answers
    /// still do).
    pub fn omit_stream_usage(&self) -> &Self {
        self.shared.no_stream_usage.store(true, Ordering::SeqCst);
        self
    }

    /// Like servers that know no `stream_options`: an OpenAI-format chat
    /// request carrying it is answered 400.
    pub fn reject_stream_options(&self) -> &Self {
        self.shared
            .rejects_stream_options
            .store(true, Ordering::SeqCst);
        self
    }

    /// Serves a tokenize endpoint at `path` (llama.cpp's and vLLM's
    /// `/tokenize`, llama-cpp-python's `/extras/tokenize`): the text of
    /// `content`, `prompt` or `input` has one token per
    /// whitespace-separated word (see [`FakeLlm::token_count`]).
    pub fn serve_tokenize(&self, path: &str) -> &Self {
        lock(&self.shared.tokenize_paths).push(path.to_string());
        self
    }

    /// The tokens the fake's tokenize endpoints count in `text`.
    pub fn token_count(text: &str) -> u64 {
        text.split_whitespace().count() as u64
    }

    /// Waits until at least `count` requests were cancelled by their client;
    /// false if that did not happen `within`.
    pub async fn wait_for_cancelled(&self, count: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.cancelled_count() < count {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

/// Concurrency and rate as the provider sees them: model calls (chat and
/// embed; listings are not counted).
impl FakeLlm {
    /// Model calls whose reply is still being produced.
    pub fn calls_in_flight(&self) -> usize {
        self.shared.calls_in_flight.load(Ordering::SeqCst)
    }

    /// The most model calls that were ever in flight at once.
    pub fn max_concurrent_calls(&self) -> usize {
        self.shared.max_calls_in_flight.load(Ordering::SeqCst)
    }

    /// When each model call arrived, in arrival order.
    /// When each chunk streamed after a pause (`Reply::chunk_delay`) was
    /// handed to the connection, in order; taken (the record starts over).
    pub fn take_chunk_times(&self) -> Vec<Instant> {
        std::mem::take(&mut *lock(&self.shared.chunk_times))
    }

    pub fn call_times(&self) -> Vec<Instant> {
        lock(&self.shared.call_times).clone()
    }

    /// The most calls of `model` that were ever in flight at once.
    pub fn max_concurrent_calls_of(&self, model: &str) -> usize {
        lock(&self.shared.model_calls)
            .get(model)
            .map_or(0, |(_, most)| *most)
    }

    /// The most model calls that arrived within any `window`.
    pub fn max_calls_within(&self, window: Duration) -> usize {
        let times = self.call_times();
        let mut most = 0;
        let mut start = 0;
        for (end, at) in times.iter().enumerate() {
            while at.duration_since(times[start]) >= window {
                start += 1;
            }
            most = most.max(end + 1 - start);
        }
        most
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Counts a request in flight until dropped; a drop before `finish` means
/// hyper dropped the handler or the body, i.e. the client went away.
struct Tracker {
    shared: Arc<Shared>,
    finished: bool,
    /// Counted in `calls_in_flight` until finished or dropped.
    call: bool,
    /// The model of the call, counted per model the same way.
    call_model: Option<String>,
}

impl Tracker {
    fn new(shared: Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        Tracker {
            shared,
            finished: false,
            call: false,
            call_model: None,
        }
    }

    /// Counts the request as a model call in flight.
    fn count_call(&mut self, model: &str) {
        {
            let mut models = lock(&self.shared.model_calls);
            let (now, most) = models.entry(model.to_string()).or_default();
            *now += 1;
            *most = (*most).max(*now);
        }
        self.call_model = Some(model.to_string());
        let now = self.shared.calls_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared
            .max_calls_in_flight
            .fetch_max(now, Ordering::SeqCst);
        lock(&self.shared.call_times).push(Instant::now());
        self.call = true;
    }

    /// Ends the model call before the client can see the reply's end.
    fn end_call(&mut self) {
        if std::mem::take(&mut self.call) {
            self.shared.calls_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(model) = self.call_model.take()
            && let Some((now, _)) = lock(&self.shared.model_calls).get_mut(&model)
        {
            *now -= 1;
        }
    }

    fn finish(&mut self) {
        self.end_call();
        if !self.finished {
            self.finished = true;
            self.shared.completed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.end_call();
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The wire format of a request, derived from its method and path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Ollama,
    OpenAi,
    Gemini,
    Anthropic,
}

enum Operation {
    Chat {
        api: Api,
        model: String,
        stream: bool,
    },
    Embed {
        api: Api,
        model: String,
    },
    ListModels {
        api: Api,
    },
    /// Ollama's `/api/show`.
    Show {
        model: String,
    },
    /// Ollama's `/api/pull`.
    Pull {
        model: String,
    },
}

fn classify(method: &Method, path: &str, body: &Value) -> Option<Operation> {
    let body_model = || body["model"].as_str().unwrap_or_default().to_string();
    let body_stream = body["stream"].as_bool();
    let operation = match (method.as_str(), path) {
        ("GET", "/api/tags") => Operation::ListModels { api: Api::Ollama },
        ("POST", "/api/show") => Operation::Show {
            model: body_model(),
        },
        ("POST", "/api/pull") => Operation::Pull {
            model: body_model(),
        },
        // Ollama streams unless told otherwise.
        ("POST", "/api/chat") => Operation::Chat {
            api: Api::Ollama,
            model: body_model(),
            stream: body_stream.unwrap_or(true),
        },
        ("POST", "/api/embed") => Operation::Embed {
            api: Api::Ollama,
            model: body_model(),
        },
        // Anthropic and OpenAI listings share one shape (`data[].id`).
        ("GET", "/v1/models") => Operation::ListModels { api: Api::OpenAi },
        ("POST", "/v1/chat/completions") => Operation::Chat {
            api: Api::OpenAi,
            model: body_model(),
            stream: body_stream.unwrap_or(false),
        },
        ("POST", "/v1/embeddings") => Operation::Embed {
            api: Api::OpenAi,
            model: body_model(),
        },
        ("POST", "/v1/messages") => Operation::Chat {
            api: Api::Anthropic,
            model: body_model(),
            stream: body_stream.unwrap_or(false),
        },
        ("GET", "/v1beta/models") => Operation::ListModels { api: Api::Gemini },
        ("POST", _) => {
            let (model, action) = path.strip_prefix("/v1beta/models/")?.rsplit_once(':')?;
            let model = model.to_string();
            match action {
                "generateContent" => Operation::Chat {
                    api: Api::Gemini,
                    model,
                    stream: false,
                },
                "streamGenerateContent" => Operation::Chat {
                    api: Api::Gemini,
                    model,
                    stream: true,
                },
                "embedContent" => Operation::Embed {
                    api: Api::Gemini,
                    model,
                },
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(operation)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&shared.requests).push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: json_body.clone(),
    });
    let mut tracker = Tracker::new(shared.clone());
    if let Some(response) = server_quirks(&shared, &method, uri.path(), &json_body) {
        tracker.finish();
        return response;
    }
    let Some(operation) = classify(&method, uri.path(), &json_body) else {
        tracker.finish();
        let body = json!({"error": {"message": format!("no route for {method} {}", uri.path())}});
        return respond(StatusCode::NOT_FOUND, "application/json", body.to_string());
    };
    let tracker = match ollama_fleet_route(&shared, &operation, tracker) {
        Ok(response) => return response,
        Err(tracker) => tracker,
    };
    let mut tracker = tracker;
    if let Operation::Chat { model, .. } | Operation::Embed { model, .. } = &operation {
        tracker.count_call(model);
    }
    let reply = shared.next_reply(match &operation {
        Operation::Chat { model, .. } | Operation::Embed { model, .. } => model,
        Operation::ListModels { .. } => FakeLlm::LIST_MODELS,
        Operation::Show { model } | Operation::Pull { model } => model,
    });
    // Dropped here if the client goes away: the tracker counts it.
    tokio::time::sleep(reply.delay).await;

    if let Some((status, body)) = &reply.error {
        tracker.finish();
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = respond(status, "application/json", body.clone());
        if let Some(value) = reply.retry_after.as_deref().and_then(|v| v.parse().ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    match operation {
        Operation::Chat {
            api,
            model,
            stream: true,
        } => {
            let include_usage = json_body["stream_options"]["include_usage"] == true;
            let include_usage = include_usage && !shared.no_stream_usage.load(Ordering::SeqCst);
            stream_chat(api, &model, reply, include_usage, tracker)
        }
        Operation::Chat { api, model, .. } => {
            let body = if reply.malformed {
                MALFORMED.to_string()
            } else {
                chat_body(api, &model, &reply).to_string()
            };
            finished_body(body, tracker)
        }
        Operation::Embed { api, model } => {
            let vector = lock(&shared.embedding).clone();
            let body = if reply.malformed {
                MALFORMED.to_string()
            } else {
                embed_body(api, &model, &vector, reply.input_tokens).to_string()
            };
            finished_body(body, tracker)
        }
        Operation::ListModels { api } => {
            let models = lock(&shared.models).clone();
            let body = if reply.malformed {
                MALFORMED.to_string()
            } else {
                with_model_details(models_body(api, &models), &lock(&shared.model_details))
                    .to_string()
            };
            finished_body(body, tracker)
        }
        // Answered by `ollama_fleet_route`.
        Operation::Show { .. } | Operation::Pull { .. } => finished_body(String::new(), tracker),
    }
}

const MALFORMED: &str = r#"{"this is": not json"#;

/// Answers of the servers' own endpoints and refusals (see
/// [`FakeLlm::serve_tokenize`], [`FakeLlm::reject_stream_options`]).
fn server_quirks(shared: &Shared, method: &Method, path: &str, body: &Value) -> Option<Response> {
    if method == Method::POST && lock(&shared.tokenize_paths).iter().any(|p| p == path) {
        let text = ["content", "prompt", "input"]
            .iter()
            .find_map(|field| body[*field].as_str())
            .unwrap_or_default();
        let tokens: Vec<u64> = (0..FakeLlm::token_count(text)).collect();
        let body = json!({ "tokens": tokens });
        return Some(respond(
            StatusCode::OK,
            "application/json",
            body.to_string(),
        ));
    }
    if method == Method::POST
        && path == "/v1/chat/completions"
        && body.get("stream_options").is_some()
        && shared.rejects_stream_options.load(Ordering::SeqCst)
    {
        let body = json!({"error": {"message": "unknown field: stream_options", "type": "invalid_request_error"}});
        return Some(respond(
            StatusCode::BAD_REQUEST,
            "application/json",
            body.to_string(),
        ));
    }
    None
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap_or_default()
}

/// A JSON body sent as one frame; the request counts as finished once hyper
/// has taken the whole body.
fn finished_body(body: String, tracker: Tracker) -> Response {
    let frames = VecDeque::from([(Duration::ZERO, Bytes::from(body))]);
    respond(
        StatusCode::OK,
        "application/json",
        frame_stream(frames, tracker, false),
    )
}

/// Sends `frames` (each after its delay); finishes the tracker at the end.
/// `abort` ends the body with an error, which makes hyper drop the
/// connection mid-response.
fn frame_stream(frames: VecDeque<(Duration, Bytes)>, tracker: Tracker, abort: bool) -> Body {
    let stream = futures::stream::unfold(
        (frames, Some(tracker)),
        move |(mut frames, mut tracker)| async move {
            if let Some((delay, frame)) = frames.pop_front() {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                    if let Some(tracker) = &tracker {
                        lock(&tracker.shared.chunk_times).push(Instant::now());
                    }
                }
                return Some((Ok(frame), (frames, tracker)));
            }
            let mut tracker = tracker.take()?;
            tracker.finish();
            if abort {
                // Pending for a moment lets hyper flush what was sent before
                // the error tears the connection down.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            abort.then(|| {
                let error = std::io::Error::other("scripted truncation");
                (Err(error), (frames, None))
            })
        },
    );
    Body::from_stream(stream)
}

fn chat_body(api: Api, model: &str, reply: &Reply) -> Value {
    let text = reply.full_text();
    let (input, output) = (reply.input_tokens, reply.output_tokens);
    match api {
        Api::Ollama => json!({
            "model": model,
            "created_at": "2024-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": text},
            "done": true,
            "done_reason": "stop",
            "prompt_eval_count": input,
            "eval_count": output,
        }),
        Api::OpenAi => json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
        }),
        Api::Gemini => json!({
            "candidates": [{
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": {"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output},
            "modelVersion": model,
        }),
        Api::Anthropic => json!({
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": input, "output_tokens": output},
        }),
    }
}

/// `include_usage` is OpenAI's `stream_options.include_usage`: without it
/// the stream carries no token counts, as with the real servers.
fn stream_chat(
    api: Api,
    model: &str,
    reply: Reply,
    include_usage: bool,
    tracker: Tracker,
) -> Response {
    let (input, output) = (reply.input_tokens, reply.output_tokens);
    let sse = |event: Option<&str>, data: &Value| {
        let event = event
            .map(|name| format!("event: {name}\n"))
            .unwrap_or_default();
        format!("{event}data: {data}\n\n")
    };
    let mut events: Vec<String> = vec![];
    let mut chunk_events: Vec<String> = vec![];
    let mut closing: Vec<String> = vec![];
    match api {
        Api::Ollama => {
            for chunk in &reply.chunks {
                let line = json!({"model": model, "message": {"role": "assistant", "content": chunk}, "done": false});
                chunk_events.push(format!("{line}\n"));
            }
            let done = json!({
                "model": model,
                "message": {"role": "assistant", "content": ""},
                "done": true,
                "done_reason": "stop",
                "prompt_eval_count": input,
                "eval_count": output,
            });
            closing.push(format!("{done}\n"));
        }
        Api::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                json!({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                })
            };
            for text in &reply.chunks {
                chunk_events.push(sse(None, &chunk(json!({"content": text}), Value::Null)));
            }
            closing.push(sse(None, &chunk(json!({}), json!("stop"))));
            let usage = json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
            });
            if include_usage {
                closing.push(sse(None, &usage));
            }
            closing.push("data: [DONE]\n\n".to_string());
        }
        Api::Gemini => {
            let event = |text: &str| {
                json!({
                    "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
                    "modelVersion": model,
                })
            };
            for text in &reply.chunks {
                chunk_events.push(sse(None, &event(text)));
            }
            // Gemini has no end marker: the last event carries the finish
            // reason and the usage.
            let mut last = event("");
            last["candidates"][0]["finishReason"] = json!("STOP");
            last["usageMetadata"] = json!({
                "promptTokenCount": input,
                "candidatesTokenCount": output,
                "totalTokenCount": input + output,
            });
            closing.push(sse(None, &last));
        }
        Api::Anthropic => {
            let start = json!({
                "type": "message_start",
                "message": {
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null,
                    "usage": {"input_tokens": input, "output_tokens": 1},
                },
            });
            events.push(sse(Some("message_start"), &start));
            let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
            events.push(sse(Some("content_block_start"), &block));
            events.push(sse(Some("ping"), &json!({"type": "ping"})));
            for text in &reply.chunks {
                let delta = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
                chunk_events.push(sse(Some("content_block_delta"), &delta));
            }
            let stop = json!({"type": "content_block_stop", "index": 0});
            closing.push(sse(Some("content_block_stop"), &stop));
            let delta = json!({
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": output},
            });
            closing.push(sse(Some("message_delta"), &delta));
            closing.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
        }
    }
    let content_type = match api {
        Api::Ollama => "application/x-ndjson",
        _ => "text/event-stream",
    };
    let mut frames: VecDeque<(Duration, Bytes)> = events
        .into_iter()
        .map(|event| (Duration::ZERO, Bytes::from(event)))
        .collect();
    if reply.malformed {
        let broken = match api {
            Api::Ollama => format!("{MALFORMED}\n"),
            _ => format!("data: {MALFORMED}\n\n"),
        };
        frames.push_back((Duration::ZERO, Bytes::from(broken)));
    } else {
        frames.extend(
            chunk_events
                .into_iter()
                .map(|event| (reply.chunk_delay, Bytes::from(event))),
        );
        if !reply.truncated {
            frames.extend(
                closing
                    .into_iter()
                    .map(|event| (Duration::ZERO, Bytes::from(event))),
            );
        }
    }
    respond(
        StatusCode::OK,
        content_type,
        frame_stream(frames, tracker, reply.cut_connection),
    )
}

fn embed_body(api: Api, model: &str, vector: &[f32], input_tokens: u64) -> Value {
    match api {
        Api::Ollama => {
            json!({"model": model, "embeddings": [vector], "prompt_eval_count": input_tokens})
        }
        Api::OpenAi | Api::Anthropic => json!({
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": model,
            "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
        }),
        Api::Gemini => json!({"embedding": {"values": vector}}),
    }
}

fn models_body(api: Api, models: &[String]) -> Value {
    match api {
        Api::Ollama => json!({
            "models": models.iter().map(|name| json!({"name": name, "model": name, "size": 1})).collect::<Vec<_>>(),
        }),
        Api::OpenAi | Api::Anthropic => json!({
            "object": "list",
            "data": models.iter().map(|id| json!({"id": id, "object": "model", "type": "model", "display_name": id})).collect::<Vec<_>>(),
            "has_more": false,
        }),
        Api::Gemini => json!({
            "models": models.iter().map(|id| json!({
                "name": format!("models/{id}"),
                "supportedGenerationMethods": ["generateContent", "embedContent"],
            })).collect::<Vec<_>>(),
        }),
    }
}
