//! Outgoing calls to other services: one client span per call, the W3C
//! trace context and the correlation id passed on in metadata, and a
//! deadline on every call (the caller's remaining one, when shorter).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use opentelemetry::propagation::Injector;
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::Service;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::balance::{Backoff, Pool, RETRY_WINDOW, Replayable, Targets};
use crate::deadline::encode_grpc_timeout;
use crate::rpc_telemetry::{
    CORRELATION_ID, Forwarded, RpcSpan, SpanKind, current_call, grpc_status, split_path, status_message,
};
use crate::tls::{Connector, MeshTls};

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("`{uri}` is not a usable service address: {reason}")]
pub struct ClientError {
    uri: String,
    reason: String,
}

/// Channels to every instance of another service, with telemetry and
/// deadlines; give it to any generated client's `new`. The address may be a
/// list, or a name with many instances (resolved again every few seconds):
/// each call goes to one of them by the power of two choices, and a call
/// that reached none is sent again (see [`crate::balance`]).
#[derive(Debug, Clone)]
pub struct Upstream {
    pool: Arc<Pool<Channel>>,
    timeout: Duration,
    peer: Arc<str>,
}

impl Upstream {
    /// Lazily connected channels to `uri` (e.g. `http://127.0.0.1:50051`,
    /// several such separated by commas, or a name with many addresses);
    /// each call gets at most `timeout`.
    pub fn new(uri: &str, timeout: Duration) -> Result<Self, ClientError> {
        Upstream::with_tls(uri, timeout, None)
    }

    /// As [`Upstream::new`]; an `https://` address is called over mutual
    /// TLS with `tls` (the service's own certificate), which it then needs.
    pub fn with_tls(uri: &str, timeout: Duration, tls: Option<&Arc<MeshTls>>) -> Result<Self, ClientError> {
        let fail = |reason: String| ClientError {
            uri: uri.to_string(),
            reason,
        };
        let targets = Targets::parse(uri).map_err(fail)?;
        // tonic would insist on its own TLS for https; the connector does it.
        let tls = match (targets.scheme == http::uri::Scheme::HTTPS, tls) {
            (true, Some(tls)) => Some(tls.clone()),
            (true, None) => {
                return Err(fail(
                    "https:// needs the mesh's TLS files (--tls-cert, --tls-key, --tls-ca)".into(),
                ));
            }
            (false, _) => None,
        };
        let mut endpoints = Vec::new();
        for target in &targets.list {
            let endpoint = Endpoint::from_shared(format!("http://{}", target.authority))
                .map_err(|e| fail(e.to_string()))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30));
            endpoints.push(endpoint);
        }
        let peer = targets.list[0].authority.to_string();
        let pool = Pool::new(targets, move |address, target| {
            let index = endpoints
                .iter()
                .position(|e| e.uri().authority() == Some(&target.authority))
                .unwrap_or(0);
            // One connector for both, so the HTTP/2 client is compiled once.
            endpoints[index]
                .clone()
                .connect_with_connector_lazy(Connector::dialing(tls.clone(), address))
        });
        Ok(Upstream {
            pool: Arc::new(pool),
            timeout,
            peer: peer.into(),
        })
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for the instance it is given.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_string();
        let (service, method) = split_path(&path);
        let rpc = client_span(&path, &service, &method, &self.peer, started);
        let span = rpc.span.clone();
        let call = current_call();
        let headers = request.headers_mut();
        let context = span.context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut HeaderInjector(headers))
        });
        let correlation_id = call
            .as_ref()
            .map(|c| c.correlation_id.clone())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Ok(value) = HeaderValue::from_str(&correlation_id) {
            headers.insert(CORRELATION_ID, value);
        }
        // The caller's remaining time caps this call's.
        let remaining = call
            .and_then(|c| c.deadline)
            .map(|d| d.saturating_duration_since(started));
        let budget = remaining.map_or(self.timeout, |r| r.min(self.timeout));
        if let Ok(value) = HeaderValue::from_str(&encode_grpc_timeout(budget)) {
            headers.insert("grpc-timeout", value);
        }

        let pool = self.pool.clone();
        Box::pin(async move {
            let deadline = tonic::Code::DeadlineExceeded as i32;
            if budget.is_zero() {
                let status = tonic::Status::deadline_exceeded(format!("no time left to call {path}"));
                rpc.finish(deadline, Some(status.message()));
                return Ok(status.into_http());
            }
            let sent = tracing::Instrument::instrument(send(pool, request, budget), span.clone());
            match tokio::time::timeout(budget, sent).await {
                Ok(Ok(response)) => {
                    // tonic servers answer an expired grpc-timeout with CANCELLED; after
                    // our own deadline has passed, that is DEADLINE_EXCEEDED.
                    let code = grpc_status(response.headers());
                    if code == Some(tonic::Code::Cancelled as i32) && started.elapsed() >= budget {
                        let status = tonic::Status::deadline_exceeded(format!(
                            "{path} did not answer within {budget:?}"
                        ));
                        rpc.finish(deadline, Some(status.message()));
                        return Ok(status.into_http());
                    }
                    if let Some(code) = code {
                        rpc.finish(code, status_message(response.headers()).as_deref());
                        return Ok(response);
                    }
                    Ok(rpc.observe(response))
                }
                // The channel enforces the grpc-timeout it sends and fails with
                // TimeoutExpired, which tonic would show as CANCELLED; it is a deadline.
                Ok(Err(error)) if timed_out(&error) => {
                    let status =
                        tonic::Status::deadline_exceeded(format!("{path} did not answer within {budget:?}"));
                    rpc.finish(deadline, Some(status.message()));
                    Ok(status.into_http())
                }
                // Refused, reset, GOAWAY, closed before the response: the
                // gRPC spec makes every transport failure UNAVAILABLE (tonic
                // would show it as UNKNOWN).
                Ok(Err(error)) => {
                    let status = tonic::Status::unavailable(format!(
                        "{path} could not be sent: {}",
                        error_chain(&error)
                    ));
                    rpc.finish(tonic::Code::Unavailable as i32, Some(status.message()));
                    Ok(status.into_http())
                }
                Err(_) => {
                    let status =
                        tonic::Status::deadline_exceeded(format!("{path} did not answer within {budget:?}"));
                    rpc.finish(deadline, Some(status.message()));
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// Sends `request` to an instance; a call that reached none is sent again
/// for up to half its budget (at most [`RETRY_WINDOW`]), so a deadline
/// still ends it as DEADLINE_EXCEEDED. An instance whose transport failed
/// is passed over for a moment while another can be chosen.
async fn send(
    pool: Arc<Pool<Channel>>,
    request: Request<Body>,
    budget: Duration,
) -> Result<Response<Body>, tonic::transport::Error> {
    let (parts, body) = request.into_parts();
    let body = Replayable::new(body);
    let mut backoff = Backoff::new((budget / 2).min(RETRY_WINDOW));
    loop {
        let Some(member) = pool.choose().await else {
            if backoff.wait().await {
                pool.resolve().await;
                continue;
            }
            let names: Vec<&str> = pool.targets().list.iter().map(|t| t.authority.as_str()).collect();
            return Ok(
                tonic::Status::unavailable(format!("{} resolves to no address", names.join(","))).into_http(),
            );
        };
        let _in_flight = member.load.start();
        let mut channel = member.value.clone();
        let sent = match tower::ServiceExt::ready(&mut channel).await {
            Ok(ready) => {
                ready
                    .call(Request::from_parts(parts.clone(), Body::new(body.attempt())))
                    .await
            }
            Err(error) => Err(error),
        };
        match sent {
            Err(error) if body.untouched() && !timed_out(&error) => {
                member.load.refused();
                tracing::debug!(instance = %member.address, %error, "call sent again");
                if !backoff.wait().await {
                    return Err(error);
                }
            }
            Err(error) => {
                member.load.refused();
                return Err(error);
            }
            other => return other,
        }
    }
}

/// A client span named and attributed by the OpenTelemetry RPC conventions,
/// a child of the current span.
fn client_span(path: &str, service: &str, method: &str, peer: &str, started: Instant) -> RpcSpan {
    let span = tracing::info_span!(
        "rpc.client",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        server.address = %peer,
    );
    RpcSpan {
        span,
        kind: SpanKind::Client,
        service: service.into(),
        method: method.into(),
        started,
        observed: true,
        decided_here: true,
        known: true,
    }
}

/// The client side of a call a proxy passes on: a span that is a child of
/// the current one, whose context goes upstream in the request's headers,
/// and the `rpc.client.duration` metric.
#[derive(Debug)]
pub struct ForwardSpan(RpcSpan);

impl ForwardSpan {
    /// Starts the span for `request` to `peer` and writes its trace context into the headers.
    pub fn start(request: &mut Request<Body>, peer: &str) -> ForwardSpan {
        // A public package's method that no contract defines is one series.
        let path = if crate::rpc_telemetry::known_method(request.uri().path()) {
            request.uri().path().to_string()
        } else {
            format!("/{0}/{0}", crate::rpc_telemetry::UNKNOWN)
        };
        let (service, method) = split_path(&path);
        let rpc = client_span(&path, &service, &method, peer, Instant::now());
        let context = rpc.span.context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut HeaderInjector(request.headers_mut()))
        });
        ForwardSpan(rpc)
    }

    /// Closes the span when the upstream's response ends; the response is
    /// marked [`Forwarded`], so the proxy's server span does not log the
    /// upstream's error a second time.
    pub fn observe(self, mut response: Response<Body>) -> Response<Body> {
        response.extensions_mut().insert(Forwarded);
        if let Some(code) = grpc_status(response.headers()) {
            self.0.finish(code, status_message(response.headers()).as_deref());
            return response;
        }
        self.0.observe(response)
    }
}

/// An error and its causes, as one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Writes W3C trace context into HTTP/2 headers (gRPC metadata).
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::Upstream;
    use crate::rpc_telemetry::{CallContext, in_call};
    use crate::{ServerArgs, Service};

    /// A server whose health check takes 3s, standing in for a slow upstream.
    async fn slow_upstream() -> crate::Running {
        let mut args = ServerArgs::for_tests("sqlite::memory:");
        args.fault = vec!["grpc.health.v1.Health/Check:latency=3s".parse().unwrap()];
        crate::server::spawn(Service::new("slow"), &args, 0)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_callers_remaining_deadline_caps_the_call() {
        let slow = slow_upstream().await;
        // The channel alone would wait 10s; the call being handled has 300ms left.
        let mut health = HealthClient::new(Upstream::new(&slow.uri(), Duration::from_secs(10)).unwrap());
        let call = CallContext {
            correlation_id: "test".into(),
            deadline: Some(Instant::now() + Duration::from_millis(300)),
        };
        let started = Instant::now();
        let status = in_call(call, health.check(HealthCheckRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "cut at the caller's deadline: {:?}",
            started.elapsed()
        );
        slow.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_call_outside_any_request_gets_the_channel_timeout() {
        let slow = slow_upstream().await;
        let mut health = HealthClient::new(Upstream::new(&slow.uri(), Duration::from_millis(200)).unwrap());
        let status = health.check(HealthCheckRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        slow.stop().await.unwrap();
    }
}
