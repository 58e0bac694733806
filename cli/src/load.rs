//! `ferrymesh load place-order`: an open-loop load generator. Orders arrive
//! at a fixed rate whatever the mesh's speed (a closed loop would slow down
//! with the mesh and hide its queueing); each is followed with WatchOrder to
//! its final status. Prints a live progress line, then completed orders per
//! second by status, saga latency percentiles (HDR histogram) and errors by
//! status code.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use kit_values::pb::ferrymesh::common::v1::{Address, PaymentCard};
use orders::pb::ferrymesh::orders::v2 as pb;
use orders::pb::ferrymesh::orders::v2::orders_service_client::OrdersServiceClient;
use serde_json::json;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use workflow::pb::ferrymesh::workflow::v1::DescribeExecutionRequest;
use workflow::pb::ferrymesh::workflow::v1::workflow_service_client::WorkflowServiceClient;

/// Flags of `ferrymesh load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// Place orders at a fixed rate and follow each to CONFIRMED or FAILED.
    PlaceOrder(PlaceOrderArgs),
    /// The engine alone: start executions of a machine of Pass states as
    /// fast as workflow takes them and count state transitions per second.
    Transitions(TransitionsArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct TransitionsArgs {
    /// How many executions to start.
    #[arg(long, default_value_t = 2000)]
    executions: u32,
    /// How many StartExecution calls at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Pass states per execution.
    #[arg(long, default_value_t = 10)]
    states: u32,
    /// Where workflow listens.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:50056",
        env = "FERRYMESH_WORKFLOW_URL"
    )]
    workflow_url: String,
    #[command(flatten)]
    certs: crate::mesh::OperatorCerts,
}

#[derive(Debug, Clone, clap::Args)]
struct PlaceOrderArgs {
    /// Orders per second.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long to send, e.g. 30s.
    #[arg(long, value_parser = kit::duration::parse_duration, default_value = "10s")]
    duration: Duration,
    /// How long to wait for orders still in flight after sending stops.
    #[arg(long, value_parser = kit::duration::parse_duration, default_value = "30s")]
    drain: Duration,
    /// Where orders listens.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:50055",
        env = "FERRYMESH_ORDERS_URL"
    )]
    orders_url: String,
    /// Where inventory listens, to restock before the run.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:50052",
        env = "FERRYMESH_INVENTORY_URL"
    )]
    inventory_url: String,
    /// Do not receive stock before the run (orders then fail once stock runs out).
    #[arg(long)]
    no_restock: bool,
    /// Where workflow listens, to count state transitions afterwards.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:50056",
        env = "FERRYMESH_WORKFLOW_URL"
    )]
    workflow_url: String,
    /// Which cards to pay with: all good, or a mix with declines and
    /// transient failures (1 in 10 each) and unshippable addresses (1 in 20).
    #[arg(long, value_enum, default_value = "good")]
    cards: Cards,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    certs: crate::mesh::OperatorCerts,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum Cards {
    Good,
    Mixed,
}

/// What happened to the orders, shared by the tasks that follow them.
#[derive(Default)]
struct Tally {
    sent: u64,
    confirmed: u64,
    failed: u64,
    cancelled: u64,
    unfinished: u64,
    errors: BTreeMap<String, u64>,
    executions: Vec<String>,
}

const PRODUCTS: &[&str] = &["mug", "canvas-tote", "air-plant", "tank-top", "sunglasses"];

pub(crate) async fn run(args: LoadArgs) -> ExitCode {
    let args = match args.scenario {
        Scenario::PlaceOrder(args) => args,
        Scenario::Transitions(args) => return transitions(args).await,
    };
    if args.rate == 0 || args.rate > 100_000 {
        eprintln!("ferrymesh load: --rate must be 1 to 100000 orders per second");
        return ExitCode::from(2);
    }
    let channel = match crate::mesh::connect_lazy(&args.orders_url, &args.certs.certs) {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("ferrymesh load: {e}");
            return ExitCode::from(2);
        }
    };
    let client = OrdersServiceClient::new(channel);
    let tally = Arc::new(Mutex::new(Tally::default()));
    // Microseconds from 1 µs to an hour, three significant digits.
    let histogram = match Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => Arc::new(Mutex::new(h)),
        Err(e) => {
            eprintln!("ferrymesh load: cannot make a histogram: {e}");
            return ExitCode::FAILURE;
        }
    };
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let started = Instant::now();
    let total = (args.duration.as_secs_f64() * f64::from(args.rate)).round() as u64;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    if !args.no_restock
        && let Err(e) = restock(&args.inventory_url, &args.certs.certs, &run_id, total).await
    {
        eprintln!("ferrymesh load: could not restock at {}: {e}", args.inventory_url);
        return ExitCode::FAILURE;
    }
    let mut tasks = tokio::task::JoinSet::new();
    let progress = tokio::spawn(progress_line(tally.clone(), started, args.json));
    for n in 0..total {
        // Open loop: the n-th order leaves at n × period, however busy the mesh is.
        let due = started + period.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        let tally = tally.clone();
        let histogram = histogram.clone();
        let request = order_request(&run_id, n, args.cards);
        tasks.spawn(async move { follow(client, request, tally, histogram).await });
    }
    let sending = started.elapsed();
    let drained =
        tokio::time::timeout(args.drain, async { while tasks.join_next().await.is_some() {} }).await;
    let elapsed = started.elapsed();
    progress.abort();
    if drained.is_err() {
        let left = tasks.len() as u64;
        tasks.abort_all();
        if let Ok(mut t) = tally.lock() {
            t.unfinished += left;
        }
    }
    let transitions = count_transitions(&args.workflow_url, &args.certs.certs, &tally).await;
    report(&args, &tally, &histogram, sending, elapsed, transitions)
}

fn order_request(run_id: &str, n: u64, cards: Cards) -> pb::PlaceOrderRequest {
    let (number, country) = match (cards, n % 20) {
        (Cards::Mixed, 3 | 13) => ("4000000000000002", "US"),
        (Cards::Mixed, 7 | 17) => ("4000000000000119", "US"),
        (Cards::Mixed, 11) => ("4242424242424242", "AQ"),
        _ => ("4242424242424242", "US"),
    };
    let product = PRODUCTS[(n as usize) % PRODUCTS.len()];
    pb::PlaceOrderRequest {
        idempotency_key: format!("load-{run_id}-{n}"),
        customer_email: format!("load-{}@example.com", n % 1000),
        items: vec![pb::PlaceOrderItem {
            product_id: product.into(),
            quantity: 1,
        }],
        shipping_address: Some(Address {
            recipient_name: "Load Test".into(),
            street_lines: vec!["1 Main St".into()],
            city: "Springfield".into(),
            region: String::new(),
            postal_code: "12345".into(),
            country_code: country.into(),
        }),
        shipping_option: pb::ShippingOption::Standard as i32,
        card: Some(PaymentCard {
            number: number.into(),
            expiry_month: 12,
            expiry_year: 2099,
            cvc: "123".into(),
            holder_name: "Load Test".into(),
        }),
    }
}

/// Receives enough of every product the run orders, so stock never runs out.
async fn restock(url: &str, certs: &std::path::Path, run_id: &str, orders: u64) -> Result<(), String> {
    use inventory::pb::ferrymesh::inventory::v1::inventory_service_client::InventoryServiceClient;
    use inventory::pb::ferrymesh::inventory::v1::{ReceiveStockRequest, ReservationItem};
    let channel = crate::mesh::connect(url, certs).await?;
    let mut client = InventoryServiceClient::new(channel);
    let per_product = orders / PRODUCTS.len() as u64 + 1;
    let mut left = per_product;
    let mut n = 0;
    while left > 0 {
        let quantity = left.min(10_000);
        client
            .receive_stock(ReceiveStockRequest {
                receipt_id: format!("load-{run_id}-{n}"),
                items: PRODUCTS
                    .iter()
                    .map(|sku| ReservationItem {
                        sku: sku.to_string(),
                        quantity: i32::try_from(quantity).unwrap_or(10_000),
                    })
                    .collect(),
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        left -= quantity;
        n += 1;
    }
    Ok(())
}

/// Places one order and watches it to its final status.
async fn follow(
    mut client: OrdersServiceClient<Channel>,
    request: pb::PlaceOrderRequest,
    tally: Arc<Mutex<Tally>>,
    histogram: Arc<Mutex<Histogram<u64>>>,
) {
    let sent = Instant::now();
    if let Ok(mut t) = tally.lock() {
        t.sent += 1;
    }
    let error = |tally: &Mutex<Tally>, code: String| {
        if let Ok(mut t) = tally.lock() {
            *t.errors.entry(code).or_default() += 1;
        }
    };
    let order = match client.place_order(request).await {
        Ok(r) => r.into_inner().order.unwrap_or_default(),
        Err(status) => return error(&tally, format!("{:?}", status.code())),
    };
    let mut status = order.status;
    if status == pb::OrderStatus::Pending as i32 {
        let watched = client
            .watch_order(pb::WatchOrderRequest {
                order_id: order.order_id.clone(),
            })
            .await;
        let mut stream = match watched {
            Ok(s) => s.into_inner(),
            Err(s) => return error(&tally, format!("{:?}", s.code())),
        };
        while let Some(update) = stream.next().await {
            match update {
                Ok(u) => {
                    status = u.order.map(|o| o.status).unwrap_or(status);
                    if status != pb::OrderStatus::Pending as i32 {
                        break;
                    }
                }
                Err(s) => return error(&tally, format!("{:?}", s.code())),
            }
        }
    }
    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Ok(mut h) = histogram.lock() {
        let _ = h.record(micros.max(1));
    }
    if let Ok(mut t) = tally.lock() {
        match pb::OrderStatus::try_from(status) {
            Ok(pb::OrderStatus::Confirmed) => t.confirmed += 1,
            Ok(pb::OrderStatus::Failed) => t.failed += 1,
            Ok(pb::OrderStatus::Cancelled) => t.cancelled += 1,
            _ => t.unfinished += 1,
        }
        t.executions.push(order.execution_name);
    }
}

async fn progress_line(tally: Arc<Mutex<Tally>>, started: Instant, quiet: bool) {
    if quiet {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(t) = tally.lock() {
            let done = t.confirmed + t.failed + t.cancelled;
            let errors: u64 = t.errors.values().sum();
            eprint!(
                "\r{:>5.1}s  sent {:>7}  done {:>7}  confirmed {:>7}  failed {:>6}  errors {:>5}  in flight {:>6}   ",
                started.elapsed().as_secs_f64(),
                t.sent,
                done,
                t.confirmed,
                t.failed,
                errors,
                t.sent.saturating_sub(done + errors)
            );
        }
    }
}

/// The state transitions of the sagas that ran, read from workflow after the run.
async fn count_transitions(url: &str, certs: &std::path::Path, tally: &Mutex<Tally>) -> Option<i64> {
    let names: Vec<String> = tally.lock().ok()?.executions.clone();
    let channel = crate::mesh::connect(url, certs).await.ok()?;
    let client = WorkflowServiceClient::new(channel);
    let mut total = 0i64;
    for chunk in names.chunks(64) {
        let calls = chunk.iter().map(|name| {
            let mut client = client.clone();
            let name = name.clone();
            async move {
                client
                    .describe_execution(DescribeExecutionRequest { execution_name: name })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().execution)
                    .map(|e| e.transition_count)
                    .unwrap_or(0)
            }
        });
        total += futures_util::future::join_all(calls)
            .await
            .into_iter()
            .sum::<i64>();
    }
    Some(total)
}

fn report(
    args: &PlaceOrderArgs,
    tally: &Mutex<Tally>,
    histogram: &Mutex<Histogram<u64>>,
    sending: Duration,
    elapsed: Duration,
    transitions: Option<i64>,
) -> ExitCode {
    let (Ok(t), Ok(h)) = (tally.lock(), histogram.lock()) else {
        return ExitCode::FAILURE;
    };
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let done = t.confirmed + t.failed + t.cancelled;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let errors: u64 = t.errors.values().sum();
    let result = json!({
        "rate": args.rate,
        "duration_seconds": args.duration.as_secs_f64(),
        "sending_seconds": sending.as_secs_f64(),
        "elapsed_seconds": seconds,
        "sent": t.sent,
        "completed": done,
        "completed_per_second": done as f64 / seconds,
        "confirmed": t.confirmed,
        "failed": t.failed,
        "cancelled": t.cancelled,
        "unfinished": t.unfinished,
        "errors": t.errors,
        "latency_ms": {"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": h.max() as f64 / 1000.0},
        "state_transitions": transitions,
        "state_transitions_per_second": transitions.map(|n| n as f64 / seconds),
    });
    if args.json {
        println!("{result}");
    } else {
        eprintln!();
        println!(
            "ferrymesh load place-order: {} orders/s for {:.1}s (open loop)",
            args.rate,
            args.duration.as_secs_f64()
        );
        println!("  sent        {:>8}   in {:.1}s", t.sent, sending.as_secs_f64());
        println!(
            "  completed   {:>8}   {:.1}/s over {:.1}s",
            done,
            done as f64 / seconds,
            seconds
        );
        println!(
            "    CONFIRMED {:>8}   {:.1}/s",
            t.confirmed,
            t.confirmed as f64 / seconds
        );
        println!(
            "    FAILED    {:>8}   {:.1}/s",
            t.failed,
            t.failed as f64 / seconds
        );
        if t.cancelled > 0 {
            println!("    CANCELLED {:>8}", t.cancelled);
        }
        if t.unfinished > 0 {
            println!(
                "  unfinished  {:>8}   (still PENDING when the drain ran out)",
                t.unfinished
            );
        }
        println!(
            "  saga latency  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            h.max() as f64 / 1000.0
        );
        if let Some(n) = transitions {
            println!("  state transitions {n}  ({:.0}/s)", n as f64 / seconds);
        }
        if errors == 0 {
            println!("  errors      0");
        } else {
            println!("  errors      {errors}");
            for (code, n) in &t.errors {
                println!("    {code:<20} {n}");
            }
        }
    }
    if errors == 0 && t.unfinished == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Starts executions of an all-Pass machine and measures transitions per second.
async fn transitions(args: TransitionsArgs) -> ExitCode {
    use workflow::pb::ferrymesh::workflow::v1 as wpb;
    let channel = match crate::mesh::connect_lazy(&args.workflow_url, &args.certs.certs) {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("ferrymesh load: {e}");
            return ExitCode::from(2);
        }
    };
    let client = WorkflowServiceClient::new(channel);
    let states = args.states.clamp(1, 1000);
    let mut machine = serde_json::Map::new();
    for i in 0..states {
        let mut state = json!({"Type": "Pass", "Result": {"step": i}, "ResultPath": format!("$.s{i}")});
        if i + 1 == states {
            state["End"] = json!(true);
        } else {
            state["Next"] = json!(format!("S{}", i + 1));
        }
        machine.insert(format!("S{i}"), state);
    }
    let name = format!("bench-passes-{states}");
    let definition = json!({"StartAt": "S0", "States": machine}).to_string();
    if let Err(s) = client
        .clone()
        .create_state_machine(wpb::CreateStateMachineRequest {
            name: name.clone(),
            definition,
            description: "ferrymesh load transitions".into(),
        })
        .await
    {
        eprintln!(
            "ferrymesh load: cannot create {name}: {:?}: {}",
            s.code(),
            s.message()
        );
        return ExitCode::FAILURE;
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let names: Vec<String> = (0..args.executions)
        .map(|n| format!("t{}-{n}", &run_id[..12]))
        .collect();
    let mut errors = 0u64;
    for chunk in names.chunks(args.concurrency.max(1)) {
        let calls = chunk.iter().map(|execution| {
            let mut client = client.clone();
            let request = wpb::StartExecutionRequest {
                state_machine_name: name.clone(),
                execution_name: execution.clone(),
                input: "{}".into(),
                state_machine_version: 0,
            };
            async move { client.start_execution(request).await.is_ok() }
        });
        errors += futures_util::future::join_all(calls)
            .await
            .into_iter()
            .filter(|ok| !ok)
            .count() as u64;
    }
    let sent = started.elapsed();
    // Done when the last one started has finished, and none is still running.
    let mut transitions = 0i64;
    let mut pending: Vec<String> = names;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for chunk in pending.chunks(64) {
            let calls = chunk.iter().map(|execution| {
                let mut client = client.clone();
                let execution = execution.clone();
                async move {
                    let e = client
                        .describe_execution(wpb::DescribeExecutionRequest {
                            execution_name: execution.clone(),
                        })
                        .await
                        .ok()
                        .and_then(|r| r.into_inner().execution);
                    (execution, e)
                }
            });
            for (execution, e) in futures_util::future::join_all(calls).await {
                match e {
                    Some(e) if e.status != wpb::ExecutionStatus::Running as i32 => {
                        transitions += e.transition_count
                    }
                    Some(_) => still.push(execution),
                    None => errors += 1,
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "ferrymesh load transitions: {} executions of {states} Pass states: {transitions} transitions in {elapsed:.2}s = {:.0}/s \
         (starts took {:.2}s; {} still running, {errors} errors)",
        args.executions,
        transitions as f64 / elapsed,
        sent.as_secs_f64(),
        pending.len()
    );
    if pending.is_empty() && errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
