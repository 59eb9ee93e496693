//! The machine-readable codes of [`Violation::reason`](super::Violation::reason).

/// An id is empty.
pub const EMPTY_ID: &str = "EMPTY_ID";
/// An id does not match `[A-Za-z0-9_.-]{1,128}`.
pub const INVALID_ID: &str = "INVALID_ID";
/// A task is named `end`.
pub const RESERVED_ID: &str = "RESERVED_ID";
/// A task id is used twice (reported at the later task).
pub const DUPLICATE_ID: &str = "DUPLICATE_ID";
/// The chain has no tasks.
pub const NO_TASKS: &str = "NO_TASKS";
/// The handler is missing or unknown.
pub const UNKNOWN_HANDLER: &str = "UNKNOWN_HANDLER";
/// A branch operator is missing or unknown.
pub const UNKNOWN_OPERATOR: &str = "UNKNOWN_OPERATOR";
/// A goto is missing or malformed.
pub const INVALID_GOTO: &str = "INVALID_GOTO";
/// A reference names no task of the chain.
pub const UNKNOWN_TASK: &str = "UNKNOWN_TASK";
/// A transition has more than one `default` branch.
pub const DUPLICATE_DEFAULT: &str = "DUPLICATE_DEFAULT";
/// A branch operand cannot be used with its operator.
pub const INVALID_OPERAND: &str = "INVALID_OPERAND";
/// No path leads from the entry task to a task.
pub const UNREACHABLE_TASK: &str = "UNREACHABLE_TASK";
/// A duration is malformed, zero or longer than 24h.
pub const INVALID_DURATION: &str = "INVALID_DURATION";
/// A retry setting is out of range.
pub const INVALID_RETRY: &str = "INVALID_RETRY";
/// A template does not parse.
pub const TEMPLATE_SYNTAX: &str = "TEMPLATE_SYNTAX";
/// A `condition_key` task has no valid condition set to true.
pub const MISSING_VALID_CONDITIONS: &str = "MISSING_VALID_CONDITIONS";
/// A `worker` task has no queue.
pub const MISSING_QUEUE: &str = "MISSING_QUEUE";
/// A `hook` task names no hook.
pub const MISSING_HOOK: &str = "MISSING_HOOK";
/// A text, list or map exceeds its size bound.
pub const TOO_LARGE: &str = "TOO_LARGE";
/// A value is out of range or malformed.
pub const INVALID_VALUE: &str = "INVALID_VALUE";
/// A task waits for itself or twice for the same task.
pub const INVALID_WAIT_FOR: &str = "INVALID_WAIT_FOR";
/// Only the first 1000 problems are listed; this last violation (at
/// `tasks`) counts the rest.
pub const TOO_MANY_VIOLATIONS: &str = "TOO_MANY_VIOLATIONS";
