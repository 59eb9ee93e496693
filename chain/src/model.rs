//! The compiled form of a chain: what the kernel executes. Built only by
//! [`compile`](super::compile), so every reference in it names a task of the
//! chain and every operand is already parsed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::number::parse_strict;
use super::retry::RetryPolicy;

/// A validated chain, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledChain {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) entry: String,
    pub(crate) tasks: Vec<CompiledTask>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) max_steps: u32,
    pub(crate) token_limit: Option<u64>,
}

impl CompiledChain {
    /// The chain id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The chain's free-text description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The id of the first task to run.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The tasks, in declared order.
    pub fn tasks(&self) -> &[CompiledTask] {
        &self.tasks
    }

    /// The task with this id.
    pub fn task(&self, id: &str) -> Option<&CompiledTask> {
        self.index
            .get(id)
            .and_then(|&position| self.tasks.get(position))
    }

    /// The position of the task with this id in [`tasks`](Self::tasks);
    /// fan-out results are merged in this order.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Upper bound on task executions in one run (the chain's `max_steps`,
    /// or 1000 when it is 0).
    pub fn max_steps(&self) -> u32 {
        self.max_steps
    }

    /// Upper bound on model tokens spent by one run, if any.
    pub fn token_limit(&self) -> Option<u64> {
        self.token_limit
    }
}

/// One task of a compiled chain.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledTask {
    /// Unique id within the chain.
    pub id: String,
    /// Free text.
    pub description: String,
    /// What runs the task.
    pub handler: Handler,
    /// System prompt for model-backed handlers.
    pub system_instruction: Option<String>,
    /// minijinja template rendered into the task's input.
    pub prompt_template: Option<String>,
    /// Where the task's input comes from.
    pub input: InputSource,
    /// For `condition_key`: the valid keys (those set to true), sorted.
    pub valid_conditions: Vec<String>,
    /// Model selection and sampling.
    pub model: ModelPreference,
    /// For `hook`: the hook to call.
    pub hook: Option<HookCall>,
    /// For `worker`: the queue remote workers serve.
    pub queue: Option<String>,
    /// Deadline of one attempt.
    pub timeout: Option<Duration>,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// Where to go next.
    pub transition: CompiledTransition,
    /// Join: tasks that must have finished in this run before this one runs.
    pub wait_for: Vec<String>,
    /// Template printed to the run's events.
    pub print: Option<String>,
    /// For `raise_error`: the error message template.
    pub error_message: Option<String>,
}

/// What runs a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handler {
    /// Prompt a model; the output is its answer.
    RawString,
    /// Prompt a model; the output is the valid condition key it answered.
    ConditionKey,
    /// Prompt a model; the output is the first number of its answer.
    ParseNumber,
    /// Prompt a model; the output is the score (first number) it answered.
    ParseScore,
    /// Prompt a model; the output is the first range of its answer.
    ParseRange,
    /// Embed the input; the output is a vector.
    Embedding,
    /// Chat history in, chat history out.
    ModelExecution,
    /// Call a registered HTTP hook.
    Hook,
    /// Hand the task to a remote worker through a lease.
    Worker,
    /// Wait for `SubmitInput`.
    HumanInput,
    /// Pass the input through.
    Noop,
    /// Fail with `error_message`.
    RaiseError,
}

impl Handler {
    /// Every handler, in documentation order.
    pub const ALL: [Handler; 12] = [
        Handler::RawString,
        Handler::ConditionKey,
        Handler::ParseNumber,
        Handler::ParseScore,
        Handler::ParseRange,
        Handler::Embedding,
        Handler::ModelExecution,
        Handler::Hook,
        Handler::Worker,
        Handler::HumanInput,
        Handler::Noop,
        Handler::RaiseError,
    ];

    /// The handler's name in chain definitions.
    pub fn name(self) -> &'static str {
        match self {
            Handler::RawString => "raw_string",
            Handler::ConditionKey => "condition_key",
            Handler::ParseNumber => "parse_number",
            Handler::ParseScore => "parse_score",
            Handler::ParseRange => "parse_range",
            Handler::Embedding => "embedding",
            Handler::ModelExecution => "model_execution",
            Handler::Hook => "hook",
            Handler::Worker => "worker",
            Handler::HumanInput => "human_input",
            Handler::Noop => "noop",
            Handler::RaiseError => "raise_error",
        }
    }

    /// The handler with this name in chain definitions.
    pub fn from_name(name: &str) -> Option<Handler> {
        Handler::ALL
            .into_iter()
            .find(|handler| handler.name() == name)
    }

    /// Whether the handler calls a model (and so uses `execute_config`).
    pub fn uses_model(self) -> bool {
        matches!(
            self,
            Handler::RawString
                | Handler::ConditionKey
                | Handler::ParseNumber
                | Handler::ParseScore
                | Handler::ParseRange
                | Handler::Embedding
                | Handler::ModelExecution
        )
    }
}

/// Where a task's input comes from (`input_var`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// The output of the task that ran before (the run's input for the
    /// entry task). `input_var` empty.
    PreviousOutput,
    /// The run's input. `input_var: "input"` (even if a task is named
    /// `input`; its output stays reachable in templates).
    RunInput,
    /// The latest output of this task. `input_var: "<task id>"`.
    TaskOutput(String),
}

/// Which models may serve a task, in order of preference.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelPreference {
    /// `model` first, then `models`; duplicates dropped, order kept.
    pub models: Vec<String>,
    /// `provider` first, then `providers`; duplicates dropped, order kept.
    pub providers: Vec<String>,
    /// The pool whose backends may serve the task (None: by capability).
    pub pool: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Completion token cap.
    pub max_tokens: Option<u32>,
    /// Stream the answer even when no watcher asks for token deltas.
    pub stream: bool,
}

/// A call to a registered hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    /// The hook's name.
    pub name: String,
    /// Arguments; values are templates. Sorted by name for determinism.
    pub args: BTreeMap<String, String>,
}

/// Where a branch leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goto {
    /// The run ends (successfully) after this task.
    End,
    /// The task with this id runs next.
    Task(String),
    /// These tasks (at least two, distinct) run next, in parallel.
    FanOut(Vec<String>),
}

impl Goto {
    /// The ids of the tasks this goto starts (none for `End`).
    pub fn targets(&self) -> &[String] {
        match self {
            Goto::End => &[],
            Goto::Task(id) => std::slice::from_ref(id),
            Goto::FanOut(ids) => ids,
        }
    }
}

/// A branch operator with its parsed operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operator {
    /// The output, trimmed, equals the operand (trimmed).
    Equals(String),
    /// The output contains the operand.
    Contains(String),
    /// The output starts with the operand.
    StartsWith(String),
    /// The output ends with the operand.
    EndsWith(String),
    /// The output is a number greater than the operand.
    GreaterThan(f64),
    /// The output is a number less than the operand.
    LessThan(f64),
    /// The output is a number within `low..=high`.
    InRange {
        /// Inclusive low bound.
        low: f64,
        /// Inclusive high bound.
        high: f64,
    },
    /// Always matches; tried after every other branch.
    Default,
}

impl Operator {
    /// The operator's canonical name in chain definitions.
    pub fn name(&self) -> &'static str {
        match self {
            Operator::Equals(_) => "equals",
            Operator::Contains(_) => "contains",
            Operator::StartsWith(_) => "starts_with",
            Operator::EndsWith(_) => "ends_with",
            Operator::GreaterThan(_) => "gt",
            Operator::LessThan(_) => "lt",
            Operator::InRange { .. } => "in_range",
            Operator::Default => "default",
        }
    }

    /// Whether a task output satisfies this operator. Numeric operators need
    /// the whole output (trimmed) to be a number; anything else does not
    /// match.
    pub fn matches(&self, output: &str) -> bool {
        match self {
            Operator::Equals(operand) => output.trim() == operand.trim(),
            Operator::Contains(operand) => output.contains(operand.as_str()),
            Operator::StartsWith(operand) => output.starts_with(operand.as_str()),
            Operator::EndsWith(operand) => output.ends_with(operand.as_str()),
            Operator::GreaterThan(operand) => {
                parse_strict(output).is_some_and(|value| value > *operand)
            }
            Operator::LessThan(operand) => {
                parse_strict(output).is_some_and(|value| value < *operand)
            }
            Operator::InRange { low, high } => {
                parse_strict(output).is_some_and(|value| (*low..=*high).contains(&value))
            }
            Operator::Default => true,
        }
    }
}

/// One branch of a compiled transition.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledBranch {
    /// The test applied to the task's output.
    pub operator: Operator,
    /// Where the branch leads.
    pub goto: Goto,
    /// contenox compatibility: an event message emitted when taken.
    pub alert_on_match: Option<String>,
}

/// What happens after a task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompiledTransition {
    /// Task to run when this task fails for good.
    pub on_failure: Option<String>,
    /// Branches in declared order (at most one `default`).
    pub branches: Vec<CompiledBranch>,
}

/// Where a task without branches leads: the run ends.
static END: Goto = Goto::End;

impl CompiledTransition {
    /// The branch taken for this output: the first non-default branch that
    /// matches, in declared order, else the `default` branch wherever it
    /// stands. `None` when nothing matches (the run cannot continue); a
    /// transition without branches ends the run.
    pub fn next(&self, output: &str) -> Option<&Goto> {
        self.next_branch(output)
            .map(|branch| &branch.goto)
            .or_else(|| self.branches.is_empty().then_some(&END))
    }

    /// Like [`next`](Self::next) but returns the whole branch (for its
    /// `alert_on_match`); `None` also for a transition without branches.
    pub fn next_branch(&self, output: &str) -> Option<&CompiledBranch> {
        let is_default = |branch: &&CompiledBranch| branch.operator == Operator::Default;
        self.branches
            .iter()
            .filter(|branch| !is_default(branch))
            .find(|branch| branch.operator.matches(output))
            .or_else(|| self.branches.iter().find(is_default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(operator: Operator, goto: &str) -> CompiledBranch {
        CompiledBranch {
            operator,
            goto: Goto::Task(goto.to_string()),
            alert_on_match: None,
        }
    }

    fn target(goto: Option<&Goto>) -> Option<&str> {
        match goto {
            Some(Goto::Task(id)) => Some(id),
            Some(Goto::End) => Some("end"),
            Some(Goto::FanOut(_)) => Some("fan-out"),
            None => None,
        }
    }

    #[test]
    fn default_first_in_the_list_is_tried_last() {
        let transition = CompiledTransition {
            on_failure: None,
            branches: vec![
                branch(Operator::Default, "fallback"),
                branch(Operator::Equals("yes".into()), "accept"),
                branch(Operator::Contains("maybe".into()), "ask"),
            ],
        };
        assert_eq!(target(transition.next(" yes\n")), Some("accept"));
        assert_eq!(target(transition.next("well, maybe")), Some("ask"));
        assert_eq!(target(transition.next("no")), Some("fallback"));
    }

    #[test]
    fn first_matching_branch_wins_in_declared_order() {
        let transition = CompiledTransition {
            on_failure: None,
            branches: vec![
                branch(Operator::GreaterThan(5.0), "high"),
                branch(Operator::GreaterThan(1.0), "medium"),
                branch(Operator::Default, "low"),
            ],
        };
        assert_eq!(target(transition.next("9")), Some("high"));
        assert_eq!(target(transition.next("3")), Some("medium"));
        assert_eq!(target(transition.next("1")), Some("low"));
        assert_eq!(
            target(transition.next("many")),
            Some("low"),
            "non-numeric output does not match gt"
        );
    }

    #[test]
    fn no_match_without_default_is_none() {
        let transition = CompiledTransition {
            on_failure: None,
            branches: vec![branch(Operator::Equals("a".into()), "x")],
        };
        assert_eq!(transition.next("b"), None);
        assert_eq!(transition.next_branch("b"), None);
    }

    #[test]
    fn no_branches_ends_the_run() {
        let transition = CompiledTransition::default();
        assert_eq!(transition.next("anything"), Some(&Goto::End));
        assert_eq!(transition.next_branch("anything"), None);
    }

    #[test]
    fn next_branch_exposes_the_alert() {
        let mut alerting = branch(Operator::StartsWith("ERR".into()), "handle");
        alerting.alert_on_match = Some("error seen".into());
        let transition = CompiledTransition {
            on_failure: None,
            branches: vec![alerting],
        };
        assert_eq!(
            transition
                .next_branch("ERR: x")
                .and_then(|b| b.alert_on_match.as_deref()),
            Some("error seen")
        );
    }

    #[test]
    fn string_operators() {
        assert!(Operator::Equals("yes".into()).matches("  yes \n"));
        assert!(Operator::Equals(" yes ".into()).matches("yes"));
        assert!(!Operator::Equals("yes".into()).matches("Yes"));
        assert!(!Operator::Equals("yes".into()).matches("yes please"));
        assert!(Operator::Contains("lo w".into()).matches("hello world"));
        assert!(!Operator::Contains("x".into()).matches("hello"));
        assert!(Operator::StartsWith("he".into()).matches("hello"));
        assert!(
            !Operator::StartsWith("he".into()).matches(" hello"),
            "raw string, not trimmed"
        );
        assert!(Operator::EndsWith("lo".into()).matches("hello"));
        assert!(
            !Operator::EndsWith("lo".into()).matches("hello\n"),
            "raw string, not trimmed"
        );
    }

    #[test]
    fn numeric_operators() {
        assert!(Operator::GreaterThan(-1.0).matches(" 0 "));
        assert!(!Operator::GreaterThan(3.0).matches("3"));
        assert!(Operator::LessThan(-2.5).matches("-3"));
        assert!(!Operator::LessThan(0.0).matches("abc"));
        assert!(
            !Operator::LessThan(0.0).matches("-1 apples"),
            "the whole output must be a number"
        );
        assert!(!Operator::GreaterThan(0.0).matches("NaN"));
        assert!(!Operator::GreaterThan(0.0).matches("inf"));
    }

    #[test]
    fn in_range_is_inclusive_and_handles_negatives() {
        let range = Operator::InRange {
            low: -10.0,
            high: -5.0,
        };
        for inside in ["-10", "-5", "-7.5", " -6 "] {
            assert!(range.matches(inside), "{inside}");
        }
        for outside in ["-10.01", "-4.9", "5", "7", "", "x"] {
            assert!(!range.matches(outside), "{outside}");
        }
        let crossing = Operator::InRange {
            low: -3.0,
            high: 7.0,
        };
        assert!(crossing.matches("0"));
        assert!(crossing.matches("-3"));
        assert!(!crossing.matches("7.5"));
    }

    #[test]
    fn default_always_matches() {
        assert!(Operator::Default.matches(""));
    }

    #[test]
    fn handler_names_round_trip() {
        for handler in Handler::ALL {
            assert_eq!(Handler::from_name(handler.name()), Some(handler));
        }
        assert_eq!(Handler::from_name("RAW_STRING"), None);
        assert_eq!(Handler::from_name("chat"), None);
        assert!(Handler::ConditionKey.uses_model());
        assert!(!Handler::Worker.uses_model());
    }

    #[test]
    fn goto_targets() {
        assert!(Goto::End.targets().is_empty());
        assert_eq!(Goto::Task("a".into()).targets(), ["a".to_string()]);
        assert_eq!(
            Goto::FanOut(vec!["a".into(), "b".into()]).targets().len(),
            2
        );
    }

    #[test]
    fn operator_names() {
        assert_eq!(Operator::GreaterThan(1.0).name(), "gt");
        assert_eq!(
            Operator::InRange {
                low: 0.0,
                high: 1.0
            }
            .name(),
            "in_range"
        );
        assert_eq!(Operator::Default.name(), "default");
    }
}
