//! The database: one `Store` with SQLite and PostgreSQL behind it, and every SQL
//! statement of the application. Each table family has one module that holds every
//! statement touching it:
//!
//! | module | tables |
//! |---|---|
//! | [`catalogue`] | `courses`, `parts`, `people` |
//! | [`enrolments`] | `enrolments`, `attendance`, `part_results` |
//! | [`certificates`] | `certificates`, `certificate_sequences` |
//! | [`certifications`] | `certification_learners` |
//! | [`actions`] | `actions`, `rule_versions` |
//! | [`outbox`] | `deliveries`, `instances` |
//! | [`history`] | `history`, `events` (filled from history by a trigger) |
//!
//! Both backends run the same SQL (`$N` placeholders work in both); each body is written
//! once and compiled per backend by the `on!` macro. Migrations are embedded and applied
//! by `Store::open`.
//!
//! Concurrency (several processes and many API requests on one PostgreSQL database): a
//! state change locks what it reads before it decides ([`Lock`]), inserts with
//! `ON CONFLICT`, and [`transact!`] runs it again when PostgreSQL aborts it as a
//! deadlock victim or a serialization failure. SQLite has one writer (`BEGIN IMMEDIATE`).

pub mod actions;
pub mod catalogue;
pub mod certificates;
pub mod certifications;
pub mod enrolments;
pub mod history;
pub mod office;
pub mod outbox;
pub mod schedules;

pub use history::{Change, Changes, Json, j};

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
    /// SQLite: a pool for reads, and one connection for every writing transaction. SQLite
    /// has one writer anyway; with one writing connection its page cache stays warm (a
    /// write by another connection makes a connection drop its whole cache), and writers
    /// queue in this process, in order, instead of polling the lock (`busy_timeout`).
    /// Measured with `cargo bench --bench deliver`: delivery 2,000 -> 2,850 messages/s.
    Sqlite(SqlitePool, SqlitePool),
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
        let open_err = |source| StoreError::Open {
            url: shown.to_string(),
            source,
        };
        // Kept open for good: its page cache is the point. Neither pool pings a connection
        // before lending it (sqlx's default): an SQLite connection is a file this process
        // holds open, not a socket that can drop, and the ping was one more round trip to
        // its worker thread for every transaction and every read.
        // The WAL is copied back into the database file by a task of its own
        // ([`checkpoints`]), not by the writing connection after a commit: a checkpoint
        // there (SQLite's default, every 1,000 pages) made every transaction behind it
        // wait for the copy and its two fsyncs. The writing connection still checkpoints
        // once the WAL holds 10,000 pages, should that task fall behind.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                opts.clone()
                    .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string()),
            )
            .await
            .map_err(open_err)?;
        SQLITE_MIGRATIONS
            .run(&write)
            .await
            .map_err(|source| StoreError::Migrate {
                url: shown.to_string(),
                source,
            })?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(3)
            .connect_with(opts.clone())
            .await
            .map_err(open_err)?;
        tokio::spawn(checkpoints(opts, write.close_event()));
        Ok(Store::Sqlite(read, write))
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

    /// Connects without migrating, for reads only (`registrar check`): `None` when the
    /// database is not at this registrar's schema (older, or newer), which a read cannot
    /// assume to understand.
    pub async fn open_current(url: &DatabaseUrl) -> Result<Option<Store>, StoreError> {
        let shown = match url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(u) => redact_url(u),
        };
        let open_err = |source| StoreError::Open {
            url: shown.clone(),
            source,
        };
        let q = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
        let (store, version): (Store, Result<Option<i64>, sqlx::Error>) = match url {
            DatabaseUrl::Sqlite(path) => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(30));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .map_err(open_err)?;
                let v = sqlx::query_scalar(q).fetch_one(&pool).await;
                (Store::Sqlite(pool.clone(), pool), v)
            }
            DatabaseUrl::Postgres(u) => {
                let opts = PgConnectOptions::from_str(u).map_err(open_err)?;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(open_err)?;
                let v = sqlx::query_scalar(q).fetch_one(&pool).await;
                (Store::Postgres(pool), v)
            }
        };
        let latest = match &store {
            Store::Sqlite(..) => SQLITE_MIGRATIONS.iter().map(|m| m.version).max(),
            Store::Postgres(_) => POSTGRES_MIGRATIONS.iter().map(|m| m.version).max(),
        };
        if version.ok().flatten() == latest {
            Ok(Some(store))
        } else {
            store.close().await;
            Ok(None)
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(..) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A transaction that may write. On SQLite it takes the write lock at once (BEGIN
    /// IMMEDIATE): a deferred transaction that reads, then writes after another process
    /// wrote, fails with SQLITE_BUSY_SNAPSHOT however long it waits.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Store::Sqlite(_, w) => Tx::Sqlite(w.begin_with("BEGIN IMMEDIATE").await?),
            Store::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Whether `sql` (a `SELECT EXISTS (...)` style query with `now` as $1, if used) finds
    /// anything: a cheap read before taking the write lock for work that is usually absent.
    pub(crate) async fn any(
        &self,
        sql: &'static str,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        match self {
            Store::Sqlite(p, _) => {
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

    /// A transaction that only reads: one consistent snapshot that blocks no writer (on
    /// PostgreSQL REPEATABLE READ, so that every statement of a `plan` sees the same state).
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Store::Sqlite(p, _) => Tx::Sqlite(p.begin().await?),
            Store::Postgres(p) => Tx::Postgres(
                p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?,
            ),
        })
    }

    /// Whether the database answers (for /healthz).
    pub async fn ping(&self) -> bool {
        match self {
            Store::Sqlite(p, _) => sqlx::query_scalar::<_, i64>("SELECT CAST(1 AS BIGINT)")
                .fetch_one(p)
                .await
                .is_ok(),
            Store::Postgres(p) => sqlx::query_scalar::<_, i64>("SELECT CAST(1 AS BIGINT)")
                .fetch_one(p)
                .await
                .is_ok(),
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(r, w) => {
                r.close().await;
                w.close().await;
            }
            Store::Postgres(p) => p.close().await,
        }
    }
}

/// The WAL size (in pages) at which the writing connection checkpoints itself: only
/// when [`checkpoints`] has fallen that far behind.
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// How often [`checkpoints`] looks while the database is being written, and at most how
/// long it waits while it is not.
const CHECKPOINT_ACTIVE: Duration = Duration::from_millis(100);
const CHECKPOINT_IDLE: Duration = Duration::from_secs(5);

/// Copies what the WAL holds into the database file, on a connection of its own, while
/// the store is open: a passive checkpoint (it waits for no one and makes no one wait;
/// what a reader still uses stays in the WAL until the next one). Every 100 ms while
/// something was written since the last look, backing off to every 5 s when nothing
/// was. Durability is unchanged: a transaction is durable once its commit is in the
/// WAL (see the README on `synchronous=NORMAL`); the checkpoint only moves pages.
async fn checkpoints(opts: SqliteConnectOptions, closed: sqlx::pool::CloseEvent) {
    use sqlx::ConnectOptions;
    let mut closed = std::pin::pin!(closed);
    let mut conn = tokio::select! {
        _ = &mut closed => return,
        c = opts.connect() => match c {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot open a connection for WAL checkpoints ({e}); the writing connection checkpoints itself");
                return;
            }
        },
    };
    let mut last: Option<(i64, i64, i64)> = None;
    let mut period = CHECKPOINT_ACTIVE;
    loop {
        tokio::select! {
            _ = &mut closed => break,
            _ = tokio::time::sleep(period) => {}
        }
        let step = tokio::time::timeout(
            Duration::from_secs(60),
            sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn),
        )
        .await;
        match step {
            Ok(Ok(now)) => {
                // (busy, pages in the WAL, pages copied): the same as last time means
                // nothing was written meanwhile.
                period = if last == Some(now) {
                    (period * 2).min(CHECKPOINT_IDLE)
                } else {
                    CHECKPOINT_ACTIVE
                };
                last = Some(now);
            }
            Ok(Err(e)) => {
                tracing::debug!("WAL checkpoint: {e}");
                period = CHECKPOINT_IDLE;
            }
            Err(_) => {
                tracing::warn!(
                    "a WAL checkpoint took over 60 s; stopping them (the writing connection checkpoints itself)"
                );
                break;
            }
        }
    }
    let _ = sqlx::Connection::close(conn).await;
}

/// An SQLite store in a directory of its own, for unit tests: the directory (removed when
/// dropped) and the store on `t.db` in it.
#[cfg(test)]
pub(crate) async fn temp_sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&DatabaseUrl::Sqlite(dir.path().join("t.db")))
        .await
        .expect("open");
    (dir, store)
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

/// Runs `body` (with `tx` bound to a fresh writing transaction) and commits it; when
/// PostgreSQL aborts it as a deadlock victim or a serialization failure, runs it again (at
/// most [`TRANSACT_ATTEMPTS`] times, after a short random pause). An `Err` from `body`
/// rolls back. `body` must start from scratch each time, and its error type must convert
/// from `sqlx::Error` and say whether it is worth another attempt ([`Retryable`]).
///
/// A macro rather than a function taking an async closure: the body's future then stays
/// an ordinary `Send` future that axum handlers and spawned tasks accept.
#[macro_export]
#[doc(hidden)]
macro_rules! store_transact {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let store_: &$crate::store::Store = &$store;
        let mut attempt_: u32 = 1;
        loop {
            let outcome_ = match store_.begin().await {
                Err(e) => Err(e.into()),
                Ok(mut t_) => {
                    let r_ = async {
                        let $tx = &mut t_;
                        $body
                    }
                    .await;
                    $crate::store::settle(t_, r_).await
                }
            };
            match $crate::store::again(outcome_, &mut attempt_).await {
                ::std::ops::ControlFlow::Break(r_) => break r_,
                ::std::ops::ControlFlow::Continue(()) => {}
            }
        }
    }};
}
pub use crate::store_transact as transact;

/// Commits on `Ok`, rolls back on `Err` (for [`transact!`]).
#[doc(hidden)]
pub async fn settle<T, E: From<sqlx::Error>>(tx: Tx, r: Result<T, E>) -> Result<T, E> {
    match r {
        Ok(v) => tx.commit().await.map(|()| v).map_err(E::from),
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Whether [`transact!`] runs the body again: after a retryable error, while attempts
/// remain (pausing first).
#[doc(hidden)]
pub async fn again<T, E: Retryable>(
    outcome: Result<T, E>,
    attempt: &mut u32,
) -> std::ops::ControlFlow<Result<T, E>> {
    match outcome {
        Err(e) if e.retryable() && *attempt < TRANSACT_ATTEMPTS => {
            tracing::debug!(
                "transaction attempt {attempt} aborted by the database; running it again"
            );
            *attempt += 1;
            tokio::time::sleep(retry_pause(*attempt)).await;
            std::ops::ControlFlow::Continue(())
        }
        other => std::ops::ControlFlow::Break(other),
    }
}

/// How often [`transact!`] tries a transaction the database aborted.
pub const TRANSACT_ATTEMPTS: u32 = 8;

/// 5-50 ms, growing with the attempt, with jitter so that two victims do not collide again.
fn retry_pause(attempt: u32) -> Duration {
    let mut b = [0u8; 2];
    let jitter = getrandom::fill(&mut b).map_or(0, |()| u64::from(u16::from_le_bytes(b)) % 10);
    Duration::from_millis(5 * u64::from(attempt.min(8)) + jitter)
}

/// Whether an error is the database's "run me again": a serialization failure (40001) or
/// a deadlock victim (40P01) on PostgreSQL, a busy database on SQLite.
pub fn retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => matches!(
            d.code().as_deref(),
            Some("40001") | Some("40P01") | Some("5") | Some("517")
        ),
        _ => false,
    }
}

/// Errors that may carry a database error worth a second attempt.
pub trait Retryable {
    fn retryable(&self) -> bool;
}

impl Retryable for sqlx::Error {
    fn retryable(&self) -> bool {
        retryable(self)
    }
}

impl Retryable for anyhow::Error {
    fn retryable(&self) -> bool {
        self.downcast_ref::<sqlx::Error>().is_some_and(retryable)
    }
}

/// How a state change locks the row it reads before deciding on it (PostgreSQL; SQLite's
/// single writer makes every read in a writing transaction a locked one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// A plain read.
    None,
    /// `FOR SHARE`: others may read-lock too, nobody may change the row until we commit
    /// (a mark holds its course this way, so that a change of the course's parts waits).
    Share,
    /// `FOR UPDATE`: we are going to change the row, or decide on its current value.
    Update,
}

impl Lock {
    /// The clause to append to a SELECT on this backend.
    pub(crate) fn clause(self, tx: &Tx) -> &'static str {
        match (tx, self) {
            (Tx::Sqlite(_), _) | (_, Lock::None) => "",
            (Tx::Postgres(_), Lock::Share) => " FOR SHARE",
            (Tx::Postgres(_), Lock::Update) => " FOR UPDATE",
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

/// A list bound as one JSON parameter (read back by [`json_rows`]).
pub(crate) fn json_param<T: serde::Serialize + ?Sized>(list: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(list).map_err(|e| sqlx::Error::Encode(e.into()))
}

/// The rows of a JSON array bound as parameter `$n`, as a `FROM` item `j` whose column
/// `value` is each element (`j.value->>0` the first of an element that is an array).
pub(crate) fn json_rows(tx: &Tx, n: usize) -> String {
    match tx {
        Tx::Sqlite(_) => format!("json_each(${n}) AS j"),
        Tx::Postgres(_) => format!("jsonb_array_elements(${n}::jsonb) AS j(value)"),
    }
}

/// Parses a word stored in the database; a bad one is a decode error, not a panic.
pub(crate) fn word<T: FromStr<Err = String>>(s: &str) -> Result<T, sqlx::Error> {
    s.parse().map_err(|e: String| sqlx::Error::Decode(e.into()))
}

/// Wide reads on SQLite: sqlx's cost per row and per column dominates reads of millions
/// of rows, so `plan` reads one text value per course (each row's fields joined by U+001F,
/// which no id may contain; the rows by U+001E) and splits it here.
pub(crate) mod packed {
    /// Separates the fields of a row (char(31)).
    pub const SEP: char = '\u{1f}';
    /// Separates rows aggregated into one (char(30)).
    pub const ROW: char = '\u{1e}';

    pub fn bad(what: &str) -> sqlx::Error {
        sqlx::Error::Decode(format!("malformed {what} row").into())
    }

    /// The rows of the aggregated values, each split into exactly `N` fields.
    pub fn rows<'a, const N: usize>(
        groups: &'a [String],
        what: &'static str,
    ) -> impl Iterator<Item = Result<[&'a str; N], sqlx::Error>> + 'a {
        groups.iter().flat_map(|g| g.split(ROW)).map(move |r| {
            let f: Vec<&str> = r.split(SEP).collect();
            <[&str; N]>::try_from(f).map_err(|_| bad(what))
        })
    }

    /// An RFC 3339 text as SQLite stores it; empty is `None`.
    pub fn time(s: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
        if s.is_empty() {
            return Ok(None);
        }
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&chrono::Utc)))
            .map_err(|_| bad("timestamp"))
    }

    pub fn int(s: &str, what: &str) -> Result<i64, sqlx::Error> {
        s.parse().map_err(|_| bad(what))
    }

    /// A nullable number (`COALESCE(x, '')`): empty is `None`.
    pub fn opt_int(s: &str, what: &str) -> Result<Option<i64>, sqlx::Error> {
        if s.is_empty() {
            return Ok(None);
        }
        int(s, what).map(Some)
    }

    /// A nullable id (`COALESCE(x, '')`; an id is never empty): empty is `None`.
    pub fn opt(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An office as version 1 left it: a course and a certification with the same id
    /// `shared`, one course instance and one certification instance (its course_id the
    /// certification id), and a certification instance of a certification that is no course.
    const VERSION_1: &[&str] = &[
        "INSERT INTO courses (id, name, type_id, status, start_at, end_at, fields, updated_at) \
         VALUES ('shared', 'BHV', 'safety', 'final', $1, $1, '{}', $1)",
        "INSERT INTO people (id, full_name, fields, updated_at) VALUES ('ole', 'Ole', '{}', $1)",
        "INSERT INTO history (at, actor, source, entity, course_id, person_id, part_id, change, event, cycle) \
         VALUES ($1, 'test', 'test', 'certification', 'shared', 'ole', 'in_progress', 'assigned', 'certification_status_changed', 1)",
        "INSERT INTO actions (rule_id, course_id, person_id, cycle, state, event_at, created_at, updated_at) \
         VALUES ('learner-welcome', 'shared', 'ole', 1, 'waiting', $1, $1, $1)",
        "INSERT INTO actions (rule_id, course_id, person_id, cycle, state, event_at, created_at, updated_at) \
         VALUES ('reminder', 'shared', 'ole', 1, 'waiting', $2, $2, $2)",
        "INSERT INTO actions (rule_id, course_id, person_id, cycle, state, event_at, created_at, updated_at) \
         VALUES ('learner-welcome', 'forklift', 'ole', 1, 'fired', $2, $2, $2)",
        "INSERT INTO deliveries (action_id, rule_id, course_id, person_id, cycle, state, recipients, subject, \
         message_id, created_at, updated_at) SELECT id, rule_id, course_id, person_id, cycle, 'sent', '', '', '', $2, $2 \
         FROM actions WHERE course_id = 'forklift'",
    ];

    /// The WAL is checkpointed while the store stays open (a daemon runs for months): what
    /// was committed reaches the database file itself within moments, not only when the
    /// last connection closes or the WAL holds thousands of pages. Seen through a copy of
    /// the file alone, without its `-wal`.
    #[tokio::test]
    async fn a_commit_reaches_the_database_file_while_the_store_stays_open() {
        let (dir, store) = temp_sqlite().await;
        let path = dir.path().join("t.db");
        let Store::Sqlite(_, write) = &store else {
            unreachable!("an SQLite store")
        };
        sqlx::query(
            "INSERT INTO people (id, full_name, fields, updated_at) VALUES ('ole', 'Ole', '{}', $1)",
        )
        .bind(Utc::now())
        .execute(write)
        .await
        .expect("insert");
        let copy = dir.path().join("copy.db");
        let mut found = 0;
        for _ in 0..100 {
            std::fs::copy(&path, &copy).expect("copy");
            let _ = std::fs::remove_file(dir.path().join("copy.db-wal"));
            let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&copy))
                .await
                .expect("open the copy");
            // Until the first checkpoint even the tables are only in the WAL.
            found = sqlx::query_scalar("SELECT COUNT(*) FROM people WHERE id = 'ole'")
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
            pool.close().await;
            if found == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(found, 1, "the person is still only in the WAL after 10 s");
        store.close().await;
    }

    #[tokio::test]
    async fn migration_0006_gives_certification_instances_their_own_subject_kind_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("v1.db"))
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(opts).await.expect("open");
        let version_1 = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(SQLITE_MIGRATIONS.migrations[..5].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        version_1.run(&pool).await.expect("version 1 schema");
        let (t1, t2) = (Utc::now(), Utc::now() + chrono::Duration::seconds(1));
        for sql in VERSION_1 {
            sqlx::query(*sql)
                .bind(t1)
                .bind(t2)
                .execute(&pool)
                .await
                .expect(sql);
        }
        SQLITE_MIGRATIONS.run(&pool).await.expect("upgrade");
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT rule_id, course_id, subject_kind FROM actions ORDER BY id")
                .fetch_all(&pool)
                .await
                .expect("read");
        assert_eq!(rows, expected());
        let d: String = sqlx::query_scalar("SELECT subject_kind FROM deliveries")
            .fetch_one(&pool)
            .await
            .expect("delivery");
        assert_eq!(d, "certification");
    }

    fn expected() -> Vec<(String, String, String)> {
        [
            ("learner-welcome", "shared", "certification"),
            ("reminder", "shared", "course"),
            ("learner-welcome", "forklift", "certification"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
    }

    #[tokio::test]
    async fn migration_0006_gives_certification_instances_their_own_subject_kind_on_postgres() {
        let Ok(url) = std::env::var("REGISTRAR_TEST_POSTGRES_URL") else {
            eprintln!("skipping the PostgreSQL half: REGISTRAR_TEST_POSTGRES_URL is not set");
            return;
        };
        let schema = format!(
            "m6_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let admin = PgPool::connect(&url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("schema");
        let opts = PgConnectOptions::from_str(&url)
            .expect("url")
            .options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .expect("open");
        let version_1 = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(POSTGRES_MIGRATIONS.migrations[..5].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        version_1.run(&pool).await.expect("version 1 schema");
        let (t1, t2) = (Utc::now(), Utc::now() + chrono::Duration::seconds(1));
        for sql in VERSION_1 {
            sqlx::query(*sql)
                .bind(t1)
                .bind(t2)
                .execute(&pool)
                .await
                .expect(sql);
        }
        POSTGRES_MIGRATIONS.run(&pool).await.expect("upgrade");
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT rule_id, course_id, subject_kind FROM actions ORDER BY id")
                .fetch_all(&pool)
                .await
                .expect("read");
        assert_eq!(rows, expected());
        pool.close().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}
