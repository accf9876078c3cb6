//! Certification learners: assign, administrator actions, recorded exam and payment, and
//! the pass that moves learners on as steps complete and time passes. Every change writes
//! a history row (D10) with who and why, and raises `certification_status_changed` when
//! the status changes. Each change reads the learner's row locked (`FOR UPDATE`) and runs
//! through [`crate::store::transact!`], so parallel changes apply one after the other.

use crate::domain::EventKind;
use crate::domain::certification::{self as cert, AdminAction, Learner, LearnerStatus, Outcome};
use crate::rules::RuleSet;
use crate::rules::certification::Certification;
use crate::store::{
    Change, Changes, Lock, Retryable, Store, Tx, catalogue, certifications, enrolments, j,
};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

/// Why a certification command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Refused(String),
    /// An unknown certification or person, or a person not assigned.
    #[error("{0}")]
    Missing(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl Retryable for CertError {
    fn retryable(&self) -> bool {
        matches!(self, CertError::Db(e) if crate::store::retryable(e))
    }
}

/// Whether the learner completed (D3) a course of every required type in this cycle.
async fn training_done(
    tx: &mut Tx,
    spec: &Certification,
    person: &str,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    for course_type in &spec.requires.course_types {
        if !enrolments::completed_course_of_type(tx, person, course_type, since).await? {
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
    // A removal moves the learner too: its waiting emails are evaluated again (and cancelled).
    let moved = match (before, after) {
        (Some(b), Some(a)) => b.status != a.status,
        (None, Some(_)) | (Some(_), None) => true,
        (None, None) => false,
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
                after.or(before).map(|l| l.cycle),
            )
        }),
    });
}

fn spec<'a>(rules: &'a RuleSet, id: &str) -> Result<&'a Certification, CertError> {
    rules.certifications.get(id).ok_or_else(|| {
        let known: Vec<&str> = rules.certifications.keys().map(String::as_str).collect();
        CertError::Missing(format!(
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
    crate::store::transact!(store, |tx| {
        apply(
            tx,
            spec,
            &terms,
            tz,
            now,
            actor,
            reason,
            certification,
            person,
            command,
        )
        .await
    })
}

/// One command, in the caller's transaction.
#[allow(clippy::too_many_arguments)]
async fn apply(
    tx: &mut Tx,
    spec: &Certification,
    terms: &cert::Terms,
    tz: Tz,
    now: DateTime<Utc>,
    actor: &str,
    reason: &str,
    certification: &str,
    person: &str,
    command: Command,
) -> Result<Option<LearnerStatus>, CertError> {
    if catalogue::person(tx, person, Lock::None).await?.is_none() {
        return Err(CertError::Missing(format!("unknown person {person:?}")));
    }
    let current = certifications::load(tx, certification, person, Lock::Update).await?;
    let mut log = Changes::new(now, actor, reason);
    let already = |l: &Learner| {
        CertError::Refused(format!(
            "{person} is already assigned to {certification} (status {})",
            l.status
        ))
    };
    let (what, after): (&'static str, Option<Learner>) = match (command, &current) {
        (Command::Assign, Some(l)) => return Err(already(l)),
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
            return Err(CertError::Missing(format!(
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
            let trained = training_done(tx, spec, person, l.cycle_started_at).await?;
            match cert::act(action, l, terms, trained, now, tz)
                .map_err(|r| CertError::Refused(r.0))?
            {
                Outcome::Removed => (action.as_str(), None),
                Outcome::Changed(n) => (action.as_str(), Some(n)),
            }
        }
    };
    let after = match after {
        Some(n) => {
            let trained = training_done(tx, spec, person, n.cycle_started_at).await?;
            let n = cert::progress(&n, terms, trained, now, tz);
            if current.is_none() {
                if !certifications::insert(tx, certification, person, &n, now).await? {
                    // Assigned by a parallel request that committed first.
                    let l = certifications::load(tx, certification, person, Lock::Update).await?;
                    return Err(l.as_ref().map_or_else(
                        || {
                            CertError::Refused(format!(
                                "{person} was assigned and removed at the same moment; try again"
                            ))
                        },
                        already,
                    ));
                }
            } else {
                certifications::save(tx, certification, person, &n, now).await?;
            }
            Some(n)
        }
        None => {
            certifications::delete(tx, certification, person).await?;
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
    log.flush(tx).await?;
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
    crate::store::transact!(store, |tx| advance_in(tx, rules, tz, now).await)
}

async fn advance_in(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let rows = certifications::movable(tx).await?;
    let mut log = Changes::new(now, "scheduler", "time and completed training");
    let mut changed = 0;
    for (certification, person) in rows {
        let Some(spec) = rules.certifications.get(&certification) else {
            continue;
        };
        let terms = spec.terms();
        // Most learners stay where they are: look first, lock only those that move.
        let Some(peek) = certifications::load(tx, &certification, &person, Lock::None).await?
        else {
            continue;
        };
        if moves(tx, spec, &terms, &person, &peek, now, tz)
            .await?
            .is_empty()
        {
            continue;
        }
        // Locked and read afresh: another process may have moved this learner already.
        let Some(before) = certifications::load(tx, &certification, &person, Lock::Update).await?
        else {
            continue;
        };
        let mut l = before;
        for (what, next) in moves(tx, spec, &terms, &person, &l, now, tz).await? {
            certifications::save(tx, &certification, &person, &next, now).await?;
            record(
                &mut log,
                &certification,
                &person,
                what,
                Some(&l),
                Some(&next),
            );
            changed += 1;
            l = next;
        }
    }
    log.flush(tx).await?;
    Ok(changed)
}

/// Where time and completed training take a learner: time one stage at a time, each
/// recorded (and raising its event), so that a learner left alone for years passes every
/// stage and every stage's email goes out; then completed training.
async fn moves(
    tx: &mut Tx,
    spec: &Certification,
    terms: &cert::Terms,
    person: &str,
    learner: &Learner,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Vec<(&'static str, Learner)>, sqlx::Error> {
    let mut out = Vec::new();
    let mut l = learner.clone();
    for _ in 0..4 {
        let next = cert::advance(&l, terms, now, tz);
        if next == l {
            break;
        }
        out.push(("time", next.clone()));
        l = next;
    }
    let trained = training_done(tx, spec, person, l.cycle_started_at).await?;
    let next = cert::progress(&l, terms, trained, now, tz);
    if next != l {
        out.push(("training completed", next));
    }
    Ok(out)
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
    let rows = certifications::timed(&mut tx).await?;
    tx.rollback().await?;
    let mut next: Option<DateTime<Utc>> = None;
    for (certification, l) in rows {
        let Some(spec) = rules.certifications.get(&certification) else {
            continue;
        };
        if let Some(at) = cert::next_change(&l, &spec.terms(), tz) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Ok(next)
}
