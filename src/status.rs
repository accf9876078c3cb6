//! The derived status of every participant of a course: what `export attendance` prints
//! and, later, what the HTTP API and the rule engine read.

use crate::domain::progress::{self, AttendanceSummary, PassingSummary};
use crate::domain::{ExpiryStatus, Outcome, expiry};
use crate::rules::RuleSet;
use crate::store::Tx;
use crate::store::read::{self, CourseInfo};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct ParticipantStatus {
    pub person_id: String,
    pub full_name: String,
    pub email: Option<String>,
    pub result: Outcome,
    pub walk_in: bool,
    pub cycle: i64,
    pub attendance: AttendanceSummary,
    pub passing: PassingSummary,
    pub completed_at: Option<DateTime<Utc>>,
    pub certificate_number: Option<String>,
    pub expiry: Option<ExpiryStatus>,
    /// One shown mark per part, in the course's part order.
    pub marks: Vec<&'static str>,
}

/// The course and its participants' statuses at `now`; `None` if the course is unknown.
pub async fn course_participants(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    course_id: &str,
) -> Result<Option<(CourseInfo, Vec<ParticipantStatus>)>, sqlx::Error> {
    let Some(course) = read::course(tx, course_id).await? else {
        return Ok(None);
    };
    let course_type = rules.course_types.get(&course.type_id);
    let percent = course_type.map_or(100, |t| t.attendance_percent);
    let parts = course.part_rules();
    let enrolments = read::enrolments_of_course(tx, course_id).await?;
    let people: Vec<String> = enrolments.iter().map(|e| e.person_id.clone()).collect();
    let progress = read::progress(tx, course_id, &people).await?;
    let certificates = read::certificate_numbers(tx, course_id).await?;
    let (no_marks, no_results) = (HashMap::new(), HashMap::new());
    let mut out = Vec::with_capacity(enrolments.len());
    for e in enrolments {
        let person = read::person(tx, &e.person_id).await?;
        let marks = progress.marks.get(&e.person_id).unwrap_or(&no_marks);
        let results = progress
            .part_results
            .get(&e.person_id)
            .unwrap_or(&no_results);
        out.push(ParticipantStatus {
            full_name: person
                .as_ref()
                .map(|p| p.full_name.clone())
                .unwrap_or_default(),
            email: person.and_then(|p| p.email),
            result: e.result,
            walk_in: e.walk_in,
            cycle: e.cycle,
            attendance: progress::attendance_requirement(&parts, marks, percent),
            passing: progress::passing_obligation(&parts, results),
            completed_at: e.completed_at,
            certificate_number: certificates.get(&e.person_id).cloned(),
            expiry: course_type.and_then(|t| {
                expiry::expiry_status(
                    e.completed_at,
                    t.attendance_validity,
                    t.expiring_soon,
                    now,
                    tz,
                )
            }),
            marks: parts
                .iter()
                .map(|p| progress::shown_mark(p, marks.get(&p.id), now))
                .collect(),
            person_id: e.person_id,
        });
    }
    Ok(Some((course, out)))
}
