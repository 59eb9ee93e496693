//! Transitions: branches with their operators and gotos, fan-outs and
//! `wait_for` joins.

use prost_types::value::Kind;
use taskloom_proto::taskloom::v1 as pb;

use super::{
    Compiler, END, MAX_BRANCHES, MAX_TASK_LIST, MAX_TEXT_BYTES, OPERATOR_NAMES, TaskIds, non_empty,
    quote, reason,
};
use crate::model::{CompiledBranch, CompiledTransition, Goto, Operator};
use crate::number::{parse_range_operand, parse_strict};

impl Compiler {
    pub(super) fn transition(
        &mut self,
        field: &str,
        task: &pb::Task,
        ids: &TaskIds<'_>,
    ) -> CompiledTransition {
        let Some(transition) = &task.transition else {
            return CompiledTransition::default();
        };

        let on_failure = match transition.on_failure.as_str() {
            "" => None,
            END => {
                self.report(
                    format!("{field}.on_failure"),
                    reason::UNKNOWN_TASK,
                    "on_failure must name a task; `end` is not one (leave it empty to fail the run)",
                );
                None
            }
            id if ids.contains_key(id) => Some(id.to_string()),
            other => {
                self.report(
                    format!("{field}.on_failure"),
                    reason::UNKNOWN_TASK,
                    format!("on_failure {} names no task of the chain", quote(other)),
                );
                None
            }
        };

        let branches_field = format!("{field}.branches");
        if transition.branches.len() > MAX_BRANCHES {
            self.report(
                branches_field,
                reason::TOO_LARGE,
                format!(
                    "{} branches; at most {MAX_BRANCHES} are allowed",
                    transition.branches.len()
                ),
            );
            return CompiledTransition {
                on_failure,
                branches: Vec::new(),
            };
        }
        let mut first_default: Option<usize> = None;
        let mut branches = Vec::with_capacity(transition.branches.len());
        for (position, branch) in transition.branches.iter().enumerate() {
            let branch_field = format!("{branches_field}[{position}]");
            let operator = self.operator(&branch_field, branch);
            if operator == Some(Operator::Default) {
                match first_default {
                    Some(first) => self.report(
                        format!("{branch_field}.operator"),
                        reason::DUPLICATE_DEFAULT,
                        format!("only one default branch is allowed; branches[{first}] is already the default"),
                    ),
                    None => first_default = Some(position),
                }
            }
            let goto = self.goto(&format!("{branch_field}.goto"), branch.goto.as_ref(), ids);
            self.check_size(
                &format!("{branch_field}.alert_on_match"),
                &branch.alert_on_match,
                MAX_TEXT_BYTES,
            );
            // The placeholder for an invalid operator is never returned: its
            // violation fails the compilation.
            let operator = operator.unwrap_or(Operator::Equals(String::new()));
            branches.push(CompiledBranch {
                operator,
                goto,
                alert_on_match: non_empty(&branch.alert_on_match),
            });
        }
        CompiledTransition {
            on_failure,
            branches,
        }
    }

    /// The branch's operator with its parsed operand; `None` when invalid.
    pub(super) fn operator(&mut self, field: &str, branch: &pb::Branch) -> Option<Operator> {
        let when_field = format!("{field}.when");
        if !self.check_size(&when_field, &branch.when, MAX_TEXT_BYTES) {
            return None;
        }
        let when = branch.when.clone();
        let operator = branch.operator.as_str();
        let invalid_operand = |compiler: &mut Compiler, problem: String| {
            compiler.report(&when_field, reason::INVALID_OPERAND, problem);
            None
        };
        let text_operator = |compiler: &mut Compiler, make: fn(String) -> Operator| {
            if when.is_empty() {
                // An empty operand matches every output: a `default` in
                // disguise that would shadow the real one.
                compiler.report(
                    &when_field,
                    reason::INVALID_OPERAND,
                    format!("`{operator}` with an empty `when` matches everything; use `default`"),
                );
                return None;
            }
            Some(make(when.clone()))
        };
        match operator {
            "equals" => Some(Operator::Equals(when.clone())),
            "contains" => text_operator(self, Operator::Contains),
            "starts_with" => text_operator(self, Operator::StartsWith),
            "ends_with" => text_operator(self, Operator::EndsWith),
            "gt" | ">" | "lt" | "<" => match parse_strict(&when) {
                Some(value) if matches!(operator, "gt" | ">") => Some(Operator::GreaterThan(value)),
                Some(value) => Some(Operator::LessThan(value)),
                None => invalid_operand(
                    self,
                    format!(
                        "`{operator}` needs a number in `when`, got {}",
                        quote(&when)
                    ),
                ),
            },
            "in_range" => match parse_range_operand(&when) {
                Ok((low, high)) => Some(Operator::InRange { low, high }),
                Err(problem) => {
                    invalid_operand(self, format!("invalid range {}: {problem}", quote(&when)))
                }
            },
            "default" => Some(Operator::Default),
            other => {
                let problem = if other.is_empty() {
                    "an operator is required".to_string()
                } else {
                    format!("unknown operator {}", quote(other))
                };
                self.report(
                    format!("{field}.operator"),
                    reason::UNKNOWN_OPERATOR,
                    format!("{problem}; expected one of: {OPERATOR_NAMES}"),
                );
                None
            }
        }
    }

    pub(super) fn goto(
        &mut self,
        field: &str,
        goto: Option<&prost_types::Value>,
        ids: &TaskIds<'_>,
    ) -> Goto {
        match goto.and_then(|value| value.kind.as_ref()) {
            None | Some(Kind::NullValue(_)) => {
                self.report(
                    field,
                    reason::INVALID_GOTO,
                    "goto is required: a task id, `end`, or a list of task ids",
                );
                Goto::End
            }
            Some(Kind::StringValue(target)) => match target.as_str() {
                "" => {
                    self.report(
                        field,
                        reason::INVALID_GOTO,
                        "goto is empty; name a task or `end`",
                    );
                    Goto::End
                }
                END => Goto::End,
                id if ids.contains_key(id) => Goto::Task(id.to_string()),
                other => {
                    self.report(
                        field,
                        reason::UNKNOWN_TASK,
                        format!("goto {} names no task of the chain", quote(other)),
                    );
                    Goto::End
                }
            },
            Some(Kind::ListValue(list)) => self.fan_out(field, &list.values, ids),
            Some(Kind::NumberValue(_) | Kind::BoolValue(_) | Kind::StructValue(_)) => {
                self.report(
                    field,
                    reason::INVALID_GOTO,
                    "goto must be a task id, `end`, or a list of task ids",
                );
                Goto::End
            }
        }
    }

    pub(super) fn fan_out(
        &mut self,
        field: &str,
        values: &[prost_types::Value],
        ids: &TaskIds<'_>,
    ) -> Goto {
        if values.is_empty() {
            self.report(
                field,
                reason::INVALID_GOTO,
                "an empty goto list starts nothing; name at least one task",
            );
            return Goto::End;
        }
        if values.len() > MAX_TASK_LIST {
            self.report(
                field,
                reason::TOO_LARGE,
                format!(
                    "{} fan-out targets; at most {MAX_TASK_LIST} are allowed",
                    values.len()
                ),
            );
            return Goto::End;
        }
        let mut targets: Vec<String> = Vec::with_capacity(values.len());
        for (position, value) in values.iter().enumerate() {
            let item_field = format!("{field}[{position}]");
            let Some(Kind::StringValue(target)) = &value.kind else {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    "fan-out entries must be task ids (strings)",
                );
                continue;
            };
            if target.is_empty() {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    "fan-out entries must not be empty",
                );
            } else if target == END {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    "`end` cannot be part of a fan-out list",
                );
            } else if targets.contains(target) {
                self.report(
                    item_field,
                    reason::INVALID_GOTO,
                    format!("{} appears twice in the fan-out list", quote(target)),
                );
            } else if !ids.contains_key(target.as_str()) {
                self.report(
                    item_field,
                    reason::UNKNOWN_TASK,
                    format!("goto {} names no task of the chain", quote(target)),
                );
            } else {
                targets.push(target.clone());
            }
        }
        // A one-element list is a plain goto.
        match <[String; 1]>::try_from(targets) {
            Ok([single]) => Goto::Task(single),
            Err(targets) => Goto::FanOut(targets),
        }
    }

    pub(super) fn wait_for(
        &mut self,
        field: &str,
        task: &pb::Task,
        ids: &TaskIds<'_>,
    ) -> Vec<String> {
        if task.wait_for.len() > MAX_TASK_LIST {
            self.report(
                field,
                reason::TOO_LARGE,
                format!(
                    "{} wait_for entries; at most {MAX_TASK_LIST} are allowed",
                    task.wait_for.len()
                ),
            );
            return Vec::new();
        }
        let mut waits: Vec<String> = Vec::with_capacity(task.wait_for.len());
        for (position, id) in task.wait_for.iter().enumerate() {
            let item_field = format!("{field}[{position}]");
            if !id.is_empty() && *id == task.id {
                self.report(
                    item_field,
                    reason::INVALID_WAIT_FOR,
                    "a task cannot wait for itself",
                );
            } else if waits.contains(id) {
                self.report(
                    item_field,
                    reason::INVALID_WAIT_FOR,
                    format!("{} is listed twice", quote(id)),
                );
            } else if !ids.contains_key(id.as_str()) {
                self.report(
                    item_field,
                    reason::UNKNOWN_TASK,
                    format!("wait_for {} names no task of the chain", quote(id)),
                );
            } else {
                waits.push(id.clone());
            }
        }
        waits
    }
}
