//! Parallel and Map: branches or iterations run as machines of their own,
//! their outputs gathered in order, the first failure failing the state.

use super::states::Entry;
use super::*;
use crate::asl::{MapState, Parallel};

impl Run {
    /// A Parallel state, with its Retry.
    pub(super) async fn parallel(
        &self,
        entry: &Entry<'_>,
        parallel: &Parallel,
        payload: Value,
    ) -> Result<Value, Halt> {
        let path = &entry.path;
        let attempt = |attempt: u32| {
            let payload = payload.clone();
            async move {
                self.event(EventKind::ParallelStateStarted, path, Value::Null, attempt);
                let branches = parallel.branches.iter().enumerate().map(|(i, branch)| {
                    self.run_machine(branch, payload.clone(), format!("{path}/{i}/"), None)
                });
                let results = futures_util::future::join_all(branches).await;
                let outcome = (EventKind::ParallelStateSucceeded, EventKind::ParallelStateFailed);
                self.gather(results, path, attempt, outcome)
            }
        };
        self.with_retry(&parallel.handlers, entry.first_attempt, path, attempt)
            .await
    }

    /// A Map state, with its Retry.
    pub(super) async fn map(
        &self,
        entry: &Entry<'_>,
        map: &MapState,
        items: Vec<Value>,
    ) -> Result<Value, Halt> {
        let path = &entry.path;
        let attempt = |attempt: u32| {
            let items = items.clone();
            async move {
                let started = json!({"length": items.len()});
                self.event(EventKind::MapStateStarted, path, started, attempt);
                let limit = match map.max_concurrency {
                    0 => items.len().max(1),
                    n => n,
                };
                let runs = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| self.map_iteration(entry, map, i, item));
                let results: Vec<Result<Value, Halt>> =
                    futures_util::stream::iter(runs).buffered(limit).collect().await;
                let outcome = (EventKind::MapStateSucceeded, EventKind::MapStateFailed);
                self.gather(results, path, attempt, outcome)
            }
        };
        self.with_retry(&map.handlers, entry.first_attempt, path, attempt)
            .await
    }

    /// One item of a Map state through its processor.
    async fn map_iteration(
        &self,
        entry: &Entry<'_>,
        map: &MapState,
        i: usize,
        item: Value,
    ) -> Result<Value, Halt> {
        let input = match &map.item_selector {
            Some(selector) => {
                let mut ctx = self.context_base.clone();
                if let Value::Object(m) = &mut ctx {
                    m.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                }
                selector.render(&entry.effective, &ctx)?
            }
            None => item.clone(),
        };
        let iteration = format!("{}/{i}", entry.path);
        self.event(EventKind::MapIterationStarted, &iteration, Value::Null, 0);
        let out = self
            .run_machine(&map.processor, input, format!("{iteration}/"), Some((i, item)))
            .await;
        match &out {
            Ok(_) => self.event(EventKind::MapIterationSucceeded, &iteration, Value::Null, 0),
            Err(Halt::Failed(f)) => self.event(EventKind::MapIterationFailed, &iteration, f.to_json(), 0),
            Err(Halt::Stopped) => {}
        }
        out
    }

    /// The outputs in order, or the first branch's or iteration's halt;
    /// records which as `(succeeded, failed)`.
    fn gather(
        &self,
        results: Vec<Result<Value, Halt>>,
        path: &str,
        attempt: u32,
        (succeeded, failed): (EventKind, EventKind),
    ) -> Result<Value, Halt> {
        let mut outputs = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(v) => outputs.push(v),
                Err(halt) => {
                    if let Halt::Failed(f) = &halt {
                        self.event(failed, path, f.to_json(), attempt);
                    }
                    return Err(halt);
                }
            }
        }
        self.event(succeeded, path, Value::Null, attempt);
        Ok(Value::Array(outputs))
    }

    /// Runs a branch or a Map iteration to its end.
    pub(super) fn run_machine<'a>(
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
                    EventKind::entered(&state.kind),
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
