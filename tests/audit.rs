//! `ferrymesh audit` as an operator runs it: clean on a mesh that has run
//! good, declined and unshippable orders; then one service's database is
//! edited behind its back (a confirmed order's reservation put back to
//! RESERVED, another's shipment cancelled) and the audit names exactly
//! those orders, says what is wrong, and exits 1.

use std::time::Duration;

use orders::pb::ferrymesh::orders::v2 as opb;
use sea_orm::ConnectionTrait;

use crate::support::ferrymesh;
use crate::support::mesh::{DECLINED, GOOD, Mesh};

/// Runs the audit against the mesh at `offset`: its exit code and its JSON report.
async fn audit(offset: u16) -> (i32, serde_json::Value) {
    let output = ferrymesh()
        .args(["audit", "--json", "--port-offset", &offset.to_string()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let report = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), report)
}

/// The last audit as the console's operations view reads it, once `done` accepts it.
async fn console_audit(
    offset: u16,
    token: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let url = format!(
        "http://127.0.0.1:{}/console/api/ops/audit",
        crate::support::port("gateway", offset)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = crate::support::http_get_as(&url, Some(token)).await;
        let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(report["configured"], true, "{report}");
        if done(&report) {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console's audit never showed it: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The console's operations view: every service SERVING with its version
/// (gRPC health and the build-info gauge), and the orders just placed in
/// its RED histograms, buckets in order up to +Inf.
async fn console_reads_health_and_red_metrics(offset: u16, token: &str) {
    let get = |view: &str| {
        let url = format!(
            "http://127.0.0.1:{}/console/api/ops/{view}",
            crate::support::port("gateway", offset)
        );
        async move {
            let body = crate::support::http_get_as(&url, Some(token)).await;
            serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
        }
    };
    let mesh = get("mesh").await;
    let services = mesh["services"].as_array().unwrap();
    assert!(services.len() >= 8, "{mesh}");
    for service in services {
        assert_eq!(service["serving"], service["replicas"], "{service}");
        let instance = &service["instances"][0];
        assert_eq!(instance["health"], "SERVING", "{service}");
        assert!(
            instance["version"].as_str().is_some_and(|v| !v.is_empty()),
            "{service}"
        );
    }
    let metrics = get("metrics").await;
    let placed = metrics["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["service"] == "orders"
                && s["method"].as_str().unwrap().ends_with("/PlaceOrder")
                && s["code"] == "0"
        })
        .unwrap_or_else(|| panic!("no PlaceOrder series: {metrics}"));
    assert!(placed["count"].as_f64().unwrap() >= 5.0, "{placed}");
    assert!(placed["sum_ms"].as_f64().unwrap() > 0.0, "{placed}");
    let buckets = placed["buckets"].as_array().unwrap();
    let last = buckets.last().unwrap();
    assert_eq!(
        (&last[0], &last[1]),
        (&serde_json::json!("+Inf"), &placed["count"]),
        "{placed}"
    );
    let bounds: Vec<f64> = buckets[..buckets.len() - 1]
        .iter()
        .map(|b| b[0].as_f64().unwrap())
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{placed}");
}

#[tokio::test]
async fn the_audit_passes_a_clean_mesh_and_names_each_planted_inconsistency() {
    let data = tempfile::tempdir().unwrap();
    // `up` audits every second too, for the console.
    let mesh = Mesh::up_with(data.path(), &[], &["--audit-every", "1s"], &[]).await;
    let mut placed = Vec::new();
    for (i, (card, country)) in [
        (GOOD, "GB"),
        (DECLINED, "GB"),
        (GOOD, "AQ"),
        (GOOD, "GB"),
        (GOOD, "US"),
    ]
    .into_iter()
    .enumerate()
    {
        let order = mesh
            .place(
                &format!("audit-{i}"),
                &[("mug", 1), ("canvas-tote", 2)],
                card,
                country,
            )
            .await;
        placed.push(mesh.settled(&order.order_id, Duration::from_secs(30)).await);
    }
    let statuses: Vec<i32> = placed.iter().map(|o| o.status).collect();
    let (confirmed, failed) = (
        opb::OrderStatus::Confirmed as i32,
        opb::OrderStatus::Failed as i32,
    );
    assert_eq!(statuses, [confirmed, failed, failed, confirmed, confirmed]);

    let (code, report) = audit(mesh.offset).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["orders"], 5);
    assert_eq!(report["clean"], true, "{report}");
    let token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    let shown = console_audit(mesh.offset, token.trim(), |r| r["orders"] == 5).await;
    assert_eq!(shown["clean"], true, "{shown}");
    console_reads_health_and_red_metrics(mesh.offset, token.trim()).await;

    // Behind the services' backs: a confirmed order's stock is held again,
    // and another's shipment is cancelled.
    let history = mesh.history(&placed[0].order_id).await;
    let reservation = history
        .iter()
        .find(|e| e.state_name == "Reserve stock" && e.type_name == "TaskScheduled")
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["parameters"]["reservation_id"]
                .clone()
        })
        .unwrap();
    let inventory = sea_orm::Database::connect(format!("sqlite://{}/inventory.db", data.path().display()))
        .await
        .unwrap();
    inventory
        .execute_unprepared(&format!(
            "UPDATE reservations SET status = 'RESERVED' WHERE reservation_id = '{}'",
            reservation.as_str().unwrap()
        ))
        .await
        .unwrap();
    inventory.close().await.unwrap();
    let shipping = sea_orm::Database::connect(format!("sqlite://{}/shipping.db", data.path().display()))
        .await
        .unwrap();
    shipping
        .execute_unprepared(&format!(
            "UPDATE shipments SET status = 'CANCELLED' WHERE order_id = '{}'",
            placed[3].order_id
        ))
        .await
        .unwrap();
    shipping.close().await.unwrap();

    let (code, report) = audit(mesh.offset).await;
    assert_eq!(code, 1, "{report}");
    let violations = report["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 2, "{report}");
    let named = |order: &opb::Order, says: &str| {
        violations.iter().any(|v| {
            v["order_id"] == order.order_id.as_str() && v["problem"].as_str().unwrap().contains(says)
        })
    };
    assert!(named(&placed[0], "is RESERVED, not COMMITTED"), "{report}");
    assert!(named(&placed[3], "is cancelled"), "{report}");
    // The console's operations view shows the same, from `up`'s own audit,
    // and its gauges say so to Prometheus.
    let shown = console_audit(mesh.offset, token.trim(), |r| {
        r["violations"].as_array().is_some_and(|v| v.len() == 2)
    })
    .await;
    assert_eq!(shown["violations"], report["violations"], "{shown}");
    let gauges = crate::support::http_get(&format!("http://127.0.0.1:{}/metrics", mesh.port("audit"))).await;
    assert!(gauges.contains("ferrymesh_audit_violations 2"), "{gauges}");
    assert!(gauges.contains("ferrymesh_audit_orders 5"), "{gauges}");
    // And in words, for a person.
    let output = ferrymesh()
        .args(["audit", "--port-offset", &mesh.offset.to_string()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&placed[0].order_id) && text.contains("audited 5 orders: 2 violations"),
        "{text}"
    );
    mesh.stop().await;
}
