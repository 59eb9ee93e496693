//! Generates the tonic service traits of `taskloom.v1` from the descriptor
//! set `taskloom-proto` compiled (its messages and clients live there). The
//! traits are generated here because they decode requests with the api's
//! codec, which answers INVALID_ARGUMENT for a request that does not decode.
use prost::Message;
use prost_types::FileDescriptorSet;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptor_path = std::env::var("DEP_TASKLOOM_PROTO_DESCRIPTOR_SET")?;
    println!("cargo:rerun-if-changed={descriptor_path}");
    // `sqlx::migrate!` embeds these; new files must trigger a rebuild.
    println!("cargo:rerun-if-changed=migrations");
    // The web UI embedded by `web.rs`: a rebuilt bundle has new file names.
    println!("cargo:rerun-if-changed=../ui/dist");

    let mut descriptors = FileDescriptorSet::decode(std::fs::read(&descriptor_path)?.as_slice())?;
    // Services only: every message and enum comes from `taskloom_proto`.
    for file in &mut descriptors.file {
        file.message_type.clear();
        file.enum_type.clear();
    }

    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .build_transport(false)
        .extern_path(".taskloom.v1", "::taskloom_proto::taskloom::v1")
        .extern_path(".google.rpc", "::taskloom_proto::google::rpc")
        // RPCs a release does not implement yet answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        // Requests that do not decode answer INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::api::codec::ProstCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
