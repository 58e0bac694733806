//! Traces reach an OTLP collector: the catalog's server span continues the
//! caller's trace, is named and attributed by the OpenTelemetry RPC
//! conventions, and the JSON logs carry the same ids.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catalog::pb::ferrymesh::catalog::v1::GetProductRequest;
use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use tokio_stream::wrappers::TcpListenerStream;

use crate::support::serve;

/// A span as received, with the attributes of the resource that sent it.
pub(crate) type Exported = (Vec<KeyValue>, Span);

/// An OTLP/gRPC trace and metrics receiver that keeps what it is sent.
#[derive(Clone, Default)]
pub(crate) struct Collector {
    pub(crate) spans: Arc<Mutex<Vec<Exported>>>,
    /// Metric names, with the `service.name` that sent them.
    pub(crate) metrics: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for resource_metrics in request.into_inner().resource_metrics {
            let resource = resource_metrics
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            let service = match attribute(&resource, "service.name") {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    metrics.push((service.clone(), metric.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((resource.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    pub(crate) async fn start() -> (Collector, String) {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        (collector, endpoint)
    }

    pub(crate) async fn span_named(&self, name: &str, trace_id: &[u8]) -> Exported {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|(_, s)| s.name == name && s.trace_id == trace_id)
                .cloned();
            if let Some(found) = found {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no span {name} exported; got {:?}",
                self.names()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.name.clone())
            .collect()
    }
}

pub(crate) fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

pub(crate) fn string(value: &str) -> Option<any_value::Value> {
    Some(any_value::Value::StringValue(value.to_string()))
}

pub(crate) fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN_ID: &str = "b7ad6b7169203331";

async fn call(client: &mut CatalogServiceClient<tonic::transport::Channel>, product_id: &str) -> tonic::Code {
    let mut request = tonic::Request::new(GetProductRequest {
        product_id: product_id.into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01").parse().unwrap(),
    );
    match client.get_product(request).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn server_spans_continue_the_callers_trace_over_otlp() {
    let (collector, endpoint) = Collector::start().await;
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        // Export quickly instead of every five seconds.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let (mut catalog, addr) = serve(
        "catalog",
        data.path(),
        &[
            "--log-format",
            "json",
            "--log-level",
            "info,kit::rpc_telemetry=debug",
        ],
        &env,
    )
    .await;
    let mut client = CatalogServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    assert_eq!(call(&mut client, "mug").await, tonic::Code::Ok);
    let (resource, span) = collector
        .span_named("ferrymesh.catalog.v1.CatalogService/GetProduct", &hex(TRACE_ID))
        .await;

    assert_eq!(attribute(&resource, "service.name").cloned(), string("catalog"));
    assert_eq!(span.kind, span::SpanKind::Server as i32);
    assert_eq!(
        span.parent_span_id,
        hex(CALLER_SPAN_ID),
        "the caller's span is the parent"
    );
    assert_eq!(attribute(&span.attributes, "rpc.system").cloned(), string("grpc"));
    assert_eq!(
        attribute(&span.attributes, "rpc.service").cloned(),
        string("ferrymesh.catalog.v1.CatalogService")
    );
    assert_eq!(
        attribute(&span.attributes, "rpc.method").cloned(),
        string("GetProduct")
    );
    assert_eq!(
        attribute(&span.attributes, "rpc.grpc.status_code").cloned(),
        Some(any_value::Value::IntValue(0))
    );
    assert_ne!(
        span.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );

    // A caller's mistake is recorded with its code but is not a server error.
    assert_eq!(call(&mut client, "no-such-thing").await, tonic::Code::NotFound);
    let deadline = Instant::now() + Duration::from_secs(20);
    let not_found = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let found = spans.into_iter().map(|(_, s)| s).find(|s| {
            s.name == "ferrymesh.catalog.v1.CatalogService/GetProduct"
                && attribute(&s.attributes, "rpc.grpc.status_code") == Some(&any_value::Value::IntValue(5))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no NOT_FOUND span exported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(
        not_found.status.map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );

    // Health probes are not traced.
    assert!(
        !collector.names().iter().any(|n| n.starts_with("grpc.health")),
        "{:?}",
        collector.names()
    );

    // The JSON log line of the call carries the same trace and its own span.
    let span_id = hex_of(&span.span_id);
    let logged = catalog
        .lines()
        .into_iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|v| v["message"] == "rpc handled" && v["rpc.method"] == "GetProduct")
        .unwrap_or_else(|| panic!("a JSON access log line; output:\n{}", catalog.output()));
    assert_eq!(logged["trace_id"], TRACE_ID);
    assert_eq!(logged["span_id"], span_id.as_str());
    assert_eq!(logged["level"], "DEBUG", "every call's access line is DEBUG");
    assert!(
        logged["correlation_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{logged}"
    );

    catalog.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(catalog.wait_exit(Duration::from_secs(15)).await.success());
}

/// A span's id as hex, as logs print it.
pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_trace_follows_a_call_from_orders_into_the_catalog() {
    use orders::pb::ferrymesh::orders::v2;

    let (collector, endpoint) = Collector::start().await;
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let (mut catalog, catalog_addr) = serve(
        "catalog",
        data.path(),
        &[
            "--log-format",
            "json",
            "--log-level",
            "info,kit::rpc_telemetry=debug",
        ],
        &env,
    )
    .await;
    let catalog_url = format!("http://{catalog_addr}");
    // orders tokenizes the card with payments; no workflow runs here.
    let (_payments, payments_addr) = serve("payments", data.path(), &[], &env).await;
    let payments_url = format!("http://{payments_addr}");
    let (mut orders, orders_addr) = serve(
        "orders",
        data.path(),
        &[
            "--log-format",
            "json",
            "--catalog-url",
            &catalog_url,
            "--payments-url",
            &payments_url,
            "--workflow-url",
            "http://127.0.0.1:9",
        ],
        &env,
    )
    .await;

    let mut client = v2::orders_service_client::OrdersServiceClient::connect(format!("http://{orders_addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(v2::PlaceOrderRequest {
        idempotency_key: "traced-1".into(),
        customer_email: "ada@example.com".into(),
        items: vec![v2::PlaceOrderItem {
            product_id: "mug".into(),
            quantity: 1,
        }],
        shipping_address: Some(kit_values::pb::ferrymesh::common::v1::Address {
            recipient_name: "Ada".into(),
            street_lines: vec!["1 Main St".into()],
            city: "Springfield".into(),
            region: String::new(),
            postal_code: "12345".into(),
            country_code: "US".into(),
        }),
        shipping_option: v2::ShippingOption::Standard as i32,
        card: Some(kit_values::pb::ferrymesh::common::v1::PaymentCard {
            number: "4242424242424242".into(),
            expiry_month: 12,
            expiry_year: 2099,
            cvc: "123".into(),
            holder_name: String::new(),
        }),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01").parse().unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-correlation-id", "checkout-7".parse().unwrap());
    client.place_order(request).await.expect("order placed");

    let trace = hex(TRACE_ID);
    let (orders_resource, place) = collector
        .span_named("ferrymesh.orders.v2.OrdersService/PlaceOrder", &trace)
        .await;
    let get_product = "ferrymesh.catalog.v1.CatalogService/GetProduct";
    let deadline = Instant::now() + Duration::from_secs(20);
    let (client_side, server_side) = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let of_kind = |kind: span::SpanKind| {
            spans
                .iter()
                .find(|(_, s)| s.name == get_product && s.trace_id == trace && s.kind == kind as i32)
                .cloned()
        };
        if let (Some(c), Some(s)) = (of_kind(span::SpanKind::Client), of_kind(span::SpanKind::Server)) {
            break (c, s);
        }
        assert!(
            Instant::now() < deadline,
            "no client and server GetProduct spans; got {:?}",
            collector.names()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // caller -> orders (server) -> orders calling catalog (client) -> catalog (server)
    assert_eq!(
        attribute(&orders_resource, "service.name").cloned(),
        string("orders")
    );
    assert_eq!(place.parent_span_id, hex(CALLER_SPAN_ID));
    assert_eq!(
        attribute(&client_side.0, "service.name").cloned(),
        string("orders")
    );
    assert_eq!(
        client_side.1.parent_span_id, place.span_id,
        "the outgoing call is a child of the handler's span"
    );
    assert_eq!(
        attribute(&client_side.1.attributes, "rpc.grpc.status_code").cloned(),
        Some(any_value::Value::IntValue(0))
    );
    assert_eq!(
        attribute(&server_side.0, "service.name").cloned(),
        string("catalog")
    );
    assert_eq!(
        server_side.1.parent_span_id, client_side.1.span_id,
        "the catalog continues the trace it was sent"
    );

    // The correlation id the caller chose reaches the catalog's logs.
    let logged = catalog
        .lines()
        .into_iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|v| v["message"] == "rpc handled" && v["rpc.method"] == "GetProduct")
        .unwrap_or_else(|| panic!("catalog logged the call; output:\n{}", catalog.output()));
    assert_eq!(logged["correlation_id"], "checkout-7");
    assert_eq!(logged["trace_id"], TRACE_ID);
    assert_eq!(logged["span_id"], hex_of(&server_side.1.span_id).as_str());

    for process in [&mut orders, &mut catalog] {
        process.signal(nix::sys::signal::Signal::SIGTERM);
        assert!(process.wait_exit(Duration::from_secs(15)).await.success());
    }
}

/// apikeys, catalog and a gateway in front of catalog, catalog and the
/// gateway exporting to `endpoint`, and a key (id `tia-1`) on a plan
/// without limits.
pub(crate) struct TracedGateway {
    pub(crate) gateway: std::net::SocketAddr,
    pub(crate) catalog: std::net::SocketAddr,
    pub(crate) secret: String,
    /// apikeys, catalog and the gateway, in that order.
    pub(crate) processes: Vec<crate::support::Process>,
    _data: tempfile::TempDir,
}

pub(crate) async fn traced_gateway(endpoint: String, gateway_flags: &[&str]) -> TracedGateway {
    use apikeys::pb::ferrymesh::apikeys::v1 as apb;

    let data = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    let token = "tracing-test-admin-token";
    let (apikeys, apikeys_addr) = serve("apikeys", data.path(), &["--admin-token", token], &[]).await;
    // catalog runs with the default rule: it follows the gateway's decision.
    let (catalog, catalog_addr) = serve("catalog", data.path(), &["--log-format", "json"], &env).await;
    let file = data.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "public = [\"ferrymesh.catalog.v1.*\"]\n[stages.prod.routes]\n\"ferrymesh.catalog.v1\" = \"http://{catalog_addr}\"\n"
        ),
    )
    .unwrap();
    let apikeys_url = format!("http://{apikeys_addr}");
    let mut flags = vec![
        "--log-format",
        "json",
        "--config",
        file.to_str().unwrap(),
        "--apikeys-url",
        &apikeys_url,
        "--admin-token",
        token,
    ];
    flags.extend_from_slice(gateway_flags);
    let (gateway, gateway_addr) = serve("gateway", data.path(), &flags, &env).await;
    let mut admin = apb::api_keys_service_client::ApiKeysServiceClient::connect(apikeys_url.clone())
        .await
        .unwrap();
    fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }
    // No limits: the free plan would throttle a hundred calls a second.
    admin
        .create_usage_plan(bearer(
            apb::CreateUsagePlanRequest {
                plan: Some(apb::UsagePlan {
                    plan_id: "unmetered".into(),
                    name: "unmetered".into(),
                    ..Default::default()
                }),
            },
            token,
        ))
        .await
        .unwrap();
    admin
        .create_developer(bearer(
            apb::CreateDeveloperRequest {
                developer_id: "tia".into(),
                email: "tia@example.com".into(),
                name: "Tia".into(),
                plan_id: "unmetered".into(),
            },
            token,
        ))
        .await
        .unwrap();
    let secret = admin
        .create_api_key(bearer(
            apb::CreateApiKeyRequest {
                key_id: "tia-1".into(),
                developer_id: "tia".into(),
                name: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    TracedGateway {
        gateway: gateway_addr,
        catalog: catalog_addr,
        secret,
        processes: vec![apikeys, catalog, gateway],
        _data: data,
    }
}

#[tokio::test]
async fn the_gateway_starts_the_trace_and_names_the_key_and_the_stage() {
    let (collector, endpoint) = Collector::start().await;
    let mesh = traced_gateway(endpoint, &[]).await;
    let (gateway_addr, catalog_addr, secret) = (mesh.gateway, mesh.catalog, mesh.secret.clone());

    // No traceparent: the gateway's span is the root of the trace.
    let mut client = CatalogServiceClient::connect(format!("http://{gateway_addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(GetProductRequest {
        product_id: "mug".into(),
    });
    request
        .metadata_mut()
        .insert("x-api-key", secret.parse().unwrap());
    client.get_product(request).await.unwrap();

    let name = "ferrymesh.catalog.v1.CatalogService/GetProduct";
    let deadline = Instant::now() + Duration::from_secs(20);
    let (gateway_span, catalog_span) = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let of_service = |service: &str| {
            spans
                .iter()
                .find(|(resource, s)| {
                    s.name == name
                        && s.kind == span::SpanKind::Server as i32
                        && attribute(resource, "service.name") == string(service).as_ref()
                })
                .map(|(_, s)| s.clone())
        };
        if let (Some(g), Some(c)) = (of_service("gateway"), of_service("catalog")) {
            break (g, c);
        }
        assert!(Instant::now() < deadline, "spans: {:?}", collector.names());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        gateway_span.parent_span_id.is_empty(),
        "the gateway's span is the root"
    );
    assert_eq!(gateway_span.kind, span::SpanKind::Server as i32);
    assert_eq!(
        attribute(&gateway_span.attributes, "ferrymesh.api_key_id"),
        string("tia-1").as_ref()
    );
    assert_eq!(
        attribute(&gateway_span.attributes, "ferrymesh.stage"),
        string("prod").as_ref()
    );
    let attributes = format!("{:?}", gateway_span.attributes);
    assert!(!attributes.contains(&secret), "the key itself is never recorded");
    assert_eq!(
        catalog_span.trace_id, gateway_span.trace_id,
        "one trace through the gateway"
    );
    assert_eq!(
        attribute(&gateway_span.attributes, "ferrymesh.class"),
        string("ok").as_ref()
    );
    // gateway (server) -> gateway's call upstream (client) -> catalog (server)
    let spans = collector.spans.lock().unwrap().clone();
    let forward = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.span_id == catalog_span.parent_span_id)
        .unwrap_or_else(|| panic!("catalog's parent span was exported: {:?}", collector.names()));
    assert_eq!(forward.kind, span::SpanKind::Client as i32);
    assert_eq!(forward.name, name);
    assert_eq!(
        forward.parent_span_id, gateway_span.span_id,
        "the gateway's call upstream is a child of its server span"
    );
    assert_eq!(
        attribute(&forward.attributes, "server.address"),
        string(&catalog_addr.to_string()).as_ref()
    );
}
