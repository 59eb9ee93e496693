//! Builds the audit record of the call being served. A handler makes one
//! with [`action`] before it acts and runs the action through [`audited`]:
//! the action hands the record to the store write that performs it (which
//! inserts it in the same transaction), and a failure is appended on its
//! own ([`failed`]).

use chrono::{SubsecRound, Utc};
use tonic::Code;

use super::{ApiContext, ApiError, ApiResult, caller};
use crate::store::AuditRecord;

/// Runs the action `act` of the call `record` describes. `act` passes the
/// record to the store write that performs the action (and may name the
/// resource it turns out to act on, e.g. a generated id); when it fails,
/// the failure's record is appended. A failure to append it is logged,
/// never reported in place of the action's own error.
pub async fn audited<T>(
    context: &ApiContext,
    mut record: AuditRecord,
    act: impl AsyncFnOnce(&mut AuditRecord) -> ApiResult<T>,
) -> ApiResult<T> {
    let result = act(&mut record).await;
    if let Err(error) = &result {
        let failure = failed(record, error);
        if let Err(append) = context.store().append_audit(&failure).await {
            tracing::warn!(
                action = %failure.action,
                resource_id = %failure.resource_id,
                error = %append,
                "could not record a failed call in the audit log"
            );
        }
    }
    result
}

/// What the current call is about to do.
pub fn action(
    context: &ApiContext,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    request_id: &str,
) -> AuditRecord {
    AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        // As stored: both stores keep microseconds.
        at: Utc::now().trunc_subsecs(6),
        actor: caller().actor,
        action: action.to_string(),
        resource_type: resource_type.to_string(),
        resource_id: resource_id.to_string(),
        request_id: request_id.to_string(),
        outcome: AuditRecord::OK.to_string(),
        error_message: String::new(),
        replica: context.instance_id().to_string(),
        namespace: super::call_namespace(),
    }
}

/// The record of an action that failed with `error`.
pub fn failed(mut record: AuditRecord, error: &ApiError) -> AuditRecord {
    record.outcome = code_name(error.code()).to_string();
    record.error_message = error.to_string();
    record
}

/// The canonical name of a gRPC code, as clients print it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_its_code_and_message() {
        let record = AuditRecord {
            id: "x".into(),
            at: Utc::now(),
            actor: "local".into(),
            action: "DeleteChain".into(),
            resource_type: "chain".into(),
            resource_id: "c".into(),
            request_id: String::new(),
            outcome: AuditRecord::OK.into(),
            error_message: String::new(),
            replica: "r".into(),
            namespace: "default".into(),
        };
        let failed = failed(record, &ApiError::invalid("id", "must not be empty"));
        assert_eq!(failed.outcome, "INVALID_ARGUMENT");
        assert!(
            failed.error_message.contains("id"),
            "{}",
            failed.error_message
        );
    }
}
