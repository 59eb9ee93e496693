//! InfoService: what this server is, for SDK feature detection.

use super::{ApiContext, ApiResult};
use crate::proto::taskloom::v1::{self as pb, info_service_server::InfoService};

pub struct InfoApi {
    context: ApiContext,
}

impl InfoApi {
    pub fn new(context: ApiContext) -> Self {
        InfoApi { context }
    }
}

/// Capabilities this build implements.
const FEATURES: &[&str] = &[
    "backends",
    "pools",
    "models",
    "hooks",
    "chains",
    "chain_versions",
    "runs",
    "workers",
    "backend_sync",
    "model_pull",
    "audit",
    "api_keys",
];

service! {
    impl InfoService for InfoApi {
        fn get_version(pb::GetVersionRequest) -> pb::GetVersionResponse = InfoRead;
    }
}

impl InfoApi {
    async fn get_version(
        &self,
        _request: pb::GetVersionRequest,
    ) -> ApiResult<pb::GetVersionResponse> {
        Ok(pb::GetVersionResponse {
            version: crate::VERSION.to_string(),
            api_version: "v1".to_string(),
            store: self.context.store().kind().to_string(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            instance_id: self.context.instance_id().to_string(),
        })
    }
}
