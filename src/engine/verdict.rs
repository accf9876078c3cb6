//! T2 in one place: what becomes of an action instance at a given moment, and why. The
//! firing pass acts on this verdict, and `plan`, `preview` and `GET /api/v1/plan` show it:
//! an instance `plan` calls `due` is one the next pass fires, and no other.

use super::conditions::{self, Reason, Subject};
use crate::domain::progress::{AttendanceSummary, PassingSummary};
use crate::domain::{ActionState, CourseStatus, Outcome, enrolment};
use crate::rules::action::{ActionRule, Attachment, Execution};
use crate::rules::{IssueOn, RuleSet};
use crate::store::catalogue::CourseInfo;
use chrono::{DateTime, Utc};

/// What the pass does with an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Its time has come and its conditions hold: the message goes to the outbox.
    Fire,
    /// As `Fire`, but the rule is `execution: manual`: it waits for `registrar approve`.
    AwaitApproval,
    /// `expires_after` ran out before the conditions held.
    Expire,
    /// Not yet: its time has not come, or a condition does not hold.
    Wait,
    /// Its subject is gone or takes no actions any more (D7, D9).
    Cancel,
}

/// The decision, with one reason per thing that holds the instance back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// The reasons as `plan` shows them.
    pub fn texts(&self) -> Vec<String> {
        self.reasons.iter().map(Reason::shown).collect()
    }

    /// Whether the instance cannot fire as the data stands.
    pub fn settled(&self) -> bool {
        self.decision == Decision::Wait && self.reasons.iter().any(|r| r.settled)
    }
}

/// An instance as the verdict needs it.
#[derive(Debug, Clone, Copy)]
pub struct Moment<'a> {
    pub state: ActionState,
    pub cycle: i64,
    pub due_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The due time as the office reads it (local time), for the reason "due ...".
    pub due_shown: Option<&'a str>,
}

/// What the conditions of an instance look at.
#[derive(Debug, Clone)]
pub enum Facts<'a> {
    /// A participant of a course.
    Participant {
        course: &'a CourseInfo,
        result: Outcome,
        cycle: i64,
        /// D3: the enrolment's cycle is complete (by requirements or equivalency).
        completed: bool,
        attendance: AttendanceSummary,
        passing: PassingSummary,
        /// Whether the cycle's certificate is in force (for rules that attach it).
        certificate: bool,
    },
    /// A learner of a certification, in their current cycle.
    Learner { cycle: i64 },
    /// The participant is no longer enrolled (D7).
    NotEnrolled,
    /// The learner is no longer assigned.
    NotAssigned,
    /// The office (a digest): nothing to check.
    Office,
}

/// The verdict on one instance at `now`. `rule` is `None` when the rule is no longer in
/// the rules directory.
pub fn verdict(
    rules: &RuleSet,
    rule: Option<&ActionRule>,
    m: &Moment<'_>,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
) -> Verdict {
    let cancel = |why: String, gist: &str, nl: String| Verdict {
        decision: Decision::Cancel,
        reasons: vec![Reason::new(why, gist).nl(nl)],
    };
    let mut unmet: Vec<Reason> = Vec::new();
    match facts {
        Facts::NotEnrolled => {
            return cancel(
                "the participant is no longer enrolled (removed, D7)".into(),
                "removed from the course",
                "de deelnemer is niet meer ingeschreven (verwijderd, D7)".into(),
            );
        }
        Facts::NotAssigned => {
            return cancel(
                "the learner is no longer assigned".into(),
                "no longer assigned",
                "de cursist is niet meer toegewezen".into(),
            );
        }
        Facts::Participant {
            course,
            result,
            cycle,
            completed,
            attendance,
            passing,
            certificate,
        } => {
            if course.status == CourseStatus::Cancelled {
                return cancel(
                    "the course was cancelled (D9)".into(),
                    "course cancelled",
                    "de cursus is geannuleerd (D9)".into(),
                );
            }
            if !enrolment::takes_actions(course.status, *result) {
                return cancel(
                    format!("the participant is {result} (D9)"),
                    &format!("participant {result}"),
                    format!("de deelnemer is {result} (D9)"),
                );
            }
            if *cycle != m.cycle {
                return cancel(
                    format!(
                        "a new cycle ({cycle}) started for the participant (reset or reassign, D4)"
                    ),
                    "a new cycle started",
                    format!(
                        "een nieuwe cyclus ({cycle}) is begonnen voor de deelnemer (reset of opnieuw toegewezen, D4)"
                    ),
                );
            }
            if let Some(rule) = rule {
                let subject = Subject {
                    course_status: course.status,
                    course_type: &course.type_id,
                    result: *result,
                    completed: *completed,
                    attendance: *attendance,
                    passing: *passing,
                };
                unmet = conditions::unmet(&rule.conditions, &subject);
                // Said only when nothing else holds the email back: the certificate
                // follows once the conditions are met.
                if unmet.is_empty() && attaches_certificate(rule) && !certificate {
                    unmet.push(waits_for_certificate(rules, course, m.cycle));
                }
            }
        }
        Facts::Office => {}
        Facts::Learner { cycle } => {
            if *cycle != m.cycle {
                unmet.push(Reason::new(
                    format!(
                        "the learner is in certification cycle {cycle} now, this email was for cycle {}",
                        m.cycle
                    ),
                    "the learner is in another certification cycle",
                )
                .nl(format!(
                    "de cursist zit nu in certificeringscyclus {cycle}, deze e-mail was voor cyclus {}",
                    m.cycle
                )));
            }
        }
    }
    let Some(rule) = rule else {
        return Verdict {
            decision: Decision::Wait,
            reasons: vec![
                Reason::new(
                    "the rule is no longer in the rules directory".into(),
                    "the rule is gone",
                )
                .nl("de regel staat niet meer in de regelmap"),
            ],
        };
    };
    let mut reasons = Vec::new();
    if !rule.enabled {
        reasons.push(
            Reason::new(
                "the rule is disabled (enabled: false)".into(),
                "the rule is disabled",
            )
            .nl("de regel staat uit (enabled: false)"),
        );
    }
    let approved = m.state == ActionState::Approved;
    if !approved {
        match m.due_at {
            None => reasons.push(
                Reason::new(
                    "due time not known yet (waiting for its anchor)".into(),
                    "due time not known yet",
                )
                .nl("tijdstip nog niet bekend (wacht op zijn ankermoment)"),
            ),
            Some(d) if d > now => reasons.push(
                Reason::new(
                    format!("due {}", m.due_shown.unwrap_or_default()),
                    "not due yet",
                )
                .nl(format!("gepland op {}", m.due_shown.unwrap_or_default())),
            ),
            Some(_) => {}
        }
    }
    let holds = rule.enabled && unmet.is_empty();
    let timely = approved || m.due_at.is_some_and(|d| d <= now);
    reasons.extend(unmet);
    let decision = if holds && timely {
        if rule.execution == Execution::Manual && !approved {
            Decision::AwaitApproval
        } else {
            Decision::Fire
        }
    } else if !approved && m.expires_at.is_some_and(|x| x <= now) {
        Decision::Expire
    } else {
        Decision::Wait
    };
    if matches!(decision, Decision::Fire | Decision::AwaitApproval) {
        reasons.clear();
    }
    Verdict { decision, reasons }
}

/// Whether the rule's email carries the certificate, as a PDF or a credential (it then
/// waits for the cycle's certificate).
pub fn attaches_certificate(rule: &ActionRule) -> bool {
    rule.email
        .attach
        .iter()
        .any(|a| matches!(a, Attachment::CertificatePdf | Attachment::Credential))
}

fn waits_for_certificate(rules: &RuleSet, course: &CourseInfo, cycle: i64) -> Reason {
    let text = format!(
        "waits for the certificate of cycle {cycle} (the email attaches it; issued when {})",
        rules
            .course_types
            .get(&course.type_id)
            .and_then(|t| t.certificate.as_ref())
            .map_or("the course type's certificate block says", |c| {
                match c.issue_on {
                    IssueOn::Completion => "the participant completes",
                    IssueOn::Passed => "the result is passed",
                }
            })
    );
    let nl = format!(
        "wacht op het certificaat van cyclus {cycle} (de e-mail voegt het bij; uitgegeven als {})",
        rules
            .course_types
            .get(&course.type_id)
            .and_then(|t| t.certificate.as_ref())
            .map_or("het certificaatblok van het cursustype zegt", |c| {
                match c.issue_on {
                    IssueOn::Completion => "de deelnemer de cursus afrondt",
                    IssueOn::Passed => "het resultaat geslaagd is",
                }
            })
    );
    Reason::new(text, "waits for the certificate").nl(nl)
}
