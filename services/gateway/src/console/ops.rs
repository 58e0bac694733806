//! The operations view's reads: every instance's health and version, the
//! RED metrics scraped from each service's Prometheus port, and the mesh's
//! log lines by correlation id.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use prost::Message;
use serde_json::{Value, json};

use super::Console;

impl Console {
    /// Every instance of every service: health, version, and whether its
    /// metrics answer.
    pub(super) async fn mesh(&self) -> Value {
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
    pub(super) async fn metrics(&self) -> Value {
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
    pub(super) async fn logs(&self, wanted: &str) -> Value {
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
pub(super) fn query_value(query: &str, key: &str) -> Option<String> {
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

pub(super) async fn scrape(url: &str) -> Result<String, String> {
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
}
