//! The table `certification_learners`: one row per learner and certification.
//!
//! Consistency: a change of a learner reads the row `FOR UPDATE` ([`load`] with
//! [`Lock::Update`]) before deciding, so parallel administrator actions, exams and the
//! time pass of several processes apply one after the other, each to the state the
//! previous one left. An assignment inserts with `ON CONFLICT DO NOTHING`: of two parallel
//! assignments one assigns, the other is refused.

use super::{Lock, Store, Tx, on, word};
use crate::domain::certification::Learner;
use chrono::{DateTime, Utc};

#[derive(sqlx::FromRow)]
struct Row {
    status: String,
    cycle: i64,
    cycle_started_at: DateTime<Utc>,
    paid: bool,
    training_overridden: bool,
    exam_passed: bool,
    exam_test_out: bool,
    valid_until: Option<DateTime<Utc>>,
}

pub async fn load(
    tx: &mut Tx,
    certification: &str,
    person: &str,
    lock: Lock,
) -> Result<Option<Learner>, sqlx::Error> {
    let sql = format!(
        "SELECT status, cycle, cycle_started_at, paid, training_overridden, exam_passed, exam_test_out, valid_until \
         FROM certification_learners WHERE certification_id = $1 AND person_id = $2{}",
        lock.clause(tx)
    );
    let row: Option<Row> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(certification).bind(person).fetch_optional(&mut **c).await)?;
    row.map(|r| {
        Ok(Learner {
            status: word(&r.status)?,
            cycle: r.cycle,
            cycle_started_at: r.cycle_started_at,
            paid: r.paid,
            training_overridden: r.training_overridden,
            exam_passed: r.exam_passed,
            exam_test_out: r.exam_test_out,
            valid_until: r.valid_until,
        })
    })
    .transpose()
}

/// Assigns a learner unless assigned already; whether this call assigned.
pub async fn insert(
    tx: &mut Tx,
    certification: &str,
    person: &str,
    l: &Learner,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let n = on!(tx, c => sqlx::query(
        "INSERT INTO certification_learners (certification_id, person_id, status, cycle, cycle_started_at, paid, \
         training_overridden, exam_passed, exam_test_out, valid_until, assigned_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
         ON CONFLICT (certification_id, person_id) DO NOTHING",
    ).bind(certification).bind(person).bind(l.status.as_str()).bind(l.cycle).bind(l.cycle_started_at)
        .bind(l.paid).bind(l.training_overridden).bind(l.exam_passed).bind(l.exam_test_out).bind(l.valid_until)
        .bind(now).execute(&mut **c).await?.rows_affected());
    Ok(n == 1)
}

/// Writes a learner's new state (the row locked by the caller).
pub async fn save(
    tx: &mut Tx,
    certification: &str,
    person: &str,
    l: &Learner,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE certification_learners SET status = $3, cycle = $4, cycle_started_at = $5, paid = $6, \
         training_overridden = $7, exam_passed = $8, exam_test_out = $9, valid_until = $10, updated_at = $11 \
         WHERE certification_id = $1 AND person_id = $2",
    ).bind(certification).bind(person).bind(l.status.as_str()).bind(l.cycle).bind(l.cycle_started_at)
        .bind(l.paid).bind(l.training_overridden).bind(l.exam_passed).bind(l.exam_test_out).bind(l.valid_until)
        .bind(now).execute(&mut **c).await.map(|_| ()))
}

pub async fn delete(tx: &mut Tx, certification: &str, person: &str) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query("DELETE FROM certification_learners WHERE certification_id = $1 AND person_id = $2")
        .bind(certification).bind(person).execute(&mut **c).await.map(|_| ()))
}

/// The learners that training or time can move on: (certification, person).
pub async fn movable(tx: &mut Tx) -> Result<Vec<(String, String)>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT certification_id, person_id FROM certification_learners \
         WHERE status IN ('not_started', 'in_progress', 'recertifying', 'certified', 'expired') \
         ORDER BY certification_id, person_id",
    ).fetch_all(&mut **c).await)
}

/// The learners that time will move (for `serve`'s timer), with their state.
pub async fn timed(tx: &mut Tx) -> Result<Vec<(String, Learner)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Timed {
        certification_id: String,
        #[sqlx(flatten)]
        r: Row,
    }
    let rows: Vec<Timed> = on!(tx, c => sqlx::query_as(
        "SELECT certification_id, status, cycle, cycle_started_at, paid, training_overridden, exam_passed, \
         exam_test_out, valid_until FROM certification_learners \
         WHERE status IN ('certified', 'recertifying', 'expired') AND valid_until IS NOT NULL",
    ).fetch_all(&mut **c).await)?;
    rows.into_iter()
        .map(|t| {
            Ok((
                t.certification_id,
                Learner {
                    status: word(&t.r.status)?,
                    cycle: t.r.cycle,
                    cycle_started_at: t.r.cycle_started_at,
                    paid: t.r.paid,
                    training_overridden: t.r.training_overridden,
                    exam_passed: t.r.exam_passed,
                    exam_test_out: t.r.exam_test_out,
                    valid_until: t.r.valid_until,
                },
            ))
        })
        .collect()
}

/// One learner row for listings.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct LearnerRow {
    pub certification_id: String,
    pub person_id: String,
    pub status: String,
    pub cycle: i64,
    pub valid_until: Option<DateTime<Utc>>,
}

pub async fn list(
    store: &Store,
    certification: Option<&str>,
) -> Result<Vec<LearnerRow>, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let rows = on!(&mut tx, c => sqlx::query_as(
        "SELECT certification_id, person_id, status, cycle, valid_until FROM certification_learners \
         WHERE ($1 IS NULL OR certification_id = $1) ORDER BY certification_id, person_id",
    ).bind(certification).fetch_all(&mut **c).await)?;
    tx.rollback().await?;
    Ok(rows)
}

/// For `plan` and firing: the status and cycle of learners, by (certification, person).
pub async fn states(
    tx: &mut Tx,
    keys: &[(String, String)],
) -> Result<std::collections::HashMap<(String, String), (String, i64)>, sqlx::Error> {
    let mut out = std::collections::HashMap::new();
    for (certification, person) in keys {
        if out.contains_key(&(certification.clone(), person.clone())) {
            continue;
        }
        let row: Option<(String, i64)> = on!(tx, c => sqlx::query_as(
            "SELECT status, cycle FROM certification_learners WHERE certification_id = $1 AND person_id = $2",
        ).bind(certification).bind(person).fetch_optional(&mut **c).await)?;
        if let Some(r) = row {
            out.insert((certification.clone(), person.clone()), r);
        }
    }
    Ok(out)
}

/// The learners whose valid_until lies in `[from, to]`, with their status and cycle.
pub async fn valid_until_between(
    tx: &mut Tx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<LearnerRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT certification_id, person_id, status, cycle, valid_until FROM certification_learners \
         WHERE valid_until >= $1 AND valid_until <= $2 ORDER BY certification_id, person_id",
    ).bind(from).bind(to).fetch_all(&mut **c).await)
}

/// The certifications a person is a learner of.
pub async fn of_person(tx: &mut Tx, person: &str) -> Result<Vec<LearnerRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT certification_id, person_id, status, cycle, valid_until FROM certification_learners \
         WHERE person_id = $1 ORDER BY certification_id",
    ).bind(person).fetch_all(&mut **c).await)
}
