//! NamespaceService: the namespaces chains, runs, hooks, workers and queues
//! belong to (docs/security.md). Changes need an admin key bound to no
//! namespace; each is audited in its own transaction and reloaded into this
//! replica's checks at once (other replicas follow within a second, with
//! the keys).

use chrono::{SubsecRound, Utc};

use super::audit::{action, audited};
use super::keys::outside_binding;
use super::request::{Violations, timestamp};
use super::{ApiContext, ApiError, ApiResult, caller};
use crate::proto::taskloom::v1::{self as pb, namespace_service_server::NamespaceService};
use crate::store::{DynStore, NamespaceRecord};

const MAX_DESCRIPTION: usize = 1024;
/// Most pools a namespace may list.
const MAX_POOLS: usize = 64;

pub struct NamespaceApi {
    context: ApiContext,
}

impl NamespaceApi {
    pub fn new(context: ApiContext) -> Self {
        NamespaceApi { context }
    }

    fn store(&self) -> &DynStore {
        self.context.store()
    }

    /// Makes this replica's checks see a change at once.
    async fn reload(&self) {
        if let Err(error) = self.context.auth().reload(self.store()).await {
            // The poll loop retries within a quarter second.
            tracing::warn!(error = %error, "cannot reload the namespaces");
        }
    }
}

service! {
    impl NamespaceService for NamespaceApi {
        fn create_namespace(pb::CreateNamespaceRequest) -> pb::Namespace = NamespacesManage;
        fn get_namespace(pb::GetNamespaceRequest) -> pb::Namespace = NamespacesRead;
        fn list_namespaces(pb::ListNamespacesRequest) -> pb::ListNamespacesResponse = NamespacesRead;
        fn update_namespace(pb::UpdateNamespaceRequest) -> pb::Namespace = NamespacesManage;
        fn delete_namespace(pb::DeleteNamespaceRequest) -> pb::DeleteNamespaceResponse = NamespacesManage;
    }
}

impl NamespaceApi {
    async fn create_namespace(
        &self,
        request: pb::CreateNamespaceRequest,
    ) -> ApiResult<pb::Namespace> {
        let record = action(
            &self.context,
            "CreateNamespace",
            "namespace",
            &request.name,
            "",
        );
        let created = audited(&self.context, record, async |audit| {
            let caller = require_unbound("create a namespace")?;
            check_namespace(&request.name, &request.description, &request.pools)?;
            let namespace = NamespaceRecord {
                name: request.name.clone(),
                description: request.description.clone(),
                pools: request.pools.clone(),
                created_at: Utc::now().trunc_subsecs(6),
                created_by: caller.actor,
            };
            Ok(self.store().create_namespace(&namespace, audit).await?)
        })
        .await?;
        self.reload().await;
        tracing::info!(namespace = %created.name, "namespace created");
        Ok(namespace_message(created))
    }

    async fn get_namespace(&self, request: pb::GetNamespaceRequest) -> ApiResult<pb::Namespace> {
        super::request::require("name", &request.name)?;
        // A key bound to one namespace sees no other, not even its name.
        if caller()
            .key_namespace
            .is_some_and(|bound| bound != request.name)
        {
            return Err(not_found(&request.name));
        }
        Ok(namespace_message(
            self.store().get_namespace(&request.name).await?,
        ))
    }

    async fn list_namespaces(
        &self,
        _request: pb::ListNamespacesRequest,
    ) -> ApiResult<pb::ListNamespacesResponse> {
        let bound = caller().key_namespace;
        let namespaces = self.store().list_namespaces().await?;
        Ok(pb::ListNamespacesResponse {
            namespaces: namespaces
                .into_iter()
                .filter(|namespace| bound.as_ref().is_none_or(|bound| *bound == namespace.name))
                .map(namespace_message)
                .collect(),
        })
    }

    async fn update_namespace(
        &self,
        request: pb::UpdateNamespaceRequest,
    ) -> ApiResult<pb::Namespace> {
        let record = action(
            &self.context,
            "UpdateNamespace",
            "namespace",
            &request.name,
            "",
        );
        let updated = audited(&self.context, record, async |audit| {
            require_unbound("change a namespace")?;
            check_namespace(&request.name, &request.description, &request.pools)?;
            let change = (request.description.as_str(), request.pools.as_slice());
            Ok(self
                .store()
                .update_namespace(&request.name, change, audit)
                .await?)
        })
        .await?;
        self.reload().await;
        tracing::info!(namespace = %updated.name, "namespace updated");
        Ok(namespace_message(updated))
    }

    async fn delete_namespace(
        &self,
        request: pb::DeleteNamespaceRequest,
    ) -> ApiResult<pb::DeleteNamespaceResponse> {
        let record = action(
            &self.context,
            "DeleteNamespace",
            "namespace",
            &request.name,
            "",
        );
        let deleted_runs = audited(&self.context, record, async |audit| {
            require_unbound("delete a namespace")?;
            super::request::require("name", &request.name)?;
            if request.name == crate::namespace::DEFAULT {
                return Err(ApiError::FailedPrecondition {
                    reason: "DEFAULT_NAMESPACE",
                    message: "the namespace `default` cannot be deleted".to_string(),
                });
            }
            let at = Utc::now().trunc_subsecs(6);
            Ok(self
                .store()
                .delete_namespace(&request.name, at, audit)
                .await?)
        })
        .await?;
        self.reload().await;
        tracing::info!(namespace = %request.name, deleted_runs, "namespace deleted");
        Ok(pb::DeleteNamespaceResponse {
            deleted_runs: deleted_runs as i64,
        })
    }
}

/// The caller, if its key is bound to no namespace: a bound key manages
/// nothing beyond its namespace.
fn require_unbound(what: &str) -> ApiResult<super::Caller> {
    let caller = caller();
    match &caller.key_namespace {
        Some(bound) => Err(outside_binding(bound, what)),
        None => Ok(caller),
    }
}

/// Checks a namespace's name, description and pools.
fn check_namespace(name: &str, description: &str, pools: &[String]) -> ApiResult<()> {
    let mut violations = Violations::new();
    if !crate::namespace::is_valid(name) {
        violations.add(
            "name",
            "a namespace is 1 to 63 lowercase letters, digits and `-`",
        );
    }
    violations.check_text("description", description, MAX_DESCRIPTION);
    if pools.len() > MAX_POOLS {
        violations.add("pools", format!("at most {MAX_POOLS} pools"));
    }
    for (index, pool) in pools.iter().enumerate() {
        violations.check_id(&format!("pools[{index}]"), pool);
    }
    violations.finish()
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound {
        resource_type: "namespace",
        name: name.to_string(),
    }
}

fn namespace_message(record: NamespaceRecord) -> pb::Namespace {
    pb::Namespace {
        name: record.name,
        description: record.description,
        pools: record.pools,
        create_time: Some(timestamp(record.created_at)),
        created_by: record.created_by,
    }
}
