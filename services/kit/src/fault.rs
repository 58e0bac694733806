//! Fault injection for demos and tests: extra latency and an error rate per
//! method, in the manner of Online Boutique's EXTRA_LATENCY and the
//! OpenTelemetry demo's failure flags.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::duration::parse_duration;

/// One `--fault` rule: which methods it hits and what it does to them.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// `*`, `Method`, `package.Service/Method` or `package.Service/*`.
    pub method: String,
    /// Delay added before the call is handled.
    pub latency: Duration,
    /// Share of calls, 0.0 to 1.0, answered with `code` instead of being handled.
    pub error_rate: f64,
    /// The status code of injected errors.
    pub code: Code,
}

impl FaultRule {
    /// Whether the rule applies to a request path `/package.Service/Method`.
    /// Health and reflection are only hit when named explicitly.
    pub fn matches(&self, path: &str) -> bool {
        let full = path.trim_start_matches('/');
        let (service, method) = full.split_once('/').unwrap_or((full, ""));
        match self.method.as_str() {
            "*" => !service.starts_with("grpc."),
            pattern => match pattern.split_once('/') {
                Some((s, "*")) => s == service,
                Some(_) => pattern == full,
                None => pattern == method,
            },
        }
    }
}

impl FromStr for FaultRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "write METHOD:latency=DURATION,error_rate=P[,code=CODE], e.g. GetProduct:latency=2s";
        let (method, settings) = text
            .split_once(':')
            .ok_or_else(|| format!("fault `{text}` has no `:`; {usage}"))?;
        let method = method.trim();
        if method.is_empty() {
            return Err(format!("fault `{text}` names no method; {usage}"));
        }
        let mut rule = FaultRule {
            method: method.to_string(),
            latency: Duration::ZERO,
            error_rate: 0.0,
            code: Code::Unavailable,
        };
        for setting in settings.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| format!("fault setting `{setting}` has no `=`; {usage}"))?;
            match key.trim() {
                "latency" => rule.latency = parse_duration(value)?,
                "error_rate" => {
                    rule.error_rate = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|p: &f64| (0.0..=1.0).contains(p))
                        .ok_or_else(|| format!("error_rate `{value}` must be a number from 0 to 1"))?
                }
                "code" => rule.code = parse_code(value.trim())?,
                other => return Err(format!("unknown fault setting `{other}`; {usage}")),
            }
        }
        Ok(rule)
    }
}

fn parse_code(name: &str) -> Result<Code, String> {
    let code = match name.to_ascii_lowercase().as_str() {
        "cancelled" => Code::Cancelled,
        "unknown" => Code::Unknown,
        "invalid_argument" => Code::InvalidArgument,
        "deadline_exceeded" => Code::DeadlineExceeded,
        "not_found" => Code::NotFound,
        "already_exists" => Code::AlreadyExists,
        "permission_denied" => Code::PermissionDenied,
        "resource_exhausted" => Code::ResourceExhausted,
        "failed_precondition" => Code::FailedPrecondition,
        "aborted" => Code::Aborted,
        "out_of_range" => Code::OutOfRange,
        "unimplemented" => Code::Unimplemented,
        "internal" => Code::Internal,
        "unavailable" => Code::Unavailable,
        "data_loss" => Code::DataLoss,
        "unauthenticated" => Code::Unauthenticated,
        _ => {
            return Err(format!(
                "`{name}` is not a gRPC status code name such as unavailable"
            ));
        }
    };
    Ok(code)
}

/// Applies [`FaultRule`]s to the calls that match them.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    rules: Arc<[FaultRule]>,
}

impl FaultLayer {
    /// A layer applying `rules`; the first matching rule wins.
    pub fn new(rules: Vec<FaultRule>) -> Self {
        FaultLayer { rules: rules.into() }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Fault<S> {
        Fault {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service made by [`FaultLayer`].
#[derive(Debug, Clone)]
pub struct Fault<S> {
    inner: S,
    rules: Arc<[FaultRule]>,
}

impl<S> Service<Request<Body>> for Fault<S>
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

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches(request.uri().path()))
            .cloned();
        // Take the service that was driven to readiness, leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if let Some(rule) = rule {
                if !rule.latency.is_zero() {
                    tokio::time::sleep(rule.latency).await;
                }
                if rule.error_rate > 0.0 && rand::random::<f64>() < rule.error_rate {
                    let status = Status::new(
                        rule.code,
                        format!("injected fault: `--fault {}` fails this call", rule.method),
                    );
                    return Ok(status.into_http());
                }
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_match() {
        let rule: FaultRule = "GetProduct:latency=2s,error_rate=0.5,code=internal"
            .parse()
            .unwrap();
        assert_eq!(rule.latency, Duration::from_secs(2));
        assert_eq!(rule.error_rate, 0.5);
        assert_eq!(rule.code, Code::Internal);
        assert!(rule.matches("/ferrymesh.catalog.v1.CatalogService/GetProduct"));
        assert!(!rule.matches("/ferrymesh.catalog.v1.CatalogService/ListProducts"));

        let all: FaultRule = "*:latency=10ms".parse().unwrap();
        assert!(all.matches("/ferrymesh.catalog.v1.CatalogService/ListProducts"));
        assert!(!all.matches("/grpc.health.v1.Health/Check"));

        let service: FaultRule = "ferrymesh.catalog.v1.CatalogService/*:error_rate=1"
            .parse()
            .unwrap();
        assert!(service.matches("/ferrymesh.catalog.v1.CatalogService/GetProduct"));
        assert!(!service.matches("/ferrymesh.orders.v1.OrdersService/GetOrder"));
    }

    #[test]
    fn bad_rules_say_what_to_fix() {
        let err = "GetProduct".parse::<FaultRule>().unwrap_err();
        assert!(err.contains("has no `:`"), "{err}");
        let err = "GetProduct:error_rate=2".parse::<FaultRule>().unwrap_err();
        assert!(err.contains("must be a number from 0 to 1"), "{err}");
        let err = "GetProduct:code=nope".parse::<FaultRule>().unwrap_err();
        assert!(err.contains("not a gRPC status code"), "{err}");
    }
}
