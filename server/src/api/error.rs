//! The API layer's error type and its single mapping to gRPC statuses with
//! rich details (`google.rpc.ErrorInfo`, `BadRequest`, `ResourceInfo`,
//! `PreconditionFailure`).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::dispatch::SessionEnd;
use crate::kernel::KernelError;
use crate::store::StoreError;

/// `ErrorInfo.domain` of every error this server returns.
pub const ERROR_DOMAIN: &str = "taskloom.dev";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more request fields are invalid.
    #[error("invalid request: {}", summarize(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The request's bytes are not a valid message of its type.
    #[error("{0}")]
    Undecodable(String),
    #[error("{resource_type} {name:?} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
    },
    /// Not found, described by the kernel.
    #[error("{0}")]
    NotFoundMessage(String),
    /// The call names a namespace that does not exist.
    #[error("namespace {0:?} not found: create it with CreateNamespace")]
    NamespaceNotFound(String),
    #[error("{resource_type} {name:?} already exists")]
    AlreadyExists {
        resource_type: &'static str,
        name: String,
    },
    /// The caller's etag does not match the resource's current etag, or the
    /// resource changed concurrently (AIP-154).
    #[error(
        "{resource_type} {name:?} has changed: etag {given:?} does not match the current etag {current:?}"
    )]
    EtagMismatch {
        resource_type: &'static str,
        name: String,
        given: String,
        current: String,
    },
    /// A request id was reused with a different request (AIP-155).
    #[error("request_id {request_id:?} was already used with a different request")]
    RequestIdReused { request_id: String },
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },
    /// ExecuteChain stopped waiting; the run goes on.
    #[error("run {run_id} did not end within {waited:?}; it goes on: watch it with WatchRun")]
    DeadlineExceeded {
        run_id: String,
        waited: std::time::Duration,
    },
    /// No API key, or one the server does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's key does not allow the call: its role lacks the RPC's
    /// permission (`PERMISSION_MISSING`), it is bound to another namespace
    /// (`NAMESPACE_NOT_ALLOWED`) or the queue is not listed for it
    /// (`QUEUE_NOT_ALLOWED`). `metadata` goes to `ErrorInfo` (the role,
    /// the permission missing, ...).
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A worker session left a ping unanswered past the heartbeat timeout.
    #[error("{0}")]
    SessionSilent(SessionEnd),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store cannot be reached or cannot serve now; retry.
    #[error("the store is unavailable; retry later with the same request id")]
    StoreUnavailable(String),
    /// A model provider failed the operation (a download); retry.
    #[error("{0}")]
    ProviderUnavailable(String),
    /// The store's disk is full; reads still work.
    #[error("the store's storage is full; retry later with the same request id")]
    StorageFull(String),
    /// A server-side fault; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
    /// The caller's stream broke before its first message: its status,
    /// answered as it is.
    #[error("{}", .0.message())]
    Stream(Status),
}

fn summarize(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// A single invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub(crate) fn code(&self) -> Code {
        match self {
            ApiError::InvalidArgument(_) | ApiError::Undecodable(_) => Code::InvalidArgument,
            ApiError::NotFound { .. }
            | ApiError::NotFoundMessage(_)
            | ApiError::NamespaceNotFound(_) => Code::NotFound,
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::EtagMismatch { .. } => Code::Aborted,
            ApiError::RequestIdReused { .. } | ApiError::FailedPrecondition { .. } => {
                Code::FailedPrecondition
            }
            ApiError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied { .. } => Code::PermissionDenied,
            ApiError::ShuttingDown
            | ApiError::SessionSilent(_)
            | ApiError::Unavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::ProviderUnavailable(_) => Code::Unavailable,
            ApiError::StorageFull(_) => Code::ResourceExhausted,
            ApiError::Internal(_) => Code::Internal,
            ApiError::Stream(status) => status.code(),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) | ApiError::Undecodable(_) => "INVALID_ARGUMENT",
            ApiError::NotFound { .. } | ApiError::NotFoundMessage(_) => "NOT_FOUND",
            ApiError::NamespaceNotFound(_) => "NAMESPACE_NOT_FOUND",
            ApiError::AlreadyExists { .. } => "ALREADY_EXISTS",
            ApiError::EtagMismatch { .. } => "ETAG_MISMATCH",
            ApiError::RequestIdReused { .. } => "REQUEST_ID_REUSED",
            ApiError::FailedPrecondition { reason, .. } => reason,
            ApiError::DeadlineExceeded { .. } => "RUN_STILL_ACTIVE",
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::PermissionDenied { reason, .. } => reason,
            ApiError::ShuttingDown => "SHUTTING_DOWN",
            ApiError::SessionSilent(_) => "SESSION_SILENT",
            ApiError::Unavailable(_) => "STORAGE_UNAVAILABLE",
            ApiError::StoreUnavailable(_) => "STORE_UNAVAILABLE",
            ApiError::ProviderUnavailable(_) => "PROVIDER_UNAVAILABLE",
            ApiError::StorageFull(_) => "STORAGE_FULL",
            ApiError::Internal(_) => "INTERNAL",
            ApiError::Stream(_) => "STREAM_BROKEN",
        }
    }
}

impl From<crate::fleet::FleetError> for ApiError {
    fn from(error: crate::fleet::FleetError) -> Self {
        use crate::fleet::FleetError;
        match error {
            FleetError::Store(error) => error.into(),
            FleetError::NotPullable { .. } => ApiError::FailedPrecondition {
                reason: "BACKEND_CANNOT_PULL",
                message: error.to_string(),
            },
            FleetError::ModelNotFound { message, .. } => ApiError::NotFoundMessage(message),
            FleetError::ProviderFailed(message) => ApiError::ProviderUnavailable(message),
            FleetError::SyncBusy(_) => ApiError::ProviderUnavailable(error.to_string()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        if let ApiError::Stream(status) = error {
            return status;
        }
        let code = error.code();
        let mut metadata = HashMap::new();
        let mut details = ErrorDetails::new();
        match &error {
            ApiError::InvalidArgument(violations) => {
                details.set_bad_request(violations.clone());
            }
            ApiError::NotFound {
                resource_type,
                name,
            }
            | ApiError::AlreadyExists {
                resource_type,
                name,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", error.to_string());
                metadata.insert("resource_type".to_string(), resource_type.to_string());
                metadata.insert("resource_name".to_string(), name.clone());
            }
            ApiError::EtagMismatch {
                resource_type,
                name,
                current,
                ..
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", error.to_string());
                metadata.insert("current_etag".to_string(), current.clone());
            }
            ApiError::RequestIdReused { request_id } => {
                details.add_precondition_failure_violation(
                    "REQUEST_ID",
                    request_id.clone(),
                    "the request id was already used with a different request; use a new request id",
                );
            }
            ApiError::FailedPrecondition { reason, message } => {
                details.add_precondition_failure_violation(*reason, "", message.clone());
            }
            ApiError::Internal(cause) => {
                tracing::error!(cause = %cause, "internal error");
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(cause = %cause, "storage unavailable");
            }
            // The health monitor reports store faults; a request's failure
            // is not worth a line of its own.
            ApiError::StoreUnavailable(cause) | ApiError::StorageFull(cause) => {
                tracing::debug!(cause = %cause, "store fault");
            }
            ApiError::ProviderUnavailable(cause) => {
                tracing::debug!(cause = %cause, "provider failure");
            }
            ApiError::DeadlineExceeded { run_id, .. } => {
                metadata.insert("run_id".to_string(), run_id.clone());
            }
            ApiError::NamespaceNotFound(namespace) => {
                metadata.insert("namespace".to_string(), namespace.clone());
            }
            ApiError::PermissionDenied {
                metadata: entries, ..
            } => {
                for (key, value) in entries {
                    metadata.insert(key.to_string(), value.clone());
                }
            }
            ApiError::ShuttingDown
            | ApiError::SessionSilent(_)
            | ApiError::Stream(_)
            | ApiError::Undecodable(_)
            | ApiError::NotFoundMessage(_)
            | ApiError::Unauthenticated(_) => {}
        }
        details.set_error_info(error.reason(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, bounded(&error.to_string()), bounded_details(&details))
    }
}

/// Longest text an error carries in its message or in one detail string:
/// errors may quote inputs, and `grpc-message` plus the details travel in
/// trailers, which default clients cap at 8 KiB (16 KiB for some): over
/// that they report `RESOURCE_EXHAUSTED` or a protocol error instead.
const MAX_ERROR_TEXT: usize = 256;
/// Most field violations returned, and their total size; the rest are
/// counted in a last violation.
const MAX_VIOLATIONS: usize = 20;
const MAX_VIOLATION_BYTES: usize = 3 * 1024;
/// Marks a cut text.
const CUT_MARKER: &str = "…(truncated)";

/// `text`, cut on a character boundary to [`MAX_ERROR_TEXT`] bytes with a
/// marker.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_ERROR_TEXT {
        return text.to_string();
    }
    let mut cut = MAX_ERROR_TEXT - CUT_MARKER.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{CUT_MARKER}", &text[..cut])
}

/// The details with every string bounded and the violations capped.
fn bounded_details(details: &ErrorDetails) -> ErrorDetails {
    let mut bounded_details = ErrorDetails::new();
    if let Some(info) = details.error_info() {
        let metadata: HashMap<String, String> = info
            .metadata
            .iter()
            .map(|(key, value)| (bounded(key), bounded(value)))
            .collect();
        bounded_details.set_error_info(bounded(&info.reason), bounded(&info.domain), metadata);
    }
    if let Some(bad_request) = details.bad_request() {
        let all = &bad_request.field_violations;
        let mut kept = Vec::new();
        let mut bytes = 0;
        for original in all.iter().take(MAX_VIOLATIONS) {
            let violation = FieldViolation {
                field: bounded(&original.field),
                description: bounded(&original.description),
                reason: bounded(&original.reason),
                ..Default::default()
            };
            bytes += violation.field.len() + violation.description.len() + violation.reason.len();
            if bytes > MAX_VIOLATION_BYTES {
                break;
            }
            kept.push(violation);
        }
        let more = all.len() - kept.len();
        if more > 0 {
            kept.push(FieldViolation::new(
                "",
                format!("and {more} more violations, not shown"),
            ));
        }
        bounded_details.set_bad_request(kept);
    }
    if let Some(info) = details.resource_info() {
        bounded_details.set_resource_info(
            bounded(&info.resource_type),
            bounded(&info.resource_name),
            bounded(&info.owner),
            bounded(&info.description),
        );
    }
    if let Some(failure) = details.precondition_failure() {
        for violation in &failure.violations {
            bounded_details.add_precondition_failure_violation(
                bounded(&violation.r#type),
                bounded(&violation.subject),
                bounded(&violation.description),
            );
        }
    }
    bounded_details
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::NotFound { resource, id } => ApiError::NotFound {
                resource_type: resource,
                name: id,
            },
            StoreError::AlreadyExists { resource, id } => ApiError::AlreadyExists {
                resource_type: resource,
                name: id,
            },
            StoreError::Conflict {
                resource,
                id,
                expected,
                actual,
            } => ApiError::EtagMismatch {
                resource_type: resource,
                name: id,
                given: expected.to_string(),
                current: actual.to_string(),
            },
            StoreError::IdempotencyMismatch { request_id } => {
                ApiError::RequestIdReused { request_id }
            }
            StoreError::FailedPrecondition(message) => ApiError::FailedPrecondition {
                reason: "FAILED_PRECONDITION",
                message,
            },
            StoreError::ChainChanged { .. } => ApiError::FailedPrecondition {
                reason: "CHAIN_CHANGED",
                message: error.to_string(),
            },
            StoreError::Unavailable(_) => ApiError::StoreUnavailable(error.to_string()),
            StoreError::StorageFull(_) => ApiError::StorageFull(error.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<KernelError> for ApiError {
    fn from(error: KernelError) -> ApiError {
        let precondition = |reason, message| ApiError::FailedPrecondition { reason, message };
        match error {
            KernelError::NotFound(message) => ApiError::NotFoundMessage(message),
            KernelError::LeaseFenced(message) => precondition("LEASE_FENCED", message),
            KernelError::RunNotActive(message) => precondition("RUN_NOT_ACTIVE", message),
            KernelError::WrongRunState(message) => precondition("WRONG_RUN_STATE", message),
            KernelError::Contended(message) => precondition("RUN_CONTENDED", message),
            KernelError::InvalidArgument { field, message } => ApiError::invalid(field, message),
            KernelError::Store(error) => error.into(),
            KernelError::Corrupt(message) => ApiError::Internal(message),
            KernelError::ShuttingDown => ApiError::ShuttingDown,
        }
    }
}

impl From<SessionEnd> for ApiError {
    fn from(end: SessionEnd) -> ApiError {
        match end {
            SessionEnd::Silent => ApiError::SessionSilent(end),
            SessionEnd::ShuttingDown => ApiError::ShuttingDown,
        }
    }
}

/// How a refused lease message is answered on a worker stream: the code
/// and reason a unary call with the same outcome gets, and its message.
pub struct Refusal {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        let (code, reason) = (error.code(), error.reason());
        let status = Status::from(error);
        Refusal {
            code,
            reason,
            message: status.message().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_on_a_char_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(1000);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_ERROR_TEXT, "{}", cut.len());
        assert!(cut.ends_with(CUT_MARKER));
        assert!(cut.starts_with("éé"));
    }

    #[test]
    fn violations_are_capped_and_counted() {
        let violations = (0..64)
            .map(|i| FieldViolation::new(format!("labels[{i}]{}", "k".repeat(1000)), "bad"))
            .collect();
        let status = Status::from(ApiError::InvalidArgument(violations));
        assert!(status.message().len() <= MAX_ERROR_TEXT);
        let kept = status.get_details_bad_request().unwrap().field_violations;
        assert!(kept.len() <= MAX_VIOLATIONS + 1);
        assert_eq!(
            kept.last().unwrap().description,
            format!("and {} more violations, not shown", 64 - (kept.len() - 1))
        );
        assert!(
            status.details().len() < 4 * 1024,
            "{}",
            status.details().len()
        );
    }
}
