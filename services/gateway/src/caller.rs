//! Who is calling and from where: the caller as the auth layer found it,
//! the client connection's address and its key-lookup bucket, and the
//! marks and refusals the stack's layers share.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::keys::CachedKey;

/// Who is calling, as the auth layer found out.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A valid key.
    Key(Arc<CachedKey>),
    /// No key, on a method open to anyone (signing up).
    Anonymous,
    /// The admin token, on an operator's method: neither throttled nor metered.
    Operator,
}

/// Where a call comes from, as the accept loop knows it: the client's
/// address and its connection's bucket for API keys not seen before.
#[derive(Debug, Clone)]
pub struct Client {
    /// The address the connection comes from.
    pub addr: std::net::IpAddr,
    /// Lookups of keys the gateway has not cached, on this connection.
    pub key_lookups: Arc<crate::limits::KeyLimiter>,
}

/// Lookups of uncached API keys one connection may make: a key holder
/// sends one key, so more than a few a second is someone guessing.
const KEY_LOOKUPS_PER_CONNECTION: (f64, i32) = (20.0, 40);

impl Client {
    /// A new connection from `addr`.
    pub fn new(addr: std::net::IpAddr) -> Client {
        let (rate, burst) = KEY_LOOKUPS_PER_CONNECTION;
        Client {
            addr,
            key_lookups: Arc::new(crate::limits::KeyLimiter::new(rate, burst)),
        }
    }

    /// The client of `request`; an unspecified address when the accept loop set none (unit tests).
    pub(crate) fn of<B>(request: &Request<B>) -> Client {
        request
            .extensions()
            .get::<Client>()
            .cloned()
            .unwrap_or_else(|| Client::new(std::net::IpAddr::from([0, 0, 0, 0])))
    }
}

/// RESOURCE_EXHAUSTED with RetryInfo: `what` is over its rate.
pub(crate) fn throttled(wait: Duration, what: &str) -> Status {
    // Whole milliseconds, at least 1, so a client never retries at once.
    let wait = Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("rate limit of {what} exceeded; retry in {} ms", wait.as_millis()),
        ErrorDetails::with_retry_info(Some(wait)),
    )
}

/// Marks a response that came from the upstream, not from the gateway.
#[derive(Debug, Clone, Copy)]
pub struct Reached;
