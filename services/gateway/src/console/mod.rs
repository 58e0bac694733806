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
//!
//! Here: the routes and the admin check; `assets` (the compiled-in files),
//! `reference` (the contracts as JSON) and `ops` (health, metrics and logs
//! of the mesh) beside it.

mod assets;
mod ops;
mod reference;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tonic::body::Body;

use crate::Shared;

use assets::ASSETS;
use ops::{fetch_text, query_value};
use reference::{routed, served};

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
        match fetch_text(&format!("{}/report", url.trim_end_matches('/'))).await {
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
                let value = Arc::new(reference::reference(&self.shared));
                *cached = Some((generation, value.clone()));
                value
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
