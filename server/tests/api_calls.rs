//! How task model calls are made, against a real server process and the
//! fake provider over real HTTP: a call streams only when a watcher wants
//! its token deltas or its task asks to; otherwise it is one plain request.
//! Token usage is recorded from servers that send none in streams (like
//! llama.cpp's), and a backend's `omit_stream_options` keeps the field
//! away from servers that reject it.

mod common;

use common::chains::{task, text_value, then};

use std::time::Duration;

use common::TestServer;
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, RecordedRequest, Reply};

api_tests!(
    an_unwatched_task_makes_a_plain_request,
    a_watched_run_streams_to_its_watcher_with_usage_counted,
    a_task_may_ask_to_stream,
    omit_stream_options_reaches_the_provider,
);

const MODEL: &str = "llama-like";

/// Registers an OpenAI-compatible backend at `url` in the tasks and chat
/// pools.
async fn add_backend(server: &TestServer, url: &str, omit_stream_options: bool) -> String {
    let mut backends = server.backends();
    let backend = backends
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "llama".into(),
                r#type: pb::BackendType::OpenaiCompatible as i32,
                base_url: url.into(),
                omit_stream_options,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for pool in ["internal_tasks_pool", "internal_chat_pool"] {
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

/// A `raw_string` task on [`MODEL`] whose prompt is `prompt`.
fn say(prompt: &str, stream: bool) -> pb::Task {
    let mut say = task("say", "raw_string", vec![]);
    say.prompt_template = prompt.into();
    say.execute_config = Some(pb::ExecuteConfig {
        model: MODEL.into(),
        stream,
        ..Default::default()
    });
    say
}

fn chat_requests(fake: &FakeLlm) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|request| request.path == "/v1/chat/completions")
        .collect()
}

async fn execute(server: &TestServer, task: pb::Task) -> pb::ExecuteChainResponse {
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(pb::Chain {
                id: "calls".into(),
                tasks: vec![task],
                ..Default::default()
            }),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(text_value(
                "go",
            ))),
            ..Default::default()
        })
        .await
        .expect("execute chain")
        .into_inner();
    let run = response.run.as_ref().unwrap();
    assert_eq!(
        run.status,
        pb::RunStatus::Succeeded as i32,
        "{:?}",
        run.error
    );
    response
}

fn usage(response: &pb::ExecuteChainResponse) -> (i64, i64) {
    let usage = response.run.as_ref().unwrap().usage.unwrap_or_default();
    (usage.input_tokens, usage.output_tokens)
}

async fn an_unwatched_task_makes_a_plain_request(server: TestServer) {
    let fake = FakeLlm::start().await;
    // Like llama.cpp's server: no usage in streams, usage in plain answers.
    fake.omit_stream_usage();
    add_backend(&server, &fake.url(), false).await;
    fake.script(MODEL, Reply::text("a plain answer").usage(11, 3));
    let response = execute(&server, say("Answer plainly.", false)).await;
    let requests = chat_requests(&fake);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["stream"], false, "{}", requests[0].body);
    assert!(requests[0].body.get("stream_options").is_none());
    assert_eq!(response.output, Some(text_value("a plain answer")));
    assert_eq!(usage(&response), (11, 3), "the server's own count");
}

async fn a_watched_run_streams_to_its_watcher_with_usage_counted(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.omit_stream_usage().serve_tokenize("/tokenize");
    add_backend(&server, &fake.url(), false).await;
    fake.script(
        MODEL,
        Reply::chunks(["one ", "two ", "three"])
            .usage(50, 50)
            .chunk_delay(Duration::from_millis(50)),
    );
    // The gate holds the run until the watcher is there: the choice to
    // stream is made as the call starts.
    let mut gate = task("gate", "human_input", vec![]);
    gate.prompt_template = "Start?".into();
    gate.transition = then("say");
    let chain = pb::Chain {
        id: "watched".into(),
        tasks: vec![gate, say("Count to three please", false)],
        ..Default::default()
    };
    let run = server
        .runs()
        .start_run(pb::StartRunRequest {
            chain: Some(chain),
            run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value(
                "go",
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
    let mut submitted = false;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("an event within 20s")
        .expect("the watch stream")
    {
        if event.r#type == pb::RunEventType::InputRequested as i32 && !submitted {
            submitted = true;
            server
                .runs()
                .submit_input(pb::SubmitInputRequest {
                    run_id: run.id.clone(),
                    task_id: "gate".into(),
                    answer: Some(pb::submit_input_request::Answer::TypedInput(text_value(
                        "yes",
                    ))),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        if event.r#type == pb::RunEventType::TokenDelta as i32 {
            deltas.push(event.delta.clone());
        }
    }
    assert_eq!(deltas.concat(), "one two three");
    let requests = chat_requests(&fake);
    assert_eq!(requests.len(), 1, "the model is called once");
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(requests[0].body["stream_options"]["include_usage"], true);
    // The stream carried no usage: the server's tokenizer counted it.
    let run = server
        .runs()
        .get_run(pb::GetRunRequest { id: run.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let usage = run.usage.unwrap_or_default();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (FakeLlm::token_count("Count to three please") as i64, 3)
    );
}

async fn a_task_may_ask_to_stream(server: TestServer) {
    let fake = FakeLlm::start().await;
    add_backend(&server, &fake.url(), false).await;
    fake.script(MODEL, Reply::chunks(["asked ", "to stream"]).usage(4, 3));
    let response = execute(&server, say("Stream this.", true)).await;
    let requests = chat_requests(&fake);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["stream"], true);
    assert_eq!(response.output, Some(text_value("asked to stream")));
    assert_eq!(usage(&response), (4, 3));
}

async fn omit_stream_options_reaches_the_provider(server: TestServer) {
    let fake = FakeLlm::start().await;
    // Refuses `stream_options` and has no tokenizer: usage is estimated.
    fake.reject_stream_options();
    add_backend(&server, &fake.url(), true).await;
    fake.script(MODEL, Reply::chunks(["no ", "options"]).usage(4, 3));
    let response = execute(&server, say("Stream without options.", true)).await;
    let requests = chat_requests(&fake);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["stream"], true);
    assert!(requests[0].body.get("stream_options").is_none());
    assert_eq!(response.output, Some(text_value("no options")));
    // Four characters a token, rounded up.
    let estimate = |text: &str| (text.chars().count() as i64 + 3) / 4;
    assert_eq!(
        usage(&response),
        (estimate("Stream without options."), estimate("no options"))
    );
}
