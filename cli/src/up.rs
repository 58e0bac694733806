//! `ferrymesh up`: every service as its own process, health-checked, logs
//! prefixed, stopped together.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::UpArgs;
use crate::mesh::{MeshService, SERVICES};

struct Started {
    service: MeshService,
    addr: SocketAddr,
    child: Child,
}

pub(crate) async fn run(args: UpArgs) -> ExitCode {
    let plan: Vec<(MeshService, SocketAddr)> = SERVICES
        .iter()
        .map(|s| {
            (
                *s,
                SocketAddr::from((Ipv4Addr::LOCALHOST, s.port.saturating_add(args.port_offset))),
            )
        })
        .collect();

    // Check every port first, so a clash is reported before anything starts.
    let taken: Vec<String> = plan
        .iter()
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
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("ferrymesh: cannot find its own executable: {error}");
            return ExitCode::FAILURE;
        }
    };

    let (exited_tx, mut exited_rx) = mpsc::unbounded_channel::<&'static str>();
    let mut started: Vec<Started> = Vec::new();
    for (service, addr) in &plan {
        let log_format = match args.log_format {
            kit::LogFormat::Human => "human",
            kit::LogFormat::Json => "json",
        };
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .arg(service.name)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(&args.data_dir)
            .arg("--log-format")
            .arg(log_format)
            .args(upstream_flags(service, &plan))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: Ctrl-C reaches `up` alone, which then stops
            // the services in order instead of all at once.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                eprintln!("ferrymesh: cannot start {}: {error}", service.name);
                stop_all(started).await;
                return ExitCode::FAILURE;
            }
        };
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix_lines(service.name, out, None));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix_lines(service.name, err, Some(exited_tx.clone())));
        }
        started.push(Started {
            service: *service,
            addr: *addr,
            child,
        });
    }

    let deadline = Instant::now() + Duration::from_secs(args.ready_timeout);
    for s in &mut started {
        match wait_serving(s, deadline).await {
            Ok(()) => {}
            Err(reason) => {
                eprintln!("ferrymesh: {} did not become SERVING: {reason}", s.service.name);
                stop_all(started).await;
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&started, &args);

    let stop = tokio::select! {
        () = kit::server::shutdown_signal() => {
            println!("ferrymesh: stopping every service");
            ExitCode::SUCCESS
        }
        Some(name) = exited_rx.recv() => {
            eprintln!("ferrymesh: {name} exited; stopping the others");
            ExitCode::FAILURE
        }
    };
    let clean = stop_all(started).await;
    if clean { stop } else { ExitCode::FAILURE }
}

/// `--catalog-url http://ADDR` and the like, for the services `service` calls.
fn upstream_flags(service: &MeshService, plan: &[(MeshService, SocketAddr)]) -> Vec<String> {
    service
        .calls
        .iter()
        .filter_map(|(flag, callee)| {
            let (_, addr) = plan.iter().find(|(s, _)| s.name == *callee)?;
            Some([flag.to_string(), format!("http://{addr}")])
        })
        .flatten()
        .collect()
}

/// Copies a child's output to ours, each line prefixed by the service name;
/// reports the child gone when its stderr closes.
async fn prefix_lines(
    name: &'static str,
    stream: impl AsyncRead + Unpin,
    on_close: Option<mpsc::UnboundedSender<&'static str>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{name:>9} | {line}");
    }
    if let Some(tx) = on_close {
        let _ = tx.send(name);
    }
}

async fn wait_serving(s: &mut Started, deadline: Instant) -> Result<(), String> {
    let uri = format!("http://{}", s.addr);
    loop {
        if let Ok(Some(status)) = s.child.try_wait() {
            return Err(format!("it exited with {status}; its log is above"));
        }
        if Instant::now() > deadline {
            return Err(format!("no SERVING answer from {uri} in time"));
        }
        let endpoint = tonic::transport::Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("bad address {uri}: {e}"))?
            .connect_timeout(Duration::from_secs(1));
        if let Ok(channel) = endpoint.connect().await {
            let mut client = HealthClient::new(channel);
            let request = HealthCheckRequest {
                service: String::new(),
            };
            if let Ok(response) = client.check(request).await
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_table(started: &[Started], args: &UpArgs) {
    println!();
    println!("{:<10} {:<18} {:<9} DATABASE", "SERVICE", "ADDRESS", "HEALTH");
    for s in started {
        let database = if s.service.has_database {
            format!("sqlite://{}/{}.db", args.data_dir.display(), s.service.name)
        } else {
            "-".to_string()
        };
        println!(
            "{:<10} {:<18} {:<9} {database}",
            s.service.name, s.addr, "SERVING"
        );
    }
    println!();
    println!("ferrymesh: all services are SERVING; Ctrl-C stops them.");
}

/// SIGTERM to every service, in reverse start order, then wait; SIGKILL what
/// does not stop within 40 seconds. Whether all stopped with exit code 0.
async fn stop_all(started: Vec<Started>) -> bool {
    let mut clean = true;
    for s in started.iter().rev() {
        if let Some(pid) = s.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for mut s in started.into_iter().rev() {
        match tokio::time::timeout(Duration::from_secs(40), s.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                eprintln!("ferrymesh: {} exited with {status}", s.service.name);
                clean = false;
            }
            Ok(Err(error)) => {
                eprintln!("ferrymesh: waiting for {} failed: {error}", s.service.name);
                clean = false;
            }
            Err(_) => {
                eprintln!("ferrymesh: {} did not stop in 40s; killing it", s.service.name);
                let _ = s.child.kill().await;
                clean = false;
            }
        }
    }
    clean
}
