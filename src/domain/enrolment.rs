//! Rules about an enrolment's lifecycle: D3 completion, D4 results, D7 removal, D9.

use super::{CourseStatus, DomainError, Outcome};
use chrono::{DateTime, Utc};

/// D3: an enrolment becomes complete the first moment D1 and D2 hold and its result is
/// not `failed` or `deregistered`. Once complete it stays complete: this only ever
/// answers whether completion should be *set*.
pub fn becomes_complete(
    already_complete: bool,
    attendance_achieved: bool,
    passing_met: bool,
    result: Outcome,
) -> bool {
    !already_complete
        && attendance_achieved
        && passing_met
        && !matches!(result, Outcome::Failed | Outcome::Deregistered)
}

/// What recording a result does to an enrolment (D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultChange {
    /// The same result again: nothing changes.
    Unchanged,
    /// An ordinary change.
    Set,
    /// `passed` back to `registered`: a new cycle, the certificate revoked, completion cleared.
    Reset,
}

/// D4: from `passed` the result may only go back to `registered` (a reset).
pub fn result_change(
    current: Outcome,
    new: Outcome,
    course: &str,
    person: &str,
) -> Result<ResultChange, DomainError> {
    match (current, new) {
        (a, b) if a == b => Ok(ResultChange::Unchanged),
        (Outcome::Passed, Outcome::Registered) => Ok(ResultChange::Reset),
        (Outcome::Passed, other) => Err(DomainError(format!(
            "cannot change the result of {person} in course {course} from passed to {other}: \
             a passed result can only be reset to registered first \
             (registrar participant reset --course {course} --person {person}, or import the result `registered`), \
             then the new result can be recorded"
        ))),
        _ => Ok(ResultChange::Set),
    }
}

/// D7: a booking may be deleted only before the course's first part starts.
pub fn check_removal(
    first_start: DateTime<Utc>,
    now: DateTime<Utc>,
    course: &str,
    person: &str,
    local_start: &str,
) -> Result<(), DomainError> {
    if now < first_start {
        Ok(())
    } else {
        Err(DomainError(format!(
            "cannot remove {person} from course {course}: the course started at {local_start}; \
             mark the participant not_attended instead, so the record of non-attendance stays"
        )))
    }
}

/// D9: a deregistered enrolment, or any enrolment of a cancelled course, takes no actions:
/// pending ones are cancelled and new ones are not created.
pub fn takes_actions(course_status: CourseStatus, result: Outcome) -> bool {
    course_status != CourseStatus::Cancelled && result != Outcome::Deregistered
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn d3_completion_needs_attendance_passing_and_a_result_that_is_not_failed() {
        assert!(becomes_complete(false, true, true, Outcome::Registered));
        assert!(becomes_complete(false, true, true, Outcome::Passed));
        assert!(!becomes_complete(false, false, true, Outcome::Registered));
        assert!(!becomes_complete(false, true, false, Outcome::Registered));
        assert!(!becomes_complete(false, true, true, Outcome::Failed));
        assert!(!becomes_complete(false, true, true, Outcome::Deregistered));
    }

    #[test]
    fn d3_completion_is_set_only_once() {
        assert!(!becomes_complete(true, true, true, Outcome::Registered));
    }

    #[test]
    fn d4_passed_to_failed_is_refused_naming_the_reset() {
        let e = result_change(Outcome::Passed, Outcome::Failed, "ehbo-2026-03", "p07").unwrap_err();
        assert!(e.0.contains("reset"), "{e}");
        assert!(e.0.contains("registrar participant reset --course ehbo-2026-03 --person p07"));
        for to in [Outcome::NotFinished, Outcome::Deregistered] {
            assert!(result_change(Outcome::Passed, to, "c", "p").is_err());
        }
    }

    #[test]
    fn d4_passed_back_to_registered_is_a_reset() {
        assert_eq!(
            result_change(Outcome::Passed, Outcome::Registered, "c", "p"),
            Ok(ResultChange::Reset)
        );
    }

    #[test]
    fn d4_other_changes_are_ordinary() {
        assert_eq!(
            result_change(Outcome::Failed, Outcome::Passed, "c", "p"),
            Ok(ResultChange::Set)
        );
        assert_eq!(
            result_change(Outcome::Registered, Outcome::Failed, "c", "p"),
            Ok(ResultChange::Set)
        );
        assert_eq!(
            result_change(Outcome::Passed, Outcome::Passed, "c", "p"),
            Ok(ResultChange::Unchanged)
        );
    }

    #[test]
    fn d7_removal_after_the_first_part_started_says_to_mark_not_attended() {
        let start = Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap();
        assert!(check_removal(start, start - chrono::TimeDelta::minutes(1), "c", "p", "x").is_ok());
        let e = check_removal(start, start, "c", "p", "2026-03-02T09:00:00+01:00").unwrap_err();
        assert!(e.0.contains("not_attended"), "{e}");
    }

    #[test]
    fn d9_cancelled_courses_and_deregistered_enrolments_take_no_actions() {
        assert!(takes_actions(CourseStatus::Final, Outcome::Registered));
        assert!(!takes_actions(CourseStatus::Cancelled, Outcome::Passed));
        assert!(!takes_actions(CourseStatus::Final, Outcome::Deregistered));
    }
}
