//! Every way a public caller can reach the gateway, behind one function:
//! gRPC over HTTP/2, and gRPC-Web (binary, base64 text, JSON) over HTTP/1.1
//! and over HTTP/2. A call is written once as JSON and sent in each form;
//! the answer comes back as the gRPC status and the messages as JSON, so a
//! test can ask for the same outcome whatever the protocol.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// gRPC, as grpcurl and every generated client speak it.
    Grpc,
    /// gRPC-Web's binary form, over HTTP/1.1 and HTTP/2.
    WebProto { h2: bool },
    /// gRPC-Web's base64 text form.
    WebText { h2: bool },
    /// gRPC-Web with JSON messages, as the console speaks it.
    WebJson { h2: bool },
}

/// Every protocol the gateway serves.
pub(crate) const EVERY_PROTOCOL: &[Protocol] = &[
    Protocol::Grpc,
    Protocol::WebProto { h2: false },
    Protocol::WebProto { h2: true },
    Protocol::WebText { h2: false },
    Protocol::WebText { h2: true },
    Protocol::WebJson { h2: false },
    Protocol::WebJson { h2: true },
];

impl Protocol {
    fn content_type(self) -> &'static str {
        match self {
            Protocol::Grpc => "application/grpc",
            Protocol::WebProto { .. } => "application/grpc-web+proto",
            Protocol::WebText { .. } => "application/grpc-web-text",
            Protocol::WebJson { .. } => "application/grpc-web+json",
        }
    }

    fn over_h2(self) -> bool {
        match self {
            Protocol::Grpc => true,
            Protocol::WebProto { h2 } | Protocol::WebText { h2 } | Protocol::WebJson { h2 } => h2,
        }
    }
}

/// What came back: the gRPC status and each message as JSON.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) code: i32,
    pub(crate) message: String,
    pub(crate) messages: Vec<serde_json::Value>,
}

impl Outcome {
    /// The messages as one text, to look for an id in.
    pub(crate) fn text(&self) -> String {
        serde_json::Value::Array(self.messages.clone()).to_string()
    }
}

fn method(path: &str) -> MethodDescriptor {
    let pool = gateway::web::contracts().unwrap();
    let trimmed = path.trim_start_matches('/');
    let (service, name) = trimmed.split_once('/').unwrap();
    pool.get_service_by_name(service)
        .unwrap_or_else(|| panic!("no service {service}"))
        .methods()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no method {path}"))
}

fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Standard base64, as gRPC-Web's text form carries messages.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &[u8]) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    // Each base64 chunk of the answer may end in padding; decode them one by one.
    for piece in text.split(|c| *c == b'=').filter(|p| !p.is_empty()) {
        let digits: Vec<u8> = piece.iter().filter_map(|c| value(*c)).collect();
        for group in digits.chunks(4) {
            let mut n = 0u32;
            for (i, d) in group.iter().enumerate() {
                n |= u32::from(*d) << (18 - 6 * i);
            }
            let bytes = n.to_be_bytes();
            out.extend_from_slice(&bytes[1..group.len()]);
        }
    }
    out
}

/// The request body `json` makes in `protocol`'s form.
fn body(protocol: Protocol, method: &MethodDescriptor, json: &str) -> Vec<u8> {
    if let Protocol::WebJson { .. } = protocol {
        return frame(0, json.as_bytes());
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(method.input(), &mut deserializer)
        .unwrap_or_else(|e| panic!("{json} is not a {}: {e}", method.input().full_name()));
    let framed = frame(0, &message.encode_to_vec());
    match protocol {
        Protocol::WebText { .. } => base64(&framed).into_bytes(),
        _ => framed,
    }
}

/// Splits length-prefixed frames: (flag, payload).
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let end = (5 + length).min(body.len());
        out.push((body[0], body[5..end].to_vec()));
        body = &body[end..];
    }
    out
}

/// The answer, from its headers, body and (HTTP/2) trailers.
fn outcome(
    protocol: Protocol,
    method: &MethodDescriptor,
    headers: &http::HeaderMap,
    body: &[u8],
    trailers: Option<&http::HeaderMap>,
) -> Outcome {
    // tonic-web answers in base64 when the caller accepts it (as the
    // grpc-web JavaScript client asks), and says so in the content type.
    let text = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web-text"));
    let body = if text { unbase64(body) } else { body.to_vec() };
    let mut status: Option<(i32, String)> = None;
    let field = |map: &http::HeaderMap, name: &str| {
        map.get(name)
            .map(|v| crate::hostile_input::decode(&String::from_utf8_lossy(v.as_bytes())))
    };
    for map in [Some(headers), trailers].into_iter().flatten() {
        if let Some(code) = field(map, "grpc-status") {
            status = Some((
                code.parse().unwrap(),
                field(map, "grpc-message").unwrap_or_default(),
            ));
        }
    }
    let mut messages = Vec::new();
    for (flag, payload) in frames(&body) {
        if flag & 0x80 != 0 {
            let text = String::from_utf8_lossy(&payload).to_string();
            let get = |name: &str| {
                text.split("\r\n").find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| crate::hostile_input::decode(v.trim()))
                })
            };
            if let Some(code) = get("grpc-status") {
                status = Some((code.parse().unwrap(), get("grpc-message").unwrap_or_default()));
            }
        } else if let Protocol::WebJson { .. } = protocol {
            messages.push(serde_json::from_slice(&payload).unwrap());
        } else {
            // The field names as the contracts spell them, as the gateway's JSON form does.
            let message = DynamicMessage::decode(method.output(), payload.as_slice()).unwrap();
            let options = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
            let value = message
                .serialize_with_options(serde_json::value::Serializer, &options)
                .unwrap();
            messages.push(value);
        }
    }
    let (code, message) = status.unwrap_or_else(|| panic!("{protocol:?}: no grpc-status in {headers:?}"));
    Outcome {
        code,
        message,
        messages,
    }
}

/// Sends `json` to `path` through the gateway at `addr` in `protocol`'s
/// form with `headers`, and, over HTTP/2, the request `trailers`.
pub(crate) async fn call(
    addr: SocketAddr,
    protocol: Protocol,
    path: &str,
    json: &str,
    headers: &[(&str, &str)],
    trailers: &[(&str, &str)],
) -> Outcome {
    let method = method(path);
    let body = body(protocol, &method, json);
    let mut all = vec![("content-type", protocol.content_type())];
    match protocol {
        Protocol::Grpc => all.push(("te", "trailers")),
        Protocol::WebText { .. } => {
            all.extend([("x-grpc-web", "1"), ("accept", "application/grpc-web-text")])
        }
        _ => all.push(("x-grpc-web", "1")),
    }
    all.extend_from_slice(headers);
    if protocol.over_h2() {
        let (head, answer, answer_trailers) = h2_call(addr, path, &all, body, trailers).await;
        outcome(protocol, &method, &head, &answer, answer_trailers.as_ref())
    } else if !trailers.is_empty() {
        http1_chunked(addr, protocol, path, json, &all[1..], trailers).await
    } else {
        let answer = crate::console::http1(addr, "POST", path, &all, &body).await;
        let mut head = http::HeaderMap::new();
        for (k, v) in &answer.headers {
            head.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        outcome(protocol, &method, &head, &answer.body, None)
    }
}

/// One HTTP/2 request on its own connection: the answer's head, body and trailers.
pub(crate) async fn h2_call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    trailers: &[(&str, &str)],
) -> (http::HeaderMap, Vec<u8>, Option<http::HeaderMap>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut client = client.ready().await.unwrap();
    let (response, mut stream) = client.send_request(request.body(()).unwrap(), false).unwrap();
    stream.send_data(Bytes::from(body), trailers.is_empty()).unwrap();
    if !trailers.is_empty() {
        let mut map = http::HeaderMap::new();
        for (name, value) in trailers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        stream.send_trailers(map).unwrap();
    }
    let response = tokio::time::timeout(Duration::from_secs(20), response)
        .await
        .expect("an answer in time")
        .unwrap();
    let head = response.headers().clone();
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap();
    (head, out, trailers)
}

/// A gRPC-Web call over HTTP/1.1 with a chunked body that ends in
/// `trailers`, as a browser cannot send but any client can.
pub(crate) async fn http1_chunked(
    addr: SocketAddr,
    protocol: Protocol,
    path: &str,
    json: &str,
    headers: &[(&str, &str)],
    trailers: &[(&str, &str)],
) -> Outcome {
    let method = method(path);
    let body = body(protocol, &method, json);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ntransfer-encoding: chunked\r\ncontent-type: {}\r\n",
        protocol.content_type()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(&format!("{:x}\r\n", body.len()));
    let mut tail = String::from("\r\n0\r\n");
    for (name, value) in trailers {
        tail.push_str(&format!("{name}: {value}\r\n"));
    }
    tail.push_str("\r\n");
    // A call refused before its body is read is answered and closed at
    // once: the rest may meet a closed socket, and the answer still counts.
    for part in [head.as_bytes(), &body, tail.as_bytes()] {
        if stream.write_all(part).await.is_err() {
            break;
        }
    }
    let mut raw = Vec::new();
    // A reset after the answer (the unread rest of the body) ends the read; what came counts.
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time");
    let answer = crate::console::parse_http1(&raw);
    let mut head = http::HeaderMap::new();
    for (k, v) in &answer.headers {
        head.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    outcome(protocol, &method, &head, &answer.body, None)
}
