//! The outbox (T3, SPEC §6): claims queued messages, hands them to the transport and
//! records what became of each. A row is marked `sending` before the transport is called
//! and `sent` after, so a process that dies in between leaves rows that another pass puts
//! back in the queue: the message is then sent again, with the same Message-ID. Rows are
//! never deleted.

pub mod transport;

use crate::store::{Change, Changes, j};
use crate::store::{Store, Tx, on};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinSet;
pub use transport::{Outcome, Transport};

/// Messages claimed at once per pooled connection: enough to keep every connection busy,
/// few enough that a crash leaves little in flight (each of those may arrive twice).
const CLAIM_PER_CONNECTION: usize = 4;
/// A process whose heartbeat is older than this is taken for dead.
const STALE_SECONDS: i64 = 60;
/// The first retry waits this long; each next one twice as long, up to `BACKOFF_CAP`.
const BACKOFF_FIRST_SECONDS: i64 = 60;
const BACKOFF_CAP_SECONDS: i64 = 6 * 3600;

/// This process, as recorded in `instances`.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// When this process last looked for messages left by dead ones (unix ms).
    released_at: Arc<std::sync::atomic::AtomicI64>,
}

impl Instance {
    pub fn new() -> Instance {
        let host = crate::service::host();
        let pid = i64::from(std::process::id());
        let started = Utc::now().timestamp_millis();
        Instance {
            id: format!("{host}:{pid}:{started}"),
            host,
            pid,
            released_at: Arc::default(),
        }
    }

    /// At most every 10 s (and at the first pass), not at every pass of a busy `serve`.
    fn due_for_release(&self) -> bool {
        let now = Utc::now().timestamp_millis();
        let last = self.released_at.load(Ordering::Relaxed);
        if last == 0 || now - last >= 10_000 {
            self.released_at.store(now, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Records that this process is alive (real time, whatever `--now` says).
    pub async fn heartbeat(&self, store: &Store) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let mut tx = store.begin().await?;
        on!(&mut tx, c => sqlx::query(
            "INSERT INTO instances (id, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        ).bind(&self.id).bind(&self.host).bind(self.pid).bind(now).execute(&mut **c).await.map(|_| ()))?;
        tx.commit().await
    }

    /// Forgets this process (on a clean exit).
    pub async fn leave(&self, store: &Store) -> Result<(), sqlx::Error> {
        let mut tx = store.begin().await?;
        on!(&mut tx, c => sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(&self.id).execute(&mut **c).await.map(|_| ()))?;
        tx.commit().await
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance::new()
    }
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    /// Messages found claimed by a process that is gone, queued again.
    pub released: u64,
}

#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    rule_id: String,
    course_id: String,
    person_id: String,
    cycle: i64,
    recipients: String,
    message: Option<Vec<u8>>,
    attempts: i64,
}

/// Sends every message whose time has come at `now`, until none is left or `stop` is set.
pub async fn deliver(
    store: &Store,
    transport: &Arc<Transport>,
    me: &Instance,
    now: DateTime<Utc>,
    max_attempts: u32,
    stop: &AtomicBool,
) -> Result<Delivered, sqlx::Error> {
    let mut report = Delivered {
        released: if me.due_for_release() {
            release_orphans(store, me, now).await?
        } else {
            0
        },
        ..Delivered::default()
    };
    while !stop.load(Ordering::SeqCst) {
        if !store
            .any(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $1)",
                now,
            )
            .await?
        {
            break;
        }
        let batch = claim(
            store,
            me,
            now,
            transport.concurrency() * CLAIM_PER_CONNECTION,
        )
        .await?;
        if batch.is_empty() {
            break;
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut running = JoinSet::new();
        let mut queue = batch.into_iter();
        loop {
            while running.len() < transport.concurrency() {
                let Some(row) = queue.next() else { break };
                let t = Arc::clone(transport);
                running.spawn(async move {
                    let outcome = match &row.message {
                        Some(bytes) => {
                            let name = crate::mail::file_name(
                                &row.rule_id,
                                &row.course_id,
                                &row.person_id,
                                row.cycle,
                            );
                            t.send(&row.recipients, bytes, &name).await
                        }
                        None => Outcome::Permanent("no message was rendered".into()),
                    };
                    (row.id, row.attempts, outcome)
                });
            }
            match running.join_next().await {
                Some(Ok(r)) => results.push(r),
                Some(Err(e)) => tracing::error!("a send task failed: {e}"),
                None => break,
            }
        }
        record(store, me, now, max_attempts, &results, &mut report).await?;
        crate::service::alive();
    }
    Ok(report)
}

/// Marks up to `limit` ready messages `sending` for this process. On PostgreSQL rows
/// another process holds are skipped (FOR UPDATE SKIP LOCKED); SQLite has one writer.
async fn claim(
    store: &Store,
    me: &Instance,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let mut tx = store.begin().await?;
    let lock = match &tx {
        Tx::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Tx::Sqlite(_) => "",
    };
    let rows: Vec<Claimed> = on!(&mut tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE deliveries SET state = 'sending', claimed_by = $1, claimed_at = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id IN (SELECT id FROM deliveries WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $3 \
         ORDER BY next_attempt_at, id LIMIT $4{lock}) \
         RETURNING id, rule_id, course_id, person_id, cycle, recipients, message, attempts"
    ))).bind(&me.id).bind(Utc::now()).bind(now).bind(limit as i64).fetch_all(&mut **c).await)?;
    tx.commit().await?;
    Ok(rows)
}

/// The wait before attempt `attempts + 1`: 1 min, 2, 4, ... up to 6 h.
pub fn backoff(attempts: i64) -> chrono::Duration {
    let exp = attempts.clamp(1, 20) - 1;
    chrono::Duration::seconds((BACKOFF_FIRST_SECONDS << exp).min(BACKOFF_CAP_SECONDS))
}

async fn record(
    store: &Store,
    me: &Instance,
    now: DateTime<Utc>,
    max_attempts: u32,
    results: &[(i64, i64, Outcome)],
    report: &mut Delivered,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    let sent: Vec<i64> = results
        .iter()
        .filter(|(_, _, o)| *o == Outcome::Sent)
        .map(|(id, _, _)| *id)
        .collect();
    for chunk in sent.chunks(500) {
        on!(&mut tx, c => {
            let mut q = sqlx::QueryBuilder::new("UPDATE deliveries SET state = 'sent', sent_at = ");
            q.push_bind(now).push(", updated_at = ").push_bind(now)
                .push(", last_error = NULL, next_attempt_at = NULL WHERE state = 'sending' AND claimed_by = ")
                .push_bind(&me.id).push(" AND id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut **c).await?;
        });
    }
    report.sent += sent.len() as u64;
    for (id, attempts, outcome) in results {
        let (state, next, error) = match outcome {
            Outcome::Sent => continue,
            Outcome::Temporary(why) if *attempts < i64::from(max_attempts) => {
                let next = now + backoff(*attempts);
                tracing::warn!(
                    delivery = id,
                    attempt = attempts,
                    "temporary failure, next attempt at {next}: {why}"
                );
                report.retrying += 1;
                ("retrying", Some(next), why.clone())
            }
            Outcome::Temporary(why) => {
                tracing::error!(delivery = id, "failed after {attempts} attempts: {why}");
                report.failed += 1;
                (
                    "failed",
                    None,
                    format!("gave up after {attempts} attempts: {why}"),
                )
            }
            Outcome::Permanent(why) => {
                tracing::error!(delivery = id, "failed: {why}");
                report.failed += 1;
                ("failed", None, why.clone())
            }
        };
        on!(&mut tx, c => sqlx::query(
            "UPDATE deliveries SET state = $1, next_attempt_at = $2, last_error = $3, updated_at = $4 \
             WHERE id = $5 AND state = 'sending' AND claimed_by = $6",
        ).bind(state).bind(next).bind(error).bind(now).bind(id).bind(&me.id).execute(&mut **c).await.map(|_| ()))?;
    }
    tx.commit().await
}

/// Puts back in the queue the messages claimed by processes that are gone: those on this
/// machine whose process id no longer runs, and any whose heartbeat stopped.
async fn release_orphans(
    store: &Store,
    me: &Instance,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    me.heartbeat(store).await?;
    let mut tx = store.begin().await?;
    let known: Vec<(String, String, i64, DateTime<Utc>)> = on!(&mut tx, c => sqlx::query_as(
        "SELECT id, host, pid, heartbeat_at FROM instances",
    ).fetch_all(&mut **c).await)?;
    let stale = Utc::now() - chrono::Duration::seconds(STALE_SECONDS);
    let dead: Vec<String> = known
        .iter()
        .filter(|(id, host, pid, beat)| {
            *id != me.id
                && (*beat < stale || (*host == me.host && !crate::service::pid_alive(*pid)))
        })
        .map(|(id, ..)| id.clone())
        .collect();
    let alive: Vec<String> = known
        .iter()
        .map(|(id, ..)| id.clone())
        .filter(|id| !dead.contains(id))
        .collect();
    let released = on!(&mut tx, c => {
        let mut q = sqlx::QueryBuilder::new(
            "UPDATE deliveries SET state = 'queued', claimed_by = NULL, next_attempt_at = ",
        );
        q.push_bind(now).push(", updated_at = ").push_bind(now)
            .push(" WHERE state = 'sending' AND (claimed_by IS NULL OR claimed_by NOT IN ");
        crate::store::push_list(&mut q, &alive);
        q.push(")");
        q.build().execute(&mut **c).await?.rows_affected()
    });
    if !dead.is_empty() {
        on!(&mut tx, c => {
            let mut q = sqlx::QueryBuilder::new("DELETE FROM instances WHERE id IN ");
            crate::store::push_list(&mut q, &dead);
            q.build().execute(&mut **c).await?;
        });
    }
    tx.commit().await?;
    if released > 0 {
        tracing::warn!(
            "{released} message(s) were being sent by a registrar process that stopped without finishing; \
             they are queued again (one the SMTP server had already accepted arrives twice, with the same Message-ID)"
        );
    }
    Ok(released)
}

/// One row of `registrar deliveries`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub state: String,
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
pub async fn list(store: &Store, state: Option<&str>) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let rows = on!(&mut tx, c => sqlx::query_as(
        "SELECT id, state, rule_id AS rule, course_id AS course, person_id AS person, cycle, recipients, subject, \
         message_id, attempts, next_attempt_at, last_error, created_at, sent_at FROM deliveries \
         WHERE ($1 IS NULL OR state = $1) ORDER BY id",
    ).bind(state).fetch_all(&mut **c).await)?;
    tx.rollback().await?;
    Ok(rows)
}

/// Why `retry` refused a delivery.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("there is no delivery {0} (see `registrar deliveries`)")]
    Unknown(i64),
    #[error("delivery {0} was already sent{1}; sending it again would break \"exactly once\"")]
    Sent(i64, String),
    #[error("delivery {0} is {1}: only failed or retrying deliveries can be retried")]
    NotFailed(i64, String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Queues a failed (or retrying) delivery for an attempt now. One that failed before a
/// message existed (no valid address, a template error) is fired again from its action,
/// so the fixed address or template is used.
pub async fn retry(
    store: &Store,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), RetryError> {
    type Row = (String, Option<DateTime<Utc>>, bool, i64, String, String);
    let mut tx = store.begin().await?;
    let row: Option<Row> = on!(&mut tx, c => sqlx::query_as(
        "SELECT state, sent_at, message IS NOT NULL, action_id, course_id, person_id FROM deliveries WHERE id = $1",
    ).bind(id).fetch_optional(&mut **c).await)?;
    let Some((state, sent_at, has_message, action, course, person)) = row else {
        return Err(RetryError::Unknown(id));
    };
    match state.as_str() {
        "sent" => {
            return Err(RetryError::Sent(
                id,
                sent_at
                    .map(|t| format!(" at {}", t.to_rfc3339()))
                    .unwrap_or_default(),
            ));
        }
        "failed" | "retrying" => {}
        other => return Err(RetryError::NotFailed(id, other.to_string())),
    }
    if has_message {
        on!(&mut tx, c => sqlx::query(
            "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = $1, last_error = NULL, updated_at = $1 WHERE id = $2",
        ).bind(now).bind(id).execute(&mut **c).await.map(|_| ()))?;
    } else {
        on!(&mut tx, c => sqlx::query(
            "UPDATE actions SET state = 'approved', updated_at = $1 WHERE id = $2",
        ).bind(now).bind(action).execute(&mut **c).await.map(|_| ()))?;
    }
    // D10, and a change that wakes running `serve` processes.
    let mut log = Changes::new(now, actor, "retry");
    log.push(Change {
        entity: "delivery",
        course_id: Some(course),
        person_id: Some(person),
        part_id: None,
        change: "retry",
        before: j(serde_json::json!({ "delivery": id, "state": state })),
        after: j(serde_json::json!({ "delivery": id, "state": "queued" })),
        event: None,
    });
    log.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}
