//! RunService. Runs arrive with the kernel; until then every RPC answers
//! UNIMPLEMENTED (the generated default methods).

use super::ApiContext;
use crate::proto::taskloom::v1::run_service_server::RunService;

pub struct RunApi {
    _context: ApiContext,
}

impl RunApi {
    pub fn new(context: ApiContext) -> Self {
        RunApi { _context: context }
    }
}

#[tonic::async_trait]
impl RunService for RunApi {}
