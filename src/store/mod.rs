//! The database: one `Store` with SQLite and PostgreSQL behind it. Both run the same SQL
//! (`$N` placeholders work in both); each body is written once and compiled per backend
//! by the `on!` macro. Migrations are embedded and applied by `Store::open`.

pub mod certifications;
mod log;
pub mod read;
pub mod scan;
pub mod write;

pub use log::{Change, Changes, Json, j};

use crate::config::{DatabaseUrl, redact_url};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot migrate the database {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A pool on one of the two backends.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A transaction on one of the two backends.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs the same body on whichever backend `$tx` holds; `$c` is the connection
/// (`&mut *$c` is an executor).
#[macro_export]
#[doc(hidden)]
macro_rules! store_on {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite($c) => $body,
            $crate::store::Tx::Postgres($c) => $body,
        }
    };
}
pub use crate::store_on as on;

impl Store {
    /// Connects (creating an SQLite file on first use) and applies pending migrations.
    pub async fn open(url: &DatabaseUrl) -> Result<Store, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30))
                    // Rows cross from the SQLite worker thread in batches, not one by one.
                    .row_buffer_size(4096)
                    // A 32 MiB page cache keeps a large import from spilling to the WAL page by page.
                    .pragma("cache_size", "-32768");
                Store::open_sqlite(opts, &format!("sqlite://{}", path.display())).await
            }
            DatabaseUrl::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
                    url: redact_url(url),
                    source,
                })?;
                Store::open_postgres(opts, &redact_url(url)).await
            }
        }
    }

    pub async fn open_sqlite(opts: SqliteConnectOptions, shown: &str) -> Result<Store, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                url: shown.to_string(),
                source,
            })?;
        SQLITE_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: shown.to_string(),
                source,
            })?;
        Ok(Store::Sqlite(pool))
    }

    pub async fn open_postgres(opts: PgConnectOptions, shown: &str) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                url: shown.to_string(),
                source,
            })?;
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: shown.to_string(),
                source,
            })?;
        Ok(Store::Postgres(pool))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A transaction that may write. On SQLite it takes the write lock at once (BEGIN
    /// IMMEDIATE): a deferred transaction that reads, then writes after another process
    /// wrote, fails with SQLITE_BUSY_SNAPSHOT however long it waits.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Store::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Whether `sql` (a `SELECT EXISTS (...)` style query with `now` as $1, if used) finds
    /// anything: a cheap read before taking the write lock for work that is usually absent.
    pub async fn any(&self, sql: &'static str, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
        match self {
            Store::Sqlite(p) => {
                sqlx::query_scalar::<_, bool>(sql)
                    .bind(now)
                    .fetch_one(p)
                    .await
            }
            Store::Postgres(p) => {
                sqlx::query_scalar::<_, bool>(sql)
                    .bind(now)
                    .fetch_one(p)
                    .await
            }
        }
    }

    /// A transaction that only reads: a consistent snapshot that blocks no writer.
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Store::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Store::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(p) => p.close().await,
            Store::Postgres(p) => p.close().await,
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await,
        }
    }
}

/// Appends `(id, id, ...)` as bound parameters, for `... IN` lists of caller keys.
pub(crate) fn push_list<DB: sqlx::Database>(q: &mut sqlx::QueryBuilder<DB>, ids: &[String])
where
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    q.push("(");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(id.clone());
    }
    q.push(")");
}

/// Parses a word stored in the database; a bad one is a decode error, not a panic.
pub(crate) fn word<T: FromStr<Err = String>>(s: &str) -> Result<T, sqlx::Error> {
    s.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))
}
