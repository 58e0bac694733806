//! The gRPC face of the workflow service: requests checked and turned into
//! engine and store calls, results turned into messages, errors into
//! statuses in one place.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tonic::{Request, Response, Status};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::asl::{self, Methods};
use crate::engine::{Cursor, Engine};
use crate::events::EventKind;
use crate::graph::{self, Progress};
use crate::pb::ferrymesh::workflow::v1 as pb;
use crate::pb::ferrymesh::workflow::v1::workflow_service_server::WorkflowService;
use crate::store::{Applied, Fence, Update, Write, event, execution, machine, status};
use kit_store::paging::PageRequest;
use kit_values::{Violations, now_micros, quoted, timestamp};

mod convert;
mod start;

use convert::{event_to_pb, machine_to_pb, progress_to_pb};
pub(crate) use convert::{execution_to_pb, status_to_pb};

/// Largest execution input, in bytes (Step Functions' limit).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// Largest definition, in bytes (Step Functions' limit).
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;

/// The workflow service's errors.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// Bad fields.
    #[error("{0}")]
    Invalid(Violations),
    /// A definition that does not hold.
    #[error("{0}")]
    Definition(asl::DefinitionError),
    /// Nothing by that name.
    #[error("{kind} {name} does not exist")]
    NotFound { kind: &'static str, name: String },
    /// The name is taken by something else.
    #[error("{0}")]
    Exists(String),
    /// Not in a state that allows it.
    #[error("{0}")]
    Precondition(String),
    /// The database failed.
    #[error("the workflow store failed: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// The journal failed.
    #[error("the workflow journal failed: {0}")]
    Journal(String),
}

impl From<Violations> for WorkflowError {
    fn from(v: Violations) -> Self {
        WorkflowError::Invalid(v)
    }
}

impl From<WorkflowError> for Status {
    fn from(error: WorkflowError) -> Status {
        match error {
            WorkflowError::Invalid(v) => v.into(),
            WorkflowError::Definition(e) => {
                let mut violations = Violations::new();
                violations.add("definition", e.to_string());
                let status: Status = violations.into();
                Status::with_details(
                    tonic::Code::InvalidArgument,
                    format!("the definition is refused: {e}"),
                    status.details().to_vec().into(),
                )
            }
            WorkflowError::NotFound { kind, name } => kit::error::not_found(kind, &name),
            WorkflowError::Exists(message) => Status::already_exists(message),
            WorkflowError::Precondition(message) => Status::failed_precondition(message),
            WorkflowError::Store(e) => kit::error::internal(&e),
            WorkflowError::Journal(e) => {
                Status::unavailable(format!("the workflow journal is unavailable: {e}"))
            }
        }
    }
}

/// Serves WorkflowService.
pub(crate) struct WorkflowApi {
    engine: Arc<Engine>,
    methods: Arc<dyn Methods + Send + Sync>,
}

impl WorkflowApi {
    pub(crate) fn new(engine: Arc<Engine>, methods: Arc<dyn Methods + Send + Sync>) -> Self {
        WorkflowApi { engine, methods }
    }
}

/// Checks a name: 1 to 80 letters, digits, '-' and '_'.
pub(crate) fn check_name(field: &str, text: &str, violations: &mut Violations) {
    if text.is_empty()
        || text.len() > 80
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        violations.add(
            field,
            format!(
                "must be 1 to 80 letters, digits, '-' or '_'; got {}",
                quoted(text)
            ),
        );
    }
}

impl WorkflowApi {
    fn parse_definition(&self, text: &str) -> Result<asl::Machine, WorkflowError> {
        if text.len() > MAX_DEFINITION_BYTES {
            let mut v = Violations::new();
            v.add(
                "definition",
                format!("is {} bytes; at most {MAX_DEFINITION_BYTES}", text.len()),
            );
            return Err(v.into());
        }
        asl::parse(text, self.methods.as_ref()).map_err(WorkflowError::Definition)
    }

    /// Registers or updates a state machine; shared by the RPCs and the built-in saga.
    pub(crate) async fn publish(
        &self,
        name: &str,
        definition: &str,
        description: &str,
        create_only: bool,
    ) -> Result<machine::Model, WorkflowError> {
        let mut v = Violations::new();
        check_name("name", name, &mut v);
        if description.chars().count() > 500 {
            v.add("description", "must be at most 500 characters");
        }
        v.into_result(())?;
        self.parse_definition(definition)?;
        let store = self.engine.store();
        loop {
            let latest = store.machine(name, 0).await?;
            let version = match &latest {
                Some(l) if l.definition == definition => return Ok(l.clone()),
                Some(l) if create_only => {
                    let _ = l;
                    return Err(WorkflowError::Exists(format!(
                        "state machine {name:?} exists with another definition; UpdateStateMachine publishes a new version"
                    )));
                }
                Some(l) => l.version + 1,
                None if !create_only => {
                    return Err(WorkflowError::NotFound {
                        kind: "state machine",
                        name: name.to_string(),
                    });
                }
                None => 1,
            };
            let description = match (&latest, description.is_empty()) {
                (Some(l), true) => l.description.clone(),
                _ => description.to_string(),
            };
            let row = machine::Model {
                name: name.to_string(),
                version,
                definition: definition.to_string(),
                description,
                create_micros: now_micros(),
            };
            // A concurrent publisher took this version: look again.
            if store.insert_machine(row.clone()).await? {
                tracing::info!(state_machine = name, version, "state machine version published");
                return Ok(row);
            }
        }
    }

    async fn execution(&self, name: &str) -> Result<execution::Model, WorkflowError> {
        let mut v = Violations::new();
        check_name("execution_name", name, &mut v);
        v.into_result(())?;
        self.engine
            .store()
            .execution(name)
            .await?
            .ok_or_else(|| WorkflowError::NotFound {
                kind: "execution",
                name: name.to_string(),
            })
    }

    /// An execution as just written, read from the writer.
    async fn fresh(&self, name: &str) -> Result<execution::Model, WorkflowError> {
        self.engine
            .store()
            .execution_fresh(name)
            .await?
            .ok_or_else(|| WorkflowError::Journal(format!("execution {name:?} vanished")))
    }

    /// An operator's change to an execution (stop, redrive), with its
    /// event: it takes the execution's lease for this replica, so whichever
    /// replica ran it records nothing more.
    async fn append(
        &self,
        name: &str,
        kind: EventKind,
        details: Value,
        mut update: Update,
    ) -> Result<Applied, WorkflowError> {
        update.fence = Some(Fence::Takes(self.engine.owner().to_string()));
        self.engine
            .journal()
            .write(Write {
                insert: None,
                execution: name.to_string(),
                events: vec![event::Model {
                    execution: name.to_string(),
                    // Numbered, and stamped with the new epoch, as it is written.
                    id: 0,
                    owner: String::new(),
                    epoch: 0,
                    kind: kind.as_str().to_string(),
                    micros: now_micros(),
                    state_name: String::new(),
                    details: details.to_string(),
                    retry_attempt: 0,
                }],
                update: Some(update),
            })
            .await
            .map_err(WorkflowError::Journal)
    }
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn create_state_machine(
        &self,
        request: Request<pb::CreateStateMachineRequest>,
    ) -> Result<Response<pb::CreateStateMachineResponse>, Status> {
        let r = request.into_inner();
        let row = self.publish(&r.name, &r.definition, &r.description, true).await?;
        Ok(Response::new(pb::CreateStateMachineResponse {
            state_machine: Some(machine_to_pb(row)),
        }))
    }

    async fn update_state_machine(
        &self,
        request: Request<pb::UpdateStateMachineRequest>,
    ) -> Result<Response<pb::UpdateStateMachineResponse>, Status> {
        let r = request.into_inner();
        let row = self
            .publish(&r.name, &r.definition, &r.description, false)
            .await?;
        Ok(Response::new(pb::UpdateStateMachineResponse {
            state_machine: Some(machine_to_pb(row)),
        }))
    }

    async fn get_state_machine(
        &self,
        request: Request<pb::GetStateMachineRequest>,
    ) -> Result<Response<pb::GetStateMachineResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        check_name("name", &r.name, &mut v);
        if r.version < 0 {
            v.add("version", "must be 0 (the latest) or a version number");
        }
        v.into_result(()).map_err(WorkflowError::from)?;
        let row = self
            .engine
            .store()
            .machine(&r.name, r.version)
            .await
            .map_err(WorkflowError::from)?
            .ok_or_else(|| WorkflowError::NotFound {
                kind: "state machine",
                name: if r.version > 0 {
                    format!("{} version {}", r.name, r.version)
                } else {
                    r.name.clone()
                },
            })?;
        Ok(Response::new(pb::GetStateMachineResponse {
            state_machine: Some(machine_to_pb(row)),
        }))
    }

    async fn list_state_machines(
        &self,
        request: Request<pb::ListStateMachinesRequest>,
    ) -> Result<Response<pb::ListStateMachinesResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        let page = PageRequest::parse(r.page_size, &r.page_token, "", &mut v);
        v.into_result(()).map_err(WorkflowError::from)?;
        let Some(page) = page else {
            return Err(Status::internal("page request missing"));
        };
        let mut rows = self
            .engine
            .store()
            .list_machines(page.after.as_deref(), u64::from(page.size))
            .await
            .map_err(WorkflowError::from)?;
        let next = page.finish(&mut rows, |r| r.name.clone());
        Ok(Response::new(pb::ListStateMachinesResponse {
            state_machines: rows.into_iter().map(machine_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn start_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let row = self.start(request.into_inner()).await?;
        kit::rpc_telemetry::record_execution_id(&row.name);
        Ok(Response::new(pb::StartExecutionResponse {
            execution: Some(execution_to_pb(row)),
        }))
    }

    async fn describe_execution(
        &self,
        request: Request<pb::DescribeExecutionRequest>,
    ) -> Result<Response<pb::DescribeExecutionResponse>, Status> {
        let row = self.execution(&request.into_inner().execution_name).await?;
        Ok(Response::new(pb::DescribeExecutionResponse {
            execution: Some(execution_to_pb(row)),
        }))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        crate::listing::list(self.engine.store(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn summarize_executions(
        &self,
        request: Request<pb::SummarizeExecutionsRequest>,
    ) -> Result<Response<pb::SummarizeExecutionsResponse>, Status> {
        crate::listing::summarize(self.engine.store(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_execution_history(
        &self,
        request: Request<pb::GetExecutionHistoryRequest>,
    ) -> Result<Response<pb::GetExecutionHistoryResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        check_name("execution_name", &r.execution_name, &mut v);
        let size = match r.page_size {
            0 => 100,
            n if (1..=1000).contains(&n) => n.unsigned_abs(),
            n => {
                v.add(
                    "page_size",
                    format!("must be between 0 and 1000 (0 means 100), got {n}"),
                );
                0
            }
        };
        // History pages run to 1000 events, past the usual 100.
        let page = PageRequest::parse(0, &r.page_token, &r.execution_name, &mut v).map(|mut p| {
            p.size = size;
            p
        });
        v.into_result(()).map_err(WorkflowError::from)?;
        let after = match page.as_ref().and_then(|p| p.after.clone()) {
            None => 0,
            Some(key) => key.parse::<i64>().unwrap_or(i64::MAX),
        };
        self.execution(&r.execution_name).await?;
        let mut rows = self
            .engine
            .store()
            .events(&r.execution_name, after, u64::from(size) + 1)
            .await
            .map_err(WorkflowError::from)?;
        let next = page
            .as_ref()
            .map(|p| p.finish(&mut rows, |e| e.id.to_string()))
            .unwrap_or_default();
        Ok(Response::new(pb::GetExecutionHistoryResponse {
            events: rows.into_iter().map(event_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn get_execution_graph(
        &self,
        request: Request<pb::GetExecutionGraphRequest>,
    ) -> Result<Response<pb::GetExecutionGraphResponse>, Status> {
        let row = self.execution(&request.into_inner().execution_name).await?;
        let machine = self
            .engine
            .machine(&row.state_machine, row.version)
            .await
            .map_err(WorkflowError::Journal)?;
        // Bounded: an execution's history for drawing, at most 100,000 events.
        let events = self
            .engine
            .store()
            .events(&row.name, 0, 100_000)
            .await
            .map_err(WorkflowError::from)?;
        let ended_badly = matches!(
            row.status.as_str(),
            status::FAILED | status::TIMED_OUT | status::ABORTED
        );
        let drawing = graph::build(&machine, &events, ended_badly);
        let svg = drawing
            .svg()
            .map_err(|e| Status::internal(format!("drawing failed: {e}")))?;
        Ok(Response::new(pb::GetExecutionGraphResponse {
            nodes: drawing
                .nodes
                .iter()
                .map(|n| pb::GraphNode {
                    name: n.name.clone(),
                    r#type: n.kind.to_string(),
                    progress: progress_to_pb(n.progress) as i32,
                    retries: i32::try_from(n.retries).unwrap_or(i32::MAX),
                    resource: n.resource.clone(),
                })
                .collect(),
            edges: drawing
                .edges
                .iter()
                .map(|e| pb::GraphEdge {
                    from: e.from.clone(),
                    to: e.to.clone(),
                    label: e.label.to_string(),
                    taken: e.taken,
                })
                .collect(),
            mermaid: drawing.mermaid(),
            dot: drawing.dot(),
            svg,
        }))
    }

    async fn stop_execution(
        &self,
        request: Request<pb::StopExecutionRequest>,
    ) -> Result<Response<pb::StopExecutionResponse>, Status> {
        let r = request.into_inner();
        let mut v = Violations::new();
        if r.error.chars().count() > 256 {
            v.add("error", "must be at most 256 characters");
        }
        if r.cause.chars().count() > 32_768 {
            v.add("cause", "must be at most 32768 characters");
        }
        v.into_result(()).map_err(WorkflowError::from)?;
        let row = self.execution(&r.execution_name).await?;
        if row.status == status::RUNNING {
            self.engine.stop(&row.name);
            let error = if r.error.is_empty() {
                "States.Aborted".to_string()
            } else {
                r.error
            };
            self.append(
                &row.name,
                EventKind::ExecutionAborted,
                json!({"Error": error, "Cause": r.cause}),
                Update {
                    status: Some(status::ABORTED),
                    error: Some(error.clone()),
                    cause: Some(r.cause.clone()),
                    stop_micros: Some(now_micros()),
                    ..Update::default()
                },
            )
            .await?;
            tracing::info!(execution = %row.name, "execution stopped");
        }
        let row = self.fresh(&row.name).await?;
        Ok(Response::new(pb::StopExecutionResponse {
            execution: Some(execution_to_pb(row)),
        }))
    }

    async fn redrive_execution(
        &self,
        request: Request<pb::RedriveExecutionRequest>,
    ) -> Result<Response<pb::RedriveExecutionResponse>, Status> {
        let row = self.execution(&request.into_inner().execution_name).await?;
        if !matches!(
            row.status.as_str(),
            status::FAILED | status::TIMED_OUT | status::ABORTED
        ) || self.engine.is_running(&row.name)
        {
            return Err(WorkflowError::Precondition(format!(
                "execution {:?} is {}; only a FAILED, TIMED_OUT or ABORTED execution can be redriven",
                row.name, row.status
            ))
            .into());
        }
        let cursor: Cursor = serde_json::from_str(&row.cursor).unwrap_or_default();
        let applied = self
            .append(
                &row.name,
                EventKind::ExecutionRedriven,
                json!({"state": cursor.state, "redriveCount": row.redrive_count + 1}),
                Update {
                    status: Some(status::RUNNING),
                    redrive: true,
                    ..Update::default()
                },
            )
            .await?;
        if applied == Applied::No {
            return Err(WorkflowError::Precondition(format!(
                "execution {:?} was redriven meanwhile",
                row.name
            ))
            .into());
        }
        let fresh = self.fresh(&row.name).await?;
        tracing::info!(execution = %row.name, state = %cursor.state, "execution redriven");
        self.engine.launch(fresh.clone(), false, None);
        Ok(Response::new(pb::RedriveExecutionResponse {
            execution: Some(execution_to_pb(fresh)),
        }))
    }
}
