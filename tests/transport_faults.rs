//! What a caller sees when the transport fails, as a table: a misbehaving
//! server (raw HTTP/2) breaks a call at each point (refusing the
//! connection, closing it at once, GOAWAY, a reset before the response's
//! headers, after them, in the middle of a message, before the trailers,
//! and a stream that ends without them), and each of the mesh's callers (the
//! kit's client every service uses, the gateway's proxy, the workflow's
//! task invoker) must report UNAVAILABLE, as the gRPC spec says, never
//! UNKNOWN or INTERNAL: only UNAVAILABLE tells a saga to try again.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;

/// Where the server breaks the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing listens.
    Refused,
    /// The connection is accepted and closed at once.
    ClosedOnAccept,
    /// GOAWAY with an error before any response.
    GoAway,
    /// The stream is reset before the response's headers.
    ResetBeforeHeaders,
    /// The stream is reset after the headers.
    ResetAfterHeaders,
    /// The connection drops in the middle of a message.
    DroppedMidMessage,
    /// The stream is reset after a whole message, before the trailers.
    ResetBeforeTrailers,
    /// The stream ends after a whole message, with no trailers.
    EndedWithoutTrailers,
}

const FAULTS: &[Fault] = &[
    Fault::Refused,
    Fault::ClosedOnAccept,
    Fault::GoAway,
    Fault::ResetBeforeHeaders,
    Fault::ResetAfterHeaders,
    Fault::DroppedMidMessage,
    Fault::ResetBeforeTrailers,
    Fault::EndedWithoutTrailers,
];

/// A server at the returned address that breaks every call with `fault`.
async fn misbehaving(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    if fault == Fault::Refused {
        return addr; // dropped: nothing listens there
    }
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_badly(tcp, fault));
        }
    });
    addr
}

async fn serve_badly(tcp: tokio::net::TcpStream, fault: Fault) {
    if fault == Fault::ClosedOnAccept {
        return;
    }
    let Ok(mut connection) = h2::server::handshake(tcp).await else {
        return;
    };
    // One call a connection: the client opens a new one for the next.
    if let Some(Ok((_request, mut respond))) = connection.accept().await {
        let head = || {
            http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap()
        };
        match fault {
            Fault::Refused | Fault::ClosedOnAccept => unreachable!(),
            Fault::GoAway => {
                connection.abrupt_shutdown(h2::Reason::INTERNAL_ERROR);
                // Drive the connection so the GOAWAY is sent.
                let _ = futures_util::future::poll_fn(|cx| connection.poll_closed(cx)).await;
                return;
            }
            Fault::ResetBeforeHeaders => respond.send_reset(h2::Reason::INTERNAL_ERROR),
            Fault::ResetAfterHeaders => {
                let mut stream = respond.send_response(head(), false).unwrap();
                stream.send_reset(h2::Reason::INTERNAL_ERROR);
            }
            Fault::DroppedMidMessage => {
                let mut stream = respond.send_response(head(), false).unwrap();
                // The prefix promises 10 bytes; 2 come, then the connection goes.
                let _ = stream.send_data(Bytes::from_static(&[0, 0, 0, 0, 10, 8, 1]), false);
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            Fault::ResetBeforeTrailers => {
                let mut stream = respond.send_response(head(), false).unwrap();
                let _ = stream.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false);
                tokio::time::sleep(Duration::from_millis(50)).await;
                stream.send_reset(h2::Reason::CANCEL);
            }
            Fault::EndedWithoutTrailers => {
                let mut stream = respond.send_response(head(), false).unwrap();
                let _ = stream.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true);
            }
        }
        // Keep the connection going for the frames just queued.
        let _ = futures_util::future::poll_fn(|cx| connection.poll_closed(cx)).await;
    }
}

/// The kit's client, as every service calls another.
async fn through_the_kit_client(addr: SocketAddr) -> tonic::Code {
    let upstream = kit::client::Upstream::new(&format!("http://{addr}"), Duration::from_secs(3)).unwrap();
    let mut catalog =
        catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient::new(upstream);
    catalog
        .get_product(catalog::pb::ferrymesh::catalog::v1::GetProductRequest {
            product_id: "mug".into(),
        })
        .await
        .map_or_else(|s| s.code(), |_| tonic::Code::Ok)
}

/// The workflow's task invoker, as a saga's step calls a service.
async fn through_the_task_invoker(addr: SocketAddr) -> tonic::Code {
    use workflow::engine::Invoker;
    let pool = prost_reflect::DescriptorPool::decode(workflow::pb::EVERY_DESCRIPTOR_SET).unwrap();
    let invoker = workflow::invoke::GrpcInvoker::new(
        pool,
        &[("ferrymesh.catalog.v1".into(), format!("http://{addr}"))],
        None,
    )
    .unwrap();
    let answer = invoker
        .invoke(workflow::engine::TaskCall {
            method: "/ferrymesh.catalog.v1.CatalogService/GetProduct".into(),
            payload: serde_json::json!({"product_id": "mug"}),
            timeout: Duration::from_secs(3),
            idempotency_id: "t-1".into(),
            correlation_id: "t-1".into(),
        })
        .await;
    match answer {
        Ok(_) => tonic::Code::Ok,
        Err(failure) if failure.error == "States.Timeout" => tonic::Code::DeadlineExceeded,
        Err(failure) => code_named(&failure.error),
    }
}

fn code_named(name: &str) -> tonic::Code {
    (0..17)
        .map(tonic::Code::from_i32)
        .find(|c| format!("{c:?}").to_ascii_uppercase() == name.replace('_', ""))
        .unwrap_or(tonic::Code::Unknown)
}

#[tokio::test]
async fn every_broken_transport_is_unavailable_to_every_caller() {
    let mut table = Vec::new();
    for fault in FAULTS.iter().copied() {
        let addr = misbehaving(fault).await;
        table.push((fault, "kit client", through_the_kit_client(addr).await));
        table.push((fault, "task invoker", through_the_task_invoker(addr).await));
        let gateway =
            crate::gateway::Gateway::routed_to(tempfile::tempdir().unwrap(), &format!("http://{addr}")).await;
        let secret = gateway.key_on(crate::gateway::plan("p"), "dev").await;
        let code = gateway
            .get(&secret)
            .await
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        table.push((fault, "gateway", code));
        gateway.stop().await;
    }
    let wrong: Vec<_> = table
        .iter()
        .filter(|(_, _, code)| *code != tonic::Code::Unavailable)
        .collect();
    assert!(
        wrong.is_empty(),
        "not UNAVAILABLE: {wrong:#?}\nthe whole table: {table:#?}"
    );
}

#[test]
fn code_names_read_back() {
    assert_eq!(code_named("UNAVAILABLE"), tonic::Code::Unavailable);
    assert_eq!(code_named("DEADLINE_EXCEEDED"), tonic::Code::DeadlineExceeded);
    assert_eq!(code_named("FAILED_PRECONDITION"), tonic::Code::FailedPrecondition);
}
