//! StartExecution: checks, the pinned version, the first events, the launch.

use super::*;

impl WorkflowApi {
    /// Starts (or finds) an execution.
    pub(crate) async fn start(
        &self,
        request: pb::StartExecutionRequest,
    ) -> Result<execution::Model, WorkflowError> {
        let input = check_start(&request)?;
        let store = self.engine.store();
        let machine_row = store
            .machine(&request.state_machine_name, request.state_machine_version)
            .await?
            .ok_or_else(|| WorkflowError::NotFound {
                kind: "state machine",
                name: if request.state_machine_version > 0 {
                    format!(
                        "{} version {}",
                        request.state_machine_name, request.state_machine_version
                    )
                } else {
                    request.state_machine_name.clone()
                },
            })?;
        let machine = self
            .engine
            .machine(&machine_row.name, machine_row.version)
            .await
            .map_err(WorkflowError::Journal)?;
        let start = machine
            .state(&machine.start_at)
            .ok_or_else(|| WorkflowError::Journal("StartAt is not a state".into()))?;
        let now = now_micros();
        let cursor = Cursor {
            state: machine.start_at.clone(),
            input: input.clone(),
            attempt: 0,
            entered: [(machine.start_at.clone(), 1)].into_iter().collect(),
            wake_micros: None,
        };
        let mut carrier: HashMap<String, String> = HashMap::new();
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
        let correlation_id = kit::rpc_telemetry::current_call()
            .map(|c| c.correlation_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let row = execution::Model {
            name: request.execution_name.clone(),
            state_machine: machine_row.name.clone(),
            version: machine_row.version,
            status: status::RUNNING.to_string(),
            input: input.to_string(),
            output: String::new(),
            error: String::new(),
            cause: String::new(),
            start_micros: now,
            stop_micros: 0,
            current_state: machine.start_at.clone(),
            redrive_count: 0,
            transitions: 1,
            cursor: serde_json::to_string(&cursor).unwrap_or_default(),
            traceparent: carrier.remove("traceparent").unwrap_or_default(),
            correlation_id,
            // This replica starts it, under the first epoch.
            owner: self.engine.owner().to_string(),
            epoch: 1,
            attention: String::new(),
        };
        let event = |id: i64, kind: EventKind, state: &str, details: Value| event::Model {
            execution: request.execution_name.clone(),
            id,
            kind: kind.as_str().to_string(),
            micros: now,
            state_name: state.to_string(),
            details: details.to_string(),
            retry_attempt: 0,
            owner: row.owner.clone(),
            epoch: row.epoch,
        };
        let events = vec![
            event(
                1,
                EventKind::ExecutionStarted,
                "",
                json!({"input": input, "stateMachine": machine_row.name, "version": machine_row.version}),
            ),
            event(
                2,
                EventKind::entered(&start.kind),
                &start.name,
                json!({"input": input}),
            ),
        ];
        // Written and launched on a task of its own: a caller that gives up
        // (its deadline passes) drops this handler, and an execution
        // committed but never launched would wait for someone to take it up.
        let engine = self.engine.clone();
        let started = row.clone();
        let applied = tokio::spawn(async move {
            let applied = engine
                .journal()
                .write(Write {
                    insert: Some(started.clone()),
                    execution: started.name.clone(),
                    events,
                    update: None,
                })
                .await?;
            if applied == Applied::Yes {
                tracing::info!(execution = %started.name, state_machine = %started.state_machine, version = started.version, "execution started");
                // Its first two events are written: ExecutionStarted and the first state's entry.
                engine.launch(started, false, Some(2));
            }
            Ok::<_, String>(applied)
        })
        .await
        .map_err(|e| WorkflowError::Journal(e.to_string()))?
        .map_err(WorkflowError::Journal)?;
        if applied == Applied::Yes {
            return Ok(row);
        }
        let existing = self.fresh(&request.execution_name).await?;
        same_or_refused(existing, &request.execution_name, &machine_row.name, &input)
    }
}

/// The request's names, version and input, checked; the input as JSON.
fn check_start(request: &pb::StartExecutionRequest) -> Result<Value, WorkflowError> {
    let mut v = Violations::new();
    check_name("state_machine_name", &request.state_machine_name, &mut v);
    check_name("execution_name", &request.execution_name, &mut v);
    if request.state_machine_version < 0 {
        v.add(
            "state_machine_version",
            "must be 0 (the latest) or a version number",
        );
    }
    let input_text = if request.input.trim().is_empty() {
        "{}"
    } else {
        request.input.as_str()
    };
    if input_text.len() > MAX_INPUT_BYTES {
        v.add(
            "input",
            format!("is {} bytes; at most {MAX_INPUT_BYTES}", input_text.len()),
        );
    }
    let input: Option<Value> = match serde_json::from_str::<Value>(input_text) {
        Ok(value @ Value::Object(_)) => Some(value),
        Ok(_) => {
            v.add("input", "must be a JSON object, e.g. {\"order_id\": \"ord-1\"}");
            None
        }
        Err(e) => {
            v.add("input", format!("is not JSON: {e}"));
            None
        }
    };
    v.into_result(())?;
    Ok(input.unwrap_or_default())
}

/// A start that found an execution of that name already: the same one
/// (same state machine, same input) is answered; anything else is refused.
fn same_or_refused(
    existing: execution::Model,
    name: &str,
    machine: &str,
    input: &Value,
) -> Result<execution::Model, WorkflowError> {
    let same_input = serde_json::from_str::<Value>(&existing.input).ok().as_ref() == Some(input);
    if existing.state_machine == machine && same_input {
        return Ok(existing);
    }
    Err(WorkflowError::Exists(format!(
        "execution {name:?} already exists with {}; choose another name",
        if existing.state_machine != machine {
            format!("state machine {:?}", existing.state_machine)
        } else {
            "another input".to_string()
        }
    )))
}
