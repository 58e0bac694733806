//! Database connections and migrations with sea-orm: a SQLite file (WAL mode)
//! by default, PostgreSQL when given a `postgres://` URL.
//!
//! A [`Db`] has a writer for transactions and readers for queries. On
//! PostgreSQL both are the same pool. On SQLite, which allows one writer and
//! many readers beside it in WAL mode, the writer is one connection (so write
//! transactions queue in the process instead of failing with SQLITE_BUSY)
//! and the readers are a pool of their own, so a read never waits for a
//! write or for another read.

use std::path::Path;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    DbErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::db_spans::trace_statements;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbOpenError {
    /// The URL's scheme is neither sqlite nor postgres.
    #[error("database URL `{0}` is not supported: use sqlite://FILE or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    /// The SQLite file's directory could not be created.
    #[error("cannot create the directory for SQLite file {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The lock that keeps two processes from migrating one SQLite file at once.
    #[error("cannot lock {path} to migrate the SQLite file beside it: {source}")]
    Lock {
        /// The lock file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// The cause.
        source: DbErr,
    },
    /// A migration failed.
    #[error("migrating {url} failed: {source}")]
    Migrate {
        /// The URL, without its password.
        url: String,
        /// The cause.
        source: DbErr,
    },
}

/// Readers in a SQLite [`Db`]'s read pool: the best of 2 to 64 measured by
/// `bench/reads.sh` on two cores (each reader is a thread of sqlx's).
pub const SQLITE_READERS: u32 = 16;

/// An open, migrated database: a writer for transactions, readers for queries.
#[derive(Debug, Clone)]
pub struct Db {
    write: DatabaseConnection,
    read: DatabaseConnection,
}

impl Db {
    /// A `Db` whose reads and writes share one connection pool.
    pub fn single(conn: DatabaseConnection) -> Self {
        Db {
            read: conn.clone(),
            write: conn,
        }
    }

    /// For queries that change nothing; on SQLite, a pool beside the writer.
    pub fn read(&self) -> &DatabaseConnection {
        &self.read
    }

    /// For statements that change something, outside a transaction.
    pub fn write(&self) -> &DatabaseConnection {
        &self.write
    }

    /// A transaction on the writer.
    pub async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.write.begin().await
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> DatabaseBackend {
        self.write.get_database_backend()
    }

    /// Closes both pools.
    pub async fn close(self) {
        let _ = self.read.close().await;
        let _ = self.write.close().await;
    }
}

/// How many PostgreSQL connections a process keeps, and how long it waits
/// for one.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    /// Connections held at most (PostgreSQL; SQLite has one writer and its readers).
    pub max_connections: u32,
    /// To connect, and to get a free connection.
    pub timeout: Duration,
}

impl Pool {
    /// At most `max_connections`, waiting `timeout` for one.
    pub fn new(max_connections: u32, timeout: Duration) -> Pool {
        Pool {
            max_connections,
            timeout,
        }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            max_connections: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Connects to `url` and applies the migrations `M` that have not run yet.
pub async fn connect_and_migrate<M: MigratorTrait>(url: &str) -> Result<Db, DbOpenError> {
    connect_and_migrate_with::<M>(url, Pool::default()).await
}

/// As [`connect_and_migrate`], with the pool's size and timeout.
pub async fn connect_and_migrate_with<M: MigratorTrait>(url: &str, pool: Pool) -> Result<Db, DbOpenError> {
    let shown = redact(url);
    let connect_error = |source| DbOpenError::Connect {
        url: shown.clone(),
        source,
    };
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or(path);
        let in_memory = file == ":memory:" || url.contains("mode=memory");
        if !in_memory && let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbOpenError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut write = Database::connect(sqlite_options(url, 1, false, pool.timeout))
            .await
            .map_err(connect_error)?;
        // Processes opening one file together migrate it one at a time.
        let lock = if in_memory {
            None
        } else {
            let lock_path = format!("{file}.migrating");
            let lock = std::fs::File::create(&lock_path).map_err(|source| DbOpenError::Lock {
                path: lock_path.clone(),
                source,
            })?;
            let locked = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|source| DbOpenError::Lock {
                    path: lock_path,
                    source,
                })?;
            Some(locked)
        };
        M::up(&write, None).await.map_err(|source| DbOpenError::Migrate {
            url: shown.clone(),
            source,
        })?;
        drop(lock);
        // Migrations are not part of any call; what runs from here is.
        trace_statements(&mut write);
        // An in-memory database exists once per connection: it cannot have readers of its own.
        if in_memory {
            return Ok(Db::single(write));
        }
        let mut read = Database::connect(sqlite_options(url, SQLITE_READERS, true, pool.timeout))
            .await
            .map_err(connect_error)?;
        trace_statements(&mut read);
        return Ok(Db { write, read });
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(DbOpenError::UnsupportedUrl(shown));
    }
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(pool.max_connections)
        .connect_timeout(pool.timeout)
        .acquire_timeout(pool.timeout)
        .sqlx_logging(false);
    let mut db = Database::connect(options).await.map_err(connect_error)?;
    migrate_alone::<M>(url, pool.timeout)
        .await
        .map_err(|source| DbOpenError::Migrate { url: shown, source })?;
    trace_statements(&mut db);
    Ok(Db::single(db))
}

/// Any number chosen once: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x6665_7272_796d;

/// Applies `M` on a connection of its own holding a PostgreSQL advisory
/// lock (of this database), so replicas starting together on one database
/// migrate it one at a time: the first applies, the others find it done.
async fn migrate_alone<M: MigratorTrait>(url: &str, timeout: Duration) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(1)
        .connect_timeout(timeout)
        .sqlx_logging(false);
    let conn = Database::connect(options).await?;
    conn.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await?;
    let migrated = M::up(&conn, None).await;
    // Closing the connection would release it too; say so plainly.
    let _ = conn
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await;
    let _ = conn.close().await;
    migrated
}

fn sqlite_options(url: &str, connections: u32, read_only: bool, timeout: Duration) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(connections)
        .min_connections(if read_only { 1 } else { 0 })
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        // A SQLite connection is a file handle in this process, not a socket
        // that can die: pinging it before each use only doubles the round
        // trips to its worker thread.
        .test_before_acquire(false)
        .sqlx_logging(false);
    options.map_sqlx_sqlite_opts(move |o| {
        o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
            // Another process (a second replica, a CLI) may hold the write lock for a moment.
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .create_if_missing(!read_only)
            .read_only(read_only)
    });
    options
}

/// Whether an insert failed because the key is taken: how the stores tell a
/// concurrent first call (answer as a retry) from a real failure.
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password, and this one has one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL at all: show nothing of it that could be a secret.
        Err(_) => "<not a URL>".to_string(),
    }
}

/// A database of its own for one service on the PostgreSQL server of
/// `server_url` (any database on it, e.g. `postgres://postgres@HOST/postgres`):
/// `name` is created when missing; its URL is returned.
pub async fn ensure_postgres_database(server_url: &str, name: &str) -> Result<String, DbOpenError> {
    if !server_url.starts_with("postgres://") && !server_url.starts_with("postgresql://") {
        return Err(DbOpenError::UnsupportedUrl(server_url.to_string()));
    }
    // A name of letters, digits and _ only: it is spliced into CREATE DATABASE.
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(DbOpenError::UnsupportedUrl(format!(
            "{name}: a database name is 1 to 63 lowercase letters, digits and _"
        )));
    }
    use sea_orm::ConnectionTrait;
    let shown = redact(server_url);
    let fail = |source: DbErr| DbOpenError::Connect {
        url: shown.clone(),
        source,
    };
    let admin = Database::connect(server_url).await.map_err(fail)?;
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .map_err(fail)?
        .is_some();
    if !exists {
        match admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
        {
            Ok(_) => {}
            // Another `up` (or a replica) created it meanwhile.
            Err(e) if e.to_string().contains("already exists") => {}
            Err(e) => return Err(fail(e)),
        }
    }
    let _ = admin.close().await;
    let mut url = url::Url::parse(server_url).map_err(|_| DbOpenError::UnsupportedUrl(shown.clone()))?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite://data/catalog.db"), "sqlite://data/catalog.db");
    }
}
