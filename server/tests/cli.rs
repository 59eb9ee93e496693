//! The `taskloom` client commands (chains, runs, workers, backends, audit,
//! namespaces, queues, keys, profiles), black-box: the built
//! `taskloom` binary run against a real server (SQLite and PostgreSQL), its
//! output and exit codes checked as a script would.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestServer;
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Pull, Reply};
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
    backends_list_get_sync_and_pull,
    audit_namespaces_and_queues,
    runs_list_time_filters,
    status_cells_are_coloured_on_request,
    profiles_fill_in_the_connection,
    a_terminal_gets_a_progress_bar_and_colour,
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
    let mut with_address = args.to_vec();
    with_address.extend(["--address", server.process.addr.as_str()]);
    taskloom(&with_address, env).await
}

/// Runs `taskloom ARGS` with no client variable inherited from the
/// environment, and no CLI config file unless `env` names one.
async fn taskloom(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskloom"));
    command.args(args).kill_on_drop(true);
    for name in [
        "TASKLOOM_ADDRESS",
        "TASKLOOM_API_KEY",
        "TASKLOOM_API_KEY_FILE",
        "TASKLOOM_NAMESPACE",
        "TASKLOOM_PROFILE",
        "TASKLOOM_DATABASE_URL",
        "TASKLOOM_TLS_CA",
        "TASKLOOM_TLS_DOMAIN",
        "NO_COLOR",
        "CLICOLOR_FORCE",
    ] {
        command.env_remove(name);
    }
    command.env("TASKLOOM_CONFIG", "/nonexistent/taskloom/cli.toml");
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

    // From a file only its owner may read; one others may read is refused.
    use std::os::unix::fs::PermissionsExt;
    let key_file = write(dir.path(), "key", "cli-test-key\n");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let from_file = cli(&server, &["chains", "list", "--api-key-file", &key_file]).await;
    assert_exit(&from_file, 0);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let readable = cli(&server, &["chains", "list", "--api-key-file", &key_file]).await;
    assert_exit(&readable, EXIT_ERROR);
    assert!(
        stderr(&readable).contains("chmod 600"),
        "{}",
        stderr(&readable)
    );
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

/// An Ollama backend named `name` at `url`.
async fn add_ollama(server: &TestServer, name: &str, url: &str) -> String {
    server
        .backends()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: name.into(),
                r#type: pb::BackendType::Ollama as i32,
                base_url: url.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("create an Ollama backend")
        .into_inner()
        .id
}

async fn backends_list_get_sync_and_pull(server: TestServer) {
    let fake = FakeLlm::start().await;
    fake.set_models(["small"]);
    let id = server.add_fake_backend(&fake.url()).await;

    let listed = cli(&server, &["backends", "list", "-o", "json"]).await;
    assert_exit(&listed, 0);
    let backends = json_lines(&listed);
    assert_eq!(backends.len(), 1, "{backends:?}");
    assert_eq!(backends[0]["name"], "fake");
    assert_eq!(backends[0]["id"], id.as_str());

    // By name: people know backends by name.
    let synced = cli(&server, &["backends", "sync", "fake"]).await;
    assert_exit(&synced, 0);
    let text = stdout(&synced);
    assert!(text.contains("HEALTHY") && text.contains("small"), "{text}");
    let table = cli(&server, &["backends", "list"]).await;
    assert_exit(&table, 0);
    let text = stdout(&table);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|line| line.starts_with("fake") && line.contains("HEALTHY")),
        "{text}"
    );
    // By id, as JSON.
    let got = cli(&server, &["backends", "get", &id, "-o", "json"]).await;
    assert_exit(&got, 0);
    let backend = &json_lines(&got)[0];
    assert_eq!(backend["state"]["health"], "BACKEND_HEALTH_HEALTHY");
    assert_eq!(backend["state"]["models"][0], "small");

    let unknown = cli(&server, &["backends", "get", "no-such-backend"]).await;
    assert_exit(&unknown, EXIT_CALL_FAILED);
    assert!(
        stderr(&unknown).contains("NOT_FOUND"),
        "{}",
        stderr(&unknown)
    );
    let unknown = cli(&server, &["backends", "pull", "no-such-backend", "m"]).await;
    assert_exit(&unknown, EXIT_CALL_FAILED);
    assert!(
        stderr(&unknown).contains("NOT_FOUND"),
        "{}",
        stderr(&unknown)
    );

    // A pull onto an Ollama backend: a line per status and per tenth when
    // standard error is no terminal.
    let ollama = FakeLlm::start().await;
    ollama.script_pull("llama3", Pull::success(3000, 3));
    add_ollama(&server, "ollama", &ollama.url()).await;
    let pulled = cli(&server, &["backends", "pull", "ollama", "llama3"]).await;
    assert_exit(&pulled, 0);
    let lines: Vec<String> = stdout(&pulled).lines().map(str::to_string).collect();
    assert_eq!(lines.first().map(String::as_str), Some("pulling manifest"));
    let downloads: Vec<&String> = lines.iter().filter(|l| l.contains(" bytes (")).collect();
    assert_eq!(downloads.len(), 3, "{lines:?}");
    assert!(
        downloads[0].ends_with(": 1000/3000 bytes (33%)"),
        "{lines:?}"
    );
    assert!(
        downloads[2].ends_with(": 3000/3000 bytes (100%)"),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("pulled llama3 onto ollama"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|line| line == "success"), "{lines:?}");

    // `-o json`: every progress message, one per line, the last `done`.
    ollama.script_pull("phi", Pull::success(2000, 2));
    let json = cli(
        &server,
        &["backends", "pull", "ollama", "phi", "-o", "json"],
    )
    .await;
    assert_exit(&json, 0);
    let messages = json_lines(&json);
    assert_eq!(messages[0]["status"], "pulling manifest");
    assert!(
        messages
            .iter()
            .any(|m| m["completedBytes"] == 1000 && m["totalBytes"] == 2000),
        "{messages:?}"
    );
    assert_eq!(messages.last().unwrap()["done"], true, "{messages:?}");

    // A failed download, and a backend that cannot pull: failed calls.
    ollama.script_pull("broken", Pull::failing("disk full"));
    let failed = cli(&server, &["backends", "pull", "ollama", "broken"]).await;
    assert_exit(&failed, EXIT_CALL_FAILED);
    assert!(stderr(&failed).contains("disk full"), "{}", stderr(&failed));
    let refused = cli(&server, &["backends", "pull", "fake", "llama3"]).await;
    assert_exit(&refused, EXIT_CALL_FAILED);
    assert!(
        stderr(&refused).contains("FAILED_PRECONDITION"),
        "{}",
        stderr(&refused)
    );

    let pools = cli(&server, &["backends", "pools", "-o", "json"]).await;
    assert_exit(&pools, 0);
    let pools = json_lines(&pools);
    let tasks = pools
        .iter()
        .find(|pool| pool["id"] == "internal_tasks_pool")
        .unwrap_or_else(|| panic!("{pools:?}"));
    assert_eq!(tasks["backends"], serde_json::json!(["fake"]));
    server
        .backends()
        .create_model(pb::CreateModelRequest {
            model: Some(pb::Model {
                name: "small".into(),
                context_length: 4096,
                capabilities: vec![pb::ModelCapability::Chat as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("declare a model");
    let models = cli(&server, &["backends", "models"]).await;
    assert_exit(&models, 0);
    let text = stdout(&models);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with("small") && line.contains("4096")),
        "{text}"
    );
}

async fn audit_namespaces_and_queues(server: TestServer) {
    let created = cli(
        &server,
        &[
            "namespaces",
            "create",
            "team-x",
            "--description",
            "the x team",
        ],
    )
    .await;
    assert_exit(&created, 0);
    assert_eq!(stdout(&created), "namespace team-x: created\n");
    let listed = cli(&server, &["namespaces", "list", "-o", "json"]).await;
    assert_exit(&listed, 0);
    let names: Vec<String> = json_lines(&listed)
        .iter()
        .map(|namespace| namespace["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "team-x"]);
    let got = cli(&server, &["namespaces", "get", "team-x"]).await;
    assert_exit(&got, 0);
    assert!(stdout(&got).contains("the x team"), "{}", stdout(&got));
    let missing = cli(&server, &["namespaces", "get", "team-y"]).await;
    assert_exit(&missing, EXIT_CALL_FAILED);
    assert!(
        stderr(&missing).contains("NOT_FOUND"),
        "{}",
        stderr(&missing)
    );

    let paused = cli(&server, &["queues", "pause", "search"]).await;
    assert_exit(&paused, 0);
    assert_eq!(stdout(&paused), "queue search: PAUSED\n");
    let queues = cli(&server, &["queues", "list", "-o", "json"]).await;
    assert_exit(&queues, 0);
    let queues = json_lines(&queues);
    assert!(
        queues
            .iter()
            .any(|queue| queue["name"] == "search" && queue["paused"] == true),
        "{queues:?}"
    );
    let table = cli(&server, &["queues", "list"]).await;
    assert!(
        stdout(&table)
            .lines()
            .any(|line| line.starts_with("search") && line.contains("PAUSED")),
        "{}",
        stdout(&table)
    );
    let resumed = cli(&server, &["queues", "resume", "search"]).await;
    assert_exit(&resumed, 0);
    assert_eq!(stdout(&resumed), "queue search: ACTIVE\n");

    let replicas = cli(&server, &["replicas", "list", "-o", "json"]).await;
    assert_exit(&replicas, 0);
    let replicas = json_lines(&replicas);
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(replicas[0]["state"], "REPLICA_STATE_ACTIVE");
    let table = cli(&server, &["replicas", "list"]).await;
    assert!(
        stdout(&table)
            .lines()
            .nth(1)
            .is_some_and(|line| line.contains("ACTIVE")),
        "{}",
        stdout(&table)
    );
    let unknown = cli(&server, &["replicas", "drain", "no-such-replica"]).await;
    assert_exit(&unknown, EXIT_CALL_FAILED);
    assert!(
        stderr(&unknown).contains("NOT_FOUND"),
        "{}",
        stderr(&unknown)
    );

    let deleted = cli(&server, &["namespaces", "delete", "team-x"]).await;
    assert_exit(&deleted, 0);
    assert!(
        stdout(&deleted).starts_with("namespace team-x: deleted"),
        "{}",
        stdout(&deleted)
    );

    // The audit log has it all, newest first; its filters are the API's.
    let all = cli(&server, &["audit", "list", "-o", "json", "--since", "1h"]).await;
    assert_exit(&all, 0);
    let actions: Vec<String> = json_lines(&all)
        .iter()
        .map(|event| event["action"].as_str().unwrap().to_string())
        .collect();
    let position = |action: &str| {
        actions
            .iter()
            .position(|seen| seen == action)
            .unwrap_or_else(|| panic!("no {action} in {actions:?}"))
    };
    assert!(
        position("ResumeQueue") < position("PauseQueue"),
        "{actions:?}"
    );
    let pauses = cli(
        &server,
        &["audit", "list", "-o", "json", "--action", "PauseQueue"],
    )
    .await;
    let pauses = json_lines(&pauses);
    assert_eq!(pauses.len(), 1, "{pauses:?}");
    assert_eq!(pauses[0]["resourceId"], "search");
    assert_eq!(pauses[0]["outcome"], "OK");
    let table = cli(
        &server,
        &["audit", "list", "--action", "ResumeQueue", "--limit", "1"],
    )
    .await;
    assert_exit(&table, 0);
    let text = stdout(&table);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.starts_with("TIME"), "{text}");
    assert!(
        text.contains("ResumeQueue") && text.contains("queue search"),
        "{text}"
    );
    let old = cli(
        &server,
        &[
            "audit",
            "list",
            "-o",
            "json",
            "--before",
            "2000-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_exit(&old, 0);
    assert_eq!(stdout(&old), "");
    let bad = cli(&server, &["audit", "list", "--since", "yesterday"]).await;
    assert_exit(&bad, 2);
}

async fn runs_list_time_filters(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "quick.json",
        &one_task_chain("quick", "noop", ""),
    );
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);
    let started = cli(
        &server,
        &[
            "runs", "start", "quick", "--input", "x", "--label", "team=a",
        ],
    )
    .await;
    assert_exit(&started, 0);
    let run_id = stdout(&started).trim().to_string();

    let ids = |output: &Output| -> Vec<String> {
        json_lines(output)
            .iter()
            .map(|run| run["id"].as_str().unwrap().to_string())
            .collect()
    };
    let recent = cli(&server, &["runs", "list", "-o", "json", "--since", "1h"]).await;
    assert_exit(&recent, 0);
    assert_eq!(ids(&recent), [run_id.as_str()]);
    let after = cli(
        &server,
        &[
            "runs",
            "list",
            "-o",
            "json",
            "--after",
            "2000-01-01T00:00:00Z",
            "--label",
            "team=a",
        ],
    )
    .await;
    assert_eq!(ids(&after), [run_id.as_str()]);
    for window in [
        ["--before", "2000-01-01T00:00:00Z"],
        ["--after", "2999-01-01T00:00:00+02:00"],
        ["--label", "team=b"],
    ] {
        let none = cli(
            &server,
            &[&["runs", "list", "-o", "json"][..], &window[..]].concat(),
        )
        .await;
        assert_exit(&none, 0);
        assert_eq!(stdout(&none), "", "{window:?}");
    }
    for bad in [
        &["--since", "5x"][..],
        &["--after", "tuesday"],
        &["--since", "1h", "--after", "2000-01-01T00:00:00Z"],
    ] {
        let refused = cli(&server, &[&["runs", "list"][..], bad].concat()).await;
        assert_exit(&refused, 2);
    }
}

/// Status cells are coloured with `--color always`, and not on a pipe or
/// with `NO_COLOR`.
async fn status_cells_are_coloured_on_request(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "quick.json",
        &one_task_chain("quick", "noop", ""),
    );
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);
    let started = cli(&server, &["runs", "start", "quick", "--input", "x"]).await;
    let run_id = stdout(&started).trim().to_string();
    wait_status(&server, &run_id, pb::RunStatus::Succeeded).await;

    let always = cli(&server, &["runs", "list", "--color", "always"]).await;
    assert_exit(&always, 0);
    assert!(
        stdout(&always).contains("\u{1b}[") && stdout(&always).contains("SUCCEEDED"),
        "{:?}",
        stdout(&always)
    );
    let piped = cli(&server, &["runs", "list"]).await;
    assert!(!stdout(&piped).contains('\u{1b}'), "{:?}", stdout(&piped));
    let never = cli_with(&server, &["runs", "list"], &[("NO_COLOR", "1")]).await;
    assert!(!stdout(&never).contains('\u{1b}'), "{:?}", stdout(&never));
    let forced = cli_with(
        &server,
        &["runs", "list", "--color", "never"],
        &[("CLICOLOR_FORCE", "1")],
    )
    .await;
    assert!(!stdout(&forced).contains('\u{1b}'), "{:?}", stdout(&forced));
    let bad = cli(&server, &["runs", "list", "--color", "sometimes"]).await;
    assert_exit(&bad, 2);
}

/// Runs `taskloom ARGS --address <server>` on a pseudo-terminal (util-linux
/// `script`), as a person at a terminal would; returns what the terminal
/// showed (stdout and stderr together).
async fn on_a_terminal(server: &TestServer, args: &[&str], env: &[(&str, &str)]) -> String {
    let quote = |arg: &str| format!("'{}'", arg.replace('\'', "'\\''"));
    // A terminal 160 columns wide (`script`'s own has no size).
    let mut line = vec![
        "stty cols 160 rows 50;".to_string(),
        quote(env!("CARGO_BIN_EXE_taskloom")),
    ];
    line.extend(args.iter().map(|arg| quote(arg)));
    line.extend(["--address".to_string(), quote(&server.process.addr)]);
    let mut command = tokio::process::Command::new("script");
    command
        .args(["-qec", &line.join(" "), "/dev/null"])
        .env("TERM", "xterm-256color")
        .env("TASKLOOM_CONFIG", "/nonexistent/taskloom/cli.toml")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the CLI ends within a minute")
        .expect("run script (util-linux)");
    assert_exit(&output, 0);
    stdout(&output)
}

/// On a terminal: status cells are coloured unless `NO_COLOR` is set, and
/// a pull draws a progress bar instead of printing lines.
async fn a_terminal_gets_a_progress_bar_and_colour(server: TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "quick.json",
        &one_task_chain("quick", "noop", ""),
    );
    assert_exit(&cli(&server, &["chains", "apply", "-f", &file]).await, 0);
    let started = cli(&server, &["runs", "start", "quick", "--input", "x"]).await;
    let run_id = stdout(&started).trim().to_string();
    wait_status(&server, &run_id, pb::RunStatus::Succeeded).await;

    let coloured = on_a_terminal(&server, &["runs", "list"], &[]).await;
    assert!(
        coloured.contains("SUCCEEDED") && coloured.contains('\u{1b}'),
        "{coloured:?}"
    );
    let shown = on_a_terminal(&server, &["runs", "get", &run_id], &[]).await;
    assert!(
        shown.contains("SUCCEEDED") && shown.contains('\u{1b}'),
        "{shown:?}"
    );
    let plain = on_a_terminal(&server, &["runs", "list"], &[("NO_COLOR", "1")]).await;
    assert!(
        plain.contains("SUCCEEDED") && !plain.contains('\u{1b}'),
        "{plain:?}"
    );

    let ollama = FakeLlm::start().await;
    ollama.script_pull("llama3", Pull::success(3 * 1024 * 1024, 3));
    add_ollama(&server, "ollama", &ollama.url()).await;
    let pulled = on_a_terminal(&server, &["backends", "pull", "ollama", "llama3"], &[]).await;
    // The bar's last state: full, with the size in binary units.
    assert!(pulled.contains("3.00 MiB/3.00 MiB"), "{pulled:?}");
    assert!(
        pulled.contains("[=============================="),
        "{pulled:?}"
    );
    assert!(!pulled.contains(" bytes ("), "no plain lines: {pulled:?}");
    assert!(pulled.contains("pulled llama3 onto ollama"), "{pulled:?}");
}

/// Writes `text` as a CLI config file with mode `mode`.
fn config_file(dir: &Path, text: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = write(dir, "cli.toml", text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// A profile gives the address and namespace; flags override it; a
/// missing profile, and a key others may read, are refused.
async fn profiles_fill_in_the_connection(server: TestServer) {
    pb::namespace_service_client::NamespaceServiceClient::new(server.channel.clone())
        .create_namespace(pb::CreateNamespaceRequest {
            name: "team-p".into(),
            ..Default::default()
        })
        .await
        .expect("create namespace");
    let dir = tempfile::tempdir().unwrap();
    let chain = write(
        dir.path(),
        "p.json",
        &one_task_chain("profiled", "noop", ""),
    );
    let address = server.process.addr.as_str();
    let config = config_file(
        dir.path(),
        &format!(
            "default_profile = \"nowhere\"\n\
             [profiles.test]\naddress = \"{address}\"\nnamespace = \"team-p\"\n\
             [profiles.nowhere]\naddress = \"http://127.0.0.1:9\"\n"
        ),
        0o644,
    );
    let env = [("TASKLOOM_CONFIG", config.as_str())];

    let applied = taskloom(
        &["chains", "apply", "-f", &chain, "--profile", "test"],
        &env,
    )
    .await;
    assert_exit(&applied, 0);
    let listed = taskloom(
        &["chains", "list", "-o", "json"],
        &[
            ("TASKLOOM_CONFIG", config.as_str()),
            ("TASKLOOM_PROFILE", "test"),
        ],
    )
    .await;
    assert_exit(&listed, 0);
    assert_eq!(json_lines(&listed)[0]["id"], "profiled");
    // The flag beats the profile's namespace.
    let default = taskloom(
        &[
            "chains",
            "list",
            "-o",
            "json",
            "--profile",
            "test",
            "--namespace",
            "default",
        ],
        &env,
    )
    .await;
    assert_exit(&default, 0);
    assert_eq!(stdout(&default), "");
    // The default profile points nowhere; an address flag beats it.
    let nowhere = taskloom(&["chains", "list"], &env).await;
    assert_exit(&nowhere, EXIT_CALL_FAILED);
    assert!(
        stderr(&nowhere).contains("127.0.0.1:9"),
        "{}",
        stderr(&nowhere)
    );
    let flagged = taskloom(&["chains", "list", "--address", address], &env).await;
    assert_exit(&flagged, 0);

    let unknown = taskloom(&["chains", "list", "--profile", "prod"], &env).await;
    assert_exit(&unknown, EXIT_ERROR);
    assert!(
        stderr(&unknown).contains("no profile prod") && stderr(&unknown).contains("nowhere, test"),
        "{}",
        stderr(&unknown)
    );
    let no_file = taskloom(&["chains", "list", "--profile", "test"], &[]).await;
    assert_exit(&no_file, EXIT_ERROR);
    assert!(
        stderr(&no_file).contains("no config file"),
        "{}",
        stderr(&no_file)
    );

    // A key in a file others can read is refused.
    let secret = config_file(
        dir.path(),
        &format!("[profiles.test]\naddress = \"{address}\"\napi_key = \"k\"\n"),
        0o644,
    );
    let refused = taskloom(
        &["chains", "list", "--profile", "test"],
        &[("TASKLOOM_CONFIG", secret.as_str())],
    )
    .await;
    assert_exit(&refused, EXIT_ERROR);
    assert!(
        stderr(&refused).contains("chmod 600"),
        "{}",
        stderr(&refused)
    );
    config_file(
        dir.path(),
        &format!("[profiles.test]\naddress = \"{address}\"\napi_key = \"k\"\n"),
        0o600,
    );
    let private = taskloom(
        &["chains", "list", "--profile", "test"],
        &[("TASKLOOM_CONFIG", secret.as_str())],
    )
    .await;
    assert_exit(&private, 0);
    let broken = config_file(dir.path(), "[profiles.test]\nadress = \"x\"\n", 0o600);
    let refused = taskloom(
        &["chains", "list", "--profile", "test"],
        &[("TASKLOOM_CONFIG", broken.as_str())],
    )
    .await;
    assert_exit(&refused, EXIT_ERROR);
    assert!(stderr(&refused).contains("adress"), "{}", stderr(&refused));
}

/// `taskloom keys` against a server when one is named and no database
/// (the server's `KeyService`), against the database otherwise, as the
/// bootstrap always did.
async fn keys_local_and_remote(url: String, server: TestServer) {
    let key_env = |key: &str| [("TASKLOOM_API_KEY", key.to_string())];
    // An open server: the first key can come through the API.
    let created = cli(
        &server,
        &[
            "keys",
            "create",
            "--role",
            "admin",
            "--name",
            "ops",
            "--expires-in",
            "30d",
        ],
    )
    .await;
    assert_exit(&created, 0);
    let admin = printed(&stdout(&created), "secret:");
    assert!(admin.starts_with("tlk_"), "{}", stdout(&created));
    let admin_id = printed(&stdout(&created), "id:");

    // Now closed: a call without a key fails within about a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = cli(&server, &["keys", "list"]).await;
        if refused.status.code() == Some(EXIT_CALL_FAILED) {
            assert!(
                stderr(&refused).contains("UNAUTHENTICATED"),
                "{}",
                stderr(&refused)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            stdout(&refused)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The local command with a database wins over TASKLOOM_ADDRESS.
    let local = taskloom(
        &[
            "keys",
            "create",
            "--role",
            "viewer",
            "--name",
            "local",
            "--database-url",
            &url,
        ],
        &[("TASKLOOM_ADDRESS", server.process.addr.as_str())],
    )
    .await;
    assert_exit(&local, 0);
    let viewer = printed(&stdout(&local), "secret:");
    let viewer_id = printed(&stdout(&local), "id:");

    let env = key_env(&admin);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let listed = cli_with(&server, &["keys", "list", "-o", "json"], &env).await;
    assert_exit(&listed, 0);
    let keys = json_lines(&listed);
    let names: Vec<&str> = keys
        .iter()
        .map(|key| key["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ops", "local"]);
    assert!(
        !stdout(&listed).contains(&admin),
        "a secret is never listed"
    );
    assert_eq!(keys[0]["id"], admin_id.as_str());
    assert_eq!(keys[0]["createdBy"], "local");
    assert_eq!(keys[1]["createdBy"], "cli");
    let table = cli_with(&server, &["keys", "list"], &env).await;
    assert!(
        stdout(&table)
            .lines()
            .any(|line| line.starts_with(&viewer_id) && line.contains("active")),
        "{}",
        stdout(&table)
    );

    // The viewer works (once the server has reloaded its keys, within about
    // a second), then is revoked through the API.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let works = cli(&server, &["chains", "list", "--api-key", &viewer]).await;
        if works.status.code() == Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", stderr(&works));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let revoked = cli_with(&server, &["keys", "revoke", &viewer_id], &env).await;
    assert_exit(&revoked, 0);
    assert_eq!(stdout(&revoked), format!("revoked: {viewer_id}\n"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refused = cli(&server, &["chains", "list", "--api-key", &viewer]).await;
        if refused.status.code() == Some(EXIT_CALL_FAILED) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked key still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = cli_with(&server, &["keys", "list"], &env).await;
    assert!(
        stdout(&state)
            .lines()
            .any(|line| line.starts_with(&viewer_id) && line.contains("revoked")),
        "{}",
        stdout(&state)
    );
    // The local list reads the same database.
    let local = taskloom(&["keys", "list", "--database-url", &url], &[]).await;
    assert_exit(&local, 0);
    assert!(stdout(&local).contains(&admin_id), "{}", stdout(&local));

    // The revocation is audited under the admin key; an unknown role is
    // the server's error.
    let audit = cli_with(
        &server,
        &["audit", "list", "-o", "json", "--action", "RevokeApiKey"],
        &env,
    )
    .await;
    assert_exit(&audit, 0);
    let events = json_lines(&audit);
    assert_eq!(events[0]["actor"], format!("key:{admin_id}"));
    let bad = cli_with(
        &server,
        &["keys", "create", "--role", "king", "--name", "x"],
        &env,
    )
    .await;
    assert_exit(&bad, EXIT_CALL_FAILED);
    assert!(
        stderr(&bad).contains("INVALID_ARGUMENT"),
        "{}",
        stderr(&bad)
    );
}

fn printed(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_local_and_remote_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("keys.db").display().to_string();
    let server = TestServer::start_on(Some(url.clone()), &[]).await;
    keys_local_and_remote(url, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_local_and_remote_postgres() {
    let url = taskloom_testkit::fresh_postgres_database().expect("fresh postgres database");
    let server = TestServer::start_on(Some(url.clone()), &[]).await;
    keys_local_and_remote(url, server).await;
}
