//! Queries: the state of courses and enrolments as the domain rules need it.

use super::{Tx, on, push_list, word};
use crate::domain::progress::{GivenMark, PartRule};
use crate::domain::{CompletedVia, CourseStatus, Mark, Outcome};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use std::collections::HashMap;

/// A course with its parts, as the rules see it.
#[derive(Debug, Clone)]
pub struct CourseInfo {
    pub id: String,
    pub name: String,
    pub type_id: String,
    pub status: CourseStatus,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub location: Option<String>,
    pub fields: String,
    pub parts: Vec<PartDetail>,
}

#[derive(Debug, Clone)]
pub struct PartDetail {
    pub name: String,
    pub rule: PartRule,
}

impl CourseInfo {
    pub fn part_rules(&self) -> Vec<PartRule> {
        self.parts.iter().map(|p| p.rule.clone()).collect()
    }

    /// D7: the moment the course really starts: its first part, else its own start.
    pub fn first_start(&self) -> DateTime<Utc> {
        self.parts
            .iter()
            .map(|p| p.rule.start)
            .min()
            .unwrap_or(self.start)
    }

    pub fn part(&self, id: &str) -> Option<&PartDetail> {
        self.parts.iter().find(|p| p.rule.id == id)
    }
}

pub async fn course(tx: &mut Tx, id: &str) -> Result<Option<CourseInfo>, sqlx::Error> {
    Ok(super::scan::courses(tx, &[id.to_string()])
        .await?
        .remove(id))
}

/// For a batch of changes to one course: the enrolments of `people`, and which of the
/// people without one exist at all.
pub async fn enrolled_and_known(
    tx: &mut Tx,
    course: &str,
    people: &[String],
) -> Result<
    (
        HashMap<String, Enrolment>,
        std::collections::BTreeSet<String>,
    ),
    sqlx::Error,
> {
    let enrolments = enrolments_of(tx, course, people).await?;
    let missing: Vec<String> = people
        .iter()
        .filter(|p| !enrolments.contains_key(*p))
        .cloned()
        .collect();
    let known = existing_people(tx, &missing).await?.into_iter().collect();
    Ok((enrolments, known))
}

/// An enrolment row.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub course_id: String,
    pub person_id: String,
    pub result: Outcome,
    pub score: Option<f64>,
    pub comment: Option<String>,
    pub walk_in: bool,
    pub cycle: i64,
    pub completed_at: Option<DateTime<Utc>>,
    pub completed_via: Option<CompletedVia>,
}

impl Enrolment {
    /// A walk-in enrolment as created by a first attendance mark (D6).
    pub fn new_walk_in(course: &str, person: &str) -> Enrolment {
        Enrolment {
            course_id: course.to_string(),
            person_id: person.to_string(),
            result: Outcome::Registered,
            score: None,
            comment: None,
            walk_in: true,
            cycle: 1,
            completed_at: None,
            completed_via: None,
        }
    }
}

#[derive(sqlx::FromRow)]
struct EnrolmentRow {
    course_id: String,
    person_id: String,
    result: String,
    score: Option<f64>,
    comment: Option<String>,
    walk_in: bool,
    cycle: i64,
    completed_at: Option<DateTime<Utc>>,
    completed_via: Option<String>,
}

impl TryFrom<EnrolmentRow> for Enrolment {
    type Error = sqlx::Error;
    fn try_from(r: EnrolmentRow) -> Result<Self, sqlx::Error> {
        Ok(Enrolment {
            result: word(&r.result)?,
            completed_via: r.completed_via.as_deref().map(word).transpose()?,
            course_id: r.course_id,
            person_id: r.person_id,
            score: r.score,
            comment: r.comment,
            walk_in: r.walk_in,
            cycle: r.cycle,
            completed_at: r.completed_at,
        })
    }
}

const ENROLMENT_COLUMNS: &str = "SELECT course_id, person_id, result, score, comment, walk_in, cycle, completed_at, completed_via FROM enrolments ";

pub async fn enrolment(
    tx: &mut Tx,
    course: &str,
    person: &str,
) -> Result<Option<Enrolment>, sqlx::Error> {
    Ok(enrolments_of(tx, course, &[person.to_string()])
        .await?
        .into_values()
        .next())
}

/// The enrolments of `course` among `people`, by person id.
pub async fn enrolments_of(
    tx: &mut Tx,
    course: &str,
    people: &[String],
) -> Result<HashMap<String, Enrolment>, sqlx::Error> {
    let mut out = HashMap::new();
    for chunk in people.chunks(500) {
        let rows: Vec<EnrolmentRow> = on!(tx, c => {
            let mut q = QueryBuilder::new(ENROLMENT_COLUMNS);
            q.push("WHERE course_id = ").push_bind(course.to_string()).push(" AND person_id IN ");
            push_list(&mut q, chunk);
            q.build_query_as().fetch_all(&mut **c).await?
        });
        for r in rows {
            let e = Enrolment::try_from(r)?;
            out.insert(e.person_id.clone(), e);
        }
    }
    Ok(out)
}

/// Every enrolment of a course, ordered by the participant's name.
pub async fn enrolments_of_course(
    tx: &mut Tx,
    course: &str,
) -> Result<Vec<Enrolment>, sqlx::Error> {
    Ok(participants_of_course(tx, course, None)
        .await?
        .into_iter()
        .map(|(e, _, _)| e)
        .collect())
}

/// Every enrolment of a course with the participant's full name and email, ordered by
/// name: one query for the whole course.
pub async fn participants_of_course(
    tx: &mut Tx,
    course: &str,
    only: Option<&[String]>,
) -> Result<Vec<(Enrolment, String, Option<String>)>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        e: EnrolmentRow,
        full_name: String,
        email: Option<String>,
    }
    let rows: Vec<Row> = on!(tx, c => {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT e.course_id, e.person_id, e.result, e.score, e.comment, e.walk_in, e.cycle, e.completed_at, e.completed_via, \
             p.full_name, p.email FROM enrolments e JOIN people p ON p.id = e.person_id WHERE e.course_id = ",
        );
        q.push_bind(course);
        if let Some(only) = only {
            q.push(" AND e.person_id IN ");
            crate::store::push_list(&mut q, only);
        }
        q.push(" ORDER BY p.full_name, p.id");
        q.build_query_as().fetch_all(&mut **c).await?
    });
    rows.into_iter()
        .map(|r| Ok((Enrolment::try_from(r.e)?, r.full_name, r.email)))
        .collect()
}

/// The ids of incomplete enrolments of a course (to re-check after its parts change).
pub async fn incomplete_people(tx: &mut Tx, course: &str) -> Result<Vec<String>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT person_id FROM enrolments WHERE course_id = $1 AND completed_at IS NULL",
    ).bind(course).fetch_all(&mut **c).await)
}

/// Which of `ids` are people we know.
pub async fn existing_people(tx: &mut Tx, ids: &[String]) -> Result<Vec<String>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let found: Vec<String> = on!(tx, c => {
            let mut q = QueryBuilder::new("SELECT id FROM people WHERE id IN ");
            push_list(&mut q, chunk);
            q.build_query_scalar().fetch_all(&mut **c).await?
        });
        out.extend(found);
    }
    Ok(out)
}

/// Attendance marks and part results of some participants of a course.
#[derive(Debug, Default)]
pub struct Progress {
    pub marks: HashMap<String, HashMap<String, GivenMark>>,
    pub part_results: HashMap<String, HashMap<String, bool>>,
}

pub async fn progress(
    tx: &mut Tx,
    course: &str,
    people: &[String],
) -> Result<Progress, sqlx::Error> {
    let mut out = Progress::default();
    for chunk in people.chunks(500) {
        let marks: Vec<(String, String, String, Option<i64>)> = on!(tx, c => {
            let mut q = QueryBuilder::new("SELECT person_id, part_id, status, minutes FROM attendance WHERE course_id = ");
            q.push_bind(course.to_string()).push(" AND person_id IN ");
            push_list(&mut q, chunk);
            q.build_query_as().fetch_all(&mut **c).await?
        });
        for (person, part, status, minutes) in marks {
            let mark: Mark = word(&status)?;
            out.marks.entry(person).or_default().insert(
                part,
                GivenMark {
                    mark,
                    minutes: minutes.and_then(|m| u32::try_from(m).ok()),
                },
            );
        }
        let results: Vec<(String, String, bool)> = on!(tx, c => {
            let mut q = QueryBuilder::new("SELECT person_id, part_id, passed FROM part_results WHERE course_id = ");
            q.push_bind(course.to_string()).push(" AND person_id IN ");
            push_list(&mut q, chunk);
            q.build_query_as().fetch_all(&mut **c).await?
        });
        for (person, part, passed) in results {
            out.part_results
                .entry(person)
                .or_default()
                .insert(part, passed);
        }
    }
    Ok(out)
}

/// A person as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Person {
    pub id: String,
    pub full_name: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub locale: Option<String>,
    pub fields: String,
}

pub async fn person(tx: &mut Tx, id: &str) -> Result<Option<Person>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, full_name, email, first_name, locale, fields FROM people WHERE id = $1",
    ).bind(id).fetch_optional(&mut **c).await)
}

/// The certificate number of each participant's current cycle, if one is in force.
pub async fn certificate_numbers(
    tx: &mut Tx,
    course: &str,
) -> Result<HashMap<String, String>, sqlx::Error> {
    let rows: Vec<(String, String)> = on!(tx, c => sqlx::query_as(
        "SELECT cert.person_id, cert.number FROM certificates cert \
         JOIN enrolments e ON e.course_id = cert.course_id AND e.person_id = cert.person_id AND e.cycle = cert.cycle \
         WHERE cert.course_id = $1 AND cert.revoked_at IS NULL",
    ).bind(course).fetch_all(&mut **c).await?);
    Ok(rows.into_iter().collect())
}

/// `valid_until` of the certificate of a cycle (None: none issued, revoked, or no expiry).
pub async fn certificate_expiry(
    tx: &mut Tx,
    course: &str,
    person: &str,
    cycle: i64,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let until: Option<Option<DateTime<Utc>>> = on!(tx, c => sqlx::query_scalar(
        "SELECT valid_until FROM certificates WHERE course_id = $1 AND person_id = $2 AND cycle = $3 AND revoked_at IS NULL",
    ).bind(course).bind(person).bind(cycle).fetch_optional(&mut **c).await)?;
    Ok(until.flatten())
}

/// One row of the history (D10).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pub entity: String,
    pub course_id: Option<String>,
    pub person_id: Option<String>,
    pub part_id: Option<String>,
    pub change: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The history of one participant in one course, oldest first.
pub async fn history_of(
    tx: &mut Tx,
    course: &str,
    person: &str,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, at, actor, source, entity, course_id, person_id, part_id, change, before, after \
         FROM history WHERE course_id = $1 AND person_id = $2 ORDER BY id",
    ).bind(course).bind(person).fetch_all(&mut **c).await)
}

/// The certification history of a person (D10), of one certification or all.
pub async fn certification_history(
    tx: &mut Tx,
    person: &str,
    certification: Option<&str>,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, at, actor, source, entity, course_id, person_id, part_id, change, before, after \
         FROM history WHERE entity = 'certification' AND person_id = $1 AND ($2 IS NULL OR course_id = $2) ORDER BY id",
    ).bind(person).bind(certification).fetch_all(&mut **c).await)
}

/// An event recorded for the rule engine.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub course_id: String,
    pub person_id: Option<String>,
    pub part_id: Option<String>,
    pub cycle: Option<i64>,
}

/// Events not yet processed by the engine, oldest first.
pub async fn unprocessed_events(tx: &mut Tx, limit: i64) -> Result<Vec<EventRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, at, kind, course_id, person_id, part_id, cycle FROM events \
         WHERE processed_at IS NULL ORDER BY id LIMIT $1",
    ).bind(limit).fetch_all(&mut **c).await)
}
