//! What callers of orders see through v1 and v2, one scenario per function.

use futures_util::future::join_all;
use kit_testing::{assert_invalid, assert_status};
use kit_values::pb::ferrymesh::common::v1::Money;
use orders::pb::ferrymesh::orders::{v1, v2};
use tonic::Code;

use crate::support::{EMAIL, Orders, address, v1_request, v2_request};

fn usd(units: i64, nanos: i32) -> Option<Money> {
    Some(kit_testing::fixtures::usd(units, nanos))
}

pub(crate) async fn v1_and_v2_clients_read_each_others_orders_field_by_field(orders: &Orders) {
    // A v1 client places an order...
    let placed_v1 = orders
        .v1()
        .place_order(v1_request("v1-req", &[("vintage-typewriter", 1), ("mug", 2)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert!(placed_v1.order_id.starts_with("ord-"));
    assert_eq!(placed_v1.status, v1::OrderStatus::Pending as i32);
    assert_eq!(
        placed_v1.total,
        usd(85, 970_000_000),
        "67.99 + 2 x 8.99, standard shipping is free"
    );

    // ...and a v2 client places one with v2-only details.
    let mut request = v2_request("v2-key", &[("watch", 1)]);
    request.shipping_option = v2::ShippingOption::Express as i32;
    let placed_v2 = orders.place_v2(request).await.unwrap();
    assert_eq!(
        placed_v2.totals,
        vec![usd(124, 990_000_000).unwrap()],
        "109.99 + 15.00 express"
    );

    // v2 reads the v1 order, field by field.
    let read = orders.get_v2(&placed_v1.order_id).await;
    assert_eq!(read.order_id, placed_v1.order_id);
    assert_eq!(read.idempotency_key, "v1-req");
    assert_eq!(read.customer_email, EMAIL);
    assert_eq!(read.shipping_address, Some(address()));
    assert_eq!(read.shipping_option, v2::ShippingOption::Standard as i32);
    assert_eq!(read.shipping_cost, usd(0, 0));
    assert_eq!(read.totals, vec![usd(85, 970_000_000).unwrap()]);
    assert_eq!(read.status, v2::OrderStatus::Pending as i32);
    assert_eq!(read.status_reason, "");
    assert_eq!(read.create_time, placed_v1.create_time);
    assert_eq!(read.update_time, placed_v1.update_time);
    let line = |id: &str, name: &str, quantity, unit_price, line_total| v2::LineItem {
        product_id: id.into(),
        product_name: name.into(),
        quantity,
        unit_price,
        line_total,
        status: v2::LineItemStatus::Pending as i32,
    };
    assert_eq!(
        read.items,
        vec![
            line(
                "vintage-typewriter",
                "Vintage Typewriter",
                1,
                usd(67, 990_000_000),
                usd(67, 990_000_000)
            ),
            line("mug", "Mug", 2, usd(8, 990_000_000), usd(17, 980_000_000)),
        ]
    );

    // v1 reads the v2 order, field by field, without the v2-only details.
    let read = orders.get_v1(&placed_v2.order_id).await;
    assert_eq!(read.order_id, placed_v2.order_id);
    assert_eq!(read.customer_email, EMAIL);
    assert_eq!(read.shipping_address, Some(address()));
    assert_eq!(read.total, usd(124, 990_000_000));
    assert_eq!(read.status, v1::OrderStatus::Pending as i32);
    assert_eq!(read.failure_reason, "");
    assert_eq!(read.create_time, placed_v2.create_time);
    assert_eq!(
        read.items,
        vec![v1::LineItem {
            product_id: "watch".into(),
            quantity: 1,
            unit_price: usd(109, 990_000_000)
        }]
    );
    // And each version reads its own order back unchanged.
    assert_eq!(orders.get_v1(&placed_v1.order_id).await, placed_v1);
    assert_eq!(orders.get_v2(&placed_v2.order_id).await, placed_v2);

    // Both lists hold both, newest first.
    let v1_list = orders
        .v1()
        .list_orders(v1::ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = v1_list.orders.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, [placed_v2.order_id.as_str(), placed_v1.order_id.as_str()]);
    let v2_list = orders
        .v2()
        .list_orders(v2::ListOrdersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = v2_list.orders.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, [placed_v2.order_id.as_str(), placed_v1.order_id.as_str()]);
}

pub(crate) async fn prices_come_from_the_catalog_not_from_the_client(orders: &Orders) {
    let mut request = v1_request("", &[("film-camera", 1)]);
    request.items[0].unit_price = usd(0, 10_000_000);
    let order = orders
        .v1()
        .place_order(request)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(
        order.items[0].unit_price,
        usd(2245, 0),
        "the catalog's price, not the 0.01 sent"
    );
    assert_eq!(order.total, usd(2245, 0));
}

pub(crate) async fn placing_again_with_the_same_key_has_the_effect_of_one(orders: &Orders) {
    let first = orders.place_v2(v2_request("k-1", &[("mug", 1)])).await.unwrap();
    let retries = (0..10).map(|_| orders.place_v2(v2_request("k-1", &[("mug", 1)])));
    for again in join_all(retries).await {
        assert_eq!(again.unwrap(), first);
    }
    let concurrent = (0..10).map(|_| orders.place_v2(v2_request("k-2", &[("mug", 3)])));
    let placed: Vec<v2::Order> = join_all(concurrent)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        placed.iter().all(|o| o.order_id == placed[0].order_id),
        "concurrent first calls place one order"
    );
    let status = orders
        .place_v2(v2_request("k-1", &[("mug", 2)]))
        .await
        .unwrap_err();
    assert_status(
        &status,
        Code::AlreadyExists,
        "an order was already placed with key `k-1` and other contents",
    );

    // v1's request_id is the same kind of key; without one, every call is a new order.
    let a = orders
        .v1()
        .place_order(v1_request("r-1", &[("watch", 1)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let b = orders
        .v1()
        .place_order(v1_request("r-1", &[("watch", 1)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(a, b);
    let c = orders
        .v1()
        .place_order(v1_request("", &[("watch", 1)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    let d = orders
        .v1()
        .place_order(v1_request("", &[("watch", 1)]))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_ne!(c.order_id, d.order_id);
    let all = orders
        .v2()
        .list_orders(v2::ListOrdersRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.orders.len(), 5, "k-1, k-2, r-1 and two unkeyed orders");
}

pub(crate) async fn v2_requires_an_idempotency_key(orders: &Orders) {
    let status = orders.place_v2(v2_request("", &[("mug", 1)])).await.unwrap_err();
    assert_invalid(&status, "idempotency_key", "must not be empty");
}

pub(crate) async fn bad_orders_name_the_field(orders: &Orders) {
    let mut request = v2_request("bad-1", &[("mug", 0), ("mug", 5000), ("Not Valid", 1)]);
    request.customer_email = "ada-at-example".into();
    let status = orders.place_v2(request).await.unwrap_err();
    assert_invalid(&status, "customer_email", "must be an email address");
    assert_invalid(&status, "items[0].quantity", "must be 1 to 1000, got 0");
    assert_invalid(&status, "items[1].quantity", "got 5000");
    assert_invalid(&status, "items[1].product_id", "\"mug\" appears twice");
    assert_invalid(
        &status,
        "items[2].product_id",
        "lowercase letters, digits or hyphens",
    );

    let status = orders.place_v2(v2_request("bad-2", &[])).await.unwrap_err();
    assert_invalid(&status, "items", "must hold 1 to 100 items, got 0");

    let status = orders
        .place_v2(v2_request("bad-3", &[("spaceship", 1), ("mug", 1)]))
        .await
        .unwrap_err();
    assert_invalid(
        &status,
        "items[0].product_id",
        "\"spaceship\" is not in the catalog",
    );

    let mut request = v2_request("bad-4", &[("mug", 1)]);
    request.shipping_address.as_mut().unwrap().country_code = "USA".into();
    request.card.as_mut().unwrap().number = "4242 4242 4242 4241".into();
    let status = orders.place_v2(request).await.unwrap_err();
    assert_invalid(
        &status,
        "shipping_address.country_code",
        "two-letter ISO 3166-1 code",
    );
    assert_invalid(&status, "card.number", "fails the Luhn check");

    let mut request = v1_request("", &[("mug", 1)]);
    request.shipping_address = None;
    request.card = None;
    let status = orders.v1().place_order(request).await.unwrap_err();
    assert_invalid(&status, "shipping_address", "is required");
    assert_invalid(&status, "card", "is required");

    let status = orders
        .v1()
        .get_order(v1::GetOrderRequest {
            order_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "order_id", "must be 1 to 64 characters");
    let status = orders
        .v2()
        .get_order(v2::GetOrderRequest {
            order_id: "ord-nope".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "order `ord-nope` does not exist");
    let status = orders
        .v1()
        .list_orders(v1::ListOrdersRequest {
            page_size: -1,
            customer_email: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "page_size", "must be between 0 and 100");
    assert_invalid(&status, "customer_email", "must be an email address");
    let status = orders
        .place_v2(v2::PlaceOrderRequest {
            shipping_option: 9,
            ..v2_request("bad-5", &[("mug", 1)])
        })
        .await;
    assert_invalid(
        &status.unwrap_err(),
        "shipping_option",
        "9 is not a ShippingOption",
    );
}

pub(crate) async fn a_watched_order_streams_its_cancellation_and_ends(orders: &Orders) {
    let order = orders
        .place_v2(v2_request("watched", &[("terrarium", 1)]))
        .await
        .unwrap();
    let mut stream = orders
        .v2()
        .watch_order(v2::WatchOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let now = stream.message().await.unwrap().unwrap().order.unwrap();
    assert_eq!(
        now.status,
        v2::OrderStatus::Pending as i32,
        "first the order as it is"
    );

    let cancel = v2::CancelOrderRequest {
        order_id: order.order_id.clone(),
        reason: "changed my mind".into(),
    };
    let cancelled = orders
        .v2()
        .cancel_order(cancel.clone())
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(cancelled.status, v2::OrderStatus::Cancelled as i32);
    assert!(
        cancelled
            .items
            .iter()
            .all(|l| l.status == v2::LineItemStatus::Cancelled as i32)
    );

    let change = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
        .await
        .unwrap();
    let changed = change.unwrap().unwrap().order.unwrap();
    assert_eq!(changed.status, v2::OrderStatus::Cancelled as i32);
    assert_eq!(changed.status_reason, "changed my mind");
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
        .await
        .unwrap();
    assert!(end.unwrap().is_none(), "the stream ends once the order is final");

    let again = orders
        .v2()
        .cancel_order(cancel)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(again, cancelled, "cancelling again changes nothing");
    let v1_view = orders.get_v1(&order.order_id).await;
    assert_eq!(
        v1_view.status,
        v1::OrderStatus::Failed as i32,
        "v1 has no CANCELLED"
    );
    assert_eq!(v1_view.failure_reason, "cancelled: changed my mind");

    // Watching a final order sends it once and ends.
    let mut stream = orders
        .v2()
        .watch_order(v2::WatchOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.message().await.unwrap().unwrap().order.unwrap().status,
        v2::OrderStatus::Cancelled as i32
    );
    assert!(stream.message().await.unwrap().is_none());
    let status = orders
        .v2()
        .watch_order(v2::WatchOrderRequest {
            order_id: "ord-nope".into(),
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::NotFound, "order `ord-nope` does not exist");
}

pub(crate) async fn lists_page_newest_first_and_filter(orders: &Orders) {
    let mut placed = Vec::new();
    for i in 0..5 {
        placed.push(
            orders
                .place_v2(v2_request(&format!("list-{i}"), &[("mug", 1)]))
                .await
                .unwrap()
                .order_id,
        );
    }
    let mut other = v2_request("other", &[("mug", 1)]);
    other.customer_email = "grace@example.com".into();
    orders.place_v2(other).await.unwrap();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let page = orders
            .v2()
            .list_orders(v2::ListOrdersRequest {
                customer_email: EMAIL.into(),
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sizes.push(page.orders.len());
        seen.extend(page.orders.into_iter().map(|o| o.order_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    placed.reverse();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(seen, placed, "newest first, each once, only Ada's");

    orders
        .v2()
        .cancel_order(v2::CancelOrderRequest {
            order_id: placed[0].clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let cancelled = orders
        .v2()
        .list_orders(v2::ListOrdersRequest {
            status: v2::OrderStatus::Cancelled as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = cancelled.orders.iter().map(|o| o.order_id.as_str()).collect();
    assert_eq!(ids, [placed[0].as_str()]);
}

/// A checkout retried by a client that timed out: sixteen identical
/// PlaceOrder calls with one idempotency key at once are one order, answered
/// to every call, and stored once.
pub(crate) async fn sixteen_identical_placements_are_one_order(orders: &Orders) {
    for round in 0..3 {
        let key = format!("checkout-limit-{round}");
        let calls = (0..16).map(|_| orders.place_v2(v2_request(&key, &[("mug", 2), ("watch", 1)])));
        let placed: Vec<_> = join_all(calls).await;
        let first = placed[0]
            .clone()
            .unwrap_or_else(|s| panic!("round {round}: {s:?}"));
        for answer in &placed {
            assert_eq!(answer.as_ref().ok(), Some(&first), "round {round}: one order");
        }
        let db = &orders.server.db;
        assert_eq!(
            db.count(&format!("orders WHERE idempotency_key LIKE '%/{key}'"))
                .await,
            1
        );
        assert_eq!(
            db.count(&format!("order_items WHERE order_id = '{}'", first.order_id))
                .await,
            2
        );
    }
    // Two customers with one key at once: a key belongs to its customer,
    // so each gets one order of their own, and neither hears of the other.
    let calls = (0..16).map(|i| {
        let mut request = v2_request("shared-key", &[("mug", 1)]);
        if i % 2 == 1 {
            request.customer_email = "bob@example.com".into();
        }
        orders.place_v2(request)
    });
    let placed: Vec<_> = join_all(calls).await.into_iter().map(|p| p.unwrap()).collect();
    let ids: std::collections::BTreeSet<_> = placed.iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(ids.len(), 2, "one order per customer: {ids:?}");
    for order in &placed {
        let first = placed
            .iter()
            .find(|o| o.customer_email == order.customer_email)
            .unwrap();
        assert_eq!(order.order_id, first.order_id);
        assert_eq!(order.idempotency_key, "shared-key");
    }
    assert_eq!(
        orders
            .server
            .db
            .count("orders WHERE idempotency_key LIKE '%/shared-key'")
            .await,
        2
    );
}

pub(crate) async fn a_watcher_sees_a_change_made_by_another_replica(orders: &Orders) {
    let (replica, mut other) = orders.second_replica().await;
    let order = orders
        .place_v2(v2_request("watched-across", &[("terrarium", 1)]))
        .await
        .unwrap();
    let mut stream = orders
        .v2()
        .watch_order(v2::WatchOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let now = stream.message().await.unwrap().unwrap().order.unwrap();
    assert_eq!(now.status, v2::OrderStatus::Pending as i32);
    // Cancelled through the other replica: this one hears of it from the store.
    other
        .cancel_order(v2::CancelOrderRequest {
            order_id: order.order_id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    let change = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message())
        .await
        .expect("the change arrives within seconds")
        .unwrap()
        .unwrap()
        .order
        .unwrap();
    assert_eq!(change.status, v2::OrderStatus::Cancelled as i32);
    assert!(
        stream.message().await.unwrap().is_none(),
        "the stream ends once the order is final"
    );
    replica.stop().await.unwrap();
}

pub(crate) async fn an_order_graph_is_drawn_for_its_customer_only(orders: &Orders) {
    let order = orders
        .place_v2(v2_request("drawn", &[("terrarium", 1)]))
        .await
        .unwrap();
    // No workflow here: the saga has not started, so there is nothing to draw yet.
    let graph = orders
        .v2()
        .get_order_graph(v2::GetOrderGraphRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(graph.order.unwrap().order_id, order.order_id);
    assert!(graph.steps.is_empty() && graph.svg.is_empty());
    // Through the gateway, another customer's order is NOT_FOUND, as a missing one.
    let mut request = tonic::Request::new(v2::GetOrderGraphRequest {
        order_id: order.order_id.clone(),
    });
    for (name, value) in [
        ("x-ferrymesh-principal", "key"),
        ("x-ferrymesh-customer-email", "mallory@example.com"),
        ("x-ferrymesh-developer-id", "mallory"),
        ("x-ferrymesh-key-id", "mallory-1"),
    ] {
        request.metadata_mut().insert(name, value.parse().unwrap());
    }
    let status = orders.v2().get_order_graph(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    // A customer's email without the principal the gateway always names is
    // refused, never read as a call from inside the mesh.
    let mut request = tonic::Request::new(v2::GetOrderGraphRequest {
        order_id: order.order_id.clone(),
    });
    request.metadata_mut().insert(
        "x-ferrymesh-customer-email",
        "mallory@example.com".parse().unwrap(),
    );
    let status = orders.v2().get_order_graph(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = orders
        .v2()
        .get_order_graph(v2::GetOrderGraphRequest {
            order_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}
