//! SIGTERM while a call is in flight: health turns NOT_SERVING, the call
//! completes, the process exits 0.

use std::time::{Duration, Instant};

use catalog::pb::ferrymesh::catalog::v1::GetProductRequest;
use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use nix::sys::signal::Signal;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::serve;

#[tokio::test]
async fn sigterm_lets_the_call_in_flight_finish_and_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let (mut catalog, addr) = serve(
        "catalog",
        data.path(),
        // The fault slows GetProduct so it is surely in flight at SIGTERM.
        &["--fault", "GetProduct:latency=4s", "--drain-delay", "2s"],
        &[],
    )
    .await;
    let uri = format!("http://{addr}");
    let mut client = CatalogServiceClient::connect(uri.clone()).await.unwrap();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move {
        client
            .get_product(GetProductRequest {
                product_id: "mug".into(),
            })
            .await
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    catalog.signal(Signal::SIGTERM);
    catalog
        .wait_for_line(|l| l.contains("health is NOT_SERVING"), Duration::from_secs(5))
        .await;

    // A load balancer's probe, on a new connection, during the drain delay.
    let channel = tonic::transport::Endpoint::from_shared(uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "ferrymesh.catalog.v1.CatalogService".into(),
        })
        .await
        .expect("health still answers while draining")
        .into_inner();
    assert_eq!(health.status, ServingStatus::NotServing as i32);

    let response = in_flight.await.unwrap().expect("the call in flight completes");
    assert_eq!(response.into_inner().product.unwrap().name, "Mug");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the call ran its full injected latency"
    );

    let status = catalog.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{}", catalog.output());
}

#[tokio::test]
async fn an_idle_service_stops_at_once_on_sigint() {
    let data = tempfile::tempdir().unwrap();
    let (mut catalog, _) = serve("catalog", data.path(), &[], &[]).await;
    let started = Instant::now();
    catalog.signal(Signal::SIGINT);
    let status = catalog.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", catalog.output());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no drain delay by default"
    );
}
