//! Certifications (SPEC §2): a learner's status, how completed steps and time move it,
//! and the administrator actions with exactly the statuses in which each is allowed.
//! Pure: the store reads the learner, calls these, and writes what they return.

use crate::domain::Period;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::fmt;

word_enum!(
    /// Where a learner stands in a certification.
    LearnerStatus, "certification status" {
        Assigned => "assigned",
        NotStarted => "not_started",
        InProgress => "in_progress",
        PendingApproval => "pending_approval",
        Certified => "certified",
        Expired => "expired",
        Lapsed => "lapsed",
        Recertifying => "recertifying",
        Revoked => "revoked",
        Disallowed => "disallowed",
    }
);

word_enum!(
    /// What an administrator can do to a learner.
    AdminAction, "certification action" {
        OverridePayment => "override_payment",
        OverrideTraining => "override_training",
        OverrideExam => "override_exam",
        Approve => "approve",
        RevokeAccess => "revoke_access",
        ForceRecertification => "force_recertification",
        PermanentRevoke => "permanent_revoke",
        RestoreAccess => "restore_access",
        Remove => "remove",
    }
);

use LearnerStatus as S;

pub const ALL_STATUSES: [LearnerStatus; 10] = [
    S::Assigned,
    S::NotStarted,
    S::InProgress,
    S::PendingApproval,
    S::Certified,
    S::Expired,
    S::Lapsed,
    S::Recertifying,
    S::Revoked,
    S::Disallowed,
];

pub const ALL_ACTIONS: [AdminAction; 9] = [
    AdminAction::OverridePayment,
    AdminAction::OverrideTraining,
    AdminAction::OverrideExam,
    AdminAction::Approve,
    AdminAction::RevokeAccess,
    AdminAction::ForceRecertification,
    AdminAction::PermanentRevoke,
    AdminAction::RestoreAccess,
    AdminAction::Remove,
];

impl AdminAction {
    /// The statuses in which the action is allowed (SPEC §2's table).
    pub fn allowed_in(self) -> &'static [LearnerStatus] {
        match self {
            AdminAction::OverridePayment => &[S::NotStarted, S::InProgress, S::Recertifying],
            AdminAction::OverrideTraining | AdminAction::OverrideExam => {
                &[S::InProgress, S::PendingApproval, S::Recertifying]
            }
            AdminAction::Approve => &[S::PendingApproval],
            AdminAction::RevokeAccess => &[
                S::NotStarted,
                S::InProgress,
                S::PendingApproval,
                S::Expired,
                S::Lapsed,
                S::Recertifying,
            ],
            AdminAction::ForceRecertification => &[S::Certified, S::Expired, S::Lapsed],
            AdminAction::PermanentRevoke => &[S::Certified],
            AdminAction::RestoreAccess => &[S::Revoked, S::Disallowed],
            AdminAction::Remove => &ALL_STATUSES,
        }
    }
}

/// A certification's terms, as the rules directory gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub exam: bool,
    pub payment_required: bool,
    pub approval_required: bool,
    pub validity: Period,
    pub grace_period: Period,
    pub recertification_window: Period,
}

/// A learner's state in one certification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learner {
    pub status: LearnerStatus,
    /// 1 for the first certification, +1 for every recertification cycle.
    pub cycle: i64,
    /// When the current cycle began: courses completed since count as training.
    pub cycle_started_at: DateTime<Utc>,
    pub paid: bool,
    pub training_overridden: bool,
    pub exam_passed: bool,
    /// A passed test-out exam is permanent: nothing resets it.
    pub exam_test_out: bool,
    pub valid_until: Option<DateTime<Utc>>,
}

impl Learner {
    /// A learner just assigned.
    pub fn assigned(now: DateTime<Utc>) -> Learner {
        Learner {
            status: S::NotStarted,
            cycle: 1,
            cycle_started_at: now,
            paid: false,
            training_overridden: false,
            exam_passed: false,
            exam_test_out: false,
            valid_until: None,
        }
    }

    /// A new cycle: training, payment and (unless a passed test-out) the exam start over.
    fn new_cycle(&mut self, status: LearnerStatus, now: DateTime<Utc>) {
        self.status = status;
        self.cycle += 1;
        self.cycle_started_at = now;
        self.paid = false;
        self.training_overridden = false;
        self.exam_passed = self.exam_test_out;
    }
}

/// Why an action was refused: it names the status and where the action is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed(Learner),
    /// `remove`: the assignment goes (the history keeps it).
    Removed,
}

fn refuse(action: AdminAction, status: LearnerStatus) -> Refusal {
    let allowed: Vec<&str> = action.allowed_in().iter().map(|s| s.as_str()).collect();
    Refusal(format!(
        "{action} is not allowed while the learner is {status}; it is allowed in {}",
        crate::domain::one_of(&allowed)
    ))
}

/// An administrator action. `training_done` says whether the learner's training steps are
/// complete as things stand (completed courses of the required types this cycle).
pub fn act(
    action: AdminAction,
    learner: &Learner,
    terms: &Terms,
    training_done: bool,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Outcome, Refusal> {
    if !action.allowed_in().contains(&learner.status) {
        return Err(refuse(action, learner.status));
    }
    let mut l = learner.clone();
    match action {
        AdminAction::OverridePayment => {
            if !terms.payment_required {
                return Err(Refusal("this certification requires no payment".into()));
            }
            if l.paid {
                return Err(Refusal("the learner has paid already".into()));
            }
            l.paid = true;
            if l.status == S::NotStarted {
                l.status = S::InProgress;
            }
        }
        AdminAction::OverrideTraining => l.training_overridden = true,
        AdminAction::OverrideExam => l.exam_passed = true,
        AdminAction::Approve => certify(&mut l, terms, now, tz),
        AdminAction::RevokeAccess => l.status = S::Revoked,
        AdminAction::ForceRecertification => {
            l.valid_until = None;
            l.new_cycle(S::Recertifying, now);
        }
        AdminAction::PermanentRevoke => {
            l.valid_until = None;
            l.status = S::Disallowed;
        }
        // Seed 003: "after restoring access, the learner can begin a new recertification
        // cycle".
        AdminAction::RestoreAccess => {
            l.valid_until = None;
            l.new_cycle(S::Recertifying, now);
        }
        AdminAction::Remove => return Ok(Outcome::Removed),
    }
    // Steps are re-evaluated by the caller, with the (possibly new) cycle's training.
    let _ = training_done;
    Ok(Outcome::Changed(l))
}

fn certify(l: &mut Learner, terms: &Terms, now: DateTime<Utc>, tz: Tz) {
    l.status = S::Certified;
    l.valid_until = terms.validity.add_to(now, tz);
}

/// Completed steps move a learner on: not_started -> in_progress once anything is done;
/// all done -> pending_approval (when approval is required) or certified, with a new
/// validity period (a renewal when recertifying).
pub fn progress(
    learner: &Learner,
    terms: &Terms,
    training_done: bool,
    now: DateTime<Utc>,
    tz: Tz,
) -> Learner {
    let mut l = learner.clone();
    // Expired learners are in the grace period: completing renews them too.
    if !matches!(
        l.status,
        S::NotStarted | S::InProgress | S::Recertifying | S::Expired
    ) {
        return l;
    }
    let training = training_done || l.training_overridden;
    let exam = !terms.exam || l.exam_passed;
    let paid = !terms.payment_required || l.paid;
    if l.status == S::NotStarted && (training || l.exam_passed || l.paid) {
        l.status = S::InProgress;
    }
    if training && exam && paid && l.status != S::NotStarted {
        if terms.approval_required {
            l.status = S::PendingApproval;
        } else {
            certify(&mut l, terms, now, tz);
        }
    }
    l
}

/// Time, one step at a time (call again until nothing changes): certified ->
/// recertifying when the recertification window opens (a new cycle: training must be
/// completed again); certified or recertifying -> expired at valid_until (still renewable
/// in the grace period); expired -> lapsed when the grace period ends.
pub fn advance(learner: &Learner, terms: &Terms, now: DateTime<Utc>, tz: Tz) -> Learner {
    let mut l = learner.clone();
    let Some(until) = l.valid_until else {
        return l;
    };
    let grace_ends = terms.grace_period.add_to(until, tz).unwrap_or(until);
    let window_opens = terms
        .recertification_window
        .negated()
        .add_to(until, tz)
        .unwrap_or(until);
    match l.status {
        S::Certified if now >= window_opens => l.new_cycle(S::Recertifying, now),
        S::Recertifying if now >= until => l.status = S::Expired,
        S::Expired if now >= grace_ends => l.status = S::Lapsed,
        _ => {}
    }
    l
}

/// When `advance` has something to do next for this learner, if ever.
pub fn next_change(learner: &Learner, terms: &Terms, tz: Tz) -> Option<DateTime<Utc>> {
    let until = learner.valid_until?;
    let grace_ends = terms.grace_period.add_to(until, tz).unwrap_or(until);
    match learner.status {
        S::Certified => terms.recertification_window.negated().add_to(until, tz),
        S::Recertifying => Some(until),
        S::Expired => Some(grace_ends),
        _ => None,
    }
}

impl fmt::Display for Terms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "valid {}, grace {}, window {}",
            self.validity, self.grace_period, self.recertification_window
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> Terms {
        let p = |s: &str| s.parse::<Period>().expect("period");
        Terms {
            exam: true,
            payment_required: true,
            approval_required: true,
            validity: p("3 years"),
            grace_period: p("90 days"),
            recertification_window: p("90 days"),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn learner(status: LearnerStatus) -> Learner {
        Learner {
            status,
            valid_until: Some(at("2029-06-01T12:00:00Z")),
            ..Learner::assigned(at("2026-06-01T12:00:00Z"))
        }
    }

    /// Every action in every status: allowed ones do what the table says, every other one
    /// is refused naming the status and where it is allowed.
    #[test]
    fn certification_every_action_in_every_status_follows_the_table() {
        let now = at("2026-07-01T12:00:00Z");
        let tz = chrono_tz::Europe::Amsterdam;
        for action in ALL_ACTIONS {
            for status in ALL_STATUSES {
                let l = learner(status);
                let result = act(action, &l, &terms(), false, now, tz);
                if !action.allowed_in().contains(&status) {
                    let e = result.expect_err("refused");
                    assert!(e.0.contains(status.as_str()), "{action} in {status}: {e}");
                    for s in action.allowed_in() {
                        assert!(e.0.contains(s.as_str()), "{action} in {status}: {e}");
                    }
                    continue;
                }
                let new = match result.unwrap_or_else(|e| panic!("{action} in {status}: {e}")) {
                    Outcome::Removed => {
                        assert_eq!(action, AdminAction::Remove);
                        continue;
                    }
                    Outcome::Changed(n) => n,
                };
                match action {
                    AdminAction::OverridePayment => {
                        assert!(new.paid);
                        if status == S::NotStarted {
                            assert_eq!(new.status, S::InProgress);
                        }
                    }
                    AdminAction::OverrideTraining => assert!(new.training_overridden),
                    AdminAction::OverrideExam => assert!(new.exam_passed),
                    AdminAction::Approve => {
                        assert_eq!(new.status, S::Certified);
                        assert_eq!(new.valid_until, Some(at("2029-07-01T12:00:00Z")));
                    }
                    AdminAction::RevokeAccess => assert_eq!(new.status, S::Revoked),
                    AdminAction::ForceRecertification => {
                        assert_eq!(new.status, S::Recertifying);
                        assert_eq!(new.valid_until, None, "the certificate is revoked");
                        assert_eq!(new.cycle, l.cycle + 1);
                    }
                    AdminAction::PermanentRevoke => {
                        assert_eq!(new.status, S::Disallowed);
                        assert_eq!(new.valid_until, None);
                    }
                    AdminAction::RestoreAccess => {
                        assert_eq!(new.status, S::Recertifying);
                        assert_eq!(new.cycle, l.cycle + 1);
                    }
                    AdminAction::Remove => unreachable!(),
                }
            }
        }
    }

    #[test]
    fn certification_steps_move_not_started_to_in_progress_to_pending_approval() {
        let (now, tz) = (at("2026-07-01T12:00:00Z"), chrono_tz::Europe::Amsterdam);
        let t = terms();
        let mut l = Learner::assigned(now);
        assert_eq!(progress(&l, &t, false, now, tz).status, S::NotStarted);
        l.paid = true;
        l = progress(&l, &t, false, now, tz);
        assert_eq!(l.status, S::InProgress);
        l = progress(&l, &t, true, now, tz);
        assert_eq!(l.status, S::InProgress, "the exam is still to pass");
        l.exam_passed = true;
        l = progress(&l, &t, true, now, tz);
        assert_eq!(l.status, S::PendingApproval);
        let no_approval = Terms {
            approval_required: false,
            ..t
        };
        let mut m = Learner::assigned(now);
        m.paid = true;
        m.exam_passed = true;
        m = progress(&m, &no_approval, true, now, tz);
        assert_eq!(m.status, S::Certified);
    }

    #[test]
    fn certification_time_moves_certified_to_recertifying_expired_and_lapsed() {
        let tz = chrono_tz::Europe::Amsterdam;
        let t = terms();
        let l = learner(S::Certified);
        // Valid until 2029-06-01 14:00 local (summer time): the window opens 90 calendar
        // days before, on 2029-03-03 at 14:00 local, which is winter time: 13:00 UTC.
        assert_eq!(
            advance(&l, &t, at("2029-03-03T12:59:00Z"), tz).status,
            S::Certified
        );
        let r = advance(&l, &t, at("2029-03-03T13:00:00Z"), tz);
        assert_eq!((r.status, r.cycle), (S::Recertifying, 2));
        assert_eq!(
            advance(&r, &t, at("2029-06-01T11:59:00Z"), tz).status,
            S::Recertifying
        );
        let e = advance(&r, &t, at("2029-06-01T12:00:00Z"), tz);
        assert_eq!(e.status, S::Expired);
        // 90 days of grace: until 2029-08-30 14:00 local.
        assert_eq!(
            advance(&e, &t, at("2029-08-30T11:59:00Z"), tz).status,
            S::Expired
        );
        assert_eq!(
            advance(&e, &t, at("2029-08-30T12:00:00Z"), tz).status,
            S::Lapsed
        );
        // Left alone for years, a learner passes every stage, one call at a time.
        let mut x = l.clone();
        let mut seen = vec![x.status];
        loop {
            let n = advance(&x, &t, at("2031-01-01T00:00:00Z"), tz);
            if n == x {
                break;
            }
            seen.push(n.status);
            x = n;
        }
        assert_eq!(seen, [S::Certified, S::Recertifying, S::Expired, S::Lapsed]);
    }

    #[test]
    fn certification_a_passed_test_out_exam_survives_a_new_cycle() {
        let (now, tz) = (at("2026-07-01T12:00:00Z"), chrono_tz::Europe::Amsterdam);
        let mut l = learner(S::Certified);
        l.exam_passed = true;
        l.exam_test_out = true;
        let Ok(Outcome::Changed(n)) = act(
            AdminAction::ForceRecertification,
            &l,
            &terms(),
            false,
            now,
            tz,
        ) else {
            panic!("allowed");
        };
        assert!(n.exam_passed);
    }
}
