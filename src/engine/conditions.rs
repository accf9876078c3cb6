//! T2 conditions of an action template, evaluated for one subject, with a reason in the
//! office's words for every condition that does not hold.

use crate::domain::progress::{AttendanceSummary, PassingSummary};
use crate::domain::{CourseStatus, Outcome, one_of};
use crate::rules::action::Conditions;

/// What the conditions look at for one course participant.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub course_status: CourseStatus,
    pub course_type: &'a str,
    pub result: Outcome,
    /// D3: the enrolment's current cycle is complete.
    pub completed: bool,
    pub attendance: AttendanceSummary,
    pub passing: PassingSummary,
}

fn words<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().map(ToString::to_string).collect();
    let refs: Vec<&str> = shown.iter().map(String::as_str).collect();
    one_of(&refs)
}

fn attendance_words(a: &AttendanceSummary) -> String {
    match a.percent() {
        Some(p) => format!(
            "attendance {} of {} required parts ({p} %)",
            a.attended, a.required
        ),
        None => "no part requires attendance".to_string(),
    }
}

/// One sentence per condition that does not hold; empty when all hold.
pub fn unmet(c: &Conditions, s: &Subject<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(statuses) = &c.course_status
        && !statuses.contains(&s.course_status)
    {
        out.push(format!(
            "course status {}, needs {}",
            s.course_status,
            words(statuses)
        ));
    }
    if let Some(types) = &c.course_type
        && !types.iter().any(|t| t.value == s.course_type)
    {
        let names: Vec<&str> = types.iter().map(|t| t.value.as_str()).collect();
        out.push(format!(
            "course type {}, needs {}",
            s.course_type,
            words(&names)
        ));
    }
    match c.attendance_requirement_achieved {
        Some(true) if !s.attendance.achieved => out.push(format!(
            "{}, needs {} %",
            attendance_words(&s.attendance),
            s.attendance.percent_needed
        )),
        Some(false) if s.attendance.achieved => out.push(format!(
            "attendance requirement achieved ({}), needs not achieved",
            attendance_words(&s.attendance)
        )),
        _ => {}
    }
    match c.passing_obligation_passed {
        Some(true) if !s.passing.met => out.push(format!(
            "passing obligation not met ({} of {} parts passed)",
            s.passing.passed, s.passing.required
        )),
        Some(false) if s.passing.met => out.push(if s.passing.required == 0 {
            "passing obligation met (the course has no part with a passing requirement), needs not met".to_string()
        } else {
            format!("passing obligation met (all {} parts passed), needs not met", s.passing.required)
        }),
        _ => {}
    }
    if let Some(results) = &c.result
        && !results.contains(&s.result)
    {
        out.push(format!("result {}, needs {}", s.result, words(results)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject {
            course_status: CourseStatus::Draft,
            course_type: "first-aid",
            result: Outcome::Failed,
            completed: false,
            attendance: AttendanceSummary {
                attended: 2,
                required: 4,
                percent_needed: 75,
                achieved: false,
            },
            passing: PassingSummary {
                passed: 0,
                required: 1,
                met: false,
            },
        }
    }

    #[test]
    fn t2_every_unmet_condition_has_a_reason_a_training_office_understands() {
        let c = Conditions {
            course_status: Some(vec![CourseStatus::Final, CourseStatus::Completed]),
            course_type: serde_saphyr::from_str("[fire-safety]").ok(),
            attendance_requirement_achieved: Some(true),
            passing_obligation_passed: Some(true),
            result: Some(vec![Outcome::Passed]),
            certification_status: None,
        };
        assert_eq!(
            unmet(&c, &subject()),
            [
                "course status draft, needs final or completed",
                "course type first-aid, needs fire-safety",
                "attendance 2 of 4 required parts (50 %), needs 75 %",
                "passing obligation not met (0 of 1 parts passed)",
                "result failed, needs passed",
            ]
        );
    }

    #[test]
    fn t2_omitted_conditions_are_not_checked() {
        assert!(unmet(&Conditions::default(), &subject()).is_empty());
    }

    #[test]
    fn passing_obligation_false_fails_for_a_course_without_passing_parts() {
        let c = Conditions {
            passing_obligation_passed: Some(false),
            ..Conditions::default()
        };
        let mut s = subject();
        s.passing = PassingSummary {
            passed: 0,
            required: 0,
            met: true,
        };
        assert_eq!(
            unmet(&c, &s),
            [
                "passing obligation met (the course has no part with a passing requirement), needs not met"
            ]
        );
    }
}
