//! The interpreter: runs executions state by state, records each transition
//! through the journal before it takes effect, invokes tasks with a stable
//! idempotency id, applies Retry and Catch, and resumes every RUNNING
//! execution after a restart from its last recorded cursor.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::asl::{Handlers, Kind, Machine, State, Text, WaitFor};
use crate::errors::Failure;
use crate::events::EventKind;
use crate::path::{excerpt, kind_of};
use crate::store::{Applied, Fence, Journal, Store, Update, Write, event, execution, status};
use kit_values::now_micros;

mod fanout;
mod journal;
mod states;
mod task;

/// A task call the engine asks for.
#[derive(Debug, Clone)]
pub struct TaskCall {
    /// The method path, `/pkg.Service/Method`.
    pub method: String,
    /// The request, as JSON.
    pub payload: Value,
    /// TimeoutSeconds.
    pub timeout: Duration,
    /// Stable across retries and restarts of the same state entry.
    pub idempotency_id: String,
    /// The execution's correlation id.
    pub correlation_id: String,
}

/// Calls a task's method.
pub trait Invoker: Send + Sync + 'static {
    /// Sends the call; the response as JSON, or the failure.
    fn invoke(&self, call: TaskCall) -> Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send>>;
}

/// Where an execution resumes: its top-level state, that state's input, and
/// what it had done there.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    /// The state to run.
    pub state: String,
    /// Its raw input.
    pub input: Value,
    /// The task attempt to make next (0 = first call).
    #[serde(default)]
    pub attempt: u32,
    /// How many times each state has been entered.
    #[serde(default)]
    pub entered: BTreeMap<String, u32>,
    /// When a Wait state wakes.
    #[serde(default)]
    pub wake_micros: Option<i64>,
}

/// Why a state did not finish normally.
#[derive(Debug)]
enum Halt {
    /// An error no Catch handled.
    Failed(Failure),
    /// StopExecution.
    Stopped,
}

impl From<Failure> for Halt {
    fn from(f: Failure) -> Self {
        Halt::Failed(f)
    }
}

/// What a state did.
struct Outcome {
    next: Option<String>,
    output: Value,
}

/// Where a state runs: at the top (its cursor checkpoints) or in a branch.
#[derive(Clone)]
enum Scope<'a> {
    Top(&'a Cursor),
    Branch {
        prefix: String,
        item: Option<(usize, Value)>,
    },
}

impl Scope<'_> {
    fn prefix(&self) -> &str {
        match self {
            Scope::Top(_) => "",
            Scope::Branch { prefix, .. } => prefix,
        }
    }
}

/// Turns a stored definition back into a machine.
pub type ParseFn = Box<dyn Fn(&str) -> Result<Machine, String> + Send + Sync>;

/// A running execution's stop signal.
type Runner = watch::Sender<bool>;

/// Parsed versions by (name, version), with whether each reads `$$.Execution.Input`.
type Machines = HashMap<(String, i32), (Arc<Machine>, bool)>;

/// The engine: what runs, and what it needs to run it.
pub struct Engine {
    /// This replica, as leases name it.
    owner: String,
    store: Store,
    journal: Journal,
    invoker: Arc<dyn Invoker>,
    running: Mutex<HashMap<String, Runner>>,
    /// Set when the replica hands its executions over at shutdown: it takes no more.
    leaving: std::sync::atomic::AtomicBool,
    stalled: Mutex<HashMap<String, std::time::Instant>>,
    machines: Mutex<Machines>,
    parse: ParseFn,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for the replica `owner` over the store, journal and
    /// invoker; `parse` turns a stored definition back into a machine.
    pub fn new(
        owner: String,
        store: Store,
        journal: Journal,
        invoker: Arc<dyn Invoker>,
        parse: ParseFn,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            owner,
            store,
            journal,
            invoker,
            running: Mutex::new(HashMap::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            stalled: Mutex::new(HashMap::new()),
            machines: Mutex::new(HashMap::new()),
            parse,
        })
    }

    /// This replica, as leases name it.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A stored version, parsed once.
    pub async fn machine(&self, name: &str, version: i32) -> Result<Arc<Machine>, String> {
        let key = (name.to_string(), version);
        if let Some((m, _)) = self.machines.lock().map_err(|_| "poisoned")?.get(&key) {
            return Ok(m.clone());
        }
        let row = self
            .store
            .machine(name, version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("state machine {name:?} version {version} is gone"))?;
        let machine = Arc::new((self.parse)(&row.definition)?);
        let reads_input = row.definition.contains("$$.Execution.Input");
        self.machines
            .lock()
            .map_err(|_| "poisoned")?
            .insert(key, (machine.clone(), reads_input));
        Ok(machine)
    }

    /// Whether a (cached) version's definition reads `$$.Execution.Input`.
    fn reads_input(&self, name: &str, version: i32) -> bool {
        self.machines
            .lock()
            .ok()
            .and_then(|m| m.get(&(name.to_string(), version)).map(|(_, reads)| *reads))
            .unwrap_or(true)
    }

    /// Whether an execution is running in this process.
    pub fn is_running(&self, name: &str) -> bool {
        self.running.lock().map(|r| r.contains_key(name)).unwrap_or(false)
    }

    /// Asks a running execution to stop where it is.
    pub fn stop(&self, name: &str) {
        if let Ok(running) = self.running.lock()
            && let Some(tx) = running.get(name)
        {
            let _ = tx.send(true);
        }
    }

    /// Marks this replica as leaving: it heartbeats and takes executions no more.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// Whether this replica is leaving.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    /// Asks every execution running here to stop where it is (this replica
    /// may have lost its leases); how many were asked.
    pub fn stop_all(&self) -> usize {
        let Ok(running) = self.running.lock() else {
            return 0;
        };
        for tx in running.values() {
            let _ = tx.send(true);
        }
        running.len()
    }

    /// Runs an execution from its stored cursor on a task of its own, under
    /// the lease epoch `row` holds; does nothing if it already runs here
    /// (never twice at once).
    pub fn launch(self: &Arc<Self>, row: execution::Model, resumed: bool, last_event: Option<i64>) {
        let (tx, rx) = watch::channel(false);
        {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            if running.contains_key(&row.name) {
                return;
            }
            running.insert(row.name.clone(), tx);
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let name = row.name.clone();
            if let Err(e) = engine.clone().drive(row, rx, resumed, last_event).await {
                tracing::error!(execution = %name, error = %e, "execution could not run; it stays RUNNING and is tried again later");
                if let Ok(mut stalled) = engine.stalled.lock() {
                    stalled.insert(name.clone(), std::time::Instant::now());
                }
            }
            if let Ok(mut running) = engine.running.lock() {
                running.remove(&name);
            }
        });
    }

    /// Whether an execution could not run here in the last minute (its
    /// definition is unreadable, say): not worth taking up again yet.
    pub fn stalled_recently(&self, name: &str) -> bool {
        let Ok(mut stalled) = self.stalled.lock() else {
            return false;
        };
        stalled.retain(|_, at| at.elapsed() < Duration::from_secs(60));
        stalled.contains_key(name)
    }

    async fn drive(
        self: Arc<Self>,
        row: execution::Model,
        stop: watch::Receiver<bool>,
        resumed: bool,
        last_event: Option<i64>,
    ) -> Result<(), String> {
        let machine = self.machine(&row.state_machine, row.version).await?;
        let mut cursor: Cursor = serde_json::from_str(&row.cursor).map_err(|e| format!("bad cursor: {e}"))?;
        let last = match last_event {
            Some(last) => last,
            None => self
                .store
                .last_event_id(&row.name)
                .await
                .map_err(|e| e.to_string())?,
        };
        let seq = Arc::new(AtomicI64::new(last));
        // The context object carries the execution's input only for
        // definitions that read it: copying it into every state's context
        // costs more than anything else the engine does per state.
        let reads_input = self.reads_input(&row.state_machine, row.version);
        let exec_input: Value = if reads_input {
            serde_json::from_str(&row.input).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let span = tracing::info_span!(
            "workflow.execution",
            otel.name = %format!("execution {}", row.state_machine),
            execution = %row.name,
            state_machine = %row.state_machine,
            ferrymesh.execution_id = %row.name,
            ferrymesh.correlation_id = %row.correlation_id,
        );
        if !row.traceparent.is_empty() {
            let carrier: HashMap<String, String> =
                HashMap::from([("traceparent".to_string(), row.traceparent.clone())]);
            let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
            let _ = span.set_parent(parent);
        }
        let state_machine = row.state_machine.clone();
        let run = Run {
            engine: self.clone(),
            name: row.name.clone(),
            context_base: json!({
                "Execution": {
                    "Id": row.name, "Name": row.name, "Input": exec_input,
                    "StartTime": kit_values::rfc3339(row.start_micros), "RedriveCount": row.redrive_count,
                },
                "StateMachine": {"Id": format!("{}:{}", row.state_machine, row.version), "Name": row.state_machine, "Version": row.version},
            }),
            seq,
            epoch: row.epoch,
            pending: Mutex::new(Vec::new()),
            transitions: AtomicI64::new(0),
            stop,
            correlation_id: row.correlation_id.clone(),
        };
        if resumed {
            run.event(
                EventKind::ExecutionResumed,
                "",
                json!({"state": cursor.state, "owner": self.owner, "epoch": row.epoch}),
                0,
            );
        }
        let deadline = machine.timeout.map(|t| {
            row.start_micros
                .saturating_add(i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
        });
        async move {
            loop {
                let Some(state) = machine.state(&cursor.state) else {
                    let failure = Failure::runtime(format!("state {:?} is not in the definition", cursor.state));
                    let attention = format!("its state {:?} is not in its definition", cursor.state);
                    return run.finish_failed(&cursor, failure, Some(attention)).await;
                };
                let ordinal = cursor.entered.get(&cursor.state).copied().unwrap_or(1);
                let step = run.run_state(Scope::Top(&cursor), state, cursor.input.clone(), ordinal, cursor.attempt);
                let left = deadline.map(|d| Duration::from_micros(u64::try_from(d.saturating_sub(now_micros())).unwrap_or(0)));
                let outcome = tokio::select! {
                    outcome = step => outcome,
                    () = until_stopped(run.stop.clone()) => return Ok(()),
                    () = sleep_opt(left) => {
                        return run.finish(&cursor, status::TIMED_OUT, EventKind::ExecutionTimedOut, None,
                            Some(Failure::new("States.Timeout", "the execution ran past its TimeoutSeconds")), None).await;
                    }
                };
                match outcome {
                    Ok(Outcome { next: Some(next), output }) => {
                        let next_state = machine
                            .state(&next)
                            .ok_or_else(|| format!("state {next:?} is not in the definition"))?;
                        let entered = cursor.entered.entry(next.clone()).or_insert(0);
                        *entered += 1;
                        run.event(EventKind::entered(&next_state.kind), &next, json!({"input": output}), 0);
                        run.transitions.fetch_add(1, Ordering::Relaxed);
                        cursor.state = next;
                        cursor.input = output;
                        cursor.attempt = 0;
                        cursor.wake_micros = None;
                    }
                    Ok(Outcome { next: None, output }) => {
                        return run.finish(&cursor, status::SUCCEEDED, EventKind::ExecutionSucceeded, Some(output), None, None).await;
                    }
                    Err(Halt::Failed(failure)) => {
                        if matches!(state.kind, crate::asl::Kind::Fail { .. }) {
                            return run.finish_failed(&cursor, failure, None).await;
                        }
                        let attention = run.unhandled(&state_machine, &cursor.state, &failure);
                        return run.finish_failed(&cursor, failure, Some(attention)).await;
                    }
                    Err(Halt::Stopped) => return Ok(()),
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// `ferrymesh_workflow_unhandled_failures_total`: executions that failed
/// where their definition planned no failure.
fn unhandled_failures() -> &'static opentelemetry::metrics::Counter<u64> {
    static COUNTER: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        opentelemetry::global::meter("workflow")
            .u64_counter("ferrymesh.workflow.unhandled_failures")
            .with_description("Executions that failed with an error no Catch handles: each needs an operator")
            .build()
    })
}

/// Resolves once the execution is asked to stop.
async fn until_stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn sleep_opt(left: Option<Duration>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    match left {
        Some(d) => Box::pin(tokio::time::sleep(d)),
        None => Box::pin(std::future::pending()),
    }
}

/// One execution being run.
struct Run {
    engine: Arc<Engine>,
    name: String,
    context_base: Value,
    seq: Arc<AtomicI64>,
    /// The lease epoch this run holds: its writes apply only while it lasts.
    epoch: i64,
    pending: Mutex<Vec<event::Model>>,
    transitions: AtomicI64,
    stop: watch::Receiver<bool>,
    correlation_id: String,
}
