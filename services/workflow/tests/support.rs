//! Starts workflow on a fresh database with a scripted task invoker.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kit_testing::{TestDatabase, TestServer};
use serde_json::{Value, json};
use tonic::transport::Channel;
use workflow::engine::{Invoker, TaskCall};
use workflow::errors::Failure;
use workflow::pb::ferrymesh::workflow::v1 as pb;
use workflow::pb::ferrymesh::workflow::v1::workflow_service_client::WorkflowServiceClient;

/// Answers tasks by method, as a script says, and remembers every call.
#[derive(Default)]
pub(crate) struct Script {
    pub(crate) calls: Mutex<Vec<TaskCall>>,
}

/// The invoker the engine holds: the shared script.
pub(crate) struct Scripted(pub(crate) Arc<Script>);

impl Invoker for Scripted {
    fn invoke(&self, call: TaskCall) -> Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send>> {
        let script = self.0.clone();
        Box::pin(async move {
            let attempts = {
                let mut calls = script.calls.lock().unwrap();
                calls.push(call.clone());
                calls
                    .iter()
                    .filter(|c| c.idempotency_id == call.idempotency_id)
                    .count()
            };
            let p = &call.payload;
            match call.method.as_str() {
                // Names the product after its id.
                "/ferrymesh.catalog.v1.CatalogService/GetProduct" => {
                    let id = p["product_id"].as_str().unwrap_or_default().to_string();
                    match id.as_str() {
                        "flaky" if attempts < 3 => Err(Failure::new("UNAVAILABLE", "try again")),
                        "refused" => Err(Failure::new("FAILED_PRECONDITION", "no such thing")),
                        // In flight long enough for a test to take its lease away.
                        "held" => {
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                            Ok(json!({"product": {"product_id": id}}))
                        }
                        "slow" => {
                            tokio::time::sleep(call.timeout + Duration::from_millis(50)).await;
                            Err(Failure::new("States.Timeout", "too slow"))
                        }
                        _ => Ok(json!({"product": {"product_id": id, "name": id.to_uppercase()}})),
                    }
                }
                _ => Ok(json!({})),
            }
        })
    }
}

pub(crate) struct Workflow {
    pub(crate) server: TestServer,
    pub(crate) client: WorkflowServiceClient<Channel>,
    pub(crate) script: Arc<Script>,
}

impl Workflow {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let script = Arc::new(Script::default());
        let invoker: Arc<dyn Invoker> = Arc::new(Scripted(script.clone()));
        let server = TestServer::start::<workflow::migrations::Migrator>(db, async |conn, args| {
            let config = workflow::Config {
                server: args.clone(),
                endpoints: Vec::new(),
                replica: None,
                lease_seconds: 2,
            };
            workflow::service_with(conn, invoker, &config).await
        })
        .await;
        let client = WorkflowServiceClient::new(server.channel().await);
        Workflow {
            server,
            client,
            script,
        }
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    pub(crate) fn client(&self) -> WorkflowServiceClient<Channel> {
        self.client.clone()
    }

    pub(crate) async fn create(
        &self,
        name: &str,
        definition: &Value,
    ) -> Result<pb::StateMachine, tonic::Status> {
        self.client()
            .create_state_machine(pb::CreateStateMachineRequest {
                name: name.into(),
                definition: definition.to_string(),
                description: String::new(),
            })
            .await
            .map(|r| r.into_inner().state_machine.unwrap())
    }

    pub(crate) async fn start_execution(
        &self,
        machine: &str,
        name: &str,
        input: Value,
    ) -> Result<pb::Execution, tonic::Status> {
        self.client()
            .start_execution(pb::StartExecutionRequest {
                state_machine_name: machine.into(),
                execution_name: name.into(),
                input: input.to_string(),
                state_machine_version: 0,
            })
            .await
            .map(|r| r.into_inner().execution.unwrap())
    }

    pub(crate) async fn describe(&self, name: &str) -> pb::Execution {
        self.client()
            .describe_execution(pb::DescribeExecutionRequest {
                execution_name: name.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .execution
            .unwrap()
    }

    /// Waits until the execution is no longer RUNNING.
    pub(crate) async fn finished(&self, name: &str) -> pb::Execution {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let e = self.describe(name).await;
            if e.status != pb::ExecutionStatus::Running as i32 {
                return e;
            }
            assert!(Instant::now() < deadline, "still running: {e:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn history(&self, name: &str) -> Vec<pb::HistoryEvent> {
        self.client()
            .get_execution_history(pb::GetExecutionHistoryRequest {
                execution_name: name.into(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .events
    }
}
