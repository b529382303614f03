//! Database plumbing shared by the services: connecting to PostgreSQL or a
//! SQLite file with settings that make an acknowledged write durable, and
//! applying a service's migrations safely when several replicas start at once.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Error, Result};

/// How long a connection attempt may take before the store counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a SQLite write waits for the one writer SQLite allows before it
/// gives up with SQLITE_BUSY (answered UNAVAILABLE, see `error.rs`). Longer
/// than any write of the embedded trial takes, shorter than the default
/// call deadline, so a caller hears UNAVAILABLE rather than nothing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`BeginWrite::begin_write`] says when a call's deadline came before
/// SQLite's write lock; `error.rs` answers it UNAVAILABLE, as a busy database.
pub const SQLITE_WRITE_WAIT_EXPIRED: &str =
    "the write lock of the SQLite database was not free before the call's deadline";

/// Starting a transaction that will write.
///
/// On SQLite a plain `BEGIN` is deferred: the transaction reads first and
/// asks for the write lock at its first write. When another connection
/// committed in between, SQLite cannot upgrade the reader's snapshot and
/// fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT), without
/// waiting for the busy timeout; twenty concurrent IdentifyProfile calls
/// lost 18 of 20 that way. `BEGIN IMMEDIATE` takes the write lock first,
/// waiting its turn under the busy timeout, so concurrent writers queue
/// instead of failing. PostgreSQL has row locks and keeps its plain `BEGIN`.
#[async_trait::async_trait]
pub trait BeginWrite {
    /// A transaction that holds SQLite's write lock from its start (a plain
    /// transaction on PostgreSQL).
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr>;
}

#[async_trait::async_trait]
impl BeginWrite for DatabaseConnection {
    async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        match self.get_database_backend() {
            DatabaseBackend::Sqlite => {
                let begin = self.begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                });
                // A call whose deadline comes before the busy timeout stops
                // waiting for the lock a little before its deadline, so that
                // its caller hears UNAVAILABLE (busy: retry), not
                // DEADLINE_EXCEEDED.
                match crate::deadline::remaining() {
                    Some(left) if left < SQLITE_BUSY_TIMEOUT => {
                        let margin = (left / 4).min(Duration::from_millis(100));
                        tokio::time::timeout(left.saturating_sub(margin), begin)
                            .await
                            .unwrap_or_else(|_| {
                                Err(DbErr::Custom(SQLITE_WRITE_WAIT_EXPIRED.into()))
                            })
                    }
                    _ => begin.await,
                }
            }
            _ => self.begin().await,
        }
    }
}

/// Connects to the database at `url` (`postgres://…` or `sqlite://…`).
///
/// SQLite runs in WAL mode with `synchronous=FULL`, so a write that returned
/// survives a crash of the process or the machine, and with a busy timeout
/// so that concurrent writers wait instead of failing (write transactions
/// start with [`BeginWrite::begin_write`] so that they wait too).
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<DatabaseConnection> {
    let url = url.expose_secret();
    let folder = sqlite_path(url)
        .and_then(|path| std::path::Path::new(path).parent())
        .filter(|parent| !parent.as_os_str().is_empty());
    if let Some(folder) = folder {
        std::fs::create_dir_all(folder).map_err(|error| {
            Error::Unavailable(format!(
                "cannot create the data folder {}: {error}",
                folder.display()
            ))
        })?;
    }
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|options: SqliteConnectOptions| {
            options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
        });
    Database::connect(options).await.map_err(|error| {
        // The URL may hold a password: name only the kind of store.
        Error::Unavailable(format!(
            "cannot connect to the {} database: {}",
            backend_name(url),
            redact(&error.to_string(), url)
        ))
    })
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

fn backend_name(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "SQLite"
    } else if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "configured"
    }
}

fn redact(message: &str, url: &str) -> String {
    message.replace(url, "<database url>")
}

/// Applies `M`'s pending migrations. On PostgreSQL they run in one
/// transaction under an advisory lock keyed by `service`, so replicas that
/// start together apply them once, one after the other.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection, service: &str) -> Result<()> {
    let transaction = db.begin_write().await?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                [format!("cairn-migrate-{service}").into()],
            ))
            .await?;
    }
    M::up(&transaction, None).await?;
    transaction.commit().await?;
    Ok(())
}

/// Connects `service` to its own database (see `Settings::database_url`).
pub async fn connect_service(
    settings: &crate::Settings,
    service: crate::ServiceKind,
) -> Result<DatabaseConnection> {
    connect(
        &settings.database_url(service),
        settings.database_max_connections,
    )
    .await
}

/// A service is ready when its database answers.
pub struct DatabaseReady(pub DatabaseConnection);

#[async_trait::async_trait]
impl crate::server::Readiness for DatabaseReady {
    async fn check(&self) -> Result<()> {
        ping(&self.0).await
    }
}

/// Ok when the database answers a trivial query: the readiness check.
pub async fn ping(db: &DatabaseConnection) -> Result<()> {
    db.ping()
        .await
        .map_err(|_| Error::Unavailable("the database does not answer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/profile.db?mode=rwc"),
            Some("data/profile.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://localhost/test"), None);
    }

    #[tokio::test]
    async fn sqlite_runs_in_wal_with_full_sync() {
        let folder = std::env::temp_dir().join(format!("cairn-storage-{}", uuid::Uuid::now_v7()));
        let url = SecretString::from(format!("sqlite://{}/x.db?mode=rwc", folder.display()));
        let db = connect(&url, 1).await.unwrap();
        let mode = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            mode.try_get_by_index::<String>(0).unwrap().to_lowercase(),
            "wal"
        );
        let sync = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA synchronous",
            ))
            .await
            .unwrap()
            .unwrap();
        // 2 is FULL.
        assert_eq!(sync.try_get_by_index::<i32>(0).unwrap(), 2);
        let _ = std::fs::remove_dir_all(folder);
    }

    fn temporary_sqlite() -> (std::path::PathBuf, SecretString) {
        let folder = std::env::temp_dir().join(format!("cairn-storage-{}", uuid::Uuid::now_v7()));
        let url = SecretString::from(format!("sqlite://{}/x.db?mode=rwc", folder.display()));
        (folder, url)
    }

    /// Twenty transactions that each read a counter and write it back one
    /// higher, all at once on a pool of ten: each waits its turn, none fails
    /// with "database is locked", and no increment is lost.
    #[tokio::test]
    async fn concurrent_sqlite_write_transactions_wait_their_turn() {
        let (folder, url) = temporary_sqlite();
        let db = connect(&url, 10).await.unwrap();
        db.execute_unprepared("CREATE TABLE counter (n INTEGER NOT NULL)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO counter (n) VALUES (0)")
            .await
            .unwrap();
        let writers = (0..20).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let transaction = db.begin_write().await?;
                let row = transaction
                    .query_one_raw(Statement::from_string(
                        DatabaseBackend::Sqlite,
                        "SELECT n FROM counter",
                    ))
                    .await?
                    .ok_or_else(|| DbErr::Custom("no row".into()))?;
                let n: i64 = row.try_get_by_index(0)?;
                tokio::time::sleep(Duration::from_millis(5)).await;
                transaction
                    .execute_raw(Statement::from_sql_and_values(
                        DatabaseBackend::Sqlite,
                        "UPDATE counter SET n = ?",
                        [(n + 1).into()],
                    ))
                    .await?;
                transaction.commit().await
            })
        });
        let outcomes = futures::future::join_all(writers).await;
        let failed: Vec<String> = outcomes
            .into_iter()
            .filter_map(|outcome| match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(error) => Some(error.to_string()),
            })
            .collect();
        assert!(failed.is_empty(), "{failed:?}");
        let row = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "SELECT n FROM counter",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 20);
        let _ = std::fs::remove_dir_all(folder);
    }

    /// A connection to `url` and its transaction holding SQLite's write lock.
    async fn write_lock_held(url: &SecretString) -> (DatabaseConnection, DatabaseTransaction) {
        let holder = connect(url, 1).await.unwrap();
        holder
            .execute_unprepared("CREATE TABLE t (n INTEGER)")
            .await
            .unwrap();
        let held = holder.begin_write().await.unwrap();
        held.execute_unprepared("INSERT INTO t (n) VALUES (1)")
            .await
            .unwrap();
        (holder, held)
    }

    /// A write that waits for SQLite's lock longer than the busy timeout is
    /// UNAVAILABLE (retry), not INTERNAL.
    #[tokio::test]
    async fn a_sqlite_lock_held_past_the_busy_timeout_is_unavailable() {
        let (folder, url) = temporary_sqlite();
        let (_holder, held) = write_lock_held(&url).await;
        let waiter = connect(&url, 1).await.unwrap();
        // One connection in the pool: the pragma applies to it.
        waiter
            .execute_unprepared("PRAGMA busy_timeout = 200")
            .await
            .unwrap();
        let error = match waiter.begin_write().await {
            Ok(_) => panic!("the lock is held; the write should have waited and given up"),
            Err(error) => Error::from(error),
        };
        assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        held.rollback().await.unwrap();
        let _ = std::fs::remove_dir_all(folder);
    }

    /// A call whose deadline comes before the busy timeout, while another
    /// writer holds the lock, is UNAVAILABLE before its deadline, never
    /// DEADLINE_EXCEEDED or INTERNAL.
    #[tokio::test]
    async fn a_sqlite_lock_held_past_the_calls_deadline_is_unavailable() {
        let (folder, url) = temporary_sqlite();
        let (_holder, held) = write_lock_held(&url).await;
        let waiter = connect(&url, 1).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(400);
        let outcome = crate::deadline::within(Some(deadline), async {
            waiter.begin_write().await.map(|_| ())
        })
        .await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wait must end before the call's deadline"
        );
        let error = Error::from(outcome.expect_err("the lock is held past the deadline"));
        assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
        held.rollback().await.unwrap();
        let _ = std::fs::remove_dir_all(folder);
    }
}
