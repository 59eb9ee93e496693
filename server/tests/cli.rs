//! The `taskloom chains|runs` client commands, black-box: the built
//! `taskloom` binary run against a real server (SQLite and PostgreSQL), its
//! output and exit codes checked as a script would.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use tokio::io::AsyncBufReadExt;

api_tests!(
    apply_twice_is_unchanged,
    apply_a_directory_as_json_lines,
    start_watch_prints_the_output,
    watch_streams_tokens,
    failed_run_exits_with_the_run_failed_code,
    failed_calls_exit_with_the_call_failed_code,
    answer_cancel_and_inspect_runs,
    namespace_flag_scopes_calls,
    execute_replay_and_delete,
    watch_resumes_after_a_dropped_connection,
);

/// Exit codes the CLI documents (docs/cli.md).
const EXIT_ERROR: i32 = 1;
const EXIT_CALL_FAILED: i32 = 3;
const EXIT_RUN_FAILED: i32 = 4;

/// Runs `taskloom ARGS --address <server>` with no client variables
/// inherited from the environment.
async fn cli(server: &TestServer, args: &[&str]) -> Output {
    cli_with(server, args, &[]).await
}

async fn cli_with(server: &TestServer, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskloom"));
    command
        .args(args)
        .args(["--address", server.process.addr.as_str()])
        .env_remove("TASKLOOM_ADDRESS")
        .env_remove("TASKLOOM_API_KEY")
        .env_remove("TASKLOOM_NAMESPACE")
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the CLI ends within a minute")
        .expect("run taskloom")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// Every stdout line as JSON: `-o json` prints one object per line.
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write chain file");
    path.display().to_string()
}

/// A one-task chain in contenox's camelCase JSON.
fn one_task_chain(id: &str, handler: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", "description": "one {handler} task",
            "tasks": [{{"id": "a", "handler": "{handler}"{extra},
                        "transition": {{"branches": [{{"operator": "default", "goto": "end"}}]}}}}]}}"#
    )
}

async fn versions(server: &TestServer, id: &str) -> Vec<i64> {
    server
        .chains()
        .list_chain_versions(pb::ListChainVersionsRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
        .expect("list versions")
        .into_inner()
        .chains
        .iter()
        .map(|chain| chain.version)
        .collect()
}

async fn apply_twice_is_unchanged(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "hello.json",
        &one_task_chain("hello", "noop", ""),
    );

    let first = cli(&server, &["chains", "apply", "-f", &file]).await;
    assert_exit(&first, 0);
    assert_eq!(stdout(&first), "chain hello: created (v1)\n");
    let second = cli(&server, &["chains", "apply", "-f", &file]).await;
    assert_exit(&second, 0);
    assert_eq!(stdout(&second), "chain hello: unchanged (v1)\n");
    assert_eq!(versions(&server, "hello").await, [1]);

    // The same chain in snake_case is the same content.
    let snake = write(
        dir.path(),
        "snake.json",
        r#"{"id": "hello", "description": "one noop task",
            "tasks": [{"id": "a", "handler": "noop",
                       "transition": {"branches": [{"operator": "default", "goto": "end"}]}}]}"#,
    );
    let third = cli(&server, &["chains", "apply", "-f", &snake]).await;
    assert_eq!(stdout(&third), "chain hello: unchanged (v1)\n");
    // And in YAML.
    let yaml = write(
        dir.path(),
        "hello.yaml",
        "id: hello\ndescription: one noop task\ntasks:\n  - id: a\n    handler: noop\n    \
         transition:\n      branches:\n        - {operator: default, goto: end}\n",
    );
    let fourth = cli(&server, &["chains", "apply", "-f", &yaml]).await;
    assert_exit(&fourth, 0);
    assert_eq!(stdout(&fourth), "chain hello: unchanged (v1)\n");

    let changed = write(
        dir.path(),
        "hello.json",
        &one_task_chain("hello", "noop", r#", "description": "does nothing""#),
    );
    let update = cli(&server, &["chains", "apply", "-f", &changed]).await;
    assert_exit(&update, 0);
    assert_eq!(
        stdout(&update),
        "chain hello: updated (v2)\n  task a changed\n"
    );
    assert_eq!(versions(&server, "hello").await, [2, 1]);

    let list = cli(&server, &["chains", "versions", "hello"]).await;
    assert_exit(&list, 0);
    let lines: Vec<String> = stdout(&list).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("VERSION"), "{lines:?}");
    assert!(lines[1].starts_with("2 "), "{lines:?}");
    assert!(lines[2].starts_with("1 "), "{lines:?}");

    let get = cli(
        &server,
        &["chains", "get", "hello", "--version", "1", "-o", "json"],
    )
    .await;
    assert_exit(&get, 0);
    let chain = &json_lines(&get)[0];
    assert_eq!(chain["version"], 1);
    assert_eq!(chain["tasks"][0]["handler"], "noop");
    assert!(chain["tasks"][0].get("description").is_none(), "{chain}");

    // What `chains get -o json` saved applies as unchanged: the fields the
    // server sets are not compared.
    let latest = cli(&server, &["chains", "get", "hello", "-o", "json"]).await;
    let saved = write(dir.path(), "saved.json", &stdout(&latest));
    let reapplied = cli(&server, &["chains", "apply", "-f", &saved]).await;
    assert_exit(&reapplied, 0);
    assert_eq!(stdout(&reapplied), "chain hello: unchanged (v2)\n");

    let delete = cli(&server, &["chains", "delete", "hello"]).await;
    assert_exit(&delete, 0);
    let gone = cli(&server, &["chains", "get", "hello"]).await;
    assert_exit(&gone, EXIT_CALL_FAILED);
    assert!(stderr(&gone).contains("NOT_FOUND"), "{}", stderr(&gone));
}

async fn apply_a_directory_as_json_lines(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.json", &one_task_chain("second", "noop", ""));
    write(dir.path(), "a.json", &one_task_chain("first", "noop", ""));
    write(dir.path(), "notes.txt", "not a chain");
    let path = dir.path().display().to_string();

    let applied = cli(&server, &["chains", "apply", "-f", &path, "-o", "json"]).await;
    assert_exit(&applied, 0);
    let lines = json_lines(&applied);
    let results: Vec<(&str, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["chain"].as_str().unwrap(),
                line["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(results, [("first", "created"), ("second", "created")]);
    let again = cli(&server, &["-o", "json", "chains", "apply", "-f", &path]).await;
    assert!(
        json_lines(&again)
            .iter()
            .all(|line| line["result"] == "unchanged" && line["version"] == 1),
        "{}",
        stdout(&again)
    );

    let list = cli(&server, &["chains", "list", "-o", "json"]).await;
    assert_exit(&list, 0);
    let ids: Vec<String> = json_lines(&list)
        .iter()
        .map(|chain| chain["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["first", "second"]);

    // A file that is not a chain fails before any call.
    let broken = write(dir.path(), "broken.json", r#"{"id": "x", "tasks": 3}"#);
    let refused = cli(&server, &["chains", "apply", "-f", &broken]).await;
    assert_exit(&refused, EXIT_ERROR);
    assert!(
        stderr(&refused).contains("broken.json"),
        "{}",
        stderr(&refused)
    );
}

async fn start_watch_prints_the_output(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "echo.json", &one_task_chain("echo", "noop", ""));
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);

    let watched = cli(
        &server,
        &["runs", "start", "echo", "--input", "hello there", "--watch"],
    )
    .await;
    assert_exit(&watched, 0);
    assert_eq!(stdout(&watched), "hello there\n");
    let progress = stderr(&watched);
    assert!(progress.contains("task a started"), "{progress}");
    assert!(
        progress.contains("task a succeeded: hello there"),
        "{progress}"
    );
    assert!(progress.contains("succeeded"), "{progress}");

    let json = cli(
        &server,
        &[
            "runs",
            "start",
            "echo",
            "--input-json",
            r#"{"n": 1}"#,
            "--watch",
            "-o",
            "json",
        ],
    )
    .await;
    assert_exit(&json, 0);
    let events = json_lines(&json);
    assert_eq!(events[0]["type"], "RUN_EVENT_TYPE_RUN_CREATED");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "RUN_EVENT_TYPE_RUN_SUCCEEDED");
    assert_eq!(last["output"]["json"], serde_json::json!({"n": 1.0}));
    let run_id = last["runId"].as_str().unwrap().to_string();

    // --input-file reads a file's text.
    let input = write(dir.path(), "input.txt", "from a file");
    let from_file = cli(
        &server,
        &["runs", "start", "echo", "--input-file", &input, "--watch"],
    )
    .await;
    assert_exit(&from_file, 0);
    assert_eq!(stdout(&from_file), "from a file\n");

    // Without --watch, start prints the run's id.
    let started = cli(&server, &["runs", "start", "echo", "--label", "team=a"]).await;
    assert_exit(&started, 0);
    let labelled = stdout(&started).trim().to_string();
    assert!(!labelled.is_empty());

    let watch = cli(&server, &["runs", "watch", &run_id]).await;
    assert_exit(&watch, 0);
    assert_eq!(stdout(&watch), "{\"n\":1.0}\n");

    let listed = cli(
        &server,
        &["runs", "list", "--label", "team=a", "-o", "json"],
    )
    .await;
    assert_exit(&listed, 0);
    let ids: Vec<String> = json_lines(&listed)
        .iter()
        .map(|run| run["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [labelled]);
}

/// A model's answer streams to the terminal as it comes: the watch lines
/// hold the tokens, and `-o json` has them as TOKEN_DELTA lines.
async fn watch_streams_tokens(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_default_reply(
        Reply::chunks(["Hel", "lo, ", "wörld"]).chunk_delay(Duration::from_millis(20)),
    );
    server.add_fake_backend(&fake.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ask.json",
        &one_task_chain(
            "ask",
            "raw_string",
            r#", "promptTemplate": "Say hello.", "executeConfig": {"model": "fake-model"}"#,
        ),
    );
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);

    let watched = cli(&server, &["runs", "start", "ask", "--watch"]).await;
    assert_exit(&watched, 0);
    assert_eq!(stdout(&watched), "Hello, wörld\n");
    let progress = stderr(&watched);
    assert!(
        progress.contains("task a started\nHello, wörld\ntask a succeeded"),
        "{progress}"
    );

    let json = cli(&server, &["runs", "start", "ask", "--watch", "-o", "json"]).await;
    assert_exit(&json, 0);
    let streamed: String = json_lines(&json)
        .iter()
        .filter(|event| event["type"] == "RUN_EVENT_TYPE_TOKEN_DELTA")
        .map(|event| event["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(streamed, "Hello, wörld");
}

async fn failed_run_exits_with_the_run_failed_code(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "fail.json",
        &one_task_chain("fail", "raise_error", r#", "errorMessage": "boom""#),
    );
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);

    let watched = cli(&server, &["runs", "start", "fail", "--watch"]).await;
    assert_exit(&watched, EXIT_RUN_FAILED);
    assert_eq!(stdout(&watched), "");
    assert!(
        stderr(&watched).contains("failed: boom"),
        "{}",
        stderr(&watched)
    );

    let listed = cli(&server, &["runs", "list", "--status", "failed"]).await;
    assert_exit(&listed, 0);
    let table = stdout(&listed);
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("FAILED") && table.contains("boom"),
        "{table}"
    );
    let none = cli(
        &server,
        &["runs", "list", "--status", "succeeded", "-o", "json"],
    )
    .await;
    assert_eq!(stdout(&none), "");

    let run_id = table
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let rewatch = cli(&server, &["runs", "watch", &run_id, "-o", "json"]).await;
    assert_exit(&rewatch, EXIT_RUN_FAILED);
    let events = json_lines(&rewatch);
    assert_eq!(events.last().unwrap()["type"], "RUN_EVENT_TYPE_RUN_FAILED");

    // The failed attempt is a dead letter; no worker is connected.
    let dead = cli(&server, &["dlq", "list"]).await;
    assert_exit(&dead, 0);
    let dead = stdout(&dead);
    assert!(dead.starts_with("RUN"), "{dead}");
    assert!(
        dead.lines()
            .any(|line| line.starts_with(&run_id) && line.contains("boom")),
        "{dead}"
    );
    let dead_json = cli(&server, &["dlq", "list", "-o", "json"]).await;
    assert_eq!(json_lines(&dead_json)[0]["runId"], run_id.as_str());
    let workers = cli(&server, &["workers", "list"]).await;
    assert_exit(&workers, 0);
    assert_eq!(stdout(&workers).lines().count(), 1, "{}", stdout(&workers));

    let attempts = cli(&server, &["runs", "attempts", &run_id]).await;
    assert_exit(&attempts, 0);
    assert!(stdout(&attempts).contains("boom"), "{}", stdout(&attempts));
}

async fn failed_calls_exit_with_the_call_failed_code(server: TestServer) {
    let unknown = cli(&server, &["runs", "start", "nope", "--watch"]).await;
    assert_exit(&unknown, EXIT_CALL_FAILED);
    assert!(
        stderr(&unknown).contains("NOT_FOUND"),
        "{}",
        stderr(&unknown)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.json", &one_task_chain("bad", "nosuch", ""));
    let refused = cli(&server, &["chains", "apply", "-f", &bad]).await;
    assert_exit(&refused, EXIT_CALL_FAILED);
    let message = stderr(&refused);
    assert!(message.contains("INVALID_ARGUMENT"), "{message}");
    assert!(message.contains("  chain.tasks[0].handler: "), "{message}");
    let stored = server
        .chains()
        .get_chain(pb::GetChainRequest {
            id: "bad".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(stored.code(), tonic::Code::NotFound);

    let invalid = cli(&server, &["chains", "validate", "-f", &bad]).await;
    assert_exit(&invalid, EXIT_ERROR);
    assert!(stdout(&invalid).contains("invalid"), "{}", stdout(&invalid));
    assert!(
        stdout(&invalid).contains("UNKNOWN_HANDLER"),
        "{}",
        stdout(&invalid)
    );

    let run = cli(&server, &["runs", "get", "no-such-run"]).await;
    assert_exit(&run, EXIT_CALL_FAILED);
    assert!(stderr(&run).contains("NOT_FOUND"), "{}", stderr(&run));

    // No server there: a failed call too.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let unreachable = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskloom"))
        .args(["chains", "list", "--address", &closed])
        .output()
        .await
        .unwrap();
    assert_exit(&unreachable, EXIT_CALL_FAILED);
    assert!(
        stderr(&unreachable).contains("UNAVAILABLE"),
        "{}",
        stderr(&unreachable)
    );

    // A usage error is clap's 2.
    let usage = cli(&server, &["runs", "list", "--status", "sleeping"]).await;
    assert_exit(&usage, 2);
}

async fn answer_cancel_and_inspect_runs(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ask.json",
        &one_task_chain(
            "ask",
            "human_input",
            r#", "promptTemplate": "Approve {{ input }}?""#,
        ),
    );
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);

    let started = cli(&server, &["runs", "start", "ask", "--input", "deploy"]).await;
    assert_exit(&started, 0);
    let run_id = stdout(&started).trim().to_string();
    wait_status(&server, &run_id, pb::RunStatus::WaitingInput).await;
    let shown = cli(&server, &["runs", "get", &run_id]).await;
    assert_exit(&shown, 0);
    assert!(
        stdout(&shown).contains("WAITING_INPUT"),
        "{}",
        stdout(&shown)
    );
    assert!(
        stdout(&shown).contains("a: Approve deploy?"),
        "{}",
        stdout(&shown)
    );

    let answered = cli(&server, &["runs", "input", &run_id, "--value", "approved"]).await;
    assert_exit(&answered, 0);
    let watched = cli(&server, &["runs", "watch", &run_id]).await;
    assert_exit(&watched, 0);
    assert_eq!(stdout(&watched), "approved\n");
    let events = cli(&server, &["runs", "events", &run_id]).await;
    assert_exit(&events, 0);
    assert!(
        stdout(&events).contains("INPUT_RECEIVED"),
        "{}",
        stdout(&events)
    );

    let second = cli(&server, &["runs", "start", "ask", "--input", "again"]).await;
    let second = stdout(&second).trim().to_string();
    wait_status(&server, &second, pb::RunStatus::WaitingInput).await;
    let cancelled = cli(
        &server,
        &["runs", "cancel", &second, "--reason", "not today"],
    )
    .await;
    assert_exit(&cancelled, 0);
    assert_eq!(stdout(&cancelled), format!("run {second}: CANCELLED\n"));
    let watched = cli(&server, &["runs", "watch", &second]).await;
    assert_exit(&watched, EXIT_RUN_FAILED);
    let retry = cli(&server, &["runs", "retry", &second]).await;
    assert_exit(&retry, EXIT_CALL_FAILED);
    assert!(
        stderr(&retry).contains("FAILED_PRECONDITION"),
        "{}",
        stderr(&retry)
    );
}

async fn namespace_flag_scopes_calls(server: TestServer) {
    pb::namespace_service_client::NamespaceServiceClient::new(server.channel.clone())
        .create_namespace(pb::CreateNamespaceRequest {
            name: "team-a".into(),
            ..Default::default()
        })
        .await
        .expect("create namespace");
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "scoped.json",
        &one_task_chain("scoped", "noop", ""),
    );
    let applied = cli(
        &server,
        &["chains", "apply", "-f", &file, "--namespace", "team-a"],
    )
    .await;
    assert_exit(&applied, 0);

    let there = cli_with(
        &server,
        &["chains", "list"],
        &[("TASKLOOM_NAMESPACE", "team-a")],
    )
    .await;
    assert!(stdout(&there).contains("scoped"), "{}", stdout(&there));
    let default = cli(&server, &["chains", "list", "-o", "json"]).await;
    assert_exit(&default, 0);
    assert_eq!(stdout(&default), "");
}

/// `runs execute -f` runs a contenox-style request file (inline chain and
/// input) and waits; `replay` and `delete` act on the run it made.
async fn execute_replay_and_delete(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let request =
        |chain: &str| format!(r#"{{"input": "hi", "inputType": "string", "chain": {chain}}}"#);
    let ok = write(
        dir.path(),
        "ok.json",
        &request(&one_task_chain("inline", "noop", "")),
    );
    let executed = cli(&server, &["runs", "execute", "-f", &ok]).await;
    assert_exit(&executed, 0);
    assert_eq!(stdout(&executed), "hi\n");
    let trace = stderr(&executed);
    assert!(
        trace
            .lines()
            .any(|line| line.starts_with("a ") && line.contains("noop")),
        "{trace}"
    );
    assert!(trace.contains(": SUCCEEDED"), "{trace}");

    let json = cli(&server, &["runs", "execute", "-f", &ok, "-o", "json"]).await;
    assert_exit(&json, 0);
    let response = &json_lines(&json)[0];
    assert_eq!(response["run"]["status"], "RUN_STATUS_SUCCEEDED");
    assert_eq!(response["trace"][0]["taskId"], "a");
    let run_id = response["run"]["id"].as_str().unwrap().to_string();

    let failing = write(
        dir.path(),
        "fail.yaml",
        "input: hi\nchain:\n  id: inline-fail\n  tasks:\n    - {id: a, handler: raise_error, errorMessage: nope}\n",
    );
    let failed = cli(&server, &["runs", "execute", "-f", &failing]).await;
    assert_exit(&failed, EXIT_RUN_FAILED);
    assert!(
        stderr(&failed).contains("error: nope"),
        "{}",
        stderr(&failed)
    );

    // A human_input task outlasts a short wait: the server answers
    // DEADLINE_EXCEEDED, a failed call.
    let waits = write(
        dir.path(),
        "waits.json",
        &format!(
            r#"{{"input": "hi", "waitTimeout": "0.2s", "chain": {}}}"#,
            one_task_chain("inline-wait", "human_input", "")
        ),
    );
    let pending = cli(&server, &["runs", "execute", "-f", &waits]).await;
    assert_exit(&pending, EXIT_CALL_FAILED);
    assert!(
        stderr(&pending).contains("DEADLINE_EXCEEDED"),
        "{}",
        stderr(&pending)
    );

    let replay = cli(&server, &["runs", "replay", &run_id]).await;
    assert_exit(&replay, 0);
    let replayed = stdout(&replay);
    assert!(replayed.contains("diverged: false"), "{replayed}");
    let fingerprint = replayed
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("fingerprint: ");
    assert_eq!(fingerprint.len(), 64, "{replayed}");

    let deleted = cli(&server, &["runs", "delete", &run_id]).await;
    assert_exit(&deleted, 0);
    assert_eq!(stdout(&deleted), format!("run {run_id}: deleted\n"));
    let gone = cli(&server, &["runs", "get", &run_id]).await;
    assert_exit(&gone, EXIT_CALL_FAILED);
}

/// A TCP proxy to the server whose open connections the test can cut, as a
/// network failure would.
struct Proxy {
    addr: String,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(server: &TestServer) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let upstream = format!("127.0.0.1:{}", server.process.port);
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let open = connections.clone();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let count = accepted.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                open.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            connections,
            accepted,
            accept,
        }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops every connection open now (new ones still pass).
    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A watch whose connection drops opens it again after the last event it
/// saw: it ends with the run, showing no event twice.
async fn watch_resumes_after_a_dropped_connection(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ask.json",
        &one_task_chain("ask", "human_input", ""),
    );
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);
    let started = cli(&server, &["runs", "start", "ask", "--input", "deploy"]).await;
    let run_id = stdout(&started).trim().to_string();
    wait_status(&server, &run_id, pb::RunStatus::WaitingInput).await;

    let proxy = Proxy::start(&server).await;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskloom"))
        .args(["runs", "watch", &run_id, "--address", &proxy.addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut progress = tokio::io::BufReader::new(watch.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(20), progress.next_line())
        .await
        .expect("watch lines")
        .unwrap()
    {
        let waiting = line.contains("waits for input");
        seen.push(line);
        if waiting {
            break;
        }
    }
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .runs()
        .submit_input(pb::SubmitInputRequest {
            run_id: run_id.clone(),
            task_id: "a".into(),
            answer: Some(pb::submit_input_request::Answer::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Text("approved".into())),
            })),
            request_id: String::new(),
        })
        .await
        .expect("submit input");
    while let Some(line) = tokio::time::timeout(Duration::from_secs(40), progress.next_line())
        .await
        .expect("watch lines")
        .unwrap()
    {
        seen.push(line);
    }
    let output = watch.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{seen:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "approved\n");
    let count = |text: &str| seen.iter().filter(|line| line.contains(text)).count();
    assert_eq!(count("waits for input"), 1, "{seen:?}");
    assert_eq!(count("got its input"), 1, "{seen:?}");
    assert_eq!(count("succeeded"), 2, "{seen:?}");
    // The watch did lose its connection and open another.
    assert!(proxy.accepted() >= 2, "{} connections", proxy.accepted());
}

/// An `https://` address speaks TLS, trusting `--tls-ca` for the name
/// `--tls-domain`; the public roots do not trust a self-signed server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_address_with_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("a self-signed certificate for localhost");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let binary = Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let args = [
        "--tls-cert".to_string(),
        cert.clone(),
        "--tls-key".to_string(),
        key.clone(),
    ];
    let process = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        taskloom_testkit::ServerProcess::start(binary, None, &args).expect("start taskloom")
    })
    .await
    .unwrap();
    let address = format!("https://127.0.0.1:{}", process.port);
    let run = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["chains", "list", "--address", &address])
            .args(extra)
            .env_remove("TASKLOOM_TLS_CA")
            .env_remove("TASKLOOM_TLS_DOMAIN");
        async move { command.output().await.unwrap() }
    };

    let trusted = run(&["--tls-ca", &cert, "--tls-domain", "localhost"]).await;
    assert_exit(&trusted, 0);
    assert!(stdout(&trusted).starts_with("ID"), "{}", stdout(&trusted));
    let untrusted = run(&[]).await;
    assert_exit(&untrusted, EXIT_CALL_FAILED);
    assert!(
        stderr(&untrusted).contains("UNAVAILABLE"),
        "{}",
        stderr(&untrusted)
    );
    assert!(
        stderr(&untrusted).contains("certificate"),
        "{}",
        stderr(&untrusted)
    );
    let plaintext = tokio::process::Command::new(binary)
        .args([
            "chains",
            "list",
            "--address",
            &process.addr,
            "--tls-ca",
            &cert,
        ])
        .output()
        .await
        .unwrap();
    assert_exit(&plaintext, EXIT_ERROR);
}

/// `--api-key` / `TASKLOOM_API_KEY` is sent as `authorization: Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_sent_as_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let keys = write(dir.path(), "keys", "cli-test-key\n");
    let server = TestServer::start_with(common::Backend::Sqlite, &["--api-keys-file", &keys]).await;

    let refused = cli(&server, &["chains", "list"]).await;
    assert_exit(&refused, EXIT_CALL_FAILED);
    assert!(
        stderr(&refused).contains("UNAUTHENTICATED"),
        "{}",
        stderr(&refused)
    );
    let flag = cli(&server, &["chains", "list", "--api-key", "cli-test-key"]).await;
    assert_exit(&flag, 0);
    let env = cli_with(
        &server,
        &["chains", "list"],
        &[("TASKLOOM_API_KEY", "cli-test-key")],
    )
    .await;
    assert_exit(&env, 0);
    assert!(stdout(&env).starts_with("ID"), "{}", stdout(&env));
}

async fn wait_status(server: &TestServer, run_id: &str, status: pb::RunStatus) -> pb::Run {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = server
            .runs()
            .get_run(pb::GetRunRequest { id: run_id.into() })
            .await
            .expect("get run")
            .into_inner();
        if run.status == status as i32 {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run_id} is {:?}, not {status:?}",
            run.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
