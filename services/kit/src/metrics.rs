//! RED metrics by the OpenTelemetry RPC conventions: `rpc.server.duration`
//! and `rpc.client.duration` histograms (milliseconds) per service, method
//! and status code. They go out over OTLP when an endpoint is set, and are
//! served as Prometheus text on the service's admin port.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

/// Bucket bounds in milliseconds: fine below a millisecond, where calls
/// inside one machine land, up to the 60 s handler timeout.
const BOUNDS_MS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    60000.0,
];

struct Instruments {
    server: Histogram<f64>,
    client: Histogram<f64>,
    refused: Counter<u64>,
    handshakes_refused: Counter<u64>,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

fn instruments() -> &'static Instruments {
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("kit");
        Instruments {
            server: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("ms")
                .with_description("How long calls took to handle, by method and status code")
                .with_boundaries(BOUNDS_MS.to_vec())
                .build(),
            client: meter
                .f64_histogram("rpc.client.duration")
                .with_unit("ms")
                .with_description("How long outgoing calls took, by method and status code")
                .with_boundaries(BOUNDS_MS.to_vec())
                .build(),
            refused: meter
                .u64_counter("ferrymesh.authz.refused")
                .with_description("Calls refused because the caller's identity may not call the method")
                .build(),
            handshakes_refused: meter
                .u64_counter("ferrymesh.tls.handshakes_refused")
                .with_description(
                    "TLS connections refused at the handshake (no common CA, bad or slow client)",
                )
                .build(),
        }
    })
}

/// Counts one call refused by the call table, by caller and method.
pub(crate) fn record_refusal(service: &str, caller: &str, method: &str) {
    instruments().refused.add(
        1,
        &[
            KeyValue::new("service", service.to_string()),
            KeyValue::new("caller", caller.to_string()),
            KeyValue::new("rpc.method", method.to_string()),
        ],
    );
}

/// Counts one TLS handshake that failed or timed out.
pub(crate) fn record_handshake_refused() {
    instruments().handshakes_refused.add(1, &[]);
}

/// Records one finished call: server side when `server`, else client side.
/// The names are shared, not copied: this runs on every call.
pub(crate) fn record_call(server: bool, service: &Arc<str>, method: &Arc<str>, code: i32, elapsed: Duration) {
    let attributes = [
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.clone()),
        KeyValue::new("rpc.method", method.clone()),
        KeyValue::new("rpc.grpc.status_code", i64::from(code)),
    ];
    let ms = elapsed.as_secs_f64() * 1000.0;
    let instruments = instruments();
    if server {
        instruments.server.record(ms, &attributes);
    } else {
        instruments.client.record(ms, &attributes);
    }
}

/// The reader the Prometheus page collects from, shared with the meter provider.
#[derive(Debug, Clone, Default)]
pub struct PrometheusReader(Arc<ManualReader>);

impl MetricReader for PrometheusReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

impl PrometheusReader {
    /// Every metric so far, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut metrics = ResourceMetrics::default();
        if let Err(error) = self.collect(&mut metrics) {
            return format!("# metrics could not be collected: {error}\n");
        }
        render(&metrics)
    }
}

/// `rpc.server.duration` in `ms` as `rpc_server_duration_milliseconds`.
fn prometheus_name(name: &str, unit: &str) -> String {
    let base: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    match unit {
        "ms" => format!("{base}_milliseconds"),
        "s" => format!("{base}_seconds"),
        "By" => format!("{base}_bytes"),
        _ => base,
    }
}

fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = attributes
        .map(|kv| {
            let key: String = kv
                .key
                .as_str()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let value = kv
                .value
                .as_str()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{key}=\"{value}\"")
        })
        .collect();
    parts.sort();
    if let Some((key, value)) = extra {
        parts.push(format!("{key}=\"{value}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The text exposition format, written here: the OpenTelemetry Prometheus
/// exporter (opentelemetry-prometheus) is discontinued by its maintainers
/// (its last maintained release is 0.29; it depends on the unmaintained
/// `protobuf` crate), and the format for two histograms and a gauge is a
/// few lines. The console reads it back with prometheus-parse, so the two
/// sides are checked against each other by the audit test.
fn render(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    // Which build answers, for dashboards (and the console's mesh view).
    let _ = writeln!(
        out,
        "# HELP ferrymesh_build_info The ferrymesh version of this process"
    );
    let _ = writeln!(out, "# TYPE ferrymesh_build_info gauge");
    let _ = writeln!(
        out,
        "ferrymesh_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let name = prometheus_name(metric.name(), metric.unit());
            match metric.data() {
                AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
                    let _ = writeln!(out, "# HELP {name} {}", metric.description());
                    let _ = writeln!(out, "# TYPE {name} histogram");
                    for point in histogram.data_points() {
                        let mut cumulative = 0u64;
                        for (bound, count) in point.bounds().zip(point.bucket_counts()) {
                            cumulative += count;
                            let le = labels(point.attributes(), Some(("le", bound.to_string())));
                            let _ = writeln!(out, "{name}_bucket{le} {cumulative}");
                        }
                        let inf = labels(point.attributes(), Some(("le", "+Inf".to_string())));
                        let _ = writeln!(out, "{name}_bucket{inf} {}", point.count());
                        let plain = labels(point.attributes(), None);
                        let _ = writeln!(out, "{name}_sum{plain} {}", point.sum());
                        let _ = writeln!(out, "{name}_count{plain} {}", point.count());
                    }
                }
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    let kind = if sum.is_monotonic() { "counter" } else { "gauge" };
                    let name = if sum.is_monotonic() {
                        format!("{name}_total")
                    } else {
                        name
                    };
                    let _ = writeln!(out, "# HELP {name} {}", metric.description());
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                    for point in sum.data_points() {
                        let plain = labels(point.attributes(), None);
                        let _ = writeln!(out, "{name}{plain} {}", point.value());
                    }
                }
                // The kit makes only the kinds above.
                _ => {}
            }
        }
    }
    out
}

/// Serves `GET /metrics` (Prometheus text) on `listener` until the process
/// ends, over HTTP/1.1.
pub fn serve_admin(listener: tokio::net::TcpListener, reader: PrometheusReader) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: wait rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let reader = reader.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let reader = reader.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&request, &reader)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// As [`serve_admin`], and `grpc.health.v1.Health` from `health` over
/// HTTP/2 without TLS, for probes. (A separate function, so a binary that
/// serves no health here, the gateway's, links no second HTTP/2 server.)
pub fn serve_admin_with_health(
    listener: tokio::net::TcpListener,
    reader: PrometheusReader,
    health: tonic_health::server::HealthReporter,
) {
    let health = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health),
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (reader, health) = (reader.clone(), health.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (reader, mut health) = (reader.clone(), health.clone());
                    async move {
                        if request.uri().path().starts_with("/grpc.health.v1.Health/") {
                            tower::Service::call(&mut health, request.map(tonic::body::Body::new)).await
                        } else {
                            Ok(answer(&request, &reader).map(tonic::body::Body::new))
                        }
                    }
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
}

fn answer(request: &Request<Incoming>, reader: &PrometheusReader) -> Response<Full<bytes::Bytes>> {
    let (status, kind, body) = match (request.method().as_str(), request.uri().path()) {
        ("GET", "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            reader.render(),
        ),
        ("GET", "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ferrymesh admin port: GET /metrics for Prometheus\n".to_string(),
        ),
        ("GET", _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the admin port serves /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(kind) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// Binds the admin address and starts serving metrics; returns where it listens.
pub async fn start_admin(addr: SocketAddr, reader: PrometheusReader) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    serve_admin(listener, reader);
    Ok(local)
}

/// As [`start_admin`], serving `health` too.
pub async fn start_admin_with_health(
    addr: SocketAddr,
    reader: PrometheusReader,
    health: tonic_health::server::HealthReporter,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    serve_admin_with_health(listener, reader, health);
    Ok(local)
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;

    #[test]
    fn histograms_render_as_cumulative_prometheus_buckets() {
        let reader = PrometheusReader::default();
        let provider = SdkMeterProvider::builder().with_reader(reader.clone()).build();
        let histogram = provider
            .meter("test")
            .f64_histogram("rpc.server.duration")
            .with_unit("ms")
            .with_boundaries(vec![1.0, 10.0])
            .build();
        let attributes = [KeyValue::new("rpc.method", "GetProduct")];
        for ms in [0.5, 5.0, 5.0, 50.0] {
            histogram.record(ms, &attributes);
        }
        let text = reader.render();
        assert!(
            text.contains("# TYPE rpc_server_duration_milliseconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("rpc_server_duration_milliseconds_bucket{rpc_method=\"GetProduct\",le=\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rpc_server_duration_milliseconds_bucket{rpc_method=\"GetProduct\",le=\"10\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("rpc_server_duration_milliseconds_bucket{rpc_method=\"GetProduct\",le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("rpc_server_duration_milliseconds_count{rpc_method=\"GetProduct\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("rpc_server_duration_milliseconds_sum{rpc_method=\"GetProduct\"} 60.5"),
            "{text}"
        );
    }
}
