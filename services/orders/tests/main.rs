//! Orders alone (with a real catalog beside it), over a real port and a
//! real database: every scenario runs once on SQLite and once on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod scenarios;
mod support;

kit_testing::on_sqlite_and_postgres!(
    crate::support::Orders::start;
    v1_and_v2_clients_read_each_others_orders_field_by_field,
    prices_come_from_the_catalog_not_from_the_client,
    placing_again_with_the_same_key_has_the_effect_of_one,
    sixteen_identical_placements_are_one_order,
    v2_requires_an_idempotency_key,
    bad_orders_name_the_field,
    a_watched_order_streams_its_cancellation_and_ends,
    a_watcher_sees_a_change_made_by_another_replica,
    lists_page_newest_first_and_filter,
    an_order_graph_is_drawn_for_its_customer_only,
);

#[tokio::test]
async fn an_unreachable_catalog_is_unavailable_not_an_internal_error() {
    let db = kit_testing::TestDatabase::sqlite();
    // Nothing listens on port 9 of loopback (discard), so every catalog call fails fast.
    let nowhere =
        kit::client::Upstream::new("http://127.0.0.1:9", std::time::Duration::from_secs(2)).unwrap();
    let upstreams = orders::core::Upstreams {
        catalog: nowhere.clone(),
        payments: nowhere.clone(),
        workflow: nowhere,
    };
    let server = kit_testing::TestServer::start::<orders::migrations::Migrator>(db, async |conn, args| {
        orders::service_with(conn, upstreams, args).await
    })
    .await;
    let mut v1 = orders::pb::ferrymesh::orders::v1::orders_service_client::OrdersServiceClient::new(
        server.channel().await,
    );
    let status = v1
        .place_order(support::v1_request("", &[("mug", 1)]))
        .await
        .unwrap_err();
    kit_testing::assert_status(
        &status,
        tonic::Code::Unavailable,
        "the catalog could not be reached",
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_catalog_is_cut_off_at_the_call_deadline() {
    use kit_testing::{TestDatabase, TestServer};
    // Every GetProduct takes 3s; orders gives each catalog call 300ms.
    let catalog = TestServer::start_with::<catalog::migrations::Migrator>(
        TestDatabase::sqlite(),
        |args| args.fault = vec!["GetProduct:latency=3s".parse().unwrap()],
        catalog::service_with,
    )
    .await;
    let nowhere =
        kit::client::Upstream::new("http://127.0.0.1:9", std::time::Duration::from_secs(2)).unwrap();
    let upstreams = orders::core::Upstreams {
        catalog: kit::client::Upstream::new(&catalog.uri(), std::time::Duration::from_millis(300)).unwrap(),
        payments: nowhere.clone(),
        workflow: nowhere,
    };
    let server =
        TestServer::start::<orders::migrations::Migrator>(TestDatabase::sqlite(), async |conn, args| {
            orders::service_with(conn, upstreams, args).await
        })
        .await;
    let mut v1 = orders::pb::ferrymesh::orders::v1::orders_service_client::OrdersServiceClient::new(
        server.channel().await,
    );
    let started = std::time::Instant::now();
    let status = v1
        .place_order(support::v1_request("", &[("mug", 1)]))
        .await
        .unwrap_err();
    kit_testing::assert_status(&status, tonic::Code::Unavailable, "DeadlineExceeded");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "cut off, not waited out: {:?}",
        started.elapsed()
    );
    server.stop().await;
    catalog.stop().await;
}

/// A catalog upstream of two instances, one of which refuses every
/// connection (a pod gone, its address still listed): each call that the
/// dead one refused is sent again to the live one, and none fails.
#[tokio::test]
async fn an_upstream_list_with_a_dead_instance_loses_no_call() {
    use kit_testing::{TestDatabase, TestServer};
    let catalog =
        TestServer::start::<catalog::migrations::Migrator>(TestDatabase::sqlite(), catalog::service_with)
            .await;
    let payments =
        TestServer::start::<payments::migrations::Migrator>(TestDatabase::sqlite(), payments::service_with)
            .await;
    let nowhere =
        kit::client::Upstream::new("http://127.0.0.1:9", std::time::Duration::from_millis(200)).unwrap();
    let upstreams = orders::core::Upstreams {
        // Port 9 of loopback (discard) has no listener.
        catalog: kit::client::Upstream::new(
            &format!("http://127.0.0.1:9,{}", catalog.uri()),
            std::time::Duration::from_secs(2),
        )
        .unwrap(),
        payments: kit::client::Upstream::new(&payments.uri(), std::time::Duration::from_secs(2)).unwrap(),
        workflow: nowhere,
    };
    let server =
        TestServer::start::<orders::migrations::Migrator>(TestDatabase::sqlite(), async |conn, args| {
            orders::service_with(conn, upstreams, args).await
        })
        .await;
    let mut v1 = orders::pb::ferrymesh::orders::v1::orders_service_client::OrdersServiceClient::new(
        server.channel().await,
    );
    for n in 0..30 {
        let placed = v1
            .place_order(support::v1_request(&format!("listed-{n}"), &[("mug", 1)]))
            .await;
        assert!(placed.is_ok(), "order {n}: {placed:?}");
    }
    server.stop().await;
    catalog.stop().await;
    payments.stop().await;
}
