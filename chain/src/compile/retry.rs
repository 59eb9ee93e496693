//! Timeouts and retry policies.

use std::time::Duration;

use taskloom_proto::taskloom::v1 as pb;

use super::{
    Compiler, DEFAULT_INITIAL_DELAY, DEFAULT_MAX_DELAY_FACTOR, DEFAULT_MULTIPLIER, MAX_ATTEMPTS,
    MAX_DURATION, MAX_RETRY_ON_FAILURE, quote, reason,
};
use crate::duration::parse_duration;
use crate::retry::{Backoff, RetryPolicy};

impl Compiler {
    /// An optional duration (empty = none) that must be in `(0, 24h]`.
    pub(super) fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
        if text.is_empty() {
            return None;
        }
        let problem = match parse_duration(text) {
            Ok(duration) if duration.is_zero() => "must be more than 0".to_string(),
            Ok(duration) if duration > MAX_DURATION => {
                format!("{} is longer than the maximum 24h", quote(text))
            }
            Ok(duration) => return Some(duration),
            Err(problem) => {
                format!("{problem}; expected a duration such as `500ms`, `30s` or `1m30s`")
            }
        };
        self.report(field, reason::INVALID_DURATION, problem);
        None
    }

    pub(super) fn retry(&mut self, prefix: &str, task: &pb::Task) -> RetryPolicy {
        let retries = match u32::try_from(task.retry_on_failure) {
            Ok(retries) if task.retry_on_failure <= MAX_RETRY_ON_FAILURE => retries,
            _ => {
                self.report(
                    format!("{prefix}.retry_on_failure"),
                    reason::INVALID_RETRY,
                    format!(
                        "retry_on_failure must be between 0 and {MAX_RETRY_ON_FAILURE}, got {}",
                        task.retry_on_failure
                    ),
                );
                0
            }
        };
        let Some(retry) = &task.retry else {
            return RetryPolicy::contenox(retries);
        };
        let field = |name: &str| format!("{prefix}.retry.{name}");

        let max_attempts = match u32::try_from(retry.max_attempts) {
            // Unset: contenox's retry_on_failure still counts.
            Ok(0) => retries.saturating_add(1),
            Ok(attempts) if retry.max_attempts <= MAX_ATTEMPTS => attempts,
            _ => {
                self.report(
                    field("max_attempts"),
                    reason::INVALID_RETRY,
                    format!(
                        "max_attempts must be between 1 and {MAX_ATTEMPTS} (0 = default), got {}",
                        retry.max_attempts
                    ),
                );
                1
            }
        };

        let multiplier = if retry.multiplier == 0.0 {
            DEFAULT_MULTIPLIER
        } else {
            retry.multiplier
        };
        let backoff = match retry.backoff.as_str() {
            "" | "fixed" => Backoff::Fixed,
            "exponential" => Backoff::Exponential { multiplier },
            other => {
                self.report(
                    field("backoff"),
                    reason::INVALID_RETRY,
                    format!(
                        "unknown backoff {}; expected `fixed` or `exponential`",
                        quote(other)
                    ),
                );
                Backoff::Fixed
            }
        };
        let multiplier_valid = multiplier.is_finite()
            && (!matches!(backoff, Backoff::Exponential { .. }) || multiplier >= 1.0);
        if !multiplier_valid {
            self.report(
                field("multiplier"),
                reason::INVALID_RETRY,
                format!(
                    "multiplier must be a finite number of at least 1 (0 = default 2), got {}",
                    retry.multiplier
                ),
            );
        }
        if !(0.0..=1.0).contains(&retry.jitter) {
            self.report(
                field("jitter"),
                reason::INVALID_RETRY,
                format!("jitter must be between 0 and 1, got {}", retry.jitter),
            );
        }

        let initial_delay = self
            .duration(&field("initial_delay"), &retry.initial_delay)
            .unwrap_or(DEFAULT_INITIAL_DELAY);
        let max_delay = match self.duration(&field("max_delay"), &retry.max_delay) {
            Some(max_delay) => {
                if max_delay < initial_delay {
                    self.report(
                        field("max_delay"),
                        reason::INVALID_RETRY,
                        format!(
                            "max_delay {} is shorter than initial_delay",
                            quote(&retry.max_delay)
                        ),
                    );
                }
                max_delay
            }
            None => match backoff {
                Backoff::Fixed => initial_delay,
                Backoff::Exponential { .. } => initial_delay
                    .saturating_mul(DEFAULT_MAX_DELAY_FACTOR)
                    .min(MAX_DURATION),
            },
        };

        RetryPolicy {
            max_attempts,
            backoff,
            initial_delay,
            max_delay,
            jitter: retry.jitter,
        }
    }
}
