//! The web UI listener (`--http-listen`), black-box: the embedded UI's
//! files, the API over gRPC-Web with the same keys as gRPC, and the
//! same-origin rules that keep other web pages out.

mod common;

use std::time::Duration;

use common::{Backend, TestServer};
use prost::Message;
use taskloom_server::proto::taskloom::v1 as pb;

const ADMIN_KEY: &str = "web-admin-key-0123456789";

/// A server with the UI on a port of its own choosing, and that UI's base
/// URL.
async fn start(backend: Backend, args: &[&str]) -> (TestServer, String) {
    let mut all = vec!["--http-listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = TestServer::start_with(backend, &all).await;
    let base = server
        .process
        .printed("taskloom web UI listening on ", Duration::from_secs(10))
        .expect("the web UI address is printed");
    (server, base)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One gRPC-Web frame holding `message`.
fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// What a gRPC-Web call answered: its messages and its status.
#[derive(Debug)]
struct WebReply {
    http_status: u16,
    messages: Vec<Vec<u8>>,
    grpc_status: Option<i32>,
    grpc_message: String,
}

async fn grpc_web(
    base: &str,
    method: &str,
    message: &impl Message,
    headers: &[(&str, &str)],
) -> WebReply {
    let mut request = http()
        .post(format!("{base}/{method}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame(message));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the call is answered");
    let http_status = response.status().as_u16();
    // A trailers-only answer carries its status in the headers.
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let mut grpc_status = header("grpc-status").and_then(|code| code.parse().ok());
    let mut grpc_message = header("grpc-message").unwrap_or_default();
    let framed =
        header("content-type").is_some_and(|kind| kind.starts_with("application/grpc-web"));
    let body = response.bytes().await.expect("the body is read");
    let body = if framed { body } else { Default::default() };
    let mut messages = Vec::new();
    let mut rest = &body[..];
    while rest.len() >= 5 {
        let flag = rest[0];
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..(5 + length).min(rest.len())];
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n") {
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "grpc-status" => grpc_status = value.trim().parse().ok(),
                        "grpc-message" => grpc_message = value.trim().to_string(),
                        _ => {}
                    }
                }
            }
        } else {
            messages.push(payload.to_vec());
        }
        rest = &rest[(5 + length).min(rest.len())..];
    }
    WebReply {
        http_status,
        messages,
        grpc_status,
        grpc_message,
    }
}

fn create_chain() -> pb::CreateChainRequest {
    pb::CreateChainRequest {
        chain: Some(common::chains::noop_chain("greet", 2)),
        ..Default::default()
    }
}

/// The UI's page, its routes and its files, with headers that keep it out
/// of frames and other sites' scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_embedded_ui() {
    let (_server, base) = start(Backend::Sqlite, &[]).await;
    for path in ["/", "/runs", "/runs/01J0000000000000000000000/events"] {
        let page = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let headers = page.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}: {headers:?}"
        );
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'self'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        let text = page.text().await.unwrap();
        assert!(text.contains("<html"), "{path}: {text}");
    }
    // Every file the page names is served, hashed ones for a year.
    let index = http().get(format!("{base}/")).send().await.unwrap();
    let index = index.text().await.unwrap();
    for name in index
        .split(['"', '\''])
        .filter(|part| part.starts_with("/assets/"))
    {
        let file = http().get(format!("{base}{name}")).send().await.unwrap();
        assert_eq!(file.status(), 200, "{name}");
        assert!(
            file.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable"),
            "{name}"
        );
    }
    let stale = http()
        .get(format!("{base}/assets/index-gone.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 404, "a missing hashed file is not the page");
    let head = http().head(format!("{base}/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

/// The browser's protocol reaches every service, unary and streaming, and
/// answers errors as gRPC statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_calls_reach_the_api() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (_server, base) = start(backend, &[]).await;
        let created = grpc_web(
            &base,
            "taskloom.v1.ChainService/CreateChain",
            &create_chain(),
            &[],
        )
        .await;
        assert_eq!(created.grpc_status, Some(0), "{created:?}");
        let chain = pb::Chain::decode(&created.messages[0][..]).unwrap();
        assert_eq!((chain.id.as_str(), chain.version), ("greet", 1));

        let started = grpc_web(
            &base,
            "taskloom.v1.RunService/StartAndWatchRun",
            &pb::StartAndWatchRunRequest {
                start: Some(pb::StartRunRequest {
                    chain_id: "greet".into(),
                    run_input: Some(pb::start_run_request::RunInput::TypedInput(
                        common::chains::text_value("hi"),
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &[],
        )
        .await;
        assert_eq!(started.grpc_status, Some(0), "{started:?}");
        let events: Vec<pb::RunEvent> = started
            .messages
            .iter()
            .map(|message| pb::RunEvent::decode(&message[..]).unwrap())
            .collect();
        assert!(events.len() >= 3, "a stream of events: {events:?}");
        let last = events.last().unwrap();
        assert_eq!(last.r#type(), pb::RunEventType::RunSucceeded, "{last:?}");

        let missing = grpc_web(
            &base,
            "taskloom.v1.RunService/GetRun",
            &pb::GetRunRequest {
                id: "no-such-run".into(),
            },
            &[],
        )
        .await;
        assert_eq!(missing.grpc_status, Some(5), "NOT_FOUND: {missing:?}");
        assert!(missing.grpc_message.contains("no-such-run"), "{missing:?}");
        let unknown = grpc_web(
            &base,
            "taskloom.v1.NoService/Nothing",
            &pb::GetRunRequest::default(),
            &[],
        )
        .await;
        assert_eq!(unknown.grpc_status, Some(12), "UNIMPLEMENTED: {unknown:?}");
    }
}

/// The browser sends the same API keys as any client; without one the
/// call is refused before it reaches a service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_needs_the_same_keys() {
    let keys = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(keys.path(), format!("{ADMIN_KEY}\n")).unwrap();
    let keys_path = keys.path().display().to_string();
    let (_server, base) = start(Backend::Sqlite, &["--api-keys-file", &keys_path]).await;
    let list = pb::ListChainsRequest::default();
    let method = "taskloom.v1.ChainService/ListChains";
    let anonymous = grpc_web(&base, method, &list, &[]).await;
    assert_eq!(
        anonymous.grpc_status,
        Some(16),
        "UNAUTHENTICATED: {anonymous:?}"
    );
    let wrong = grpc_web(&base, method, &list, &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.grpc_status, Some(16), "{wrong:?}");
    let bearer = format!("Bearer {ADMIN_KEY}");
    let admin = grpc_web(&base, method, &list, &[("authorization", &bearer)]).await;
    assert_eq!(admin.grpc_status, Some(0), "{admin:?}");
    let elsewhere = grpc_web(
        &base,
        method,
        &list,
        &[
            ("authorization", &bearer),
            ("x-taskloom-namespace", "nowhere"),
        ],
    )
    .await;
    assert_eq!(elsewhere.grpc_status, Some(5), "{elsewhere:?}");
    // The page itself is public: it holds no data.
    let page = http().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
}

/// Another site's page in the user's browser cannot call the API: no
/// CORS answer, cross-origin calls refused, and on loopback only loopback
/// host names (no DNS rebinding into an open-mode server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_are_refused() {
    let (_server, base) = start(Backend::Sqlite, &[]).await;
    let port = base.rsplit(':').next().unwrap().to_string();
    let method = "taskloom.v1.ChainService/ListChains";
    let list = pb::ListChainsRequest::default();

    let same = grpc_web(&base, method, &list, &[("origin", &base)]).await;
    assert_eq!(same.grpc_status, Some(0), "the UI's own origin: {same:?}");
    let localhost = format!("http://localhost:{port}");
    let by_name = grpc_web(
        &base,
        method,
        &list,
        &[
            ("host", &format!("localhost:{port}")),
            ("origin", &localhost),
        ],
    )
    .await;
    assert_eq!(by_name.grpc_status, Some(0), "{by_name:?}");

    let cross = grpc_web(&base, method, &list, &[("origin", "http://evil.example")]).await;
    assert_eq!(cross.http_status, 403, "{cross:?}");
    assert!(cross.messages.is_empty());
    let rebound = grpc_web(
        &base,
        method,
        &list,
        &[("host", &format!("evil.example:{port}"))],
    )
    .await;
    assert_eq!(rebound.http_status, 403, "{rebound:?}");
    let rebound_page = http()
        .get(format!("{base}/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound_page.status(), 403);

    let preflight = http()
        .request(reqwest::Method::OPTIONS, format!("{base}/{method}"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
        .await
        .unwrap();
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-origin"),
        "{:?}",
        preflight.headers()
    );
}

/// `--http-listen off` serves no UI; an explicit address that is taken
/// stops the start; an open server does not put its UI on the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_flag() {
    let server = TestServer::start_with(Backend::Sqlite, &["--http-listen", "off"]).await;
    assert!(
        server
            .process
            .printed("taskloom web UI listening on ", Duration::from_millis(500))
            .is_err()
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("taskloom.db").display().to_string();
    let refused = |args: &[&str]| {
        std::process::Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &database,
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let output = refused(&["--http-listen", &taken]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--http-listen"), "{stderr}");

    let output = refused(&["--http-listen", "0.0.0.0:0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let output = refused(&["--http-listen", "nonsense"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`off`"), "{stderr}");
}

/// With `--tls-cert` the UI and its API are served over HTTPS (HTTP/2,
/// which every browser speaks over TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https() {
    use tower::ServiceExt as _;

    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let (cert_path, key_path) = (cert.display().to_string(), key.display().to_string());
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let args = [
        "--tls-cert",
        &cert_path,
        "--tls-key",
        &key_path,
        "--http-listen",
        "127.0.0.1:0",
    ];
    let server = taskloom_testkit::ServerProcess::start(binary, None, &args).unwrap();
    let base = server
        .printed("taskloom web UI listening on ", Duration::from_secs(10))
        .unwrap();
    let port = base.rsplit(':').next().unwrap();
    assert!(base.starts_with("https://"), "{base}");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(made.cert.pem()))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection to the UI's address");

    let page = channel
        .clone()
        .oneshot(
            http::Request::get(format!("https://localhost:{port}/"))
                .body(tonic::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    let web = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebClientLayer::new())
        .map_request(|request: http::Request<_>| request.map(tonic::body::Body::new))
        .service(channel);
    let listed = pb::chain_service_client::ChainServiceClient::new(web)
        .list_chains(pb::ListChainsRequest::default())
        .await
        .expect("gRPC-Web over HTTPS");
    assert!(listed.into_inner().chains.is_empty());

    let plain = reqwest::get(format!("http://127.0.0.1:{port}/")).await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "no plaintext beside TLS"
    );
}

/// A connection to the UI's port that sends nothing is closed after the
/// handshake timeout; a browser's request on another connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed() {
    use tokio::io::AsyncReadExt;
    let (_server, base) = start(Backend::Sqlite, &["--handshake-timeout", "1s"]).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0u8; 256];
        loop {
            match silent.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server closes a silent connection");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let page = http().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
}
