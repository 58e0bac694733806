//! The processes `ferrymesh up` runs: how each is started (again, if it
//! dies), its output prefixed and kept, and how it is stopped.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::mesh::MeshService;

/// How to start one service's process, again if it dies.
pub(crate) struct Spawn {
    pub(crate) exe: std::path::PathBuf,
    pub(crate) service: MeshService,
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: std::path::PathBuf,
    pub(crate) log_format: &'static str,
    pub(crate) upstreams: Vec<String>,
    /// Where telemetry goes (`OTEL_*`).
    pub(crate) environment: Vec<(String, String)>,
}

impl Spawn {
    pub(crate) fn spawn(&self) -> std::io::Result<Child> {
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
pub(crate) async fn supervise(spec: Spawn, mut child: Child, mut shutdown: watch::Receiver<bool>) -> bool {
    let name = spec.service.name;
    let mut delays = kit::backoff::Doubling::new(Duration::from_secs(1), MAX_BACKOFF);
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
                    delays.reset();
                }
                let pause = delays.next_delay();
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                eprintln!(
                    "ferrymesh: {name} exited ({status}); restarting it in {}s",
                    pause.as_secs()
                );
                // Asked to stop while it waits to start again: nothing of it
                // runs, so nothing is left to stop (its death was reported).
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => return true,
                }
                loop {
                    match spec.spawn() {
                        Ok(again) => {
                            child = again;
                            since = Instant::now();
                            break;
                        }
                        Err(error) => {
                            let pause = delays.next_delay();
                            eprintln!(
                                "ferrymesh: cannot restart {name}: {error}; trying again in {}s",
                                pause.as_secs()
                            );
                            tokio::select! {
                                () = tokio::time::sleep(pause) => {}
                                _ = shutdown.changed() => return true,
                            }
                        }
                    }
                }
            }
        }
    }
}

/// SIGTERM, then wait up to 40 seconds, then SIGKILL. Whether it exited 0.
pub(crate) async fn stop(name: &str, mut child: Child) -> bool {
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
