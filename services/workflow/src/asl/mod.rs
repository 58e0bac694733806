//! A definition in the Amazon States Language (JSONPath flavour), parsed into
//! states and checked before it is stored: every Next names a state, every
//! state is reachable, there is a way to end, every Task names a known unary
//! gRPC method, every path parses, and Retry and Catch name known errors.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::choice::Rule;
use crate::errors::{GRPC_ERRORS, STATES_ERRORS};
use crate::path::{DataPath, Expr, Path, ResultPath, Template};

mod parse;

use parse::ParseContext;

/// Why a definition was refused: the state (if any) and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{problem}", state.as_ref().map(|s| format!("state {s:?}: ")).unwrap_or_default())]
pub struct DefinitionError {
    /// The state at fault, with its branch path when nested.
    pub state: Option<String>,
    /// What is wrong and how to fix it.
    pub problem: String,
}

fn at(state: &str, problem: impl Into<String>) -> DefinitionError {
    DefinitionError {
        state: Some(state.to_string()),
        problem: problem.into(),
    }
}

fn top(problem: impl Into<String>) -> DefinitionError {
    DefinitionError {
        state: None,
        problem: problem.into(),
    }
}

/// Checks a Task's Resource: `Ok` with the method path `/pkg.Service/Method`
/// when the mesh's contracts hold such a unary method.
pub trait Methods {
    /// The method path of a resource such as `grpc:pkg.Service/Method`.
    fn resolve(&self, resource: &str) -> Result<String, String>;
}

/// A parsed, checked state machine (or a Parallel branch, or a Map's processor).
#[derive(Debug, Clone)]
pub struct Machine {
    /// The first state.
    pub start_at: String,
    /// The states in definition order.
    pub states: Vec<State>,
    index: HashMap<String, usize>,
    /// The whole execution's time limit (top level only).
    pub timeout: Option<Duration>,
}

impl Machine {
    /// A state by name.
    pub fn state(&self, name: &str) -> Option<&State> {
        self.index.get(name).and_then(|&i| self.states.get(i))
    }
}

/// One state.
#[derive(Debug, Clone)]
pub struct State {
    /// Its name.
    pub name: String,
    /// What it does.
    pub kind: Kind,
    /// InputPath.
    pub input_path: DataPath,
    /// OutputPath.
    pub output_path: DataPath,
    /// The next state, or `None` for the end.
    pub next: Option<String>,
}

/// What a state does.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Calls a gRPC method.
    Task(Box<Task>),
    /// Passes its input (or Result) on.
    Pass {
        result: Option<Value>,
        parameters: Option<Template>,
        result_path: ResultPath,
    },
    /// Picks the next state by rules.
    Choice {
        choices: Vec<(Rule, String)>,
        default: Option<String>,
    },
    /// Waits.
    Wait(WaitFor),
    /// Ends the execution successfully.
    Succeed,
    /// Ends the execution with an error.
    Fail {
        error: Option<Text>,
        cause: Option<Text>,
    },
    /// Runs branches at once.
    Parallel(Box<Parallel>),
    /// Runs a processor over each item of an array.
    Map(Box<MapState>),
}

impl Kind {
    /// The States Language name of the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Task(_) => "Task",
            Kind::Pass { .. } => "Pass",
            Kind::Choice { .. } => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail { .. } => "Fail",
            Kind::Parallel(_) => "Parallel",
            Kind::Map(_) => "Map",
        }
    }

    /// The Catch rules of a state that has them.
    pub fn catchers(&self) -> &[Catcher] {
        match self {
            Kind::Task(t) => &t.handlers.catch,
            Kind::Parallel(p) => &p.handlers.catch,
            Kind::Map(m) => &m.handlers.catch,
            _ => &[],
        }
    }

    /// Retry, Catch and result handling of a Task, Parallel or Map state.
    pub fn handlers(&self) -> Option<&Handlers> {
        match self {
            Kind::Task(t) => Some(&t.handlers),
            Kind::Parallel(p) => Some(&p.handlers),
            Kind::Map(m) => Some(&m.handlers),
            _ => None,
        }
    }

    /// The Retry rules of a state that has them.
    pub fn retriers(&self) -> &[Retrier] {
        match self {
            Kind::Task(t) => &t.handlers.retry,
            Kind::Parallel(p) => &p.handlers.retry,
            Kind::Map(m) => &m.handlers.retry,
            _ => &[],
        }
    }
}

/// Retry and Catch, and what a state does with its result.
#[derive(Debug, Clone, Default)]
pub struct Handlers {
    /// ResultSelector.
    pub result_selector: Option<Template>,
    /// ResultPath.
    pub result_path: ResultPath,
    /// Retry rules, in order.
    pub retry: Vec<Retrier>,
    /// Catch rules, in order.
    pub catch: Vec<Catcher>,
}

/// A Task state.
#[derive(Debug, Clone)]
pub struct Task {
    /// The Resource as written.
    pub resource: String,
    /// The gRPC method path, `/pkg.Service/Method`.
    pub method: String,
    /// Parameters.
    pub parameters: Option<Template>,
    /// TimeoutSeconds.
    pub timeout: Duration,
    /// Retry, Catch, ResultSelector, ResultPath.
    pub handlers: Handlers,
}

/// The default TimeoutSeconds of a Task: Step Functions' is a year; the mesh's
/// calls are short, so a minute.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(60);

/// A Fail state's Error or Cause: written out, or computed (ErrorPath, CausePath).
#[derive(Debug, Clone)]
pub enum Text {
    /// Error or Cause.
    Literal(String),
    /// ErrorPath or CausePath.
    Computed(Expr),
}

/// How a Wait state waits.
#[derive(Debug, Clone)]
pub enum WaitFor {
    /// Seconds.
    Seconds(f64),
    /// SecondsPath.
    SecondsPath(Path),
    /// Timestamp (RFC 3339).
    Timestamp(String),
    /// TimestampPath.
    TimestampPath(Path),
}

/// A Parallel state.
#[derive(Debug, Clone)]
pub struct Parallel {
    /// The branches.
    pub branches: Vec<Machine>,
    /// Parameters.
    pub parameters: Option<Template>,
    /// Retry, Catch, ResultSelector, ResultPath.
    pub handlers: Handlers,
}

/// An inline Map state.
#[derive(Debug, Clone)]
pub struct MapState {
    /// ItemsPath.
    pub items_path: DataPath,
    /// ItemSelector (or the older Parameters).
    pub item_selector: Option<Template>,
    /// ItemProcessor (or the older Iterator).
    pub processor: Machine,
    /// MaxConcurrency; 0 means no limit.
    pub max_concurrency: usize,
    /// Retry, Catch, ResultSelector, ResultPath.
    pub handlers: Handlers,
}

/// One Retry rule.
#[derive(Debug, Clone)]
pub struct Retrier {
    /// ErrorEquals.
    pub errors: Vec<String>,
    /// IntervalSeconds (fractions allowed here; Step Functions takes whole seconds).
    pub interval: f64,
    /// MaxAttempts.
    pub max_attempts: u32,
    /// BackoffRate.
    pub backoff_rate: f64,
    /// MaxDelaySeconds.
    pub max_delay: Option<f64>,
    /// JitterStrategy FULL.
    pub full_jitter: bool,
}

impl Retrier {
    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let mut seconds = self.interval * self.backoff_rate.powi(exponent);
        if let Some(max) = self.max_delay {
            seconds = seconds.min(max);
        }
        seconds = seconds.min(86_400.0);
        if self.full_jitter {
            seconds *= rand::random::<f64>();
        }
        Duration::from_secs_f64(seconds.max(0.0))
    }
}

/// One Catch rule.
#[derive(Debug, Clone)]
pub struct Catcher {
    /// ErrorEquals.
    pub errors: Vec<String>,
    /// Where to go.
    pub next: String,
    /// Where the error output goes in the state's input.
    pub result_path: ResultPath,
}

/// Parses and checks a definition.
pub fn parse(definition: &str, methods: &dyn Methods) -> Result<Machine, DefinitionError> {
    let value: Value =
        serde_json::from_str(definition).map_err(|e| top(format!("the definition is not JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(top(
            "the definition must be a JSON object with StartAt and States",
        ));
    };
    let mut raised = BTreeSet::new();
    collect_raised(map, &mut raised);
    let parser = ParseContext { methods, raised };
    let machine = parser.machine(map, "")?;
    Ok(machine)
}

/// Error names raised by Fail states anywhere in the definition.
fn collect_raised(map: &Map<String, Value>, out: &mut BTreeSet<String>) {
    let Some(Value::Object(states)) = map.get("States") else {
        return;
    };
    for state in states.values() {
        let Value::Object(state) = state else { continue };
        if state.get("Type").and_then(Value::as_str) == Some("Fail")
            && let Some(Value::String(error)) = state.get("Error")
        {
            out.insert(error.clone());
        }
        for key in ["Branches"] {
            if let Some(Value::Array(branches)) = state.get(key) {
                for branch in branches.iter().filter_map(Value::as_object) {
                    collect_raised(branch, out);
                }
            }
        }
        for key in ["ItemProcessor", "Iterator"] {
            if let Some(Value::Object(processor)) = state.get(key) {
                collect_raised(processor, out);
            }
        }
    }
}

/// Checks the transitions of one machine: targets exist, every state is
/// reachable from StartAt, and some path ends.
fn check_graph(machine: &Machine, prefix: &str) -> Result<(), DefinitionError> {
    if machine.state(&machine.start_at).is_none() {
        return Err(top(format!(
            "StartAt {:?}{} is not a state",
            machine.start_at,
            if prefix.is_empty() {
                String::new()
            } else {
                format!(" of {}", prefix.trim_end_matches('/'))
            }
        )));
    }
    let mut terminal = false;
    for state in &machine.states {
        let full = format!("{prefix}{}", state.name);
        for (label, target) in transitions(state) {
            if machine.state(target).is_none() {
                return Err(at(
                    &full,
                    format!("{label} {target:?} is not a state in this machine"),
                ));
            }
        }
        terminal |= state.next.is_none() && !matches!(state.kind, Kind::Choice { .. });
    }
    if !terminal {
        return Err(top(format!(
            "no state ends the {}: add \"End\": true, a Succeed or a Fail state",
            if prefix.is_empty() {
                "execution".to_string()
            } else {
                format!("branch {}", prefix.trim_end_matches('/'))
            }
        )));
    }
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([machine.start_at.as_str()]);
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(state) = machine.state(name) {
            queue.extend(transitions(state).into_iter().map(|(_, t)| t));
        }
    }
    if let Some(lost) = machine.states.iter().find(|s| !seen.contains(s.name.as_str())) {
        return Err(at(
            &format!("{prefix}{}", lost.name),
            format!(
                "is unreachable: no Next, Choice, Default or Catch leads to it from {:?}",
                machine.start_at
            ),
        ));
    }
    Ok(())
}

/// Every transition out of a state: (why, target).
pub fn transitions(state: &State) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    if let Some(next) = &state.next {
        out.push(("Next", next.as_str()));
    }
    if let Kind::Choice { choices, default } = &state.kind {
        out.extend(choices.iter().map(|(_, next)| ("Choice Next", next.as_str())));
        if let Some(default) = default {
            out.push(("Default", default.as_str()));
        }
    }
    out.extend(
        state
            .kind
            .catchers()
            .iter()
            .map(|c| ("Catch Next", c.next.as_str())),
    );
    out
}
