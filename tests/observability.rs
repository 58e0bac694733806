//! Observability as a user meets it: one trace per order across every
//! process of the mesh, X-Ray classes, the trace sink and `ferrymesh trace`,
//! Prometheus counters that match the calls made, and sampling by X-Ray's rule.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use catalog::pb::ferrymesh::catalog::v1::GetProductRequest;
use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use orders::pb::ferrymesh::orders::v2 as opb;
use tonic::transport::Channel;

use crate::gateway::register;
use crate::support::mesh::{DECLINED, GOOD, Mesh, order_request};
use crate::support::{ferrymesh, http_get, metrics_url, serve};
use crate::tracing_export::{Collector, Exported, attribute, hex_of, string, traced_gateway};

fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

fn text_attribute(span: &Span, key: &str) -> Option<String> {
    match attribute(&span.attributes, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn service_of(exported: &Exported) -> String {
    match attribute(&exported.0, "service.name") {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Every span of one trace received so far.
fn trace_spans(collector: &Collector, trace_id: &[u8]) -> Vec<Exported> {
    collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| s.trace_id == trace_id)
        .cloned()
        .collect()
}

/// Waits until the trace has a server span named `name` in `service`.
async fn wait_for_server_span(collector: &Collector, trace_id: &[u8], service: &str, name: &str) -> Exported {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = trace_spans(collector, trace_id).into_iter().find(|e| {
            e.1.kind == span::SpanKind::Server as i32 && e.1.name == name && service_of(e) == service
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {service} span {name} in the trace; it has {:?}",
            trace_spans(collector, trace_id)
                .iter()
                .map(|e| format!("{}:{}", service_of(e), e.1.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The services on the way from `span` up to the trace's root, nearest first.
fn ancestry(spans: &[Exported], span: &Span) -> Vec<String> {
    let by_id: HashMap<&[u8], &Exported> = spans.iter().map(|e| (e.1.span_id.as_slice(), e)).collect();
    let mut chain = Vec::new();
    let mut current = span.parent_span_id.as_slice();
    while let Some(parent) = by_id.get(current) {
        chain.push(service_of(parent));
        current = parent.1.parent_span_id.as_slice();
        assert!(chain.len() < 100, "a cycle in the parents");
    }
    assert!(
        current.is_empty(),
        "the chain from {} breaks at a span that was not exported",
        span.name
    );
    chain
}

async fn place_through_gateway(
    gateway: SocketAddr,
    secret: &str,
    key: &str,
    card: &str,
    correlation: &str,
) -> String {
    let mut request = tonic::Request::new(order_request(key, &[("mug", 1)], card, "GB"));
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    request
        .metadata_mut()
        .insert("x-correlation-id", correlation.parse().unwrap());
    opb::orders_service_client::OrdersServiceClient::new(channel(gateway))
        .place_order(request)
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
        .order_id
}

/// The trace of a call the gateway took: its root server span's trace id.
async fn gateway_root(collector: &Collector, correlation: &str) -> (Vec<u8>, Span) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|e| {
                service_of(e) == "gateway"
                    && e.1.kind == span::SpanKind::Server as i32
                    && text_attribute(&e.1, "ferrymesh.correlation_id").as_deref() == Some(correlation)
            })
            .cloned();
        if let Some((_, root)) = found {
            return (root.trace_id.clone(), root);
        }
        assert!(Instant::now() < deadline, "no gateway span for {correlation}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_trace_follows_an_order_through_every_service_and_the_sink_shows_it() {
    let (collector, endpoint) = Collector::start().await;
    let data = tempfile::tempdir().unwrap();
    // Every trace is kept here; sampling has its own test below.
    let mesh = Mesh::up_with(
        data.path(),
        &[],
        &["--trace-sink", "--otlp-endpoint", &endpoint],
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    )
    .await;
    let gateway: SocketAddr = format!("127.0.0.1:{}", mesh.port("gateway")).parse().unwrap();
    let sink = format!("http://127.0.0.1:{}", mesh.port("tracesink"));
    let secret = register(gateway, "ada@example.com").await;

    // A good order: gateway -> orders -> (catalog, payments, workflow ->
    // inventory, payments, shipping, orders).
    let order_id = place_through_gateway(gateway, &secret, "obs-1", GOOD, "checkout-obs-1").await;
    let order = mesh.settled(&order_id, Duration::from_secs(30)).await;
    assert_eq!(order.status, opb::OrderStatus::Confirmed as i32);
    let (trace, root) = gateway_root(&collector, "checkout-obs-1").await;
    assert!(root.parent_span_id.is_empty(), "the gateway's span is the root");
    assert_eq!(root.name, "ferrymesh.orders.v2.OrdersService/PlaceOrder");
    assert_eq!(text_attribute(&root, "ferrymesh.stage").as_deref(), Some("prod"));
    let expected = [
        ("orders", "ferrymesh.orders.v2.OrdersService/PlaceOrder"),
        ("catalog", "ferrymesh.catalog.v1.CatalogService/GetProduct"),
        ("workflow", "ferrymesh.workflow.v1.WorkflowService/StartExecution"),
        (
            "inventory",
            "ferrymesh.inventory.v1.InventoryService/ReserveStock",
        ),
        ("payments", "ferrymesh.payments.v1.PaymentsService/Charge"),
        ("shipping", "ferrymesh.shipping.v1.ShippingService/CreateShipment"),
        (
            "orders",
            "ferrymesh.orders.v2.OrderFulfillmentService/ConfirmOrder",
        ),
        (
            "inventory",
            "ferrymesh.inventory.v1.InventoryService/CommitReservation",
        ),
    ];
    for (service, name) in expected {
        wait_for_server_span(&collector, &trace, service, name).await;
    }
    let spans = trace_spans(&collector, &trace);
    // Parentage across processes: each server span's chain of parents
    // reaches the gateway's root without a gap; the saga's steps go through
    // workflow, which orders started.
    for (service, name) in expected {
        let (_, span) = spans
            .iter()
            .find(|e| {
                service_of(e) == service && e.1.name == name && e.1.kind == span::SpanKind::Server as i32
            })
            .unwrap();
        let chain = ancestry(&spans, span);
        assert_eq!(
            chain.last().map(String::as_str),
            Some("gateway"),
            "{name}: {chain:?}"
        );
        if matches!(service, "inventory" | "shipping")
            || name.ends_with("/Charge")
            || name.ends_with("ConfirmOrder")
        {
            assert!(
                chain.contains(&"workflow".to_string()) && chain.contains(&"orders".to_string()),
                "{name} comes through workflow, started by orders: {chain:?}"
            );
        }
    }
    // Each hop has a client span in the caller, and the correlation id and an
    // X-Ray class are on every server span.
    let by_id: HashMap<&[u8], &Exported> = spans.iter().map(|e| (e.1.span_id.as_slice(), e)).collect();
    for (resource, span) in spans.iter().filter(|e| e.1.kind == span::SpanKind::Server as i32) {
        let service = service_of(&(resource.clone(), span.clone()));
        assert_eq!(
            text_attribute(span, "ferrymesh.correlation_id").as_deref(),
            Some("checkout-obs-1"),
            "{service} {}",
            span.name
        );
        assert_eq!(
            text_attribute(span, "ferrymesh.class").as_deref(),
            Some("ok"),
            "{}",
            span.name
        );
        if !span.parent_span_id.is_empty() {
            let parent = by_id[span.parent_span_id.as_slice()];
            assert_eq!(
                parent.1.kind,
                span::SpanKind::Client as i32,
                "{} is called by a client span",
                span.name
            );
            assert_eq!(parent.1.name, span.name);
            assert_ne!(service_of(parent), service, "the call crosses processes");
        }
    }
    // The saga's states and attempts, and the database's statements.
    let names: BTreeSet<&str> = spans.iter().map(|e| e.1.name.as_str()).collect();
    for name in ["execution place-order", "state Charge card", "task Charge card"] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    let attempt = spans.iter().find(|e| e.1.name == "task Charge card").unwrap();
    assert_eq!(
        attribute(&attempt.1.attributes, "workflow.retry"),
        Some(&any_value::Value::IntValue(0)),
        "{:?}",
        attempt.1.attributes
    );
    let statement = spans
        .iter()
        .find(|e| service_of(e) == "inventory" && attribute(&e.1.attributes, "db.system").is_some())
        .unwrap_or_else(|| panic!("inventory's statements are spans: {names:?}"));
    assert_eq!(
        attribute(&statement.1.attributes, "db.system"),
        string("sqlite").as_ref()
    );
    assert!(text_attribute(&statement.1, "db.operation").is_some());
    assert!(text_attribute(&statement.1, "db.sql.table").is_some());
    assert_eq!(
        text_attribute(
            &spans
                .iter()
                .find(|e| e.1.name == "ferrymesh.orders.v2.OrdersService/PlaceOrder"
                    && service_of(e) == "orders")
                .unwrap()
                .1,
            "ferrymesh.order_id"
        )
        .as_deref(),
        Some(order_id.as_str())
    );

    // A declined card: Charge is the caller's error, and the compensations follow it.
    let failed_id = place_through_gateway(gateway, &secret, "obs-2", DECLINED, "checkout-obs-2").await;
    let failed = mesh.settled(&failed_id, Duration::from_secs(30)).await;
    assert_eq!(failed.status, opb::OrderStatus::Failed as i32);
    let (declined, _) = gateway_root(&collector, "checkout-obs-2").await;
    let (_, charge) = wait_for_server_span(
        &collector,
        &declined,
        "payments",
        "ferrymesh.payments.v1.PaymentsService/Charge",
    )
    .await;
    assert_eq!(
        text_attribute(&charge, "ferrymesh.class").as_deref(),
        Some("error")
    );
    assert_eq!(
        attribute(&charge.attributes, "rpc.grpc.status_code"),
        Some(&any_value::Value::IntValue(9)),
        "FAILED_PRECONDITION"
    );
    let (_, release) = wait_for_server_span(
        &collector,
        &declined,
        "inventory",
        "ferrymesh.inventory.v1.InventoryService/ReleaseReservation",
    )
    .await;
    let (_, fail) = wait_for_server_span(
        &collector,
        &declined,
        "orders",
        "ferrymesh.orders.v2.OrderFulfillmentService/FailOrder",
    )
    .await;
    assert!(
        release.start_time_unix_nano >= charge.end_time_unix_nano,
        "release follows the charge"
    );
    assert!(
        fail.start_time_unix_nano >= release.end_time_unix_nano,
        "the order fails last"
    );
    // The workflow's state span ends after the calls it made, and may come
    // in a later export batch than theirs.
    let mut state = None;
    for _ in 0..100 {
        state = trace_spans(&collector, &declined)
            .into_iter()
            .find(|e| e.1.name == "state Charge card");
        if state.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = state.expect("the Charge card state's span");
    assert_eq!(
        text_attribute(&state.1, "workflow.error").as_deref(),
        Some("FAILED_PRECONDITION")
    );
    assert_eq!(
        text_attribute(&state.1, "workflow.caught_by").as_deref(),
        Some("Release stock")
    );

    // The sink has the same traces: `ferrymesh trace ORDER_ID` shows the
    // failed step, then the compensations.
    let output = ferrymesh()
        .args(["trace", "--sink", &sink, &failed_id])
        .output()
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |needle: &str| {
        shown
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{shown}"))
    };
    let charge_line = shown
        .lines()
        .find(|l| l.starts_with("payments") && l.contains("PaymentsService/Charge"))
        .unwrap_or_else(|| panic!("no Charge line in:\n{shown}"));
    assert!(charge_line.contains(" error"), "{charge_line}");
    assert!(line("state Charge card") < line("state Release stock"), "{shown}");
    assert!(line("state Release stock") < line("state Fail order"), "{shown}");
    assert!(shown.contains("ReleaseReservation"), "{shown}");
    assert!(
        shown
            .lines()
            .next()
            .unwrap()
            .starts_with(&format!("trace {}", hex_of(&declined))),
        "{shown}"
    );

    // `ferrymesh trace map` draws every edge of the saga.
    let output = ferrymesh()
        .args(["trace", "--sink", &sink, "map"])
        .output()
        .await
        .unwrap();
    let map = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{map}");
    for (caller, callee) in [
        ("client", "gateway"),
        ("gateway", "orders"),
        ("orders", "catalog"),
        ("orders", "payments"),
        ("orders", "workflow"),
        ("workflow", "inventory"),
        ("workflow", "payments"),
        ("workflow", "shipping"),
        ("workflow", "orders"),
        ("inventory", "sqlite"),
    ] {
        let edge = map
            .lines()
            .find(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.len() > 3 && words[0] == caller && words[1] == "->" && words[2] == callee
            })
            .unwrap_or_else(|| panic!("no edge {caller} -> {callee} in:\n{map}"));
        if (caller, callee) == ("workflow", "payments") {
            // One charge declined (error), one refund-free charge and nothing else failed.
            let errors: f64 = edge
                .split_whitespace()
                .nth(4)
                .unwrap()
                .trim_end_matches('%')
                .parse()
                .unwrap();
            assert!(errors > 0.0, "the declined charge counts as an error: {edge}");
        }
    }

    // Metrics went to the collector over OTLP too.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !collector
        .metrics
        .lock()
        .unwrap()
        .iter()
        .any(|(service, name)| service == "orders" && name == "rpc.server.duration")
    {
        assert!(
            Instant::now() < deadline,
            "no rpc.server.duration from orders over OTLP"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mesh.stop().await;
}

/// The count of a Prometheus sample, by its full label set.
pub(crate) fn sample(page: &str, metric: &str, labels: &str) -> u64 {
    let prefix = format!("{metric}{{{labels}}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn prometheus_counts_each_method_by_status_code_and_errors_are_logged_once() {
    let data = tempfile::tempdir().unwrap();
    let (mut catalog, addr) = serve("catalog", data.path(), &["--log-format", "json"], &[]).await;
    let url = metrics_url(&catalog);
    let mut client = CatalogServiceClient::new(channel(addr));
    let get = |id: &str| GetProductRequest {
        product_id: id.into(),
    };
    for _ in 0..7 {
        client.get_product(get("mug")).await.unwrap();
    }
    for _ in 0..3 {
        let status = client.get_product(get("no-such-product")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    for _ in 0..2 {
        let status = client.get_product(get("")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(addr));
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    let page = http_get(&url).await;
    let labels = |code: u32| {
        format!(
            "rpc_grpc_status_code=\"{code}\",rpc_method=\"GetProduct\",rpc_service=\"ferrymesh.catalog.v1.CatalogService\",rpc_system=\"grpc\""
        )
    };
    let count = "rpc_server_duration_milliseconds_count";
    assert_eq!(sample(&page, count, &labels(0)), 7, "{page}");
    assert_eq!(sample(&page, count, &labels(5)), 3, "{page}");
    assert_eq!(sample(&page, count, &labels(3)), 2, "{page}");
    assert_eq!(
        sample(
            &page,
            "rpc_server_duration_milliseconds_bucket",
            &format!("{},le=\"+Inf\"", labels(0))
        ),
        7
    );
    assert!(
        page.contains("# TYPE rpc_server_duration_milliseconds histogram"),
        "{page}"
    );
    assert!(!page.contains("grpc.health"), "probes are not counted: {page}");

    // Each refused call is logged once, at INFO, with its message, trace and correlation id.
    let refused: Vec<serde_json::Value> = catalog
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "rpc failed")
        .collect();
    assert_eq!(refused.len(), 5, "{}", catalog.output());
    let not_found = refused.iter().find(|v| v["grpc_status"] == "NotFound").unwrap();
    assert_eq!(not_found["level"], "INFO");
    assert_eq!(not_found["class"], "error");
    assert!(
        not_found["grpc_message"]
            .as_str()
            .unwrap()
            .contains("no-such-product"),
        "{not_found}"
    );
    assert_eq!(
        not_found["trace_id"].as_str().map(str::len),
        Some(32),
        "{not_found}"
    );
    assert!(
        not_found["correlation_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );

    catalog.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(catalog.wait_exit(Duration::from_secs(15)).await.success());
}

#[tokio::test]
async fn a_reservoir_of_one_per_second_keeps_one_or_two_of_a_hundred_traces_whole() {
    let (collector, endpoint) = Collector::start().await;
    let mesh = traced_gateway(endpoint, &["--trace-reservoir", "1", "--trace-rate", "0"]).await;
    let (gateway, secret) = (mesh.gateway, mesh.secret.clone());
    let mut client = CatalogServiceClient::new(channel(gateway));
    // Warm the key cache, then wait for a fresh second's reservoir.
    let mut request = tonic::Request::new(GetProductRequest {
        product_id: "mug".into(),
    });
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    client.get_product(request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before: BTreeSet<Vec<u8>> = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s)| s.trace_id.clone())
        .collect();

    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let (started, first_second) = (Instant::now(), second());
    for _ in 0..100 {
        let mut request = tonic::Request::new(GetProductRequest {
            product_id: "mug".into(),
        });
        request
            .metadata_mut()
            .insert("x-api-key", secret.parse().unwrap());
        client.get_product(request).await.unwrap();
    }
    // The reservoir is per wall-clock second: the calls may touch two
    // seconds even when they take less than one, more on a loaded machine.
    let (took, seconds) = (started.elapsed(), second() - first_second + 1);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let spans: Vec<Exported> = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| !before.contains(&s.trace_id))
        .cloned()
        .collect();
    let get = "ferrymesh.catalog.v1.CatalogService/GetProduct";
    let roots: Vec<&Exported> = spans
        .iter()
        .filter(|e| {
            service_of(e) == "gateway" && e.1.kind == span::SpanKind::Server as i32 && e.1.name == get
        })
        .collect();
    assert!(
        (1..=seconds as usize).contains(&roots.len()),
        "a reservoir of 1/s and rate 0 keeps one trace in each of the {seconds} seconds 100 calls touched ({took:?}), kept {}",
        roots.len()
    );
    if took < Duration::from_secs(1) {
        assert!(
            roots.len() <= 2,
            "100 calls in one second keep 1 or 2 traces, kept {}",
            roots.len()
        );
    }
    // A kept trace is kept whole, and nothing of the others is exported.
    for (_, root) in &roots {
        let members: Vec<(String, i32)> = spans
            .iter()
            .filter(|e| e.1.trace_id == root.trace_id)
            .map(|e| (service_of(e), e.1.kind))
            .collect();
        assert!(
            members.contains(&("gateway".into(), span::SpanKind::Client as i32)),
            "{members:?}"
        );
        assert!(
            members.contains(&("catalog".into(), span::SpanKind::Server as i32)),
            "{members:?}"
        );
    }
    let catalog_spans = spans
        .iter()
        .filter(|e| service_of(e) == "catalog" && e.1.kind == span::SpanKind::Server as i32)
        .count();
    assert_eq!(
        catalog_spans,
        roots.len(),
        "catalog follows the gateway's decision"
    );
}

/// The `rpc failed` lines a process logged, as JSON.
fn failures(process: &crate::support::Process) -> Vec<serde_json::Value> {
    process
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "rpc failed")
        .collect()
}

#[tokio::test]
async fn an_error_is_logged_once_by_the_service_that_decided_it() {
    let (_collector, endpoint) = Collector::start().await;
    let mesh = traced_gateway(endpoint, &[]).await;
    let mut client = CatalogServiceClient::new(channel(mesh.gateway));
    let call = |product: &str, key: &str| {
        let mut request = tonic::Request::new(GetProductRequest {
            product_id: product.into(),
        });
        request.metadata_mut().insert("x-api-key", key.parse().unwrap());
        request
    };
    // Refused by the gateway itself: a key that does not exist.
    let unknown = format!("fmk_{}", "x".repeat(40));
    let status = client.get_product(call("mug", &unknown)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // Refused by catalog, passed on by the gateway.
    let status = client
        .get_product(call("no-such-product", &mesh.secret))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    let deadline = Instant::now() + Duration::from_secs(10);
    let (catalog, gateway) = (&mesh.processes[1], &mesh.processes[2]);
    while failures(catalog).is_empty() || failures(gateway).is_empty() {
        assert!(
            Instant::now() < deadline,
            "gateway:\n{}\ncatalog:\n{}",
            gateway.output(),
            catalog.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second line from the gateway would be written within moments of
    // catalog's: give the log writer time to show one if there is one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_gateway = failures(gateway);
    assert_eq!(
        at_gateway.len(),
        1,
        "only the refusal the gateway decided: {at_gateway:?}"
    );
    assert_eq!(at_gateway[0]["grpc_status"], "Unauthenticated");
    assert_eq!(at_gateway[0]["class"], "error");
    assert!(
        !format!("{}", at_gateway[0]).contains(&unknown),
        "the key is never logged"
    );
    let at_catalog = failures(catalog);
    assert_eq!(at_catalog.len(), 1, "{at_catalog:?}");
    assert_eq!(at_catalog[0]["grpc_status"], "NotFound");
    // The gateway passed it on: one line at DEBUG, not an error of its own.
    assert!(
        !gateway
            .lines()
            .iter()
            .any(|l| l.contains("no-such-product") && l.contains("rpc failed")),
        "{}",
        gateway.output()
    );
}
