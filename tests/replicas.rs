//! Three workflow replicas on one PostgreSQL database, running the
//! place-order saga for a stream of orders while one is killed with
//! SIGKILL, one is paused with SIGSTOP past its lease, one is cut off from
//! the network, and one is stopped as a rollout stops a pod (it hands its
//! executions over at once): every order ends as its card and address say, the
//! audit is clean, each dead or silent replica's executions are taken over
//! within 10 s, and no execution was advanced by two owners.
//!
//! The third replica runs on a host of the test's own: a network namespace
//! joined to this one by a veth pair, on addresses the test makes. The
//! services and PostgreSQL listen on this side's end of the pair, so the
//! cut (the far end's link set down) leaves everything else untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use orders::pb::ferrymesh::orders::v2 as opb;
use orders::pb::ferrymesh::orders::v2::orders_service_client::OrdersServiceClient;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::own_postgres::OwnPostgres;
use crate::support::mesh::{DECLINED, GOOD, order_request};
use crate::support::{Process, ferrymesh};

/// How long a replica may be silent before the others take over.
const LEASE_SECONDS: u64 = 5;

/// The test's own host: a namespace and a veth pair, removed when dropped.
struct Host {
    ns: String,
    near: String,
    far: String,
    /// This side's address, and the namespace's.
    here: String,
    there: String,
}

fn ip(args: &[&str]) {
    let status = StdCommand::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

impl Host {
    fn new() -> Host {
        let id = std::process::id() % 10_000;
        let subnet = 16 + (std::process::id() % 200);
        let host = Host {
            ns: format!("fmwf{id}"),
            near: format!("fmh{id}"),
            far: format!("fmn{id}"),
            here: format!("10.213.{subnet}.1"),
            there: format!("10.213.{subnet}.2"),
        };
        host.remove();
        ip(&["netns", "add", &host.ns]);
        ip(&[
            "link", "add", &host.near, "type", "veth", "peer", "name", &host.far,
        ]);
        ip(&["link", "set", &host.far, "netns", &host.ns]);
        ip(&["addr", "add", &format!("{}/30", host.here), "dev", &host.near]);
        ip(&["link", "set", &host.near, "up"]);
        host.inside(&["addr", "add", &format!("{}/30", host.there), "dev", &host.far]);
        host.inside(&["link", "set", &host.far, "up"]);
        host.inside(&["link", "set", "lo", "up"]);
        host
    }

    fn inside(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Cuts the namespace off: its end of the pair goes down.
    fn cut(&self) {
        self.inside(&["link", "set", &self.far, "down"]);
    }

    fn restore(&self) {
        self.inside(&["link", "set", &self.far, "up"]);
    }

    fn remove(&self) {
        let _ = StdCommand::new("ip").args(["link", "del", &self.near]).status();
        let _ = StdCommand::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.remove();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ferrymesh serve SERVICE` with `flags`, in the namespace `ns` when given;
/// returns once it listens.
async fn serve(service: &str, flags: &[String], ns: Option<&str>) -> Process {
    let mut command = match ns {
        None => ferrymesh(),
        Some(ns) => {
            let mut c = ferrymesh();
            let bin = c.as_std().get_program().to_owned();
            c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin);
            c.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            c
        }
    };
    command
        .args([
            "serve",
            service,
            "--admin-listen",
            "off",
            "--log-level",
            "info,sqlx=warn",
        ])
        .args(flags);
    let mut process = Process::spawn(command);
    process
        .wait_for_line(|l| l.contains("listening on "), Duration::from_secs(60))
        .await;
    process
}

/// The RUNNING executions each replica holds.
async fn held(db: &DatabaseConnection) -> BTreeMap<String, i64> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT owner, COUNT(*) AS n FROM executions WHERE status = 'RUNNING' GROUP BY owner",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get::<String>("", "owner").unwrap(),
                r.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}

/// Waits until `replica` holds a RUNNING execution (it is mid-saga).
async fn holding(db: &DatabaseConnection, replica: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !held(db).await.contains_key(replica) {
        assert!(
            Instant::now() < deadline,
            "{replica} runs nothing: {:?}",
            held(db).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `replica` holds no RUNNING execution; how long it took.
async fn taken_from(db: &DatabaseConnection, replica: &str, since: Instant) -> Duration {
    loop {
        if !held(db).await.contains_key(replica) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{replica}'s executions were not taken over within 10 s: {:?}",
            held(db).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_survive_a_kill_a_pause_and_a_network_cut() {
    let net = Host::new();
    let pg = OwnPostgres::start_listening(&[&net.here]);
    let data = tempfile::tempdir().unwrap();
    let workflow_db = kit_store::ensure_postgres_database(&pg.url(), "workflow")
        .await
        .unwrap()
        .replace("127.0.0.1", &net.here);
    let here = net.here.clone();
    let port = |_: &str| free_port();
    let addr = |p: u16| format!("{here}:{p}");
    let (catalog, inventory, payments, shipping, orders) =
        (port("c"), port("i"), port("p"), port("s"), port("o"));
    let replicas = [
        ("wf-a", addr(port("a")), None),
        ("wf-b", addr(port("b")), None),
        (
            "wf-c",
            format!("{}:{}", net.there, port("c2")),
            Some(net.ns.clone()),
        ),
    ];
    let plain = |service: &str, p: u16, extra: &[String]| {
        let mut flags = vec![
            "--listen".to_string(),
            addr(p),
            "--data-dir".to_string(),
            data.path().join(service).display().to_string(),
        ];
        flags.extend_from_slice(extra);
        flags
    };
    // Shipping takes 3 s (the saga allows 5), so sagas are always in flight,
    // and a replica that comes back just after losing its executions finds
    // their new holders still mid-saga: only the fence keeps it from
    // recording what its own calls in flight returned.
    let _services = [
        serve("catalog", &plain("catalog", catalog, &[]), None).await,
        serve("inventory", &plain("inventory", inventory, &[]), None).await,
        serve("payments", &plain("payments", payments, &[]), None).await,
        serve(
            "shipping",
            &plain(
                "shipping",
                shipping,
                &["--fault=CreateShipment:latency=3000ms".into()],
            ),
            None,
        )
        .await,
    ];
    let workflow_urls: Vec<String> = replicas.iter().map(|(_, a, _)| format!("http://{a}")).collect();
    let orders_process = serve(
        "orders",
        &plain(
            "orders",
            orders,
            &[
                format!("--catalog-url=http://{}", addr(catalog)),
                format!("--payments-url=http://{}", addr(payments)),
                format!("--workflow-url={}", workflow_urls.join(",")),
            ],
        ),
        None,
    )
    .await;
    let replica_flags = |name: &str, listen: &str| {
        let mut flags = vec![
            "--listen".to_string(),
            listen.to_string(),
            "--database-url".to_string(),
            workflow_db.clone(),
            "--replica".to_string(),
            name.to_string(),
            "--lease-seconds".to_string(),
            LEASE_SECONDS.to_string(),
        ];
        for (package, p) in [
            ("ferrymesh.inventory.v1", inventory),
            ("ferrymesh.payments.v1", payments),
            ("ferrymesh.shipping.v1", shipping),
            ("ferrymesh.orders.v2", orders),
            ("ferrymesh.catalog.v1", catalog),
        ] {
            flags.push(format!("--endpoint={package}=http://{}", addr(p)));
        }
        flags
    };
    // All three start at once on one database (they migrate it one at a time).
    let flags: Vec<Vec<String>> = replicas
        .iter()
        .map(|(name, listen, _)| replica_flags(name, listen))
        .collect();
    let (a, b, c) = tokio::join!(
        serve("workflow", &flags[0], None),
        serve("workflow", &flags[1], None),
        serve("workflow", &flags[2], replicas[2].2.as_deref()),
    );
    let (mut a, b, c) = (Some(a), b, c);
    let db = Database::connect(workflow_db.as_str()).await.unwrap();

    // Orders come in at 6 a second for the whole run, mixed.
    let client = OrdersServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", addr(orders)))
            .unwrap()
            .connect_lazy(),
    );
    let total = 300usize;
    let placing = {
        let client = client.clone();
        tokio::spawn(async move {
            let calls = (0..total).map(|n| {
                let mut client = client.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(n as u64 * 1000 / 6)).await;
                    let card = if n % 5 == 3 { DECLINED } else { GOOD };
                    let country = if n % 11 == 7 { "AQ" } else { "GB" };
                    // Stock enough for every order: only cards and addresses decide.
                    let product = ["mug", "canvas-tote", "air-plant", "sunglasses", "tank-top"][n % 5];
                    let request = order_request(&format!("replica-{n}"), &[(product, 1)], card, country);
                    let order = loop {
                        // Refused while orders waits for a replica: the same key again.
                        match client.place_order(request.clone()).await {
                            Ok(answer) => break answer.into_inner().order.unwrap(),
                            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                        }
                    };
                    (order.order_id, card, country)
                }
            });
            futures_util::future::join_all(calls).await
        })
    };

    // New executions spread over the replicas.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let starters = first_owners(&db).await;
    for (name, _, _) in &replicas {
        assert!(starters.contains(*name), "{name} started none: {starters:?}");
    }

    // 1. A is killed mid-saga: its executions are taken within 10 s.
    holding(&db, "wf-a").await;
    let killed = Instant::now();
    a.as_ref().unwrap().signal(Signal::SIGKILL);
    let took = taken_from(&db, "wf-a", killed).await;
    eprintln!("wf-a killed: its executions taken over in {took:?}");
    drop(a.take());
    let a = serve("workflow", &flags[0], None).await;

    // 2. B is paused past its lease: taken over, and once it goes on it
    // records nothing for what it lost.
    tokio::time::sleep(Duration::from_secs(3)).await;
    holding(&db, "wf-b").await;
    let paused = Instant::now();
    b.signal(Signal::SIGSTOP);
    let took = taken_from(&db, "wf-b", paused).await;
    eprintln!("wf-b paused: its executions taken over in {took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.signal(Signal::SIGCONT);

    // 3. C is cut off from the database and the services, then restored.
    tokio::time::sleep(Duration::from_secs(3)).await;
    holding(&db, "wf-c").await;
    let cut = Instant::now();
    net.cut();
    let took = taken_from(&db, "wf-c", cut).await;
    eprintln!("wf-c cut off: its executions taken over in {took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.restore();

    // 4. B is stopped as a rollout stops a pod (SIGTERM): it hands its
    // executions over, and they are taken well within the lease.
    holding(&db, "wf-b").await;
    let stopping = Instant::now();
    b.signal(Signal::SIGTERM);
    let took = taken_from(&db, "wf-b", stopping).await;
    eprintln!("wf-b stopped: its executions taken over in {took:?}");
    assert!(
        took < Duration::from_secs(LEASE_SECONDS - 1),
        "a replica that stops hands its executions over at once, not after the lease: {took:?}"
    );

    // Every order ends as its card and address say.
    let placed = placing.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut wrong = Vec::new();
    for (id, card, country) in &placed {
        let status = loop {
            let order = client
                .clone()
                .get_order(opb::GetOrderRequest { order_id: id.clone() })
                .await
                .unwrap()
                .into_inner()
                .order
                .unwrap();
            let running = held_execution(&db, id).await;
            if order.status != opb::OrderStatus::Pending as i32 && !running {
                break order.status;
            }
            assert!(
                Instant::now() < deadline,
                "order {id} never ended\nwf-a:\n{}\nwf-b:\n{}\nwf-c:\n{}",
                a.output(),
                b.output(),
                c.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let expected = if *card == GOOD && *country == "GB" {
            opb::OrderStatus::Confirmed
        } else {
            opb::OrderStatus::Failed
        };
        if status != expected as i32 {
            wrong.push((id.clone(), *card, *country, status));
        }
    }
    assert!(wrong.is_empty(), "orders that ended wrong: {wrong:?}");

    // No execution advanced by two owners: along each history, epochs only
    // grow and each epoch has one owner.
    let (interleaved, moved) = histories(&db).await;
    assert!(
        interleaved.is_empty(),
        "histories written by two owners at once: {interleaved:?}"
    );
    for (name, _, _) in &replicas {
        assert!(
            moved.contains(*name),
            "no execution of {name} moved to another replica: {moved:?}"
        );
    }

    // Every effect happened once: the audit reads every service.
    let audit = ferrymesh()
        .args([
            "audit",
            "--json",
            &format!("--orders-url=http://{}", addr(orders)),
            &format!("--workflow-url=http://{}", replicas[0].1),
            &format!("--inventory-url=http://{}", addr(inventory)),
            &format!("--payments-url=http://{}", addr(payments)),
            &format!("--shipping-url=http://{}", addr(shipping)),
        ])
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.status.success(),
        "audit: {report}\n{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    drop((a, b, c, orders_process, pg));
}

/// The replicas that started executions (the owner of each one's first event).
async fn first_owners(db: &DatabaseConnection) -> BTreeSet<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT DISTINCT owner FROM history_events WHERE id = 1",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "owner").unwrap())
        .collect()
}

/// Whether the order's execution is still RUNNING.
async fn held_execution(db: &DatabaseConnection, id: &str) -> bool {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT status FROM executions WHERE name = $1",
            [id.into()],
        ))
        .await
        .unwrap();
    row.is_some_and(|r| r.try_get::<String>("", "status").unwrap() == "RUNNING")
}

/// Executions whose history two owners interleaved (an older epoch after a
/// newer one, or one epoch written by two replicas), and the replicas that
/// lost an execution to another.
async fn histories(db: &DatabaseConnection) -> (Vec<String>, BTreeSet<String>) {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT execution, owner, epoch FROM history_events ORDER BY execution, id",
        ))
        .await
        .unwrap();
    let mut by_execution: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for r in &rows {
        by_execution
            .entry(r.try_get::<String>("", "execution").unwrap())
            .or_default()
            .push((r.try_get("", "owner").unwrap(), r.try_get("", "epoch").unwrap()));
    }
    let mut interleaved = Vec::new();
    let mut moved = BTreeSet::new();
    for (name, events) in by_execution {
        let mut owners: BTreeMap<i64, &str> = BTreeMap::new();
        let ordered = events.windows(2).all(|w| w[0].1 <= w[1].1);
        let single = events
            .iter()
            .all(|(owner, epoch)| *owners.entry(*epoch).or_insert(owner) == owner.as_str());
        if !ordered || !single {
            interleaved.push(format!("{name}: {events:?}"));
        }
        for w in events.windows(2) {
            if w[0].0 != w[1].0 {
                moved.insert(w[0].0.clone());
            }
        }
    }
    (interleaved, moved)
}
