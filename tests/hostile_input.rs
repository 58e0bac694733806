//! The gateway under hostile input, before and after authentication:
//! oversized and too many headers, a length prefix larger than the body,
//! compressed-flag set without an encoding, a message over the limit,
//! truncated and garbage HTTP/2 frames, thousands of streams and a rapid
//! reset, a client that never speaks and one that stalls its body; and
//! the same port's HTTP/1.1 side (the console, gRPC-Web): an oversized or
//! crowded head, a head sent a byte at a time, gRPC-Web bodies that stall
//! or lie about their length. Each is answered or reset without a panic,
//! and normal calls work throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use catalog::pb::ferrymesh::catalog::v1::GetProductRequest;
use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gateway::register;
use crate::support::mesh::{Mesh, channel_as};

const GET_PRODUCT: &str = "/ferrymesh.catalog.v1.CatalogService/GetProduct";

/// A normal call through the gateway, which must work between every attack.
async fn normal_call(gateway: SocketAddr, secret: &str) {
    let mut request = tonic::Request::new(GetProductRequest {
        product_id: "mug".into(),
    });
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    let product = CatalogServiceClient::new(channel_as(gateway.port(), None))
        .get_product(request)
        .await
        .unwrap_or_else(|s| panic!("a normal call failed: {s:?}"))
        .into_inner();
    assert!(product.product.is_some());
}

async fn h2_client(gateway: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(gateway).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn grpc_request(gateway: SocketAddr, headers: &[(String, String)]) -> http::Request<()> {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!("http://{gateway}{GET_PRODUCT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(()).unwrap()
}

/// One gRPC message: flag, 4-byte length, bytes.
fn framed(flag: u8, length: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

fn product_request() -> Vec<u8> {
    GetProductRequest {
        product_id: "mug".into(),
    }
    .encode_to_vec()
}

/// What the gateway answered: `Ok((grpc-status, grpc-message))`, or the
/// HTTP/2 error when it reset the stream or the connection.
async fn exchange(
    client: &mut h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    body: Vec<u8>,
) -> Result<(String, String), h2::Error> {
    let mut ready = client.clone().ready().await?;
    let (response, mut stream) = ready.send_request(request, body.is_empty())?;
    if !body.is_empty() {
        stream.send_data(body.into(), true)?;
    }
    read_status(response.await?).await
}

/// grpc-message is percent-encoded.
pub(crate) fn decode(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = message.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

async fn read_status(response: http::Response<h2::RecvStream>) -> Result<(String, String), h2::Error> {
    let header = |map: &http::HeaderMap, name: &str| {
        map.get(name)
            .map(|v| decode(&String::from_utf8_lossy(v.as_bytes())))
    };
    if let Some(code) = header(response.headers(), "grpc-status") {
        return Ok((
            code,
            header(response.headers(), "grpc-message").unwrap_or_default(),
        ));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    Ok((
        header(&trailers, "grpc-status").unwrap_or_default(),
        header(&trailers, "grpc-message").unwrap_or_default(),
    ))
}

/// `count` calls without a key on one connection at once, by outcome
/// (a grpc-status, or how the stream was reset).
async fn flood(
    client: &h2::client::SendRequest<Bytes>,
    gateway: SocketAddr,
    count: usize,
) -> std::collections::BTreeMap<String, usize> {
    let calls = (0..count).map(|_| {
        let mut client = client.clone();
        async move { exchange(&mut client, grpc_request(gateway, &[]), Vec::new()).await }
    });
    let mut outcomes = std::collections::BTreeMap::new();
    for answer in futures_util::future::join_all(calls).await {
        let outcome = match answer {
            Ok((code, _)) => code,
            Err(e) if e.is_remote() || e.is_io() || e.is_go_away() || e.is_reset() => "reset".to_string(),
            Err(e) => format!("client error: {e}"),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    outcomes
}

fn key(secret: &str) -> Vec<(String, String)> {
    vec![("x-api-key".into(), secret.into())]
}

/// Sends `bytes` on a new connection, keeps its write side open, and
/// returns what the gateway answered before it closed the connection
/// (which it must do within 5 s).
async fn raw_exchange(gateway: SocketAddr, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(gateway).await.unwrap();
    // The gateway may refuse before it has read everything.
    let _ = tcp.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the gateway ends a connection that sent {} bytes",
        bytes.len()
    );
    String::from_utf8_lossy(&out).to_string()
}

/// The head of the next HTTP/1.1 answer on a kept-alive connection (its
/// body, of content-length bytes, read past); None when it closes.
async fn next_http1_head(tcp: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end + 4]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let n = tcp.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                buffer.extend_from_slice(&chunk[..n]);
            }
            buffer.drain(..end + 4 + length);
            return Some(head);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .ok()
            .filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The gRPC status a gRPC-Web answer read so far carries, from its head
/// or its trailers frame: (code, message).
fn web_status(answer: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(answer);
    let value = |name: &str| {
        let at = text.find(&format!("{name}:"))? + name.len() + 1;
        let rest = &text[at..];
        let end = rest.find("\r\n")?;
        Some(decode(rest[..end].trim()))
    };
    Some((value("grpc-status")?, value("grpc-message").unwrap_or_default()))
}

/// The gateway's HTTP/1.1 side, on the same port: the limits of the
/// gRPC side hold there too.
async fn http1_limits_hold(gateway: SocketAddr, secret: &str) {
    // A head larger than --max-header-bytes (16 KiB): 431, or closed.
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: gw\r\nx-huge: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let out = raw_exchange(gateway, huge.as_bytes()).await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 431"), "{out}");
    normal_call(gateway, secret).await;

    // More headers than --max-headers (64): 431.
    let many: String = (0..100).map(|i| format!("x-h{i}: v\r\n")).collect();
    let out = raw_exchange(
        gateway,
        format!("GET / HTTP/1.1\r\nhost: gw\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    // A head sent a byte every 200 ms and never finished: closed after
    // --first-call-timeout (1 s), however long the client keeps at it.
    let mut slow = TcpStream::connect(gateway).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: gw\r\nx-slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut sink = [0u8; 1024];
    let ended = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"a").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(1), slow.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => break true,
            // An answer to a head never finished can only be a refusal.
            Ok(Ok(n)) => {
                let answer = String::from_utf8_lossy(&sink[..n]).to_string();
                assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
            }
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(8) {
            break false;
        }
    };
    assert!(ended, "a head trickled for 8 s still holds its connection");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    normal_call(gateway, secret).await;

    // gRPC-Web calls whose body stalls after 10 of the 100 bytes they
    // announce: DEADLINE_EXCEEDED after --body-timeout (1 s), in the JSON
    // form (read whole by the gateway) as in the binary one.
    for (content_type, first) in [
        ("application/grpc-web+json", framed(0, 95, b"{\"pro")),
        ("application/grpc-web+proto", framed(0, 95, &[10, 3, b'm'])),
    ] {
        let mut tcp = TcpStream::connect(gateway).await.unwrap();
        let head = format!(
            "POST {GET_PRODUCT} HTTP/1.1\r\nhost: gw\r\ncontent-type: {content_type}\r\nx-api-key: {secret}\r\ncontent-length: 100\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&first).await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        let status = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(status) = web_status(&answer) {
                    return Some(status);
                }
                match tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => return web_status(&answer),
                    Ok(n) => answer.extend_from_slice(&sink[..n]),
                }
            }
        })
        .await;
        let Ok(Some((code, message))) = status else {
            panic!(
                "{content_type}: no status within 5 s of a stalled body: {:?}",
                String::from_utf8_lossy(&answer)
            );
        };
        assert_eq!(code, "4", "{content_type}: {message}");
        assert!(message.contains("stalled"), "{content_type}: {message}");
        assert!(
            started.elapsed() >= Duration::from_millis(800),
            "{:?}",
            started.elapsed()
        );
    }
    normal_call(gateway, secret).await;

    // gRPC-Web calls without a key, one after another on one connection,
    // each with JSON that is not a GetProductRequest: the first 200 are
    // read (and refused as bad JSON); past the connection's pre-auth rate
    // (200/s) a call is refused before its body is read and encoded.
    {
        let mut tcp = TcpStream::connect(gateway).await.unwrap();
        let json = br#"{"nope": 1}"#;
        let body = framed(0, json.len() as u32, json);
        let (mut bad_json, mut refused_first, mut buffer) = (0, None, Vec::new());
        for _ in 0..300 {
            let head = format!(
                "POST {GET_PRODUCT} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/grpc-web+json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if tcp.write_all(&[head.as_bytes(), &body].concat()).await.is_err() {
                break;
            }
            let Some(answer) = next_http1_head(&mut tcp, &mut buffer).await else {
                break;
            };
            match web_status(answer.as_bytes()) {
                Some((code, _)) if code == "3" => bad_json += 1,
                Some((code, message)) if code == "8" => {
                    refused_first = Some(message);
                    break;
                }
                other => panic!("{other:?}: {answer}"),
            }
        }
        let message =
            refused_first.unwrap_or_else(|| panic!("{bad_json} calls read, none refused by the rate"));
        assert!(
            message.contains("faster than the gateway takes them"),
            "{message}"
        );
        assert!((150..=250).contains(&bad_json), "{bad_json}");
    }
    normal_call(gateway, secret).await;

    // gRPC-Web bodies that lie about their length, or set the compressed
    // flag without an encoding: refused with the reason.
    let json = br#"{"product_id":"mug"}"#;
    let key = [("x-api-key", secret)];
    let lying_json = crate::console::web_call(
        gateway,
        GET_PRODUCT,
        "application/grpc-web+json",
        &framed(0, 100, json),
        &key,
    )
    .await;
    assert_eq!(lying_json.grpc_status(), Some(3), "{}", lying_json.grpc_message());
    assert!(
        lying_json.grpc_message().contains("announces 100 bytes"),
        "{}",
        lying_json.grpc_message()
    );
    let whole = product_request();
    for (body, wanted) in [
        (framed(0, 100, &whole), "short"),
        (framed(1, whole.len() as u32, &whole), "compressed"),
    ] {
        let answer =
            crate::console::web_call(gateway, GET_PRODUCT, "application/grpc-web+proto", &body, &key).await;
        assert_eq!(answer.grpc_status(), Some(13), "{}", answer.grpc_message());
        assert!(
            answer.grpc_message().contains(wanted),
            "{}",
            answer.grpc_message()
        );
    }
    // And a well-formed one is served, on this side as on the other.
    let served = crate::console::web_call(
        gateway,
        GET_PRODUCT,
        "application/grpc-web+json",
        &framed(0, json.len() as u32, json),
        &key,
    )
    .await;
    assert_eq!(served.grpc_status(), Some(0), "{}", served.grpc_message());
    assert_eq!(served.status, 200);
    normal_call(gateway, secret).await;
}

#[tokio::test]
async fn the_gateway_answers_or_resets_hostile_framing_and_serves_normal_calls_throughout() {
    let data = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::up(
        data.path(),
        &[
            "gateway=--first-call-timeout=1s",
            "gateway=--body-timeout=1s",
            "gateway=--connection-rate=200",
            "gateway=--connection-burst=200",
        ],
    )
    .await;
    let gateway: SocketAddr = format!("127.0.0.1:{}", mesh.port("gateway")).parse().unwrap();
    let secret = register(gateway, "ada@example.com").await;
    normal_call(gateway, &secret).await;
    let mut client = h2_client(gateway).await;

    // The framing a well-behaved client sends gets an answer: the baseline.
    let whole = product_request();
    let ok = exchange(
        &mut client,
        grpc_request(gateway, &key(&secret)),
        framed(0, whole.len() as u32, &whole),
    )
    .await;
    assert_eq!(ok.unwrap().0, "0");

    // Headers larger than the limit (16 KiB): the stream or connection is reset.
    let huge = vec![("x-huge".to_string(), "a".repeat(64 * 1024))];
    let out = exchange(
        &mut h2_client(gateway).await,
        grpc_request(gateway, &huge),
        Vec::new(),
    )
    .await;
    assert!(out.as_ref().map_or(true, |(code, _)| code != "0"), "{out:?}");
    normal_call(gateway, &secret).await;

    // Too many headers: INVALID_ARGUMENT, before any key is looked at.
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let (code, message) = exchange(&mut client, grpc_request(gateway, &many), Vec::new())
        .await
        .unwrap();
    assert_eq!(code, "3", "{message}");
    assert!(message.contains("at most 64"), "{message}");

    // A length prefix larger than the body: INTERNAL, saying so.
    let (code, message) = exchange(
        &mut client,
        grpc_request(gateway, &key(&secret)),
        framed(0, 100, &whole),
    )
    .await
    .unwrap();
    assert_eq!(code, "13", "{message}");
    assert!(message.contains("short"), "{message}");

    // Compressed-flag set without grpc-encoding: INTERNAL, saying so.
    let (code, message) = exchange(
        &mut client,
        grpc_request(gateway, &key(&secret)),
        framed(1, whole.len() as u32, &whole),
    )
    .await
    .unwrap();
    assert_eq!(code, "13", "{message}");
    assert!(message.contains("compressed"), "{message}");

    // A flag byte that is neither 0 nor 1.
    let (code, _) = exchange(
        &mut client,
        grpc_request(gateway, &key(&secret)),
        framed(7, whole.len() as u32, &whole),
    )
    .await
    .unwrap();
    assert_eq!(code, "13");

    // A message announced larger than 4 MiB: RESOURCE_EXHAUSTED at its
    // prefix, without the gateway reading the rest.
    let (code, message) = exchange(
        &mut client,
        grpc_request(gateway, &key(&secret)),
        framed(0, 5 << 20, &[0; 1024]),
    )
    .await
    .unwrap();
    assert_eq!(code, "8", "{message}");
    assert!(message.contains("larger than the gateway's limit"), "{message}");
    normal_call(gateway, &secret).await;

    // A body that stalls: DEADLINE_EXCEEDED after --body-timeout (1s).
    {
        let mut ready = client.clone().ready().await.unwrap();
        let (response, mut stream) = ready
            .send_request(grpc_request(gateway, &key(&secret)), false)
            .unwrap();
        stream.send_data(framed(0, 10, &[1, 2]).into(), false).unwrap();
        let started = Instant::now();
        let (code, message) = read_status(response.await.unwrap()).await.unwrap();
        assert_eq!(code, "4", "{message}");
        assert!(message.contains("stalled"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(stream);
    }

    // Thousands of streams opened at once on a new connection, before the
    // gateway's SETTINGS (at most 1024 at a time) can arrive: those over the
    // limit are refused, and a client that keeps causing refusals loses
    // the connection. Every stream is answered or reset.
    let blind = h2_client(gateway).await;
    let answers = flood(&blind, gateway, 3000).await;
    assert_eq!(answers.values().sum::<usize>(), 3000, "{answers:?}");
    assert!(!answers.contains_key("0"), "{answers:?}");
    normal_call(gateway, &secret).await;

    // The same once SETTINGS are known: the client keeps within 1024 at a
    // time, and every call is answered, UNAUTHENTICATED (no key) or
    // RESOURCE_EXHAUSTED once the connection's pre-authentication rate
    // (200/s here) is spent.
    let mut polite = h2_client(gateway).await;
    let _ = exchange(&mut polite, grpc_request(gateway, &[]), Vec::new())
        .await
        .unwrap();
    let answers = flood(&polite, gateway, 3000).await;
    assert_eq!(
        answers.get("16").copied().unwrap_or(0) + answers.get("8").copied().unwrap_or(0),
        3000,
        "{answers:?}"
    );
    assert!(answers.get("16").copied().unwrap_or(0) >= 100, "{answers:?}");
    assert!(answers.get("8").copied().unwrap_or(0) >= 100, "{answers:?}");
    normal_call(gateway, &secret).await;

    // A rapid reset: streams opened and cancelled at once, thousands of times.
    let reset = h2_client(gateway).await;
    for _ in 0..5000 {
        let Ok(mut ready) = reset.clone().ready().await else {
            break;
        };
        let Ok((_, mut stream)) = ready.send_request(grpc_request(gateway, &[]), false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
    }
    drop(reset);
    normal_call(gateway, &secret).await;

    // Raw bytes: garbage instead of the preface, a HEADERS frame cut off
    // short, a DATA frame on stream 0. The gateway closes each connection
    // (the cut-off frame when --first-call-timeout passes).
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let settings = vec![0, 0, 0, 4, 0, 0, 0, 0, 0];
    let truncated_headers = [
        preface.clone(),
        settings.clone(),
        vec![0, 3, 0xe8, 1, 4, 0, 0, 0, 1, 0x83, 0x86],
    ]
    .concat();
    let data_on_zero = [preface, settings, vec![0, 0, 4, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]].concat();
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n\xff\xfe\x00garbage".to_vec(),
        truncated_headers,
        data_on_zero,
    ] {
        let mut tcp = TcpStream::connect(gateway).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        // The write side stays open: the gateway must end it itself.
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
        assert!(
            read.is_ok(),
            "the gateway closes a connection that sent {bytes:?}"
        );
        normal_call(gateway, &secret).await;
    }

    // The same port's HTTP/1.1 side.
    http1_limits_hold(gateway, &secret).await;

    // A client that connects and never speaks is closed after --first-call-timeout (1s).
    let mut silent = TcpStream::connect(gateway).await.unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "a silent connection is closed");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Nothing panicked, and the gateway is the process `up` started.
    normal_call(gateway, &secret).await;
    let output = mesh.up.output();
    assert!(!output.contains("panicked"), "{output}");
    assert!(!output.contains("gateway exited"), "{output}");
    mesh.up
        .wait_for_line(|l| l.contains("all services are SERVING"), Duration::from_secs(1))
        .await;
    mesh.stop().await;
}
