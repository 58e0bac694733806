//! `ferrymesh up`: every service as its own process, health-checked, logs
//! prefixed, stopped together.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::UpArgs;
use crate::mesh::{MeshService, Role, SERVICES};
use crate::up_flags::{export_environment, tls_flags, upstream_flags};
use crate::up_process::{Spawn, stop, supervise};

struct Started {
    service: MeshService,
    addr: SocketAddr,
    child: Child,
    spec: Spawn,
}

/// Each service and the address it gets.
type Plan = Vec<(MeshService, SocketAddr)>;

pub(crate) async fn run(args: UpArgs) -> ExitCode {
    match start(&args).await {
        Ok(started) => supervise_until_signal(started).await,
        Err(error) => {
            eprintln!("ferrymesh: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts every service and waits until each is SERVING; on a failure,
/// stops what started.
async fn start(args: &UpArgs) -> Result<Vec<Started>, String> {
    let sink = args.trace_sink.then_some(&crate::mesh::TRACE_SINK);
    let plan: Plan = sink
        .into_iter()
        .chain(SERVICES.iter())
        .map(|s| {
            let port = s.port.saturating_add(args.port_offset);
            (*s, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        })
        .collect();
    check_ports(&plan)?;
    let setup = Setup::prepare(args, &plan).await?;
    let mut started: Vec<Started> = Vec::new();
    for (service, addr) in &plan {
        let spec = setup.spawn_spec(args, &plan, service, *addr);
        match spec.spawn() {
            Ok(child) => started.push(Started {
                service: *service,
                addr: *addr,
                child,
                spec,
            }),
            Err(error) => {
                stop_all(started).await;
                return Err(format!("cannot start {}: {error}", service.name));
            }
        }
    }
    if let Err(error) = wait_all_serving(args, &setup, &mut started).await {
        stop_all(started).await;
        return Err(error);
    }
    let ready: Vec<crate::up_ready::Ready> = started
        .iter()
        .map(|s| crate::up_ready::Ready {
            service: s.service,
            addr: s.addr,
            database_url: s
                .spec
                .upstreams
                .iter()
                .find_map(|f| f.strip_prefix("--database-url="))
                .map(str::to_string),
        })
        .collect();
    crate::up_ready::print(&ready, args);
    setup.start_audit(args, &plan);
    Ok(started)
}

/// Checks every port first, so a clash is reported before anything
/// starts. Each service's metrics are on its admin port.
fn check_ports(plan: &Plan) -> Result<(), String> {
    let taken: Vec<String> = plan
        .iter()
        .flat_map(|(s, addr)| {
            let admin = crate::mesh::admin_port(addr.port()).map(|p| SocketAddr::new(addr.ip(), p));
            std::iter::once((s, *addr)).chain(admin.map(|a| (s, a)))
        })
        .filter(|(_, addr)| TcpListener::bind(addr).is_err())
        .map(|(s, addr)| format!("{} needs {addr}", s.name))
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    Err(format!(
        "port taken: {}. Stop whatever listens there, or pass --port-offset N.",
        taken.join("; ")
    ))
}

/// What `up` makes before it starts a service, and what every service's
/// command line is made from.
struct Setup {
    exe: std::path::PathBuf,
    certs: std::path::PathBuf,
    scheme: &'static str,
    /// The gateway's configuration `up` wrote, unless one was passed.
    gateway_config: Option<std::path::PathBuf>,
    logs_dir: std::path::PathBuf,
    /// Service name to database URL, with `--postgres`.
    databases: std::collections::HashMap<&'static str, String>,
    /// Where telemetry goes (`OTEL_*`).
    exports: Vec<(String, String)>,
    /// The audit's report port, bound before anything starts.
    audit: Option<(tokio::net::TcpListener, SocketAddr)>,
}

impl Setup {
    async fn prepare(args: &UpArgs, plan: &Plan) -> Result<Setup, String> {
        std::fs::create_dir_all(&args.data_dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", args.data_dir.display()))?;
        let databases = crate::up_ready::postgres_databases(args, plan).await?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find its own executable: {e}"))?;
        let certs = args.data_dir.join("certs");
        if args.tls {
            crate::certs_cmd::init_default(&certs)
                .map_err(|e| format!("cannot make the mesh's certificates: {e}"))?;
        }
        let scheme = if args.tls { "https" } else { "http" };
        let gateway_config = write_gateway_config(args, plan, scheme)?;
        // Every service's output also goes to DATA_DIR/logs/NAME.log, begun
        // afresh by each `up`, for the console's search by correlation id.
        let logs_dir = args.data_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)
            .map_err(|e| format!("cannot create {}: {e}", logs_dir.display()))?;
        for (service, _) in plan {
            let _ = std::fs::remove_file(logs_dir.join(format!("{}.log", service.name)));
        }
        let audit = match args.audit_every {
            None => None,
            Some(_) => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9190u16.saturating_add(args.port_offset)));
                let listener = crate::audit_serve::bind_in_up(addr)
                    .await
                    .map_err(|e| format!("{e}; pass --port-offset N"))?;
                Some((listener, addr))
            }
        };
        Ok(Setup {
            exe,
            certs,
            scheme,
            gateway_config,
            logs_dir,
            databases,
            exports: export_environment(args, plan),
            audit,
        })
    }

    /// One service's command line and environment.
    fn spawn_spec(&self, args: &UpArgs, plan: &Plan, service: &MeshService, addr: SocketAddr) -> Spawn {
        let gateway = if service.role == Role::Gateway {
            self.gateway_flags(plan)
        } else {
            Vec::new()
        };
        // The sink passes spans on to the collector.
        let forward = match (service.role, &args.otlp_endpoint) {
            (Role::TraceSink, Some(url)) => Some(format!("--forward={url}")),
            _ => None,
        };
        let flags = upstream_flags(service, plan, self.scheme)
            .into_iter()
            .chain(
                self.databases
                    .get(service.name)
                    .map(|url| format!("--database-url={url}")),
            )
            .chain(tls_flags(args.tls, &self.certs, service))
            .chain(gateway)
            .chain(forward)
            .chain(
                args.pass
                    .iter()
                    .filter(|(s, _)| s == service.name)
                    .map(|(_, f)| f.clone()),
            )
            .collect();
        Spawn {
            exe: self.exe.clone(),
            service: *service,
            addr,
            data_dir: args.data_dir.clone(),
            log_format: match args.log_format {
                kit::LogFormat::Human => "human",
                kit::LogFormat::Json => "json",
            },
            environment: if service.traced() {
                self.exports.clone()
            } else {
                Vec::new()
            },
            upstreams: flags,
        }
    }

    /// The gateway's configuration, and the console's operations view:
    /// every scraped service's admin port, the logs, the audit.
    fn gateway_flags(&self, plan: &Plan) -> Vec<String> {
        let config = self
            .gateway_config
            .as_ref()
            .map(|path| format!("--config={}", path.display()));
        let metrics = plan.iter().filter(|(s, _)| s.scraped()).filter_map(|(s, addr)| {
            let admin = SocketAddr::new(addr.ip(), crate::mesh::admin_port(addr.port())?);
            Some(format!("--metrics-target={}=http://{admin}/metrics", s.name))
        });
        config
            .into_iter()
            .chain(metrics)
            .chain([format!("--logs-dir={}", self.logs_dir.display())])
            .chain(
                self.audit
                    .as_ref()
                    .map(|(_, addr)| format!("--audit-url=http://{addr}")),
            )
            .collect()
    }

    /// With `--audit-every`, the audit runs in `up` and serves its report.
    fn start_audit(self, args: &UpArgs, plan: &Plan) {
        let (Some((listener, audit_addr)), Some(every)) = (self.audit, args.audit_every) else {
            return;
        };
        let at = |name: &str| {
            plan.iter()
                .find(|(s, _)| s.name == name)
                .map(|(_, addr)| format!("{}://{addr}", self.scheme))
        };
        let urls = crate::audit_cmd::Urls {
            orders: at("orders"),
            workflow: at("workflow"),
            inventory: at("inventory"),
            payments: at("payments"),
            shipping: at("shipping"),
        };
        match crate::audit_cmd::mesh(&urls, args.port_offset, &self.certs) {
            Ok(mesh) => {
                crate::audit_serve::start_in_up(listener, mesh, every);
                println!(
                    "ferrymesh: auditing every {every:?}; the last report at http://{audit_addr}/report"
                );
            }
            Err(error) => eprintln!("ferrymesh: the audit cannot start: {error}"),
        }
    }
}

/// The gateway's routes point at this mesh's ports, so its file is written
/// afresh each time, unless one was passed. Where it is.
fn write_gateway_config(
    args: &UpArgs,
    plan: &Plan,
    scheme: &str,
) -> Result<Option<std::path::PathBuf>, String> {
    let own_config = args
        .pass
        .iter()
        .any(|(s, f)| s == "gateway" && f.starts_with("--config"));
    if own_config {
        return Ok(None);
    }
    let path = args.data_dir.join("gateway.toml");
    let addresses: Vec<(&str, String)> = crate::mesh::GATEWAY_ROUTES
        .iter()
        .filter_map(|(package, service)| {
            let (_, addr) = plan.iter().find(|(s, _)| s.name == *service)?;
            Some((*package, format!("{scheme}://{addr}")))
        })
        .collect();
    std::fs::write(&path, gateway::config::local_mesh(&addresses))
        .map_err(|e| format!("cannot write the gateway's configuration {}: {e}", path.display()))?;
    Ok(Some(path))
}

/// Waits until every service answers SERVING. Under --tls the services
/// answer health over TLS only; `up` asks as the operator.
async fn wait_all_serving(args: &UpArgs, setup: &Setup, started: &mut [Started]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    let operator = match args.tls {
        false => None,
        true => {
            let files = kit::tls::TlsArgs::from_dir(&setup.certs, kit::authz::OPERATOR);
            Some(Arc::new(
                kit::tls::MeshTls::load(files).map_err(|e| e.to_string())?,
            ))
        }
    };
    for s in started {
        let tls = operator.as_ref().filter(|_| s.service.serves_mesh_tls());
        wait_serving(s, deadline, tls)
            .await
            .map_err(|reason| format!("{} did not become SERVING: {reason}", s.service.name))?;
    }
    Ok(())
}

/// From here a service that dies is started again, as Kubernetes would;
/// Ctrl-C (or SIGTERM) stops them all, the gateway first.
async fn supervise_until_signal(started: Vec<Started>) -> ExitCode {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let supervisors: Vec<_> = started
        .into_iter()
        .rev()
        .map(|s| tokio::spawn(supervise(s.spec, s.child, shutdown_rx.clone())))
        .collect();
    kit::server::shutdown_signal().await;
    println!("ferrymesh: stopping every service");
    let _ = shutdown_tx.send(true);
    let mut clean = true;
    for supervisor in supervisors {
        clean &= supervisor.await.unwrap_or(false);
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn wait_serving(
    s: &mut Started,
    deadline: Instant,
    tls: Option<&std::sync::Arc<kit::tls::MeshTls>>,
) -> Result<(), String> {
    let uri = format!("{}://{}", if tls.is_some() { "https" } else { "http" }, s.addr);
    loop {
        if let Ok(Some(status)) = s.child.try_wait() {
            return Err(format!("it exited with {status}; its log is above"));
        }
        if Instant::now() > deadline {
            return Err(format!("no SERVING answer from {uri} in time"));
        }
        let channel = kit::client::Upstream::with_tls(&uri, Duration::from_secs(1), tls)
            .map_err(|e| format!("bad address {uri}: {e}"))?;
        let mut client = HealthClient::new(channel);
        let request = HealthCheckRequest {
            service: String::new(),
        };
        if let Ok(response) = client.check(request).await
            && response.into_inner().status == ServingStatus::Serving as i32
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops what started when start-up fails, in reverse start order.
async fn stop_all(started: Vec<Started>) {
    for s in started.into_iter().rev() {
        stop(s.service.name, s.child).await;
    }
}
