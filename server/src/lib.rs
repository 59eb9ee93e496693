//! Taskloom server: a durable execution runtime for AI task chains, served
//! over gRPC. Modules follow the data: `api` is the thin gRPC layer, `chain`
//! is pure chain logic, `store` owns all SQL, `server` wires the process.

pub mod api;
pub mod config;
pub mod dispatch;
pub mod drain;
pub mod executor;
pub mod fleet;
pub mod handshake;
pub mod health;
pub mod kernel;
pub mod llm;
pub mod memory;
pub mod metrics;
pub mod namespace;
pub mod outbound;
pub mod render;
pub mod replicas;
pub mod runner;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod traces;
pub mod web;

/// Chains, pure: validation, the compiled form, templating and output parsing.
pub use taskloom_chain as chain;

/// The protocol: messages and clients from `taskloom-proto`, and the
/// service traits `build.rs` generates with the api's codec.
pub mod proto {
    pub use taskloom_proto::{FILE_DESCRIPTOR_SET, google};

    pub mod taskloom {
        pub mod v1 {
            #![allow(clippy::all, missing_docs)]

            pub use taskloom_proto::taskloom::v1::*;

            tonic::include_proto!("taskloom.v1");
        }
    }
}

/// The server version, reported by `InfoService.GetVersion`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
