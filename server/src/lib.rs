//! Taskloom server: a durable execution runtime for AI task chains, served
//! over gRPC. Modules follow the data: `api` is the thin gRPC layer, `chain`
//! is pure chain logic, `store` owns all SQL, `server` wires the process.

pub mod api;
pub mod chain;
pub mod config;
pub mod dispatch;
pub mod drain;
pub mod executor;
pub mod handshake;
pub mod health;
pub mod kernel;
pub mod llm;
pub mod memory;
pub mod outbound;
pub mod render;
pub mod runner;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;

/// Code generated from `proto/` by `build.rs`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]

    pub mod taskloom {
        pub mod v1 {
            tonic::include_proto!("taskloom.v1");
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }

    /// Encoded descriptors of every served proto (and `google.rpc`), for
    /// server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("taskloom_descriptor");
}

/// The server version, reported by `InfoService.GetVersion`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
