//! Secrets stay secret, against real `taskloom` processes: API-key
//! configuration fails closed, hooks follow no redirects and their error
//! bodies are truncated and redacted, outbound calls to link-local and
//! metadata addresses are refused (checked on the resolved address), and
//! provider API keys and hook secret headers are encrypted at rest in a
//! database file only its owner can read.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `taskloom serve` on a fresh SQLite file with these arguments and
/// environment until it exits on its own; see [`serve_on_until_exit`].
fn serve_until_exit(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("taskloom.db");
    serve_on_until_exit(database.to_str().unwrap(), args, env)
}

/// Runs `taskloom serve` on `database_url` until it exits on its own
/// (standard input is closed, so a server that does start stops again at
/// once); returns its exit status and standard error.
fn serve_on_until_exit(
    database_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let port = taskloom_testkit::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_taskloom"));
    command
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .arg("--exit-with-stdin")
        .args(args)
        .env_remove("TASKLOOM_API_KEYS")
        .env_remove("TASKLOOM_API_KEYS_FILE")
        .env_remove("TASKLOOM_SECRET_KEY_FILE")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn api_key_sources_without_keys_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.keys");
    std::fs::write(&empty, "").unwrap();
    let comments = dir.path().join("comments.keys");
    std::fs::write(&comments, "# production keys\n\n   \n# (none yet)\n").unwrap();

    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--api-keys-file", empty.to_str().unwrap()],
            vec![],
            "--api-keys-file",
        ),
        (
            vec!["--api-keys-file", comments.to_str().unwrap()],
            vec![],
            "--api-keys-file",
        ),
        (
            vec![],
            vec![("TASKLOOM_API_KEYS_FILE", comments.to_str().unwrap())],
            "--api-keys-file",
        ),
        (
            vec![],
            vec![("TASKLOOM_API_KEYS", ",, ,")],
            "TASKLOOM_API_KEYS",
        ),
        (
            vec![],
            vec![("TASKLOOM_API_KEYS", " ")],
            "TASKLOOM_API_KEYS",
        ),
    ];
    for (args, env, named) in cases {
        let (status, stderr) = serve_until_exit(&args, &env);
        assert!(
            !status.success(),
            "{args:?} {env:?} must not start: {status:?}\n{stderr}"
        );
        assert!(
            stderr.contains(named) && stderr.contains("no API key"),
            "{args:?} {env:?}: the message names the source: {stderr}"
        );
    }

    // A file with a key next to comments starts (and stops with stdin).
    let good = dir.path().join("good.keys");
    std::fs::write(&good, "# ops\nkey-one\n").unwrap();
    let (status, stderr) = serve_until_exit(&["--api-keys-file", good.to_str().unwrap()], &[]);
    assert!(status.success(), "{stderr}");
    // No source at all is local development mode: it starts.
    let (status, stderr) = serve_until_exit(&[], &[("TASKLOOM_API_KEYS", "")]);
    assert!(status.success(), "{stderr}");
}

// ---------------------------------------------------------------------------
// Test plumbing: a raw loopback HTTP server and a server process whose log
// is kept.

use std::sync::{Arc, Mutex};

use taskloom_server::proto::taskloom::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Responder = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A loopback HTTP/1.1 server answering each request with what `respond`
/// makes of the raw request (one request per connection), recording them.
struct RawServer {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RawServer {
    async fn start(respond: impl Fn(&str) -> String + Send + Sync + 'static) -> RawServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let respond: Responder = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let recorded = recorded.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let request = read_request(&mut socket).await;
                    recorded.lock().unwrap().push(request.clone());
                    let _ = socket.write_all(respond(&request).as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        RawServer { addr, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
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
            let length = common::raw_header(&text[..head_end], "content-length")
                .and_then(|value| value.parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= head_end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

fn http_response(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut response = format!("HTTP/1.1 {status} X\r\n");
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    response
}

/// A `taskloom serve` process with its log (at `info`) kept in a file.
struct Serve {
    child: std::process::Child,
    log: std::path::PathBuf,
    channel: tonic::transport::Channel,
}

impl Serve {
    async fn start(database_url: &str, args: &[&str], log: &Path) -> Serve {
        let port = taskloom_testkit::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_taskloom"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .arg("--exit-with-stdin")
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child,
            log: log.to_path_buf(),
            channel: tonic::transport::Channel::from_static("http://127.0.0.1:1").connect_lazy(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = serve.child.try_wait().unwrap() {
                panic!("taskloom exited with {status}:\n{}", serve.log_text());
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "taskloom did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        serve.channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        serve
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn runs(&self) -> common::RunServiceClient<tonic::transport::Channel> {
        common::RunServiceClient::new(self.channel.clone())
    }

    fn hooks(&self) -> common::HookServiceClient<tonic::transport::Channel> {
        common::HookServiceClient::new(self.channel.clone())
    }

    fn backends(&self) -> common::BackendServiceClient<tonic::transport::Channel> {
        common::BackendServiceClient::new(self.channel.clone())
    }

    fn workers(&self) -> common::WorkerServiceClient<tonic::transport::Channel> {
        common::WorkerServiceClient::new(self.channel.clone())
    }

    /// Stops the process (SIGKILL: what it wrote is on disk already).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

async fn create_hook(
    server: &Serve,
    name: &str,
    url: &str,
    secret_headers: &[(&str, &str)],
) -> pb::Hook {
    server
        .hooks()
        .create_hook(pb::CreateHookRequest {
            hook: Some(pb::Hook {
                name: name.into(),
                url: url.into(),
                timeout: seconds(5),
                secret_headers: secret_headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A one-task chain calling `hook` with up to `max_attempts` attempts.
fn hook_chain(hook: &str, max_attempts: i32) -> pb::Chain {
    pb::Chain {
        id: format!("call-{hook}"),
        tasks: vec![pb::Task {
            id: "call".into(),
            handler: "hook".into(),
            hook: Some(pb::HookCall {
                name: hook.into(),
                ..Default::default()
            }),
            retry: Some(pb::RetryPolicy {
                max_attempts,
                initial_delay: "10ms".into(),
                ..Default::default()
            }),
            transition: Some(pb::Transition::default()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Runs `chain` to its end; returns the run and its attempts.
async fn run_to_end(server: &Serve, chain: pb::Chain) -> (pb::Run, Vec<pb::TaskAttempt>) {
    let response = server
        .runs()
        .execute_chain(pb::ExecuteChainRequest {
            chain: Some(chain),
            run_input: Some(pb::execute_chain_request::RunInput::TypedInput(pb::Value {
                kind: Some(pb::value::Kind::Text("go".into())),
            })),
            ..Default::default()
        })
        .await
        .expect("execute chain")
        .into_inner();
    let run = response.run.expect("run");
    let attempts = server
        .runs()
        .list_run_attempts(pb::ListRunAttemptsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attempts;
    (run, attempts)
}

fn run_error(run: &pb::Run) -> String {
    run.error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Hooks: no redirects; error bodies truncated and redacted.

const HOOK_SECRET: &str = "hook-secret-9f8e7d6c5b4a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(
        dir.path().join("t.db").to_str().unwrap(),
        &[],
        &dir.path().join("log"),
    )
    .await;
    let target = RawServer::start(|_| http_response(200, &[], r#"{"stolen": true}"#)).await;
    let location = target.url("/collect");
    let redirecting =
        RawServer::start(move |_| http_response(302, &[("location", location.as_str())], "")).await;
    create_hook(
        &server,
        "redirecting",
        &redirecting.url("/hook"),
        &[("X-Api-Token", HOOK_SECRET)],
    )
    .await;

    let (run, attempts) = run_to_end(&server, hook_chain("redirecting", 3)).await;
    assert_eq!(run.status, pb::RunStatus::Failed as i32, "{run:?}");
    let error = run_error(&run);
    assert!(
        error.contains("302") && error.contains("not followed"),
        "{error}"
    );
    assert!(error.contains(&target.url("")), "names the target: {error}");
    assert_eq!(attempts.len(), 1, "a redirect is not retried: {attempts:?}");
    assert_eq!(redirecting.requests().len(), 1);
    assert!(
        target.requests().is_empty(),
        "the redirect target got: {:?}",
        target.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_error_bodies_are_truncated_and_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(
        dir.path().join("t.db").to_str().unwrap(),
        &[],
        &dir.path().join("log"),
    )
    .await;
    // Echoes the request (secret headers included): once at the start, in
    // upper case, once across the 1 KiB cut, then the raw request.
    let echo = RawServer::start(|request| {
        let token = common::raw_header(request, "x-api-token").unwrap_or_default();
        let body = format!(
            "got {token} / {} {}{token} {request} {}",
            token.to_uppercase(),
            "a".repeat(1024 - 10 - 2 * token.len() - 7),
            "z".repeat(4000)
        );
        http_response(500, &[], &body)
    })
    .await;
    create_hook(
        &server,
        "echo",
        &echo.url("/hook"),
        &[
            ("X-Api-Token", HOOK_SECRET),
            ("Authorization", "Bearer bearer-token-5a4b3c2d"),
        ],
    )
    .await;

    let (run, attempts) = run_to_end(&server, hook_chain("echo", 2)).await;
    assert_eq!(run.status, pb::RunStatus::Failed as i32, "{run:?}");
    assert_eq!(attempts.len(), 2, "a 500 is retried: {attempts:?}");
    assert_eq!(echo.requests().len(), 2);
    let error = run_error(&run);
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains("[REDACTED]"), "{error}");
    assert!(error.contains("[truncated"), "{error}");
    assert!(
        error.len() < 1300,
        "cut to about 1 KiB: {} bytes",
        error.len()
    );

    // Nothing any API shows, nor the log, holds the secrets or a part of
    // them as long as a prefix that survived a cut.
    let events = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: run.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let fetched = server
        .runs()
        .get_run(pb::GetRunRequest { id: run.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let dead = server
        .workers()
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        dead.attempts.iter().any(|a| a.run_id == run.id),
        "the attempt was dead-lettered: {dead:?}"
    );
    let shown = format!("{events:?}\n{fetched:?}\n{dead:?}\n{attempts:?}");
    assert!(shown.contains("[REDACTED]"));
    // Let the log catch up with the last failure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log_text();
    for secret in [HOOK_SECRET, "bearer-token-5a4b3c2d"] {
        for text in [&shown, &log] {
            let lower = text.to_ascii_lowercase();
            assert!(!lower.contains(&secret[..10]), "{secret} leaked: {text}");
        }
    }
}

// ---------------------------------------------------------------------------
// Outbound policy.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_to_metadata_and_link_local_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("t.db");
    let server = Serve::start(database.to_str().unwrap(), &[], &dir.path().join("log")).await;
    // fe80:: without a scope cannot be routed, and the metadata name is
    // refused before any lookup: even a broken policy sends no packet.
    let cases = [
        (
            "gce",
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal",
        ),
        (
            "gce-dot",
            "http://Metadata.Google.Internal./computeMetadata/v1/",
            "metadata.google.internal",
        ),
        ("linklocal", "http://[fe80::1]:9/", "[fe80::1]"),
    ];

    // The API refuses to store them…
    for (name, url, host) in cases {
        let error = server
            .hooks()
            .create_hook(pb::CreateHookRequest {
                hook: Some(pb::Hook {
                    name: name.into(),
                    url: url.into(),
                    timeout: seconds(5),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        common::assert_invalid(error.clone(), &["hook.url"]);
        assert!(error.message().contains(host), "{error:?}");
        let error = server
            .backends()
            .create_backend(pb::CreateBackendRequest {
                backend: Some(pb::Backend {
                    name: name.into(),
                    r#type: pb::BackendType::OpenaiCompatible as i32,
                    base_url: url.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        common::assert_invalid(error, &["backend.base_url"]);
    }

    // …and the call refuses them when they are stored anyway (by a version
    // before this check, or behind the API's back).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    for (name, url, host) in cases {
        sqlx::query(
            "INSERT INTO hooks (namespace, name, description, url, method, timeout_ms, headers, \
             secret_headers, queue, revision, created_at, updated_at) \
             VALUES ('default', ?, '', ?, 'POST', 5000, '{}', '{}', '', 1, 1, 1)",
        )
        .bind(name)
        .bind(url)
        .execute(&pool)
        .await
        .unwrap();
        let (run, attempts) = run_to_end(&server, hook_chain(name, 3)).await;
        assert_eq!(run.status, pb::RunStatus::Failed as i32, "{run:?}");
        let error = run_error(&run);
        assert!(
            error.to_ascii_lowercase().contains(host) && error.contains("refused"),
            "{name}: {error}"
        );
        assert_eq!(attempts.len(), 1, "{name}: not retried: {attempts:?}");
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_private_refuses_loopback_by_resolved_address() {
    let dir = tempfile::tempdir().unwrap();
    let hook = RawServer::start(|_| http_response(200, &[], r#"{"ok": true}"#)).await;
    let port = hook.addr.port();

    // Allowed by default: local models and hooks live on loopback.
    let open = Serve::start(
        dir.path().join("open.db").to_str().unwrap(),
        &[],
        &dir.path().join("open.log"),
    )
    .await;
    create_hook(&open, "local", &format!("http://localhost:{port}/"), &[]).await;
    let (run, _) = run_to_end(&open, hook_chain("local", 1)).await;
    assert_eq!(run.status, pb::RunStatus::Succeeded as i32, "{run:?}");
    assert_eq!(hook.requests().len(), 1);

    let strict = Serve::start(
        dir.path().join("strict.db").to_str().unwrap(),
        &["--outbound-deny-private"],
        &dir.path().join("strict.log"),
    )
    .await;
    // `localhost` is a name: only its resolved address tells it is loopback.
    for (name, url, shown) in [
        (
            "by-name",
            format!("http://localhost:{port}/"),
            "resolves to",
        ),
        ("literal", format!("http://127.0.0.1:{port}/"), "127.0.0.1"),
        ("decimal", format!("http://2130706433:{port}/"), "127.0.0.1"),
        (
            "mapped",
            format!("http://[::ffff:7f00:1]:{port}/"),
            "loopback",
        ),
    ] {
        create_hook(&strict, name, &url, &[]).await;
        let (run, attempts) = run_to_end(&strict, hook_chain(name, 3)).await;
        assert_eq!(run.status, pb::RunStatus::Failed as i32, "{run:?}");
        let error = run_error(&run);
        assert!(
            error.contains("refused") && error.contains(shown) && error.contains("loopback"),
            "{name}: {error}"
        );
        assert_eq!(attempts.len(), 1, "{name}: not retried");
    }
    assert_eq!(hook.requests().len(), 1, "no refused call reached the hook");
}

// ---------------------------------------------------------------------------
// Providers: keys never follow a redirect; error bodies are redacted before
// they are cut; names are checked on every resolution.

use taskloom_server::llm::{ChatMessage, ChatRequest, ErrorKind, http_client, provider_for};
use taskloom_server::outbound::{HttpClient, OutboundPolicy};

const PROVIDER_KEY: &str = "sk-very-secret-key-123";

fn chat_request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![ChatMessage::user("hi")],
        temperature: None,
        max_tokens: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_never_follow_a_redirect() {
    let target = RawServer::start(|_| http_response(200, &[], r#"{"data": []}"#)).await;
    let location = target.url("/elsewhere");
    let redirecting =
        RawServer::start(move |_| http_response(307, &[("location", location.as_str())], "")).await;
    for backend in ["openai", "anthropic", "gemini", "ollama"] {
        let provider = provider_for(
            backend,
            &redirecting.url(""),
            Some(PROVIDER_KEY),
            Duration::from_secs(10),
            http_client().unwrap(),
        )
        .unwrap();
        let error = provider.chat(&chat_request(), None).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Fatal, "{backend}: {error:?}");
        assert_eq!(error.status, Some(307), "{backend}");
        assert!(
            error.message.contains("not followed") && error.message.contains(&target.url("")),
            "{backend}: {error}"
        );
    }
    assert!(
        target.requests().is_empty(),
        "the redirect target got: {:?}",
        target.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_error_bodies_are_redacted_before_they_are_cut() {
    // The key is echoed in the provider's message, straddling the excerpt's
    // end, and again in upper case.
    let server = RawServer::start(|_| {
        let message = format!(
            "bad key {} {}{PROVIDER_KEY} and more",
            PROVIDER_KEY.to_uppercase(),
            "x".repeat(1024 - 9 - PROVIDER_KEY.len() - 1 - 5)
        );
        http_response(
            401,
            &[],
            &serde_json::json!({ "error": { "message": message } }).to_string(),
        )
    })
    .await;
    for backend in ["openai", "anthropic", "gemini"] {
        let provider = provider_for(
            backend,
            &server.url(""),
            Some(PROVIDER_KEY),
            Duration::from_secs(10),
            http_client().unwrap(),
        )
        .unwrap();
        let error = provider.chat(&chat_request(), None).await.unwrap_err();
        assert_eq!(error.status, Some(401), "{backend}");
        assert!(error.message.contains("[REDACTED]"), "{backend}: {error}");
        assert!(
            !error
                .message
                .to_ascii_lowercase()
                .contains(&PROVIDER_KEY[..5]),
            "{backend}: {error}"
        );
    }
}

/// Answers each lookup with the next of a list of address sets (the last
/// one repeats): a name whose owner changes its answer between calls.
struct ScriptedResolver {
    answers: Mutex<Vec<Vec<std::net::IpAddr>>>,
}

impl reqwest::dns::Resolve for ScriptedResolver {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let mut answers = self.answers.lock().unwrap();
        let answer = if answers.len() > 1 {
            answers.remove(0)
        } else {
            answers[0].clone()
        };
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> = answer
                .into_iter()
                .map(|ip| std::net::SocketAddr::new(ip, 0))
                .collect();
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_addresses_are_checked_on_every_call() {
    let models = RawServer::start(|_| http_response(200, &[], r#"{"data": [{"id": "m"}]}"#)).await;
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    // Scope-less link-local: unroutable, so even a broken policy sends no
    // packet anywhere.
    let link_local: std::net::IpAddr = "fe80::1".parse().unwrap();
    let resolver = ScriptedResolver {
        answers: Mutex::new(vec![
            vec![loopback],
            vec![link_local, loopback],
            vec![link_local],
        ]),
    };
    let client = HttpClient::with_resolver(OutboundPolicy::default(), Arc::new(resolver)).unwrap();
    let provider = provider_for(
        "openai_compatible",
        &format!("http://rebind.example:{}", models.addr.port()),
        None,
        Duration::from_secs(10),
        client,
    )
    .unwrap();
    // First: loopback, allowed. Second: the link-local answer is dropped
    // and the loopback one used. Third: only link-local is left: refused,
    // not retryable, naming the name, the address and the rule.
    assert_eq!(provider.list_models().await.unwrap()[0].name, "m");
    assert_eq!(provider.list_models().await.unwrap()[0].name, "m");
    let error = provider.list_models().await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Fatal, "{error:?}");
    for part in ["rebind.example", "fe80::1", "link-local", "refused"] {
        assert!(error.message.contains(part), "{part}: {error}");
    }
    assert_eq!(models.requests().len(), 2);
}

// ---------------------------------------------------------------------------
// Secrets at rest.

const AT_REST_KEY: &str = "sk-at-rest-0a1b2c3d4e5f";
const AT_REST_HEADER: &str = "hook-at-rest-6a7b8c9d";

/// A backend that answers every chat, recording what it was sent.
async fn chat_backend() -> RawServer {
    RawServer::start(|_| {
        http_response(
            200,
            &[],
            r#"{"choices": [{"message": {"content": "pong"}, "finish_reason": "stop"}]}"#,
        )
    })
    .await
}

/// Registers `backend` (openai_compatible) with the API key and a hook
/// with the secret header.
async fn create_secrets(server: &Serve, backend: &RawServer, hook: &RawServer) {
    let created = server
        .backends()
        .create_backend(pb::CreateBackendRequest {
            backend: Some(pb::Backend {
                name: "remote".into(),
                r#type: pb::BackendType::OpenaiCompatible as i32,
                base_url: backend.url(""),
                api_key: AT_REST_KEY.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server
        .backends()
        .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
            pool_id: "internal_tasks_pool".into(),
            backend_id: created.id,
        })
        .await
        .unwrap();
    create_hook(
        server,
        "stored",
        &hook.url("/hook"),
        &[("X-Api-Token", AT_REST_HEADER)],
    )
    .await;
}

/// Uses both secrets: a prompt through the backend and a run calling the
/// hook; each must have received its secret.
async fn use_secrets(server: &Serve, backend: &RawServer, hook: &RawServer) {
    let answer = server
        .backends()
        .execute_prompt(pb::ExecutePromptRequest {
            prompt: "ping".into(),
            models: vec!["m".into()],
            ..Default::default()
        })
        .await
        .expect("prompt through the stored backend")
        .into_inner();
    assert_eq!(answer.text, "pong");
    let request = backend.requests().pop().unwrap();
    assert_eq!(
        common::raw_header(&request, "authorization"),
        Some(format!("Bearer {AT_REST_KEY}").as_str())
    );
    let (run, _) = run_to_end(server, hook_chain("stored", 1)).await;
    assert_eq!(run.status, pb::RunStatus::Succeeded as i32, "{run:?}");
    let request = hook.requests().pop().unwrap();
    assert_eq!(
        common::raw_header(&request, "x-api-token"),
        Some(AT_REST_HEADER)
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every byte of the SQLite files, for a search of plain text.
fn sqlite_bytes(database: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", database.display());
        bytes.extend(std::fs::read(path).unwrap_or_default());
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_secrets_are_encrypted_in_files_only_the_owner_reads() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("taskloom.db");
    let database_url = database.to_str().unwrap().to_string();
    let key_file = dir.path().join("taskloom.db.key");
    let backend = chat_backend().await;
    let hook = RawServer::start(|_| http_response(200, &[], r#"{"ok": true}"#)).await;

    let mut server = Serve::start(&database_url, &[], &dir.path().join("1.log")).await;
    let log = server.log_text();
    assert!(
        log.contains("created a new secret key file") && log.contains("taskloom.db.key"),
        "{log}"
    );
    assert_eq!(mode(&key_file), 0o600);
    create_secrets(&server, &backend, &hook).await;
    use_secrets(&server, &backend, &hook).await;
    for file in ["taskloom.db", "taskloom.db-wal", "taskloom.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    let bytes = sqlite_bytes(&database);
    assert!(!bytes.is_empty());
    for secret in [AT_REST_KEY, AT_REST_HEADER] {
        assert!(
            !contains(&bytes, secret),
            "{secret} is stored in plain text"
        );
    }
    assert!(contains(&bytes, "taskloom-sealed:v1:"));
    server.stop();

    // Restarted, it reads its key file again and the secrets still work.
    let mut server = Serve::start(&database_url, &[], &dir.path().join("2.log")).await;
    use_secrets(&server, &backend, &hook).await;
    server.stop();

    // Another key, or no key at all, refuses to start, saying why.
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    let (status, stderr) = serve_on_until_exit(
        &database_url,
        &["--secret-key-file", other.to_str().unwrap()],
        &[],
    );
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("encrypted with secret key") && stderr.contains("--secret-key-file"),
        "{stderr}"
    );
    std::fs::write(&other, "not a key\n").unwrap();
    let (status, stderr) = serve_on_until_exit(
        &database_url,
        &["--secret-key-file", other.to_str().unwrap()],
        &[],
    );
    assert!(
        !status.success() && stderr.contains("does not hold a key"),
        "{stderr}"
    );
    std::fs::remove_file(&key_file).unwrap();
    let (status, stderr) = serve_on_until_exit(&database_url, &[], &[]);
    assert!(
        !status.success(),
        "a new key does not read old secrets: {stderr}"
    );
    assert!(stderr.contains("encrypted with secret key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_needs_a_secret_key_and_stores_secrets_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
        .await
        .unwrap()
        .unwrap();
    let (status, stderr) = serve_on_until_exit(&database_url, &[], &[]);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL needs --secret-key-file"),
        "{stderr}"
    );

    let key = dir.path().join("pg.key");
    std::fs::write(&key, format!("{}\n", "5c".repeat(32))).unwrap();
    let backend = chat_backend().await;
    let hook = RawServer::start(|_| http_response(200, &[], r#"{"ok": true}"#)).await;
    let mut server = Serve::start(
        &database_url,
        &["--secret-key-file", key.to_str().unwrap()],
        &dir.path().join("1.log"),
    )
    .await;
    create_secrets(&server, &backend, &hook).await;
    use_secrets(&server, &backend, &hook).await;
    server.stop();

    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let (api_key, headers): (String, String) = sqlx::query_as(
        "SELECT b.api_key, h.secret_headers::text FROM backends b, hooks h WHERE h.name = 'stored'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(api_key.starts_with("taskloom-sealed:v1:"), "{api_key}");
    assert!(headers.starts_with("\"taskloom-sealed:v1:"), "{headers}");
    assert!(!headers.contains(AT_REST_HEADER) && !headers.contains("X-Api-Token"));
    pool.close().await;

    // The variable names the key as well as the flag does.
    let (status, stderr) = serve_on_until_exit(
        &database_url,
        &[],
        &[("TASKLOOM_SECRET_KEY_FILE", key.to_str().unwrap())],
    );
    assert!(status.success(), "{stderr}");
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    let (status, stderr) = serve_on_until_exit(
        &database_url,
        &["--secret-key-file", other.to_str().unwrap()],
        &[],
    );
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("encrypted with secret key"), "{stderr}");
}

/// Writes a backend and a hook the way versions before encryption at rest
/// did (plain text API key, secret headers as a JSON object), on a database
/// `taskloom migrate` created.
async fn write_plaintext_secrets(database_url: &str, backend_url: &str, hook_url: &str) {
    let status = Command::new(env!("CARGO_BIN_EXE_taskloom"))
        .args(["migrate", "--database-url", database_url])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let headers = serde_json::json!({ "X-Api-Token": AT_REST_HEADER }).to_string();
    if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::query(
            "INSERT INTO backends (id, name, backend_type, base_url, api_key, priority, \
             max_concurrency, request_timeout_ms, revision, created_at, updated_at) \
             VALUES ('b-old', 'remote', 'openai_compatible', $1, $2, 0, 0, 0, 1, now(), now())",
        )
        .bind(backend_url)
        .bind(AT_REST_KEY)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO hooks (namespace, name, description, url, method, timeout_ms, headers, \
             secret_headers, queue, revision, created_at, updated_at) \
             VALUES ('default', 'stored', '', $1, 'POST', 5000, '{}', $2::jsonb, '', 1, now(), now())",
        )
        .bind(hook_url)
        .bind(&headers)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO pool_backends (pool_id, backend_id) VALUES ('internal_tasks_pool', 'b-old')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{database_url}"))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO backends (id, name, backend_type, base_url, api_key, priority, \
             max_concurrency, request_timeout_ms, labels, revision, created_at, updated_at) \
             VALUES ('b-old', 'remote', 'openai_compatible', ?, ?, 0, 0, 0, '{}', 1, 1, 1)",
        )
        .bind(backend_url)
        .bind(AT_REST_KEY)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO hooks (namespace, name, description, url, method, timeout_ms, headers, \
             secret_headers, queue, revision, created_at, updated_at) \
             VALUES ('default', 'stored', '', ?, 'POST', 5000, '{}', ?, '', 1, 1, 1)",
        )
        .bind(hook_url)
        .bind(&headers)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO pool_backends (pool_id, backend_id) VALUES ('internal_tasks_pool', 'b-old')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
}

/// The stored API key and secret headers, as text.
async fn stored_secrets(database_url: &str) -> (String, String) {
    let query = "SELECT b.api_key, CAST(h.secret_headers AS TEXT) FROM backends b, hooks h";
    if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let row = sqlx::query_as(query).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    } else {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{database_url}"))
            .await
            .unwrap();
        let row = sqlx::query_as(query).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    }
}

async fn plaintext_secrets_of_earlier_versions_are_encrypted_at_start(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let database_url = if postgres {
        tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
            .await
            .unwrap()
            .unwrap()
    } else {
        dir.path().join("old.db").to_str().unwrap().to_string()
    };
    let key = dir.path().join("k.key");
    std::fs::write(&key, format!("{}\n", "3e".repeat(32))).unwrap();
    let args = ["--secret-key-file", key.to_str().unwrap()];
    let backend = chat_backend().await;
    let hook = RawServer::start(|_| http_response(200, &[], r#"{"ok": true}"#)).await;
    write_plaintext_secrets(&database_url, &backend.url(""), &hook.url("/hook")).await;
    assert_eq!(
        stored_secrets(&database_url).await.0,
        AT_REST_KEY,
        "written in plain text"
    );

    let mut server = Serve::start(&database_url, &args, &dir.path().join("1.log")).await;
    let log = server.log_text();
    assert!(
        log.contains("encrypted secrets that an earlier version stored in plain text")
            && log.contains("sealed=2"),
        "{log}"
    );
    let (api_key, headers) = stored_secrets(&database_url).await;
    assert!(api_key.starts_with("taskloom-sealed:v1:"), "{api_key}");
    assert!(headers.contains("taskloom-sealed:v1:"), "{headers}");
    assert!(!headers.contains(AT_REST_HEADER), "{headers}");
    use_secrets(&server, &backend, &hook).await;
    server.stop();

    // The second start has nothing left to encrypt.
    let server = Serve::start(&database_url, &args, &dir.path().join("2.log")).await;
    assert!(!server.log_text().contains("earlier version"));
    use_secrets(&server, &backend, &hook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_plaintext_secrets_of_earlier_versions_are_encrypted_at_start() {
    plaintext_secrets_of_earlier_versions_are_encrypted_at_start(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_plaintext_secrets_of_earlier_versions_are_encrypted_at_start() {
    plaintext_secrets_of_earlier_versions_are_encrypted_at_start(true).await;
}

/// The store itself, on both backends: plain text of earlier versions reads
/// until sealed, sealing is counted once, and another key is a clear
/// `Corrupt` error naming both keys, never a panic.
async fn store_seals_plaintext_and_names_a_wrong_key(postgres: bool) {
    use taskloom_server::secrets::SecretBox;
    use taskloom_server::store::{self, StoreError};

    let dir = tempfile::tempdir().unwrap();
    let database_url = if postgres {
        tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
            .await
            .unwrap()
            .unwrap()
    } else {
        dir.path().join("s.db").to_str().unwrap().to_string()
    };
    write_plaintext_secrets(&database_url, "http://127.0.0.1:9", "http://127.0.0.1:9/h").await;
    let key = SecretBox::from_key([1; 32]);
    let store = store::open(&database_url, key.clone()).await.unwrap();
    let backend = store.get_backend("b-old").await.unwrap();
    assert_eq!(backend.api_key.as_deref(), Some(AT_REST_KEY));
    assert_eq!(
        store
            .get_hook("default", "stored")
            .await
            .unwrap()
            .secret_headers["X-Api-Token"],
        AT_REST_HEADER
    );
    assert_eq!(store.seal_stored_secrets().await.unwrap(), 2);
    assert_eq!(store.seal_stored_secrets().await.unwrap(), 0);
    assert_eq!(store.get_backend("b-old").await.unwrap(), backend);

    let other = SecretBox::from_key([2; 32]);
    let wrong = store::open(&database_url, other.clone()).await.unwrap();
    for error in [
        wrong.seal_stored_secrets().await.unwrap_err(),
        wrong.get_backend("b-old").await.unwrap_err(),
        wrong.get_hook("default", "stored").await.unwrap_err(),
    ] {
        let message = error.to_string();
        assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
        assert!(
            message.contains(key.key_id()) && message.contains(other.key_id()),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_seals_plaintext_and_names_a_wrong_key() {
    store_seals_plaintext_and_names_a_wrong_key(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_seals_plaintext_and_names_a_wrong_key() {
    store_seals_plaintext_and_names_a_wrong_key(true).await;
}
