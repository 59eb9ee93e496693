//! Shared support for the black-box API tests: each test gets a real
//! `taskloom serve` process on a loopback port, on a fresh SQLite file or a
//! fresh PostgreSQL database, and gRPC clients connected to it.
#![allow(dead_code)]

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
        let binary = Path::new(env!("CARGO_BIN_EXE_taskloom"));
        let url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(taskloom_testkit::fresh_postgres_database().expect("fresh postgres database"))
            }
        };
        let process = tokio::task::spawn_blocking(move || {
            ServerProcess::start(binary, url.as_deref(), &[]).expect("start taskloom")
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

/// Stamps out each listed `async fn(TestServer)` as one test per store.
#[macro_export]
macro_rules! api_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::common::TestServer::start($crate::common::Backend::Sqlite).await;
                    super::$name(server).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = $crate::common::TestServer::start($crate::common::Backend::Postgres).await;
                    super::$name(server).await;
                }
            )*
        }
    };
}
