//! Compiles the `.proto` files beside this manifest with protox (no system
//! protoc) into messages and tonic clients. The encoded descriptor set is
//! written out too: for gRPC reflection (it includes `google.rpc` so clients
//! can decode error details), and for the server's build script, which
//! generates the service traits from it with the server's own codec.
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "taskloom/v1/common.proto",
        "taskloom/v1/chain.proto",
        "taskloom/v1/backend.proto",
        "taskloom/v1/hook.proto",
        "taskloom/v1/run.proto",
        "taskloom/v1/worker.proto",
        "taskloom/v1/info.proto",
        "taskloom/v1/operations.proto",
        "taskloom/v1/audit.proto",
        "taskloom/v1/security.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
    ];
    println!("cargo:rerun-if-changed=taskloom");
    println!("cargo:rerun-if-changed=google");

    let descriptors = protox::compile(files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("taskloom_descriptor.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;
    println!("cargo:descriptor_set={}", descriptor_path.display());

    tonic_prost_build::configure()
        .build_client(true)
        // The server generates its service traits itself: they decode
        // requests with its codec, which answers INVALID_ARGUMENT.
        .build_server(false)
        // WorkerService has an RPC named `Connect`, which would clash with the
        // generated `XClient::connect` constructor; clients use `XClient::new`.
        .build_transport(false)
        // Deterministic map order: stable encodings for request hashes and
        // stored definitions.
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
