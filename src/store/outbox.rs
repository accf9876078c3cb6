//! The tables `deliveries` (the outbox, SPEC §6: one row per fired action instance,
//! holding the exact message; never deleted) and `instances` (the registrar processes
//! that deliver, with their heartbeats).
//!
//! Consistency: a delivery row is created in the transaction that fires its instance; the
//! unique keys on the action and on (rule, subject, person, cycle) make a second row for
//! one dedup key impossible. Messages are claimed with `UPDATE ... WHERE id IN (SELECT ...
//! FOR UPDATE SKIP LOCKED)` (PostgreSQL) and every later update names the claiming process
//! (`WHERE state = 'sending' AND claimed_by = $me`), so a row released by another process
//! is never marked by the one that lost it. Heartbeats are judged by the database's clock.

use super::{Store, Tx, on, push_list};
use crate::domain::{DeliveryState, SubjectKind};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

/// A new outbox row: the message, or why there is none (the delivery then fails with that
/// reason, and `retry` fires its action again).
pub struct NewDelivery<'a> {
    pub action: i64,
    pub rule: &'a str,
    pub kind: SubjectKind,
    pub course: &'a str,
    pub person: &'a str,
    pub cycle: i64,
    /// A schedule rule's instant (Unix seconds); 0 for event rules.
    pub instant: i64,
    pub due_at: Option<DateTime<Utc>>,
    pub message: Result<Message<'a>, &'a str>,
}

pub struct Message<'a> {
    pub recipients: &'a str,
    pub subject: &'a str,
    pub message_id: &'a str,
    pub bytes: &'a [u8],
}

/// Queues a message (or records why there is none). A failed row without a message is
/// filled in when `retry` fires the action again; any other existing row stays.
pub async fn insert(
    tx: &mut Tx,
    d: &NewDelivery<'_>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    insert_many(tx, std::slice::from_ref(d), now).await
}

/// [`insert`] of many rows, a few statements for any number (the firing pass queues a
/// batch at once).
pub async fn insert_many(
    tx: &mut Tx,
    rows: &[NewDelivery<'_>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // 18 values a row: 9,000 a statement, well below either backend's limit.
    for chunk in rows.chunks(500) {
        on!(tx, c => {
            let mut q = QueryBuilder::new(
                "INSERT INTO deliveries (action_id, rule_id, subject_kind, course_id, person_id, cycle, state, recipients, \
                 subject, message_id, message, attempts, next_attempt_at, last_error, due_at, created_at, updated_at, instant) ",
            );
            q.push_values(chunk, |mut b, d| {
                let (state, recipients, subject, message_id, bytes, error) = match &d.message {
                    Ok(m) => (DeliveryState::Queued, m.recipients, m.subject, m.message_id, Some(m.bytes), None),
                    Err(why) => (DeliveryState::Failed, "", "", "", None, Some(*why)),
                };
                b.push_bind(d.action).push_bind(d.rule).push_bind(d.kind.as_str()).push_bind(d.course)
                    .push_bind(d.person).push_bind(d.cycle).push_bind(state.as_str()).push_bind(recipients)
                    .push_bind(subject).push_bind(message_id).push_bind(bytes).push_bind(0_i64).push_bind(now)
                    .push_bind(error).push_bind(d.due_at).push_bind(now).push_bind(now).push_bind(d.instant);
            });
            q.push(
                " ON CONFLICT (rule_id, course_id, person_id, cycle, instant) DO UPDATE SET state = excluded.state, \
                 recipients = excluded.recipients, subject = excluded.subject, message_id = excluded.message_id, \
                 message = excluded.message, attempts = 0, next_attempt_at = excluded.next_attempt_at, \
                 last_error = excluded.last_error, updated_at = excluded.updated_at \
                 WHERE deliveries.message IS NULL AND deliveries.state = 'failed'",
            );
            q.build().execute(&mut **c).await?;
        });
    }
    // A message that could not be made is an attempt that failed, with its reason, for
    // the office's pages (rare: an address missing, a template error).
    let unmade: Vec<i64> = rows
        .iter()
        .filter(|d| d.message.is_err())
        .map(|d| d.action)
        .collect();
    for chunk in unmade.chunks(500) {
        on!(tx, c => {
            let mut q = QueryBuilder::new(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, answer) \
                 SELECT d.id, (SELECT COUNT(*) FROM delivery_attempts a WHERE a.delivery_id = d.id) + 1, ",
            );
            q.push_bind(now)
                .push(", 'failed', d.last_error FROM deliveries d WHERE d.state = 'failed' AND d.message IS NULL AND d.updated_at = ")
                .push_bind(now)
                .push(" AND d.action_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(") ON CONFLICT DO NOTHING");
            q.build().execute(&mut **c).await?;
        });
    }
    Ok(())
}

/// Whether any message is ready to send at `now` (a cheap read before the write lock).
pub async fn any_ready(store: &Store, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    store
        .any(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $1)",
            now,
        )
        .await
}

/// A message claimed for sending.
#[derive(sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub rule_id: String,
    pub course_id: String,
    pub person_id: String,
    pub cycle: i64,
    pub instant: i64,
    pub recipients: String,
    pub message: Option<Vec<u8>>,
    pub attempts: i64,
}

/// Marks up to `limit` ready messages `sending` for process `me`. On PostgreSQL rows
/// another process holds are skipped; SQLite has one writer.
pub async fn claim(
    tx: &mut Tx,
    me: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    // SQLite's planner, without statistics, takes the index on (state, id) and sorts every
    // queued row at each claim (quadratic in the queue: 1.2 ms a claim at 20,000 queued);
    // the partial index on the ready rows gives them in order.
    let (lock, index) = match tx {
        Tx::Postgres(_) => (" FOR UPDATE SKIP LOCKED", ""),
        Tx::Sqlite(_) => ("", " INDEXED BY deliveries_ready"),
    };
    on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE deliveries SET state = 'sending', claimed_by = $1, claimed_at = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM deliveries{index} WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $3 \
         ORDER BY next_attempt_at, id LIMIT $4{lock}) \
         RETURNING id, rule_id, course_id, person_id, cycle, instant, recipients, message, attempts"
    ))).bind(me).bind(Utc::now()).bind(now).bind(limit).fetch_all(&mut **c).await)
}

/// Records messages the server accepted (still claimed by `me`).
pub async fn mark_sent(
    tx: &mut Tx,
    me: &str,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(500) {
        on!(tx, c => sent_update(me, chunk, now).build().execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// The statement of [`mark_sent`] for up to 500 ids.
fn sent_update<'a, DB: sqlx::Database>(
    me: &'a str,
    ids: &[i64],
    now: DateTime<Utc>,
) -> QueryBuilder<DB>
where
    for<'t> &'a str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> DateTime<Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let mut q = QueryBuilder::new("UPDATE deliveries SET state = 'sent', sent_at = ");
    q.push_bind(now)
        .push(", updated_at = ")
        .push_bind(now)
        .push(
            ", last_error = NULL, next_attempt_at = NULL WHERE state = 'sending' AND claimed_by = ",
        )
        .push_bind(me)
        .push(" AND id IN (");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    q.push(")");
    q
}

/// [`mark_sent`] as one statement of its own, outside any transaction (a single UPDATE is
/// atomic by itself): what delivery records after most sends. On SQLite one round trip to
/// the writing connection instead of three (BEGIN, UPDATE, COMMIT), while the messages
/// wait for it to take the next.
pub async fn mark_sent_alone(
    store: &Store,
    me: &str,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(500) {
        match store {
            Store::Sqlite(_, write) => {
                sent_update(me, chunk, now).build().execute(write).await?;
            }
            Store::Postgres(pool) => {
                sent_update(me, chunk, now).build().execute(pool).await?;
            }
        }
    }
    Ok(())
}

/// Puts claimed messages that were not sent back in the queue, their attempt not counted
/// (a stop, or delivery paused on a configuration problem).
pub async fn unclaim(
    tx: &mut Tx,
    me: &str,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(500) {
        on!(tx, c => {
            let mut q = QueryBuilder::new(
                "UPDATE deliveries SET state = 'queued', claimed_by = NULL, attempts = attempts - 1, updated_at = ",
            );
            q.push_bind(now)
                .push(" WHERE state = 'sending' AND claimed_by = ")
                .push_bind(me)
                .push(" AND id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut **c).await?;
        });
    }
    Ok(())
}

/// Records a failed attempt (still claimed by `me`): `retrying` with the next attempt's
/// time, or `failed`.
pub async fn mark_unsent(
    tx: &mut Tx,
    me: &str,
    id: i64,
    state: DeliveryState,
    next: Option<DateTime<Utc>>,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, answer) \
         SELECT id, attempts, $1, $2, $3 FROM deliveries WHERE id = $4 AND state = 'sending' AND claimed_by = $5 \
         ON CONFLICT DO NOTHING",
    ).bind(now).bind(state.as_str()).bind(error).bind(id).bind(me).execute(&mut **c).await.map(|_| ()))?;
    on!(tx, c => sqlx::query(
        "UPDATE deliveries SET state = $1, next_attempt_at = $2, last_error = $3, updated_at = $4 \
         WHERE id = $5 AND state = 'sending' AND claimed_by = $6",
    ).bind(state.as_str()).bind(next).bind(error).bind(now).bind(id).bind(me).execute(&mut **c).await.map(|_| ()))
}

/// Records that process `id` is alive, stamped with the database's clock.
pub async fn heartbeat(store: &Store, id: &str, host: &str, pid: i64) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    on!(&mut tx, c => sqlx::query(
        "INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = CURRENT_TIMESTAMP",
    ).bind(id).bind(host).bind(pid).execute(&mut **c).await.map(|_| ()))?;
    tx.commit().await
}

/// Forgets a process (on a clean exit).
pub async fn leave(store: &Store, id: &str) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    on!(&mut tx, c => sqlx::query("DELETE FROM instances WHERE id = $1")
        .bind(id).execute(&mut **c).await.map(|_| ()))?;
    tx.commit().await
}

/// A registrar process as recorded: id, host, pid, and whether its heartbeat is older than
/// `stale_seconds` by the database's clock.
pub async fn processes(
    tx: &mut Tx,
    stale_seconds: i64,
) -> Result<Vec<(String, String, i64, bool)>, sqlx::Error> {
    let rows: Vec<(String, String, i64, f64)> = match tx {
        Tx::Sqlite(c) => {
            sqlx::query_as(
                "SELECT id, host, pid, CAST((julianday('now') - julianday(heartbeat_at)) * 86400.0 AS REAL) FROM instances",
            )
            .fetch_all(&mut **c)
            .await?
        }
        Tx::Postgres(c) => {
            sqlx::query_as(
                "SELECT id, host, pid, CAST(EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - heartbeat_at)) AS DOUBLE PRECISION) FROM instances",
            )
            .fetch_all(&mut **c)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, host, pid, age)| (id, host, pid, age > stale_seconds as f64))
        .collect())
}

/// Queues again the messages claimed by a process that is gone: one of `dead`, one with
/// no heartbeat in the last `stale_seconds` (by the database's clock), or none at all;
/// never `me`'s. Returns how many.
pub async fn release_orphans(
    tx: &mut Tx,
    me: &str,
    dead: &[String],
    stale_seconds: i64,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let fresh = match tx {
        Tx::Sqlite(_) => format!(
            "julianday(i.heartbeat_at) > julianday('now') - {}",
            stale_seconds as f64 / 86_400.0
        ),
        Tx::Postgres(_) => {
            format!("i.heartbeat_at > CURRENT_TIMESTAMP - INTERVAL '{stale_seconds} seconds'")
        }
    };
    on!(tx, c => {
        let mut q = QueryBuilder::new(
            "UPDATE deliveries SET state = 'queued', claimed_by = NULL, next_attempt_at = ",
        );
        q.push_bind(now).push(", updated_at = ").push_bind(now)
            .push(" WHERE state = 'sending' AND (claimed_by IS NULL OR (claimed_by <> ")
            .push_bind(me)
            .push(" AND (NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = deliveries.claimed_by AND ")
            .push(fresh)
            .push(")");
        if !dead.is_empty() {
            q.push(" OR claimed_by IN ");
            push_list(&mut q, dead);
        }
        q.push(")))");
        Ok(q.build().execute(&mut **c).await?.rows_affected())
    })
}

/// Queues again the messages this process itself left claimed by a pass that ended on an
/// error (the next pass of the process calls this: nothing of it is in flight then).
pub async fn release_own(tx: &mut Tx, me: &str, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE deliveries SET state = 'queued', claimed_by = NULL, next_attempt_at = $2, updated_at = $2 \
         WHERE state = 'sending' AND claimed_by = $1",
    ).bind(me).bind(now).execute(&mut **c).await.map(|r| r.rows_affected()))
}

/// Whether this process has messages claimed (a cheap read).
pub async fn any_claimed_by(store: &Store, me: &str) -> Result<bool, sqlx::Error> {
    let q = "SELECT EXISTS (SELECT 1 FROM deliveries WHERE state = 'sending' AND claimed_by = $1)";
    match store {
        Store::Sqlite(p, _) => sqlx::query_scalar(q).bind(me).fetch_one(p).await,
        Store::Postgres(p) => sqlx::query_scalar(q).bind(me).fetch_one(p).await,
    }
}

pub async fn forget_processes(tx: &mut Tx, ids: &[String]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    on!(tx, c => {
        let mut q = QueryBuilder::new("DELETE FROM instances WHERE id IN ");
        push_list(&mut q, ids);
        q.build().execute(&mut **c).await.map(|_| ())
    })
}

/// One row of `registrar deliveries`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    /// The action instance it delivers (`registrar plan`'s id).
    pub action: i64,
    #[sqlx(try_from = "String")]
    pub state: DeliveryState,
    pub rule: String,
    pub course: String,
    pub person: String,
    pub cycle: i64,
    pub recipients: String,
    pub subject: String,
    pub message_id: String,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The outbox, oldest first, optionally of one state.
pub async fn list(
    store: &Store,
    state: Option<DeliveryState>,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let rows = on!(&mut tx, c => sqlx::query_as(
        "SELECT id, action_id AS action, state, rule_id AS rule, course_id AS course, person_id AS person, cycle, \
         recipients, subject, message_id, attempts, next_attempt_at, last_error, created_at, sent_at FROM deliveries \
         WHERE ($1 IS NULL OR state = $1) ORDER BY id",
    ).bind(state.map(DeliveryState::as_str)).fetch_all(&mut **c).await)?;
    tx.rollback().await?;
    Ok(rows)
}

/// A delivery that failed, for the office digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailedRow {
    pub id: i64,
    pub rule: String,
    pub course: String,
    pub person: String,
    pub recipients: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// The deliveries that failed (for good) after `since` and at or before `until`.
pub async fn failed_between(
    tx: &mut Tx,
    since: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Result<Vec<FailedRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, rule_id AS rule, course_id AS course, person_id AS person, recipients, last_error AS reason, \
         updated_at AS at FROM deliveries WHERE state = 'failed' AND ($1 IS NULL OR updated_at > $1) \
         AND updated_at <= $2 ORDER BY updated_at, id",
    ).bind(since).bind(until).fetch_all(&mut **c).await)
}

/// A delivery as `retry` sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ForRetry {
    #[sqlx(try_from = "String")]
    pub state: DeliveryState,
    pub sent_at: Option<DateTime<Utc>>,
    pub has_message: bool,
    pub action_id: i64,
    pub course_id: String,
    pub person_id: String,
}

/// One delivery, locked for a change.
pub async fn for_retry(tx: &mut Tx, id: i64) -> Result<Option<ForRetry>, sqlx::Error> {
    let lock = super::Lock::Update.clause(tx);
    let sql = format!(
        "SELECT state, sent_at, message IS NOT NULL AS has_message, action_id, course_id, person_id \
         FROM deliveries WHERE id = $1{lock}"
    );
    on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **c).await)
}

/// Queues a delivery for an attempt at `now`, its attempts counted afresh.
pub async fn requeue(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = $1, last_error = NULL, updated_at = $1 WHERE id = $2",
    ).bind(now).bind(id).execute(&mut **c).await.map(|_| ()))
}

/// Outbox figures for `/metrics`: rows by state, messages ready now, the oldest ready time.
pub struct Figures {
    pub by_state: Vec<(String, i64)>,
    pub ready: i64,
    pub oldest_ready: Option<DateTime<Utc>>,
}

pub async fn figures(tx: &mut Tx, now: DateTime<Utc>) -> Result<Figures, sqlx::Error> {
    let by_state: Vec<(String, i64)> = on!(tx, c => sqlx::query_as(
        "SELECT state, COUNT(*) FROM deliveries GROUP BY state",
    ).fetch_all(&mut **c).await)?;
    let (ready, oldest_ready): (i64, Option<DateTime<Utc>>) = on!(tx, c => sqlx::query_as(
        "SELECT COUNT(*), MIN(next_attempt_at) FROM deliveries WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $1",
    ).bind(now).fetch_one(&mut **c).await)?;
    Ok(Figures {
        by_state,
        ready,
        oldest_ready,
    })
}

/// When the next queued or retrying message is due.
pub async fn next_attempt(tx: &mut Tx) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE state IN ('queued', 'retrying')",
    ).fetch_one(&mut **c).await)
}

/// How many messages were sent, by rule and course (or certification).
pub async fn sent_counts(
    tx: &mut Tx,
    rule: Option<&str>,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT rule_id, course_id, COUNT(*) FROM deliveries WHERE state = 'sent' AND ($1 IS NULL OR rule_id = $1) \
         GROUP BY rule_id, course_id",
    ).bind(rule).fetch_all(&mut **c).await)
}

/// What the office's deliveries page filters by (every field optional).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub state: Option<DeliveryState>,
    pub rule: Option<String>,
    pub course: Option<String>,
    pub person: Option<String>,
    /// Made (fired) at or after / before.
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

const ROW: &str = "SELECT id, action_id AS action, state, rule_id AS rule, course_id AS course, person_id AS person, cycle, \
     recipients, subject, message_id, attempts, next_attempt_at, last_error, created_at, sent_at FROM deliveries";

/// A page of the outbox, newest first: up to `limit` rows with an id below `before`.
pub async fn page(
    tx: &mut Tx,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    on!(tx, c => {
        let mut q = QueryBuilder::new(ROW);
        q.push(" WHERE 1 = 1");
        if let Some(s) = f.state {
            q.push(" AND state = ").push_bind(s.as_str());
        }
        if let Some(r) = &f.rule {
            q.push(" AND rule_id = ").push_bind(r.clone());
        }
        if let Some(v) = &f.course {
            q.push(" AND course_id = ").push_bind(v.clone());
        }
        if let Some(v) = &f.person {
            q.push(" AND person_id = ").push_bind(v.clone());
        }
        if let Some(t) = f.from {
            q.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = f.until {
            q.push(" AND created_at < ").push_bind(t);
        }
        if let Some(b) = before {
            q.push(" AND id < ").push_bind(b);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        q.build_query_as().fetch_all(&mut **c).await
    })
}

/// One delivery with its message as it was sent (or is to be sent).
pub async fn one(
    tx: &mut Tx,
    id: i64,
) -> Result<Option<(DeliveryRow, Option<Vec<u8>>)>, sqlx::Error> {
    let row: Option<DeliveryRow> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!("{ROW} WHERE id = $1")))
        .bind(id).fetch_optional(&mut **c).await)?;
    let Some(row) = row else { return Ok(None) };
    let message: Option<Vec<u8>> = on!(tx, c => sqlx::query_scalar("SELECT message FROM deliveries WHERE id = $1")
        .bind(id).fetch_one(&mut **c).await)?;
    Ok(Some((row, message)))
}

/// One attempt to hand a message to the server. Failed attempts have a row each; the
/// attempt that succeeded is the delivery's `sent_at` (no row, so that recording what was
/// sent stays one statement a batch).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub outcome: String,
    pub answer: Option<String>,
}

pub async fn attempts(tx: &mut Tx, id: i64) -> Result<Vec<Attempt>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT attempt, at, outcome, answer FROM delivery_attempts WHERE delivery_id = $1 ORDER BY at, attempt",
    ).bind(id).fetch_all(&mut **c).await)
}

/// Messages sent at or after `since`.
pub async fn sent_since(tx: &mut Tx, since: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    // SQLite's planner, without statistics, takes the index on (state, id) and reads every
    // sent row (240 ms at a million); the partial index on the sent time reads today's.
    let index = match tx {
        Tx::Postgres(_) => "",
        Tx::Sqlite(_) => " INDEXED BY deliveries_sent_at",
    };
    on!(tx, c => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM deliveries{index} WHERE state = 'sent' AND sent_at >= $1"
    ))).bind(since).fetch_one(&mut **c).await)
}

/// Deliveries in a state (meant for the few: failed, retrying, queued, sending), and how
/// many of them changed at or after `since`.
pub async fn in_state(
    tx: &mut Tx,
    state: DeliveryState,
    since: DateTime<Utc>,
) -> Result<(i64, i64), sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN updated_at >= $2 THEN 1 ELSE 0 END), 0) FROM deliveries WHERE state = $1",
    ).bind(state.as_str()).bind(since).fetch_one(&mut **c).await)
}

/// The deliveries of some people in one course (or certification), newest first.
pub async fn of_people_in(
    tx: &mut Tx,
    course: &str,
    people: &[String],
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    if people.is_empty() {
        return Ok(Vec::new());
    }
    on!(tx, c => {
        let mut q = QueryBuilder::new(ROW);
        q.push(" WHERE course_id = ").push_bind(course).push(" AND person_id IN ");
        push_list(&mut q, people);
        q.push(" ORDER BY id DESC");
        q.build_query_as().fetch_all(&mut **c).await
    })
}

/// A course's (or certification's) deliveries counted by rule and state.
pub async fn counts_of_course(
    tx: &mut Tx,
    course: &str,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT rule_id, state, COUNT(*) FROM deliveries WHERE course_id = $1 GROUP BY rule_id, state ORDER BY rule_id, state",
    ).bind(course).fetch_all(&mut **c).await)
}
