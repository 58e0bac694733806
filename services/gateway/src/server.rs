//! The gateway's listeners and connections: SO_REUSEPORT sockets, one
//! worker thread per socket, the accept loop, and the routing of each
//! request to health, the console, gRPC-Web or the gRPC stack.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tonic::body::Body;
use tower::util::BoxCloneService;
use tower::{Service, ServiceExt};

use kit::tls::{MaybeTls, MeshTls};

use crate::{Config, console, guard, stack, web};

pub(crate) type Stack = BoxCloneService<Request<Body>, Response<Body>, Infallible>;
pub(crate) type Health = Stack;

/// How the gateway treats each client connection, from its flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionPolicy {
    max_streams: u32,
    max_header_bytes: u32,
    limits: guard::Limits,
    rate: u32,
    burst: u32,
    first_call: Duration,
    idle: Duration,
}

impl ConnectionPolicy {
    pub(crate) fn of(config: &Config) -> ConnectionPolicy {
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
pub(crate) async fn admit_and_call(
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
pub(crate) async fn accept(
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
