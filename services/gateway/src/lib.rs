//! The gateway: the mesh's one public endpoint. A transparent HTTP/2 gRPC
//! proxy (hyper and tower, on the serving runtime that links no database)
//! that routes by path to the upstream serving each package and applies
//! its policies as a tower stack: API keys, throttling, quotas, stages and
//! canaries, metering. Key checks are cached and usage is counted in
//! memory, so no call waits on a network round trip but its key's first.

#![forbid(unsafe_code)]

mod args;
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
mod server;
pub mod stack;
pub mod web;

/// Generated code of the contracts the gateway calls (apikeys).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

/// Every contract's descriptors, for reflection of the public ones.
pub static EVERY_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ferrymesh_every_descriptor.bin"));

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower::util::BoxCloneService;

use kit::tls::MeshTls;

use crate::canary::CanaryRegistry;
use crate::config::Routes;
use crate::keys::{ApiKeysClient, Bearer, KeyCache};
use crate::limits::Quotas;
use crate::metering::Meter;
use crate::reflection::ReflectionCache;

pub use args::Config;
pub use server::bind;
use server::{ConnectionPolicy, Health, Stack, accept};

/// The gateway's default port.
pub const DEFAULT_PORT: u16 = 8080;

/// What every layer of the stack shares.
pub struct Shared {
    routes: arc_swap::ArcSwap<Routes>,
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
        self.routes.load_full()
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
    let mut upstreams = |url: &str| proxy::Backend::with_tls(url, tls.cloned()).map(Arc::new);
    let routes = config::parse(&path.display().to_string(), &text, &mut upstreams, canaries)
        .map_err(|e| e.to_string())?;
    Ok((text, routes))
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
    // SERVING only once the stack is built (tonic-health starts SERVING).
    health.set_service_status("", ServingStatus::NotServing).await;
    let canaries = CanaryRegistry::with_health(health.clone());
    // The gateway's own mesh identity, for every upstream hop.
    let tls = MeshTls::from_args(&args.tls)?;
    let (config_text, routes) = read_config(&config.config, &canaries, tls.as_ref())?;
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
        routes: arc_swap::ArcSwap::from_pointee(routes),
        generation: AtomicU64::new(1),
        keys: keys.clone(),
        quotas: quotas.clone(),
        meter: Meter::default(),
        reflection: ReflectionCache::default(),
        admin: blake3::hash(token.as_bytes()),
    });
    let console = console_of(&shared, &config);
    let flushing = Arc::new(tokio::sync::Mutex::new(()));

    let mut background = tokio::task::JoinSet::new();
    spawn_background(
        &mut background,
        &shared,
        &apikeys,
        &flushing,
        (config.config.clone(), config_text, canaries, tls.clone()),
    );
    let stack = build_stack(&shared, &args);
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
    join_workers(workers).await?;
    background.abort_all();
    let _one = flushing.lock().await;
    shared.meter.flush(&apikeys, &shared.quotas).await;
    if !shared.meter.is_empty() {
        tracing::error!("apikeys did not take the last usage counts; they are lost");
    }
    Ok(())
}

/// Waits for every worker thread to finish its connections.
async fn join_workers(
    workers: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
) -> Result<(), kit::BoxError> {
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
    Ok(())
}

/// The gateway's own loops beside the calls: the key change feed, usage
/// flushes, and the configuration file read again every second.
fn spawn_background(
    background: &mut tokio::task::JoinSet<()>,
    shared: &Arc<Shared>,
    apikeys: &ApiKeysClient,
    flushing: &Arc<tokio::sync::Mutex<()>>,
    (path, mut config_text, canaries, tls): (
        std::path::PathBuf,
        String,
        CanaryRegistry,
        Option<Arc<MeshTls>>,
    ),
) {
    let keys = shared.keys.clone();
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
        let shared = shared.clone();
        background.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match std::fs::read_to_string(&path) {
                    Ok(text) if text == config_text => {}
                    Ok(_) | Err(_) => match read_config(&path, &canaries, tls.as_ref()) {
                        Ok((text, routes)) => {
                            shared.keys.set_ttl(routes.limits.key_cache_ttl);
                            shared.routes.store(Arc::new(routes));
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
}

/// The web console over the gateway's state, reading what the flags name.
fn console_of(shared: &Arc<Shared>, config: &Config) -> Arc<console::Console> {
    Arc::new(console::Console::new(
        shared.clone(),
        console::Sources {
            metrics: config.metrics_targets.clone(),
            logs_dir: config.logs_dir.clone(),
            jaeger_url: config.jaeger_url.clone(),
            audit_url: config.audit_url.clone(),
        },
    ))
}

/// The tower stack every call goes through, outermost first.
fn build_stack(shared: &Arc<Shared>, args: &kit::config::ServerArgs) -> Stack {
    BoxCloneService::new(
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
    )
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
