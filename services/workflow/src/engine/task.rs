//! A Task state's attempt: the call, recorded before it goes out and after
//! it answers, in a span of its own.

use super::states::Entry;
use super::*;
use crate::asl::Task;

impl Run {
    /// One attempt of a Task state's call.
    pub(super) async fn task_attempt(
        &self,
        entry: &Entry<'_>,
        task: &Task,
        payload: Value,
        attempt: u32,
    ) -> Result<Value, Halt> {
        let path = &entry.path;
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
        self.call_task(entry, task, payload, attempt)
            .instrument(span.clone())
            .await
            .inspect_err(|halt| {
                if let Halt::Failed(failure) = halt {
                    span.record("otel.status_code", "ERROR");
                    span.record("workflow.error", failure.error.as_str());
                }
            })
    }

    async fn call_task(
        &self,
        entry: &Entry<'_>,
        task: &Task,
        payload: Value,
        attempt: u32,
    ) -> Result<Value, Halt> {
        let path = &entry.path;
        let scheduled = json!({
            "resource": task.resource,
            "parameters": payload,
            "timeoutSeconds": task.timeout.as_secs_f64(),
        });
        self.event(EventKind::TaskScheduled, path, scheduled, attempt);
        let started = json!({"idempotencyId": entry.idempotency_id});
        self.event(EventKind::TaskStarted, path, started, attempt);
        // Recorded before the call goes out.
        self.checkpoint(&entry.scope, attempt, None).await?;
        let call = TaskCall {
            method: task.method.clone(),
            payload,
            timeout: task.timeout,
            idempotency_id: entry.idempotency_id.clone(),
            correlation_id: self.correlation_id.clone(),
        };
        match self.engine.invoker.invoke(call).await {
            Ok(output) => {
                self.event(EventKind::TaskSucceeded, path, json!({"output": output}), attempt);
                Ok(output)
            }
            Err(failure) => {
                let kind = if failure.error == "States.Timeout" {
                    EventKind::TaskTimedOut
                } else {
                    EventKind::TaskFailed
                };
                self.event(kind, path, failure.to_json(), attempt);
                // In the log too, under the execution's correlation id,
                // where an operator looks.
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
                Err(Halt::Failed(failure))
            }
        }
    }
}
