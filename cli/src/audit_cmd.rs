//! `ferrymesh audit`: reads every order and what its saga did in each
//! service, through their APIs only, and reports every cross-service
//! invariant that does not hold, naming the order:
//!
//! - CONFIRMED: its reservation COMMITTED with exactly its items, one
//!   payment equal to its total and not refunded, a live shipment, and no
//!   FAILED execution behind it;
//! - FAILED or CANCELLED, once its saga has ended: nothing reserved, nothing
//!   captured (every payment refunded in full), no live shipment;
//! - any order: no saga RUNNING (or a PENDING order with none) for longer
//!   than `--stuck-after` without an event.
//!
//! Orders are read a page at a time and checked a few at once, so it works
//! on 100,000 orders. The exit status is 1 when anything is wrong, 2 when a
//! service cannot be read.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;
use inventory::pb::ferrymesh::inventory::v1 as ipb;
use orders::pb::ferrymesh::orders::v2 as opb;
use payments::pb::ferrymesh::payments::v1 as ppb;
use shipping::pb::ferrymesh::shipping::v1 as spb;
use tonic::transport::Channel;
use workflow::pb::ferrymesh::workflow::v1 as wpb;

/// Flags of `ferrymesh audit`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AuditArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// A saga RUNNING this long without an event is stuck.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "5m")]
    stuck_after: Duration,
    /// Orders checked at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    concurrency: usize,
    /// Added to every default port below (as `up --port-offset`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    port_offset: u16,
    /// Where orders listens [default: http://127.0.0.1:50055].
    #[arg(long, value_name = "URL", env = "FERRYMESH_ORDERS_URL")]
    orders_url: Option<String>,
    /// Where workflow listens [default: http://127.0.0.1:50056].
    #[arg(long, value_name = "URL", env = "FERRYMESH_WORKFLOW_URL")]
    workflow_url: Option<String>,
    /// Where inventory listens [default: http://127.0.0.1:50052].
    #[arg(long, value_name = "URL", env = "FERRYMESH_INVENTORY_URL")]
    inventory_url: Option<String>,
    /// Where payments listens [default: http://127.0.0.1:50053].
    #[arg(long, value_name = "URL", env = "FERRYMESH_PAYMENTS_URL")]
    payments_url: Option<String>,
    /// Where shipping listens [default: http://127.0.0.1:50054].
    #[arg(long, value_name = "URL", env = "FERRYMESH_SHIPPING_URL")]
    shipping_url: Option<String>,
    /// Audit again every DURATION until stopped, serving the last report
    /// on --listen (`/report`, `/metrics`), rather than once.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration)]
    every: Option<Duration>,
    /// Where --every serves the last report.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9190",
        requires = "every"
    )]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    certs: crate::mesh::OperatorCerts,
}

/// One broken invariant.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    order_id: String,
    status: String,
    problem: String,
}

/// The services the audit reads.
#[derive(Clone)]
pub(crate) struct Mesh {
    orders: opb::orders_service_client::OrdersServiceClient<Channel>,
    workflow: wpb::workflow_service_client::WorkflowServiceClient<Channel>,
    inventory: ipb::inventory_service_client::InventoryServiceClient<Channel>,
    payments: ppb::payments_service_client::PaymentsServiceClient<Channel>,
    shipping: spb::shipping_service_client::ShippingServiceClient<Channel>,
}

/// What the saga of one order made, as its history says.
#[derive(Debug, Default)]
struct Made {
    reservation_id: Option<String>,
    payment_id: Option<String>,
    shipment_id: Option<String>,
    last_event_micros: i64,
}

pub(crate) async fn run(args: AuditArgs) -> ExitCode {
    let urls = Urls {
        orders: args.orders_url.clone(),
        workflow: args.workflow_url.clone(),
        inventory: args.inventory_url.clone(),
        payments: args.payments_url.clone(),
        shipping: args.shipping_url.clone(),
    };
    let mesh = match mesh(&urls, args.port_offset, &args.certs.certs) {
        Ok(mesh) => mesh,
        Err(error) => {
            eprintln!("ferrymesh audit: {error}");
            return ExitCode::from(2);
        }
    };
    let stuck_micros = i64::try_from(args.stuck_after.as_micros()).unwrap_or(i64::MAX);
    if let Some(every) = args.every {
        return match crate::audit_serve::run_every(mesh, every, stuck_micros, args.concurrency, args.listen)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("ferrymesh audit: {error}");
                ExitCode::from(2)
            }
        };
    }
    match audit(&mesh, stuck_micros, args.concurrency).await {
        Ok((orders, violations)) => report(orders, &violations, args.json),
        Err(error) => {
            eprintln!("ferrymesh audit: {error}");
            ExitCode::from(2)
        }
    }
}

/// Where each service the audit reads listens, when not at its default port.
#[derive(Debug, Default)]
pub(crate) struct Urls {
    pub(crate) orders: Option<String>,
    pub(crate) workflow: Option<String>,
    pub(crate) inventory: Option<String>,
    pub(crate) payments: Option<String>,
    pub(crate) shipping: Option<String>,
}

/// Clients of the services the audit reads (connected lazily).
pub(crate) fn mesh(urls: &Urls, port_offset: u16, certs: &std::path::Path) -> Result<Mesh, String> {
    let url = |given: &Option<String>, port: u16| {
        given
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", port.saturating_add(port_offset)))
    };
    let connect = |address: String| crate::mesh::connect_lazy(&address, certs);
    Ok(Mesh {
        orders: opb::orders_service_client::OrdersServiceClient::new(connect(url(
            &urls.orders,
            orders::DEFAULT_PORT,
        ))?),
        workflow: wpb::workflow_service_client::WorkflowServiceClient::new(connect(url(
            &urls.workflow,
            workflow::DEFAULT_PORT,
        ))?),
        inventory: ipb::inventory_service_client::InventoryServiceClient::new(connect(url(
            &urls.inventory,
            inventory::DEFAULT_PORT,
        ))?),
        payments: ppb::payments_service_client::PaymentsServiceClient::new(connect(url(
            &urls.payments,
            payments::DEFAULT_PORT,
        ))?),
        shipping: spb::shipping_service_client::ShippingServiceClient::new(connect(url(
            &urls.shipping,
            shipping::DEFAULT_PORT,
        ))?),
    })
}

/// The violations as JSON objects.
pub(crate) fn violations_json(violations: &[Violation]) -> Vec<serde_json::Value> {
    violations
        .iter()
        .map(|v| serde_json::json!({"order_id": v.order_id, "status": v.status, "problem": v.problem}))
        .collect()
}

fn report(orders: u64, violations: &[Violation], json: bool) -> ExitCode {
    if json {
        let listed = violations_json(violations);
        println!(
            "{}",
            serde_json::json!({"orders": orders, "violations": listed, "clean": violations.is_empty()})
        );
    } else {
        for v in violations {
            println!("{} {}: {}", v.order_id, v.status, v.problem);
        }
        println!(
            "audited {orders} orders: {}",
            match violations.len() {
                0 => "every invariant holds".to_string(),
                1 => "1 violation".to_string(),
                n => format!("{n} violations"),
            }
        );
    }
    if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every order, a page at a time; each page's orders checked `concurrency` at once.
pub(crate) async fn audit(
    mesh: &Mesh,
    stuck_micros: i64,
    concurrency: usize,
) -> Result<(u64, Vec<Violation>), String> {
    let mut violations = Vec::new();
    let mut token = String::new();
    let mut orders = 0u64;
    loop {
        let page = patiently(|| {
            let mut client = mesh.orders.clone();
            let request = opb::ListOrdersRequest {
                page_size: 100,
                page_token: token.clone(),
                ..Default::default()
            };
            async move { client.list_orders(request).await }
        })
        .await
        .map_err(|s| format!("cannot list orders: {}", s.message()))?
        .into_inner();
        orders += page.orders.len() as u64;
        let checked: Vec<Result<Vec<Violation>, String>> = futures_util::stream::iter(page.orders)
            .map(|order| check(mesh, order, stuck_micros))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for found in checked {
            violations.extend(found?);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    violations.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    Ok((orders, violations))
}

fn status_name(order: &opb::Order) -> String {
    opb::OrderStatus::try_from(order.status)
        .map(|s| s.as_str_name().trim_start_matches("ORDER_STATUS_").to_string())
        .unwrap_or_else(|_| order.status.to_string())
}

/// The violations of one order.
async fn check(mesh: &Mesh, order: opb::Order, stuck_micros: i64) -> Result<Vec<Violation>, String> {
    let mut problems = Vec::new();
    let execution = describe(mesh, &order.execution_name).await?;
    let made = match &execution {
        Some(_) => history(mesh, &order.execution_name).await?,
        None => Made::default(),
    };
    let now = kit_values::now_micros();
    let running = execution
        .as_ref()
        .is_some_and(|e| e.status == wpb::ExecutionStatus::Running as i32);
    let status = opb::OrderStatus::try_from(order.status).unwrap_or(opb::OrderStatus::Unspecified);
    let created = order.create_time.as_ref().map_or(now, |t| t.seconds * 1_000_000);
    // Stuck: a saga that has done nothing for too long, or never started.
    if running && now - made.last_event_micros > stuck_micros {
        problems.push(format!(
            "its saga is RUNNING with no event for {}s",
            (now - made.last_event_micros) / 1_000_000
        ));
    }
    if execution.is_none() && status == opb::OrderStatus::Pending && now - created > stuck_micros {
        problems.push(format!(
            "PENDING for {}s with no saga",
            (now - created) / 1_000_000
        ));
    }
    match status {
        opb::OrderStatus::Confirmed => {
            confirmed(mesh, &order, execution.as_ref(), &made, &mut problems).await?
        }
        opb::OrderStatus::Failed | opb::OrderStatus::Cancelled if !running => {
            nothing_held(mesh, &made, &mut problems).await?;
        }
        _ => {}
    }
    Ok(problems
        .into_iter()
        .map(|problem| Violation {
            order_id: order.order_id.clone(),
            status: status_name(&order),
            problem,
        })
        .collect())
}

async fn confirmed(
    mesh: &Mesh,
    order: &opb::Order,
    execution: Option<&wpb::Execution>,
    made: &Made,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    if let Some(e) = execution
        && e.status == wpb::ExecutionStatus::Failed as i32
    {
        problems.push(format!(
            "its saga FAILED at {:?} ({}: {})",
            e.current_state, e.error, e.cause
        ));
    }
    match reservation(mesh, made).await? {
        None => problems.push("no stock was reserved for it".into()),
        Some(r) => {
            if r.status != ipb::ReservationStatus::Committed as i32 {
                problems.push(format!(
                    "reservation {} is {}, not COMMITTED",
                    r.reservation_id,
                    reservation_status(r.status)
                ));
            }
            let held: BTreeMap<&str, i64> = r
                .items
                .iter()
                .map(|i| (i.sku.as_str(), i64::from(i.quantity)))
                .collect();
            let ordered: BTreeMap<&str, i64> = order
                .items
                .iter()
                .map(|i| (i.product_id.as_str(), i64::from(i.quantity)))
                .collect();
            if held != ordered {
                problems.push(format!(
                    "reservation {} holds {held:?}, the order has {ordered:?}",
                    r.reservation_id
                ));
            }
        }
    }
    match payment(mesh, made).await? {
        None => problems.push("it was never charged".into()),
        Some(p) => {
            let total = order.totals.first();
            if order.totals.len() != 1 || p.amount.as_ref() != total {
                problems.push(format!(
                    "payment {} is {}, the order's total is {}",
                    p.payment_id,
                    money(p.amount.as_ref()),
                    money(total)
                ));
            }
            if p.refunded_amount
                .as_ref()
                .is_some_and(|m| m.units != 0 || m.nanos != 0)
            {
                problems.push(format!(
                    "payment {} was refunded {}",
                    p.payment_id,
                    money(p.refunded_amount.as_ref())
                ));
            }
        }
    }
    match shipment(mesh, made).await? {
        None => problems.push("it has no shipment".into()),
        Some(s) if s.status != spb::ShipmentStatus::Created as i32 => {
            problems.push(format!("shipment {} is cancelled", s.shipment_id));
        }
        Some(_) => {}
    }
    Ok(())
}

async fn nothing_held(mesh: &Mesh, made: &Made, problems: &mut Vec<String>) -> Result<(), String> {
    if let Some(r) = reservation(mesh, made).await?
        && r.status != ipb::ReservationStatus::Released as i32
    {
        problems.push(format!(
            "reservation {} is {}, not RELEASED",
            r.reservation_id,
            reservation_status(r.status)
        ));
    }
    if let Some(p) = payment(mesh, made).await?
        && p.refunded_amount != p.amount
    {
        problems.push(format!(
            "payment {} of {} was refunded {}",
            p.payment_id,
            money(p.amount.as_ref()),
            money(p.refunded_amount.as_ref())
        ));
    }
    if let Some(s) = shipment(mesh, made).await?
        && s.status != spb::ShipmentStatus::Cancelled as i32
    {
        problems.push(format!("shipment {} is still live", s.shipment_id));
    }
    Ok(())
}

fn reservation_status(status: i32) -> String {
    ipb::ReservationStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("RESERVATION_STATUS_")
                .to_string()
        })
        .unwrap_or_else(|_| status.to_string())
}

fn money(m: Option<&kit_values::pb::ferrymesh::common::v1::Money>) -> String {
    m.map_or_else(
        || "nothing".to_string(),
        |m| format!("{} {}.{:09}", m.currency_code, m.units, m.nanos.unsigned_abs()),
    )
}

/// How long a read that found its service away (restarting, say) is tried again.
const PATIENCE: Duration = Duration::from_secs(30);

/// Calls `call` again while the service is UNAVAILABLE or slow, for up to
/// [`PATIENCE`]: an audit of a live mesh rides out a restart.
async fn patiently<T, F, Fut>(mut call: F) -> Result<tonic::Response<T>, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match call().await {
            Err(s)
                if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                    && started.elapsed() < PATIENCE =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// `Ok(None)` for NOT_FOUND; anything else the service says stops the audit.
fn found<T>(answer: Result<tonic::Response<T>, tonic::Status>, what: &str) -> Result<Option<T>, String> {
    match answer {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(format!("cannot read {what}: {:?}: {}", s.code(), s.message())),
    }
}

async fn describe(mesh: &Mesh, name: &str) -> Result<Option<wpb::Execution>, String> {
    if name.is_empty() {
        return Ok(None);
    }
    let answer = patiently(|| {
        let mut client = mesh.workflow.clone();
        let request = wpb::DescribeExecutionRequest {
            execution_name: name.into(),
        };
        async move { client.describe_execution(request).await }
    })
    .await;
    Ok(found(answer, &format!("execution {name}"))?.and_then(|r| r.execution))
}

/// The ids the saga's tasks were called with, and when it last did anything.
async fn history(mesh: &Mesh, name: &str) -> Result<Made, String> {
    let mut made = Made::default();
    let mut token = String::new();
    loop {
        let page = patiently(|| {
            let mut client = mesh.workflow.clone();
            let request = wpb::GetExecutionHistoryRequest {
                execution_name: name.into(),
                page_size: 100,
                page_token: token.clone(),
            };
            async move { client.get_execution_history(request).await }
        })
        .await
        .map_err(|s| format!("cannot read the history of {name}: {}", s.message()))?
        .into_inner();
        for event in &page.events {
            if let Some(t) = &event.timestamp {
                made.last_event_micros = made
                    .last_event_micros
                    .max(t.seconds * 1_000_000 + i64::from(t.nanos / 1000));
            }
            if event.type_name != "TaskScheduled" {
                continue;
            }
            let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
            let parameter = |field: &str| details["parameters"][field].as_str().map(str::to_string);
            match event.state_name.as_str() {
                "Reserve stock" => {
                    made.reservation_id = made.reservation_id.take().or(parameter("reservation_id"))
                }
                "Charge card" => made.payment_id = made.payment_id.take().or(parameter("payment_id")),
                "Create shipment" => made.shipment_id = made.shipment_id.take().or(parameter("shipment_id")),
                _ => {}
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(made);
        }
        token = page.next_page_token;
    }
}

async fn reservation(mesh: &Mesh, made: &Made) -> Result<Option<ipb::Reservation>, String> {
    let Some(id) = &made.reservation_id else {
        return Ok(None);
    };
    let answer = patiently(|| {
        let mut client = mesh.inventory.clone();
        let request = ipb::GetReservationRequest {
            reservation_id: id.clone(),
        };
        async move { client.get_reservation(request).await }
    })
    .await;
    Ok(found(answer, &format!("reservation {id}"))?.and_then(|r| r.reservation))
}

async fn payment(mesh: &Mesh, made: &Made) -> Result<Option<ppb::Payment>, String> {
    let Some(id) = &made.payment_id else {
        return Ok(None);
    };
    let answer = patiently(|| {
        let mut client = mesh.payments.clone();
        let request = ppb::GetPaymentRequest {
            payment_id: id.clone(),
        };
        async move { client.get_payment(request).await }
    })
    .await;
    Ok(found(answer, &format!("payment {id}"))?.and_then(|r| r.payment))
}

async fn shipment(mesh: &Mesh, made: &Made) -> Result<Option<spb::Shipment>, String> {
    let Some(id) = &made.shipment_id else {
        return Ok(None);
    };
    let answer = patiently(|| {
        let mut client = mesh.shipping.clone();
        let request = spb::GetShipmentRequest {
            shipment_id: id.clone(),
        };
        async move { client.get_shipment(request).await }
    })
    .await;
    Ok(found(answer, &format!("shipment {id}"))?.and_then(|r| r.shipment))
}
