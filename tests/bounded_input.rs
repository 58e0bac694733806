//! What a caller sends is bounded at the edge: `grpc-timeout` values the
//! gRPC spec does not allow are ignored, never a panic, and no handler runs
//! past the server's own limit.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use catalog::pb::ferrymesh::catalog::v1::{GetProductRequest, GetProductResponse};
use http_body_util::{BodyExt, Full};
use inventory::pb::ferrymesh::inventory::v1::{GetStockRequest, GetStockResponse};
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt;

use crate::support::serve;

/// Sends one unary call with a `grpc-timeout` header exactly as given, past
/// tonic's client (which would refuse to send such a value), and returns
/// the answer's grpc-status, message and body.
async fn call_with_raw_timeout(
    channel: &Channel,
    path: &str,
    message: &impl Message,
    timeout: &str,
) -> (i32, String, Bytes) {
    let encoded = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + encoded.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(encoded.len()).unwrap());
    frame.put_slice(&encoded);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(tonic::body::Body::new(Full::new(frame.freeze())))
        .unwrap();
    let response = channel
        .clone()
        .oneshot(request)
        .await
        .expect("an HTTP/2 answer, not a reset stream");
    let header_status = response.headers().get("grpc-status").cloned();
    let header_message = response.headers().get("grpc-message").cloned();
    let collected = response
        .into_body()
        .collect()
        .await
        .expect("the whole body, not a reset stream");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = header_status
        .or_else(|| trailers.get("grpc-status").cloned())
        .map(|v| v.to_str().unwrap().parse::<i32>().unwrap())
        .expect("a grpc-status");
    let message = header_message
        .or_else(|| trailers.get("grpc-message").cloned())
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = collected.to_bytes();
    let payload = if body.len() > 5 {
        body.slice(5..)
    } else {
        Bytes::new()
    };
    (status, message, payload)
}

const TIMEOUTS: &[&str] = &[
    "123456789S",            // 9 digits: one more than gRPC allows
    "9999999999999999999S",  // 19 digits: overflowed a deadline before
    "18446744073709551615n", // u64::MAX
    "99999999H",             // the largest allowed: 11,415 years, still no overflow
    "garbage",
    "",
    "-1S",
    "5s", // lowercase s is no unit
    "5S", // well-formed
];

#[tokio::test]
async fn out_of_spec_grpc_timeouts_get_clean_answers_and_no_panic() {
    let data = tempfile::tempdir().unwrap();
    let (mut catalog, catalog_addr) = serve("catalog", data.path(), &[], &[]).await;
    let (mut inventory, inventory_addr) = serve("inventory", data.path(), &[], &[]).await;
    let catalog_channel = Endpoint::from_shared(format!("http://{catalog_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let inventory_channel = Endpoint::from_shared(format!("http://{inventory_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    for timeout in TIMEOUTS {
        let (status, message, body) = call_with_raw_timeout(
            &catalog_channel,
            "/ferrymesh.catalog.v1.CatalogService/GetProduct",
            &GetProductRequest {
                product_id: "mug".into(),
            },
            timeout,
        )
        .await;
        assert_eq!(status, 0, "grpc-timeout {timeout:?}: {message}");
        let product = GetProductResponse::decode(body).unwrap().product.unwrap();
        assert_eq!(product.id, "mug", "grpc-timeout {timeout:?}");

        let (status, message, body) = call_with_raw_timeout(
            &inventory_channel,
            "/ferrymesh.inventory.v1.InventoryService/GetStock",
            &GetStockRequest {
                skus: vec!["mug".into()],
            },
            timeout,
        )
        .await;
        assert_eq!(status, 0, "grpc-timeout {timeout:?}: {message}");
        assert_eq!(GetStockResponse::decode(body).unwrap().levels[0].sku, "mug");
    }

    for process in [&catalog, &inventory] {
        let output = process.output();
        assert!(!output.contains("panicked"), "a server panicked:\n{output}");
    }
    for process in [&mut catalog, &mut inventory] {
        process.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(process.wait_exit(Duration::from_secs(30)).await.success());
    }
}

#[tokio::test]
async fn a_handler_never_runs_past_the_servers_own_limit() {
    let data = tempfile::tempdir().unwrap();
    let (mut catalog, addr) = serve(
        "catalog",
        data.path(),
        &["--handler-timeout", "300ms", "--fault", "GetProduct:latency=5s"],
        &[],
    )
    .await;
    let mut client = CatalogServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let started = Instant::now();
    let status = client
        .get_product(GetProductRequest {
            product_id: "mug".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "ferrymesh.catalog.v1.CatalogService/GetProduct was not answered within its deadline (300ms)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut at 300ms: {:?}",
        started.elapsed()
    );
    // Other methods are not slowed.
    let listed = client
        .list_products(catalog::pb::ferrymesh::catalog::v1::ListProductsRequest::default())
        .await
        .unwrap();
    assert!(!listed.into_inner().products.is_empty());
    catalog.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(catalog.wait_exit(Duration::from_secs(30)).await.success());
}

/// A huge bad value is refused with a short message: the message travels in
/// a header (grpc-message), and echoing the value whole would break it.
#[tokio::test]
async fn a_huge_bad_value_gets_a_short_clear_refusal() {
    let data = tempfile::tempdir().unwrap();
    let (mut catalog, addr) = serve("catalog", data.path(), &[], &[]).await;
    let mut client = CatalogServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let huge = "X".repeat(200_000);
    let status = client
        .get_product(GetProductRequest { product_id: huge })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("invalid request: product_id: must be 3 to 64 lowercase letters"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("(199936 more characters)"),
        "{}",
        &status.message()[..200.min(status.message().len())]
    );
    assert!(status.message().len() < 400, "{} bytes", status.message().len());
    catalog.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(catalog.wait_exit(Duration::from_secs(30)).await.success());
}

/// A request with far more items than allowed is refused at once, with the
/// count named and the rest summed up, not checked item by item.
#[tokio::test]
async fn a_flood_of_items_is_refused_quickly_and_briefly() {
    use inventory::pb::ferrymesh::inventory::v1::inventory_service_client::InventoryServiceClient;
    use inventory::pb::ferrymesh::inventory::v1::{ReservationItem, ReserveStockRequest};

    let data = tempfile::tempdir().unwrap();
    let (mut inventory, addr) = serve("inventory", data.path(), &[], &[]).await;
    let mut client = InventoryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let items = (0..100_000)
        .map(|i| ReservationItem {
            sku: if i % 2 == 0 { "mug".into() } else { String::new() },
            quantity: 1,
        })
        .collect();
    let started = Instant::now();
    let status = client
        .reserve_stock(ReserveStockRequest {
            reservation_id: "flood".into(),
            items,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("invalid request: items: must hold 1 to 100 items, got 100000"),
        "{}",
        status.message()
    );
    assert!(status.message().ends_with(" more"), "{}", status.message());
    assert!(status.message().len() < 4096, "{} bytes", status.message().len());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    inventory.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(inventory.wait_exit(Duration::from_secs(30)).await.success());
}
