//! Caller authorization by identity: under mutual TLS each service declares
//! which workloads may call which of its methods (the design's call table),
//! and refuses every other caller with PERMISSION_DENIED naming it, logged
//! and counted. Health and reflection stay open to probes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::tls::{Identity, MeshPeer};

/// Who may call what: `(caller, method)` pairs, where the caller is a
/// workload name (the `sa/NAME` of its identity) and the method is
/// `package.Service/Method`, `package.Service/*` or `*`.
pub type Callers = &'static [(&'static str, &'static str)];

/// The identity people and tools use (grpcurl, `ferrymesh keys`): it may call every method.
pub const OPERATOR: &str = "operator";

/// Whether `caller` may call `path` (`/package.Service/Method`) by `callers`.
pub fn allows(callers: Callers, caller: &str, path: &str) -> bool {
    caller == OPERATOR
        || callers
            .iter()
            .any(|(who, method)| *who == caller && matches(method, path))
}

/// Whether the table's `method` pattern covers `path`.
fn matches(method: &str, path: &str) -> bool {
    let path = path.trim_start_matches('/');
    let service = path.split_once('/').map_or(path, |(service, _)| service);
    method == "*" || method == path || method.strip_suffix("/*").is_some_and(|prefix| prefix == service)
}

/// Methods any peer may call, certificate or not: health checks and reflection.
fn open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Refuses calls from callers `callers` does not name.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    policy: Arc<Policy>,
}

#[derive(Debug)]
struct Policy {
    service: &'static str,
    callers: Callers,
    trust_domain: String,
}

impl AuthorizeLayer {
    /// The policy of `service` in the trust domain of its own identity.
    pub fn new(service: &'static str, callers: Callers, own: &Identity) -> Self {
        AuthorizeLayer {
            policy: Arc::new(Policy {
                service,
                callers,
                trust_domain: own.trust_domain().to_string(),
            }),
        }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`AuthorizeLayer`] makes.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl Policy {
    /// `None` when the call may go on, else the refusal.
    fn check(&self, path: &str, peer: Option<&MeshPeer>) -> Option<tonic::Status> {
        if open(path) {
            return None;
        }
        let method = path.trim_start_matches('/');
        let Some(identity) = peer.and_then(|p| p.identity.as_ref()) else {
            crate::metrics::record_refusal(self.service, "none", method);
            return Some(tonic::Status::unauthenticated(format!(
                "{} takes calls only from workloads of the mesh: present a client certificate signed by the mesh's CA (`ferrymesh certs init`)",
                self.service
            )));
        };
        if identity.trust_domain() == self.trust_domain && allows(self.callers, identity.name(), path) {
            return None;
        }
        crate::metrics::record_refusal(self.service, identity.as_str(), method);
        let allowed: Vec<&str> = self
            .callers
            .iter()
            .filter(|(_, m)| matches(m, path))
            .map(|(who, _)| *who)
            .collect();
        let who = if allowed.is_empty() {
            "no workload".to_string()
        } else {
            allowed.join(", ")
        };
        Some(tonic::Status::permission_denied(format!(
            "{identity} may not call {method}; {} takes it from {who} (and {OPERATOR}) of spiffe://{}",
            self.service, self.trust_domain
        )))
    }
}

impl<S> Service<Request<Body>> for Authorize<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self
            .policy
            .check(request.uri().path(), request.extensions().get::<MeshPeer>())
        {
            None => Box::pin(self.inner.call(request)),
            Some(refusal) => {
                let peer = request.extensions().get::<MeshPeer>();
                tracing::warn!(
                    caller = peer.and_then(|p| p.identity.as_ref()).map_or("none", |i| i.as_str()),
                    remote = ?peer.map(|p| p.remote),
                    method = request.uri().path(),
                    "caller refused"
                );
                Box::pin(std::future::ready(Ok(refusal.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLERS: Callers = &[
        ("orders", "ferrymesh.payments.v1.PaymentsService/TokenizeCard"),
        ("workflow", "ferrymesh.payments.v1.PaymentsService/*"),
    ];

    #[test]
    fn the_table_names_methods_services_or_everything() {
        let charge = "/ferrymesh.payments.v1.PaymentsService/Charge";
        let tokenize = "/ferrymesh.payments.v1.PaymentsService/TokenizeCard";
        assert!(allows(CALLERS, "workflow", charge));
        assert!(allows(CALLERS, "orders", tokenize));
        assert!(!allows(CALLERS, "orders", charge));
        assert!(!allows(CALLERS, "catalog", tokenize));
        assert!(!allows(
            CALLERS,
            "workflow",
            "/ferrymesh.payments.v1.PaymentsServiceX/Charge"
        ));
        assert!(allows(CALLERS, OPERATOR, charge));
        assert!(allows(&[("gateway", "*")], "gateway", charge));
    }

    fn peer(uri: &str) -> MeshPeer {
        MeshPeer {
            remote: ([127, 0, 0, 1], 1).into(),
            identity: Identity::parse(uri),
        }
    }

    #[test]
    fn refusals_name_the_caller_and_who_may_call() {
        let own = Identity::parse("spiffe://ferrymesh.local/ns/ferrymesh/sa/payments").unwrap();
        let policy = Policy {
            service: "payments",
            callers: CALLERS,
            trust_domain: own.trust_domain().into(),
        };
        let charge = "/ferrymesh.payments.v1.PaymentsService/Charge";
        let catalog = peer("spiffe://ferrymesh.local/ns/ferrymesh/sa/catalog");
        let refusal = policy.check(charge, Some(&catalog)).unwrap();
        assert_eq!(refusal.code(), tonic::Code::PermissionDenied);
        assert!(
            refusal.message().contains("sa/catalog may not call"),
            "{}",
            refusal.message()
        );
        assert!(
            refusal.message().contains("from workflow"),
            "{}",
            refusal.message()
        );
        let workflow = peer("spiffe://ferrymesh.local/ns/ferrymesh/sa/workflow");
        assert!(policy.check(charge, Some(&workflow)).is_none());
        // The same name from another trust domain is someone else.
        let stranger = peer("spiffe://elsewhere.example/ns/ferrymesh/sa/workflow");
        assert!(policy.check(charge, Some(&stranger)).is_some());
        assert_eq!(
            policy.check(charge, None).unwrap().code(),
            tonic::Code::Unauthenticated
        );
        assert!(policy.check("/grpc.health.v1.Health/Check", None).is_none());
        assert!(
            policy
                .check("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", None)
                .is_none()
        );
    }
}
