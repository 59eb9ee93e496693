//! Compiles `proto/` with protox (no system protoc) and generates the tonic
//! services. The encoded descriptor set is also written out for gRPC
//! reflection; it includes `google.rpc` so clients can decode error details.
use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from("../proto");
    let files = [
        "taskloom/v1/common.proto",
        "taskloom/v1/chain.proto",
        "taskloom/v1/backend.proto",
        "taskloom/v1/hook.proto",
        "taskloom/v1/run.proto",
        "taskloom/v1/worker.proto",
        "taskloom/v1/info.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
    ];
    println!("cargo:rerun-if-changed=../proto");
    // `sqlx::migrate!` embeds these; new files must trigger a rebuild.
    println!("cargo:rerun-if-changed=migrations");

    let descriptors = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("taskloom_descriptor.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // WorkerService has an RPC named `Connect`, which would clash with the
        // generated `XClient::connect` constructor; clients use `XClient::new`.
        .build_transport(false)
        // RPCs a release does not implement yet answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        // Requests that do not decode answer INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::api::codec::ProstCodec")
        // Deterministic map order: stable encodings for request hashes and
        // stored definitions.
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
