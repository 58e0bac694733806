//! A run's journal: the events it records, the checkpoints and the end of
//! the execution, each written under the run's lease epoch.

use super::*;

impl Run {
    pub(super) fn event(&self, kind: EventKind, state: &str, details: Value, retry: u32) {
        let id = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let row = event::Model {
            execution: self.name.clone(),
            id,
            kind: kind.as_str().to_string(),
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
    pub(super) async fn flush(&self, mut update: Update) -> Result<(), Halt> {
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
    pub(super) async fn checkpoint(
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

    pub(super) async fn finish(
        &self,
        cursor: &Cursor,
        to: &'static str,
        kind: EventKind,
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
    pub(super) fn unhandled(&self, state_machine: &str, state: &str, failure: &Failure) -> String {
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

    pub(super) async fn finish_failed(
        &self,
        cursor: &Cursor,
        failure: Failure,
        attention: Option<String>,
    ) -> Result<(), String> {
        self.finish(
            cursor,
            status::FAILED,
            EventKind::ExecutionFailed,
            None,
            Some(failure),
            attention,
        )
        .await
    }

    pub(super) fn context(&self, scope: &Scope<'_>, state: &str, retry: u32, idempotency_id: &str) -> Value {
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
}
