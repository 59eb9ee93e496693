//! Server-level behaviour of a real `taskloom serve` process: health,
//! reflection, version info, UNIMPLEMENTED for later RPCs, compression, and
//! graceful shutdown.

mod common;

use common::TestServer;
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

api_tests!(health_version_and_unimplemented, compression_and_shutdown);

async fn health_version_and_unimplemented(server: TestServer) {
    let mut health = HealthClient::new(server.channel.clone());
    for service in [
        "",
        "taskloom.v1.ChainService",
        "taskloom.v1.BackendService",
        "taskloom.v1.RunService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let version = server
        .info()
        .get_version(pb::GetVersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.api_version, "v1");
    assert!(!version.version.is_empty());
    assert!(["sqlite", "postgres"].contains(&version.store.as_str()));

    let error = server
        .runs()
        .start_run(pb::StartRunRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unimplemented);
}

async fn compression_and_shutdown(mut server: TestServer) {
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut client = server
            .chains()
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let listed = client
            .list_chains(pb::ListChainsRequest::default())
            .await
            .expect("compressed call")
            .into_inner();
        assert!(listed.chains.is_empty());
    }

    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || server.process.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
