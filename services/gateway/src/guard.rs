//! What the gateway bounds before it knows who is calling (the WAF part):
//! how many headers a call may carry, how many calls a connection may make
//! per second before any key is checked, how large each gRPC message may
//! be and that its framing is sound, and how long a client may stall a
//! request body. A bad call gets a gRPC status that says what to fix; the
//! connection and every other call on it carry on.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The limits, from the gateway's flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most headers (metadata entries) on one call.
    pub max_headers: usize,
    /// Largest gRPC message in a request body, in bytes.
    pub max_message_bytes: usize,
    /// Longest wait for the next piece of a request body that has not ended.
    pub body_timeout: Duration,
}

/// What was wrong with a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A message longer than the limit.
    TooLarge {
        /// Its length prefix.
        length: u64,
        /// The limit.
        max: usize,
    },
    /// A compressed-flag byte other than 0 or 1.
    BadFlag(u8),
    /// A message marked compressed on a call that names no `grpc-encoding`.
    CompressedWithoutEncoding,
    /// The body ended inside a message.
    Truncated {
        /// Bytes still owed by the last length prefix (or its header).
        missing: u64,
    },
    /// No more of the body came within the limit.
    Stalled(Duration),
}

impl Violation {
    /// The status the caller gets, as a gRPC server would answer.
    pub fn status(&self) -> Status {
        match self {
            Violation::TooLarge { length, max } => Status::resource_exhausted(format!(
                "a request message of {length} bytes is larger than the gateway's limit of {max} bytes; send smaller messages"
            )),
            Violation::BadFlag(flag) => Status::internal(format!(
                "malformed gRPC framing: compressed-flag byte {flag}, which must be 0 or 1"
            )),
            Violation::CompressedWithoutEncoding => Status::internal(
                "a message is marked compressed but the call names no grpc-encoding; set grpc-encoding or send it uncompressed",
            ),
            Violation::Truncated { missing } => Status::internal(format!(
                "the request body ended {missing} bytes short of its last message's length prefix"
            )),
            Violation::Stalled(after) => Status::deadline_exceeded(format!(
                "the request body stalled: nothing more came for {after:?}"
            )),
        }
    }
}

/// Follows gRPC's length-prefixed messages (a flag byte, a 4-byte
/// big-endian length, the message) across the pieces a body arrives in.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    max: usize,
    compressed_ok: bool,
    header: [u8; 5],
    header_len: usize,
    remaining: u64,
    failed: Option<Violation>,
}

impl FrameScanner {
    /// Messages up to `max` bytes; compressed ones only when `compressed_ok`.
    pub fn new(max: usize, compressed_ok: bool) -> FrameScanner {
        FrameScanner {
            max,
            compressed_ok,
            header: [0; 5],
            header_len: 0,
            remaining: 0,
            failed: None,
        }
    }

    /// Takes the next piece of the body; the first violation sticks.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), Violation> {
        if let Some(v) = &self.failed {
            return Err(v.clone());
        }
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len < 5 {
                break;
            }
            self.header_len = 0;
            let [flag, a, b, c, d] = self.header;
            let length = u64::from(u32::from_be_bytes([a, b, c, d]));
            let violation = match flag {
                0 => None,
                1 if self.compressed_ok => None,
                1 => Some(Violation::CompressedWithoutEncoding),
                other => Some(Violation::BadFlag(other)),
            }
            .or_else(|| {
                (length > self.max as u64).then_some(Violation::TooLarge {
                    length,
                    max: self.max,
                })
            });
            if let Some(v) = violation {
                self.failed = Some(v.clone());
                return Err(v);
            }
            self.remaining = length;
        }
        Ok(())
    }

    /// Whether the body may end here: between messages, with no fault.
    pub fn at_boundary(&self) -> bool {
        self.failed.is_none() && self.header_len == 0 && self.remaining == 0
    }

    /// The body ended: it must not end inside a message.
    pub fn finish(&mut self) -> Result<(), Violation> {
        if let Some(v) = &self.failed {
            return Err(v.clone());
        }
        let missing = match self.header_len {
            0 => self.remaining,
            n => (5 - n) as u64,
        };
        if missing > 0 {
            let v = Violation::Truncated { missing };
            self.failed = Some(v.clone());
            return Err(v);
        }
        Ok(())
    }
}

/// Where a call's body violation is kept for the proxy, which answers
/// with it instead of whatever the upstream made of the cut-off body.
#[derive(Debug, Clone, Default)]
pub struct BodyViolation(Arc<OnceLock<Violation>>);

impl BodyViolation {
    /// The violation, if the body had one.
    pub fn get(&self) -> Option<&Violation> {
        self.0.get()
    }
}

pin_project_lite::pin_project! {
    /// A request body checked as it streams past.
    struct Guarded {
        #[pin]
        inner: Body,
        scanner: FrameScanner,
        found: BodyViolation,
        timeout: Duration,
        stall: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl Guarded {
    fn fail(found: &BodyViolation, v: Violation) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let status = v.status();
        let _ = found.0.set(v);
        Poll::Ready(Some(Err(status)))
    }
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.stall = None;
                if let Some(data) = frame.data_ref()
                    && let Err(v) = this.scanner.push(data)
                {
                    return Guarded::fail(this.found, v);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => match this.scanner.finish() {
                Ok(()) => Poll::Ready(None),
                Err(v) => Guarded::fail(this.found, v),
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => {
                let timeout = *this.timeout;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Guarded::fail(this.found, Violation::Stalled(timeout)),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Inside a message, the end must be polled, so `finish` sees it.
        self.inner.is_end_stream() && self.scanner.at_boundary()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // No length goes on: what arrives may not be what the upstream
        // gets (gRPC-Web's base64 text is decoded on the way; trailers are
        // dropped), and an HTTP/2 client sends an exact hint as
        // content-length. gRPC needs none.
        http_body::SizeHint::default()
    }
}

impl Limits {
    /// Checks what can be checked at once (the headers) and wraps the body
    /// so its framing is checked as it streams; the caller answers the
    /// returned status instead when the call is refused now.
    pub fn admit(&self, request: Request<Body>) -> Result<Request<Body>, Status> {
        let count = request.headers().len();
        if count > self.max_headers {
            return Err(Status::invalid_argument(format!(
                "the call carries {count} headers; the gateway takes at most {}",
                self.max_headers
            )));
        }
        let compressed_ok = request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() != b"identity");
        let found = BodyViolation::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(found.clone());
        let body = Body::new(Guarded {
            inner: body,
            scanner: FrameScanner::new(self.max_message_bytes, compressed_ok),
            found,
            timeout: self.body_timeout,
            stall: None,
        });
        Ok(Request::from_parts(parts, body))
    }
}

/// Calls a connection may make before any key is checked: a token bucket per connection.
#[derive(Debug)]
pub struct ConnectionRate(Option<governor::DefaultDirectRateLimiter>);

impl ConnectionRate {
    /// `per_second` calls a second with bursts of `burst`; 0 means no limit.
    pub fn new(per_second: u32, burst: u32) -> ConnectionRate {
        let quota = std::num::NonZeroU32::new(per_second).map(|rate| {
            governor::Quota::per_second(rate)
                .allow_burst(std::num::NonZeroU32::new(burst.max(1)).unwrap_or(std::num::NonZeroU32::MIN))
        });
        ConnectionRate(
            quota.map(|q| governor::RateLimiter::direct_with_clock(q, crate::limits::clock().clone())),
        )
    }

    /// `None` when the call may go on, else RESOURCE_EXHAUSTED with RetryInfo.
    pub fn check(&self) -> Option<Status> {
        use governor::clock::Clock;
        let limiter = self.0.as_ref()?;
        let not_until = limiter.check().err()?;
        let wait = not_until.wait_time_from(crate::limits::clock().now());
        let wait = Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
        Some(Status::with_error_details(
            Code::ResourceExhausted,
            format!(
                "this connection sends calls faster than the gateway takes them; retry in {} ms or spread calls over more connections",
                wait.as_millis()
            ),
            ErrorDetails::with_retry_info(Some(wait)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn whole_messages_pass_in_any_pieces() {
        let stream = [message(0, b"hello"), message(0, b""), message(0, &[7; 300])].concat();
        for piece in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut scanner = FrameScanner::new(1024, false);
            for chunk in stream.chunks(piece) {
                scanner.push(chunk).unwrap();
            }
            scanner.finish().unwrap();
        }
    }

    #[test]
    fn each_framing_fault_is_named() {
        let mut s = FrameScanner::new(10, false);
        assert_eq!(
            s.push(&message(0, &[0; 11])),
            Err(Violation::TooLarge { length: 11, max: 10 })
        );
        let mut s = FrameScanner::new(10, false);
        assert_eq!(
            s.push(&message(1, b"x")),
            Err(Violation::CompressedWithoutEncoding)
        );
        let mut s = FrameScanner::new(10, true);
        assert!(s.push(&message(1, b"x")).is_ok());
        let mut s = FrameScanner::new(10, false);
        assert_eq!(s.push(&message(2, b"x")), Err(Violation::BadFlag(2)));
        // A length prefix larger than the body.
        let mut s = FrameScanner::new(100, false);
        let mut short = message(0, &[1; 20]);
        short.truncate(15);
        s.push(&short).unwrap();
        assert_eq!(s.finish(), Err(Violation::Truncated { missing: 10 }));
        // A header cut short.
        let mut s = FrameScanner::new(100, false);
        s.push(&[0, 0]).unwrap();
        assert_eq!(s.finish(), Err(Violation::Truncated { missing: 3 }));
        // The first fault sticks.
        let mut s = FrameScanner::new(10, false);
        let _ = s.push(&message(9, b""));
        assert_eq!(s.push(&message(0, b"")), Err(Violation::BadFlag(9)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_in_any_pieces_give_the_same_verdict(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            piece in 1usize..17,
        ) {
            let whole = {
                let mut s = FrameScanner::new(64, false);
                s.push(&bytes).and_then(|()| s.finish())
            };
            let pieces = {
                let mut s = FrameScanner::new(64, false);
                bytes.chunks(piece).try_for_each(|c| s.push(c)).and_then(|()| s.finish())
            };
            proptest::prop_assert_eq!(whole, pieces);
        }
    }
}
