//! Running states: each kind of state to its outcome, with Retry and Catch,
//! and a machine (or a Parallel branch, or a Map iteration) state by state.

use super::*;

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

    pub(super) async fn run_state_inner(
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
    pub(super) fn handle_result(
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
