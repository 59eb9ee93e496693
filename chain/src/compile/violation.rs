//! What a chain definition gets wrong, as reported by validation.

use std::fmt;

/// One problem with a chain definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the field at fault, relative to the chain message, with proto
    /// field names: `tasks[2].handler`, `tasks[0].transition.branches[1].goto`.
    pub field: String,
    /// What is wrong, for humans.
    pub description: String,
    /// Machine-readable code, one of [`reason`].
    pub reason: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.description, self.reason)
    }
}
