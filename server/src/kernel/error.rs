//! The kernel's error type: why an operation was refused or failed, one
//! variant per reason. The API maps each variant once to a gRPC code and an
//! `ErrorInfo.reason` (`api::error`); nothing matches on messages.

use crate::store::{Rejection, RejectionKind, StoreError};

/// Errors of the kernel layer.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A run, attempt, task or chain version that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The lease named is not held under the token given: stale, foreign,
    /// released, expired or cancelled (fencing).
    #[error("{0}")]
    LeaseFenced(String),
    /// The run already ended: nothing about it may change any more.
    #[error("{0}")]
    RunNotActive(String),
    /// The run is not in the state the operation needs (e.g. retrying a run
    /// that did not fail, or answering a task that asks nothing).
    #[error("{0}")]
    WrongRunState(String),
    /// The run kept changing while its templates rendered; try again.
    #[error("{0}")]
    Contended(String),
    /// The process is stopping; the caller should retry elsewhere.
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored state that cannot be interpreted.
    #[error("{0}")]
    Corrupt(String),
}

pub type KernelResult<T> = Result<T, KernelError>;

impl KernelError {
    /// The store itself failed (see [`StoreError::is_fault`]): retry later.
    pub fn is_store_fault(&self) -> bool {
        matches!(self, KernelError::Store(error) if error.is_fault())
    }

    /// The lease an operation named is no longer held under its token
    /// (fenced, its run ended, or its attempt is unknown), rather than a
    /// failure that leaves it valid.
    pub fn lease_gone(&self) -> bool {
        matches!(
            self,
            KernelError::LeaseFenced(_) | KernelError::RunNotActive(_) | KernelError::NotFound(_)
        )
    }

    /// A decision's refusal (not [`RejectionKind::Deferred`], which the
    /// kernel handles itself).
    pub(super) fn rejected(rejection: Rejection) -> KernelError {
        let Rejection { kind, message } = rejection;
        match kind {
            RejectionKind::NotFound => KernelError::NotFound(message),
            RejectionKind::LeaseFenced => KernelError::LeaseFenced(message),
            RejectionKind::RunNotActive => KernelError::RunNotActive(message),
            RejectionKind::FailedPrecondition => KernelError::WrongRunState(message),
            RejectionKind::InvalidArgument => KernelError::InvalidArgument {
                field: String::new(),
                message,
            },
            RejectionKind::Deferred => KernelError::Corrupt(format!(
                "a decision was deferred without naming a render: {message}"
            )),
        }
    }
}
