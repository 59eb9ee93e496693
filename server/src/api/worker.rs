//! WorkerService. Lease streams arrive with the worker protocol; until then
//! every RPC answers UNIMPLEMENTED (the generated default methods).

use super::ApiContext;
use crate::proto::taskloom::v1::worker_service_server::WorkerService;

pub struct WorkerApi {
    _context: ApiContext,
}

impl WorkerApi {
    pub fn new(context: ApiContext) -> Self {
        WorkerApi { _context: context }
    }
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {}
