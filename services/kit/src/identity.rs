//! Who a call is for. The gateway vouches for its callers with
//! `x-ferrymesh-*` request headers, and nothing else may: this layer, in
//! every service's stack, drops request trailers (gRPC requests carry none,
//! and tonic would merge them into the metadata a handler reads), refuses
//! `x-ferrymesh-*` headers from any peer whose certificate is not the
//! gateway's, and turns the headers into one [`Principal`] a handler reads.
//! An identity that cannot be read is refused, never taken for "no one".

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::tls::MeshPeer;

/// The API key a caller sends the gateway (and the portal's methods).
pub const API_KEY: &str = "x-api-key";
/// What the gateway says the caller is: `key`, `operator`, `anonymous`, or
/// `internal` on the gateway's own calls (key checks, usage).
pub const PRINCIPAL: &str = "x-ferrymesh-principal";
/// The email of the developer whose API key made the call.
pub const CUSTOMER_EMAIL: &str = "x-ferrymesh-customer-email";
/// That developer's id.
pub const DEVELOPER_ID: &str = "x-ferrymesh-developer-id";
/// The id (never the secret) of the key that made the call.
pub const KEY_ID: &str = "x-ferrymesh-key-id";
/// The stage the gateway routed the call through.
pub const STAGE: &str = "x-ferrymesh-stage";
/// Whether the canary served the call (a response header).
pub const CANARY: &str = "x-ferrymesh-canary";
/// What every header only the gateway may set begins with.
pub const PREFIX: &str = "x-ferrymesh-";
/// The workload name of the gateway's certificate.
pub const GATEWAY: &str = "gateway";

/// Who a call is for, as a handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A key holder, through the gateway: everything they do is theirs.
    Customer {
        /// The developer's email, ASCII lowercase.
        email: String,
        /// The developer's id.
        developer_id: String,
        /// The key's id.
        key_id: String,
    },
    /// The admin token, through the gateway.
    Operator,
    /// No key, through the gateway (a method open to anyone).
    Anonymous,
    /// A caller inside the mesh, not through the gateway: a workload or the
    /// operator named by its certificate, or, on a plaintext mesh, whoever
    /// reaches the service's port.
    Internal,
}

impl Principal {
    /// The principal of a call, as this module's layer found it. A call
    /// that never passed the layer (a handler called in-process) is
    /// refused: no identity is not the same as every identity.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<&Principal, Status> {
        request.extensions().get::<Principal>().ok_or_else(|| {
            tracing::error!("a call reached a handler without passing the identity layer");
            Status::unauthenticated("the call carries no identity the service can read")
        })
    }

    /// Whether the caller may see every customer's data (operator, inside the mesh).
    pub fn unscoped(&self) -> bool {
        matches!(self, Principal::Operator | Principal::Internal)
    }

    /// The customer's email, for a key holder.
    pub fn customer_email(&self) -> Option<&str> {
        match self {
            Principal::Customer { email, .. } => Some(email),
            _ => None,
        }
    }
}

/// Why the identity headers of a call were refused.
fn unreadable(what: &str) -> Status {
    Status::unauthenticated(format!(
        "the caller's identity cannot be read: {what}; call through the gateway with an API key"
    ))
}

/// One header as printable ASCII, or why not.
fn ascii<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Status> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(text)),
        _ => Err(unreadable(&format!("{name} is empty or not printable ASCII"))),
    }
}

/// The principal the headers name, given who sent them.
pub fn principal(headers: &HeaderMap, peer: Peer<'_>) -> Result<Principal, Status> {
    let vouched: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    if let Peer::Workload(name) = peer
        && name != GATEWAY
        && !vouched.is_empty()
    {
        return Err(Status::permission_denied(format!(
            "{name} may not send {}: only the gateway vouches for a caller's identity",
            vouched.join(", ")
        )));
    }
    let from_gateway = matches!(peer, Peer::Workload(GATEWAY));
    let Some(kind) = ascii(headers, PRINCIPAL)? else {
        if let Some(name) = vouched
            .iter()
            .find(|n| [CUSTOMER_EMAIL, DEVELOPER_ID, KEY_ID].contains(n))
        {
            return Err(unreadable(&format!("{name} comes without {PRINCIPAL}")));
        }
        if from_gateway {
            return Err(unreadable(&format!("the gateway sent no {PRINCIPAL}")));
        }
        return Ok(Principal::Internal);
    };
    match kind {
        "key" => {
            let need =
                |name: &str| ascii(headers, name)?.ok_or_else(|| unreadable(&format!("{name} is missing")));
            let email = need(CUSTOMER_EMAIL)?;
            if !email.contains('@') {
                return Err(unreadable(&format!("{CUSTOMER_EMAIL} is not an email address")));
            }
            Ok(Principal::Customer {
                email: email.to_ascii_lowercase(),
                developer_id: need(DEVELOPER_ID)?.to_string(),
                key_id: need(KEY_ID)?.to_string(),
            })
        }
        "operator" | "anonymous" | "internal" => {
            if let Some(name) = vouched
                .iter()
                .find(|n| [CUSTOMER_EMAIL, DEVELOPER_ID, KEY_ID].contains(n))
            {
                return Err(unreadable(&format!("{name} comes with {PRINCIPAL}: {kind}")));
            }
            Ok(match kind {
                "operator" => Principal::Operator,
                "anonymous" => Principal::Anonymous,
                _ => Principal::Internal,
            })
        }
        other => Err(unreadable(&format!(
            "{PRINCIPAL} is {other:?}, which is none of key, operator, anonymous, internal"
        ))),
    }
}

/// Who is on the other end of the connection, as far as the service can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer<'a> {
    /// Under mutual TLS: the workload its certificate names.
    Workload(&'a str),
    /// A plaintext mesh: anyone who reaches the port.
    Unverified,
}

/// Methods any peer may call, whatever it sends: health checks and reflection.
fn open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Reads every call's [`Principal`] (see the module's doc).
#[derive(Debug, Clone)]
pub struct IdentityLayer {
    mtls: bool,
}

impl IdentityLayer {
    /// For a service that serves mutual TLS (`mtls`) or plaintext.
    pub fn new(mtls: bool) -> Self {
        IdentityLayer { mtls }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;

    fn layer(&self, inner: S) -> IdentityService<S> {
        IdentityService {
            inner,
            mtls: self.mtls,
        }
    }
}

/// The service [`IdentityLayer`] makes.
#[derive(Debug, Clone)]
pub struct IdentityService<S> {
    inner: S,
    mtls: bool,
}

impl<S> Service<Request<Body>> for IdentityService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response<Body>, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let mut request = request.map(without_trailers);
        if !open(request.uri().path()) {
            let name = request
                .extensions()
                .get::<MeshPeer>()
                .and_then(|p| p.identity.as_ref())
                .map(|i| Arc::<str>::from(i.name()));
            let peer = match (&name, self.mtls) {
                (Some(name), _) => Peer::Workload(name),
                // Under mTLS the authorization layer has refused a peer
                // without a certificate; this is only for safety.
                (None, true) => Peer::Workload(""),
                (None, false) => Peer::Unverified,
            };
            match principal(request.headers(), peer) {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                }
                Err(status) => {
                    tracing::warn!(
                        caller = name.as_deref().unwrap_or("unverified"),
                        method = request.uri().path(),
                        reason = status.message(),
                        "identity refused"
                    );
                    return Either::Left(std::future::ready(Ok(status.into_http())));
                }
            }
        }
        Either::Right(self.inner.call(request))
    }
}

/// `body` with its trailers dropped: gRPC requests carry none, and tonic
/// merges any it finds into the metadata handlers read. The gateway wraps
/// every request in it before anything else reads the body.
pub fn without_trailers(body: Body) -> Body {
    Body::new(NoTrailers { inner: body })
}

pin_project_lite::pin_project! {
    /// A request body with its trailers dropped: gRPC requests carry none,
    /// and tonic merges any it finds into the metadata handlers read.
    struct NoTrailers {
        #[pin]
        inner: Body,
    }
}

impl HttpBody for NoTrailers {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.project().inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => Poll::Ready(None),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    const KEY: &[(&str, &[u8])] = &[
        (PRINCIPAL, b"key"),
        (CUSTOMER_EMAIL, b"Ada@Example.com"),
        (DEVELOPER_ID, b"dev_1"),
        (KEY_ID, b"key_1"),
    ];

    #[test]
    fn the_gateway_names_a_customer_and_only_the_gateway_may() {
        let customer = principal(&headers(KEY), Peer::Workload(GATEWAY)).unwrap();
        assert_eq!(customer.customer_email(), Some("ada@example.com"));
        let refused = principal(&headers(KEY), Peer::Workload("workflow")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("only the gateway"),
            "{}",
            refused.message()
        );
        // A plaintext mesh cannot tell who sent it: it is taken as said.
        assert!(principal(&headers(KEY), Peer::Unverified).is_ok());
        assert_eq!(
            principal(&HeaderMap::new(), Peer::Unverified).unwrap(),
            Principal::Internal
        );
        assert_eq!(
            principal(&HeaderMap::new(), Peer::Workload("workflow")).unwrap(),
            Principal::Internal
        );
    }

    #[test]
    fn an_identity_that_cannot_be_read_is_refused_not_unscoped() {
        let non_ascii = [
            (PRINCIPAL, &b"key"[..]),
            (CUSTOMER_EMAIL, "mallöry@example.com".as_bytes()),
            (DEVELOPER_ID, b"dev_1"),
            (KEY_ID, b"key_1"),
        ];
        for (case, peer) in [
            (&non_ascii[..], Peer::Unverified),
            (&KEY[1..], Peer::Unverified),
            (&KEY[..2], Peer::Unverified),
            (&[(PRINCIPAL, &b"root"[..])][..], Peer::Unverified),
            (
                &[(PRINCIPAL, &b"operator"[..]), (CUSTOMER_EMAIL, b"a@b.c")][..],
                Peer::Unverified,
            ),
            (&[][..], Peer::Workload(GATEWAY)),
            (
                &[
                    (PRINCIPAL, &b"key"[..]),
                    (CUSTOMER_EMAIL, b""),
                    (DEVELOPER_ID, b"d"),
                    (KEY_ID, b"k"),
                ][..],
                Peer::Unverified,
            ),
        ] {
            let refused = principal(&headers(case), peer).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{case:?}");
        }
    }

    proptest! {
        /// Whatever a caller who is not the gateway sends, it never comes
        /// out as a customer or the operator.
        #[test]
        fn no_headers_from_another_workload_make_a_customer(
            names in proptest::collection::vec(
                prop_oneof![
                    Just(PRINCIPAL.to_string()), Just(CUSTOMER_EMAIL.to_string()),
                    Just(DEVELOPER_ID.to_string()), Just(KEY_ID.to_string()),
                    Just("X-Ferrymesh-Customer-Email".to_ascii_lowercase()),
                    "x-ferrymesh-[a-z-]{1,12}", "[a-z][a-z-]{0,12}",
                ],
                0..6,
            ),
            values in proptest::collection::vec(proptest::collection::vec(32u8..=255, 0..24), 6),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in names.iter().zip(values.iter()) {
                if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(value)) {
                    map.append(n, v);
                }
            }
            match principal(&map, Peer::Workload("workflow")) {
                Ok(p) => prop_assert_eq!(p, Principal::Internal),
                Err(s) => prop_assert_eq!(s.code(), tonic::Code::PermissionDenied),
            }
            // From the gateway, a customer is only ever printable ASCII with an @.
            if let Ok(Principal::Customer { email, .. }) = principal(&map, Peer::Workload(GATEWAY)) {
                prop_assert!(email.bytes().all(|b| b.is_ascii_graphic()) && email.contains('@'));
            }
        }
    }
}
