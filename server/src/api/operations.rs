//! OperationsService: queues (figures, pause, resume) and replicas (list,
//! drain). Pausing a queue nobody has used yet is allowed: queues are
//! implicit (named by tasks and workers), and an operator may pause one
//! before its work arrives.

use super::audit;
use super::request::{Violations, require, timestamp};
use super::{ApiContext, ApiError, ApiResult, call_namespace, caller};
use crate::api::permissions::Role;
use crate::kernel::INTERNAL_QUEUE;
use crate::kernel::QueueFigures;
use crate::proto::taskloom::v1::{self as pb, operations_service_server::OperationsService};
use crate::store::{ReplicaRecord, ReplicaState};

pub struct OperationsApi {
    context: ApiContext,
}

impl OperationsApi {
    pub fn new(context: ApiContext) -> Self {
        OperationsApi { context }
    }
}

service! {
    impl OperationsService for OperationsApi {
        fn list_queues(pb::ListQueuesRequest) -> pb::ListQueuesResponse = QueuesRead;
        fn pause_queue(pb::PauseQueueRequest) -> pb::Queue = QueuesWrite;
        fn resume_queue(pb::ResumeQueueRequest) -> pb::Queue = QueuesWrite;
        fn list_replicas(pb::ListReplicasRequest) -> pb::ListReplicasResponse = ReplicasRead;
        fn drain_replica(pb::DrainReplicaRequest) -> pb::Replica = ReplicasWrite;
    }
}

impl OperationsApi {
    async fn list_queues(
        &self,
        _request: pb::ListQueuesRequest,
    ) -> ApiResult<pb::ListQueuesResponse> {
        let queues = self.context.kernel().list_queues(&call_namespace()).await?;
        let now = chrono::Utc::now();
        Ok(pb::ListQueuesResponse {
            queues: queues.into_iter().map(|q| queue_message(q, now)).collect(),
        })
    }

    async fn pause_queue(&self, request: pb::PauseQueueRequest) -> ApiResult<pb::Queue> {
        let record = audit::action(
            &self.context,
            "PauseQueue",
            "queue",
            &request.name,
            &request.request_id,
        );
        audit::audited(&self.context, record, async |audit| {
            check_queue_request(&request.name, &request.request_id)?;
            let queue = self
                .context
                .kernel()
                .pause_queue(&call_namespace(), &request.name, audit)
                .await?;
            Ok(queue_message(queue, chrono::Utc::now()))
        })
        .await
    }

    async fn resume_queue(&self, request: pb::ResumeQueueRequest) -> ApiResult<pb::Queue> {
        let record = audit::action(
            &self.context,
            "ResumeQueue",
            "queue",
            &request.name,
            &request.request_id,
        );
        audit::audited(&self.context, record, async |audit| {
            check_queue_request(&request.name, &request.request_id)?;
            let queue = self
                .context
                .kernel()
                .resume_queue(&call_namespace(), &request.name, audit)
                .await?;
            Ok(queue_message(queue, chrono::Utc::now()))
        })
        .await
    }

    async fn list_replicas(
        &self,
        _request: pb::ListReplicasRequest,
    ) -> ApiResult<pb::ListReplicasResponse> {
        let sessions_since = chrono::Utc::now()
            - chrono::Duration::from_std(self.context.dispatcher().published_freshness())
                .unwrap_or(chrono::Duration::MAX);
        let replicas = self.context.kernel().list_replicas(sessions_since).await?;
        Ok(pb::ListReplicasResponse {
            replicas: replicas.into_iter().map(replica_message).collect(),
        })
    }

    async fn drain_replica(&self, request: pb::DrainReplicaRequest) -> ApiResult<pb::Replica> {
        let record = audit::action(
            &self.context,
            "DrainReplica",
            "replica",
            &request.id,
            &request.request_id,
        );
        audit::audited(&self.context, record, async |audit| {
            require("id", &request.id)?;
            let mut violations = Violations::new();
            violations.check_request_id("request_id", &request.request_id);
            violations.finish()?;
            let replica = self
                .context
                .kernel()
                .drain_replica(&request.id, audit)
                .await?;
            Ok(replica_message(replica))
        })
        .await
    }
}

/// Checks a pause or resume. The internal queue serves every namespace,
/// so only an admin may pause or resume it.
fn check_queue_request(name: &str, request_id: &str) -> ApiResult<()> {
    let mut violations = Violations::new();
    violations.check_id("name", name);
    violations.check_request_id("request_id", request_id);
    violations.finish()?;
    let role = caller().role;
    if name == INTERNAL_QUEUE && role != Role::Admin {
        return Err(ApiError::PermissionDenied {
            reason: "SHARED_QUEUE",
            message: "the internal queue serves every namespace: only an admin may pause or \
                      resume it"
                .to_string(),
            metadata: vec![
                ("role", role.name().to_string()),
                ("queue", name.to_string()),
            ],
        });
    }
    Ok(())
}

fn queue_message(queue: QueueFigures, now: chrono::DateTime<chrono::Utc>) -> pb::Queue {
    let record = queue.record;
    let oldest_ready_age = record.oldest_ready_at.map(|at| {
        let age = (now - at).to_std().unwrap_or_default();
        prost_types::Duration {
            seconds: age.as_secs() as i64,
            nanos: age.subsec_nanos() as i32,
        }
    });
    pb::Queue {
        name: crate::namespace::unqualified(&record.name).to_string(),
        ready: record.ready,
        oldest_ready_age,
        leased: record.leased,
        scheduled: record.scheduled,
        paused: record.pause.is_some(),
        paused_by: record
            .pause
            .as_ref()
            .map(|pause| pause.paused_by.clone())
            .unwrap_or_default(),
        pause_time: record
            .pause
            .as_ref()
            .map(|pause| timestamp(pause.paused_at)),
        concurrency_cap: queue.concurrency_cap,
    }
}

fn replica_message(replica: ReplicaRecord) -> pb::Replica {
    let state = match replica.state {
        ReplicaState::Active => pb::ReplicaState::Active,
        ReplicaState::Draining => pb::ReplicaState::Draining,
        ReplicaState::Gone => pb::ReplicaState::Gone,
    };
    pb::Replica {
        id: replica.id,
        listen_address: replica.listen_address,
        version: replica.version,
        start_time: Some(timestamp(replica.started_at)),
        heartbeat_time: Some(timestamp(replica.heartbeat_at)),
        state: state as i32,
        runs_held: replica.runs_held,
        leases_held: replica.leases_held,
        worker_sessions: replica.worker_sessions,
        stop_time: replica.stopped_at.map(timestamp),
    }
}
