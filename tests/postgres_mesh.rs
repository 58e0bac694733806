//! `ferrymesh up --postgres URL`: every service on one PostgreSQL server, in
//! a database of its own made when missing, and an order goes through the
//! whole saga on it. Started twice on the same databases (as after a
//! reboot), it finds them and carries on.

use std::time::Duration;

use orders::pb::ferrymesh::orders::v2 as opb;
use sea_orm::ConnectionTrait;

use crate::support::mesh::{GOOD, Mesh};

const SERVICES_WITH_A_DATABASE: &[&str] = &[
    "catalog",
    "inventory",
    "payments",
    "shipping",
    "orders",
    "workflow",
    "apikeys",
];

#[tokio::test]
async fn up_runs_every_service_on_postgres_and_an_order_completes() {
    let server = kit_testing::postgres_admin_url();
    let prefix = format!("fm_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let data = tempfile::tempdir().unwrap();
    let flags = [
        "--postgres",
        server.as_str(),
        "--postgres-prefix",
        prefix.as_str(),
    ];
    for round in 0..2 {
        let mesh = Mesh::up_with(data.path(), &[], &flags, &[]).await;
        let table = mesh.up.output();
        for service in SERVICES_WITH_A_DATABASE {
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(service) && l.contains(&format!("/{prefix}_{service}"))),
                "{service} is not on its PostgreSQL database:\n{table}"
            );
        }
        let order = mesh
            .place(&format!("pg-{round}"), &[("mug", 1)], GOOD, "GB")
            .await;
        let order = mesh.settled(&order.order_id, Duration::from_secs(30)).await;
        assert_eq!(order.status, opb::OrderStatus::Confirmed as i32, "{order:?}");
        let orders = mesh
            .orders
            .clone()
            .list_orders(opb::ListOrdersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .orders;
        assert_eq!(orders.len(), round + 1, "the first round's order is still there");
        mesh.stop().await;
    }
    // Nothing was written beside the data directory's logs and files: the
    // orders are in PostgreSQL.
    assert!(!data.path().join("orders.db").exists());
    let admin = sea_orm::Database::connect(&server).await.unwrap();
    for service in SERVICES_WITH_A_DATABASE {
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{prefix}_{service}\" WITH (FORCE)"
            ))
            .await
            .unwrap();
    }
}
