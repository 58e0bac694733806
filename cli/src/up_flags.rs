//! What `ferrymesh up` gives each service besides its own flags: where the
//! services it calls are, its mesh certificate under `--tls`, and where its
//! telemetry goes.

use std::net::SocketAddr;

use crate::UpArgs;
use crate::mesh::MeshService;

/// The `OTEL_*` variables that send the services' telemetry where `up` was
/// asked: traces to the sink when there is one, everything else (or
/// everything) to `--otlp-endpoint`. Variables the user set win.
pub(crate) fn export_environment(args: &UpArgs, plan: &[(MeshService, SocketAddr)]) -> Vec<(String, String)> {
    let sink = plan
        .iter()
        .find(|(s, _)| s.role == crate::mesh::Role::TraceSink)
        .map(|(_, addr)| format!("http://{addr}"));
    let mut out: Vec<(&str, String)> = Vec::new();
    match (&sink, &args.otlp_endpoint) {
        (None, None) => {}
        (None, Some(url)) => out.push(("OTEL_EXPORTER_OTLP_ENDPOINT", url.clone())),
        (Some(sink), None) => {
            out.push(("OTEL_EXPORTER_OTLP_ENDPOINT", sink.clone()));
            // The sink keeps traces only.
            out.push(("OTEL_METRICS_EXPORTER", "none".into()));
        }
        (Some(sink), Some(url)) => {
            out.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", sink.clone()));
            out.push(("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", url.clone()));
        }
    }
    if !out.is_empty() {
        // Spans reach the sink or Jaeger half a second after the call, not five.
        out.push(("OTEL_BSP_SCHEDULE_DELAY", "500".into()));
        out.push(("OTEL_METRIC_EXPORT_INTERVAL", "10000".into()));
    }
    out.into_iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// `--catalog-url http://ADDR` and the like, for the services `service`
/// calls; a flag ending in `=` takes the URL in the same argument
/// (`--endpoint=ferrymesh.payments.v1=http://ADDR`).
pub(crate) fn upstream_flags(
    service: &MeshService,
    plan: &[(MeshService, SocketAddr)],
    scheme: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (flag, callee) in service.calls {
        let Some((_, addr)) = plan.iter().find(|(s, _)| s.name == *callee) else {
            continue;
        };
        if flag.ends_with('=') {
            out.push(format!("{flag}{scheme}://{addr}"));
        } else {
            out.push(flag.to_string());
            out.push(format!("{scheme}://{addr}"));
        }
    }
    out
}

/// A service's own certificate, key and the CA, under `up --tls`: the
/// gateway's is for its upstreams; the trace sink takes OTLP plaintext, as
/// collectors do by default.
pub(crate) fn tls_flags(tls: bool, certs: &std::path::Path, service: &MeshService) -> Vec<String> {
    if !tls || service.role == crate::mesh::Role::TraceSink {
        return Vec::new();
    }
    let files = kit::tls::TlsArgs::from_dir(certs, service.name);
    let path = |p: Option<std::path::PathBuf>| p.unwrap_or_default().display().to_string();
    vec![
        format!("--tls-cert={}", path(files.tls_cert)),
        format!("--tls-key={}", path(files.tls_key)),
        format!("--tls-ca={}", path(files.tls_ca)),
    ]
}
