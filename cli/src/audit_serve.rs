//! `ferrymesh audit --every DURATION`: the audit again and again, and its
//! last report served over HTTP: `/report` (JSON, which the console's
//! operations view shows through the gateway's `--audit-url`) and
//! `/metrics` (Prometheus gauges, to alert on). `ferrymesh up
//! --audit-every` runs the same loop inside `up`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::audit_cmd::{Mesh, Violation, audit, violations_json};

/// The last report, shared by the loop and the HTTP server.
#[derive(Debug, Clone)]
pub(crate) struct LastReport(Arc<RwLock<Value>>);

impl LastReport {
    fn new() -> LastReport {
        LastReport(Arc::new(RwLock::new(json!({"pending": true}))))
    }

    fn set(&self, report: Value) {
        if let Ok(mut last) = self.0.write() {
            *last = report;
        }
    }

    fn get(&self) -> Value {
        self.0.read().map(|v| v.clone()).unwrap_or(Value::Null)
    }
}

/// One run's report: when, how long, what it read and found, or why it could not.
fn report_of(started: Instant, result: &Result<(u64, Vec<Violation>), String>) -> Value {
    let ran_at = kit_values::rfc3339(kit_values::now_micros());
    let took = started.elapsed().as_secs_f64();
    match result {
        Ok((orders, violations)) => json!({
            "ran_at": ran_at, "took_seconds": took, "orders": orders,
            "violations": violations_json(violations), "clean": violations.is_empty(),
        }),
        Err(error) => json!({"ran_at": ran_at, "took_seconds": took, "error": error}),
    }
}

/// Binds `listen`, then audits every `every` until stopped.
pub(crate) async fn run_every(
    mesh: Mesh,
    every: Duration,
    stuck_micros: i64,
    concurrency: usize,
    listen: SocketAddr,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("ferrymesh audit: every {every:?}; the last report at http://{local}/report");
    let last = LastReport::new();
    serve(listener, last.clone());
    tokio::select! {
        () = audit_forever(mesh, every, stuck_micros, concurrency, last) => Ok(()),
        () = kit::server::shutdown_signal() => Ok(()),
    }
}

/// Runs the audit every `every`, keeping the last report in `last`.
pub(crate) async fn audit_forever(
    mesh: Mesh,
    every: Duration,
    stuck_micros: i64,
    concurrency: usize,
    last: LastReport,
) {
    loop {
        let started = Instant::now();
        let result = audit(&mesh, stuck_micros, concurrency).await;
        match &result {
            Ok((orders, violations)) if violations.is_empty() => {
                tracing::info!(orders, "audit: every invariant holds");
            }
            Ok((orders, violations)) => {
                tracing::error!(orders, violations = violations.len(), "audit: invariants broken");
            }
            Err(error) => tracing::warn!(%error, "audit could not read the mesh"),
        }
        last.set(report_of(started, &result));
        tokio::time::sleep(every).await;
    }
}

/// Binds the address `up`'s audit serves its report on.
pub(crate) async fn bind_in_up(listen: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("the audit cannot listen on {listen}: {e}"))
}

/// Starts `up`'s audit on `listener`: every `every`, once the mesh serves.
pub(crate) fn start_in_up(listener: tokio::net::TcpListener, mesh: Mesh, every: Duration) {
    let last = LastReport::new();
    serve(listener, last.clone());
    let stuck = i64::try_from(Duration::from_secs(300).as_micros()).unwrap_or(i64::MAX);
    tokio::spawn(audit_forever(mesh, every, stuck, 16, last));
}

fn serve(listener: tokio::net::TcpListener, last: LastReport) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let last = last.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let last = last.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&request, &last)) }
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

fn answer(request: &Request<Incoming>, last: &LastReport) -> Response<Full<Bytes>> {
    let respond = |status: StatusCode, kind: &'static str, body: String| {
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, kind)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    match (request.method(), request.uri().path()) {
        (&http::Method::GET, "/report") => {
            respond(StatusCode::OK, "application/json", last.get().to_string())
        }
        (&http::Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics_text(&last.get()),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "GET /report or /metrics\n".into(),
        ),
    }
}

/// The last report as Prometheus gauges.
fn metrics_text(report: &Value) -> String {
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    };
    if report.get("pending").is_some() {
        return text;
    }
    let failed = report.get("error").is_some();
    gauge(
        "ferrymesh_audit_failed",
        "1 when the last audit could not read the mesh",
        if failed { 1.0 } else { 0.0 },
    );
    if !failed {
        gauge(
            "ferrymesh_audit_orders",
            "Orders the last audit read",
            report["orders"].as_f64().unwrap_or(0.0),
        );
        gauge(
            "ferrymesh_audit_violations",
            "Invariants the last audit found broken",
            report["violations"].as_array().map_or(0.0, |v| v.len() as f64),
        );
    }
    gauge(
        "ferrymesh_audit_took_seconds",
        "How long the last audit took",
        report["took_seconds"].as_f64().unwrap_or(0.0),
    );
    text
}
