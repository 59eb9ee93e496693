//! The gRPC services. Thin: every handler decodes and validates its
//! request (the conversions live in [`convert`], one file per resource),
//! calls one function of the store, kernel, dispatcher or executor, and
//! encodes the answer; errors map to gRPC codes once, through
//! [`ApiError`]. No SQL, no provider HTTP, no decision here.

/// Implements a gRPC service in the one handler convention: each listed
/// method hands its decoded request to the service's inherent method of the
/// same name (which returns an [`ApiResult`]) and answers through
/// [`respond`].
macro_rules! service {
    (impl $service:ident for $api:ident {
        $(fn $method:ident($request:ty) -> $response:ty;)*
    }) => {
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
mod operations;
mod page;
mod request;
mod run;
mod worker;

use std::sync::Arc;

use tokio::sync::watch;

pub use audit_api::AuditApi;
pub use auth::{ApiKeys, Caller, caller};
pub use backend::BackendApi;
pub use chain::ChainApi;
pub use error::{ApiError, ApiResult, ERROR_DOMAIN};
pub use hook::HookApi;
pub use info::InfoApi;
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
    draining: watch::Sender<bool>,
}

impl ApiContext {
    pub fn new(
        kernel: Kernel,
        executor: Arc<Executor>,
        dispatcher: Dispatcher,
        fleet: Fleet,
    ) -> Self {
        let (draining, _) = watch::channel(false);
        ApiContext {
            inner: Arc::new(ContextInner {
                kernel,
                executor,
                dispatcher,
                fleet,
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
