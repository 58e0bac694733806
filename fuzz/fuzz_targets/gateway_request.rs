//! What the gateway reads of a request before and while forwarding it: the
//! path (route, package, public or not), grpc-timeout, the header limits
//! and the gRPC framing of a body arriving in any pieces. Nothing panics,
//! and the guard's verdict on the body matches a plain reading of it.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use gateway::config::{self, Routes};
use gateway::guard::{BodyViolation, Limits};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64;

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let text = config::local_mesh(&[("ferrymesh.catalog.v1", "http://127.0.0.1:1".into())]);
        let mut upstreams = |url: &str| gateway::proxy::Upstream::new(url).map(Arc::new);
        config::parse("fuzz", &text, &mut upstreams, &Default::default()).expect("the local mesh parses")
    })
}

/// Whole messages, each at most MAX bytes, uncompressed: the plain reading.
fn well_framed(mut body: &[u8]) -> bool {
    while !body.is_empty() {
        if body.len() < 5 || body[0] != 0 {
            return false;
        }
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if length > MAX || body.len() < 5 + length {
            return false;
        }
        body = &body[5 + length..];
    }
    true
}

fuzz_target!(|data: &[u8]| {
    // path \xff headers (name:value lines) \xff piece-size body
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let (Some(path), Some(headers), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let path = String::from_utf8_lossy(path);
    let _ = config::package_of(&path);
    let _ = routes().is_public(&path);
    let _ = routes().is_anonymous(&path);
    let mut builder = http::Request::builder().method("POST").uri(format!("http://gw{path}"));
    for line in headers.split(|b| *b == b'\n') {
        if let Some(at) = line.iter().position(|b| *b == b':') {
            let (name, value) = (&line[..at], &line[at + 1..]);
            if let Ok(text) = std::str::from_utf8(value) {
                let _ = kit::deadline::parse_grpc_timeout(text);
            }
            builder = builder.header(name, value);
        }
    }
    let Some((&piece, body)) = rest.split_first() else { return };
    let piece = usize::from(piece).max(1);
    let chunks: Vec<Result<http_body::Frame<Bytes>, tonic::Status>> = body
        .chunks(piece)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let Ok(request) = builder.body(tonic::body::Body::new(http_body_util::StreamBody::new(stream))) else {
        return;
    };
    let compressed = request.headers().contains_key("grpc-encoding");
    let limits = Limits {
        max_headers: 16,
        max_message_bytes: MAX,
        body_timeout: std::time::Duration::from_secs(1),
    };
    let Ok(request) = limits.admit(request) else { return };
    let found = request.extensions().get::<BodyViolation>().cloned().expect("admit marks the request");
    let collected = futures_executor::block_on(request.into_body().collect());
    match collected {
        Ok(all) => {
            assert!(found.get().is_none());
            assert_eq!(all.to_bytes().as_ref(), body, "the body passes untouched");
            if !compressed {
                assert!(well_framed(body), "accepted a badly framed body");
            }
        }
        Err(_) => {
            assert!(found.get().is_some(), "a refusal names its violation");
            if !compressed {
                assert!(!well_framed(body), "refused a well framed body: {:?}", found.get());
            }
        }
    }
});
