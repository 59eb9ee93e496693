//! Chain definitions the black-box tests share: the pieces (gotos,
//! branches, tasks) and the small chains several suites run.

use taskloom_server::proto::taskloom::v1 as pb;

/// A goto naming one task (or `end`).
pub fn goto(target: &str) -> Option<prost_types::Value> {
    Some(prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(target.into())),
    })
}

/// A goto naming several tasks: a fan-out.
pub fn fan_out(targets: &[&str]) -> Option<prost_types::Value> {
    Some(prost_types::Value {
        kind: Some(prost_types::value::Kind::ListValue(
            prost_types::ListValue {
                values: targets.iter().map(|t| goto(t).unwrap()).collect(),
            },
        )),
    })
}

pub fn branch(operator: &str, when: &str, target: Option<prost_types::Value>) -> pb::Branch {
    pb::Branch {
        operator: operator.into(),
        when: when.into(),
        goto: target,
        ..Default::default()
    }
}

/// A transition with one `default` branch to `target`.
pub fn then(target: &str) -> Option<pb::Transition> {
    Some(pb::Transition {
        on_failure: String::new(),
        branches: vec![branch("default", "", goto(target))],
    })
}

pub fn task(id: &str, handler: &str, branches: Vec<pb::Branch>) -> pb::Task {
    pb::Task {
        id: id.into(),
        handler: handler.into(),
        transition: Some(pb::Transition {
            on_failure: String::new(),
            branches,
        }),
        ..Default::default()
    }
}

pub fn chain(id: &str, tasks: Vec<pb::Task>) -> pb::Chain {
    pb::Chain {
        id: id.into(),
        tasks,
        ..Default::default()
    }
}

/// `tasks` noop tasks `t0 -> t1 -> …`.
pub fn noop_chain(id: &str, tasks: usize) -> pb::Chain {
    pb::Chain {
        id: id.into(),
        tasks: (0..tasks)
            .map(|index| pb::Task {
                id: format!("t{index}"),
                handler: "noop".into(),
                transition: (index + 1 < tasks)
                    .then(|| then(&format!("t{}", index + 1)))
                    .flatten(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// One `worker` task, `work`, on `queue`.
pub fn worker_chain(id: &str, queue: &str) -> pb::Chain {
    pb::Chain {
        id: id.into(),
        tasks: vec![pb::Task {
            id: "work".into(),
            handler: "worker".into(),
            queue: queue.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn text_value(value: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Text(value.into())),
    }
}
