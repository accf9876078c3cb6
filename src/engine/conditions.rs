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

/// "a, b of c": [`words`] in Dutch.
fn woorden<T: std::fmt::Display>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().map(ToString::to_string).collect();
    match shown.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} of {last}", init.join(", ")),
    }
}

fn aanwezigheid(a: &AttendanceSummary) -> String {
    match a.percent() {
        Some(p) => format!(
            "aanwezig bij {} van {} verplichte onderdelen ({p} %)",
            a.attended, a.required
        ),
        None => "geen onderdeel vereist aanwezigheid".to_string(),
    }
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

/// Why an instance does not fire (yet): one sentence for this participant, the same words
/// for every participant it holds back (for summaries), and whether it can change at all
/// as the data stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub text: String,
    pub gist: String,
    /// The condition cannot become true as the data stands (a completed course stays
    /// completed; a course without a passing part always meets its passing obligation).
    #[serde(default)]
    pub settled: bool,
    /// The sentence in Dutch, for the office's pages (T7's other language); `None` in
    /// reasons stored before it was kept (the English one is shown then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nl: Option<String>,
}

/// Reasons as stored with an instance (JSON), and back; an unreadable value is shown as is.
pub fn stored(reasons: &[Reason]) -> Option<String> {
    (!reasons.is_empty()).then(|| serde_json::to_string(reasons).unwrap_or_default())
}

pub fn from_stored(text: &str) -> Vec<Reason> {
    serde_json::from_str(text).unwrap_or_else(|_| vec![Reason::new(text.to_string(), text)])
}

impl Reason {
    pub fn new(text: String, gist: impl Into<String>) -> Reason {
        Reason {
            text,
            gist: gist.into(),
            settled: false,
            nl: None,
        }
    }

    /// The same sentence in Dutch.
    pub fn nl(mut self, text: impl Into<String>) -> Reason {
        self.nl = Some(text.into());
        self
    }

    /// [`Reason::shown`] in Dutch when asked and known, else in English.
    pub fn shown_in(&self, dutch: bool) -> String {
        match (&self.nl, dutch) {
            (Some(nl), true) if self.settled => {
                format!("{nl} (dit kan niet veranderen zoals de gegevens nu zijn)")
            }
            (Some(nl), true) => nl.clone(),
            _ => self.shown(),
        }
    }

    fn settled(mut self) -> Reason {
        self.settled = true;
        self
    }

    /// The sentence as `plan` shows it.
    pub fn shown(&self) -> String {
        if self.settled {
            format!("{} (this cannot change as the data stands)", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// One reason per condition that does not hold; empty when all hold. D3: a complete
/// enrolment counts as having met its attendance requirement and passing obligation,
/// whatever later corrections say.
pub fn unmet(c: &Conditions, s: &Subject<'_>) -> Vec<Reason> {
    let mut out = Vec::new();
    if let Some(statuses) = &c.course_status
        && !statuses.contains(&s.course_status)
    {
        let r = Reason::new(
            format!(
                "course status {}, needs {}",
                s.course_status,
                words(statuses)
            ),
            format!(
                "course status {}, the rule needs {}",
                s.course_status,
                words(statuses)
            ),
        )
        .nl(format!(
            "cursusstatus {}, nodig: {}",
            s.course_status,
            woorden(statuses)
        ));
        // A completed or cancelled course does not go back to draft or final.
        out.push(
            if matches!(
                s.course_status,
                CourseStatus::Completed | CourseStatus::Cancelled
            ) {
                r.settled()
            } else {
                r
            },
        );
    }
    if let Some(types) = &c.course_type
        && !types.iter().any(|t| t.value == s.course_type)
    {
        let names: Vec<&str> = types.iter().map(|t| t.value.as_str()).collect();
        out.push(
            Reason::new(
                format!("course type {}, needs {}", s.course_type, words(&names)),
                format!(
                    "course type {}, the rule needs {}",
                    s.course_type,
                    words(&names)
                ),
            )
            .nl(format!(
                "cursustype {}, nodig: {}",
                s.course_type,
                woorden(&names)
            ))
            .settled(),
        );
    }
    let achieved = s.completed || s.attendance.achieved;
    let met = s.completed || s.passing.met;
    match c.attendance_requirement_achieved {
        Some(true) if !achieved => out.push(Reason::new(
            format!(
                "{}, needs {} %",
                attendance_words(&s.attendance),
                s.attendance.percent_needed
            ),
            format!("attendance below {} %", s.attendance.percent_needed),
        )
        .nl(format!(
            "{}, nodig: {} %",
            aanwezigheid(&s.attendance),
            s.attendance.percent_needed
        ))),
        Some(false) if s.completed => out.push(
            Reason::new(
                "the enrolment is complete (D3), so its attendance requirement counts as achieved; the rule needs it not achieved".into(),
                "complete, the rule needs the attendance requirement not achieved",
            )
            .nl("de inschrijving is afgerond (D3), dus de aanwezigheidseis geldt als behaald; de regel vraagt dat die niet behaald is")
            .settled(),
        ),
        Some(false) if achieved => {
            let r = Reason::new(
                format!(
                    "attendance requirement achieved ({}), needs not achieved",
                    attendance_words(&s.attendance)
                ),
                "attendance requirement achieved, the rule needs it not achieved",
            )
            .nl(format!(
                "aanwezigheidseis behaald ({}), nodig: niet behaald",
                aanwezigheid(&s.attendance)
            ));
            out.push(if s.attendance.required == 0 {
                r.settled()
            } else {
                r
            });
        }
        _ => {}
    }
    match c.passing_obligation_passed {
        Some(true) if !met => out.push(
            Reason::new(
                format!(
                    "passing obligation not met ({} of {} parts passed)",
                    s.passing.passed, s.passing.required
                ),
                "passing obligation not met",
            )
            .nl(format!(
                "slaagverplichting niet gehaald ({} van {} onderdelen geslaagd)",
                s.passing.passed, s.passing.required
            )),
        ),
        Some(false) if met => {
            let r = Reason::new(
                if s.completed {
                    "the enrolment is complete (D3), so its passing obligation counts as met; the rule needs it not met".to_string()
                } else if s.passing.required == 0 {
                    "passing obligation met (the course has no part with a passing requirement), needs not met".to_string()
                } else {
                    format!(
                        "passing obligation met (all {} parts passed), needs not met",
                        s.passing.required
                    )
                },
                "passing obligation met, the rule needs it not met",
            )
            .nl(if s.completed {
                "de inschrijving is afgerond (D3), dus de slaagverplichting geldt als gehaald; de regel vraagt dat die niet gehaald is".to_string()
            } else if s.passing.required == 0 {
                "slaagverplichting gehaald (de cursus heeft geen onderdeel met een slaageis), nodig: niet gehaald".to_string()
            } else {
                format!(
                    "slaagverplichting gehaald (alle {} onderdelen geslaagd), nodig: niet gehaald",
                    s.passing.required
                )
            });
            // A course without a passing part always meets it, and completion is kept.
            out.push(if s.completed || s.passing.required == 0 {
                r.settled()
            } else {
                r
            });
        }
        _ => {}
    }
    if let Some(results) = &c.result
        && !results.contains(&s.result)
    {
        out.push(
            Reason::new(
                format!("result {}, needs {}", s.result, words(results)),
                format!("result {}, the rule needs {}", s.result, words(results)),
            )
            .nl(format!(
                "resultaat {}, nodig: {}",
                s.result,
                woorden(results)
            )),
        );
    }
    match c.completed {
        Some(true) if !s.completed => {
            let (mut why, mut waarom) = (Vec::new(), Vec::new());
            if !s.attendance.achieved {
                why.push(format!(
                    "{}, needs {} %",
                    attendance_words(&s.attendance),
                    s.attendance.percent_needed
                ));
                waarom.push(format!(
                    "{}, nodig: {} %",
                    aanwezigheid(&s.attendance),
                    s.attendance.percent_needed
                ));
            }
            if !s.passing.met {
                why.push(format!(
                    "{} of {} parts passed",
                    s.passing.passed, s.passing.required
                ));
                waarom.push(format!(
                    "{} van {} onderdelen geslaagd",
                    s.passing.passed, s.passing.required
                ));
            }
            if matches!(s.result, Outcome::Failed | Outcome::Deregistered) {
                why.push(format!("result {}", s.result));
                waarom.push(format!("resultaat {}", s.result));
            }
            out.push(Reason::new(
                if why.is_empty() {
                    // After a reset (D4) with the requirements still met: completion is
                    // recorded with the participant's next change.
                    "not complete yet in this cycle (the requirements are met; the next recorded change of this participant completes it)".to_string()
                } else {
                    format!("not complete yet ({})", why.join("; "))
                },
                "not complete yet",
            )
            .nl(if waarom.is_empty() {
                "nog niet afgerond in deze cyclus (de eisen zijn gehaald; de volgende wijziging van deze deelnemer rondt het af)".to_string()
            } else {
                format!("nog niet afgerond ({})", waarom.join("; "))
            }));
        }
        Some(false) if s.completed => out.push(
            Reason::new(
                "the enrolment is complete (D3), needs not complete".into(),
                "complete, the rule needs not complete",
            )
            .nl("de inschrijving is afgerond (D3), nodig: niet afgerond")
            .settled(),
        ),
        _ => {}
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
            completed: None,
        };
        let texts: Vec<String> = unmet(&c, &subject()).into_iter().map(|r| r.text).collect();
        assert_eq!(
            texts,
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
    fn t7_every_unmet_condition_is_also_worded_in_dutch_for_the_office_pages() {
        let c = Conditions {
            course_status: Some(vec![CourseStatus::Final, CourseStatus::Completed]),
            course_type: serde_saphyr::from_str("[fire-safety]").ok(),
            attendance_requirement_achieved: Some(true),
            passing_obligation_passed: Some(true),
            result: Some(vec![Outcome::Passed]),
            certification_status: None,
            completed: Some(true),
        };
        let texts: Vec<String> = unmet(&c, &subject())
            .iter()
            .map(|r| r.shown_in(true))
            .collect();
        assert_eq!(
            texts,
            [
                "cursusstatus draft, nodig: final of completed",
                "cursustype first-aid, nodig: fire-safety (dit kan niet veranderen zoals de gegevens nu zijn)",
                "aanwezig bij 2 van 4 verplichte onderdelen (50 %), nodig: 75 %",
                "slaagverplichting niet gehaald (0 van 1 onderdelen geslaagd)",
                "resultaat failed, nodig: passed",
                "nog niet afgerond (aanwezig bij 2 van 4 verplichte onderdelen (50 %), nodig: 75 %; 0 van 1 onderdelen geslaagd; resultaat failed)",
            ]
        );
        // Stored reasons from before the Dutch was kept are shown in English.
        let old = from_stored(r#"[{"text":"result failed, needs passed","gist":"g"}]"#);
        assert_eq!(old[0].shown_in(true), "result failed, needs passed");
    }

    #[test]
    fn d3_a_complete_enrolment_meets_attendance_and_passing_whatever_later_corrections_say() {
        let c = Conditions {
            attendance_requirement_achieved: Some(true),
            passing_obligation_passed: Some(true),
            completed: Some(true),
            ..Conditions::default()
        };
        let mut s = subject();
        s.result = Outcome::Passed;
        assert_eq!(unmet(&c, &s).len(), 3, "not complete: three reasons");
        s.completed = true;
        assert!(unmet(&c, &s).is_empty(), "{:?}", unmet(&c, &s));
        let not = Conditions {
            completed: Some(false),
            ..Conditions::default()
        };
        assert!(unmet(&not, &s)[0].settled);
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
        let reasons = unmet(&c, &s);
        assert_eq!(
            reasons[0].text,
            "passing obligation met (the course has no part with a passing requirement), needs not met"
        );
        assert!(reasons[0].settled, "it can never hold on this course");
    }
}
