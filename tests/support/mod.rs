//! Processes, tools and ports for the end-to-end tests.

pub(crate) mod mesh;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A tool installed by build-support/install-tools.sh.
pub(crate) fn tool(name: &str) -> PathBuf {
    let path = root().join(".tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run bash build-support/install-tools.sh",
        path.display()
    );
    path
}

/// Runs grpcurl with `args` and returns its output.
pub(crate) fn grpcurl(args: &[&str]) -> Output {
    std::process::Command::new(tool("grpcurl"))
        .args(args)
        .output()
        .expect("run grpcurl")
}

/// The text grpcurl wrote, stdout then stderr.
pub(crate) fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `ferrymesh` binary built for these tests.
pub(crate) fn ferrymesh() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrymesh"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The tests choose their own telemetry; none leaks in from the caller.
    for (key, _) in std::env::vars() {
        if key.starts_with("OTEL_") || key.starts_with("FERRYMESH_") {
            command.env_remove(key);
        }
    }
    command
}

/// Each service's default port, from its crate: the only place the tests
/// learn where a service listens. `up --port-offset N` adds N to each.
const SERVICE_PORTS: &[(&str, u16)] = &[
    ("gateway", gateway::DEFAULT_PORT),
    ("catalog", catalog::DEFAULT_PORT),
    ("inventory", inventory::DEFAULT_PORT),
    ("payments", payments::DEFAULT_PORT),
    ("shipping", shipping::DEFAULT_PORT),
    ("orders", orders::DEFAULT_PORT),
    ("workflow", workflow::DEFAULT_PORT),
    ("apikeys", apikeys::DEFAULT_PORT),
    ("tracesink", tracesink::DEFAULT_PORT),
    // Not a service: `up --audit-every`'s report.
    ("audit", 9190),
];

/// Where `service` of a mesh started with `--port-offset offset` listens.
pub(crate) fn port(service: &str, offset: u16) -> u16 {
    let (_, default) = SERVICE_PORTS
        .iter()
        .find(|(name, _)| *name == service)
        .unwrap_or_else(|| panic!("no service {service} in the mesh"));
    default + offset
}

/// Where `service` serves its metrics: its port + 1000.
pub(crate) fn admin_port(service: &str, offset: u16) -> u16 {
    port(service, offset) + 1000
}

/// Every port of the mesh: each service's, and its metrics' (+1000; the
/// audit's report has none).
pub(crate) fn mesh_ports() -> Vec<u16> {
    SERVICE_PORTS
        .iter()
        .flat_map(|(name, p)| std::iter::once(*p).chain((*name != "audit").then_some(p + 1000)))
        .collect()
}

/// The kernel's range for the local ports of outgoing connections.
fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut words = text.split_whitespace().map(|w| w.parse::<u16>().ok());
            Some((words.next()??, words.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Offsets are multiples of this apart: no two mesh ports differ by a
/// multiple of it, so two meshes at different offsets never share a port.
const OFFSET_STRIDE: u16 = 35;

/// The offsets' locks, held until this test process exits.
static HELD: Mutex<Vec<Flock<std::fs::File>>> = Mutex::new(Vec::new());

/// A port offset at which every mesh port is free on loopback, reserved
/// for this test process. The tests run as parallel processes, and a port
/// that is free now may be taken by another test's mesh a moment later:
/// each offset is claimed with a file lock that lasts as long as the
/// process, and claimed offsets never overlap (see [`OFFSET_STRIDE`]).
/// Offsets that keep every port out of the ephemeral range come first: a
/// port there may be held in TIME_WAIT by any connection the tests made,
/// and then nothing can listen on it for a minute.
pub(crate) fn free_port_offset() -> u16 {
    let (low, high) = ephemeral_ports();
    let ports = mesh_ports();
    let highest = ports.iter().copied().max().unwrap_or(0);
    let slots = |outside: bool| -> Vec<u16> {
        (1000..=u16::MAX - highest)
            .filter(|offset| offset % OFFSET_STRIDE == 0)
            .filter(|offset| !outside || ports.iter().all(|p| !(low..=high).contains(&(p + offset))))
            .collect()
    };
    let locks = std::env::temp_dir().join("ferrymesh-test-ports");
    std::fs::create_dir_all(&locks).expect("make the port lock directory");
    for candidates in [slots(true), slots(false)] {
        if candidates.is_empty() {
            continue;
        }
        let start = usize::from(rand_u16()) % candidates.len();
        for i in 0..candidates.len() {
            let offset = candidates[(start + i) % candidates.len()];
            let file = std::fs::File::create(locks.join(offset.to_string())).expect("make a port lock file");
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            let all_free = ports
                .iter()
                .all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p + offset)).is_ok());
            if all_free {
                HELD.lock().unwrap().push(lock);
                return offset;
            }
        }
    }
    panic!("no port offset with every mesh port free");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ std::process::id().rotate_left(16)) as u16
}

/// A child process whose output lines are kept for assertions.
pub(crate) struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    pub(crate) fn spawn(mut command: Command) -> Process {
        let mut child = command.spawn().expect("spawn ferrymesh");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(collect(out, lines.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(collect(err, lines.clone())));
        }
        Process {
            child,
            lines,
            readers,
        }
    }

    /// Everything it printed so far.
    pub(crate) fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Its output lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a line that `wanted` accepts; panics with the output if
    /// the process exits first or the time runs out.
    pub(crate) async fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| wanted(l)) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                for reader in self.readers.drain(..) {
                    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
                }
                panic!(
                    "process exited with {status} before the expected line; output:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "expected line did not come in {within:?}; output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("process still running");
        kill(Pid::from_raw(pid as i32), signal).expect("send signal");
    }

    /// Waits for it to exit, then for the last of its output: the exit can
    /// be seen before its final lines are read from the pipes.
    pub(crate) async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for process"),
            Err(_) => panic!(
                "process did not exit within {within:?}; output:\n{}",
                self.output()
            ),
        };
        // A child it left behind may still hold the pipes open: bounded.
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status
    }
}

/// Keeps every line until the stream ends. Bytes that are not UTF-8 (a
/// line cut by a kill) are kept as replacement characters: stopping there
/// would leave the pipe unread, and a child writing to a full pipe stalls.
async fn collect(stream: impl AsyncRead + Unpin, lines: Arc<Mutex<Vec<String>>>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                lines.lock().unwrap().push(text);
            }
        }
    }
}

/// Starts `ferrymesh serve SERVICE --listen 127.0.0.1:0` with `args` and
/// `env`, and returns it with the address it reported.
pub(crate) async fn serve(
    service: &str,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
) -> (Process, SocketAddr) {
    serve_on(service, "127.0.0.1:0", data_dir, args, env).await
}

/// As [`serve`], listening on `listen`.
pub(crate) async fn serve_on(
    service: &str,
    listen: &str,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
) -> (Process, SocketAddr) {
    let mut command = ferrymesh();
    command
        .args(["serve", service, "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut process = Process::spawn(command);
    let line = process
        .wait_for_line(|l| l.contains("listening on "), Duration::from_secs(60))
        .await;
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (process, addr)
}

/// Where a process started by [`serve`] serves its metrics, from its log.
pub(crate) fn metrics_url(process: &Process) -> String {
    process
        .lines()
        .iter()
        .find_map(|l| {
            let at = l.find("metrics at http://")? + "metrics at ".len();
            let rest = &l[at..];
            Some(rest[..rest.find("/metrics")? + "/metrics".len()].to_string())
        })
        .unwrap_or_else(|| panic!("no metrics address logged:\n{}", process.output()))
}

/// GETs a plain-HTTP URL on loopback and returns the body, failing on any status but 200.
pub(crate) async fn http_get(url: &str) -> String {
    http_get_as(url, None).await
}

/// As [`http_get`], with `authorization: Bearer TOKEN` when given.
pub(crate) async fn http_get_as(url: &str, token: Option<&str>) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().expect("a loopback address");
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
    let (status, _, body) = http_request(addr, "GET", path, &headers, b"").await;
    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&body));
    String::from_utf8(body).expect("a UTF-8 body")
}

/// One HTTP/1.1 request on its own connection (hyper's client): the
/// status, the headers (names in lower case) and the whole body.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 connection");
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body)))
        .expect("a valid request");
    let answer = async {
        let response = sender.send_request(request).await.expect("an answer");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the whole body")
            .to_bytes();
        (status, headers, body.to_vec())
    };
    tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("an answer in time")
}

/// Copies a directory tree.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The pid of the process whose command line contains every one of `parts`.
pub(crate) fn pid_of(parts: &[&str]) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            parts.iter().all(|p| cmdline.contains(p)).then_some(pid)
        })
}

#[test]
fn meshes_at_different_offsets_never_share_a_port() {
    let ports = mesh_ports();
    for a in &ports {
        for b in &ports {
            if a != b {
                assert_ne!(
                    a.abs_diff(*b) % OFFSET_STRIDE,
                    0,
                    "{a} and {b} would meet at offsets {OFFSET_STRIDE} apart"
                );
            }
        }
    }
}

/// A service run apart from `up`, on a port and data directory of its own,
/// which a test stops and starts again; `up`'s workflow is pointed at it.
pub(crate) struct Apart {
    service: &'static str,
    pub(crate) addr: String,
    dir: PathBuf,
}

impl Apart {
    /// `service` on a free port, keeping its data under `data`.
    pub(crate) fn new(service: &'static str, data: &Path) -> Apart {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Apart {
            service,
            addr: format!("127.0.0.1:{port}"),
            dir: data.join(format!("apart-{service}")),
        }
    }

    /// Starts it with `flags` and waits until it listens.
    pub(crate) async fn start(&self, flags: &[&str]) -> Process {
        let mut command = ferrymesh();
        command
            .args(["serve", self.service, "--listen", &self.addr, "--data-dir"])
            .arg(&self.dir)
            .args(flags);
        let mut process = Process::spawn(command);
        process
            .wait_for_line(|l| l.contains("listening on "), Duration::from_secs(60))
            .await;
        process
    }

    /// `up`'s `--pass` that points workflow's calls to `package` here.
    pub(crate) fn for_workflow(&self, package: &str) -> String {
        format!("workflow=--endpoint={package}=http://{}", self.addr)
    }
}
