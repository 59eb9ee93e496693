//! Task ids and the graph they form: indexing ids, the entry task, and
//! reachability along gotos, fan-outs and on_failure.

use std::collections::hash_map::Entry;

use prost_types::value::Kind;
use taskloom_proto::taskloom::v1 as pb;

use super::{Compiler, END, TaskIds, quote, reason};

impl Compiler {
    pub(super) fn index_task_ids<'c>(&mut self, tasks: &'c [pb::Task]) -> TaskIds<'c> {
        let mut ids = TaskIds::new();
        for (position, task) in tasks.iter().enumerate() {
            let field = format!("tasks[{position}].id");
            if task.id == END {
                self.report(
                    field,
                    reason::RESERVED_ID,
                    "`end` is reserved for ending the run; rename the task",
                );
                continue;
            }
            // An id with bad characters is still indexed, so references to
            // it do not add violations on top of its own; an empty one cannot
            // be referenced.
            let valid = self.check_identifier(&field, &task.id, "task id", reason::INVALID_ID);
            if !valid && task.id.is_empty() {
                continue;
            }
            match ids.entry(task.id.as_str()) {
                Entry::Occupied(first) => self.report(
                    field,
                    reason::DUPLICATE_ID,
                    format!(
                        "task id {} is already used by tasks[{}]",
                        quote(&task.id),
                        first.get()
                    ),
                ),
                Entry::Vacant(slot) => {
                    slot.insert(position);
                }
            }
        }
        ids
    }

    /// The position of the entry task, if it can be determined.
    pub(super) fn entry(&mut self, chain: &pb::Chain, ids: &TaskIds<'_>) -> Option<usize> {
        if chain.entry.is_empty() {
            // The first task; if its id is broken that is already reported.
            let first = chain.tasks.first()?;
            return (ids.get(first.id.as_str()) == Some(&0)).then_some(0);
        }
        let position = ids.get(chain.entry.as_str()).copied();
        if position.is_none() {
            self.report(
                "entry",
                reason::UNKNOWN_TASK,
                format!("entry {} names no task of the chain", quote(&chain.entry)),
            );
        }
        position
    }

    /// Reports tasks no path of gotos, fan-outs and on_failure leads to from
    /// the entry. Edges are read from the definition as written, so a branch
    /// with another problem still counts.
    pub(super) fn check_reachability(
        &mut self,
        tasks: &[pb::Task],
        entry: usize,
        ids: &TaskIds<'_>,
    ) {
        let mut reached = vec![false; tasks.len()];
        let mut pending = vec![entry];
        if let Some(flag) = reached.get_mut(entry) {
            *flag = true;
        }
        while let Some(position) = pending.pop() {
            let Some(task) = tasks.get(position) else {
                continue;
            };
            for target in edges(task) {
                if let Some(&next) = ids.get(target)
                    && let Some(flag) = reached.get_mut(next)
                    && !*flag
                {
                    *flag = true;
                    pending.push(next);
                }
            }
        }
        let entry_id = tasks.get(entry).map_or("", |task| task.id.as_str());
        for (position, task) in tasks.iter().enumerate() {
            // Tasks with a missing, reserved or duplicate id are reported as such.
            if !reached[position] && ids.get(task.id.as_str()) == Some(&position) {
                self.report(
                    format!("tasks[{position}]"),
                    reason::UNREACHABLE_TASK,
                    format!(
                        "task {} cannot be reached from the entry task {}",
                        quote(&task.id),
                        quote(entry_id)
                    ),
                );
            }
        }
    }
}

/// The task ids a task may lead to: its on_failure and every goto target.
fn edges(task: &pb::Task) -> Vec<&str> {
    let Some(transition) = &task.transition else {
        return Vec::new();
    };
    let mut targets = vec![transition.on_failure.as_str()];
    for branch in &transition.branches {
        match branch.goto.as_ref().and_then(|value| value.kind.as_ref()) {
            Some(Kind::StringValue(target)) => targets.push(target),
            Some(Kind::ListValue(list)) => {
                targets.extend(list.values.iter().filter_map(|value| match &value.kind {
                    Some(Kind::StringValue(target)) => Some(target.as_str()),
                    _ => None,
                }))
            }
            _ => {}
        }
    }
    targets
}
