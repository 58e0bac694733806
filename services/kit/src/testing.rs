//! Test support for the services' own tests: a fresh database per test, on
//! SQLite or on the PostgreSQL server named by `FERRYMESH_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! A PostgreSQL that cannot be reached fails the test. Set
//! `FERRYMESH_SKIP_POSTGRES=1` to skip the PostgreSQL half on a machine
//! without one; CI never sets it.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use sea_orm::{ConnectionTrait, Database};

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

    /// Drops the database (PostgreSQL) or its directory (SQLite).
    pub async fn cleanup(self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(admin) = Database::connect(admin_url.as_str()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
    }
}
