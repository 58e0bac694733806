//! A service that stays away longer than a restart takes does not fail a
//! good order: before the pivot the saga retries for over a minute, so an
//! order whose shipping is down for 15 s is CONFIRMED once it is back,
//! with one charge and one shipment. (The old policy gave up after about
//! six attempts in a few seconds, then compensated a good order.)

use std::time::Duration;

use nix::sys::signal::Signal;
use orders::pb::ferrymesh::orders::v2 as opb;

use crate::support::Apart;
use crate::support::mesh::{GOOD, Mesh, order_request};

#[tokio::test]
async fn an_order_waits_out_a_shipping_outage_and_is_confirmed() {
    let data = tempfile::tempdir().unwrap();
    let apart = Apart::new("shipping", data.path());
    let mut shipping = apart.start(&[]).await;
    let mesh = Mesh::up(data.path(), &[&apart.for_workflow("ferrymesh.shipping.v1")]).await;

    // Shipping goes away; an order comes in.
    shipping.signal(Signal::SIGKILL);
    shipping.wait_exit(Duration::from_secs(10)).await;
    let order = mesh
        .orders
        .clone()
        .place_order(order_request("outage-1", &[("mug", 1)], GOOD, "GB"))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let status = get(&mesh, &order.order_id).await.status;
    assert_eq!(
        status,
        opb::OrderStatus::Pending as i32,
        "still waiting for shipping"
    );

    // Back after 15 s: the saga carries on from where it waited.
    let mut shipping = apart.start(&[]).await;
    let mut last = status;
    for _ in 0..300 {
        last = get(&mesh, &order.order_id).await.status;
        if last != opb::OrderStatus::Pending as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, opb::OrderStatus::Confirmed as i32, "{}", mesh.up.output());
    // One charge, not refunded; one shipment.
    let events = mesh.history(&order.order_id).await;
    let paid = crate::support::mesh::payment_id(&events).unwrap();
    let payment = mesh
        .payments
        .clone()
        .get_payment(payments::pb::ferrymesh::payments::v1::GetPaymentRequest { payment_id: paid })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert!(payment.refunds.is_empty(), "{payment:?}");
    let shipped = events
        .iter()
        .filter(|e| e.state_name == "Create shipment" && e.type_name == "TaskSucceeded")
        .count();
    assert_eq!(shipped, 1);
    shipping.signal(Signal::SIGTERM);
    shipping.wait_exit(Duration::from_secs(30)).await;
    mesh.stop().await;
}

async fn get(mesh: &Mesh, order_id: &str) -> opb::Order {
    mesh.orders
        .clone()
        .get_order(opb::GetOrderRequest {
            order_id: order_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
}
