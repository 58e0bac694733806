//! The workflow service: durable state machines in the Amazon States
//! Language whose Tasks call the mesh's gRPC methods by name, with versioned
//! definitions, execution history, redrive and drawn graphs. It knows no
//! domain: a service that owns a state machine registers it through
//! CreateStateMachine.

#![forbid(unsafe_code)]

pub mod api;
pub mod asl;
pub mod choice;
pub mod engine;
pub mod errors;
pub mod events;
pub mod graph;
pub mod graph_svg;
pub mod intrinsic;
pub mod invoke;
pub mod lease;
pub mod listing;
pub mod migrations;
pub mod path;
pub mod store;

use std::sync::Arc;

/// Generated code of the contracts this service serves.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));

    /// The encoded descriptor set of every contract of the mesh.
    pub const EVERY_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/ferrymesh_every_descriptor.bin"));
}

use pb::ferrymesh::workflow::v1::workflow_service_server::WorkflowServiceServer;

/// The workflow default port.
pub const DEFAULT_PORT: u16 = 50056;

/// The workflow flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "workflow",
    about = "ferrymesh workflow service: durable state machines in the Amazon States Language"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
    /// Where a contract package is served, as PACKAGE=URL, e.g.
    /// ferrymesh.catalog.v1=http://127.0.0.1:50051; repeat for each package
    /// a Task may call (in the environment, separate them with `;`).
    #[arg(long = "endpoint", value_name = "PACKAGE=URL", value_parser = parse_endpoint, value_delimiter = ';')]
    pub endpoints: Vec<(String, String)>,
    /// This replica's name in the executions' leases [default: the host and
    /// the port it serves]; unique among the replicas sharing a database.
    #[arg(long, value_parser = parse_replica)]
    pub replica: Option<String>,
    /// How long a replica may go without a heartbeat before the others take
    /// its executions over, in seconds (2 to 300).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_seconds: u64,
}

fn parse_replica(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 160 || !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "replica {text:?} must be 1 to 160 visible ASCII characters, e.g. workflow-0"
        ));
    }
    Ok(text.to_string())
}

fn parse_endpoint(text: &str) -> Result<(String, String), String> {
    let (package, url) = text.split_once('=').ok_or_else(|| {
        format!("endpoint `{text}` must be PACKAGE=URL, e.g. ferrymesh.catalog.v1=http://127.0.0.1:50051")
    })?;
    if package.is_empty() || !package.contains('.') {
        return Err(format!("endpoint `{text}` names no package before `=`"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "endpoint `{text}`: the URL must start with http:// or https://"
        ));
    }
    Ok((package.to_string(), url.to_string()))
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "workflow";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Opens (and migrates) the workflow database and builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let url = config.server.database_url("workflow");
    let db_pool = kit_store::Pool::new(config.server.db_pool_size, config.server.db_timeout);
    let db = kit_store::connect_and_migrate_with::<migrations::Migrator>(&url, db_pool).await?;
    let pool = invoke::every_contract()?;
    let invoker = Arc::new(invoke::GrpcInvoker::new(
        pool,
        &config.endpoints,
        kit::tls::MeshTls::from_args(&config.server.tls)?,
    )?);
    service_with(db, invoker, &config).await
}

/// Who may call workflow under mutual TLS (a deployment's call table, by
/// workload name): the service that owns the saga, registering it and
/// starting, reading and drawing its executions; the gateway, for the console's operations
/// view, and only for calls that carry the admin token (the gateway checks
/// it): reading executions and redriving them.
pub const CALLERS: kit::authz::Callers = &[
    (
        "orders",
        "ferrymesh.workflow.v1.WorkflowService/CreateStateMachine",
    ),
    (
        "orders",
        "ferrymesh.workflow.v1.WorkflowService/UpdateStateMachine",
    ),
    ("orders", "ferrymesh.workflow.v1.WorkflowService/StartExecution"),
    (
        "orders",
        "ferrymesh.workflow.v1.WorkflowService/DescribeExecution",
    ),
    (
        "orders",
        "ferrymesh.workflow.v1.WorkflowService/GetExecutionGraph",
    ),
    (
        "gateway",
        "ferrymesh.workflow.v1.WorkflowService/ListStateMachines",
    ),
    ("gateway", "ferrymesh.workflow.v1.WorkflowService/GetStateMachine"),
    ("gateway", "ferrymesh.workflow.v1.WorkflowService/ListExecutions"),
    (
        "gateway",
        "ferrymesh.workflow.v1.WorkflowService/DescribeExecution",
    ),
    (
        "gateway",
        "ferrymesh.workflow.v1.WorkflowService/GetExecutionHistory",
    ),
    (
        "gateway",
        "ferrymesh.workflow.v1.WorkflowService/GetExecutionGraph",
    ),
    (
        "gateway",
        "ferrymesh.workflow.v1.WorkflowService/RedriveExecution",
    ),
];

/// The service over an open, migrated database and a task invoker: resumes
/// every RUNNING execution this replica holds and takes its share of the
/// executions of replicas that went away.
pub async fn service_with(
    db: kit_store::Db,
    invoker: Arc<dyn engine::Invoker>,
    config: &Config,
) -> Result<kit::Service, kit::BoxError> {
    let methods = Arc::new(invoke::ContractMethods::new(invoke::every_contract()?));
    let parse_methods = methods.clone();
    let store = store::Store::new(db.clone());
    let journal = store::Journal::start(db);
    let owner = config
        .replica
        .clone()
        .unwrap_or_else(|| lease::default_owner(config.server.listen_addr(DEFAULT_PORT).port()));
    let engine = engine::Engine::new(
        owner,
        store,
        journal,
        invoker,
        Box::new(move |text| asl::parse(text, parse_methods.as_ref()).map_err(|e| e.to_string())),
    );
    let api = api::WorkflowApi::new(engine.clone(), methods);
    let resumed = lease::resume_own(&engine).await?;
    if resumed > 0 {
        tracing::info!(executions = resumed, "resumed running executions");
    }
    lease::spawn(
        engine.clone(),
        std::time::Duration::from_secs(config.lease_seconds),
    );
    tracing::info!(
        replica = engine.owner(),
        lease_seconds = config.lease_seconds,
        "holding executions through leases"
    );
    let max = config.server.max_message_bytes;
    let leaving = engine.clone();
    Ok(kit::Service::new("workflow")
        .on_stop(async move { lease::release(&leaving).await })
        .callers(CALLERS)
        .serving(
            WorkflowServiceServer::new(api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
