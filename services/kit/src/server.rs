//! Server bootstrap: health and reflection beside the service's own
//! contracts, limits, telemetry and faults as one tower stack, and a graceful
//! shutdown that turns health NOT_SERVING before draining.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tower::Service as TowerService;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::authz::{AuthorizeLayer, Callers};
use crate::config::{ServerArgs, ServiceConfig};
use crate::fault::FaultLayer;
use crate::identity::IdentityLayer;
use crate::metrics::PrometheusReader;
use crate::rpc_telemetry::RpcTelemetryLayer;
use crate::tls::{Identity, MeshTls};
use crate::{BoxError, telemetry};

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The reflection service could not be built from the descriptor sets.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A descriptor set could not be read.
    #[error("cannot read a descriptor set: {0}")]
    Descriptors(#[from] prost::DecodeError),
    /// The transport failed.
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("server task ended abnormally: {0}")]
    Crashed(String),
    /// The TLS files could not be used.
    #[error("mutual TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// In-flight calls were still running when the shutdown timeout ran out.
    #[error("in-flight calls did not finish within {0:?}; stopped anyway")]
    ShutdownTimedOut(Duration),
}

/// A service ready to serve: its gRPC routes and what health and reflection say about it.
pub struct Service {
    name: &'static str,
    routes: RoutesBuilder,
    services: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    callers: Callers,
    on_stop: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("services", &self.services)
            .finish()
    }
}

impl Service {
    /// An empty service called `name` (its `service.name` in traces).
    pub fn new(name: &'static str) -> Self {
        Service {
            name,
            routes: RoutesBuilder::default(),
            services: Vec::new(),
            descriptor_sets: Vec::new(),
            callers: &[],
            on_stop: None,
        }
    }

    /// What to do once the server has stopped and drained (hand work over
    /// to the other replicas, say); given at most five seconds.
    pub fn on_stop(mut self, stop: impl Future<Output = ()> + Send + 'static) -> Self {
        self.on_stop = Some(Box::pin(stop));
        self
    }

    /// Who may call which methods under mutual TLS (the call table); with
    /// none, only the operator identity may. Without TLS there are no
    /// identities and nothing is checked.
    pub fn callers(mut self, callers: Callers) -> Self {
        self.callers = callers;
        self
    }

    /// Serves a generated gRPC server; health reports it by its full name.
    pub fn serving<S>(mut self, server: S) -> Self
    where
        S: TowerService<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes.add_service(server);
        self.services.push(S::NAME);
        self
    }

    /// Registers an encoded descriptor set with server reflection.
    pub fn reflect(mut self, descriptor_set: &'static [u8]) -> Self {
        self.descriptor_sets.push(descriptor_set);
        self
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// A server running on a Tokio task, for tests and for embedding.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(ServeError::Crashed(join.to_string())),
        }
    }

    /// `http://addr`, for clients.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds `args`' listen address (or `default_port`) and serves on a task
/// until [`Running::stop`].
pub async fn spawn(service: Service, args: &ServerArgs, default_port: u16) -> Result<Running, ServeError> {
    let addr = args.listen_addr(default_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let (stop, stopped) = oneshot::channel();
    let args = args.clone();
    let task = tokio::spawn(async move {
        serve(service, &args, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
    })
}

/// Serves on `listener` until `shutdown` resolves, then: health NOT_SERVING,
/// keep serving for the drain delay, refuse new calls, let in-flight calls
/// finish within the shutdown timeout.
pub async fn serve(
    service: Service,
    args: &ServerArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_reporting(service, args, listener, shutdown, HealthReporter::new()).await
}

/// As [`serve`], reporting health through `health`, which the admin port
/// may answer probes from too.
pub async fn serve_reporting(
    service: Service,
    args: &ServerArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    health: HealthReporter,
) -> Result<(), ServeError> {
    let Service {
        name,
        mut routes,
        services,
        descriptor_sets,
        callers,
        on_stop,
    } = service;
    let tls = MeshTls::from_args(&args.tls)?;

    let health_server = HealthServer::new(HealthService::from_health_reporter(health.clone()));
    for s in &services {
        health.set_service_status(*s, ServingStatus::Serving).await;
    }
    health.set_service_status("", ServingStatus::Serving).await;

    // grpcurl resolves even grpc.health.v1.Health/Check through reflection,
    // so health's and reflection's own contracts are registered too, and
    // google.rpc's error details so clients can print BadRequest and friends.
    let mut reflection = tonic_reflection::server::Builder::configure();
    let mut reflection_alpha = tonic_reflection::server::Builder::configure();
    for set in &descriptor_sets {
        crate::rpc_telemetry::register_methods(set)?;
    }
    for set in [
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ]
    .iter()
    .chain(&descriptor_sets)
    {
        reflection = reflection.register_encoded_file_descriptor_set(set);
        reflection_alpha = reflection_alpha.register_encoded_file_descriptor_set(set);
    }
    routes.add_service(health_server);
    routes.add_service(reflection.build_v1()?);
    routes.add_service(reflection_alpha.build_v1alpha()?);

    let (stop, stopped) = oneshot::channel::<()>();
    let layers = tower::ServiceBuilder::new()
        // Outermost, so the span covers queueing, faults and the handler.
        .layer(RpcTelemetryLayer::new(args.handler_timeout))
        // Inside the span, so a refusal is traced and counted; before the
        // limit, so a refused caller takes no slot.
        // A mesh certificate always names an identity (loading checks it); without
        // one, nobody's trust domain matches and every method but health is refused.
        .option_layer(tls.as_ref().map(|t| {
            let own = t.identity().unwrap_or_else(Identity::nobody);
            AuthorizeLayer::new(name, callers, &own)
        }))
        // After the caller is authorized: identity headers only from the
        // gateway, request trailers dropped, before any handler reads metadata.
        .layer(IdentityLayer::new(tls.is_some()))
        // Bounds the work in progress across all connections; calls past it wait.
        .layer(GlobalConcurrencyLimitLayer::new(args.concurrency_limit))
        // Inside the limit, so injected latency occupies a slot as real work would.
        .layer(FaultLayer::new(args.fault.clone()));
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(layers)
        .add_routes(routes.routes());
    let stopped = async {
        let _ = stopped.await;
    };
    let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match tls {
        // The builder's tcp_nodelay applies only to listeners tonic binds
        // itself; without it on ours, small responses wait out the peer's
        // delayed ACK (40 ms on Linux).
        None => Box::pin(
            router
                .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), stopped),
        ),
        Some(tls) => Box::pin(router.serve_with_incoming_shutdown(tls.incoming(listener), stopped)),
    };
    let mut server = server;

    tokio::select! {
        result = &mut server => return result.map_err(ServeError::from),
        () = shutdown => {}
    }
    tracing::info!(service = name, "shutting down: health is NOT_SERVING");
    for s in &services {
        health.set_service_status(*s, ServingStatus::NotServing).await;
    }
    health.set_service_status("", ServingStatus::NotServing).await;
    if !args.drain_delay.is_zero() {
        tokio::select! {
            result = &mut server => return result.map_err(ServeError::from),
            () = tokio::time::sleep(args.drain_delay) => {}
        }
    }
    tracing::info!(
        service = name,
        "draining: refusing new calls, finishing in-flight ones"
    );
    let _ = stop.send(());
    let drained = match tokio::time::timeout(args.shutdown_timeout, &mut server).await {
        Ok(result) => result.map_err(ServeError::from),
        Err(_) => Err(ServeError::ShutdownTimedOut(args.shutdown_timeout)),
    };
    if let Some(on_stop) = on_stop
        && tokio::time::timeout(Duration::from_secs(5), on_stop)
            .await
            .is_err()
    {
        tracing::warn!(
            service = name,
            "its last work at shutdown did not finish within 5 s"
        );
    }
    drained
}

/// Starts the admin port (Prometheus metrics) where `args` say, given where
/// gRPC listens, and logs its address.
pub async fn start_admin(
    name: &str,
    args: &ServerArgs,
    grpc: SocketAddr,
    metrics: PrometheusReader,
) -> Result<(), ServeError> {
    let Some(addr) = args.admin_addr(grpc) else {
        return Ok(());
    };
    let local = crate::metrics::start_admin(addr, metrics)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    tracing::info!(service = name, admin = %local, "metrics at http://{local}/metrics");
    Ok(())
}

/// As [`start_admin`], and the gRPC health service in plaintext there, for
/// probes that cannot speak the mesh's TLS, such as the kubelet's.
pub async fn start_admin_with_health(
    name: &str,
    args: &ServerArgs,
    grpc: SocketAddr,
    metrics: PrometheusReader,
    health: HealthReporter,
) -> Result<(), ServeError> {
    let Some(addr) = args.admin_addr(grpc) else {
        return Ok(());
    };
    let local = crate::metrics::start_admin_with_health(addr, metrics, health)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    tracing::info!(service = name, admin = %local, "metrics at http://{local}/metrics");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The whole life of a service process: parse flags (`args` includes the
/// program name), start telemetry, build the service, serve until SIGTERM or
/// SIGINT, flush spans. Returns the process exit code.
pub fn main<C, F, Fut>(args: Vec<std::ffi::OsString>, build: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<Service, BoxError>>,
{
    let config: C = match crate::config::parse_from(args) {
        Ok(config) => config,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot start the Tokio runtime: {error}", C::NAME);
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server_args = config.server().clone();
        let telemetry = match telemetry::init(C::NAME, &server_args) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("{}: {error}", C::NAME);
                return ExitCode::FAILURE;
            }
        };
        let code = match run(config, build, telemetry.prometheus()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(service = C::NAME, error = %error, "stopped with an error");
                ExitCode::FAILURE
            }
        };
        telemetry.shutdown().await;
        code
    })
}

async fn run<C, F, Fut>(config: C, build: F, metrics: PrometheusReader) -> Result<(), BoxError>
where
    C: ServiceConfig,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<Service, BoxError>>,
{
    let args = config.server().clone();
    let addr = args.listen_addr(C::DEFAULT_PORT);
    // Bind before the database work so a taken port is reported at once.
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    // Not ready until built: a probe (or `up`) that asks while the database
    // is connected and migrated is told NOT_SERVING, so a rollout does not
    // count this replica as available before it can answer. (tonic-health
    // reports SERVING from creation.)
    let health = HealthReporter::new();
    health.set_service_status("", ServingStatus::NotServing).await;
    // From the configured address, so port 0 (tests) gives the admin port 0 too.
    start_admin_with_health(C::NAME, &args, addr, metrics, health.clone()).await?;
    let service = build(config).await?;
    tracing::info!(service = C::NAME, addr = %local, "listening on {local}");
    serve_reporting(service, &args, listener, shutdown_signal(), health).await?;
    tracing::info!(service = C::NAME, "stopped");
    Ok(())
}
