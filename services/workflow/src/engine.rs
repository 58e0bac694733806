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
use crate::path::{excerpt, kind_of};
use crate::store::{Applied, Fence, Journal, Store, Update, Write, event, execution, status};
use kit_values::now_micros;

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

/// The `StateEntered` event type of a state type.
fn entered_kind(kind: &Kind) -> String {
    format!("{}StateEntered", kind.type_name())
}

/// The `StateExited` event type of a state type.
fn exited_kind(kind: &Kind) -> String {
    format!("{}StateExited", kind.type_name())
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
                "ExecutionResumed",
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
                        return run.finish(&cursor, status::TIMED_OUT, "ExecutionTimedOut", None,
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
                        run.event(&entered_kind(&next_state.kind), &next, json!({"input": output}), 0);
                        run.transitions.fetch_add(1, Ordering::Relaxed);
                        cursor.state = next;
                        cursor.input = output;
                        cursor.attempt = 0;
                        cursor.wake_micros = None;
                    }
                    Ok(Outcome { next: None, output }) => {
                        return run.finish(&cursor, status::SUCCEEDED, "ExecutionSucceeded", Some(output), None, None).await;
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

impl Run {
    fn event(&self, kind: &str, state: &str, details: Value, retry: u32) {
        let id = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let row = event::Model {
            execution: self.name.clone(),
            id,
            kind: kind.to_string(),
            micros: now_micros(),
            state_name: state.to_string(),
            details: details.to_string(),
            retry_attempt: i32::try_from(retry).unwrap_or(i32::MAX),
            owner: self.engine.owner.clone(),
            epoch: self.epoch,
        };
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(row);
        }
    }

    /// Commits the pending events and `update`; Stopped if the execution
    /// was stopped meanwhile.
    async fn flush(&self, mut update: Update) -> Result<(), Halt> {
        let events = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        update.transitions = self.transitions.swap(0, Ordering::Relaxed);
        update.fence = Some(Fence::Holds(self.epoch));
        let written = self
            .engine
            .journal
            .write(Write {
                insert: None,
                execution: self.name.clone(),
                events,
                update: Some(update),
            })
            .await;
        let applied = match written {
            Ok(applied) => applied,
            Err(e) => {
                // Not recorded, so not done: the execution stays RUNNING at
                // its last recorded cursor and resumes at the next start.
                tracing::error!(execution = %self.name, error = %e, "transition not recorded; the execution pauses until restart");
                return Err(Halt::Stopped);
            }
        };
        match applied {
            Applied::Yes => Ok(()),
            Applied::No => {
                // Stopped, or taken over by another replica: either way it
                // is no longer this run's to advance.
                tracing::info!(execution = %self.name, epoch = self.epoch, "execution stopped or taken over; this replica stops running it");
                Err(Halt::Stopped)
            }
        }
    }

    /// Records where a top-level state stands before it acts.
    async fn checkpoint(
        &self,
        scope: &Scope<'_>,
        attempt: u32,
        wake_micros: Option<i64>,
    ) -> Result<(), Halt> {
        let update = match scope {
            Scope::Top(cursor) => {
                let mut at = (*cursor).clone();
                at.attempt = attempt;
                at.wake_micros = wake_micros;
                Update {
                    cursor: serde_json::to_string(&at).ok(),
                    current_state: Some(at.state.clone()),
                    ..Update::default()
                }
            }
            Scope::Branch { .. } => Update::default(),
        };
        self.flush(update).await
    }

    async fn finish(
        &self,
        cursor: &Cursor,
        to: &'static str,
        kind: &str,
        output: Option<Value>,
        failure: Option<Failure>,
        attention: Option<String>,
    ) -> Result<(), String> {
        let details = match (&output, &failure) {
            (Some(o), _) => json!({"output": o}),
            (_, Some(f)) => f.to_json(),
            _ => Value::Null,
        };
        self.event(kind, "", details, 0);
        let update = Update {
            status: Some(to),
            cursor: serde_json::to_string(cursor).ok(),
            current_state: Some(cursor.state.clone()),
            output: output.map(|o| o.to_string()),
            error: failure.as_ref().map(|f| f.error.clone()),
            cause: failure.map(|f| f.cause),
            stop_micros: Some(now_micros()),
            attention,
            ..Update::default()
        };
        match self.flush(update).await {
            Ok(()) => {
                tracing::info!(execution = %self.name, status = to, "execution ended");
                Ok(())
            }
            // Stopped meanwhile: the stop is what happened.
            Err(_) => Ok(()),
        }
    }

    /// An execution failed with an error no Catch handled (not at a Fail
    /// state the definition planned): whatever it left half done needs an
    /// operator. Said at ERROR and counted, so it is seen at once.
    fn unhandled(&self, state_machine: &str, state: &str, failure: &Failure) -> String {
        tracing::error!(
            execution = %self.name,
            state_machine,
            state,
            error = %failure.error,
            cause = %failure.cause,
            "execution failed with an error no Catch handles: it needs an operator (fix the cause, then RedriveExecution)"
        );
        unhandled_failures().add(
            1,
            &[
                opentelemetry::KeyValue::new("state_machine", state_machine.to_string()),
                opentelemetry::KeyValue::new("state", state.to_string()),
                opentelemetry::KeyValue::new("error", failure.error.clone()),
            ],
        );
        format!(
            "failed at {state:?} with {} that no Catch handles: fix the cause, then RedriveExecution",
            failure.error
        )
    }

    async fn finish_failed(
        &self,
        cursor: &Cursor,
        failure: Failure,
        attention: Option<String>,
    ) -> Result<(), String> {
        self.finish(
            cursor,
            status::FAILED,
            "ExecutionFailed",
            None,
            Some(failure),
            attention,
        )
        .await
    }

    fn context(&self, scope: &Scope<'_>, state: &str, retry: u32, idempotency_id: &str) -> Value {
        let mut context = self.context_base.clone();
        if let Value::Object(map) = &mut context {
            map.insert(
                "State".into(),
                json!({"Name": state, "EnteredTime": kit_values::rfc3339(now_micros()), "RetryCount": retry}),
            );
            map.insert("Task".into(), json!({"IdempotencyId": idempotency_id}));
            if let Scope::Branch {
                item: Some((index, value)),
                ..
            } = scope
            {
                map.insert("Map".into(), json!({"Item": {"Index": index, "Value": value}}));
            }
        }
        context
    }

    /// Runs one state to its outcome, with its Retry and Catch.
    fn run_state<'a>(
        &'a self,
        scope: Scope<'a>,
        state: &'a State,
        raw: Value,
        ordinal: u32,
        first_attempt: u32,
    ) -> Pin<Box<dyn Future<Output = Result<Outcome, Halt>> + Send + 'a>> {
        let path = format!("{}{}", scope.prefix(), state.name);
        // One span per state entered, so a trace shows the saga's steps,
        // its failed step and the compensations after it.
        let span = tracing::info_span!(
            "workflow.state",
            otel.name = %format!("state {path}"),
            otel.status_code = tracing::field::Empty,
            workflow.state = %path,
            workflow.state_type = state.kind.type_name(),
            workflow.error = tracing::field::Empty,
            workflow.caught_by = tracing::field::Empty,
            ferrymesh.execution_id = %self.name,
        );
        let outcome_span = span.clone();
        Box::pin(
            async move {
                let outcome = self
                    .run_state_inner(scope, state, raw, ordinal, first_attempt, path)
                    .await;
                if let Err(Halt::Failed(failure)) = &outcome {
                    outcome_span.record("otel.status_code", "ERROR");
                    outcome_span.record("workflow.error", failure.error.as_str());
                }
                outcome
            }
            .instrument(span),
        )
    }

    async fn run_state_inner(
        &self,
        scope: Scope<'_>,
        state: &State,
        raw: Value,
        ordinal: u32,
        first_attempt: u32,
        path: String,
    ) -> Result<Outcome, Halt> {
        {
            let idempotency_id = format!(
                "wf-{}",
                uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("{}/{path}/{ordinal}", self.name).as_bytes()
                )
                .simple()
            );
            let context = self.context(&scope, &state.name, first_attempt, &idempotency_id);
            let effective = state.input_path.apply(&raw, &context, "InputPath")?;
            let exit =
                |output: Value, next: Option<String>, caught: Option<&Failure>| -> Result<Outcome, Halt> {
                    let output = state.output_path.apply(&output, &context, "OutputPath")?;
                    let mut details = json!({"output": output});
                    if let (Some(f), Value::Object(map)) = (caught, &mut details) {
                        map.insert("caught".into(), f.to_json());
                    }
                    self.event(&exited_kind(&state.kind), &path, details, 0);
                    Ok(Outcome { next, output })
                };
            match &state.kind {
                Kind::Pass {
                    result,
                    parameters,
                    result_path,
                } => {
                    let value = match (result, parameters) {
                        (Some(r), _) => r.clone(),
                        (None, Some(p)) => p.render(&effective, &context)?,
                        (None, None) => effective,
                    };
                    let merged = result_path.merge(raw, value)?;
                    exit(merged, state.next.clone(), None)
                }
                Kind::Choice { choices, default } => {
                    let next = choices
                        .iter()
                        .find(|(rule, _)| rule.holds(&effective, &context))
                        .map(|(_, next)| next.clone())
                        .or_else(|| default.clone())
                        .ok_or_else(|| {
                            Failure::new(
                                "States.NoChoiceMatched",
                                format!(
                                    "no choice rule matched {} and there is no Default",
                                    excerpt(&effective)
                                ),
                            )
                        })?;
                    exit(effective, Some(next), None)
                }
                Kind::Wait(how) => {
                    let wake = match how {
                        WaitFor::Seconds(s) => now_micros().saturating_add((s * 1e6) as i64),
                        WaitFor::SecondsPath(p) => {
                            let v = p.require(&effective, &context, "SecondsPath")?;
                            let s = v
                                .as_f64()
                                .filter(|s| *s >= 0.0 && *s <= 31_536_000.0)
                                .ok_or_else(|| {
                                    Failure::runtime(format!(
                                        "SecondsPath {:?} is {}, not a number of seconds",
                                        p.text(),
                                        excerpt(&v)
                                    ))
                                })?;
                            now_micros().saturating_add((s * 1e6) as i64)
                        }
                        WaitFor::Timestamp(t) => timestamp_micros(t)?,
                        WaitFor::TimestampPath(p) => {
                            let v = p.require(&effective, &context, "TimestampPath")?;
                            timestamp_micros(v.as_str().unwrap_or_default())?
                        }
                    };
                    // After a restart, the recorded wake time stands.
                    let wake = match &scope {
                        Scope::Top(c) => c.wake_micros.unwrap_or(wake),
                        Scope::Branch { .. } => wake,
                    };
                    self.event(
                        "WaitStarted",
                        &path,
                        json!({"wake": kit_values::rfc3339(wake)}),
                        0,
                    );
                    self.checkpoint(&scope, 0, Some(wake)).await?;
                    let left = u64::try_from(wake.saturating_sub(now_micros())).unwrap_or(0);
                    tokio::time::sleep(Duration::from_micros(left)).await;
                    exit(effective, state.next.clone(), None)
                }
                Kind::Succeed => exit(effective, None, None),
                Kind::Fail { error, cause } => {
                    let text = |t: &Option<Text>| -> Result<String, Failure> {
                        Ok(match t {
                            None => String::new(),
                            Some(Text::Literal(s)) => s.clone(),
                            Some(Text::Computed(expr)) => match expr.eval(&effective, &context)? {
                                Value::String(s) => s,
                                other => other.to_string(),
                            },
                        })
                    };
                    let failure = Failure::new(text(error)?, text(cause)?);
                    Err(Halt::Failed(failure))
                }
                Kind::Task(task) => {
                    let payload = match &task.parameters {
                        Some(p) => p.render(&effective, &context)?,
                        None => effective.clone(),
                    };
                    let attempts = |attempt: u32| {
                        let payload = payload.clone();
                        let scope = scope.clone();
                        let path = path.clone();
                        let idempotency_id = idempotency_id.clone();
                        // One span per attempt, its retry number an attribute.
                        let span = tracing::info_span!(
                            "workflow.task",
                            otel.name = %format!("task {path}"),
                            otel.status_code = tracing::field::Empty,
                            workflow.state = %path,
                            workflow.resource = %task.resource,
                            workflow.retry = i64::from(attempt),
                            workflow.error = tracing::field::Empty,
                        );
                        let attempt_span = span.clone();
                        async move {
                            self.event("TaskScheduled", &path, json!({"resource": task.resource, "parameters": payload, "timeoutSeconds": task.timeout.as_secs_f64()}), attempt);
                            self.event(
                                "TaskStarted",
                                &path,
                                json!({"idempotencyId": idempotency_id}),
                                attempt,
                            );
                            // Recorded before the call goes out.
                            self.checkpoint(&scope, attempt, None).await?;
                            let call = TaskCall {
                                method: task.method.clone(),
                                payload,
                                timeout: task.timeout,
                                idempotency_id,
                                correlation_id: self.correlation_id.clone(),
                            };
                            match self.engine.invoker.invoke(call).await {
                                Ok(output) => {
                                    self.event("TaskSucceeded", &path, json!({"output": output}), attempt);
                                    Ok(output)
                                }
                                Err(failure) => {
                                    let kind = if failure.error == "States.Timeout" {
                                        "TaskTimedOut"
                                    } else {
                                        "TaskFailed"
                                    };
                                    self.event(kind, &path, failure.to_json(), attempt);
                                    // In the log too, under the execution's
                                    // correlation id, where an operator looks.
                                    tracing::warn!(
                                        execution = %self.name,
                                        correlation_id = %self.correlation_id,
                                        state = %path,
                                        method = %task.method,
                                        attempt,
                                        error = %failure.error,
                                        cause = ?failure.cause,
                                        "task failed"
                                    );
                                    attempt_span.record("otel.status_code", "ERROR");
                                    attempt_span.record("workflow.error", failure.error.as_str());
                                    Err(Halt::Failed(failure))
                                }
                            }
                        }
                        .instrument(span)
                    };
                    let result = self
                        .with_retry(&task.handlers, first_attempt, &path, attempts)
                        .await;
                    self.handle_result(state, &path, raw, result, &context, exit)
                }
                Kind::Parallel(parallel) => {
                    let payload = match &parallel.parameters {
                        Some(p) => p.render(&effective, &context)?,
                        None => effective.clone(),
                    };
                    let attempts = |attempt: u32| {
                        let payload = payload.clone();
                        let path = path.clone();
                        async move {
                            self.event("ParallelStateStarted", &path, Value::Null, attempt);
                            let branches = parallel.branches.iter().enumerate().map(|(i, branch)| {
                                self.run_machine(branch, payload.clone(), format!("{path}/{i}/"), None)
                            });
                            let results = futures_util::future::join_all(branches).await;
                            let mut outputs = Vec::with_capacity(results.len());
                            for result in results {
                                match result {
                                    Ok(v) => outputs.push(v),
                                    Err(halt) => {
                                        if let Halt::Failed(f) = &halt {
                                            self.event("ParallelStateFailed", &path, f.to_json(), attempt);
                                        }
                                        return Err(halt);
                                    }
                                }
                            }
                            self.event("ParallelStateSucceeded", &path, Value::Null, attempt);
                            Ok(Value::Array(outputs))
                        }
                    };
                    let result = self
                        .with_retry(&parallel.handlers, first_attempt, &path, attempts)
                        .await;
                    self.handle_result(state, &path, raw, result, &context, exit)
                }
                Kind::Map(map) => {
                    let items = map.items_path.apply(&effective, &context, "ItemsPath")?;
                    let Value::Array(items) = items else {
                        return Err(Failure::runtime(format!(
                            "ItemsPath must select an array, not a {}",
                            kind_of(&items)
                        ))
                        .into());
                    };
                    let attempts = |attempt: u32| {
                        let items = items.clone();
                        let path = path.clone();
                        let effective = effective.clone();
                        async move {
                            self.event("MapStateStarted", &path, json!({"length": items.len()}), attempt);
                            let limit = if map.max_concurrency == 0 {
                                items.len().max(1)
                            } else {
                                map.max_concurrency
                            };
                            let runs = items.into_iter().enumerate().map(|(i, item)| {
                                let path = path.clone();
                                let effective = effective.clone();
                                async move {
                                    let input = match &map.item_selector {
                                        Some(selector) => {
                                            let mut ctx = self.context_base.clone();
                                            if let Value::Object(m) = &mut ctx {
                                                m.insert(
                                                    "Map".into(),
                                                    json!({"Item": {"Index": i, "Value": item}}),
                                                );
                                            }
                                            selector.render(&effective, &ctx)?
                                        }
                                        None => item.clone(),
                                    };
                                    let iteration = format!("{path}/{i}");
                                    self.event("MapIterationStarted", &iteration, Value::Null, 0);
                                    let out = self
                                        .run_machine(
                                            &map.processor,
                                            input,
                                            format!("{iteration}/"),
                                            Some((i, item)),
                                        )
                                        .await;
                                    match &out {
                                        Ok(_) => {
                                            self.event("MapIterationSucceeded", &iteration, Value::Null, 0)
                                        }
                                        Err(Halt::Failed(f)) => {
                                            self.event("MapIterationFailed", &iteration, f.to_json(), 0)
                                        }
                                        Err(Halt::Stopped) => {}
                                    }
                                    out
                                }
                            });
                            let results: Vec<Result<Value, Halt>> =
                                futures_util::stream::iter(runs).buffered(limit).collect().await;
                            let mut outputs = Vec::with_capacity(results.len());
                            for result in results {
                                match result {
                                    Ok(v) => outputs.push(v),
                                    Err(halt) => {
                                        if let Halt::Failed(f) = &halt {
                                            self.event("MapStateFailed", &path, f.to_json(), attempt);
                                        }
                                        return Err(halt);
                                    }
                                }
                            }
                            self.event("MapStateSucceeded", &path, Value::Null, attempt);
                            Ok(Value::Array(outputs))
                        }
                    };
                    let result = self
                        .with_retry(&map.handlers, first_attempt, &path, attempts)
                        .await;
                    self.handle_result(state, &path, raw, result, &context, exit)
                }
            }
        }
    }

    /// Repeats `attempt` as the Retry rules allow.
    async fn with_retry<'a, F, Fut>(
        &'a self,
        handlers: &'a Handlers,
        first_attempt: u32,
        path: &str,
        attempt_fn: F,
    ) -> Result<Value, Halt>
    where
        F: Fn(u32) -> Fut,
        Fut: Future<Output = Result<Value, Halt>>,
    {
        let mut counts = vec![0u32; handlers.retry.len()];
        // After a restart, count earlier attempts against the first matching rule.
        let mut attempt = first_attempt;
        if let Some(first) = counts.first_mut() {
            *first = first_attempt;
        }
        loop {
            match attempt_fn(attempt).await {
                Ok(v) => return Ok(v),
                Err(Halt::Failed(failure)) => {
                    let rule = handlers
                        .retry
                        .iter()
                        .enumerate()
                        .find(|(_, r)| r.errors.iter().any(|e| failure.matches(e)));
                    let Some((i, retrier)) = rule else {
                        return Err(Halt::Failed(failure));
                    };
                    if counts[i] >= retrier.max_attempts {
                        return Err(Halt::Failed(failure));
                    }
                    counts[i] += 1;
                    attempt += 1;
                    let delay = retrier.delay(counts[i]);
                    self.event(
                        "TaskRetryScheduled",
                        path,
                        json!({"error": failure.error, "delaySeconds": delay.as_secs_f64()}),
                        attempt,
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = until_stopped(self.stop.clone()) => return Err(Halt::Stopped),
                    }
                }
                Err(Halt::Stopped) => return Err(Halt::Stopped),
            }
        }
    }

    /// ResultSelector and ResultPath on success; Catch on failure.
    fn handle_result(
        &self,
        state: &State,
        path: &str,
        raw: Value,
        result: Result<Value, Halt>,
        context: &Value,
        exit: impl Fn(Value, Option<String>, Option<&Failure>) -> Result<Outcome, Halt>,
    ) -> Result<Outcome, Halt> {
        let Some(handlers) = state.kind.handlers() else {
            return Err(Halt::Failed(Failure::runtime(format!(
                "{} has no result handling",
                state.name
            ))));
        };
        match result {
            Ok(value) => {
                let selected = match &handlers.result_selector {
                    Some(selector) => selector.render(&value, context)?,
                    None => value,
                };
                let merged = handlers.result_path.merge(raw, selected)?;
                exit(merged, state.next.clone(), None)
            }
            Err(Halt::Failed(failure)) => {
                let Some(catcher) = handlers
                    .catch
                    .iter()
                    .find(|c| c.errors.iter().any(|e| failure.matches(e)))
                else {
                    return Err(Halt::Failed(failure));
                };
                let merged = catcher.result_path.merge(raw, failure.to_json())?;
                // The state's span says it failed and where the Catch went.
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("workflow.error", failure.error.as_str());
                span.record("workflow.caught_by", catcher.next.as_str());
                // OutputPath does not apply to a caught error's output.
                let mut details = json!({"output": merged});
                if let Value::Object(map) = &mut details {
                    map.insert("caught".into(), failure.to_json());
                    map.insert("next".into(), Value::String(catcher.next.clone()));
                }
                self.event(&exited_kind(&state.kind), path, details, 0);
                Ok(Outcome {
                    next: Some(catcher.next.clone()),
                    output: merged,
                })
            }
            Err(Halt::Stopped) => Err(Halt::Stopped),
        }
    }

    /// Runs a branch or a Map iteration to its end.
    fn run_machine<'a>(
        &'a self,
        machine: &'a Machine,
        input: Value,
        prefix: String,
        item: Option<(usize, Value)>,
    ) -> Pin<Box<dyn Future<Output = Result<Value, Halt>> + Send + 'a>> {
        Box::pin(async move {
            let mut entered: HashMap<&str, u32> = HashMap::new();
            let mut name = machine.start_at.as_str();
            let mut input = input;
            loop {
                let state = machine
                    .state(name)
                    .ok_or_else(|| Failure::runtime(format!("state {name:?} is not in the branch")))?;
                let ordinal = {
                    let n = entered.entry(name).or_insert(0);
                    *n += 1;
                    *n
                };
                self.event(
                    &entered_kind(&state.kind),
                    &format!("{prefix}{name}"),
                    json!({"input": input}),
                    0,
                );
                self.transitions.fetch_add(1, Ordering::Relaxed);
                let scope = Scope::Branch {
                    prefix: prefix.clone(),
                    item: item.clone(),
                };
                let outcome = self.run_state(scope, state, input, ordinal, 0).await?;
                match outcome.next {
                    Some(next) => {
                        name = machine.state(&next).map(|s| s.name.as_str()).ok_or_else(|| {
                            Failure::runtime(format!("state {next:?} is not in the branch"))
                        })?;
                        input = outcome.output;
                    }
                    None => return Ok(outcome.output),
                }
            }
        })
    }
}

fn timestamp_micros(text: &str) -> Result<i64, Failure> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| Failure::runtime(format!("{text:?} is not an RFC 3339 timestamp")))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| Failure::runtime("timestamp out of range"))
}
