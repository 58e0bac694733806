//! Chaos, as a test: 300 orders (good, declined, short of funds and flaky
//! cards; addresses shipping serves and one it does not) through the
//! gateway of `ferrymesh up`, while every participant (catalog, inventory,
//! payments, shipping, orders, workflow, apikeys, the gateway) is killed
//! with SIGKILL at random moments and `up` restarts it. A client retries
//! each refused call with the same idempotency key, as a client should.
//! Afterwards: every order placed once (none lost, none twice), each with
//! the outcome its card and address call for, at most one payment per
//! order, and `ferrymesh audit` finds nothing wrong. On SQLite and on
//! PostgreSQL. `bench/chaos.sh` is the long run of the same code
//! (`FERRYMESH_CHAOS_ORDERS`, `FERRYMESH_CHAOS_RATE`), where the PostgreSQL
//! run also crashes and restarts a server of its own mid-run
//! (`FERRYMESH_CHAOS_OWN_POSTGRES=1`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use orders::pb::ferrymesh::orders::v2 as opb;
use rand::Rng;
use sea_orm::EntityTrait;

use crate::fixture::Fixture;
use crate::support::mesh::{DECLINED, FLAKY, GOOD, NO_FUNDS};
use crate::support::{ferrymesh, pid_of};

/// How many orders, how fast: 300 at 20 a second unless the environment says.
fn scale() -> (usize, f64) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    (
        var("FERRYMESH_CHAOS_ORDERS").unwrap_or(300.0) as usize,
        var("FERRYMESH_CHAOS_RATE").unwrap_or(20.0),
    )
}

/// Each participant (its port from the harness).
const VICTIMS: &[&str] = &[
    "catalog",
    "inventory",
    "payments",
    "shipping",
    "orders",
    "workflow",
    "apikeys",
    "gateway",
];

/// The card and country of order `i`, and the status it must end in.
fn mix(i: usize) -> (&'static str, &'static str, opb::OrderStatus) {
    match i % 10 {
        0 => (DECLINED, "GB", opb::OrderStatus::Failed),
        1 => (NO_FUNDS, "US", opb::OrderStatus::Failed),
        2 => (FLAKY, "GB", opb::OrderStatus::Confirmed),
        3 => (GOOD, "AQ", opb::OrderStatus::Failed),
        _ => (
            GOOD,
            if i.is_multiple_of(2) { "GB" } else { "US" },
            opb::OrderStatus::Confirmed,
        ),
    }
}

/// Places order `i` through the gateway, retrying with the same key until
/// it is accepted; its order id.
async fn place(f: &Fixture, secret: &str, i: usize) -> String {
    let (card, country, _) = mix(i);
    let item = if i.is_multiple_of(3) { "canvas-tote" } else { "mug" };
    let started = Instant::now();
    loop {
        let mut request = crate::support::mesh::order_request(
            &format!("chaos-{i}"),
            &[(item, 1 + (i % 2) as i32)],
            card,
            country,
        );
        request.customer_email = String::new();
        let channel = crate::support::mesh::channel_as(f.gateway.port(), None);
        let answer = opb::orders_service_client::OrdersServiceClient::new(channel)
            .place_order(crate::gateway::with_key(request, secret))
            .await;
        match answer {
            Ok(placed) => return placed.into_inner().order.unwrap().order_id,
            Err(status) => {
                assert!(
                    !matches!(
                        status.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::AlreadyExists
                            | tonic::Code::PermissionDenied
                    ),
                    "order {i}: a refusal no retry fixes: {status:?}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "order {i} never accepted: {status:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_participant_killed_at_random_and_every_order_ends_right() {
    chaos(None, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_participant_killed_at_random_on_postgres_and_every_order_ends_right() {
    let own = std::env::var("FERRYMESH_CHAOS_OWN_POSTGRES")
        .is_ok_and(|v| v == "1")
        .then(crate::own_postgres::OwnPostgres::start);
    let server = own
        .as_ref()
        .map_or_else(kit_testing::postgres_admin_url, |o| o.url());
    let prefix = format!("fm_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    chaos(Some((&server, &prefix)), own.as_ref()).await;
    let admin = sea_orm::Database::connect(&server).await.unwrap();
    for service in VICTIMS.iter().filter(|s| **s != "gateway") {
        sea_orm::ConnectionTrait::execute_unprepared(
            &admin,
            &format!("DROP DATABASE IF EXISTS \"{prefix}_{service}\" WITH (FORCE)"),
        )
        .await
        .unwrap();
    }
}

/// The run, on SQLite files or (`postgres`: the server and a prefix) on
/// PostgreSQL; `own`, a server of the run's own to crash halfway.
async fn chaos(postgres: Option<(&str, &str)>, own: Option<&crate::own_postgres::OwnPostgres>) {
    let (orders, rate) = scale();
    let f = match postgres {
        None => Fixture::up(false).await,
        Some((server, prefix)) => {
            Fixture::up_with(&["--postgres", server, "--postgres-prefix", prefix]).await
        }
    };
    f.plan("roomy", 5000.0, 5000, 0).await;
    let dev = f.developer("chaos", "roomy").await;
    // Enough stock for every order, so only cards and addresses decide.
    f.mesh
        .inventory
        .clone()
        .receive_stock(inventory::pb::ferrymesh::inventory::v1::ReceiveStockRequest {
            receipt_id: "chaos-stock".into(),
            items: ["mug", "canvas-tote"]
                .into_iter()
                .map(|sku| inventory::pb::ferrymesh::inventory::v1::ReservationItem {
                    sku: sku.into(),
                    quantity: i32::try_from((orders * 2 + 10).min(10_000)).unwrap(),
                })
                .collect(),
        })
        .await
        .unwrap();
    let offset = f.mesh.offset;

    // The killer: every participant in a random order, one every 1.5 s (or
    // more on a long run: two rounds over the time orders come in, so each
    // service has run a while between kills, as `up`'s restart backoff
    // expects), round after round while orders come in, at least two.
    let every = Duration::from_secs_f64((orders as f64 / rate / (2 * VICTIMS.len()) as f64).max(1.5));
    let placing_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = placing_done.clone();
    let killer = tokio::spawn(async move {
        let mut killed = Vec::new();
        let mut round = 0;
        let twice = |killed: &[&str]| {
            VICTIMS
                .iter()
                .all(|name| killed.iter().filter(|k| *k == name).count() >= 2)
        };
        while (round < 2 || !twice(&killed) || !done.load(std::sync::atomic::Ordering::Relaxed)) && round < 12
        {
            let mut order: Vec<&&str> = VICTIMS.iter().collect();
            {
                let mut rng = rand::rng();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
            }
            for name in order {
                tokio::time::sleep(every).await;
                let listen = format!("127.0.0.1:{}", crate::support::port(name, offset));
                // One still waiting out `up`'s restart backoff is passed
                // over this round (killing it the moment it is back would
                // keep it down); the rounds go on until each fell twice.
                if let Some(pid) = pid_of(&["serve", name, &listen]) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    killed.push(*name);
                }
            }
            round += 1;
        }
        killed
    });
    // A server of our own crashes once, a third of the way in.
    let crash = async {
        if let Some(own) = own {
            tokio::time::sleep(Duration::from_secs_f64(orders as f64 / rate / 3.0)).await;
            tokio::task::block_in_place(|| own.crash_and_restart());
            eprintln!("chaos: PostgreSQL crashed and restarted");
        }
    };

    // The orders at the rate, each retried until accepted.
    let placing = futures_util::future::join_all((0..orders).map(|i| {
        let (f, secret) = (&f, &dev.secret);
        async move {
            tokio::time::sleep(Duration::from_secs_f64(i as f64 / rate)).await;
            (i, place(f, secret, i).await)
        }
    }));
    let (placed, ()) = tokio::join!(placing, crash);
    placing_done.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed = killer.await.unwrap();
    for name in VICTIMS {
        let times = killed.iter().filter(|k| *k == name).count();
        assert!(times >= 2, "{name} was killed {times} times: {killed:?}");
    }

    // Every order ends, as its card and address say.
    let deadline = Instant::now() + Duration::from_secs(240 + orders as u64 / 10);
    let mut outcomes: BTreeMap<usize, i32> = BTreeMap::new();
    for (i, order_id) in &placed {
        loop {
            if let Some(status) = status_of(&f, order_id).await
                && status != opb::OrderStatus::Pending as i32
                && !running(&f, order_id).await
            {
                outcomes.insert(*i, status);
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "order {i} ({order_id}) never ended: {}\n{}",
                    stuck(&f, order_id).await,
                    f.mesh.up.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let wrong: Vec<_> = outcomes
        .iter()
        .filter(|(i, status)| mix(**i).2 as i32 != **status)
        .collect();
    assert!(
        wrong.is_empty(),
        "outcomes not as the card and address say: {wrong:?}"
    );

    // None lost, none twice: one order per key, at most one payment per order.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = f
            .mesh
            .orders
            .clone()
            .list_orders(opb::ListOrdersRequest {
                page_size: 100,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.orders);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for order in &listed {
        *per_key.entry(order.idempotency_key.clone()).or_default() += 1;
    }
    assert_eq!(listed.len(), orders, "one order per key: {per_key:?}");
    assert!(per_key.values().all(|n| *n == 1));
    let payments_db = match postgres {
        None => format!("sqlite://{}/payments.db?mode=ro", f.data.path().display()),
        Some((server, prefix)) => kit_store::ensure_postgres_database(server, &format!("{prefix}_payments"))
            .await
            .unwrap(),
    };
    let db = sea_orm::Database::connect(payments_db).await.unwrap();
    let rows = payments::store::payment::Entity::find().all(&db).await.unwrap();
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *per_order.entry(row.order_id.clone()).or_default() += 1;
    }
    assert!(per_order.values().all(|n| *n == 1), "{per_order:?}");
    db.close().await.unwrap();

    // And the audit, across every service, finds nothing.
    let output = ferrymesh()
        .args(["audit", "--port-offset", &offset.to_string()])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains(&format!("audited {orders} orders: every invariant holds")),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &killed {
        *kills.entry(name).or_default() += 1;
    }
    eprintln!(
        "chaos: {} on {}: {orders} orders, lost 0, duplicated 0, audit clean; kills {kills:?}",
        if postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if own.is_some() {
            "a server crashed mid-run"
        } else {
            "one server"
        },
    );
    f.mesh.stop().await;
}

/// The order's status, or `None` while orders is away (restarting).
async fn status_of(f: &Fixture, order_id: &str) -> Option<i32> {
    f.mesh
        .orders
        .clone()
        .get_order(opb::GetOrderRequest {
            order_id: order_id.into(),
        })
        .await
        .ok()?
        .into_inner()
        .order
        .map(|o| o.status)
}

/// The order's saga as workflow describes it.
async fn execution(
    f: &Fixture,
    order_id: &str,
) -> Result<Option<workflow::pb::ferrymesh::workflow::v1::Execution>, tonic::Status> {
    use workflow::pb::ferrymesh::workflow::v1 as wpb;
    let answer = f
        .mesh
        .workflow
        .clone()
        .describe_execution(wpb::DescribeExecutionRequest {
            execution_name: order_id.into(),
        })
        .await?;
    Ok(answer.into_inner().execution)
}

/// What an order that never ended shows: its status, its execution's, and
/// the execution's last events.
async fn stuck(f: &Fixture, order_id: &str) -> String {
    let execution = match execution(f, order_id).await {
        Ok(e) => format!("{e:?}"),
        Err(e) => e.to_string(),
    };
    let history = f.mesh.history(order_id).await;
    let tail: Vec<String> = history
        .iter()
        .rev()
        .take(12)
        .rev()
        .map(|e| format!("{} {} {} {}", e.id, e.type_name, e.state_name, e.details))
        .collect();
    format!(
        "order status {:?}; execution {execution}; last events:\n{}",
        status_of(f, order_id).await,
        tail.join("\n")
    )
}

/// Whether the order's saga is still running.
async fn running(f: &Fixture, order_id: &str) -> bool {
    use workflow::pb::ferrymesh::workflow::v1 as wpb;
    match execution(f, order_id).await {
        Ok(e) => e.is_some_and(|e| e.status == wpb::ExecutionStatus::Running as i32),
        // Workflow away (killed): ask again.
        Err(_) => true,
    }
}
