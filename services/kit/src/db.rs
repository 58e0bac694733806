//! Database connections and migrations with sea-orm: a SQLite file (WAL mode)
//! by default, PostgreSQL when given a `postgres://` URL.

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

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

/// Connects to `url` and applies the migrations `M` that have not run yet.
pub async fn connect_and_migrate<M: MigratorTrait>(url: &str) -> Result<DatabaseConnection, DbOpenError> {
    let shown = redact(url);
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(16)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if let Some(path) = url.strip_prefix("sqlite://") {
        let file = path.split('?').next().unwrap_or(path);
        if file != ":memory:"
            && let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| DbOpenError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        // SQLite has one writer at a time, and a deferred transaction that
        // reads before it writes fails with SQLITE_BUSY when another wrote
        // meanwhile. One connection serialises transactions instead; WAL and
        // the busy timeout cover other processes reading the same file.
        options.max_connections(1);
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .create_if_missing(true)
        });
    } else if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(DbOpenError::UnsupportedUrl(shown));
    }
    let db = Database::connect(options)
        .await
        .map_err(|source| DbOpenError::Connect {
            url: shown.clone(),
            source,
        })?;
    M::up(&db, None)
        .await
        .map_err(|source| DbOpenError::Migrate { url: shown, source })?;
    Ok(db)
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
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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
