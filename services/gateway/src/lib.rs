//! The gateway: the mesh's one public endpoint. A transparent HTTP/2 gRPC
//! proxy (hyper and tower, on the serving runtime that links no database)
//! that routes by path to the upstream serving each package and applies
//! its policies as a tower stack: API keys, throttling, quotas, stages and
//! canaries, metering. Key checks are cached and usage is counted in
//! memory, so no call waits on a network round trip but its key's first.

#![forbid(unsafe_code)]

pub mod caller;
pub mod canary;
pub mod config;
pub mod console;
pub mod guard;
pub mod keys;
pub mod limits;
pub mod local_mesh;
pub mod metering;
pub mod proxy;
pub mod reflection;
pub mod stack;
pub mod web;

/// Generated code of the contracts the gateway calls (apikeys).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

/// Every contract's descriptors, for reflection of the public ones.
pub static EVERY_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferrymesh_every_descriptor.bin"));

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic_health::ServingStatus;
use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt};

use kit::tls::{MaybeTls, MeshTls};

use crate::canary::CanaryRegistry;
use crate::config::Routes;
use crate::keys::{ApiKeysClient, Bearer, KeyCache};
use crate::limits::Quotas;
use crate::metering::Meter;
use crate::reflection::ReflectionCache;

/// The gateway's default port.
pub const DEFAULT_PORT: u16 = 8080;

/// The gateway's flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "gateway",
    about = "ferrymesh gateway: the public endpoint, with keys, throttling, quotas, stages, canaries and metering"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
    /// The configuration file (TOML: public methods, stages, routes,
    /// canaries, limits); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The apikeys service.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50057")]
    pub apikeys_url: String,
    /// apikeys' admin token [default: read from DATA_DIR/admin-token].
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Longest wait for apikeys on a key's first call.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "2s")]
    pub apikeys_timeout: Duration,
    /// Most concurrent calls on one client connection (HTTP/2 streams).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_streams_per_connection: u32,
    /// Most headers (metadata entries) on one call; more is INVALID_ARGUMENT.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_headers: usize,
    /// Largest header block of one call, in bytes (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE).
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: u32,
    /// Calls one connection may make per second, counted before any key
    /// is checked; more is RESOURCE_EXHAUSTED with RetryInfo. 0 for no limit.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub connection_rate: u32,
    /// Calls one connection may make at once above --connection-rate.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    pub connection_burst: u32,
    /// Longest wait for the next piece of a request body; a client that
    /// stalls longer gets DEADLINE_EXCEEDED.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "30s")]
    pub body_timeout: Duration,
    /// A new connection that has not sent a call within this is closed.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "10s")]
    pub first_call_timeout: Duration,
    /// The certificate (PEM) the gateway shows its clients; with
    /// --public-tls-key its port serves TLS only (HTTP/2 by ALPN). Reloaded
    /// when it changes. Without it the port is plaintext (h2c).
    #[arg(long, value_name = "FILE", requires = "public_tls_key")]
    pub public_tls_cert: Option<PathBuf>,
    /// The private key of --public-tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "public_tls_cert")]
    pub public_tls_key: Option<PathBuf>,
    /// A connection with no call in flight for this long is closed.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "5m")]
    pub idle_timeout: Duration,
    /// Threads serving calls, each with its own listening socket
    /// [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// A service the console's operations view shows, as NAME=URL of its
    /// Prometheus metrics (its admin port, which also answers gRPC health);
    /// a host name that resolves to several addresses is several replicas.
    /// Repeatable, or separated by commas.
    #[arg(long = "metrics-target", value_name = "NAME=URL", value_parser = parse_target, value_delimiter = ',')]
    pub metrics_targets: Vec<(String, String)>,
    /// The directory of the mesh's logs (`NAME.log`, as `ferrymesh up`
    /// writes them), searched by correlation id in the console.
    #[arg(long, value_name = "DIR")]
    pub logs_dir: Option<PathBuf>,
    /// Jaeger's UI (e.g. http://127.0.0.1:16686), for the console's links to a trace.
    #[arg(long, value_name = "URL")]
    pub jaeger_url: Option<String>,
    /// Where `ferrymesh audit --every` serves its last report (e.g.
    /// http://127.0.0.1:9190), for the console's operations view.
    #[arg(long, value_name = "URL")]
    pub audit_url: Option<String>,
}

fn parse_target(text: &str) -> Result<(String, String), String> {
    let (name, url) = text.split_once('=').ok_or_else(|| {
        format!("metrics target `{text}` must be NAME=URL, e.g. catalog=http://127.0.0.1:51051/metrics")
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "metrics target `{text}`: the name must be letters, digits, - or _"
        ));
    }
    if !url.starts_with("http://") {
        return Err(format!(
            "metrics target `{text}`: the URL must start with http://"
        ));
    }
    Ok((name.to_string(), url.to_string()))
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "gateway";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// What every layer of the stack shares.
pub struct Shared {
    routes: RwLock<Arc<Routes>>,
    generation: AtomicU64,
    keys: Arc<KeyCache>,
    quotas: Arc<Quotas>,
    meter: Meter,
    reflection: ReflectionCache,
    /// The admin token's hash, for operator calls.
    admin: blake3::Hash,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// The configuration in force.
    pub fn routes(&self) -> Arc<Routes> {
        match self.routes.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes on every configuration reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

fn read_config(
    path: &std::path::Path,
    canaries: &CanaryRegistry,
    tls: Option<&Arc<MeshTls>>,
) -> Result<(String, Routes), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut upstreams = |url: &str| proxy::Upstream::with_tls(url, tls.cloned()).map(Arc::new);
    let routes = config::parse(&path.display().to_string(), &text, &mut upstreams, canaries)
        .map_err(|e| e.to_string())?;
    Ok((text, routes))
}

type Stack = BoxCloneService<Request<Body>, Response<Body>, Infallible>;
type Health = Stack;

/// How the gateway treats each client connection, from its flags.
#[derive(Debug, Clone, Copy)]
struct ConnectionPolicy {
    max_streams: u32,
    max_header_bytes: u32,
    limits: guard::Limits,
    rate: u32,
    burst: u32,
    first_call: Duration,
    idle: Duration,
}

impl ConnectionPolicy {
    fn of(config: &Config) -> ConnectionPolicy {
        ConnectionPolicy {
            max_streams: config.max_streams_per_connection,
            max_header_bytes: config.max_header_bytes,
            limits: guard::Limits {
                max_headers: config.max_headers,
                max_message_bytes: config.server.max_message_bytes,
                body_timeout: config.body_timeout,
            },
            rate: config.connection_rate,
            burst: config.connection_burst,
            first_call: config.first_call_timeout,
            idle: config.idle_timeout,
        }
    }
}

/// One connection's calls in flight and when the last one ended, for the
/// first-call and idle timeouts.
struct Activity {
    opened: std::time::Instant,
    in_flight: AtomicU64,
    calls: AtomicU64,
    /// Milliseconds after `opened` when a call last ended.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: std::time::Instant::now(),
            in_flight: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> CallDone {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        CallDone(self.clone())
    }

    /// How long until the connection may be closed, if nothing happens.
    fn remaining(&self, policy: &ConnectionPolicy) -> Duration {
        let limit = if self.calls.load(Ordering::Relaxed) == 0 {
            policy.first_call
        } else {
            policy.idle
        };
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return limit;
        }
        let since = self
            .opened
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        limit.saturating_sub(since)
    }
}

/// Ends a call for [`Activity`] when dropped: with the response body, or
/// with the response itself when the call was refused.
struct CallDone(Arc<Activity>);

impl Drop for CallDone {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its call for the idle timeout when it is dropped.
    struct Tracked {
        #[pin]
        inner: Body,
        done: CallDone,
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Runs one connection until it ends, or until it has had no call for the
/// first-call or idle timeout.
async fn drive<C, E>(connection: C, activity: Arc<Activity>, policy: ConnectionPolicy)
where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    loop {
        let wait = activity.remaining(&policy);
        tokio::select! {
            result = &mut connection => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {
                if activity.remaining(&policy).is_zero() {
                    tracing::debug!("closing a connection that has had no call in time");
                    return;
                }
            }
        }
    }
}

/// A gRPC call, from the connection's rate onwards.
async fn call_grpc(
    stack: Stack,
    rate: Arc<guard::ConnectionRate>,
    limits: guard::Limits,
    request: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    // Before anyone is authenticated: the connection's rate, then the
    // headers; the body as it streams.
    if let Some(refusal) = rate.check() {
        return Ok(refusal.into_http());
    }
    admit_and_call(stack, limits, request).await
}

/// A call the connection's rate has let through: its headers and body
/// checked, then the whole stack.
async fn admit_and_call(
    mut stack: Stack,
    limits: guard::Limits,
    request: Request<Body>,
) -> Result<Response<Body>, Infallible> {
    let request = match limits.admit(request) {
        Ok(request) => request,
        Err(refusal) => return Ok(refusal.into_http()),
    };
    stack.ready().await?.call(request).await
}

/// The HTTP server of one worker: HTTP/2 for gRPC (and browsers), and
/// HTTP/1.1 for the console's pages and gRPC-Web, on one port.
fn http_server(policy: &ConnectionPolicy) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    server
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(policy.max_streams)
        .max_header_list_size(policy.max_header_bytes)
        .max_frame_size(16 * 1024)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    server
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(policy.first_call)
        .max_buf_size((policy.max_header_bytes as usize).max(8192))
        .max_headers(policy.limits.max_headers.max(1));
    server
}

/// One worker's accept loop: serves connections until told to stop, then
/// lets their calls finish (within `grace`).
#[allow(clippy::too_many_arguments)]
async fn accept(
    listener: std::net::TcpListener,
    stack: Stack,
    health: Health,
    console: Arc<console::Console>,
    public: Option<Arc<MeshTls>>,
    policy: ConnectionPolicy,
    grace: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let server = Arc::new(http_server(&policy));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (stack, health, console) = (stack.clone(), health.clone(), console.clone());
                let activity = Activity::new();
                let rate = Arc::new(guard::ConnectionRate::new(policy.rate, policy.burst));
                let client = stack::Client::new(remote.ip());
                let calls = activity.clone();
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    // Request trailers go first, on every protocol: gRPC
                    // requests carry none, and an upstream would read them as
                    // metadata (identity included) after every check here.
                    let mut request = request.map(|body| kit::identity::without_trailers(Body::new(body)));
                    request.extensions_mut().insert(client.clone());
                    let (stack, mut health, console) = (stack.clone(), health.clone(), console.clone());
                    let done = calls.begin();
                    let rate = rate.clone();
                    async move {
                        // Health answers probes without a key or a span.
                        if request.uri().path().starts_with("/grpc.health.v1.Health/") {
                            return health.call(request).await;
                        }
                        // gRPC calls are POSTs; a browser's page is a GET.
                        if request.method() != http::Method::POST {
                            return Ok(console.serve(request).await);
                        }
                        if web::is_grpc_web(&request) {
                            // The connection's rate first, before the JSON
                            // form's body is read and encoded.
                            if let Some(refusal) = rate.check() {
                                return Ok(web::refusal_to(&request, &refusal));
                            }
                            let limits = policy.limits;
                            let grpc = tower::service_fn(move |request: Request<Body>| {
                                admit_and_call(stack.clone(), limits, request)
                            });
                            let response = web::serve(request, grpc, &policy.limits).await;
                            return Ok(response.map(|inner| Body::new(Tracked { inner, done })));
                        }
                        // Only gRPC's own content type is a call: anything
                        // else (a browser's cross-origin text/plain form
                        // needs no preflight) is refused as gRPC says, 415.
                        if !web::is_grpc(&request) {
                            return Ok(web::unsupported_media_type());
                        }
                        let response = call_grpc(stack, rate, policy.limits, request).await?;
                        Ok(response.map(|inner| Body::new(Tracked { inner, done })))
                    }
                });
                // One connection type for plaintext and TLS, so the HTTP
                // server is compiled once.
                let (server, watcher, public) = (server.clone(), graceful.watcher(), public.clone());
                tokio::spawn(async move {
                    let stream = match public {
                        None => MaybeTls::Plain(stream),
                        Some(tls) => {
                            // The handshake counts against the first call's time.
                            let remote = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                            match tokio::time::timeout(policy.first_call, tls.accept(stream, remote)).await {
                                Ok(Ok(stream)) => MaybeTls::Tls(stream),
                                Ok(Err(error)) => {
                                    tracing::debug!(%remote, %error, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%remote, "TLS handshake not finished in time");
                                    return;
                                }
                            }
                        }
                    };
                    let connection = watcher.watch(server.serve_connection(TokioIo::new(stream), service));
                    drive(connection, activity, policy).await;
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight calls did not finish within {grace:?}; stopped anyway");
    }
    Ok(())
}

/// Binds `workers` listening sockets to one address with SO_REUSEPORT
/// (the first picks the port when `addr` has port 0).
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<TcpListener>> {
    let one = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    let first = one(addr)?;
    let bound = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..workers.max(1) {
        all.push(one(bound)?);
    }
    Ok(all)
}

/// Serves on `listener` until `shutdown` resolves, then drains as every
/// ferrymesh service does and flushes the last usage counts.
pub async fn serve(
    config: Config,
    listeners: Vec<TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), kit::BoxError> {
    let args = config.server.clone();
    // Metric labels and log lines name only the contracts' methods.
    kit::rpc_telemetry::register_methods(EVERY_DESCRIPTOR_SET)?;
    let (health, health_server) = tonic_health::server::health_reporter();
    let canaries = CanaryRegistry::with_health(health.clone());
    // The gateway's own mesh identity, for every upstream hop.
    let tls = MeshTls::from_args(&args.tls)?;
    let (mut config_text, routes) = read_config(&config.config, &canaries, tls.as_ref())?;
    // What the gateway's clients see: plaintext, or TLS with its own certificate.
    let public = match (&config.public_tls_cert, &config.public_tls_key) {
        (Some(cert), Some(key)) => Some(MeshTls::public(cert.clone(), key.clone())?),
        _ => None,
    };
    let token = match &config.admin_token {
        Some(t) => t.clone(),
        None => kit::config::admin_token_file(&args.data_dir)?,
    };
    let bearer = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the admin token is not printable ASCII")?;
    let apikeys: ApiKeysClient =
        pb::ferrymesh::apikeys::v1::api_keys_service_client::ApiKeysServiceClient::with_interceptor(
            kit::client::Upstream::with_tls(&config.apikeys_url, config.apikeys_timeout, tls.as_ref())?,
            Bearer(bearer),
        );
    let quotas = Arc::new(Quotas::default());
    let keys = Arc::new(KeyCache::new(
        apikeys.clone(),
        routes.limits.key_cache_ttl,
        quotas.clone(),
    ));
    let shared = Arc::new(Shared {
        routes: RwLock::new(Arc::new(routes)),
        generation: AtomicU64::new(1),
        keys: keys.clone(),
        quotas: quotas.clone(),
        meter: Meter::default(),
        reflection: ReflectionCache::default(),
        admin: blake3::hash(token.as_bytes()),
    });
    let console = Arc::new(console::Console::new(
        shared.clone(),
        console::Sources {
            metrics: config.metrics_targets.clone(),
            logs_dir: config.logs_dir.clone(),
            jaeger_url: config.jaeger_url.clone(),
            audit_url: config.audit_url.clone(),
        },
    ));
    let flushing = Arc::new(tokio::sync::Mutex::new(()));

    let mut background = tokio::task::JoinSet::new();
    {
        let shared = shared.clone();
        background.spawn(keys.follow_changes(move || shared.routes().limits.changes_poll));
    }
    {
        let (shared, apikeys, flushing) = (shared.clone(), apikeys.clone(), flushing.clone());
        background.spawn(async move {
            loop {
                tokio::time::sleep(shared.routes().limits.usage_flush).await;
                let _one = flushing.lock().await;
                shared.meter.flush(&apikeys, &shared.quotas).await;
            }
        });
    }
    {
        // The file is read again every second; a change that parses
        // replaces the configuration between calls, one that does not is
        // logged and the last good one keeps serving.
        let (shared, path, tls) = (shared.clone(), config.config.clone(), tls.clone());
        background.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match std::fs::read_to_string(&path) {
                    Ok(text) if text == config_text => {}
                    Ok(_) | Err(_) => match read_config(&path, &canaries, tls.as_ref()) {
                        Ok((text, routes)) => {
                            shared.keys.set_ttl(routes.limits.key_cache_ttl);
                            if let Ok(mut r) = shared.routes.write() {
                                *r = Arc::new(routes);
                            }
                            shared.generation.fetch_add(1, Ordering::Relaxed);
                            config_text = text;
                            tracing::info!(file = %path.display(), "configuration reloaded");
                        }
                        Err(error) => {
                            tracing::error!(%error, "configuration not reloaded; the last good one stays");
                            // Not again until the file changes once more.
                            config_text = std::fs::read_to_string(&path).unwrap_or_default();
                        }
                    },
                }
            }
        });
    }

    let stack: Stack = BoxCloneService::new(
        ServiceBuilder::new()
            // Outermost: the correlation id and the server span cover every
            // refusal below, and the trace context reaches the upstream.
            .layer(kit::rpc_telemetry::RpcTelemetryLayer::new(args.handler_timeout))
            // `--fault` works here as on every service, for demos of a slow
            // gateway; absent, it costs nothing. (No global concurrency
            // limit: each connection's streams are capped, and the gateway
            // does no work that queues.)
            .option_layer((!args.fault.is_empty()).then(|| kit::fault::FaultLayer::new(args.fault.clone())))
            // Before any limit: an unknown caller must not spend a known key's
            // tokens, and a method outside the plan is refused for free.
            .layer(stack::AuthLayer::new(shared.clone()))
            // Before the quota: a call refused for its rate must not use quota.
            .layer(stack::ThrottleLayer::new(shared.clone()))
            // After the throttle, before routing: only calls that will be
            // forwarded count against the period's quota.
            .layer(stack::QuotaLayer::new(shared.clone()))
            // Picks the stage's (or canary's) upstream and sets the identity
            // metadata, once the call is certain to go out.
            .layer(stack::RouteLayer::new(shared.clone()))
            // Innermost policy: counts exactly the calls that are forwarded.
            .layer(stack::MeterLayer::new(shared.clone()))
            .service(stack::Forward),
    );

    health.set_service_status("", ServingStatus::Serving).await;
    // One thread per core, each with its own single-threaded runtime and its
    // own listening socket on the same port (SO_REUSEPORT: the kernel
    // spreads connections), so a call runs start to end on one thread: a
    // fifth less CPU per call than a work-stealing runtime, and no
    // cross-thread wake-ups on its path.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let listener = listener.into_std()?;
        let health_server: Health = BoxCloneService::new(health_server.clone());
        let (stack, stopped, console) = (stack.clone(), stopped.clone(), console.clone());
        let (policy, grace, public) = (
            ConnectionPolicy::of(&config),
            args.shutdown_timeout,
            public.clone(),
        );
        let worker = std::thread::Builder::new()
            .name(format!("gateway-{index}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                proxy::set_worker(index);
                runtime.block_on(accept(
                    listener,
                    stack,
                    health_server,
                    console,
                    public,
                    policy,
                    grace,
                    stopped,
                ))
            })?;
        workers.push(worker);
    }
    shutdown.await;
    tracing::info!("shutting down: health is NOT_SERVING");
    health.set_service_status("", ServingStatus::NotServing).await;
    if !args.drain_delay.is_zero() {
        // Still accepting and serving, so a load balancer that has not yet
        // seen NOT_SERVING loses nothing.
        tokio::time::sleep(args.drain_delay).await;
    }
    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "a gateway worker panicked".to_string()))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| e.to_string())?;
    for worker in joined {
        if let Err(error) = worker? {
            tracing::error!(%error, "a gateway worker failed");
        }
    }
    background.abort_all();
    let _one = flushing.lock().await;
    shared.meter.flush(&apikeys, &shared.quotas).await;
    if !shared.meter.is_empty() {
        tracing::error!("apikeys did not take the last usage counts; they are lost");
    }
    Ok(())
}

/// The whole life of the gateway process, as `kit::server::main` is for
/// the other services. `args` includes the program name.
pub fn main(args: Vec<std::ffi::OsString>) -> ExitCode {
    let config: Config = match kit::config::parse_from(args) {
        Ok(c) => c,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // This runtime runs what is not a call: configuration reloads, the
    // change feed, usage flushes, key validations. Calls run on the workers.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("gateway: cannot start the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let args = config.server.clone();
        let telemetry = match kit::telemetry::init("gateway", &args) {
            Ok(t) => t,
            Err(error) => {
                eprintln!("gateway: {error}");
                return ExitCode::FAILURE;
            }
        };
        let addr: SocketAddr = args.listen_addr(DEFAULT_PORT);
        let workers = config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let code = match bind(addr, workers) {
            Err(error) => {
                tracing::error!(%addr, %error, "cannot listen");
                ExitCode::FAILURE
            }
            Ok(listener) => {
                let local = listener.first().and_then(|l| l.local_addr().ok()).unwrap_or(addr);
                if let Err(error) =
                    kit::server::start_admin("gateway", &args, addr, telemetry.prometheus()).await
                {
                    tracing::error!(%error, "cannot serve metrics");
                    telemetry.shutdown().await;
                    return ExitCode::FAILURE;
                }
                tracing::info!(service = "gateway", addr = %local, "listening on {local}");
                match serve(config, listener, kit::server::shutdown_signal()).await {
                    Ok(()) => {
                        tracing::info!(service = "gateway", "stopped");
                        ExitCode::SUCCESS
                    }
                    Err(error) => {
                        tracing::error!(service = "gateway", %error, "stopped with an error");
                        ExitCode::FAILURE
                    }
                }
            }
        };
        telemetry.shutdown().await;
        code
    })
}
