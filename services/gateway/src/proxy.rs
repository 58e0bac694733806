//! Forwarding: a few HTTP/2 connections to each upstream, requests sent on
//! with their bodies untouched (unary and streaming alike), answers streamed
//! back as they come.

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kit::balance::{Backoff, Member, Pool, RETRY_WINDOW, Replayable, Targets};
use kit::tls::{ClientStream, MaybeTls, MeshTls};
use tonic::body::Body;

/// Most HTTP/2 connections kept to each upstream: one per gateway worker
/// thread (its connection task runs on that worker, beside the calls that
/// use it), which also lets a multi-core upstream use its cores.
const CONNECTIONS_PER_UPSTREAM: usize = 16;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Names the calling thread as gateway worker `index`, whose calls use
/// their own connection to each upstream.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

type Sender = hyper::client::conn::http2::SendRequest<Body>;

/// A backend a route (or canary) sends calls to: one or more addresses (a
/// DNS name may stand for many instances, resolved again every few
/// seconds), each instance with its HTTP/2 connections, made when first
/// needed and again when one closes.
/// Each call goes to one instance by the power of two choices; a call that
/// never reached one is sent again (see [`kit::balance`]).
#[derive(Debug)]
pub struct Backend {
    url: String,
    tls: Option<Arc<MeshTls>>,
    pool: Arc<Pool<Connections>>,
}

/// One instance's connections, one slot per gateway worker.
#[derive(Debug)]
struct Connections {
    senders: Vec<RwLock<Option<Sender>>>,
    connecting: Vec<tokio::sync::Mutex<()>>,
}

impl Connections {
    fn new() -> Connections {
        Connections {
            senders: (0..CONNECTIONS_PER_UPSTREAM).map(|_| RwLock::new(None)).collect(),
            connecting: (0..CONNECTIONS_PER_UPSTREAM)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    fn open(&self, slot: usize) -> Option<Sender> {
        let sender = self.senders[slot].read().ok()?.clone()?;
        (!sender.is_closed()).then_some(sender)
    }
}

impl Backend {
    /// Checks `url`: `http://host:port`, nothing after the port, or several
    /// such separated by commas.
    pub fn new(url: &str) -> Result<Backend, String> {
        Backend::with_tls(url, None)
    }

    /// As [`Backend::new`]; `https://host:port` is called over mutual TLS
    /// with `tls` (the gateway's mesh identity), which it then needs.
    pub fn with_tls(url: &str, tls: Option<Arc<MeshTls>>) -> Result<Backend, String> {
        let targets = Targets::parse(url)?;
        let tls = match (targets.scheme == Scheme::HTTPS, tls) {
            (true, Some(tls)) => Some(tls),
            (true, None) => {
                return Err(format!(
                    "{url:?} is https, which needs the mesh's TLS files (--tls-cert, --tls-key, --tls-ca): write http://HOST:PORT"
                ));
            }
            (false, _) => None,
        };
        Ok(Backend {
            url: url.trim_end_matches('/').to_string(),
            tls,
            pool: Arc::new(Pool::new(targets, |_, _| Connections::new())),
        })
    }

    /// `host:port` of the first address, as client spans name the peer.
    pub fn peer(&self) -> &str {
        self.pool.targets().list[0].authority.as_str()
    }

    /// The address as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection to `instance` for the next call: an open one, or a new
    /// one made by one caller while the others of the same slot wait for it.
    async fn sender(&self, instance: &Member<Connections>) -> Result<Sender, String> {
        let slot = WORKER.with(std::cell::Cell::get) % CONNECTIONS_PER_UPSTREAM;
        let connections = &instance.value;
        if let Some(sender) = connections.open(slot) {
            return Ok(sender);
        }
        let _one = connections.connecting[slot].lock().await;
        if let Some(sender) = connections.open(slot) {
            return Ok(sender);
        }
        let address = instance.address;
        let stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to {address} timed out"))?
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let stream = match &self.tls {
            None => MaybeTls::Plain(stream),
            Some(tls) => {
                let host = self.pool.targets().list[instance.target].host();
                let stream = tokio::time::timeout(Duration::from_secs(2), tls.connect(stream, host))
                    .await
                    .map_err(|_| format!("TLS handshake with {address} timed out"))?
                    .map_err(|e| format!("TLS handshake with {address} failed: {e}"))?;
                MaybeTls::Tls(stream)
            }
        };
        let sender = handshake(TokioIo::new(stream), &self.url).await?;
        if let Ok(mut s) = connections.senders[slot].write() {
            *s = Some(sender.clone());
        }
        Ok(sender)
    }

    /// Sends the call on and answers with the upstream's response, or
    /// UNAVAILABLE when no instance can be reached. A call no instance
    /// received is sent again, for up to [`RETRY_WINDOW`].
    pub async fn forward(self: Arc<Self>, request: Request<Body>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().cloned();
        // A body the guard cut off is answered with what was wrong with it,
        // not with what the upstream made of the reset.
        let violation = parts.extensions.get::<crate::guard::BodyViolation>().cloned();
        // The upstream needs none of the gateway's own extensions, and each
        // attempt sends a copy of the head: a copy without them is cheaper.
        parts.extensions = http::Extensions::new();
        let body = Replayable::new(body);
        let mut backoff = Backoff::new(RETRY_WINDOW);
        let error = loop {
            let Some(instance) = self.pool.choose().await else {
                if backoff.wait().await {
                    self.pool.resolve().await;
                    continue;
                }
                break format!("{} resolves to no address", self.url);
            };
            let mut uri = http::uri::Parts::default();
            // The connection is TLS or not; the request says http as h2c does.
            uri.scheme = Some(Scheme::HTTP);
            uri.authority = Some(self.pool.targets().list[instance.target].authority.clone());
            uri.path_and_query = path.clone();
            parts.uri = match Uri::from_parts(uri) {
                Ok(uri) => uri,
                Err(_) => {
                    return tonic::Status::invalid_argument("the request path is not a gRPC method's")
                        .into_http();
                }
            };
            let in_flight = instance.load.start();
            let sent = match self.sender(&instance).await {
                Ok(mut sender) => sender
                    .send_request(Request::from_parts(parts.clone(), Body::new(body.attempt())))
                    .await
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error),
            };
            drop(in_flight);
            if let Some(v) = violation.as_ref().and_then(|v| v.get()) {
                return v.status().into_http();
            }
            match sent {
                Ok(response) => {
                    let mut response = response.map(Body::new);
                    response.extensions_mut().insert(crate::stack::Reached);
                    return response;
                }
                Err(error) => {
                    instance.load.refused();
                    if !body.untouched() {
                        break error;
                    }
                    tracing::debug!(upstream = %self.url, instance = %instance.address, %error, "call sent again");
                    if !backoff.wait().await {
                        break error;
                    }
                }
            }
        };
        tracing::warn!(upstream = %self.url, error = %error, "upstream unreachable");
        // The upstream's address is the mesh's business, not the caller's.
        let package =
            crate::config::package_of(path.as_ref().map_or("", |p| p.path())).unwrap_or("the service");
        tonic::Status::unavailable(format!(
            "{package} is unreachable behind the gateway; retry shortly"
        ))
        .into_http()
    }
}

/// Opens HTTP/2 on a connected stream and runs the connection on its own task.
async fn handshake(io: TokioIo<ClientStream>, url: &str) -> Result<Sender, String> {
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        // Larger windows than the 64 KiB default keep big messages and
        // many concurrent streams from stalling on flow control.
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .handshake(io)
        .await
        .map_err(|e| format!("HTTP/2 handshake with {url} failed: {e}"))?;
    let url = url.to_string();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(upstream = %url, %error, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// The gRPC status of a response, if it is in the headers (trailers-only).
pub fn header_status(response: &Response<Body>) -> Option<i32> {
    response.headers().get("grpc-status")?.to_str().ok()?.parse().ok()
}

pin_project_lite::pin_project! {
    /// A response body that reports the call's gRPC status once, when the
    /// trailers pass (or UNKNOWN when the stream ends without one).
    pub struct Observed<F: FnOnce(i32)> {
        #[pin]
        inner: Body,
        report: Option<F>,
    }
}

impl<F: FnOnce(i32)> Observed<F> {
    /// Wraps `inner`; `report` gets the status.
    pub fn new(inner: Body, report: F) -> Self {
        Observed {
            inner,
            report: Some(report),
        }
    }
}

impl<F: FnOnce(i32)> HttpBody for Observed<F> {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let code = frame
                    .trailers_ref()
                    .and_then(|t| t.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                if let (Some(code), Some(report)) = (code, this.report.take()) {
                    report(code);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(report) = this.report.take() {
                    report(tonic::Code::Unknown as i32);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn upstreams_are_plain_host_and_port() {
        assert!(Backend::new("http://127.0.0.1:50051").is_ok());
        assert!(Backend::new("http://127.0.0.1:50051/").is_ok());
        for bad in [
            "127.0.0.1:50051",
            "http://127.0.0.1",
            "http://h:1/path",
            "ftp://h:1",
            "",
        ] {
            assert!(Backend::new(bad).is_err(), "{bad}");
        }
    }
}
