//! The gRPC services. Thin: every handler decodes and validates its
//! request (the conversions live in [`convert`], one file per resource),
//! calls one function of the store, kernel, dispatcher or executor, and
//! encodes the answer; errors map to gRPC codes once, through
//! [`ApiError`]. No SQL, no provider HTTP, no decision here.

/// Implements a gRPC service in the one handler convention: each listed
/// method names the [`Permission`](permissions::Permission) it needs,
/// which is checked against the caller (authenticated by
/// [`Authenticator`] before the request was decoded) before anything else;
/// then it hands its decoded request to the service's inherent method of
/// the same name (which returns an [`ApiResult`]) and answers through
/// [`respond`]. The permissions listed here are the permission table
/// ([`rpc_permissions`]).
macro_rules! service {
    (impl $service:ident for $api:ident {
        $(fn $method:ident($request:ty) -> $response:ty = $permission:ident;)*
    }) => {
        impl $api {
            /// The service's RPCs (handler names) and their permissions.
            pub const PERMISSIONS: &'static [(&'static str, super::permissions::Permission)] = &[
                $((stringify!($method), super::permissions::Permission::$permission),)*
            ];
            /// The service's name in `taskloom.v1`.
            pub const SERVICE: &'static str = stringify!($service);
        }

        #[tonic::async_trait]
        impl $service for $api {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$request>,
                ) -> Result<tonic::Response<$response>, tonic::Status> {
                    let caller = request
                        .extensions()
                        .get::<super::auth::Caller>()
                        .cloned()
                        .unwrap_or_else(super::auth::Caller::local);
                    caller.require(super::permissions::Permission::$permission)?;
                    let call = $api::$method(self, request.into_inner());
                    super::respond(super::auth::with_caller(caller, call).await)
                }
            )*
        }
    };
}

pub mod audit;
mod audit_api;
mod auth;
mod backend;
mod chain;
pub mod codec;
mod convert;
mod error;
mod hook;
mod info;
pub mod keys;
mod namespaces;
mod operations;
mod page;
pub mod permissions;
mod request;
mod run;
mod worker;

use std::sync::Arc;

use tokio::sync::watch;

pub use audit_api::AuditApi;
pub use auth::{Authenticator, Caller, call_namespace, caller};
pub use backend::BackendApi;
pub use chain::ChainApi;
pub use error::{ApiError, ApiResult, ERROR_DOMAIN};
pub use hook::HookApi;
pub use info::InfoApi;
pub use keys::{KeyApi, KeySpec, key_message, new_key};
pub use namespaces::NamespaceApi;
pub use operations::OperationsApi;
pub use run::RunApi;
pub use worker::WorkerApi;

use crate::dispatch::Dispatcher;
use crate::executor::Executor;
use crate::fleet::Fleet;
use crate::kernel::Kernel;
use crate::store::DynStore;

/// State shared by every service of one server process.
#[derive(Clone)]
pub struct ApiContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    kernel: Kernel,
    executor: Arc<Executor>,
    dispatcher: Dispatcher,
    fleet: Fleet,
    auth: Authenticator,
    draining: watch::Sender<bool>,
}

impl ApiContext {
    pub fn new(
        kernel: Kernel,
        executor: Arc<Executor>,
        dispatcher: Dispatcher,
        fleet: Fleet,
        auth: Authenticator,
    ) -> Self {
        let (draining, _) = watch::channel(false);
        ApiContext {
            inner: Arc::new(ContextInner {
                kernel,
                executor,
                dispatcher,
                fleet,
                auth,
                draining,
            }),
        }
    }

    /// The built-in handlers (for one-shot model calls).
    pub fn executor(&self) -> &Executor {
        &self.inner.executor
    }

    /// This replica's worker sessions.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// The reconciler and the model pulls.
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }

    /// The key checks (reloaded at once after this replica changes keys).
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    pub fn store(&self) -> &DynStore {
        self.inner.kernel.store()
    }

    pub fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    /// This process's replica id.
    pub fn instance_id(&self) -> &str {
        self.inner.kernel.instance_id()
    }

    /// Tells long-lived streams to end with UNAVAILABLE.
    pub fn begin_drain(&self) {
        self.inner.draining.send_replace(true);
    }

    /// Turns true once the server starts draining.
    pub fn drain_state(&self) -> watch::Receiver<bool> {
        self.inner.draining.subscribe()
    }

    /// Resolves once the server starts draining.
    pub async fn drained(&self) {
        let mut receiver = self.inner.draining.subscribe();
        let _ = receiver.wait_for(|draining| *draining).await;
    }
}

/// Converts an API result into a tonic response.
fn respond<T>(result: ApiResult<T>) -> Result<tonic::Response<T>, tonic::Status> {
    result
        .map(tonic::Response::new)
        .map_err(tonic::Status::from)
}

/// The permission table: every RPC of every Taskloom service and the one
/// permission it needs, as the `service!` invocations declare them.
pub fn rpc_permissions() -> Vec<permissions::RpcPermission> {
    let services = [
        (AuditApi::SERVICE, AuditApi::PERMISSIONS),
        (BackendApi::SERVICE, BackendApi::PERMISSIONS),
        (ChainApi::SERVICE, ChainApi::PERMISSIONS),
        (HookApi::SERVICE, HookApi::PERMISSIONS),
        (InfoApi::SERVICE, InfoApi::PERMISSIONS),
        (KeyApi::SERVICE, KeyApi::PERMISSIONS),
        (NamespaceApi::SERVICE, NamespaceApi::PERMISSIONS),
        (OperationsApi::SERVICE, OperationsApi::PERMISSIONS),
        (RunApi::SERVICE, RunApi::PERMISSIONS),
        (WorkerApi::SERVICE, WorkerApi::PERMISSIONS),
    ];
    services
        .into_iter()
        .flat_map(|(service, methods)| {
            methods
                .iter()
                .map(move |(handler, permission)| permissions::RpcPermission {
                    service: format!("taskloom.v1.{service}"),
                    method: permissions::grpc_method(handler),
                    permission: *permission,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    /// Every RPC the descriptors declare has exactly one entry in the
    /// permission table, and the table names no other: a new RPC without
    /// a permission fails here.
    #[test]
    fn every_rpc_has_exactly_one_permission() {
        let descriptors = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut declared = BTreeSet::new();
        for file in descriptors.file {
            if file.package() != "taskloom.v1" {
                continue;
            }
            for service in file.service {
                for method in &service.method {
                    declared.insert(format!("taskloom.v1.{}/{}", service.name(), method.name()));
                }
            }
        }
        let table = super::rpc_permissions();
        let mut listed = BTreeSet::new();
        for entry in &table {
            let name = format!("{}/{}", entry.service, entry.method);
            assert!(listed.insert(name.clone()), "{name} is listed twice");
        }
        assert_eq!(declared, listed);
        assert!(declared.len() > 60, "{}", declared.len());
    }

    /// docs/security.md's permission table is the code's.
    #[test]
    fn the_documented_permission_table_matches() {
        let doc = include_str!("../../../docs/security.md");
        let table = super::rpc_permissions();
        for entry in &table {
            let service = entry.service.trim_start_matches("taskloom.v1.");
            let row = format!(
                "| {service} | `{}` | `{}` |",
                entry.method,
                entry.permission.name()
            );
            assert!(doc.contains(&row), "docs/security.md lacks {row}");
        }
        let rows = doc
            .lines()
            .filter(|line| line.starts_with("| ") && line.contains("Service | `"))
            .count();
        assert_eq!(rows, table.len());
    }
}
