//! `ferrymesh up`: every service as its own process, health-checked, logs
//! prefixed, stopped together.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::UpArgs;
use crate::mesh::{MeshService, SERVICES};
use crate::up_flags::{export_environment, serves_mesh_tls, tls_flags, upstream_flags};

struct Started {
    service: MeshService,
    addr: SocketAddr,
    child: Child,
    spec: Spawn,
}

pub(crate) async fn run(args: UpArgs) -> ExitCode {
    let sink = args.trace_sink.then_some(&crate::mesh::TRACE_SINK);
    let plan: Vec<(MeshService, SocketAddr)> = sink
        .into_iter()
        .chain(SERVICES.iter())
        .map(|s| {
            (
                *s,
                SocketAddr::from((Ipv4Addr::LOCALHOST, s.port.saturating_add(args.port_offset))),
            )
        })
        .collect();

    // Check every port first, so a clash is reported before anything starts.
    // Each service's metrics are on its port + 1000.
    let taken: Vec<String> = plan
        .iter()
        .flat_map(|(s, addr)| {
            let admin = crate::mesh::admin_port(addr.port()).map(|p| SocketAddr::new(addr.ip(), p));
            std::iter::once((s, *addr)).chain(admin.map(|a| (s, a)))
        })
        .filter(|(_, addr)| TcpListener::bind(addr).is_err())
        .map(|(s, addr)| format!("{} needs {addr}", s.name))
        .collect();
    if !taken.is_empty() {
        eprintln!(
            "ferrymesh: port taken: {}. Stop whatever listens there, or pass --port-offset N.",
            taken.join("; ")
        );
        return ExitCode::FAILURE;
    }
    if let Err(error) = std::fs::create_dir_all(&args.data_dir) {
        eprintln!(
            "ferrymesh: cannot create data directory {}: {error}",
            args.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let databases = match crate::up_ready::postgres_databases(&args, &plan).await {
        Ok(databases) => databases,
        Err(error) => {
            eprintln!("ferrymesh: {error}");
            return ExitCode::FAILURE;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("ferrymesh: cannot find its own executable: {error}");
            return ExitCode::FAILURE;
        }
    };

    let certs = args.data_dir.join("certs");
    if args.tls
        && let Err(error) = crate::certs_cmd::init_default(&certs)
    {
        eprintln!("ferrymesh: cannot make the mesh's certificates: {error}");
        return ExitCode::FAILURE;
    }
    let scheme = if args.tls { "https" } else { "http" };

    // The gateway's routes point at this mesh's ports, so its file is
    // written afresh each time, unless one was passed.
    let gateway_config = args.data_dir.join("gateway.toml");
    let own_config = args
        .pass
        .iter()
        .any(|(s, f)| s == "gateway" && f.starts_with("--config"));
    if !own_config {
        let addresses: Vec<(&str, String)> = crate::mesh::GATEWAY_ROUTES
            .iter()
            .filter_map(|(package, service)| {
                let (_, addr) = plan.iter().find(|(s, _)| s.name == *service)?;
                Some((*package, format!("{scheme}://{addr}")))
            })
            .collect();
        if let Err(error) = std::fs::write(&gateway_config, gateway::config::local_mesh(&addresses)) {
            eprintln!(
                "ferrymesh: cannot write the gateway's configuration {}: {error}",
                gateway_config.display()
            );
            return ExitCode::FAILURE;
        }
    }

    // Every service's output also goes to DATA_DIR/logs/NAME.log, begun
    // afresh by each `up`, for the console's search by correlation id.
    let logs_dir = args.data_dir.join("logs");
    if let Err(error) = std::fs::create_dir_all(&logs_dir) {
        eprintln!("ferrymesh: cannot create {}: {error}", logs_dir.display());
        return ExitCode::FAILURE;
    }
    for (service, _) in &plan {
        let _ = std::fs::remove_file(logs_dir.join(format!("{}.log", service.name)));
    }
    let exports = export_environment(&args, &plan);
    // The audit's report port, bound before anything starts.
    let audit_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9190u16.saturating_add(args.port_offset)));
    let audit_listener = match args.audit_every {
        None => None,
        Some(_) => match crate::audit_serve::bind_in_up(audit_addr).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!("ferrymesh: {error}; pass --port-offset N");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut started: Vec<Started> = Vec::new();
    for (service, addr) in &plan {
        let own = (service.name == "gateway" && !own_config)
            .then(|| format!("--config={}", gateway_config.display()));
        // The console's operations view: every service's admin port, and the logs.
        let console: Vec<String> = if service.name == "gateway" {
            plan.iter()
                .filter(|(s, _)| s.name != "tracesink")
                .map(|(s, addr)| {
                    let admin = std::net::SocketAddr::new(addr.ip(), addr.port().saturating_add(1000));
                    format!("--metrics-target={}=http://{admin}/metrics", s.name)
                })
                .chain([format!("--logs-dir={}", logs_dir.display())])
                .chain(
                    audit_listener
                        .as_ref()
                        .map(|_| format!("--audit-url=http://{audit_addr}")),
                )
                .collect()
        } else {
            Vec::new()
        };
        // The sink passes spans on to the collector; its own are not traced.
        let forward = match (service.name, &args.otlp_endpoint) {
            ("tracesink", Some(url)) => Some(format!("--forward={url}")),
            _ => None,
        };
        let spec = Spawn {
            exe: exe.clone(),
            service: *service,
            addr: *addr,
            data_dir: args.data_dir.clone(),
            log_format: match args.log_format {
                kit::LogFormat::Human => "human",
                kit::LogFormat::Json => "json",
            },
            environment: if service.name == "tracesink" {
                Vec::new()
            } else {
                exports.clone()
            },
            upstreams: upstream_flags(service, &plan, scheme)
                .into_iter()
                .chain(
                    databases
                        .get(service.name)
                        .map(|url| format!("--database-url={url}")),
                )
                .chain(tls_flags(args.tls, &certs, service.name))
                .chain(own)
                .chain(console)
                .chain(forward)
                .chain(
                    args.pass
                        .iter()
                        .filter(|(s, _)| s == service.name)
                        .map(|(_, f)| f.clone()),
                )
                .collect(),
        };
        let child = match spec.spawn() {
            Ok(child) => child,
            Err(error) => {
                eprintln!("ferrymesh: cannot start {}: {error}", service.name);
                stop_all(started).await;
                return ExitCode::FAILURE;
            }
        };
        started.push(Started {
            service: *service,
            addr: *addr,
            child,
            spec,
        });
    }

    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    // Under --tls the services answer health over TLS only; `up` asks as the operator.
    let operator = match args.tls {
        false => None,
        true => match kit::tls::MeshTls::load(kit::tls::TlsArgs::from_dir(&certs, kit::authz::OPERATOR)) {
            Ok(tls) => Some(std::sync::Arc::new(tls)),
            Err(error) => {
                eprintln!("ferrymesh: {error}");
                stop_all(started).await;
                return ExitCode::FAILURE;
            }
        },
    };
    for s in &mut started {
        let tls = operator.as_ref().filter(|_| serves_mesh_tls(s.service.name));
        match wait_serving(s, deadline, tls).await {
            Ok(()) => {}
            Err(reason) => {
                eprintln!("ferrymesh: {} did not become SERVING: {reason}", s.service.name);
                stop_all(started).await;
                return ExitCode::FAILURE;
            }
        }
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
    crate::up_ready::print(&ready, &args);
    if let (Some(listener), Some(every)) = (audit_listener, args.audit_every) {
        let at = |port: u16| {
            Some(format!(
                "{scheme}://127.0.0.1:{}",
                port.saturating_add(args.port_offset)
            ))
        };
        let urls = crate::audit_cmd::Urls {
            orders: at(50055),
            workflow: at(50056),
            inventory: at(50052),
            payments: at(50053),
            shipping: at(50054),
        };
        match crate::audit_cmd::mesh(&urls, args.port_offset, &certs) {
            Ok(mesh) => {
                crate::audit_serve::start_in_up(listener, mesh, every);
                println!(
                    "ferrymesh: auditing every {every:?}; the last report at http://{audit_addr}/report"
                );
            }
            Err(error) => eprintln!("ferrymesh: the audit cannot start: {error}"),
        }
    }

    // From here a service that dies is started again, as Kubernetes would.
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

/// How to start one service's process, again if it dies.
struct Spawn {
    exe: std::path::PathBuf,
    service: MeshService,
    addr: SocketAddr,
    data_dir: std::path::PathBuf,
    log_format: &'static str,
    upstreams: Vec<String>,
    /// Where telemetry goes (`OTEL_*`).
    environment: Vec<(String, String)>,
}

impl Spawn {
    fn spawn(&self) -> std::io::Result<Child> {
        let mut command = Command::new(&self.exe);
        command
            .arg("serve")
            .arg(self.service.name)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--log-format")
            .arg(self.log_format)
            .args(&self.upstreams)
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            // The service stops itself if `up` dies without stopping it.
            .env(UP_PID, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: Ctrl-C reaches `up` alone, which then stops
            // the services in order instead of all at once.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(
                self.data_dir
                    .join("logs")
                    .join(format!("{}.log", self.service.name)),
            )
            .ok()
            .map(|f| Arc::new(std::sync::Mutex::new(f)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix_lines(self.service.name, out, log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix_lines(self.service.name, err, log));
        }
        eprintln!(
            "ferrymesh: started {} (pid {})",
            self.service.name,
            child.id().unwrap_or_default()
        );
        Ok(child)
    }
}

/// Names the `up` process a service was started by, so it can follow it.
pub(crate) const UP_PID: &str = "FERRYMESH_UP_PID";

/// In a service started by `up`: asks the kernel for SIGTERM when `up`
/// dies (even by SIGKILL), so no service outlives the mesh it belongs to.
/// Exits at once if `up` is already gone. (The kernel watches the thread
/// that spawned the child; `up` spawns from its Tokio workers, which live
/// as long as `up` does.)
pub(crate) fn follow_parent() {
    let Some(up) = std::env::var(UP_PID).ok().and_then(|p| p.parse::<i32>().ok()) else {
        return;
    };
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        eprintln!("ferrymesh: cannot follow `up` (pid {up}): {error}");
    }
    // `up` may have died before the request above took effect.
    if nix::unistd::getppid().as_raw() != up {
        eprintln!("ferrymesh: `up` (pid {up}) is gone; not starting");
        std::process::exit(1);
    }
}

/// Longest pause before restarting a service that keeps dying.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A service that ran this long before dying starts again at once-ish.
const STABLE_AFTER: Duration = Duration::from_secs(60);

enum Event {
    Exited(std::io::Result<std::process::ExitStatus>),
    Shutdown,
}

/// Keeps one service running: restarts it with growing pauses (1s, 2s, 4s,
/// ... 30s; back to 1s after it ran a minute) until shutdown, then stops it.
/// Whether it stopped cleanly.
async fn supervise(spec: Spawn, mut child: Child, mut shutdown: watch::Receiver<bool>) -> bool {
    let name = spec.service.name;
    let mut backoff = Duration::from_secs(1);
    let mut since = Instant::now();
    loop {
        let event = tokio::select! {
            status = child.wait() => Event::Exited(status),
            _ = shutdown.changed() => Event::Shutdown,
        };
        match event {
            Event::Shutdown => return stop(name, child).await,
            Event::Exited(status) => {
                if *shutdown.borrow() {
                    return status.map(|s| s.success()).unwrap_or(false);
                }
                if since.elapsed() > STABLE_AFTER {
                    backoff = Duration::from_secs(1);
                }
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                eprintln!(
                    "ferrymesh: {name} exited ({status}); restarting it in {}s",
                    backoff.as_secs()
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return false,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                loop {
                    match spec.spawn() {
                        Ok(again) => {
                            child = again;
                            since = Instant::now();
                            break;
                        }
                        Err(error) => {
                            eprintln!(
                                "ferrymesh: cannot restart {name}: {error}; trying again in {}s",
                                backoff.as_secs()
                            );
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {}
                                _ = shutdown.changed() => return false,
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        }
    }
}

/// SIGTERM, then wait up to 40 seconds, then SIGKILL. Whether it exited 0.
async fn stop(name: &str, mut child: Child) -> bool {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(Duration::from_secs(40), child.wait()).await {
        Ok(Ok(status)) if status.success() => true,
        Ok(Ok(status)) => {
            eprintln!("ferrymesh: {name} exited with {status}");
            false
        }
        Ok(Err(error)) => {
            eprintln!("ferrymesh: waiting for {name} failed: {error}");
            false
        }
        Err(_) => {
            eprintln!("ferrymesh: {name} did not stop in 40s; killing it");
            let _ = child.kill().await;
            false
        }
    }
}

/// Copies a child's output to ours, each line prefixed by the service name.
/// With `log`, each line is also appended there. Bytes that are not UTF-8
/// pass as replacement characters: stopping at them would leave the child's
/// pipe unread, and a service writing to a full pipe stalls.
async fn prefix_lines(
    name: &'static str,
    stream: impl AsyncRead + Unpin,
    log: Option<Arc<std::sync::Mutex<std::fs::File>>>,
) {
    use std::io::Write as _;
    let mut reader = BufReader::new(stream);
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match reader.read_until(b'\n', &mut bytes).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&bytes);
        let line = text.trim_end_matches(['\n', '\r']);
        eprintln!("{name:>9} | {line}");
        if let Some(log) = &log
            && let Ok(mut file) = log.lock()
        {
            let _ = writeln!(file, "{line}");
        }
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
