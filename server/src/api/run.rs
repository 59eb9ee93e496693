//! RunService: start, observe and steer durable runs. Every state change is
//! a kernel transition; watching and waiting are the kernel's too.

use std::future::Future;

use tonic::codegen::BoxStream;

use super::audit::{action, audited};
use super::convert::run::{
    attempt_message, execute_chain, list_runs_scope, run_filter, run_message, start_run,
    submitted_input, trace,
};
use super::page::{child_scope, encode_page, list_page, page_query};
use super::request::{Idempotent, Violations, idempotency_key, require};
use super::{ApiContext, ApiError, ApiResult, call_namespace};
use crate::kernel::watch::{Executed, RunWatch, decode_event};
use crate::kernel::{Kernel, KernelResult, replay, value};
use crate::proto::taskloom::v1::{self as pb, run_service_server::RunService};
use crate::store::{AuditRecord, IdempotencyKey, Page, RunRecord};

/// Events a `ListRunEvents` page holds when the request names no size.
const DEFAULT_EVENTS_PAGE: u32 = 100;

pub struct RunApi {
    context: ApiContext,
}

impl RunApi {
    pub fn new(context: ApiContext) -> Self {
        RunApi { context }
    }

    fn kernel(&self) -> &Kernel {
        self.context.kernel()
    }

    /// A run control (pause, resume, retry), the RPC `name`, of the run
    /// `id`: checked, keyed for idempotency, applied by `apply` with its
    /// audit record, logged as `done`, answered with the run.
    async fn control<M, Fut>(
        &self,
        (name, id): (&str, &str),
        request: &M,
        apply: impl FnOnce(Option<IdempotencyKey>, Option<AuditRecord>) -> Fut,
        done: &str,
    ) -> ApiResult<pb::Run>
    where
        M: Idempotent,
        Fut: Future<Output = KernelResult<RunRecord>>,
    {
        let record = action(&self.context, name, "run", id, request.request_id());
        let run = audited(&self.context, record, async |audit| {
            require("id", id)?;
            let mut violations = Violations::new();
            violations.check_request_id("request_id", request.request_id());
            violations.finish()?;
            Ok(apply(idempotency_key(request), Some(audit.clone())).await?)
        })
        .await?;
        tracing::info!(run_id = %run.id, "{done}");
        self.run_view(&run).await
    }

    /// The run with its active tasks and input request.
    async fn run_view(&self, run: &RunRecord) -> ApiResult<pb::Run> {
        let attempts = self.kernel().run_attempts(&run.id).await?;
        run_message(run, Some(&attempts))
    }
}

service! {
    impl RunService for RunApi {
        fn start_run(pb::StartRunRequest) -> pb::Run = RunsWrite;
        fn execute_chain(pb::ExecuteChainRequest) -> pb::ExecuteChainResponse = RunsWrite;
        fn get_run(pb::GetRunRequest) -> pb::Run = RunsRead;
        fn list_runs(pb::ListRunsRequest) -> pb::ListRunsResponse = RunsRead;
        fn watch_run(pb::WatchRunRequest) -> BoxStream<pb::RunEvent> = RunsRead;
        fn start_and_watch_run(pb::StartAndWatchRunRequest) -> BoxStream<pb::RunEvent> = RunsWrite;
        fn list_run_events(pb::ListRunEventsRequest) -> pb::ListRunEventsResponse = RunsRead;
        fn list_run_attempts(pb::ListRunAttemptsRequest) -> pb::ListRunAttemptsResponse = RunsRead;
        fn cancel_run(pb::CancelRunRequest) -> pb::Run = RunsWrite;
        fn pause_run(pb::PauseRunRequest) -> pb::Run = RunsWrite;
        fn resume_run(pb::ResumeRunRequest) -> pb::Run = RunsWrite;
        fn submit_input(pb::SubmitInputRequest) -> pb::Run = RunsWrite;
        fn retry_run(pb::RetryRunRequest) -> pb::Run = RunsWrite;
        fn replay_run(pb::ReplayRunRequest) -> pb::ReplayRunResponse = RunsWrite;
        fn delete_run(pb::DeleteRunRequest) -> () = RunsWrite;
    }
}

impl RunApi {
    async fn start_run(&self, request: pb::StartRunRequest) -> ApiResult<pb::Run> {
        let started = self.kernel().start_run(start_run(&request)?).await?;
        match &started.attempts {
            Some(attempts) => {
                tracing::debug!(run_id = %started.run.id, chain_id = %started.run.chain_id, version = started.run.chain_version, "run started");
                run_message(&started.run, Some(attempts))
            }
            None => self.run_view(&started.run).await,
        }
    }

    async fn execute_chain(
        &self,
        request: pb::ExecuteChainRequest,
    ) -> ApiResult<pb::ExecuteChainResponse> {
        let (start, wait) = execute_chain(&request)?;
        let executed = self
            .kernel()
            .execute_run(start, wait, self.context.drained())
            .await?;
        let ended = match executed {
            Executed::Ended(ended) => ended,
            Executed::TimedOut { run_id } => {
                return Err(ApiError::DeadlineExceeded {
                    run_id,
                    waited: wait,
                });
            }
            Executed::Stopped => return Err(ApiError::ShuttingDown),
        };
        let output = ended
            .run
            .output
            .as_deref()
            .map(value::decode)
            .transpose()
            .map_err(ApiError::Internal)?;
        Ok(pb::ExecuteChainResponse {
            run: Some(run_message(&ended.run, Some(&ended.attempts))?),
            output_type: output
                .as_ref()
                .map(|output| value::value_type(output) as i32)
                .unwrap_or_default(),
            output,
            trace: trace(&ended.executions)?,
        })
    }

    async fn get_run(&self, request: pb::GetRunRequest) -> ApiResult<pb::Run> {
        require("id", &request.id)?;
        let run = self.kernel().run_in(&call_namespace(), &request.id).await?;
        self.run_view(&run).await
    }

    async fn list_runs(&self, request: pb::ListRunsRequest) -> ApiResult<pb::ListRunsResponse> {
        let mut violations = Violations::new();
        let filter = run_filter(&request, &mut violations);
        violations.finish()?;
        let scope = list_runs_scope(&request);
        let fetch = |query| self.kernel().list_runs(&filter, query);
        list_page(
            &request,
            &scope,
            fetch,
            |(run, active): (RunRecord, Vec<_>)| run_message(&run, Some(&active)),
        )
        .await
    }

    async fn watch_run(&self, request: pb::WatchRunRequest) -> ApiResult<BoxStream<pb::RunEvent>> {
        require("run_id", &request.run_id)?;
        if request.after_seq < 0 {
            return Err(ApiError::invalid("after_seq", "must not be negative"));
        }
        let watch = self
            .kernel()
            .watch_run(
                &call_namespace(),
                &request.run_id,
                request.after_seq,
                request.include_deltas,
            )
            .await?;
        Ok(event_stream(watch))
    }

    async fn start_and_watch_run(
        &self,
        request: pb::StartAndWatchRunRequest,
    ) -> ApiResult<BoxStream<pb::RunEvent>> {
        let Some(start) = &request.start else {
            return Err(ApiError::invalid("start", "is required"));
        };
        if request.after_seq < 0 {
            return Err(ApiError::invalid("after_seq", "must not be negative"));
        }
        let watch = self
            .kernel()
            .start_and_watch(start_run(start)?, request.after_seq, request.include_deltas)
            .await?;
        tracing::debug!(run_id = %watch.run_id(), "run started and watched");
        Ok(event_stream(watch))
    }

    async fn list_run_events(
        &self,
        request: pb::ListRunEventsRequest,
    ) -> ApiResult<pb::ListRunEventsResponse> {
        require("run_id", &request.run_id)?;
        if request.after_seq < 0 {
            return Err(ApiError::invalid("after_seq", "must not be negative"));
        }
        let scope = format!("ListRunEvents/{}", request.run_id);
        let query = page_query(request.page_size, &request.page_token, &scope)?;
        let after = match &query.after {
            Some(after) => after
                .parse::<i64>()
                .map_err(|_| ApiError::invalid("page_token", "is not a token of this listing"))?,
            None => request.after_seq,
        };
        let limit = if request.page_size == 0 {
            DEFAULT_EVENTS_PAGE
        } else {
            query.limit
        };
        // NOT_FOUND for an unknown run comes from the store.
        self.kernel()
            .run_in(&call_namespace(), &request.run_id)
            .await?;
        let records = self
            .kernel()
            .store()
            .list_events(&request.run_id, after, limit + 1)
            .await?;
        let page = Page::new(records, limit as usize, |record| record.seq.to_string());
        encode_page(page, &scope, |record| Ok(decode_event(&record)?))
    }

    async fn list_run_attempts(
        &self,
        request: pb::ListRunAttemptsRequest,
    ) -> ApiResult<pb::ListRunAttemptsResponse> {
        let scope = child_scope("ListRunAttempts", "run_id", &request.run_id)?;
        self.kernel()
            .run_in(&call_namespace(), &request.run_id)
            .await?;
        let fetch = |query| self.kernel().store().list_attempts(&request.run_id, query);
        list_page(&request, &scope, fetch, |attempt| attempt_message(&attempt)).await
    }

    async fn cancel_run(&self, request: pb::CancelRunRequest) -> ApiResult<pb::Run> {
        let record = action(
            &self.context,
            "CancelRun",
            "run",
            &request.id,
            &request.request_id,
        );
        let run = audited(&self.context, record, async |audit| {
            require("id", &request.id)?;
            let mut violations = Violations::new();
            violations.check_text("reason", &request.reason, 1024);
            violations.check_request_id("request_id", &request.request_id);
            violations.finish()?;
            let idempotency = idempotency_key(&request);
            let audit = Some(audit.clone());
            Ok(self
                .kernel()
                .cancel_run(
                    &call_namespace(),
                    &request.id,
                    &request.reason,
                    idempotency,
                    audit,
                )
                .await?)
        })
        .await?;
        tracing::info!(run_id = %run.id, reason = %request.reason, "run cancelled");
        self.run_view(&run).await
    }

    async fn pause_run(&self, request: pb::PauseRunRequest) -> ApiResult<pb::Run> {
        let namespace = call_namespace();
        let pause = |key, audit| {
            self.kernel()
                .pause_run(&namespace, &request.id, request.cancel_running, key, audit)
        };
        self.control(("PauseRun", &request.id), &request, pause, "run paused")
            .await
    }

    async fn resume_run(&self, request: pb::ResumeRunRequest) -> ApiResult<pb::Run> {
        let namespace = call_namespace();
        let resume = |key, audit| {
            self.kernel()
                .resume_run(&namespace, &request.id, key, audit)
        };
        self.control(("ResumeRun", &request.id), &request, resume, "run resumed")
            .await
    }

    async fn submit_input(&self, request: pb::SubmitInputRequest) -> ApiResult<pb::Run> {
        let (run_id, request_id) = (&request.run_id, &request.request_id);
        let record = action(&self.context, "SubmitInput", "run", run_id, request_id);
        let run = audited(&self.context, record, async |audit| {
            let (answer, request_key) = submitted_input(&request)?;
            let audit = Some(audit.clone());
            Ok(self
                .kernel()
                .submit_input(
                    &call_namespace(),
                    run_id,
                    &request.task_id,
                    answer,
                    request_key,
                    audit,
                )
                .await?)
        })
        .await?;
        self.run_view(&run).await
    }

    async fn retry_run(&self, request: pb::RetryRunRequest) -> ApiResult<pb::Run> {
        let namespace = call_namespace();
        let retry = |key, audit| self.kernel().retry_run(&namespace, &request.id, key, audit);
        self.control(("RetryRun", &request.id), &request, retry, "run retried")
            .await
    }

    async fn delete_run(&self, request: pb::DeleteRunRequest) -> ApiResult<()> {
        let record = action(
            &self.context,
            "DeleteRun",
            "run",
            &request.id,
            &request.request_id,
        );
        audited(&self.context, record, async |audit| {
            require("id", &request.id)?;
            let mut violations = Violations::new();
            violations.check_request_id("request_id", &request.request_id);
            violations.finish()?;
            Ok(self
                .kernel()
                .delete_run(
                    &call_namespace(),
                    &request.id,
                    idempotency_key(&request),
                    audit,
                )
                .await?)
        })
        .await?;
        tracing::info!(run_id = %request.id, "run deleted");
        Ok(())
    }

    /// Replaying reads the run and writes nothing: its audit row is
    /// appended once it is done.
    async fn replay_run(&self, request: pb::ReplayRunRequest) -> ApiResult<pb::ReplayRunResponse> {
        let record = action(&self.context, "ReplayRun", "run", &request.id, "");
        audited(&self.context, record, async |audit| {
            require("id", &request.id)?;
            let run = self.kernel().run_in(&call_namespace(), &request.id).await?;
            let chain = self
                .kernel()
                .chain(&run.namespace, &run.chain_id, run.chain_version)
                .await?;
            let attempts = self.kernel().run_attempts(&run.id).await?;
            let replayed = replay::replay(&chain, &run, &attempts)?;
            self.context.store().append_audit(audit).await?;
            Ok(replayed)
        })
        .await
    }
}

/// A watch as a `WatchRun`-style response stream.
fn event_stream(watch: RunWatch) -> BoxStream<pb::RunEvent> {
    Box::pin(futures::StreamExt::map(watch.into_stream(), |event| {
        if let Ok(event) = &event {
            crate::metrics::event_delivered(event.r#type);
        }
        event.map_err(|error| ApiError::from(error).into())
    }))
}
