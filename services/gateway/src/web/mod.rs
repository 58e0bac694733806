//! gRPC-Web for browsers, on the gateway's one port.
//!
//! tonic-web turns a gRPC-Web call (`application/grpc-web`, `+proto`, and
//! the base64 `-text` forms) into a gRPC call and its answer back, so a
//! page reaches the same contracts as grpcurl does, through the same keys,
//! throttles, quotas and metering. On top of it, `application/grpc-web+json`
//! (a message format the gRPC-Web protocol leaves open) carries each message
//! as the contract's canonical JSON: the gateway encodes it into Protobuf
//! from the contracts' descriptors (prost-reflect), as grpcurl does on the
//! client's side, and decodes the answers back. The console's pages and its
//! "try it" form use it, so a browser needs no Protobuf library.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, header};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::Status;
use tonic::body::Body;

/// Every gRPC-Web content type starts so.
const GRPC_WEB: &str = "application/grpc-web";
/// The JSON form the console speaks.
pub const GRPC_WEB_JSON: &str = "application/grpc-web+json";
/// The flag of a frame that carries trailers, not a message.
const TRAILERS: u8 = 0x80;

/// The gRPC-Web content types, exactly: tonic-web's four and the JSON form.
const GRPC_WEB_TYPES: &[&str] = &[
    GRPC_WEB,
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
    GRPC_WEB_JSON,
];

/// Whether a request is a gRPC-Web call, in one of its forms exactly.
pub fn is_grpc_web(request: &Request<Body>) -> bool {
    request.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        GRPC_WEB_TYPES
            .iter()
            .any(|t| v.as_bytes().eq_ignore_ascii_case(t.as_bytes()))
    })
}

/// Whether a request is a gRPC call: `application/grpc`, or `application/grpc+FORMAT`.
pub fn is_grpc(request: &Request<Body>) -> bool {
    request.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v == b"application/grpc" || v.starts_with(b"application/grpc+")
    })
}

/// The answer to a POST that is neither gRPC nor gRPC-Web (as the gRPC
/// over HTTP/2 spec asks): 415 with what to send instead.
pub fn unsupported_media_type() -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(Bytes::from_static(
        b"a call to this gateway is gRPC (content-type application/grpc) or gRPC-Web \
          (application/grpc-web, +proto, -text, -text+proto or +json)\n",
    ))));
    *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn is_json(request: &Request<Body>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(GRPC_WEB_JSON.as_bytes()))
}

/// The contracts' descriptors, decoded once.
pub fn contracts() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::EVERY_DESCRIPTOR_SET)
            .map_err(|e| format!("the contracts' descriptors: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A gRPC-Web answer that carries only a status (a "trailers-only" response).
fn refusal(status: &Status, content_type: HeaderValue) -> Response<Body> {
    let mut response = status.clone().into_http::<Body>();
    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    response
}

/// A gRPC-Web call refused before it reached the gateway's stack (which
/// gives every call it sees a correlation id): answered in `content_type`
/// with the caller's correlation id or a new one, and said in the log with
/// that id, so the refusal can be found there as any other call's.
fn correlated_refusal(
    headers: &http::HeaderMap,
    path: &str,
    status: &Status,
    content_type: HeaderValue,
) -> Response<Body> {
    let correlation_id = headers
        .get(kit::rpc_telemetry::CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = if method_of(path).is_ok() {
        path.trim_start_matches('/')
    } else {
        "unknown"
    };
    tracing::info!(
        correlation_id = %correlation_id,
        method,
        code = ?status.code(),
        error = ?status.message(),
        "gRPC-Web call refused before the gateway's checks"
    );
    let mut response = refusal(status, content_type);
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response
            .headers_mut()
            .insert(kit::rpc_telemetry::CORRELATION_ID, value);
    }
    response
}

/// A gRPC-Web call refused before it was served, answered in the
/// request's own content type.
pub fn refusal_to(request: &Request<Body>, status: &Status) -> Response<Body> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(GRPC_WEB));
    correlated_refusal(request.headers(), request.uri().path(), status, content_type)
}

/// Serves one gRPC-Web call: the JSON form is turned into the Protobuf one
/// first, read under the gateway's message size and body timeout; then
/// tonic-web makes it a gRPC call for `grpc`.
pub async fn serve<S>(request: Request<Body>, grpc: S, limits: &crate::guard::Limits) -> Response<Body>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use tower::{Layer, ServiceExt};
    let web = tonic_web::GrpcWebLayer::new().layer(grpc);
    let mut request = request;
    // The length is the web form's (base64 for -text), not the gRPC body's
    // tonic-web makes of it; sent on, the upstream would wait for bytes
    // that never come. The body is streamed without it.
    request.headers_mut().remove(header::CONTENT_LENGTH);
    if !is_json(&request) {
        return match web.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let (headers, path) = (request.headers().clone(), request.uri().path().to_string());
    let (request, output) = match to_proto(request, limits.max_message_bytes, limits.body_timeout).await {
        Ok(r) => r,
        Err(status) => {
            return correlated_refusal(&headers, &path, &status, HeaderValue::from_static(GRPC_WEB_JSON));
        }
    };
    let response = match web.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (mut parts, body) = response.into_parts();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(GRPC_WEB_JSON));
    if let Some(details) = details_json(&parts.headers) {
        parts.headers.insert(DETAILS_JSON, details);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::new(JsonAnswers::new(body, output)))
}

/// The error details of a status as JSON, beside the binary form, for pages.
const DETAILS_JSON: &str = "grpc-status-details-json";

/// `grpc-status-details-bin` (google.rpc.Status) as JSON, percent-encoded.
fn details_json(headers: &http::HeaderMap) -> Option<HeaderValue> {
    use serde_json::{Map, Value, json};
    use tonic_types::StatusExt;
    if !headers.contains_key("grpc-status-details-bin") {
        return None;
    }
    let details = Status::from_header_map(headers)?.get_error_details();
    let mut out = Map::new();
    if let Some(b) = details.bad_request() {
        let v: Vec<Value> = b
            .field_violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description}))
            .collect();
        out.insert("field_violations".into(), json!(v));
    }
    if let Some(r) = details.retry_info() {
        out.insert(
            "retry_delay".into(),
            json!(r.retry_delay.map(|d| format!("{:.3}s", d.as_secs_f64()))),
        );
    }
    if let Some(q) = details.quota_failure() {
        let v: Vec<Value> = q
            .violations
            .iter()
            .map(|v| json!({"subject": v.subject, "description": v.description}))
            .collect();
        out.insert("quota_violations".into(), json!(v));
    }
    if let Some(e) = details.error_info() {
        out.insert(
            "error_info".into(),
            json!({"reason": e.reason, "domain": e.domain, "metadata": e.metadata}),
        );
    }
    if let Some(p) = details.precondition_failure() {
        let v: Vec<Value> = p
            .violations
            .iter()
            .map(|v| json!({"type": v.r#type, "subject": v.subject, "description": v.description}))
            .collect();
        out.insert("precondition_violations".into(), json!(v));
    }
    if let Some(r) = details.resource_info() {
        out.insert(
            "resource_info".into(),
            json!({"resource_type": r.resource_type, "resource_name": r.resource_name, "description": r.description}),
        );
    }
    if let Some(h) = details.help() {
        let v: Vec<Value> = h
            .links
            .iter()
            .map(|l| json!({"description": l.description, "url": l.url}))
            .collect();
        out.insert("help".into(), json!(v));
    }
    if out.is_empty() {
        return None;
    }
    HeaderValue::from_str(&percent_encoding_lite(&Value::Object(out).to_string())).ok()
}

/// A trailers frame's text with the details as JSON added, when it has any.
fn with_details(frame: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(frame.get(5..)?).ok()?;
    let mut headers = http::HeaderMap::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let details = details_json(&headers)?;
    let text = format!("{text}{DETAILS_JSON}:{}\r\n", details.to_str().ok()?);
    let mut out = BytesMut::with_capacity(text.len() + 5);
    out.put_u8(TRAILERS);
    out.put_u32(u32::try_from(text.len()).ok()?);
    out.put_slice(text.as_bytes());
    Some(out.freeze())
}

/// The method's input and output messages, from the request path.
fn method_of(path: &str) -> Result<(MessageDescriptor, MessageDescriptor), Status> {
    let pool = contracts().map_err(Status::internal)?;
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| Status::unimplemented(format!("{path} is not /package.Service/Method")))?;
    let method = pool
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == method))
        .ok_or_else(|| {
            Status::unimplemented(format!(
                "{} is not a method of ferrymesh's contracts",
                path.trim_start_matches('/')
            ))
        })?;
    Ok((method.input(), method.output()))
}

/// Reads a JSON call's body whole: one message of at most `max` bytes and
/// its prefix, with no wait longer than `stall` for its next piece (as the
/// gateway's guard reads a gRPC body), so a client that stops sending
/// does not hold the call open.
async fn read_whole(body: Body, max: usize, stall: std::time::Duration) -> Result<Bytes, Status> {
    let limit = max.saturating_add(5);
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::new();
    loop {
        let next = tokio::time::timeout(stall, body.frame()).await.map_err(|_| {
            Status::deadline_exceeded(format!(
                "the request body stalled: nothing more came for {stall:?}"
            ))
        })?;
        match next {
            None => return Ok(out.freeze()),
            Some(Err(e)) => return Err(Status::cancelled(format!("the request body was not read: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > limit {
                        return Err(Status::resource_exhausted(format!(
                            "the request is larger than the gateway's limit ({max} bytes)"
                        )));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Reads the JSON messages of a call and writes them as Protobuf.
async fn to_proto(
    request: Request<Body>,
    max: usize,
    stall: std::time::Duration,
) -> Result<(Request<Body>, MessageDescriptor), Status> {
    let (input, output) = method_of(request.uri().path())?;
    let (mut parts, body) = request.into_parts();
    let bytes = read_whole(body, max, stall).await?;
    let mut frames = bytes.clone();
    let mut out = BytesMut::with_capacity(bytes.len());
    while frames.has_remaining() {
        if frames.remaining() < 5 {
            return Err(Status::invalid_argument(
                "a gRPC-Web message needs a 5-byte prefix: a flag byte, then its length (4 bytes, big-endian)",
            ));
        }
        let flag = frames.get_u8();
        let length = frames.get_u32() as usize;
        if flag != 0 {
            return Err(Status::invalid_argument(format!(
                "message flag {flag:#04x}: JSON messages are sent uncompressed with flag 0"
            )));
        }
        if frames.remaining() < length {
            return Err(Status::invalid_argument(format!(
                "the prefix announces {length} bytes but {} follow",
                frames.remaining()
            )));
        }
        let json = frames.split_to(length);
        let mut deserializer = serde_json::Deserializer::from_slice(&json);
        let message = DynamicMessage::deserialize(input.clone(), &mut deserializer)
            .and_then(|m| deserializer.end().map(|()| m))
            .map_err(|e| {
                Status::invalid_argument(format!("the request is not a JSON {}: {e}", input.full_name()))
            })?;
        let encoded = message.encode_to_vec();
        out.put_u8(0);
        out.put_u32(
            u32::try_from(encoded.len())
                .map_err(|_| Status::resource_exhausted("the message is too large"))?,
        );
        out.put_slice(&encoded);
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc-web+proto"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok((
        Request::from_parts(parts, Body::new(http_body_util::Full::new(out.freeze()))),
        output,
    ))
}

pin_project_lite::pin_project! {
    /// A gRPC-Web answer whose messages are rewritten as JSON as they
    /// stream; the trailers frame passes as it is.
    struct JsonAnswers {
        #[pin]
        inner: Body,
        output: MessageDescriptor,
        pending: BytesMut,
        done: bool,
    }
}

impl JsonAnswers {
    fn new(inner: Body, output: MessageDescriptor) -> JsonAnswers {
        JsonAnswers {
            inner,
            output,
            pending: BytesMut::new(),
            done: false,
        }
    }
}

/// The JSON of one Protobuf message, every field shown with its proto name.
fn to_json(output: &MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, Status> {
    let message = DynamicMessage::decode(output.clone(), bytes)
        .map_err(|e| Status::internal(format!("the answer is not a {}: {e}", output.full_name())))?;
    let options = SerializeOptions::new()
        .skip_default_fields(false)
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true);
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(&mut serializer, &options)
        .map_err(|e| Status::internal(format!("the answer could not be written as JSON: {e}")))?;
    Ok(out)
}

/// A trailers frame that ends the call with `status`.
fn trailers_frame(status: &Status) -> Bytes {
    let text = format!(
        "grpc-status:{}\r\ngrpc-message:{}\r\n",
        status.code() as i32,
        percent_encoding_lite(status.message())
    );
    let mut out = BytesMut::with_capacity(text.len() + 5);
    out.put_u8(TRAILERS);
    out.put_u32(u32::try_from(text.len()).unwrap_or(u32::MAX));
    out.put_slice(text.as_bytes());
    out.freeze()
}

/// grpc-message is percent-encoded outside printable ASCII (and `%`).
fn percent_encoding_lite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl http_body::Body for JsonAnswers {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut this = self.project();
        loop {
            // Every whole frame buffered so far, rewritten.
            let mut out = BytesMut::new();
            while this.pending.len() >= 5 {
                let flag = this.pending[0];
                let length =
                    u32::from_be_bytes([this.pending[1], this.pending[2], this.pending[3], this.pending[4]])
                        as usize;
                if this.pending.len() < 5 + length {
                    break;
                }
                let frame = this.pending.split_to(5 + length);
                if flag & TRAILERS != 0 {
                    match with_details(&frame) {
                        Some(rewritten) => out.put_slice(&rewritten),
                        None => out.put_slice(&frame),
                    }
                    continue;
                }
                match to_json(this.output, &frame[5..]) {
                    Ok(json) => {
                        out.put_u8(0);
                        out.put_u32(u32::try_from(json.len()).unwrap_or(u32::MAX));
                        out.put_slice(&json);
                    }
                    Err(status) => {
                        // Ends the call: the page sees why.
                        *this.done = true;
                        this.pending.clear();
                        out.put_slice(&trailers_frame(&status));
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    *this.done = true;
                    if !this.pending.is_empty() {
                        this.pending.clear();
                        let status = Status::internal("the answer ended inside a message");
                        return Poll::Ready(Some(Ok(Frame::data(trailers_frame(&status)))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending.extend_from_slice(&data),
                    // HTTP trailers (none under tonic-web, which puts them in the body).
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests;
