//! A service and its PostgreSQL as production runs them. Ready means
//! ready: a service whose database does not answer yet tells its probes
//! NOT_SERVING (on its admin port, where the kubelet asks) until it is
//! connected and migrated. TLS to the database, verified. And the pool
//! holds no more connections than `--db-pool-size`, the number the
//! connection budget is made of.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::own_postgres::OwnPostgres;
use crate::support::{Process, ferrymesh};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The overall status at `addr`, or `None` while nothing answers there.
async fn status(addr: SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .ok()?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .ok()?;
    Some(answer.into_inner().status())
}

#[tokio::test]
async fn a_service_is_not_serving_until_its_database_answers() {
    let postgres = OwnPostgres::start();
    let postmaster = Pid::from_raw(postgres.postmaster_pid());
    // The server stalls: connections are made, but nothing answers them.
    kill(postmaster, Signal::SIGSTOP).unwrap();
    let data = tempfile::tempdir().unwrap();
    let (grpc, admin) = (free_addr(), free_addr());
    let mut command = ferrymesh();
    command
        .args(["serve", "catalog", "--listen", &grpc.to_string()])
        .args([
            "--admin-listen",
            &admin.to_string(),
            "--database-url",
            &postgres.url(),
        ])
        .arg("--data-dir")
        .arg(data.path());
    let mut catalog = Process::spawn(command);

    // While the database stalls: the admin port answers, NOT_SERVING.
    let mut not_serving = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while not_serving < 5 {
        assert!(
            Instant::now() < deadline,
            "no NOT_SERVING answer:\n{}",
            catalog.output()
        );
        match status(admin).await {
            Some(ServingStatus::NotServing) => not_serving += 1,
            None => {}
            Some(other) => {
                let _ = kill(postmaster, Signal::SIGCONT);
                panic!("{other:?} while the database stalls:\n{}", catalog.output());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The database answers: SERVING, on both ports, and the service works.
    kill(postmaster, Signal::SIGCONT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(admin).await != Some(ServingStatus::Serving) {
        assert!(Instant::now() < deadline, "never SERVING:\n{}", catalog.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(grpc).await, Some(ServingStatus::Serving));
    catalog.signal(Signal::SIGTERM);
    assert!(catalog.wait_exit(Duration::from_secs(30)).await.success());
}

/// A service reaches a PostgreSQL that takes TLS only: with
/// `sslmode=verify-full` and the mesh's CA (the server's certificate from
/// `ferrymesh certs`) it serves; without TLS it is refused, and says so.
#[tokio::test]
async fn a_service_reaches_postgresql_over_tls_only() {
    let certs = tempfile::tempdir().unwrap();
    for args in [vec!["certs", "init"], vec!["certs", "issue"]] {
        let mut command = ferrymesh();
        command.args(&args).arg(certs.path());
        if args[1] == "issue" {
            command.arg("postgres");
        }
        let output = command.output().await.unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    let postgres = OwnPostgres::start_tls(
        &certs.path().join("postgres.pem"),
        &certs.path().join("postgres.key"),
    );
    let ca = certs.path().join("ca.pem");
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        postgres.url(),
        ca.display()
    );
    let data = tempfile::tempdir().unwrap();
    let (mut catalog, addr) =
        crate::support::serve("catalog", data.path(), &["--database-url", &verified], &[]).await;
    assert_eq!(status(addr).await, Some(ServingStatus::Serving));
    let mut client = catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient::new(
        crate::support::mesh::channel_as(addr.port(), None),
    );
    let product = client
        .get_product(catalog::pb::ferrymesh::catalog::v1::GetProductRequest {
            product_id: "mug".into(),
        })
        .await
        .unwrap();
    assert!(product.into_inner().product.is_some());
    catalog.signal(Signal::SIGTERM);
    assert!(catalog.wait_exit(Duration::from_secs(30)).await.success());

    // A server whose certificate another CA signed is not trusted.
    let stranger = tempfile::tempdir().unwrap();
    let output = ferrymesh()
        .args(["certs", "init"])
        .arg(stranger.path())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let wrong_ca = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        postgres.url(),
        stranger.path().join("ca.pem").display()
    );
    let mut command = ferrymesh();
    command
        .args([
            "serve",
            "catalog",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &wrong_ca,
        ])
        .arg("--data-dir")
        .arg(data.path());
    let mut untrusted = Process::spawn(command);
    assert!(!untrusted.wait_exit(Duration::from_secs(30)).await.success());
    let output = untrusted.output().to_lowercase();
    assert!(
        output.contains("certificate") || output.contains("issuer"),
        "{output}"
    );

    // Plaintext is refused by the server, and the service says why.
    let plain = format!("{}?sslmode=disable", postgres.url());
    let mut command = ferrymesh();
    command
        .args([
            "serve",
            "catalog",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &plain,
        ])
        .arg("--data-dir")
        .arg(data.path());
    let mut refused = Process::spawn(command);
    let status = refused.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    let output = refused.output();
    assert!(
        output.contains("no pg_hba.conf entry") || output.contains("SSL off"),
        "{output}"
    );
}

/// Fifty calls at once that each read the database open at most
/// `--db-pool-size` connections (idle ones stay open, so what is open after
/// the burst is the most that was).
#[tokio::test]
async fn a_service_holds_no_more_connections_than_its_pool_size() {
    let postgres = OwnPostgres::start();
    let data = tempfile::tempdir().unwrap();
    let (mut inventory, addr) = crate::support::serve(
        "inventory",
        data.path(),
        &["--database-url", &postgres.url(), "--db-pool-size", "3"],
        &[],
    )
    .await;
    use inventory::pb::ferrymesh::inventory::v1 as ipb;
    let client = ipb::inventory_service_client::InventoryServiceClient::new(
        crate::support::mesh::channel_as(addr.port(), None),
    );
    let calls = (0..50).map(|_| {
        let mut client = client.clone();
        async move {
            client
                .get_stock(ipb::GetStockRequest {
                    skus: vec!["mug".into()],
                })
                .await
                .unwrap();
        }
    });
    futures_util::future::join_all(calls).await;
    let admin = sea_orm::Database::connect(postgres.url()).await.unwrap();
    let open: i64 = sea_orm::ConnectionTrait::query_one_raw(
        &admin,
        sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        ),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get("", "n")
    .unwrap();
    assert!(
        (1..=3).contains(&open),
        "{open} connections open with --db-pool-size 3"
    );
    admin.close().await.unwrap();
    inventory.signal(Signal::SIGTERM);
    assert!(inventory.wait_exit(Duration::from_secs(30)).await.success());
}

/// Three replicas started at once on one fresh database all come up: they
/// migrate it one at a time (an advisory lock), the first applies, the
/// others find it done; the seeded catalog is there once.
#[tokio::test]
async fn three_replicas_starting_at_once_migrate_one_database_once() {
    let postgres = OwnPostgres::start();
    let url = postgres.url();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--database-url", url.as_str()];
    let starts = dirs
        .iter()
        .map(|dir| crate::support::serve("catalog", dir.path(), &flags, &[]));
    let replicas = futures_util::future::join_all(starts).await;
    for (_, addr) in &replicas {
        let mut client =
            catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient::new(
                crate::support::mesh::channel_as(addr.port(), None),
            );
        let product = client
            .get_product(catalog::pb::ferrymesh::catalog::v1::GetProductRequest {
                product_id: "mug".into(),
            })
            .await
            .unwrap();
        assert!(product.into_inner().product.is_some());
    }
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            sea_orm::ConnectionTrait::query_one_raw(
                db,
                sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql),
            )
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap()
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM products WHERE id = 'mug'").await,
        1
    );
    let applied = count("SELECT COUNT(*) AS n FROM seaql_migrations").await;
    let distinct = count("SELECT COUNT(DISTINCT version) AS n FROM seaql_migrations").await;
    assert_eq!(applied, distinct, "a migration recorded twice");
    db.close().await.unwrap();
    for (mut process, _) in replicas {
        process.signal(Signal::SIGTERM);
        assert!(process.wait_exit(Duration::from_secs(30)).await.success());
    }
}
