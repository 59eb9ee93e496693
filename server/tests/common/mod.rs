//! Shared support for the black-box API tests: each test gets a real
//! `taskloom serve` process on a loopback port, on a fresh SQLite file or a
//! fresh PostgreSQL database, and gRPC clients connected to it.
#![allow(dead_code)]

pub mod chains;
pub mod slow_runs;
pub mod stores;

use std::path::Path;

use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::ServerProcess;
use tonic::transport::Channel;
use tonic_types::StatusExt;

pub use pb::backend_service_client::BackendServiceClient;
pub use pb::chain_service_client::ChainServiceClient;
pub use pb::hook_service_client::HookServiceClient;
pub use pb::info_service_client::InfoServiceClient;
pub use pb::run_service_client::RunServiceClient;
pub use pb::worker_service_client::WorkerServiceClient;

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    pub process: ServerProcess,
    pub channel: Channel,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_with(backend, &[]).await
    }

    /// A server started with extra `serve` flags.
    pub async fn start_with(backend: Backend, args: &[&str]) -> TestServer {
        let url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(taskloom_testkit::fresh_postgres_database().expect("fresh postgres database"))
            }
        };
        TestServer::start_on(url, args).await
    }

    /// A server on the store at `url` (`None`: a fresh SQLite file); given
    /// the URL of another server's PostgreSQL database, another replica.
    pub async fn start_on(url: Option<String>, args: &[&str]) -> TestServer {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let binary = Path::new(env!("CARGO_BIN_EXE_taskloom"));
        let process = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ServerProcess::start(binary, url.as_deref(), &args).expect("start taskloom")
        })
        .await
        .expect("join");
        let channel = Channel::from_shared(process.addr.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        TestServer { process, channel }
    }

    pub fn backends(&self) -> BackendServiceClient<Channel> {
        BackendServiceClient::new(self.channel.clone())
    }

    /// An OpenAI-compatible backend `fake` at `url` in the built-in tasks
    /// pool; returns its id.
    pub async fn add_fake_backend(&self, url: &str) -> String {
        let mut backends = self.backends();
        let backend = backends
            .create_backend(pb::CreateBackendRequest {
                backend: Some(pb::Backend {
                    name: "fake".into(),
                    r#type: pb::BackendType::OpenaiCompatible as i32,
                    base_url: url.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        backends
            .assign_backend_to_pool(pb::AssignBackendToPoolRequest {
                pool_id: "internal_tasks_pool".into(),
                backend_id: backend.id.clone(),
            })
            .await
            .unwrap();
        backend.id
    }

    pub fn chains(&self) -> ChainServiceClient<Channel> {
        ChainServiceClient::new(self.channel.clone())
    }

    pub fn hooks(&self) -> HookServiceClient<Channel> {
        HookServiceClient::new(self.channel.clone())
    }

    pub fn info(&self) -> InfoServiceClient<Channel> {
        InfoServiceClient::new(self.channel.clone())
    }

    pub fn runs(&self) -> RunServiceClient<Channel> {
        RunServiceClient::new(self.channel.clone())
    }

    pub fn workers(&self) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::new(self.channel.clone())
    }
}

/// The fields named by a status's `google.rpc.BadRequest` detail.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The `google.rpc.ErrorInfo` reason of a status.
pub fn error_reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// Asserts an INVALID_ARGUMENT naming exactly these fields (in any order).
#[track_caller]
pub fn assert_invalid(status: tonic::Status, fields: &[&str]) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let mut got = violated_fields(&status);
    got.sort();
    let mut want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "violations of {status:?}");
    assert_eq!(error_reason(&status), "INVALID_ARGUMENT");
}

/// Stamps out each listed `async fn(TestServer)` as one test per store, in
/// modules `sqlite` and `postgres`; `api_tests!(ARGS; sqlite_x, postgres_x;
/// …)` starts the servers with the extra `serve` flags `ARGS` and names the
/// modules.
#[macro_export]
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        $crate::api_tests!(NO_ARGS; sqlite, postgres; $($name),*);
        const NO_ARGS: &[&str] = &[];
    };
    ($args:ident; $sqlite:ident, $postgres:ident; $($name:ident),* $(,)?) => {
        mod $sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::common::TestServer::start_with($crate::common::Backend::Sqlite, super::$args).await;
                    super::$name(server).await;
                }
            )*
        }
        mod $postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::common::TestServer::start_with($crate::common::Backend::Postgres, super::$args).await;
                    super::$name(server).await;
                }
            )*
        }
    };
}

/// A tiny HTTP server for hook tests: answers every request with `status`
/// and `body` after `delay`, and records each raw request.
pub struct HookServer {
    pub url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl HookServer {
    pub async fn start(status: u16, body: &'static str, delay: std::time::Duration) -> HookServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let recorded = recorded.clone();
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
                                .find_map(|line| {
                                    line.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if buffer.len() >= head_end + 4 + length {
                                break;
                            }
                        }
                    }
                    recorded
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buffer).into_owned());
                    tokio::time::sleep(delay).await;
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        HookServer { url, requests }
    }

    /// Raw requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The value of a header in a raw HTTP request.
pub fn raw_header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    request.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim().to_ascii_lowercase() == name).then(|| value.trim())
    })
}

/// A replica on the PostgreSQL database at `url`: its process and a
/// channel to it.
pub async fn replica(url: &str) -> (ServerProcess, Channel) {
    let server = TestServer::start_on(Some(url.to_string()), &[]).await;
    (server.process, server.channel)
}
