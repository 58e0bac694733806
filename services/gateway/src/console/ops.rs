//! The operations view's reads: every instance's health and version, the
//! RED metrics scraped from each service's Prometheus port, and the mesh's
//! log lines by correlation id.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use prometheus_parse::Value as Sampled;

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
                    let version = scraped.as_ref().ok().and_then(|samples| {
                        samples
                            .iter()
                            .find(|s| s.metric == "ferrymesh_build_info")
                            .and_then(|s| s.labels.get("version"))
                            .map(str::to_string)
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
            for sample in texts.into_iter().flatten().flatten() {
                let Some(part) = sample.metric.strip_prefix("rpc_server_duration_milliseconds") else {
                    continue;
                };
                let labels = &sample.labels;
                let method = format!(
                    "{}/{}",
                    labels.get("rpc_service").unwrap_or_default(),
                    labels.get("rpc_method").unwrap_or_default()
                );
                let code = labels.get("rpc_grpc_status_code").unwrap_or("0").to_string();
                let entry = series.entry((name.clone(), method, code)).or_default();
                match (part, &sample.value) {
                    ("_count", Sampled::Untyped(v) | Sampled::Counter(v)) => entry.count += v,
                    ("_sum", Sampled::Untyped(v) | Sampled::Counter(v)) => entry.sum += v,
                    ("", Sampled::Histogram(buckets)) => {
                        for bucket in buckets {
                            // Bounds are not negative, so their bits sort as they do.
                            *entry.buckets.entry(bucket.less_than.to_bits()).or_default() += bucket.count;
                        }
                    }
                    _ => {}
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let rows: Vec<Value> = series
            .into_iter()
            .map(|((service, method, code), s)| {
                let buckets: Vec<(f64, f64)> = s.buckets.iter().map(|(le, n)| (f64::from_bits(*le), *n)).collect();
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
    /// By upper bound (its bits), summed over instances.
    buckets: BTreeMap<u64, f64>,
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

/// `key`'s value in a query string, percent-decoded.
pub(super) fn query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
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
    /// A client per worker thread (each runs its own runtime), without TLS:
    /// /metrics over HTTP/1.1, which every admin port answers (the
    /// gateway's too).
    static METRICS: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
}

/// The samples at a Prometheus endpoint.
async fn scrape(url: &str) -> Result<Vec<prometheus_parse::Sample>, String> {
    let text = fetch_text(url).await?;
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map(|scrape| scrape.samples)
        .map_err(|e| e.to_string())
}

/// The body at `url` over HTTP/1.1, as text.
pub(super) async fn fetch_text(url: &str) -> Result<String, String> {
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
    use tonic_health::pb::health_check_response::ServingStatus;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        let channel = endpoint.connect().await.ok()?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = tonic_health::pb::HealthCheckRequest::default();
        client.check(request).await.ok().map(tonic::Response::into_inner)
    })
    .await;
    match answered {
        Ok(Some(answer)) => Some(match answer.status() {
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            _ => "UNKNOWN",
        }),
        Ok(None) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let query = "x=1&correlation_id=a%2Db%20c%2Bd&y=2";
        assert_eq!(query_value(query, "correlation_id").as_deref(), Some("a-b c+d"));
        assert_eq!(query_value(query, "nope"), None);
    }
}
