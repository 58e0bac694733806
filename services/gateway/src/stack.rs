//! The gateway's tower stack, one layer per policy. Each layer answers a
//! refusal itself as a gRPC status with details (never a bare HTTP error)
//! and otherwise hands the call inward; the innermost service forwards it.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::header::HeaderName;
use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use kit::identity;

use crate::Shared;
use crate::caller::throttled;
pub use crate::caller::{Caller, Client, Reached};
use crate::canary::Canary;
use crate::config::package_of;
use crate::proxy::{Backend, Observed, header_status};

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

fn refuse(status: Status) -> Ready<Result<Response<Body>, Infallible>> {
    ready(Ok(status.into_http()))
}

/// Where the routing layer sends the call.
#[derive(Debug, Clone)]
pub struct Route {
    upstream: Arc<Backend>,
    canary: Option<Arc<Canary>>,
    stage: Arc<str>,
}

macro_rules! layer {
    ($layer:ident, $service:ident) => {
        /// See the service of the same name.
        #[derive(Debug, Clone)]
        pub struct $layer {
            shared: Arc<Shared>,
        }

        impl $layer {
            /// The layer over the gateway's shared state.
            pub fn new(shared: Arc<Shared>) -> Self {
                $layer { shared }
            }
        }

        impl<S> Layer<S> for $layer {
            type Service = $service<S>;

            fn layer(&self, inner: S) -> $service<S> {
                $service {
                    inner,
                    shared: self.shared.clone(),
                }
            }
        }
    };
}

layer!(AuthLayer, Auth);
layer!(ThrottleLayer, Throttle);
layer!(QuotaLayer, Quota);
layer!(RouteLayer, Router);
layer!(MeterLayer, Metered);

/// Resolves `x-api-key` to a key (from the cache) and checks that the
/// method is public and in the key's plan; serves reflection for the plan.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

const REFLECTION_V1: &str = "/grpc.reflection.v1.ServerReflection/";
const REFLECTION_V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/";

impl<S> Service<Request<Body>> for Auth<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> BoxFuture {
        let shared = self.shared.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let path = request.uri().path();
            let routes = shared.routes();
            let reflection_call = path.starts_with(REFLECTION_V1) || path.starts_with(REFLECTION_V1ALPHA);
            if routes.is_operator(path) {
                let admin = crate::console::is_admin(
                    &shared.admin,
                    request.headers().get(http::header::AUTHORIZATION),
                );
                if admin {
                    request.extensions_mut().insert(Caller::Operator);
                    return inner.call(request).await;
                }
                // A public method an operator may also call (an order, for
                // the console's execution page): without the admin token it
                // is a key holder's call, checked below.
                if !routes.is_public(path) {
                    return Ok(Status::unauthenticated(format!(
                        "{} is an operator's method: send the admin token as `authorization: Bearer TOKEN`",
                        path.trim_start_matches('/')
                    ))
                    .into_http());
                }
            }
            if !reflection_call && !routes.is_public(path) {
                return Ok(Status::unimplemented(format!(
                    "{} is not served through the gateway; `grpcurl -H 'x-api-key: KEY' HOST list` shows what is",
                    path.trim_start_matches('/')
                ))
                .into_http());
            }
            let secret = request
                .headers()
                .get(identity::API_KEY)
                .map(|v| v.to_str().unwrap_or_default());
            if reflection_call && secret.is_none() {
                // Without a key, every public method: tools can build the
                // call, and the call itself says a key is needed.
                let public = |m: &str| routes.is_public(m);
                return Ok(reflect(&shared, "", &public, request).await);
            }
            let key = match secret {
                None if routes.is_anonymous(path) => {
                    request.extensions_mut().insert(Caller::Anonymous);
                    return inner.call(request).await;
                }
                None => {
                    return Ok(Status::unauthenticated(
                        "send an API key as x-api-key metadata; get one with \
                         ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper",
                    )
                    .into_http());
                }
                Some(secret) => {
                    // A key not in the cache costs apikeys a lookup: guessed
                    // keys are throttled per connection and per address.
                    let client = Client::of(&request);
                    let may_look_up = || {
                        client
                            .key_lookups
                            .check(path)
                            .and_then(|()| routes.key_lookups.check(&client.addr))
                            .map_err(|wait| throttled(wait, "API keys this client has not used before"))
                    };
                    match shared.keys.key(secret, may_look_up).await {
                        Ok(key) => key,
                        Err(status) => return Ok(status.into_http()),
                    }
                }
            };
            if reflection_call {
                let mine = |m: &str| routes.is_public(m) && key.allows(m);
                return Ok(reflect(&shared, &key.plan_id, &mine, request).await);
            }
            if !key.allows(path) {
                return Ok(Status::permission_denied(format!(
                    "your plan `{}` does not include {}; ask for a plan that does",
                    key.plan_id,
                    path.trim_start_matches('/')
                ))
                .into_http());
            }
            request.extensions_mut().insert(Caller::Key(key));
            inner.call(request).await
        })
    }
}

async fn reflect(
    shared: &Shared,
    plan_id: &str,
    show: &(dyn Fn(&str) -> bool + Sync),
    request: Request<Body>,
) -> Response<Body> {
    let (mut v1, mut v1alpha) = match shared.reflection.for_plan(shared.generation(), plan_id, show) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot build reflection");
            return Status::internal("reflection is unavailable").into_http();
        }
    };
    let answer = if request.uri().path().starts_with(REFLECTION_V1) {
        v1.call(request).await
    } else {
        v1alpha.call(request).await
    };
    match answer {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A token bucket per key: RESOURCE_EXHAUSTED with RetryInfo when empty.
#[derive(Debug, Clone)]
pub struct Throttle<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for Throttle<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let routes = self.shared.routes();
        let checked = match request.extensions().get::<Caller>() {
            // A developer's own account calls have a bucket of their own,
            // so the portal works when the plan's rate is spent.
            Some(Caller::Key(key)) if routes.is_unmetered(path) => routes
                .self_service
                .check(&key.developer_id)
                .map_err(|wait| (wait, "your account's own calls".to_string())),
            Some(Caller::Key(key)) => key
                .limiter
                .check(path)
                .map_err(|wait| (wait, format!("plan `{}`", key.plan_id))),
            Some(Caller::Anonymous) => routes
                .anonymous_limiter
                .check(&Client::of(&request).addr)
                .map_err(|wait| (wait, "calls without a key from your address".to_string())),
            Some(Caller::Operator) | None => Ok(()),
        };
        match checked {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err((wait, whose)) => Either::Left(refuse(throttled(wait, &whose))),
        }
    }
}

/// The developer's quota for the period: RESOURCE_EXHAUSTED with QuotaFailure when used up.
#[derive(Debug, Clone)]
pub struct Quota<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for Quota<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if let Some(Caller::Key(key)) = request.extensions().get::<Caller>()
            && let Some(quota) = &key.quota
            && !self.shared.routes().is_unmetered(request.uri().path())
            && let Err(exceeded) = quota.admit(kit_values::now_micros())
        {
            let resets = kit_values::rfc3339(exceeded.resets_at);
            return Either::Left(refuse(Status::with_error_details(
                Code::ResourceExhausted,
                format!(
                    "the quota of {} calls of plan `{}` is used up until {resets}",
                    exceeded.limit, key.plan_id
                ),
                ErrorDetails::with_quota_failure_violation(
                    format!("developer:{}", key.developer_id),
                    format!("{} calls per period; resets at {resets}", exceeded.limit),
                ),
            )));
        }
        Either::Right(self.inner.call(request))
    }
}

/// Stage and canary: picks the upstream, and sets the metadata only the
/// gateway may set (identity, stage, stage variables), removing any the
/// caller sent.
#[derive(Debug, Clone)]
pub struct Router<S> {
    inner: S,
    shared: Arc<Shared>,
}

fn gateway_only(name: &HeaderName) -> bool {
    let n = name.as_str();
    n.starts_with(identity::PREFIX) || n.starts_with("x-stage-var-")
}

impl<S> Service<Request<Body>> for Router<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let routes = self.shared.routes();
        let stage_name = match request.headers().get("x-stage") {
            None => routes.default_stage.as_str(),
            Some(v) => v.to_str().unwrap_or("?"),
        };
        let Some(stage) = routes.stages.get(stage_name) else {
            let mut names: Vec<&str> = routes.stages.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Either::Left(refuse(Status::not_found(format!(
                "stage {stage_name:?} does not exist; x-stage may be one of {}",
                names.join(", ")
            ))));
        };
        let caller = request.extensions().get::<Caller>().cloned();
        if let Some(Caller::Key(key)) = &caller
            && !key.allows_stage(&stage.name)
        {
            return Either::Left(refuse(Status::permission_denied(format!(
                "your plan `{}` may not call stage {:?}",
                key.plan_id, stage_name
            ))));
        }
        let path = request.uri().path();
        let package = package_of(path).unwrap_or_default();
        let Some(primary) = stage.routes.get(package) else {
            return Either::Left(refuse(Status::unimplemented(format!(
                "stage {stage_name:?} serves no {package} here"
            ))));
        };
        let canary = match (&caller, stage.canaries.get(package)) {
            (Some(Caller::Key(key)), Some(canary)) if canary.chooses(&key.key_id) => Some(canary.clone()),
            _ => None,
        };
        let upstream = canary
            .as_ref()
            .map_or_else(|| primary.clone(), |c| c.upstream.clone());
        let pass_key = routes.pass_api_key.contains(package);
        let headers = request.headers_mut();
        let forged: Vec<HeaderName> = headers.keys().filter(|n| gateway_only(n)).cloned().collect();
        for name in forged {
            headers.remove(name);
        }
        if !pass_key {
            headers.remove(identity::API_KEY);
            // The admin token goes only where it is checked again (apikeys).
            headers.remove(http::header::AUTHORIZATION);
        }
        // Who the call is for, always said: an upstream takes a call
        // without it as from inside the mesh, never as from a customer.
        match &caller {
            Some(Caller::Key(key)) => {
                headers.insert(identity::PRINCIPAL, HeaderValue::from_static("key"));
                headers.insert(identity::KEY_ID, key.identity.key_id.clone());
                headers.insert(identity::DEVELOPER_ID, key.identity.developer_id.clone());
                headers.insert(identity::CUSTOMER_EMAIL, key.identity.email.clone());
            }
            Some(Caller::Operator) => {
                headers.insert(identity::PRINCIPAL, HeaderValue::from_static("operator"));
            }
            Some(Caller::Anonymous) | None => {
                headers.insert(identity::PRINCIPAL, HeaderValue::from_static("anonymous"));
            }
        }
        headers.insert(identity::STAGE, stage.header.clone());
        for (name, value) in &stage.variables {
            headers.insert(name.clone(), value.clone());
        }
        // The server span (the current one) says whose call it is and where it went.
        let span = tracing::Span::current();
        if let Some(Caller::Key(key)) = &caller {
            span.record("ferrymesh.api_key_id", &*key.key_id);
        }
        span.record("ferrymesh.stage", &*stage.name);
        let stage = stage.name.clone();
        request.extensions_mut().insert(Route {
            upstream,
            canary,
            stage,
        });
        Either::Right(self.inner.call(request))
    }
}

/// Counts the call for its key, method, stage and minute, once an
/// upstream has answered it; a developer's own account calls are not counted.
#[derive(Debug, Clone)]
pub struct Metered<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for Metered<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let metered = match (
            request.extensions().get::<Caller>(),
            request.extensions().get::<Route>(),
        ) {
            (Some(Caller::Key(key)), Some(route))
                if !self.shared.routes().is_unmetered(request.uri().path()) =>
            {
                Some((key.clone(), route.stage.clone(), request.uri().clone()))
            }
            _ => None,
        };
        let Some((key, stage, uri)) = metered else {
            return Either::Left(self.inner.call(request));
        };
        let shared = self.shared.clone();
        let answer = self.inner.call(request);
        Either::Right(Box::pin(async move {
            let response = answer.await?;
            // Only a call an upstream received is billed; one the gateway
            // answered itself (no upstream reachable) gives its quota back.
            if response.extensions().get::<Reached>().is_some() {
                shared
                    .meter
                    .count(&key.key_id, &key.developer_id, uri.path(), &stage);
            } else if let Some(quota) = &key.quota {
                quota.refund();
            }
            Ok(response)
        }))
    }
}

/// The innermost service: sends the call to the chosen upstream.
#[derive(Debug, Clone, Default)]
pub struct Forward;

impl Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> BoxFuture {
        let Some(route) = request.extensions_mut().remove::<Route>() else {
            return Box::pin(refuse(Status::internal("the call was not routed")));
        };
        // The caller's own trace continues through the gateway's span and
        // this call's client span.
        let span = kit::client::ForwardSpan::start(&mut request, route.upstream.peer());
        Box::pin(async move {
            let mut response = span.observe(route.upstream.clone().forward(request).await);
            let Some(canary) = route.canary else {
                return Ok(response);
            };
            // Tells the caller (and a test) which side served it.
            response
                .headers_mut()
                .insert(identity::CANARY, HeaderValue::from_static("true"));
            if let Some(code) = header_status(&response) {
                canary.record(code);
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(Observed::new(body, move |code| canary.record(code)))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::canary::CanaryRegistry;
    use crate::keys::{Bearer, KeyCache};
    use crate::limits::Quotas;
    use crate::metering;
    use crate::reflection::ReflectionCache;

    fn shared() -> Arc<Shared> {
        let text = r#"
            public = ["ferrymesh.catalog.v1.*"]
            anonymous = ["ferrymesh.catalog.v1.CatalogService/GetProduct"]
            [stages.prod.routes]
            "ferrymesh.catalog.v1" = "http://127.0.0.1:1"
            [stages.prod.variables]
            tier = "gold"
        "#;
        let mut upstreams = |url: &str| Backend::new(url).map(Arc::new);
        let routes =
            crate::config::parse("t.toml", text, &mut upstreams, &CanaryRegistry::default()).unwrap();
        let client = crate::pb::ferrymesh::apikeys::v1::api_keys_service_client::ApiKeysServiceClient::with_interceptor(
            kit::client::Upstream::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap(),
            Bearer(HeaderValue::from_static("Bearer x")),
        );
        let quotas = Arc::new(Quotas::default());
        Arc::new(Shared {
            routes: arc_swap::ArcSwap::from_pointee(routes),
            generation: AtomicU64::new(1),
            keys: Arc::new(KeyCache::new(client, Duration::from_secs(30), quotas.clone())),
            quotas,
            meter: metering::Meter::default(),
            reflection: ReflectionCache::default(),
            admin: blake3::hash(b"0123456789abcdef"),
        })
    }

    /// Keeps the headers of the request it receives.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Option<http::HeaderMap>>>);

    impl Service<Request<Body>> for Seen {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            *self.0.lock().unwrap() = Some(request.headers().clone());
            ready(Ok(Response::new(Body::empty())))
        }
    }

    #[tokio::test]
    async fn the_router_sets_what_only_the_gateway_may_and_removes_forgeries() {
        let seen = Seen::default();
        let mut router = RouteLayer::new(shared()).layer(seen.clone());
        let mut request = Request::builder()
            .uri("/ferrymesh.catalog.v1.CatalogService/GetProduct")
            .header("x-ferrymesh-customer-email", "someone-else@example.com")
            .header("x-ferrymesh-developer-id", "forged")
            .header("x-stage-var-tier", "forged")
            .header("x-api-key", "fmk_secret")
            .header("x-correlation-id", "kept")
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(Caller::Anonymous);
        router.call(request).await.unwrap();
        let headers = seen.0.lock().unwrap().clone().unwrap();
        assert_eq!(headers.get("x-stage-var-tier").unwrap(), "gold");
        assert_eq!(headers.get("x-ferrymesh-stage").unwrap(), "prod");
        assert!(headers.get("x-ferrymesh-customer-email").is_none());
        assert!(headers.get("x-ferrymesh-developer-id").is_none());
        assert!(
            headers.get("x-api-key").is_none(),
            "the key goes only to pass_api_key packages"
        );
        assert_eq!(headers.get("x-correlation-id").unwrap(), "kept");
    }
}
