//! `ferrymesh workflow list|describe|history|graph`: read executions from
//! the workflow service, as a terminal user wants them.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use workflow::pb::ferrymesh::workflow::v1 as pb;
use workflow::pb::ferrymesh::workflow::v1::workflow_service_client::WorkflowServiceClient;

/// Flags of `ferrymesh workflow`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkflowArgs {
    /// Where the workflow service listens.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:50056",
        env = "FERRYMESH_WORKFLOW_URL",
        global = true
    )]
    address: String,
    #[command(flatten)]
    certs: crate::mesh::OperatorCerts,
    #[command(subcommand)]
    command: WorkflowCommand,
}

/// Flags of `ferrymesh workflow list`.
#[derive(Debug, Clone, clap::Args)]
struct ListArgs {
    /// Only this state machine's.
    #[arg(long, value_name = "NAME")]
    state_machine: Option<String>,
    /// Only in this status: running, succeeded, failed, timed-out, aborted.
    #[arg(long, value_enum)]
    status: Option<Status>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Only those that need an operator (failed where nothing planned it), with why.
    #[arg(long)]
    needs_attention: bool,
    /// Only those whose name starts so (an order's execution is named by its id).
    #[arg(long, value_name = "PREFIX")]
    name: Option<String>,
    /// Only those that failed with this error (e.g. FAILED_PRECONDITION).
    #[arg(long, value_name = "ERROR")]
    error: Option<String>,
    /// Only those at (or ended at) this state.
    #[arg(long = "at-state", value_name = "STATE")]
    at_state: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
enum WorkflowCommand {
    /// Executions, newest first.
    List(ListArgs),
    /// One execution: status, states, input and output.
    Describe {
        /// The execution's name (an order's id for the place-order saga).
        execution: String,
    },
    /// The events of an execution, oldest first.
    History {
        /// The execution's name.
        execution: String,
        /// Print each event's details in full, not cut to one line.
        #[arg(long)]
        full: bool,
    },
    /// The execution's state machine, each state coloured by what happened.
    Graph {
        /// The execution's name.
        execution: String,
        /// What to draw.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
        /// Write to this file instead of printing.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Status {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Svg,
    Mermaid,
    Dot,
}

pub(crate) async fn run(args: WorkflowArgs) -> ExitCode {
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ferrymesh workflow: {message}");
            ExitCode::FAILURE
        }
    }
}

fn status_name(status: i32) -> &'static str {
    match pb::ExecutionStatus::try_from(status) {
        Ok(pb::ExecutionStatus::Running) => "RUNNING",
        Ok(pb::ExecutionStatus::Succeeded) => "SUCCEEDED",
        Ok(pb::ExecutionStatus::Failed) => "FAILED",
        Ok(pb::ExecutionStatus::TimedOut) => "TIMED_OUT",
        Ok(pb::ExecutionStatus::Aborted) => "ABORTED",
        _ => "UNKNOWN",
    }
}

fn time_text(t: Option<&prost_types::Timestamp>) -> String {
    t.map(|t| {
        kit_values::rfc3339(
            t.seconds
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(t.nanos / 1000)),
        )
    })
    .unwrap_or_else(|| "-".into())
}

fn micros(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map(|t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos / 1000))
    })
    .unwrap_or(0)
}

fn describe_status(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

async fn execute(args: WorkflowArgs) -> Result<(), String> {
    let channel = crate::mesh::connect(&args.address, &args.certs.certs).await?;
    let mut client = WorkflowServiceClient::new(channel);
    let mut out = std::io::stdout().lock();
    match args.command {
        WorkflowCommand::List(list) => list_executions(&mut client, &mut out, list).await?,
        WorkflowCommand::Describe { execution } => {
            let e = client
                .describe_execution(pb::DescribeExecutionRequest {
                    execution_name: execution,
                })
                .await
                .map_err(describe_status)?
                .into_inner()
                .execution
                .ok_or("workflow answered without the execution")?;
            let pretty = |text: &str| {
                serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .unwrap_or_else(|| text.to_string())
            };
            let _ = writeln!(out, "execution:      {}", e.execution_name);
            let _ = writeln!(
                out,
                "state machine:  {} version {}",
                e.state_machine_name, e.state_machine_version
            );
            let _ = writeln!(out, "status:         {}", status_name(e.status));
            let _ = writeln!(out, "current state:  {}", e.current_state);
            let _ = writeln!(out, "started:        {}", time_text(e.start_time.as_ref()));
            let _ = writeln!(out, "stopped:        {}", time_text(e.stop_time.as_ref()));
            let _ = writeln!(out, "transitions:    {}", e.transition_count);
            let _ = writeln!(out, "redrives:       {}", e.redrive_count);
            if !e.error.is_empty() {
                let _ = writeln!(out, "error:          {}", e.error);
                let _ = writeln!(out, "cause:          {}", e.cause);
            }
            let _ = writeln!(out, "input:\n{}", pretty(&e.input));
            if !e.output.is_empty() {
                let _ = writeln!(out, "output:\n{}", pretty(&e.output));
            }
        }
        WorkflowCommand::History { execution, full } => {
            let mut token = String::new();
            let mut first: Option<i64> = None;
            let _ = writeln!(
                out,
                "{:>4} {:>9}  {:<24} {:<22} {:>5}  DETAILS",
                "ID", "AT (ms)", "TYPE", "STATE", "RETRY"
            );
            loop {
                let page = client
                    .get_execution_history(pb::GetExecutionHistoryRequest {
                        execution_name: execution.clone(),
                        page_size: 1000,
                        page_token: token.clone(),
                    })
                    .await
                    .map_err(describe_status)?
                    .into_inner();
                for e in &page.events {
                    let at = micros(e.timestamp.as_ref());
                    let start = *first.get_or_insert(at);
                    let mut details = e.details.clone();
                    if !full && details.chars().count() > 80 {
                        details = details.chars().take(79).collect::<String>() + "…";
                    }
                    let _ = writeln!(
                        out,
                        "{:>4} {:>9.1}  {:<24} {:<22} {:>5}  {}",
                        e.id,
                        (at - start) as f64 / 1000.0,
                        e.type_name,
                        e.state_name,
                        e.retry_attempt,
                        details
                    );
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
        }
        WorkflowCommand::Graph {
            execution,
            format,
            output,
        } => {
            let graph = client
                .get_execution_graph(pb::GetExecutionGraphRequest {
                    execution_name: execution,
                })
                .await
                .map_err(describe_status)?
                .into_inner();
            let text = match format {
                GraphFormat::Svg => graph.svg,
                GraphFormat::Mermaid => graph.mermaid,
                GraphFormat::Dot => graph.dot,
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    let _ = writeln!(out, "wrote {}", path.display());
                }
                None => {
                    let _ = write!(out, "{text}");
                }
            }
        }
    }
    Ok(())
}

/// `ferrymesh workflow list`: executions newest first, a page at a time.
async fn list_executions(
    client: &mut WorkflowServiceClient<tonic::transport::Channel>,
    out: &mut impl std::io::Write,
    ListArgs {
        state_machine,
        status,
        limit,
        needs_attention,
        name,
        error,
        at_state,
    }: ListArgs,
) -> Result<(), String> {
    let status = status.map(|s| match s {
        Status::Running => pb::ExecutionStatus::Running,
        Status::Succeeded => pb::ExecutionStatus::Succeeded,
        Status::Failed => pb::ExecutionStatus::Failed,
        Status::TimedOut => pb::ExecutionStatus::TimedOut,
        Status::Aborted => pb::ExecutionStatus::Aborted,
    });
    let mut token = String::new();
    let mut shown = 0;
    let _ = writeln!(
        out,
        "{:<38} {:<10} {:<16} {:<28} CURRENT STATE",
        "EXECUTION", "STATUS", "STATE MACHINE", "STARTED"
    );
    while shown < limit {
        let page = client
            .list_executions(pb::ListExecutionsRequest {
                state_machine_name: state_machine.clone().unwrap_or_default(),
                status: status.map_or(0, |s| s as i32),
                page_size: i32::try_from((limit - shown).min(100)).unwrap_or(100),
                page_token: token.clone(),
                state_machine_version: 0,
                needs_attention,
                name_prefix: name.clone().unwrap_or_default(),
                error: error.clone().unwrap_or_default(),
                current_state: at_state.clone().unwrap_or_default(),
            })
            .await
            .map_err(describe_status)?
            .into_inner();
        for e in &page.executions {
            let _ = writeln!(
                out,
                "{:<38} {:<10} {:<16} {:<28} {}",
                e.execution_name,
                status_name(e.status),
                format!("{}:{}", e.state_machine_name, e.state_machine_version),
                time_text(e.start_time.as_ref()),
                e.current_state
            );
            if !e.attention.is_empty() {
                let _ = writeln!(out, "  needs an operator: it {}", e.attention);
            }
        }
        shown += page.executions.len();
        if page.next_page_token.is_empty() || page.executions.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    Ok(())
}
