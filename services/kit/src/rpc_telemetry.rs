//! One server span per RPC, named and attributed by the OpenTelemetry RPC
//! conventions, continuing the caller's W3C trace context, and an
//! `x-correlation-id` made when the caller sent none.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::deadline::{deadline, grpc_timeout};

/// The metadata key of the correlation id.
pub const CORRELATION_ID: &str = "x-correlation-id";

/// What a handler knows about the call it serves, for passing on to the calls it makes.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The correlation id, received or made.
    pub correlation_id: String,
    /// When the caller stops waiting, from its `grpc-timeout`.
    pub deadline: Option<Instant>,
}

tokio::task_local! {
    static CALL: CallContext;
}

/// Runs `future` as if it handled a call with `context`, for work that
/// serves a call outside the RPC task (and for tests).
pub async fn in_call<F: std::future::Future>(context: CallContext, future: F) -> F::Output {
    CALL.scope(context, future).await
}

/// The context of the call being handled on this task, if any.
pub fn current_call() -> Option<CallContext> {
    CALL.try_with(Clone::clone).ok()
}

/// Wraps every call in a server span and a [`CallContext`], and answers
/// DEADLINE_EXCEEDED when the handler outlives the call's deadline.
#[derive(Debug, Clone)]
pub struct RpcTelemetryLayer {
    handler_timeout: Duration,
}

impl RpcTelemetryLayer {
    /// The layer; no call is handled longer than `handler_timeout`.
    pub fn new(handler_timeout: Duration) -> Self {
        RpcTelemetryLayer { handler_timeout }
    }
}

impl<S> Layer<S> for RpcTelemetryLayer {
    type Service = RpcTelemetry<S>;

    fn layer(&self, inner: S) -> RpcTelemetry<S> {
        RpcTelemetry {
            inner,
            handler_timeout: self.handler_timeout,
        }
    }
}

/// The service made by [`RpcTelemetryLayer`].
#[derive(Debug, Clone)]
pub struct RpcTelemetry<S> {
    inner: S,
    handler_timeout: Duration,
}

impl<S> Service<Request<Body>> for RpcTelemetry<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let (path, known) = match known_method(request.uri().path()) {
            true => (request.uri().path().to_string(), true),
            // Labels, span names and log lines come from the contracts'
            // methods only: a caller's random paths are one series.
            false => (format!("/{UNKNOWN}/{UNKNOWN}"), false),
        };
        let (service, method) = split_path(&path);
        let correlation_id = request
            .headers()
            .get(CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Ok(value) = HeaderValue::from_str(&correlation_id) {
            // Handlers read the id from metadata like any other.
            request.headers_mut().insert(CORRELATION_ID, value);
        }
        let deadline = deadline(started, grpc_timeout(request.headers()), self.handler_timeout);
        let call = CallContext {
            correlation_id: correlation_id.clone(),
            deadline: Some(deadline),
        };

        // Health probes, reflection and span exports would drown the traces;
        // they get no span and no metrics.
        let observed = !service.starts_with("grpc.") && !service.starts_with("opentelemetry.");
        let span = if !observed {
            Span::none()
        } else {
            let span = tracing::info_span!(
                "rpc",
                otel.name = %path.trim_start_matches('/'),
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                ferrymesh.class = tracing::field::Empty,
                // What went wrong inside, for an INTERNAL answer (never sent to the caller).
                error.detail = tracing::field::Empty,
                ferrymesh.correlation_id = %correlation_id,
                // Set by the gateway once it knows them: the key's id (never
                // the key) and the stage, to find a key holder's calls.
                ferrymesh.api_key_id = tracing::field::Empty,
                ferrymesh.stage = tracing::field::Empty,
                // Set by handlers that know them (see `record_order_id`).
                ferrymesh.order_id = tracing::field::Empty,
                ferrymesh.execution_id = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&HeaderExtractor(request.headers()))
            });
            // Fails only when the span is disabled, and then there is nothing to link.
            let _ = span.set_parent(parent);
            let otel = span.context();
            let context = otel.span().span_context().clone();
            if context.is_valid() {
                span.record("trace_id", context.trace_id().to_string());
                span.record("span_id", context.span_id().to_string());
            }
            span
        };
        let rpc = RpcSpan {
            span: span.clone(),
            kind: SpanKind::Server,
            service: service.into(),
            method: method.into(),
            started,
            observed,
            decided_here: true,
            known,
        };

        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let handled = CALL.scope(
                call,
                tracing::Instrument::instrument(inner.call(request), span.clone()),
            );
            // Bounds the wait for the response head; a stream, once started, runs on.
            let mut response = match tokio::time::timeout_at(deadline.into(), handled).await {
                Ok(response) => response?,
                Err(_) => tonic::Status::deadline_exceeded(format!(
                    "{} was not answered within its deadline ({:?})",
                    path.trim_start_matches('/'),
                    deadline.saturating_duration_since(started)
                ))
                .into_http(),
            };
            if let Ok(value) = HeaderValue::from_str(&correlation_id) {
                response.headers_mut().insert(CORRELATION_ID, value);
            }
            let mut rpc = rpc;
            // A proxy's answer was decided, and logged, by the service it came from.
            rpc.decided_here = response.extensions().get::<Forwarded>().is_none();
            // An error sent as trailers-only carries grpc-status in the headers;
            // otherwise it comes in the trailers at the end of the body.
            if let Some(code) = grpc_status(response.headers()) {
                rpc.finish(code, status_message(response.headers()).as_deref());
                return Ok(response);
            }
            Ok(rpc.observe(response))
        })
    }
}

/// Which side of a call a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanKind {
    /// The service handling the call.
    Server,
    /// The service making the call.
    Client,
}

/// Marks a response a proxy passed on: its error was decided, and logged,
/// upstream, so the proxy's own span records it without logging it again.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded;

/// X-Ray's classes of a call's outcome, by who is to blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// It worked.
    Ok,
    /// The caller's fault: a bad argument, a missing resource, a refusal.
    Error,
    /// The caller was slowed down (RESOURCE_EXHAUSTED).
    Throttle,
    /// The server's fault: INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, ...
    Fault,
}

impl Class {
    /// The class of a gRPC status code.
    pub fn of(code: tonic::Code) -> Class {
        match code {
            tonic::Code::Ok => Class::Ok,
            tonic::Code::ResourceExhausted => Class::Throttle,
            tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss => Class::Fault,
            _ => Class::Error,
        }
    }

    /// `ok`, `error`, `throttle` or `fault`, as the `ferrymesh.class` attribute says.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Error => "error",
            Class::Throttle => "throttle",
            Class::Fault => "fault",
        }
    }
}

/// One call's span and what its metrics and log line need, until it ends.
#[derive(Debug)]
pub(crate) struct RpcSpan {
    pub(crate) span: Span,
    pub(crate) kind: SpanKind,
    pub(crate) service: Arc<str>,
    pub(crate) method: Arc<str>,
    pub(crate) started: Instant,
    /// False for health, reflection and span exports: no metrics, no log.
    pub(crate) observed: bool,
    /// False when a proxy passes the answer on.
    pub(crate) decided_here: bool,
    /// False for a path no contract defines (labelled `unknown`).
    pub(crate) known: bool,
}

impl RpcSpan {
    /// Wraps a response body so the span closes, with the call's status, when the trailers pass.
    pub(crate) fn observe(self, response: Response<Body>) -> Response<Body> {
        let client = self.kind == SpanKind::Client;
        response.map(|body| {
            Body::new(TracedBody {
                inner: body,
                rpc: Some(self),
                client,
                status_seen: false,
                ended: false,
            })
        })
    }

    /// Records the outcome on the span and in the metrics, and writes the
    /// call's log line: every error the server decided, once.
    pub(crate) fn finish(&self, code: i32, message: Option<&str>) {
        if !self.observed {
            return;
        }
        let elapsed = self.started.elapsed();
        let server = self.kind == SpanKind::Server;
        crate::metrics::record_call(server, &self.service, &self.method, code, elapsed);
        let span = &self.span;
        let name = tonic::Code::from_i32(code);
        let class = Class::of(name);
        span.record("rpc.grpc.status_code", code);
        if server {
            span.record("ferrymesh.class", class.as_str());
        }
        // By the OpenTelemetry RPC conventions, a server span is an error only
        // for codes that mean the server failed, not the caller; a client span
        // is an error for any code but OK.
        let error = if server {
            class == Class::Fault
        } else {
            class != Class::Ok
        };
        if error {
            span.record("otel.status_code", "ERROR");
        }
        let duration_ms = elapsed.as_micros() as f64 / 1000.0;
        let message = message.unwrap_or("");
        // One access line per call costs a third of a cheap read's throughput
        // at INFO, so, as in tower-http and tonic, a call that worked is DEBUG
        // (`--log-level info,kit::rpc_telemetry=debug` shows every call). An
        // error is logged once, by the server that decided it: the caller's
        // mistakes at INFO, throttling at WARN, the server's faults at ERROR.
        match (self.kind, class) {
            (SpanKind::Server, Class::Ok) if !self.known => {}
            (SpanKind::Server, _) if !self.known => {
                // Anyone can send these, as fast as they like: a line a second at most.
                if unknown_log_due() {
                    tracing::info!(parent: span, grpc_status = ?name, duration_ms, class = "error", "calls to methods no contract defines refused (logged once a second at most)")
                }
            }
            (SpanKind::Client, _) => {
                tracing::debug!(parent: span, grpc_status = ?name, duration_ms, "rpc call finished")
            }
            (SpanKind::Server, Class::Ok) => {
                tracing::debug!(parent: span, grpc_status = ?name, duration_ms, "rpc handled")
            }
            (SpanKind::Server, _) if !self.decided_here => {
                tracing::debug!(parent: span, grpc_status = ?name, duration_ms, class = class.as_str(), "rpc passed on an upstream's error")
            }
            (SpanKind::Server, Class::Error) => {
                tracing::info!(parent: span, grpc_status = ?name, grpc_message = message, duration_ms, class = "error", "rpc failed")
            }
            (SpanKind::Server, Class::Throttle) => {
                tracing::warn!(parent: span, grpc_status = ?name, grpc_message = message, duration_ms, class = "throttle", "rpc failed")
            }
            (SpanKind::Server, Class::Fault) => {
                tracing::error!(parent: span, grpc_status = ?name, grpc_message = message, duration_ms, class = "fault", "rpc failed")
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that closes its RPC span when the trailers pass. On
    /// the client side it also makes a broken transport UNAVAILABLE, as the
    /// gRPC spec says: a stream that errs, or ends before its status
    /// arrived, is answered as a status a caller can retry on.
    struct TracedBody {
        #[pin]
        inner: Body,
        rpc: Option<RpcSpan>,
        client: bool,
        status_seen: bool,
        ended: bool,
    }

    impl PinnedDrop for TracedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(rpc) = this.rpc.take() {
                // The client went away before the response was complete.
                rpc.finish(tonic::Code::Cancelled as i32, Some("the caller went away before the response was complete"));
            }
        }
    }
}

impl HttpBody for TracedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        let mut polled = this.inner.poll_frame(cx);
        if *this.client {
            polled = match polled {
                Poll::Ready(Some(Err(status))) => {
                    *this.ended = true;
                    Poll::Ready(Some(Ok(transport_broke(&format!(
                        "the stream broke: {}",
                        status.message()
                    )))))
                }
                Poll::Ready(None) if !*this.status_seen => {
                    *this.ended = true;
                    Poll::Ready(Some(Ok(transport_broke(
                        "the stream ended before its status arrived",
                    ))))
                }
                other => other,
            };
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(code) = grpc_status(trailers)
                {
                    *this.status_seen = true;
                    if let Some(rpc) = this.rpc.take() {
                        rpc.finish(code, status_message(trailers).as_deref());
                    }
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(rpc) = this.rpc.take() {
                    rpc.finish(status.code() as i32, Some(status.message()));
                }
            }
            Poll::Ready(None) => {
                if let Some(rpc) = this.rpc.take() {
                    rpc.finish(0, None);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // A client stream that ends without its status still owes the
        // trailers made up for it.
        self.ended || (self.inner.is_end_stream() && (self.status_seen || !self.client))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Trailers that end a call whose transport broke: UNAVAILABLE, which a
/// caller may retry (a call that took effect is made safe to repeat by its
/// idempotency key).
fn transport_broke(why: &str) -> Frame<bytes::Bytes> {
    let mut trailers = HeaderMap::new();
    let status = tonic::Status::unavailable(format!("the connection to the service broke: {why}"));
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", HeaderValue::from_static("14"));
    }
    Frame::trailers(trailers)
}

/// The status message in headers or trailers, percent-decoded.
pub(crate) fn status_message(headers: &HeaderMap) -> Option<String> {
    headers.get("grpc-message")?;
    tonic::Status::from_header_map(headers).map(|s| s.message().to_string())
}

/// Adds the order a handler works on to its call's span, so the order's
/// traces can be found by its id (`ferrymesh trace ORDER_ID`).
pub fn record_order_id(order_id: &str) {
    let span = Span::current();
    span.record("ferrymesh.order_id", order_id);
    span.set_attribute("ferrymesh.order_id", order_id.to_string());
}

/// Adds the workflow execution a handler works on to its call's span.
pub fn record_execution_id(execution_id: &str) {
    let span = Span::current();
    span.record("ferrymesh.execution_id", execution_id);
    span.set_attribute("ferrymesh.execution_id", execution_id.to_string());
}

pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// The label of every path no contract defines.
pub const UNKNOWN: &str = "unknown";

/// The contracts' methods (`/package.Service/Method`), from the descriptor
/// sets the process serves or routes; health and reflection count as known.
static KNOWN_METHODS: std::sync::RwLock<Option<std::collections::HashSet<Box<str>>>> =
    std::sync::RwLock::new(None);

/// Adds every method of `descriptor_set` (an encoded FileDescriptorSet) to
/// the known ones. Until something is registered every path counts as known.
pub fn register_methods(descriptor_set: &[u8]) -> Result<(), prost::DecodeError> {
    let set = <prost_types::FileDescriptorSet as prost::Message>::decode(descriptor_set)?;
    let Ok(mut known) = KNOWN_METHODS.write() else {
        return Ok(());
    };
    let known = known.get_or_insert_with(Default::default);
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                let full = if package.is_empty() {
                    format!("/{}/{}", service.name(), method.name())
                } else {
                    format!("/{package}.{}/{}", service.name(), method.name())
                };
                known.insert(full.into());
            }
        }
    }
    Ok(())
}

/// Whether `path` is a method the contracts define (or nothing is registered).
pub fn known_method(path: &str) -> bool {
    // Health, reflection and span exports: served by every process, or
    // by the trace sink from contracts it does not register.
    if path.starts_with("/grpc.") || path.starts_with("/opentelemetry.") {
        return true;
    }
    match KNOWN_METHODS.read() {
        Ok(known) => known.as_ref().is_none_or(|k| k.contains(path)),
        Err(_) => true,
    }
}

/// Whether a line about unknown methods may be written now (one a second).
fn unknown_log_due() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    now > last
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
pub(crate) fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_string(), method.to_string()),
        None => (trimmed.to_string(), String::new()),
    }
}

/// Reads W3C trace context from HTTP/2 headers (gRPC metadata).
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/ferrymesh.catalog.v1.CatalogService/GetProduct"),
            (
                "ferrymesh.catalog.v1.CatalogService".to_string(),
                "GetProduct".to_string()
            )
        );
    }
}
