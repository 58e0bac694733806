//! The web console, on the gateway's port beside gRPC: the developer
//! portal and the operations view. The pages are static files compiled
//! into the binary (no build step, no CDN); they call the contracts through
//! gRPC-Web (see [`crate::web`]) with the developer's key or the operator's
//! admin token, and read a few JSON documents served here:
//!
//! - `/console/api/reference`: the public contracts, from their descriptors
//!   (services, methods, fields with their proto comments, deprecations,
//!   the versions served);
//! - `/console/api/info`: what this gateway can show (trace sink, Jaeger);
//! - `/console/api/ops/mesh`, `/ops/metrics`, `/ops/logs`: with the admin
//!   token, every service's health, replicas and version, its RED metrics,
//!   and the mesh's logs by correlation id.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use prost::Message;
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Value, json};
use tonic::body::Body;

use crate::Shared;

/// A file of the console, compiled in.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../console/index.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/app.js"),
    },
    Asset {
        path: "/console/core.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/core.js"),
    },
    Asset {
        path: "/console/portal.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/portal.js"),
    },
    Asset {
        path: "/console/reference.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/reference.js"),
    },
    Asset {
        path: "/console/ops.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/ops.js"),
    },
    Asset {
        path: "/console/executions.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/executions.js"),
    },
    Asset {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/app.css"),
    },
    Asset {
        path: "/favicon.ico",
        content_type: "image/svg+xml",
        body: include_bytes!("../console/favicon.svg"),
    },
];

/// What the operations view may read besides the contracts.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Each service's Prometheus URL (`http://HOST:PORT/metrics`); a
    /// name that resolves to several addresses is several replicas.
    pub metrics: Vec<(String, String)>,
    /// Where `ferrymesh up` writes every service's log (`NAME.log`).
    pub logs_dir: Option<PathBuf>,
    /// Jaeger's UI, for links to a trace.
    pub jaeger_url: Option<String>,
    /// Where `ferrymesh audit --every` serves its last report.
    pub audit_url: Option<String>,
}

/// The console's server side.
pub struct Console {
    shared: Arc<Shared>,
    sources: Sources,
    /// Built on the first request for it (a gateway nobody browses keeps
    /// neither the decoded descriptors nor this in memory), and again after
    /// the configuration changes which methods are public.
    reference: std::sync::Mutex<Option<(u64, Arc<Value>)>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// Whether `authorization` carries the admin token: compared as hashes, in
/// constant time.
pub fn is_admin(expected: &blake3::Hash, authorization: Option<&HeaderValue>) -> bool {
    let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    blake3::hash(token.trim().as_bytes()) == *expected
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(body.into()).map_err(|never| match never {})));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Scripts only from the gateway; the execution graphs are inline SVG.
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

fn problem(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

impl Console {
    /// The console over the gateway's state (which holds the admin token's hash).
    pub fn new(shared: Arc<Shared>, sources: Sources) -> Console {
        Console {
            shared,
            sources,
            reference: std::sync::Mutex::new(None),
        }
    }

    /// Answers a request that is not a gRPC call.
    pub async fn serve(self: Arc<Self>, request: Request<Body>) -> Response<Body> {
        let path = request.uri().path().to_string();
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "the console answers GET; gRPC calls are POSTs with content-type application/grpc or application/grpc-web",
            );
        }
        if let Some(asset) = ASSETS.iter().find(|a| a.path == path) {
            return respond(StatusCode::OK, asset.content_type, Bytes::from_static(asset.body));
        }
        match path.as_str() {
            "/console/api/reference" => {
                // The served versions follow the configuration, which reloads.
                let mut reference = Value::clone(&self.reference_now());
                reference["served"] = served(&self.shared);
                json_response(StatusCode::OK, &reference)
            }
            "/console/api/info" => json_response(
                StatusCode::OK,
                &json!({
                    "jaeger_url": self.sources.jaeger_url,
                    "trace_sink": routed(&self.shared, "ferrymesh.traces.v1"),
                    "workflow": routed(&self.shared, "ferrymesh.workflow.v1"),
                    "logs": self.sources.logs_dir.is_some(),
                    "version": env!("CARGO_PKG_VERSION"),
                }),
            ),
            p if p.starts_with("/console/api/ops/") => {
                if !is_admin(&self.shared.admin, request.headers().get(header::AUTHORIZATION)) {
                    return problem(
                        StatusCode::UNAUTHORIZED,
                        "send the admin token as `authorization: Bearer TOKEN` (it is in the data directory's admin-token file)",
                    );
                }
                match p {
                    "/console/api/ops/mesh" => json_response(StatusCode::OK, &self.mesh().await),
                    "/console/api/ops/metrics" => json_response(StatusCode::OK, &self.metrics().await),
                    "/console/api/ops/audit" => json_response(StatusCode::OK, &self.audit().await),
                    "/console/api/ops/logs" => {
                        let query = request.uri().query().unwrap_or_default();
                        let wanted = query_value(query, "correlation_id").unwrap_or_default();
                        if wanted.len() < 4 || wanted.len() > 128 {
                            return problem(
                                StatusCode::BAD_REQUEST,
                                "correlation_id must be 4 to 128 characters (it is in each answer's x-correlation-id)",
                            );
                        }
                        json_response(StatusCode::OK, &self.logs(&wanted).await)
                    }
                    _ => problem(StatusCode::NOT_FOUND, "no such operations document"),
                }
            }
            // The pages route in the browser (#/portal ...); anything else is not here.
            _ => problem(StatusCode::NOT_FOUND, "not found; the console is at /"),
        }
    }

    /// The last audit's report, as the audit serves it; `configured` says
    /// whether one runs at all.
    async fn audit(&self) -> Value {
        let Some(url) = &self.sources.audit_url else {
            return json!({"configured": false});
        };
        match scrape(&format!("{}/report", url.trim_end_matches('/'))).await {
            Ok(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(mut report)) => {
                    report.insert("configured".into(), Value::Bool(true));
                    Value::Object(report)
                }
                _ => json!({"configured": true, "error": "the audit's report is not a JSON object"}),
            },
            Err(e) => json!({"configured": true, "error": format!("the audit at {url} did not answer: {e}")}),
        }
    }

    /// The reference for the configuration in force.
    fn reference_now(&self) -> Arc<Value> {
        let generation = self.shared.generation();
        let mut cached = match self.reference.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        match &*cached {
            Some((g, value)) if *g == generation => value.clone(),
            _ => {
                let value = Arc::new(reference(&self.shared));
                *cached = Some((generation, value.clone()));
                value
            }
        }
    }

    /// Every instance of every service: health, version, and whether its
    /// metrics answer.
    async fn mesh(&self) -> Value {
        // Every instance at once: an unreachable one costs its timeout, not a sum of them.
        let services = self.sources.metrics.iter().map(|(name, url)| async move {
            let instances = instances(url).await;
            let rows =
                futures_util::future::join_all(instances.iter().map(|(addr, metrics_url)| async move {
                    let (health, scraped) = tokio::join!(health(*addr), scrape(metrics_url));
                    let version = scraped.as_deref().ok().and_then(|text| {
                        text.lines()
                            .find_map(|l| label_of(l.strip_prefix("ferrymesh_build_info")?, "version"))
                    });
                    json!({
                        "address": addr.to_string(),
                        "health": health,
                        "version": version,
                        "metrics": scraped.is_ok(),
                    })
                }))
                .await;
            let serving = rows.iter().filter(|r| r["health"] == "SERVING").count();
            json!({
                "service": name,
                "replicas": rows.len(),
                "serving": serving,
                "instances": rows,
            })
        });
        json!({ "services": futures_util::future::join_all(services).await })
    }

    /// The server-side RED histograms of every instance, summed per
    /// service, method and status code; the page takes differences between
    /// two reads for rates and percentiles.
    async fn metrics(&self) -> Value {
        let mut series: BTreeMap<(String, String, String), Series> = BTreeMap::new();
        let scraped =
            futures_util::future::join_all(self.sources.metrics.iter().map(|(name, url)| async move {
                let texts = futures_util::future::join_all(
                    instances(url)
                        .await
                        .into_iter()
                        .map(|(_, metrics_url)| async move { scrape(&metrics_url).await }),
                )
                .await;
                (name, texts)
            }))
            .await;
        for (name, texts) in scraped {
            for text in texts {
                let Ok(text) = text else {
                    continue;
                };
                for line in text.lines() {
                    let Some(rest) = line.strip_prefix("rpc_server_duration_milliseconds_") else {
                        continue;
                    };
                    let Some((head, value)) = rest.rsplit_once(' ') else {
                        continue;
                    };
                    let Ok(value) = value.parse::<f64>() else {
                        continue;
                    };
                    let (kind, labels) = head.split_once('{').unwrap_or((head, ""));
                    let method = format!(
                        "{}/{}",
                        label_of(labels, "rpc_service").unwrap_or_default(),
                        label_of(labels, "rpc_method").unwrap_or_default()
                    );
                    let code = label_of(labels, "rpc_grpc_status_code").unwrap_or_else(|| "0".into());
                    let entry = series.entry((name.clone(), method, code)).or_default();
                    match kind {
                        "count" => entry.count += value,
                        "sum" => entry.sum += value,
                        "bucket" => {
                            let le = label_of(labels, "le").unwrap_or_default();
                            *entry.buckets.entry(le).or_default() += value;
                        }
                        _ => {}
                    }
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let rows: Vec<Value> = series
            .into_iter()
            .map(|((service, method, code), s)| {
                let mut buckets: Vec<(f64, f64)> = s
                    .buckets
                    .iter()
                    .map(|(le, n)| (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) }, *n))
                    .collect();
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                json!({
                    "service": service,
                    "method": method,
                    "code": code,
                    "count": s.count,
                    "sum_ms": s.sum,
                    "buckets": buckets.iter().map(|(le, n)| json!([if le.is_finite() { json!(le) } else { json!("+Inf") }, n])).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "at_ms": now as u64, "series": rows })
    }

    /// The lines of the mesh's logs that carry `wanted`, oldest first.
    async fn logs(&self, wanted: &str) -> Value {
        let Some(dir) = self.sources.logs_dir.clone() else {
            return json!({ "available": false, "lines": [] });
        };
        let wanted = wanted.to_string();
        let lines = tokio::task::spawn_blocking(move || find_lines(&dir, &wanted))
            .await
            .unwrap_or_default();
        json!({ "available": true, "lines": lines })
    }
}

#[derive(Debug, Default)]
struct Series {
    count: f64,
    sum: f64,
    buckets: BTreeMap<String, f64>,
}

/// How much of each log's end is searched.
const LOG_TAIL_BYTES: u64 = 4 << 20;
/// The most lines answered.
const LOG_LINES: usize = 500;

fn find_lines(dir: &std::path::Path, wanted: &str) -> Vec<Value> {
    use std::io::{Read, Seek, SeekFrom};
    let mut found: Vec<(String, String)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(service) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .map(str::to_string)
        else {
            continue;
        };
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        let length = file.metadata().map_or(0, |m| m.len());
        let start = length.saturating_sub(LOG_TAIL_BYTES);
        if file.seek(SeekFrom::Start(start)).is_err() {
            continue;
        }
        let mut text = Vec::new();
        if file.read_to_end(&mut text).is_err() {
            continue;
        }
        let text = String::from_utf8_lossy(&text);
        let mut lines = text.lines();
        if start > 0 {
            // The first line is cut.
            lines.next();
        }
        for line in lines.filter(|l| l.contains(wanted)) {
            found.push((service.clone(), line.to_string()));
        }
    }
    // Lines start with their time (RFC 3339, or a JSON object's first field).
    found.sort_by(|a, b| a.1.cmp(&b.1));
    let skip = found.len().saturating_sub(LOG_LINES);
    found
        .into_iter()
        .skip(skip)
        .map(|(service, line)| json!({ "service": service, "line": line }))
        .collect()
}

/// `key`'s value in a query string (percent-decoded for the characters an id may hold).
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.replace("%2D", "-").replace("%2d", "-"))
    })
}

/// A label's value in `{a="1",b="2"}`.
fn label_of(labels: &str, key: &str) -> Option<String> {
    let labels = labels.trim_start_matches('{').trim_end_matches('}');
    let at = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[at..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Every address `url`'s host resolves to, each with its own metrics URL.
async fn instances(url: &str) -> Vec<(SocketAddr, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Vec::new();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(resolved) = tokio::time::timeout(Duration::from_secs(1), tokio::net::lookup_host(authority)).await
    else {
        return Vec::new();
    };
    let mut addrs: Vec<SocketAddr> = resolved.map(Iterator::collect).unwrap_or_default();
    addrs.sort();
    addrs.dedup();
    addrs
        .into_iter()
        .map(|a| {
            (
                a,
                format!("http://{a}{}", if path.is_empty() { "/metrics" } else { path }),
            )
        })
        .collect()
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
>;

thread_local! {
    /// Clients per worker thread (each runs its own runtime), without TLS:
    /// /metrics over HTTP/1.1, which every admin port answers (the
    /// gateway's too), and gRPC health over HTTP/2.
    static METRICS: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    static GRPC: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
}

fn client() -> Client {
    GRPC.with(Clone::clone)
}

async fn scrape(url: &str) -> Result<String, String> {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        METRICS.with(Clone::clone).request(request),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = tokio::time::timeout(Duration::from_secs(2), response.into_body().collect())
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
}

/// grpc.health.v1's overall status of the instance: on its admin port,
/// where every service answers it in plaintext, or else on its gRPC port
/// (the admin port − 1000), where the gateway answers it.
async fn health(addr: SocketAddr) -> &'static str {
    if let Some(status) = health_at(addr).await {
        return status;
    }
    match addr.port().checked_sub(1000) {
        Some(port) => health_at(SocketAddr::new(addr.ip(), port))
            .await
            .unwrap_or("UNREACHABLE"),
        None => "UNREACHABLE",
    }
}

/// The status at `addr`, or `None` when nothing there answers gRPC health.
async fn health_at(addr: SocketAddr) -> Option<&'static str> {
    let request = match Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
    {
        Ok(r) => r,
        Err(_) => return None,
    };
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        let response = client().request(request).await.ok()?;
        let grpc = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !grpc {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let message = body.get(5..)?;
        tonic_health::pb::HealthCheckResponse::decode(message).ok()
    })
    .await;
    match answered {
        Ok(Some(answer)) => Some(match answer.status() {
            tonic_health::pb::health_check_response::ServingStatus::Serving => "SERVING",
            tonic_health::pb::health_check_response::ServingStatus::NotServing => "NOT_SERVING",
            _ => "UNKNOWN",
        }),
        Ok(None) | Err(_) => None,
    }
}

fn routed(shared: &Shared, package: &str) -> bool {
    let routes = shared.routes();
    routes
        .stages
        .get(&routes.default_stage)
        .is_some_and(|stage| stage.routes.contains_key(package))
}

/// Which packages each stage serves.
fn served(shared: &Shared) -> Value {
    let routes = shared.routes();
    let mut stages = serde_json::Map::new();
    for (name, stage) in &routes.stages {
        let mut packages: Vec<&str> = stage.routes.keys().map(String::as_str).collect();
        packages.sort_unstable();
        stages.insert(name.clone(), json!(packages));
    }
    json!({ "default_stage": routes.default_stage, "stages": stages })
}

/// The leading comment of the element at `path` in its file.
fn comment(file: &prost_types::FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.clone())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn field_type(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The public contracts as the reference pages show them.
fn reference(shared: &Shared) -> Value {
    let Ok(pool) = crate::web::contracts() else {
        return json!({ "services": [], "messages": {}, "enums": {} });
    };
    let routes = shared.routes();
    let mut services = Vec::new();
    let mut pending: Vec<MessageDescriptor> = Vec::new();
    for service in pool.services() {
        let file = service.parent_file();
        let methods: Vec<Value> = service
            .methods()
            .filter(|m| routes.is_public(&format!("/{}/{}", service.full_name(), m.name())))
            .map(|m| {
                pending.push(m.input());
                pending.push(m.output());
                let path = format!("/{}/{}", service.full_name(), m.name());
                json!({
                    "name": m.name(),
                    "path": path,
                    "input": m.input().full_name(),
                    "output": m.output().full_name(),
                    "client_streaming": m.is_client_streaming(),
                    "server_streaming": m.is_server_streaming(),
                    "comment": comment(file.file_descriptor_proto(), m.path()),
                    "deprecated": m.method_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
                    "anonymous": routes.is_anonymous(&path),
                })
            })
            .collect();
        if methods.is_empty() {
            continue;
        }
        services.push(json!({
            "name": service.full_name(),
            "package": service.package_name(),
            "version": service.package_name().rsplit('.').next().unwrap_or_default(),
            "comment": comment(file.file_descriptor_proto(), service.path()),
            "deprecated": service.service_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
            "methods": methods,
        }));
    }
    let mut messages = serde_json::Map::new();
    let mut enums = serde_json::Map::new();
    while let Some(message) = pending.pop() {
        if messages.contains_key(message.full_name()) {
            continue;
        }
        let file = message.parent_file();
        let fields: Vec<Value> = message
            .fields()
            .map(|f| {
                match f.kind() {
                    Kind::Message(m) => pending.push(m),
                    Kind::Enum(e) if !enums.contains_key(e.full_name()) => {
                        {
                            let efile = e.parent_file();
                            let values: Vec<Value> = e
                                .values()
                                .map(|v| json!({
                                    "name": v.name(),
                                    "number": v.number(),
                                    "comment": comment(efile.file_descriptor_proto(), v.path()),
                                }))
                                .collect();
                            enums.insert(
                                e.full_name().to_string(),
                                json!({ "comment": comment(efile.file_descriptor_proto(), e.path()), "values": values }),
                            );
                        }
                    }
                    _ => {}
                }
                json!({
                    "name": f.name(),
                    "json_name": f.json_name(),
                    "number": f.number(),
                    "type": field_type(&f),
                    "repeated": f.cardinality() == Cardinality::Repeated && !f.is_map(),
                    "map": f.is_map(),
                    "oneof": f.containing_oneof().map(|o| o.name().to_string()),
                    "comment": comment(file.file_descriptor_proto(), f.path()),
                    "deprecated": f.field_descriptor_proto().options.as_ref().and_then(|o| o.deprecated).unwrap_or(false),
                })
            })
            .collect();
        messages.insert(
            message.full_name().to_string(),
            json!({
                "comment": comment(file.file_descriptor_proto(), message.path()),
                "fields": fields,
            }),
        );
    }
    json!({ "services": services, "messages": messages, "enums": enums })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read() {
        let labels = r#"{rpc_grpc_status_code="0",rpc_method="GetProduct",le="+Inf"}"#;
        assert_eq!(label_of(labels, "rpc_method").as_deref(), Some("GetProduct"));
        assert_eq!(label_of(labels, "le").as_deref(), Some("+Inf"));
        assert_eq!(label_of(labels, "nope"), None);
    }

    #[test]
    fn only_the_admin_token_is_the_admin() {
        let hash = blake3::hash(b"0123456789abcdef");
        assert!(is_admin(
            &hash,
            Some(&HeaderValue::from_static("Bearer 0123456789abcdef"))
        ));
        assert!(!is_admin(
            &hash,
            Some(&HeaderValue::from_static("Bearer 0123456789abcdeX"))
        ));
        assert!(!is_admin(
            &hash,
            Some(&HeaderValue::from_static("0123456789abcdef"))
        ));
        assert!(!is_admin(&hash, None));
    }
}
