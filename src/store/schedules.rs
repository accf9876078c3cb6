//! The table `schedules` (T6): per schedule rule, the latest scheduled instant claimed,
//! the one before it, whether every subject of it was reached, and when the rule was first
//! seen.
//!
//! Consistency: the row is read `FOR UPDATE` by the process that decides whether an
//! instant is new; a second process waits, then sees the instant claimed. The instances
//! of an instant are created with `ON CONFLICT DO NOTHING` on a dedup key that holds the
//! instant, so two processes working on one instant still send each message once.

use super::{Lock, Tx, on};
use chrono::{DateTime, Utc};

/// A schedule rule's row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Schedule {
    pub rule_id: String,
    pub first_seen: DateTime<Utc>,
    pub since: Option<DateTime<Utc>>,
    pub instant: Option<DateTime<Utc>>,
    pub done: i32,
}

impl Schedule {
    pub fn done(&self) -> bool {
        self.done != 0
    }
}

/// The rule's row, created (first seen `now`) if there is none.
pub async fn get_or_create(
    tx: &mut Tx,
    rule: &str,
    now: DateTime<Utc>,
    lock: Lock,
) -> Result<Schedule, sqlx::Error> {
    on!(tx, c => sqlx::query(
        "INSERT INTO schedules (rule_id, first_seen, done) VALUES ($1, $2, 1) ON CONFLICT (rule_id) DO NOTHING",
    ).bind(rule).bind(now).execute(&mut **c).await.map(|_| ()))?;
    let sql = format!(
        "SELECT rule_id, first_seen, since, instant, CAST(done AS INTEGER) AS done FROM schedules WHERE rule_id = $1{}",
        lock.clause(tx)
    );
    on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(rule).fetch_one(&mut **c).await)
}

/// Every schedule row (for `plan`).
pub async fn all(tx: &mut Tx) -> Result<Vec<Schedule>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT rule_id, first_seen, since, instant, CAST(done AS INTEGER) AS done FROM schedules ORDER BY rule_id",
    ).fetch_all(&mut **c).await)
}

/// Claims `instant` for the rule (its subjects are now to be reached), with `since` the
/// instant before it.
pub async fn claim(
    tx: &mut Tx,
    rule: &str,
    instant: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE schedules SET instant = $2, since = $3, done = 0 WHERE rule_id = $1",
    ).bind(rule).bind(instant).bind(since).execute(&mut **c).await.map(|_| ()))
}

/// Every subject of `instant` was reached.
pub async fn finish(tx: &mut Tx, rule: &str, instant: DateTime<Utc>) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE schedules SET done = 1 WHERE rule_id = $1 AND instant = $2",
    ).bind(rule).bind(instant).execute(&mut **c).await.map(|_| ()))
}
