//! Certification learners in the database: assign, administrator actions, recorded exam
//! and payment, and the pass that moves learners on as steps complete and time passes.
//! Every change writes a history row (D10) with who and why, and raises
//! `certification_status_changed` when the status changes.

use super::{Change, Changes, Store, Tx, j, on};
use crate::domain::EventKind;
use crate::domain::certification::{self as cert, AdminAction, Learner, LearnerStatus, Outcome};
use crate::rules::RuleSet;
use crate::rules::certification::Certification;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

/// Why a certification command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

type Row = (
    String,
    i64,
    DateTime<Utc>,
    bool,
    bool,
    bool,
    bool,
    Option<DateTime<Utc>>,
);

async fn load(
    tx: &mut Tx,
    certification: &str,
    person: &str,
) -> Result<Option<Learner>, sqlx::Error> {
    let row: Option<Row> = on!(tx, c => sqlx::query_as(
        "SELECT status, cycle, cycle_started_at, paid, training_overridden, exam_passed, exam_test_out, valid_until \
         FROM certification_learners WHERE certification_id = $1 AND person_id = $2",
    ).bind(certification).bind(person).fetch_optional(&mut **c).await)?;
    row.map(
        |(status, cycle, started, paid, trained, exam, test_out, until)| {
            Ok(Learner {
                status: status
                    .parse()
                    .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
                cycle,
                cycle_started_at: started,
                paid,
                training_overridden: trained,
                exam_passed: exam,
                exam_test_out: test_out,
                valid_until: until,
            })
        },
    )
    .transpose()
}

async fn save(
    tx: &mut Tx,
    certification: &str,
    person: &str,
    l: &Learner,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "INSERT INTO certification_learners (certification_id, person_id, status, cycle, cycle_started_at, paid, \
         training_overridden, exam_passed, exam_test_out, valid_until, assigned_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
         ON CONFLICT (certification_id, person_id) DO UPDATE SET status = excluded.status, cycle = excluded.cycle, \
         cycle_started_at = excluded.cycle_started_at, paid = excluded.paid, training_overridden = excluded.training_overridden, \
         exam_passed = excluded.exam_passed, exam_test_out = excluded.exam_test_out, valid_until = excluded.valid_until, \
         updated_at = excluded.updated_at",
    ).bind(certification).bind(person).bind(l.status.as_str()).bind(l.cycle).bind(l.cycle_started_at)
        .bind(l.paid).bind(l.training_overridden).bind(l.exam_passed).bind(l.exam_test_out).bind(l.valid_until)
        .bind(now).execute(&mut **c).await.map(|_| ()))
}

/// Whether the learner completed (D3) a course of every required type in this cycle.
async fn training_done(
    tx: &mut Tx,
    spec: &Certification,
    person: &str,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    for course_type in &spec.requires.course_types {
        let done: bool = on!(tx, c => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM enrolments e JOIN courses c ON c.id = e.course_id \
             WHERE e.person_id = $1 AND c.type_id = $2 AND e.completed_at >= $3)",
        ).bind(person).bind(course_type).bind(since).fetch_one(&mut **c).await)?;
        if !done {
            return Ok(false);
        }
    }
    Ok(true)
}

fn snapshot(l: &Learner) -> serde_json::Value {
    json!({"status": l.status, "cycle": l.cycle, "paid": l.paid, "training_overridden": l.training_overridden,
           "exam_passed": l.exam_passed, "exam_test_out": l.exam_test_out, "valid_until": l.valid_until})
}

/// Records a change of a learner (history, and the status event when the status moved).
fn record(
    log: &mut Changes,
    certification: &str,
    person: &str,
    what: &'static str,
    before: Option<&Learner>,
    after: Option<&Learner>,
) {
    let moved = match (before, after) {
        (Some(b), Some(a)) => b.status != a.status,
        (None, Some(_)) => true,
        _ => false,
    };
    log.push(Change {
        entity: "certification",
        course_id: Some(certification.to_string()),
        person_id: Some(person.to_string()),
        // For a certification row the "part" is the status it moved to: the event carries
        // it, so that rules see the status of the moment, not a later one.
        part_id: after.map(|a| a.status.as_str().to_string()),
        change: what,
        before: before.and_then(|b| j(snapshot(b))),
        after: after.and_then(|a| j(snapshot(a))),
        event: moved.then(|| {
            (
                EventKind::CertificationStatusChanged,
                after.map(|a| a.cycle),
            )
        }),
    });
}

fn spec<'a>(rules: &'a RuleSet, id: &str) -> Result<&'a Certification, CertError> {
    rules.certifications.get(id).ok_or_else(|| {
        let known: Vec<&str> = rules.certifications.keys().map(String::as_str).collect();
        CertError::Refused(format!(
            "unknown certification {id:?} (the rules directory defines {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// What a learner command does besides the administrator actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Assign,
    RecordPayment,
    /// An exam result; `test_out` marks a test-out exam, which a pass makes permanent.
    RecordExam {
        passed: bool,
        test_out: bool,
    },
    Admin(AdminAction),
}

/// Applies one command to one learner in one transaction; returns the new status (None:
/// removed).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    actor: &str,
    reason: &str,
    certification: &str,
    person: &str,
    command: Command,
) -> Result<Option<LearnerStatus>, CertError> {
    let spec = spec(rules, certification)?;
    let terms = spec.terms();
    let mut tx = store.begin().await?;
    if crate::store::read::person(&mut tx, person).await?.is_none() {
        return Err(CertError::Refused(format!("unknown person {person:?}")));
    }
    let current = load(&mut tx, certification, person).await?;
    let mut log = Changes::new(now, actor, reason);
    let (what, after): (&'static str, Option<Learner>) = match (command, &current) {
        (Command::Assign, Some(l)) => {
            return Err(CertError::Refused(format!(
                "{person} is already assigned to {certification} (status {})",
                l.status
            )));
        }
        // A course completed within the last validity period counts for the first cycle
        // (it would still be valid); recertification needs a completion in its own cycle.
        (Command::Assign, None) => (
            "assigned",
            Some(Learner {
                cycle_started_at: terms.validity.negated().add_to(now, tz).unwrap_or(now),
                ..Learner::assigned(now)
            }),
        ),
        (_, None) => {
            return Err(CertError::Refused(format!(
                "{person} is not assigned to {certification}; assign first"
            )));
        }
        (Command::RecordPayment, Some(l)) => {
            if !terms.payment_required {
                return Err(CertError::Refused(format!(
                    "{certification} requires no payment"
                )));
            }
            let mut n = l.clone();
            n.paid = true;
            ("payment recorded", Some(n))
        }
        (Command::RecordExam { passed, test_out }, Some(l)) => {
            if !terms.exam {
                return Err(CertError::Refused(format!("{certification} has no exam")));
            }
            if l.exam_test_out && l.exam_passed && !passed {
                return Err(CertError::Refused(
                    "a passed test-out exam is permanent and cannot be reset".into(),
                ));
            }
            let mut n = l.clone();
            n.exam_passed = passed;
            n.exam_test_out = n.exam_test_out || (test_out && passed);
            ("exam recorded", Some(n))
        }
        (Command::Admin(action), Some(l)) => {
            let trained = training_done(&mut tx, spec, person, l.cycle_started_at).await?;
            match cert::act(action, l, &terms, trained, now, tz)
                .map_err(|r| CertError::Refused(r.0))?
            {
                Outcome::Removed => (action.as_str(), None),
                Outcome::Changed(n) => (action.as_str(), Some(n)),
            }
        }
    };
    let after = match after {
        Some(n) => {
            let trained = training_done(&mut tx, spec, person, n.cycle_started_at).await?;
            let n = cert::progress(&n, &terms, trained, now, tz);
            save(&mut tx, certification, person, &n, now).await?;
            Some(n)
        }
        None => {
            on!(&mut tx, c => sqlx::query("DELETE FROM certification_learners WHERE certification_id = $1 AND person_id = $2")
                .bind(certification).bind(person).execute(&mut **c).await.map(|_| ()))?;
            None
        }
    };
    record(
        &mut log,
        certification,
        person,
        what,
        current.as_ref(),
        after.as_ref(),
    );
    log.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(after.map(|a| a.status))
}

/// The pass: completed training moves learners on, and time moves them through the
/// recertification window, expiry and the grace period (also after downtime: each
/// learner is brought to where `now` puts it). Returns how many changed.
pub async fn advance_all(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    if rules.certifications.is_empty() {
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    let rows: Vec<(String, String)> = on!(&mut tx, c => sqlx::query_as(
        "SELECT certification_id, person_id FROM certification_learners \
         WHERE status IN ('not_started', 'in_progress', 'recertifying', 'certified', 'expired')",
    ).fetch_all(&mut **c).await)?;
    let mut log = Changes::new(now, "scheduler", "time and completed training");
    let mut changed = 0;
    for (certification, person) in rows {
        let Some(spec) = rules.certifications.get(&certification) else {
            continue;
        };
        let terms = spec.terms();
        let Some(before) = load(&mut tx, &certification, &person).await? else {
            continue;
        };
        // Time, one stage at a time, each recorded (and raising its event): a learner left
        // alone for years passes every stage, and every stage's email goes out.
        let mut l = before;
        for _ in 0..4 {
            let next = cert::advance(&l, &terms, now, tz);
            if next == l {
                break;
            }
            save(&mut tx, &certification, &person, &next, now).await?;
            record(
                &mut log,
                &certification,
                &person,
                "time",
                Some(&l),
                Some(&next),
            );
            changed += 1;
            l = next;
        }
        let trained = training_done(&mut tx, spec, &person, l.cycle_started_at).await?;
        let next = cert::progress(&l, &terms, trained, now, tz);
        if next != l {
            save(&mut tx, &certification, &person, &next, now).await?;
            record(
                &mut log,
                &certification,
                &person,
                "training completed",
                Some(&l),
                Some(&next),
            );
            changed += 1;
        }
    }
    log.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(changed)
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

/// When time next moves a learner (window, expiry, end of grace), for `serve`'s timer.
pub async fn next_change(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    if rules.certifications.is_empty() {
        return Ok(None);
    }
    let mut tx = store.begin_read().await?;
    let rows: Vec<(String, String)> = on!(&mut tx, c => sqlx::query_as(
        "SELECT certification_id, person_id FROM certification_learners \
         WHERE status IN ('certified', 'recertifying', 'expired') AND valid_until IS NOT NULL",
    ).fetch_all(&mut **c).await)?;
    let mut next: Option<DateTime<Utc>> = None;
    for (certification, person) in rows {
        let Some(spec) = rules.certifications.get(&certification) else {
            continue;
        };
        if let Some(l) = load(&mut tx, &certification, &person).await?
            && let Some(at) = cert::next_change(&l, &spec.terms(), tz)
        {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    tx.rollback().await?;
    Ok(next)
}
