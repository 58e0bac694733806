//! Test support for the services' own tests: a fresh database per test, on
//! SQLite or on the PostgreSQL server named by `FERRYMESH_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! A PostgreSQL that cannot be reached fails the test. Set
//! `FERRYMESH_SKIP_POSTGRES=1` to skip the PostgreSQL half on a machine
//! without one; CI never sets it.

#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod fixtures;

use kit::{Running, ServerArgs, Service};
use kit_store::Db;
use sea_orm::{ConnectionTrait, Database};
use sea_orm_migration::MigratorTrait;
use tonic_types::StatusExt;

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("FERRYMESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to connect to it.
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new SQLite file in a temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
        TestDatabase {
            url,
            postgres: None,
            _dir: Some(dir),
        }
    }

    /// A new, empty PostgreSQL database; `None` only when `FERRYMESH_SKIP_POSTGRES=1`.
    pub async fn postgres(prefix: &str) -> Option<Self> {
        if std::env::var("FERRYMESH_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("FERRYMESH_SKIP_POSTGRES=1: skipping the PostgreSQL half of this test");
            return None;
        }
        let admin_url = postgres_admin_url();
        let admin = Database::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {admin_url} is not reachable ({e}). Start it, point \
                 FERRYMESH_TEST_POSTGRES_URL at one, or set FERRYMESH_SKIP_POSTGRES=1 to skip locally"
            )
        });
        // PostgreSQL names are at most 63 bytes.
        let prefix: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let name = format!("ferrymesh_{prefix}_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base.to_string())
            .unwrap_or(admin_url.clone());
        Some(TestDatabase {
            url: format!("{base}/{name}"),
            postgres: Some((admin_url, name)),
            _dir: None,
        })
    }

    /// Which backend it is on, for test names and messages.
    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Runs `SELECT COUNT(*) FROM {from_where}` past the service, to check
    /// what is stored: `count("reservations WHERE reservation_id = 'r-1'")`.
    pub async fn count(&self, from_where: &str) -> i64 {
        let db = Database::connect(self.url.as_str())
            .await
            .expect("connect to the test database");
        let sql = format!("SELECT COUNT(*) AS n FROM {from_where}");
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql.clone(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .expect("COUNT returns a row");
        let n: i64 = row.try_get("", "n").expect("an integer count");
        let _ = db.close().await;
        n
    }

    /// Runs `sql` past the service, as an operator editing the database would.
    pub async fn execute(&self, sql: &str) {
        let db = Database::connect(self.url.as_str())
            .await
            .expect("connect to the test database");
        db.execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = db.close().await;
    }

    /// Drops the database (PostgreSQL) or its directory (SQLite).
    pub async fn cleanup(mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            drop_postgres(&admin_url, &name).await;
        }
    }
}

impl Drop for TestDatabase {
    /// A test that panicked never reached `cleanup`; drop its database anyway.
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            let dropping = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    runtime.block_on(drop_postgres(&admin_url, &name));
                }
            });
            let _ = dropping.join();
        }
    }
}

async fn drop_postgres(admin_url: &str, name: &str) {
    if let Ok(admin) = Database::connect(admin_url).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        let _ = admin.close().await;
    }
}

/// A service serving on a loopback port over its own fresh database.
#[derive(Debug)]
pub struct TestServer {
    /// The running server.
    pub running: Running,
    /// Its database.
    pub db: TestDatabase,
}

impl TestServer {
    /// Migrates `db` with `M` and serves what `build` makes of it on port 0.
    pub async fn start<M: MigratorTrait>(
        db: TestDatabase,
        build: impl AsyncFnOnce(Db, &ServerArgs) -> Result<Service, kit::BoxError>,
    ) -> Self {
        Self::start_with::<M>(db, |_| {}, build).await
    }

    /// As [`TestServer::start`], with the server's flags changed by `configure`
    /// (faults, limits).
    pub async fn start_with<M: MigratorTrait>(
        db: TestDatabase,
        configure: impl FnOnce(&mut ServerArgs),
        build: impl AsyncFnOnce(Db, &ServerArgs) -> Result<Service, kit::BoxError>,
    ) -> Self {
        let conn = kit_store::connect_and_migrate::<M>(&db.url)
            .await
            .unwrap_or_else(|e| panic!("open the {} test database: {e}", db.backend()));
        let mut args = ServerArgs::for_tests(db.url.clone());
        configure(&mut args);
        let service = build(conn, &args).await.expect("build the service");
        let running = kit::server::spawn(service, &args, 0)
            .await
            .expect("start the service");
        TestServer { running, db }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        self.running.uri()
    }

    /// A connected channel to it.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.uri())
            .expect("a valid uri")
            .connect()
            .await
            .expect("connect to the service")
    }

    /// Stops the server gracefully and drops its database.
    pub async fn stop(self) {
        self.running.stop().await.expect("the service stops cleanly");
        self.db.cleanup().await;
    }
}

/// A service under test and a client for it: what each service's own
/// tests start, hand to a scenario, and stop.
#[derive(Debug)]
pub struct TestService<C> {
    /// The running server and its database.
    pub server: TestServer,
    client: C,
}

impl<C: Clone> TestService<C> {
    /// Serves what `build` makes of `db` (migrated with `M`) and connects
    /// `client` (e.g. `CatalogServiceClient::new`) to it.
    pub async fn start<M: MigratorTrait>(
        db: TestDatabase,
        build: impl AsyncFnOnce(Db, &ServerArgs) -> Result<Service, kit::BoxError>,
        client: impl FnOnce(tonic::transport::Channel) -> C,
    ) -> Self {
        let server = TestServer::start::<M>(db, build).await;
        let client = client(server.channel().await);
        TestService { server, client }
    }

    /// A client of its own for one caller.
    pub fn client(&self) -> C {
        self.client.clone()
    }

    /// Stops the server gracefully and drops its database.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Asserts INVALID_ARGUMENT with a `BadRequest` violation for `field` whose
/// description contains `says`, and a message that carries both.
pub fn assert_invalid(status: &tonic::Status, field: &str, says: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(&format!("{field}: ")),
        "message names {field}: {}",
        status.message()
    );
    assert!(
        status.message().contains(says),
        "message says {says:?}: {}",
        status.message()
    );
    let details = status.get_error_details();
    let bad_request = details.bad_request().expect("a google.rpc.BadRequest detail");
    let violation = bad_request
        .field_violations
        .iter()
        .find(|v| v.field == field)
        .unwrap_or_else(|| panic!("a violation for {field} in {:?}", bad_request.field_violations));
    assert!(
        violation.description.contains(says),
        "{:?}",
        violation.description
    );
}

/// Asserts the status code and that the message contains `says`.
pub fn assert_status(status: &tonic::Status, code: tonic::Code, says: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(says),
        "message says {says:?}: {}",
        status.message()
    );
}

/// Runs each named scenario (`crate::scenarios::NAME(&fixture)`) as a test on
/// SQLite and on PostgreSQL; `$start` makes the fixture from a
/// [`TestDatabase`] and the fixture has an async `stop`.
#[macro_export]
#[allow(clippy::crate_in_macro_def)] // the scenarios live in the calling crate, on purpose
macro_rules! on_sqlite_and_postgres {
    ($start:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let fixture = $start($crate::TestDatabase::sqlite()).await;
                    crate::scenarios::$name(&fixture).await;
                    fixture.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = $crate::TestDatabase::postgres(env!("CARGO_PKG_NAME")).await else {
                        return;
                    };
                    let fixture = $start(db).await;
                    crate::scenarios::$name(&fixture).await;
                    fixture.stop().await;
                }
            )*
        }
    };
}
