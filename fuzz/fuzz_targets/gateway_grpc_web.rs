//! What the gateway reads of a browser's gRPC-Web call (`web::serve`): the
//! JSON form, encoded into Protobuf for any method of the contracts, and
//! tonic-web's binary and base64 forms, the body arriving in any pieces.
//! Nothing panics; a JSON call reaches the mesh only as well-framed
//! messages of the method's input type, and is otherwise refused with
//! INVALID_ARGUMENT, RESOURCE_EXHAUSTED or UNIMPLEMENTED; an answer to an
//! accepted JSON call is JSON messages and then a trailers frame.
#![no_main]

use std::sync::OnceLock;

use bytes::{Buf, Bytes};
use gateway::web;
use http_body::Frame;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::body::Body;

const MAX: usize = 4096;

/// Every method of the contracts, by its path, with its input type.
fn methods() -> &'static Vec<(String, MessageDescriptor)> {
    static METHODS: OnceLock<Vec<(String, MessageDescriptor)>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let pool = web::contracts().expect("the contracts decode");
        pool.services()
            .flat_map(|s| {
                let service = s.full_name().to_string();
                s.methods()
                    .map(move |m| (format!("/{service}/{}", m.name()), m.input()))
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

const CONTENT_TYPES: [&str; 6] = [
    "application/grpc-web+json",
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
    "application/GRPC-WEB+JSON",
];

/// Splits a gRPC body into its messages, or says it is not well framed.
fn messages(mut body: Bytes) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    while body.has_remaining() {
        if body.len() < 5 || body[0] != 0 {
            return None;
        }
        body.advance(1);
        let length = body.get_u32() as usize;
        if body.len() < length {
            return None;
        }
        out.push(body.split_to(length));
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let [method, kind, piece, body @ ..] = data else {
        return;
    };
    let methods = methods();
    let (path, input) = &methods[usize::from(*method) % methods.len()];
    let content_type = CONTENT_TYPES[usize::from(*kind) % CONTENT_TYPES.len()];
    let json = content_type.eq_ignore_ascii_case(web::GRPC_WEB_JSON);
    let chunks: Vec<Result<Frame<Bytes>, tonic::Status>> = body
        .chunks(usize::from(*piece).max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let request = http::Request::post(path.as_str())
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::new(http_body_util::StreamBody::new(
            futures_util::stream::iter(chunks),
        )))
        .expect("a request");

    // The mesh behind the gateway: checks what reaches it, answers one
    // empty message (valid for every type) and OK.
    let input = input.clone();
    let mesh = tower::service_fn(move |request: http::Request<Body>| {
        let input = input.clone();
        async move {
            let bytes = request.into_body().collect().await.map(|b| b.to_bytes());
            if json {
                let bytes = bytes.expect("an encoded JSON call is read whole");
                let found = messages(bytes).expect("an encoded JSON call is well framed");
                for message in found {
                    DynamicMessage::decode(input.clone(), message)
                        .expect("each message is of the method's input type");
                }
            }
            let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = vec![
                Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                Ok(Frame::trailers({
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    trailers
                })),
            ];
            let response = http::Response::builder()
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .body(Body::new(http_body_util::StreamBody::new(
                    futures_util::stream::iter(frames),
                )))
                .expect("a response");
            Ok::<_, std::convert::Infallible>(response)
        }
    });

    runtime().block_on(async move {
        let limits = gateway::guard::Limits {
            max_headers: 64,
            max_message_bytes: MAX,
            body_timeout: std::time::Duration::from_secs(1),
        };
        let response = web::serve(request, mesh, &limits).await;
        let (parts, body) = response.into_parts();
        let answer = body.collect().await;
        if !json {
            return;
        }
        if let Some(code) = parts.headers.get("grpc-status") {
            // Refused before the mesh was called.
            let code = code.to_str().expect("a status code is ASCII");
            assert!(
                matches!(code, "3" | "8" | "12"),
                "refused with {code}: {:?}",
                parts.headers
            );
            return;
        }
        let mut answer = answer.expect("the answer is read whole").to_bytes();
        // JSON messages, then one trailers frame.
        let mut saw_trailers = false;
        while answer.has_remaining() {
            assert!(!saw_trailers, "nothing follows the trailers");
            assert!(answer.len() >= 5, "a whole frame");
            let flag = answer.get_u8();
            let length = answer.get_u32() as usize;
            assert!(answer.len() >= length, "a whole frame");
            let frame = answer.split_to(length);
            if flag == 0x80 {
                saw_trailers = true;
                assert!(frame.windows(13).any(|w| w == b"grpc-status:0"), "{frame:?}");
            } else {
                assert_eq!(flag, 0);
                serde_json::from_slice::<serde_json::Value>(&frame).expect("each message is JSON");
            }
        }
        assert!(saw_trailers, "the answer ends with its status");
    });
});
