//! Running states: each kind of state to its outcome, with Retry and Catch,
//! and a machine (or a Parallel branch, or a Map iteration) state by state.

use super::*;
use crate::choice::Rule;

/// A state being run: where, with what input and context.
pub(super) struct Entry<'a> {
    pub(super) scope: Scope<'a>,
    pub(super) state: &'a State,
    /// The state's path (`Branch/0/State` inside a Parallel or Map).
    pub(super) path: String,
    /// The input as the state received it.
    pub(super) raw: Value,
    /// The input after InputPath.
    pub(super) effective: Value,
    /// `$$`.
    pub(super) context: Value,
    /// Stable across retries and restarts of this entry.
    pub(super) idempotency_id: String,
    pub(super) first_attempt: u32,
}

impl Run {
    /// Runs one state to its outcome, with its Retry and Catch.
    pub(super) fn run_state<'a>(
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
        let entry = Entry {
            scope,
            state,
            path,
            raw,
            effective,
            context,
            idempotency_id,
            first_attempt,
        };
        match &state.kind {
            Kind::Pass {
                result,
                parameters,
                result_path,
            } => {
                let value = match (result, parameters) {
                    (Some(r), _) => r.clone(),
                    (None, Some(p)) => p.render(&entry.effective, &entry.context)?,
                    (None, None) => entry.effective.clone(),
                };
                let merged = result_path.merge(entry.raw.clone(), value)?;
                self.exit(&entry, merged, state.next.clone())
            }
            Kind::Choice { choices, default } => {
                let next = choose(&entry, choices, default.as_ref())?;
                self.exit(&entry, entry.effective.clone(), Some(next))
            }
            Kind::Wait(how) => self.wait(&entry, how).await,
            Kind::Succeed => self.exit(&entry, entry.effective.clone(), None),
            Kind::Fail { error, cause } => {
                let text = |t: &Option<Text>| render_text(t.as_ref(), &entry);
                Err(Halt::Failed(Failure::new(text(error)?, text(cause)?)))
            }
            // A state's own input errors are not its Retry's or Catch's.
            Kind::Task(task) => {
                let payload = parameters(task.parameters.as_ref(), &entry)?;
                let result = self
                    .with_retry(&task.handlers, first_attempt, &entry.path, |attempt| {
                        self.task_attempt(&entry, task, payload.clone(), attempt)
                    })
                    .await;
                self.handle_result(&entry, result)
            }
            Kind::Parallel(parallel) => {
                let payload = parameters(parallel.parameters.as_ref(), &entry)?;
                let result = self.parallel(&entry, parallel, payload).await;
                self.handle_result(&entry, result)
            }
            Kind::Map(map) => {
                let items = map_items(&entry, map)?;
                let result = self.map(&entry, map, items).await;
                self.handle_result(&entry, result)
            }
        }
    }

    /// Leaves the state with `output` (OutputPath applied) for `next`.
    pub(super) fn exit(
        &self,
        entry: &Entry<'_>,
        output: Value,
        next: Option<String>,
    ) -> Result<Outcome, Halt> {
        let output = entry
            .state
            .output_path
            .apply(&output, &entry.context, "OutputPath")?;
        self.event(
            EventKind::exited(&entry.state.kind),
            &entry.path,
            json!({"output": output}),
            0,
        );
        Ok(Outcome { next, output })
    }

    /// A Wait state: records its wake time, then sleeps until it.
    async fn wait(&self, entry: &Entry<'_>, how: &WaitFor) -> Result<Outcome, Halt> {
        let (effective, context) = (&entry.effective, &entry.context);
        let wake = match how {
            WaitFor::Seconds(s) => now_micros().saturating_add((s * 1e6) as i64),
            WaitFor::SecondsPath(p) => {
                let v = p.require(effective, context, "SecondsPath")?;
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
                let v = p.require(effective, context, "TimestampPath")?;
                timestamp_micros(v.as_str().unwrap_or_default())?
            }
        };
        // After a restart, the recorded wake time stands.
        let wake = match &entry.scope {
            Scope::Top(c) => c.wake_micros.unwrap_or(wake),
            Scope::Branch { .. } => wake,
        };
        self.event(
            EventKind::WaitStarted,
            &entry.path,
            json!({"wake": kit_values::rfc3339(wake)}),
            0,
        );
        self.checkpoint(&entry.scope, 0, Some(wake)).await?;
        let left = u64::try_from(wake.saturating_sub(now_micros())).unwrap_or(0);
        tokio::time::sleep(Duration::from_micros(left)).await;
        self.exit(entry, entry.effective.clone(), entry.state.next.clone())
    }

    /// Repeats `attempt` as the Retry rules allow.
    pub(super) async fn with_retry<'a, F, Fut>(
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
                        EventKind::TaskRetryScheduled,
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
    fn handle_result(&self, entry: &Entry<'_>, result: Result<Value, Halt>) -> Result<Outcome, Halt> {
        let state = entry.state;
        let Some(handlers) = state.kind.handlers() else {
            return Err(Halt::Failed(Failure::runtime(format!(
                "{} has no result handling",
                state.name
            ))));
        };
        match result {
            Ok(value) => {
                let selected = match &handlers.result_selector {
                    Some(selector) => selector.render(&value, &entry.context)?,
                    None => value,
                };
                let merged = handlers.result_path.merge(entry.raw.clone(), selected)?;
                self.exit(entry, merged, state.next.clone())
            }
            Err(Halt::Failed(failure)) => {
                let Some(catcher) = handlers
                    .catch
                    .iter()
                    .find(|c| c.errors.iter().any(|e| failure.matches(e)))
                else {
                    return Err(Halt::Failed(failure));
                };
                let merged = catcher.result_path.merge(entry.raw.clone(), failure.to_json())?;
                // The state's span says it failed and where the Catch went.
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("workflow.error", failure.error.as_str());
                span.record("workflow.caught_by", catcher.next.as_str());
                // OutputPath does not apply to a caught error's output.
                let details = json!({
                    "output": merged,
                    "caught": failure.to_json(),
                    "next": catcher.next,
                });
                self.event(EventKind::exited(&state.kind), &entry.path, details, 0);
                Ok(Outcome {
                    next: Some(catcher.next.clone()),
                    output: merged,
                })
            }
            Err(Halt::Stopped) => Err(Halt::Stopped),
        }
    }
}

/// The Choice rule that holds, or the Default.
fn choose(
    entry: &Entry<'_>,
    choices: &[(Rule, String)],
    default: Option<&String>,
) -> Result<String, Failure> {
    choices
        .iter()
        .find(|(rule, _)| rule.holds(&entry.effective, &entry.context))
        .map(|(_, next)| next.clone())
        .or_else(|| default.cloned())
        .ok_or_else(|| {
            Failure::new(
                "States.NoChoiceMatched",
                format!(
                    "no choice rule matched {} and there is no Default",
                    excerpt(&entry.effective)
                ),
            )
        })
}

/// A Task's or Parallel's Parameters over its input, or the input.
fn parameters(template: Option<&crate::path::Template>, entry: &Entry<'_>) -> Result<Value, Failure> {
    match template {
        Some(p) => p.render(&entry.effective, &entry.context),
        None => Ok(entry.effective.clone()),
    }
}

/// The array a Map state's ItemsPath selects.
fn map_items(entry: &Entry<'_>, map: &crate::asl::MapState) -> Result<Vec<Value>, Failure> {
    match map
        .items_path
        .apply(&entry.effective, &entry.context, "ItemsPath")?
    {
        Value::Array(items) => Ok(items),
        other => Err(Failure::runtime(format!(
            "ItemsPath must select an array, not a {}",
            kind_of(&other)
        ))),
    }
}

/// A Fail state's Error or Cause, literal or computed.
fn render_text(text: Option<&Text>, entry: &Entry<'_>) -> Result<String, Failure> {
    Ok(match text {
        None => String::new(),
        Some(Text::Literal(s)) => s.clone(),
        Some(Text::Computed(expr)) => match expr.eval(&entry.effective, &entry.context)? {
            Value::String(s) => s,
            other => other.to_string(),
        },
    })
}

fn timestamp_micros(text: &str) -> Result<i64, Failure> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| Failure::runtime(format!("{text:?} is not an RFC 3339 timestamp")))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| Failure::runtime("timestamp out of range"))
}
