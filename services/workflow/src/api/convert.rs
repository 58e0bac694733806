//! Rows and engine values as the contract's messages.

use super::*;

pub(super) fn machine_to_pb(row: machine::Model) -> pb::StateMachine {
    pb::StateMachine {
        name: row.name,
        version: row.version,
        definition: row.definition,
        description: row.description,
        create_time: Some(timestamp(row.create_micros)),
    }
}

pub(crate) fn status_to_pb(text: &str) -> pb::ExecutionStatus {
    match text {
        status::RUNNING => pb::ExecutionStatus::Running,
        status::SUCCEEDED => pb::ExecutionStatus::Succeeded,
        status::FAILED => pb::ExecutionStatus::Failed,
        status::TIMED_OUT => pb::ExecutionStatus::TimedOut,
        status::ABORTED => pb::ExecutionStatus::Aborted,
        _ => pb::ExecutionStatus::Unspecified,
    }
}

pub(crate) fn execution_to_pb(row: execution::Model) -> pb::Execution {
    pb::Execution {
        execution_name: row.name,
        state_machine_name: row.state_machine,
        state_machine_version: row.version,
        status: status_to_pb(&row.status) as i32,
        input: row.input,
        output: row.output,
        error: row.error,
        cause: row.cause,
        start_time: Some(timestamp(row.start_micros)),
        stop_time: (row.stop_micros > 0).then(|| timestamp(row.stop_micros)),
        current_state: row.current_state,
        redrive_count: row.redrive_count,
        transition_count: row.transitions,
        attention: row.attention,
        // traceparent: version-traceid-spanid-flags.
        trace_id: row.traceparent.split('-').nth(1).unwrap_or_default().to_string(),
        correlation_id: row.correlation_id,
    }
}

/// The proto event type of a Step Functions event type name.
pub(super) fn event_type(kind: &str) -> pb::HistoryEventType {
    use EventKind as E;
    use pb::HistoryEventType as T;
    match EventKind::parse(kind) {
        Some(E::ExecutionStarted) => T::ExecutionStarted,
        Some(E::ExecutionSucceeded) => T::ExecutionSucceeded,
        Some(E::ExecutionFailed) => T::ExecutionFailed,
        Some(E::ExecutionTimedOut) => T::ExecutionTimedOut,
        Some(E::ExecutionAborted) => T::ExecutionAborted,
        Some(E::ExecutionRedriven) => T::ExecutionRedriven,
        Some(E::ExecutionResumed) => T::ExecutionResumed,
        Some(E::TaskStateEntered) => T::TaskStateEntered,
        Some(E::TaskStateExited) => T::TaskStateExited,
        Some(E::TaskScheduled) => T::TaskScheduled,
        Some(E::TaskStarted) => T::TaskStarted,
        Some(E::TaskSucceeded) => T::TaskSucceeded,
        Some(E::TaskFailed | E::TaskRetryScheduled) => T::TaskFailed,
        Some(E::TaskTimedOut) => T::TaskTimedOut,
        Some(E::ChoiceStateEntered) => T::ChoiceStateEntered,
        Some(E::ChoiceStateExited) => T::ChoiceStateExited,
        Some(E::PassStateEntered) => T::PassStateEntered,
        Some(E::PassStateExited) => T::PassStateExited,
        Some(E::WaitStateEntered | E::WaitStarted) => T::WaitStateEntered,
        Some(E::WaitStateExited) => T::WaitStateExited,
        Some(E::SucceedStateEntered) => T::SucceedStateEntered,
        Some(E::SucceedStateExited) => T::SucceedStateExited,
        Some(E::FailStateEntered) => T::FailStateEntered,
        Some(E::ParallelStateEntered) => T::ParallelStateEntered,
        Some(E::ParallelStateExited) => T::ParallelStateExited,
        Some(E::ParallelStateStarted) => T::ParallelStateStarted,
        Some(E::ParallelStateSucceeded) => T::ParallelStateSucceeded,
        Some(E::ParallelStateFailed) => T::ParallelStateFailed,
        Some(E::MapStateEntered) => T::MapStateEntered,
        Some(E::MapStateExited) => T::MapStateExited,
        Some(E::MapStateStarted) => T::MapStateStarted,
        Some(E::MapStateSucceeded) => T::MapStateSucceeded,
        Some(E::MapStateFailed) => T::MapStateFailed,
        Some(E::MapIterationStarted) => T::MapIterationStarted,
        Some(E::MapIterationSucceeded) => T::MapIterationSucceeded,
        Some(E::MapIterationFailed) => T::MapIterationFailed,
        Some(E::FailStateExited) | None => T::Unspecified,
    }
}

pub(super) fn event_to_pb(row: event::Model) -> pb::HistoryEvent {
    pb::HistoryEvent {
        id: row.id,
        r#type: event_type(&row.kind) as i32,
        timestamp: Some(timestamp(row.micros)),
        state_name: row.state_name,
        details: row.details,
        retry_attempt: row.retry_attempt,
        type_name: row.kind,
    }
}

pub(super) fn progress_to_pb(p: Progress) -> pb::StateProgress {
    match p {
        Progress::NotReached => pb::StateProgress::NotReached,
        Progress::InProgress => pb::StateProgress::InProgress,
        Progress::Succeeded => pb::StateProgress::Succeeded,
        Progress::Failed => pb::StateProgress::Failed,
        Progress::Caught => pb::StateProgress::Caught,
        Progress::Compensated => pb::StateProgress::Compensated,
        Progress::Compensation => pb::StateProgress::Compensation,
    }
}
