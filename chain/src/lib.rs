//! Chains: their validation, compiled form, templating, branch operators and
//! handler output parsing. Pure code: no I/O, no async, no database.
//!
//! The API layer calls [`validate`] / [`compile`] on a `taskloom.v1.Chain`
//! (violation paths are relative to the chain message; prefix them with
//! `chain.`); the kernel executes the [`CompiledChain`], choosing the next
//! task with [`CompiledTransition::next`], retrying with
//! [`RetryPolicy::delay`], rendering with [`template::render`] and turning
//! model answers into outputs with the `parse_*` functions.

mod compile;
pub mod duration;
mod model;
mod number;
mod parse;
mod retry;
pub mod template;

pub use compile::{Violation, compile, reason, validate};
pub use model::{
    CompiledBranch, CompiledChain, CompiledTask, CompiledTransition, Goto, Handler, HookCall,
    InputSource, ModelPreference, Operator,
};
pub use parse::{ParseError, parse_condition_key, parse_number, parse_range, parse_score};
pub use retry::{Backoff, RetryPolicy};
