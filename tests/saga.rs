//! The place-order saga over real processes: each outcome a customer can
//! meet, the invariants after 200 mixed orders, a crash of workflow with
//! sagas in flight, redrive after a fault is removed, and a definition
//! refused with the state named.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use nix::sys::signal::Signal;
use orders::pb::ferrymesh::orders::v2 as opb;
use payments::pb::ferrymesh::payments::v1::GetPaymentRequest;
use sea_orm::EntityTrait;
use workflow::pb::ferrymesh::workflow::v1 as wpb;
use workflow::pb::ferrymesh::workflow::v1::workflow_service_client::WorkflowServiceClient;

use crate::support::{Process, ferrymesh, serve};

use crate::support::mesh::{
    DECLINED, FLAKY, GOOD, Mesh, NO_FUNDS, channel_as, payment_id, succeeded, task_events,
};

#[tokio::test]
async fn every_outcome_of_the_saga_leaves_stock_and_money_right() {
    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(data.path(), &[]).await;
    let skus = ["mug", "city-bike", "canvas-tote"];
    let before = mesh.stock(&skus).await;

    // A successful order: confirmed, stock committed, charged once.
    let ok = mesh.place("saga-ok", &[("mug", 2)], GOOD, "GB").await;
    assert_eq!(
        ok.execution_name, ok.order_id,
        "the saga is named after the order"
    );
    let ok = mesh.settled(&ok.order_id, Duration::from_secs(20)).await;
    assert_eq!(ok.status, opb::OrderStatus::Confirmed as i32, "{ok:?}");
    assert!(
        ok.items
            .iter()
            .all(|i| i.status == opb::LineItemStatus::Confirmed as i32)
    );
    let events = mesh.history(&ok.order_id).await;
    let paid = payment_id(&events).unwrap();
    let payment = mesh
        .payments
        .clone()
        .get_payment(GetPaymentRequest { payment_id: paid })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        payment.amount,
        ok.totals.first().cloned(),
        "charged the order's total"
    );
    assert_eq!(payment.refunded_amount.map(|m| m.units), Some(0));
    let execution = mesh.execution(&ok.order_id).await;
    assert_eq!(execution.status, wpb::ExecutionStatus::Succeeded as i32);
    assert_eq!(execution.state_machine_name, "place-order");
    assert!(
        !execution.input.contains(GOOD),
        "no card number in the execution: {}",
        execution.input
    );
    assert!(execution.input.contains("tok_"), "the card travels as a token");

    // A declined card: stock released, nothing charged.
    let declined = mesh
        .place("saga-declined", &[("city-bike", 1)], DECLINED, "GB")
        .await;
    let declined = mesh.settled(&declined.order_id, Duration::from_secs(20)).await;
    assert_eq!(declined.status, opb::OrderStatus::Failed as i32);
    assert!(
        declined.status_reason.contains("CARD_DECLINED"),
        "{}",
        declined.status_reason
    );
    let events = mesh.history(&declined.order_id).await;
    assert!(
        succeeded(&events, "Release stock"),
        "the reservation was released"
    );
    assert!(!succeeded(&events, "Refund payment"), "nothing to refund");
    let status = mesh
        .payments
        .clone()
        .get_payment(GetPaymentRequest {
            payment_id: payment_id(&events).unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "nothing was charged");
    let execution = mesh.execution(&declined.order_id).await;
    assert_eq!(execution.status, wpb::ExecutionStatus::Failed as i32);
    assert_eq!(execution.error, "FAILED_PRECONDITION");

    // Out of stock: city bikes are 3 (one now released again); 50 are not there.
    let short = mesh.place("saga-short", &[("city-bike", 50)], GOOD, "GB").await;
    let short = mesh.settled(&short.order_id, Duration::from_secs(20)).await;
    assert_eq!(short.status, opb::OrderStatus::Failed as i32);
    let events = mesh.history(&short.order_id).await;
    assert!(payment_id(&events).is_none(), "never got to charging");
    assert!(
        short.status_reason.contains("FAILED_PRECONDITION"),
        "{}",
        short.status_reason
    );

    // A shipping failure after the charge: refunded and released.
    let unshippable = mesh.place("saga-aq", &[("canvas-tote", 1)], GOOD, "AQ").await;
    let unshippable = mesh.settled(&unshippable.order_id, Duration::from_secs(20)).await;
    assert_eq!(unshippable.status, opb::OrderStatus::Failed as i32);
    assert!(
        unshippable.status_reason.contains("no carrier delivers to AQ"),
        "{}",
        unshippable.status_reason
    );
    let events = mesh.history(&unshippable.order_id).await;
    assert!(succeeded(&events, "Refund payment") && succeeded(&events, "Release stock"));
    let refunded = mesh
        .payments
        .clone()
        .get_payment(GetPaymentRequest {
            payment_id: payment_id(&events).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        refunded.status,
        payments::pb::ferrymesh::payments::v1::PaymentStatus::Refunded as i32
    );
    assert_eq!(refunded.refunded_amount, refunded.amount);

    // A transient payment failure: retried with the same payment id, then confirmed.
    let flaky = mesh.place("saga-flaky", &[("mug", 1)], FLAKY, "GB").await;
    let flaky = mesh.settled(&flaky.order_id, Duration::from_secs(20)).await;
    assert_eq!(flaky.status, opb::OrderStatus::Confirmed as i32, "{flaky:?}");
    let events = mesh.history(&flaky.order_id).await;
    let charges: Vec<_> = task_events(&events, "Charge card");
    assert!(
        charges
            .iter()
            .any(|e| e.type_name == "TaskFailed" && e.details.contains("UNAVAILABLE"))
    );
    assert!(charges.iter().any(|e| e.type_name == "TaskRetryScheduled"));
    assert!(
        charges
            .iter()
            .any(|e| e.type_name == "TaskSucceeded" && e.retry_attempt == 1)
    );
    let ids: std::collections::BTreeSet<&str> = charges
        .iter()
        .filter(|e| e.type_name == "TaskStarted")
        .map(|e| e.details.as_str())
        .collect();
    assert_eq!(ids.len(), 1, "every attempt used one idempotency id: {ids:?}");

    // Stock: 3 mugs and nothing else committed; nothing left reserved.
    let after = mesh.stock(&skus).await;
    for sku in skus {
        let (on_hand, reserved, available) = after[sku];
        let committed = if sku == "mug" { 3 } else { 0 };
        assert_eq!(on_hand, before[sku].0 - committed, "{sku}");
        assert_eq!((reserved, available), (0, on_hand), "{sku}");
    }

    // The graph of the compensated order shows the caught step and the compensations.
    let graph = mesh
        .workflow
        .clone()
        .get_execution_graph(wpb::GetExecutionGraphRequest {
            execution_name: unshippable.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let progress: HashMap<&str, i32> = graph
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.progress))
        .collect();
    assert_eq!(progress["Create shipment"], wpb::StateProgress::Caught as i32);
    assert_eq!(progress["Charge card"], wpb::StateProgress::Compensated as i32);
    assert_eq!(
        progress["Refund payment"],
        wpb::StateProgress::Compensation as i32
    );
    assert_eq!(progress["Commit stock"], wpb::StateProgress::NotReached as i32);
    assert_eq!(progress["Order failed"], wpb::StateProgress::Failed as i32);
    assert!(
        graph.svg.starts_with("<svg") || graph.svg.contains("<svg"),
        "{}",
        &graph.svg[..100.min(graph.svg.len())]
    );
    assert!(graph.svg.contains("Create shipment"));
    assert!(graph.mermaid.starts_with("flowchart TD"));
    assert!(graph.dot.starts_with("digraph"));

    // The CLI reads the same: history and graph of the compensated order.
    let workflow_url = format!("http://127.0.0.1:{}", mesh.port("workflow"));
    let output = ferrymesh()
        .args([
            "workflow",
            "--address",
            &workflow_url,
            "history",
            &unshippable.order_id,
        ])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("TaskFailed") && said.contains("Create shipment") && said.contains("ExecutionFailed"),
        "{said}"
    );
    let svg = data.path().join("order.svg");
    let output = ferrymesh()
        .args([
            "workflow",
            "--address",
            &workflow_url,
            "graph",
            &unshippable.order_id,
            "--format",
            "svg",
            "-o",
        ])
        .arg(&svg)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("<svg") && drawn.contains("sans-serif"), "{drawn}");
    // The same drawing as the service's, which the README shows.
    assert_eq!(drawn.trim_end(), graph.svg.trim_end());
    if let Some(dir) = std::env::var_os("FERRYMESH_SCREENSHOTS") {
        std::fs::copy(&svg, std::path::Path::new(&dir).join("../saga-compensated.svg")).unwrap();
    }
    let output = ferrymesh()
        .args([
            "workflow",
            "--address",
            &workflow_url,
            "list",
            "--status",
            "failed",
        ])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains(&unshippable.order_id) && !said.contains(&ok.order_id),
        "{said}"
    );

    // A bad definition is refused naming the state.
    let definition =
        r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}, "B": {"Type": "Succeed"}}}"#;
    let status = mesh
        .workflow
        .clone()
        .create_state_machine(wpb::CreateStateMachineRequest {
            name: "broken".into(),
            definition: definition.into(),
            description: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains(r#"state "A": Next "Nowhere" is not a state"#),
        "{}",
        status.message()
    );

    mesh.stop().await;
}

/// The expected fate of a mixed order: (status, charged and kept, refunded, released).
fn expected(card: &str, country: &str) -> (opb::OrderStatus, bool, bool) {
    match (card, country) {
        (DECLINED | NO_FUNDS, _) => (opb::OrderStatus::Failed, false, true),
        (_, "AQ") => (opb::OrderStatus::Failed, true, true),
        _ => (opb::OrderStatus::Confirmed, false, false),
    }
}

/// After many sagas: stock adds up, money adds up, nothing is left running,
/// every compensation that should have run did.
pub(crate) async fn check_invariants(
    mesh: &Mesh,
    placed: &[(opb::Order, &str, &str)],
    seeded: &BTreeMap<String, (i64, i64, i64)>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while mesh.running().await > 0 {
        if Instant::now() >= deadline {
            let stuck = mesh
                .workflow
                .clone()
                .list_executions(wpb::ListExecutionsRequest {
                    status: wpb::ExecutionStatus::Running as i32,
                    page_size: 5,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .executions;
            let mut report = String::new();
            for execution in &stuck {
                report.push_str(&format!("{}:\n", execution.execution_name));
                for event in mesh.history(&execution.execution_name).await {
                    report.push_str(&format!(
                        "  {} {} {}\n",
                        event.type_name, event.state_name, event.details
                    ));
                }
            }
            let lines = mesh.up.lines();
            panic!(
                "executions still RUNNING, such as:\n{report}\nthe mesh's last lines:\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let skus: Vec<&str> = seeded.keys().map(String::as_str).collect();
    let stock = mesh.stock(&skus).await;
    let mut committed: BTreeMap<String, i64> = BTreeMap::new();
    let mut confirmed_total: i128 = 0;
    let mut kept_total: i128 = 0;
    let (mut refunds, mut releases, mut expected_refunds, mut expected_releases) = (0, 0, 0, 0);
    let nanos = |m: &kit_values::pb::ferrymesh::common::v1::Money| {
        i128::from(m.units) * 1_000_000_000 + i128::from(m.nanos)
    };
    for (order, card, country) in placed {
        let order = mesh.order(&order.order_id).await;
        assert_ne!(order.status, opb::OrderStatus::Pending as i32, "{order:?}");
        let events = mesh.history(&order.order_id).await;
        let out_of_stock = order.status_reason.contains("not enough")
            || (payment_id(&events).is_none() && order.status == opb::OrderStatus::Failed as i32);
        let (status, refund, release) = expected(card, country);
        if !out_of_stock {
            assert_eq!(order.status, status as i32, "{card} to {country}: {order:?}");
            expected_refunds += usize::from(refund);
            expected_releases += usize::from(release);
        }
        refunds += usize::from(succeeded(&events, "Refund payment"));
        releases += usize::from(succeeded(&events, "Release stock"));
        if order.status == opb::OrderStatus::Confirmed as i32 {
            for item in &order.items {
                *committed.entry(item.product_id.clone()).or_default() += i64::from(item.quantity);
            }
            confirmed_total += order.totals.iter().map(nanos).sum::<i128>();
        }
        if let Some(id) = payment_id(&events) {
            match mesh
                .payments
                .clone()
                .get_payment(GetPaymentRequest { payment_id: id })
                .await
            {
                Ok(p) => {
                    let p = p.into_inner().payment.unwrap();
                    kept_total +=
                        nanos(p.amount.as_ref().unwrap()) - nanos(p.refunded_amount.as_ref().unwrap());
                }
                Err(s) => assert_eq!(s.code(), tonic::Code::NotFound),
            }
        }
    }
    for (sku, (on_hand, reserved, available)) in &stock {
        let was = seeded[sku].0;
        let done = committed.get(sku).copied().unwrap_or(0);
        assert_eq!(*reserved, 0, "{sku}: nothing is left reserved");
        assert_eq!(
            on_hand + done,
            was,
            "{sku}: on hand plus committed is the seeded stock"
        );
        assert_eq!(
            available + reserved + done,
            was,
            "{sku}: available + reserved + committed = seeded"
        );
    }
    assert_eq!(
        kept_total, confirmed_total,
        "charges minus refunds equal the totals of CONFIRMED orders"
    );
    assert_eq!(refunds, expected_refunds, "every refund that should have run did");
    assert_eq!(
        releases, expected_releases,
        "every release that should have run did"
    );
}

#[tokio::test]
async fn two_hundred_mixed_orders_keep_the_invariants() {
    let data = tempfile::tempdir().unwrap();
    let mesh = Mesh::up(data.path(), &[]).await;
    let products = [
        "mug",
        "canvas-tote",
        "film-camera",
        "vintage-typewriter",
        "air-plant",
    ];
    let seeded = mesh.stock(&products).await;
    let cards = [GOOD, GOOD, DECLINED, FLAKY, NO_FUNDS, GOOD];
    let mut requests = Vec::new();
    for n in 0..200usize {
        let card = cards[n % cards.len()];
        let country = if n % 11 == 5 { "AQ" } else { "GB" };
        let product = products[n % products.len()];
        requests.push((format!("mixed-{n}"), product, card, country));
    }
    let mut placed = Vec::new();
    let mesh_ref = &mesh;
    for chunk in requests.chunks(20) {
        let calls = chunk.iter().map(|(key, product, card, country)| async move {
            let mesh = mesh_ref;
            (
                mesh.place(key, &[(product, 1)], card, country).await,
                *card,
                *country,
            )
        });
        placed.extend(join_all(calls).await);
    }
    check_invariants(&mesh, &placed, &seeded).await;
    let confirmed = {
        let mut n = 0;
        for (o, _, _) in &placed {
            n += usize::from(mesh.order(&o.order_id).await.status == opb::OrderStatus::Confirmed as i32);
        }
        n
    };
    assert!(confirmed > 20, "a good share confirmed: {confirmed}");
    mesh.stop().await;
}

#[tokio::test]
async fn workflow_killed_with_sagas_in_flight_finishes_them_all_once() {
    let data = tempfile::tempdir().unwrap();
    // Shipping takes a second per shipment, so sagas pile up in flight.
    let mesh = Mesh::up(data.path(), &["shipping=--fault=CreateShipment:latency=1500ms"]).await;
    let products = ["mug", "canvas-tote", "air-plant", "tank-top", "sunglasses"];
    let seeded = mesh.stock(&products).await;
    let cards = [GOOD, GOOD, DECLINED, FLAKY];
    let calls = (0..70usize).map(|n| {
        let mesh = &mesh;
        let card = cards[n % cards.len()];
        let country = if n % 13 == 4 { "AQ" } else { "GB" };
        let product = products[n % products.len()];
        async move {
            (
                mesh.place(&format!("crash-{n}"), &[(product, 1)], card, country)
                    .await,
                card,
                country,
            )
        }
    });
    let mut placed: Vec<(opb::Order, &str, &str)> = join_all(calls).await;
    let running = mesh.running().await;
    assert!(running >= 50, "at least 50 in flight: {running}");

    let workflow = format!("127.0.0.1:{}", mesh.port("workflow"));
    let pid = crate::support::pid_of(&["serve", "workflow", &workflow]).expect("the workflow process");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();

    // Orders keep being accepted while workflow is down; their sagas start later.
    let late = (70..80usize).map(|n| {
        let mesh = &mesh;
        async move {
            (
                mesh.place(&format!("crash-{n}"), &[("mug", 1)], GOOD, "GB").await,
                GOOD,
                "GB",
            )
        }
    });
    placed.extend(join_all(late).await);

    // `up` starts workflow again; it resumes every execution.
    let mut up = mesh.up;
    up.wait_for_line(
        |l| l.contains("resumed running executions"),
        Duration::from_secs(30),
    )
    .await;
    let mesh = Mesh { up, ..mesh };
    check_invariants(&mesh, &placed, &seeded).await;

    // Each payment charged at most once: one payment per order, never two.
    let db = sea_orm::Database::connect(format!("sqlite://{}/payments.db?mode=ro", data.path().display()))
        .await
        .unwrap();
    let rows = payments::store::payment::Entity::find().all(&db).await.unwrap();
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *per_order.entry(row.order_id.clone()).or_default() += 1;
    }
    assert!(per_order.values().all(|n| *n == 1), "{per_order:?}");
    db.close().await.unwrap();
    let resumed = mesh
        .history(&placed[0].0.order_id)
        .await
        .iter()
        .filter(|e| e.type_name == "ExecutionResumed")
        .count();
    assert!(resumed <= 1);
    mesh.stop().await;
}

#[tokio::test]
async fn a_failed_execution_is_redriven_after_the_fault_is_removed() {
    let data = tempfile::tempdir().unwrap();
    let catalog_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let catalog_addr = format!("127.0.0.1:{catalog_port}");
    let catalog_dir = data.path().join("catalog");
    let start_catalog = |fault: bool| {
        let mut command = ferrymesh();
        command
            .args(["serve", "catalog", "--listen", &catalog_addr, "--data-dir"])
            .arg(&catalog_dir);
        if fault {
            command.arg("--fault=GetProduct:error_rate=1,code=UNAVAILABLE");
        }
        Process::spawn(command)
    };
    let mut catalog = start_catalog(true);
    catalog
        .wait_for_line(|l| l.contains("listening on "), Duration::from_secs(60))
        .await;
    let endpoint = format!("--endpoint=ferrymesh.catalog.v1=http://{catalog_addr}");
    let (_workflow, addr): (Process, SocketAddr) =
        serve("workflow", &data.path().join("workflow"), &[&endpoint], &[]).await;
    let mut client = WorkflowServiceClient::new(channel_as(addr.port(), None));
    let watcher = client.clone();

    let definition = r#"{
      "StartAt": "Prepare",
      "States": {
        "Prepare": {"Type": "Pass", "Parameters": {"product_id.$": "$.sku", "prepared.$": "States.UUID()"}, "ResultPath": "$.lookup", "Next": "Lookup"},
        "Lookup": {"Type": "Task", "Resource": "grpc:ferrymesh.catalog.v1.CatalogService/GetProduct",
                   "Parameters": {"product_id.$": "$.lookup.product_id"}, "ResultSelector": {"name.$": "$.product.name"},
                   "ResultPath": "$.found", "End": true}
      }
    }"#;
    let created = client
        .create_state_machine(wpb::CreateStateMachineRequest {
            name: "lookup".into(),
            definition: definition.into(),
            description: "looks a product up".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .state_machine
        .unwrap();
    assert_eq!(created.version, 1);
    client
        .start_execution(wpb::StartExecutionRequest {
            state_machine_name: "lookup".into(),
            execution_name: "lookup-1".into(),
            input: r#"{"sku": "mug"}"#.into(),
            state_machine_version: 0,
        })
        .await
        .unwrap();
    let wait_for = |status: wpb::ExecutionStatus| {
        let mut client = watcher.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let e = client
                    .describe_execution(wpb::DescribeExecutionRequest {
                        execution_name: "lookup-1".into(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .execution
                    .unwrap();
                if e.status == status as i32 {
                    return e;
                }
                assert!(Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let failed = wait_for(wpb::ExecutionStatus::Failed).await;
    assert_eq!(
        (failed.error.as_str(), failed.current_state.as_str()),
        ("UNAVAILABLE", "Lookup")
    );
    let prepared_before: serde_json::Value = {
        let history = client
            .get_execution_history(wpb::GetExecutionHistoryRequest {
                execution_name: "lookup-1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        let exited = history.iter().find(|e| e.type_name == "PassStateExited").unwrap();
        serde_json::from_str(&exited.details).unwrap()
    };

    // Redriving a running or succeeded execution is refused; this one is FAILED.
    catalog.signal(Signal::SIGTERM);
    catalog.wait_exit(Duration::from_secs(30)).await;
    let mut catalog = start_catalog(false);
    catalog
        .wait_for_line(|l| l.contains("listening on "), Duration::from_secs(60))
        .await;
    let redriven = client
        .redrive_execution(wpb::RedriveExecutionRequest {
            execution_name: "lookup-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .execution
        .unwrap();
    assert_eq!(redriven.redrive_count, 1);
    let done = wait_for(wpb::ExecutionStatus::Succeeded).await;
    let output: serde_json::Value = serde_json::from_str(&done.output).unwrap();
    assert_eq!(output["found"]["name"], "Mug");
    // What succeeded before the failure was kept, not run again.
    assert_eq!(output["lookup"], prepared_before["output"]["lookup"]);
    let history = client
        .get_execution_history(wpb::GetExecutionHistoryRequest {
            execution_name: "lookup-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(
        history
            .iter()
            .filter(|e| e.type_name == "PassStateEntered")
            .count(),
        1
    );
    assert_eq!(
        history
            .iter()
            .filter(|e| e.type_name == "ExecutionRedriven")
            .count(),
        1
    );
    let status = client
        .redrive_execution(wpb::RedriveExecutionRequest {
            execution_name: "lookup-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    catalog.signal(Signal::SIGTERM);
    catalog.wait_exit(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn an_order_cancelled_while_its_saga_runs_is_undone_and_stays_cancelled() {
    let data = tempfile::tempdir().unwrap();
    // Shipping takes a second, so the cancel lands while the saga runs.
    let mesh = Mesh::up(data.path(), &["shipping=--fault=CreateShipment:latency=1s"]).await;
    let before = mesh.stock(&["mug"]).await;
    let order = mesh.place("cancel-midway", &[("mug", 3)], GOOD, "GB").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled = mesh
        .orders
        .clone()
        .cancel_order(opb::CancelOrderRequest {
            order_id: order.order_id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(cancelled.status, opb::OrderStatus::Cancelled as i32);
    let deadline = Instant::now() + Duration::from_secs(20);
    let execution = loop {
        let e = mesh.execution(&order.order_id).await;
        if e.status != wpb::ExecutionStatus::Running as i32 {
            break e;
        }
        assert!(Instant::now() < deadline, "{e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        execution.status,
        wpb::ExecutionStatus::Failed as i32,
        "{execution:?}"
    );
    let events = mesh.history(&order.order_id).await;
    assert!(
        task_events(&events, "Confirm order")
            .iter()
            .any(|e| e.type_name == "TaskFailed")
    );
    for step in ["Cancel shipment", "Refund payment", "Release stock", "Fail order"] {
        assert!(succeeded(&events, step), "{step} ran");
    }
    assert!(
        !task_events(&events, "Commit stock")
            .iter()
            .any(|e| e.type_name == "TaskScheduled")
    );
    let order = mesh.order(&order.order_id).await;
    assert_eq!(
        order.status,
        opb::OrderStatus::Cancelled as i32,
        "the customer's cancel stands"
    );
    assert_eq!(order.status_reason, "changed my mind");
    let payment = mesh
        .payments
        .clone()
        .get_payment(GetPaymentRequest {
            payment_id: payment_id(&events).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(payment.refunded_amount, payment.amount, "refunded in full");
    assert_eq!(mesh.stock(&["mug"]).await, before, "the stock is as it was");
    mesh.stop().await;
}
