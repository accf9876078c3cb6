//! The tables `certificates` and `certificate_sequences` (D5).
//!
//! Consistency: a certificate is issued inside the change that makes it due, while that
//! change holds the enrolment row locked; the unique key (course, person, cycle) makes a
//! second certificate for a cycle impossible. Numbers come from a counter row per prefix
//! and year, taken with `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`: concurrent
//! issuers wait for each other on that row, and a rolled-back issue rolls the counter
//! back too, so numbers have no gaps.

use super::{Tx, on, push_list};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use std::collections::{HashMap, HashSet};

/// The (person, cycle) pairs among `people` of `course` that have a certificate (revoked
/// or not).
pub async fn issued_among(
    tx: &mut Tx,
    course: &str,
    people: &[String],
) -> Result<HashSet<(String, i64)>, sqlx::Error> {
    let mut out = HashSet::new();
    for chunk in people.chunks(500) {
        let rows: Vec<(String, i64)> = on!(tx, c => {
            let mut q = QueryBuilder::new("SELECT person_id, cycle FROM certificates WHERE course_id = ");
            q.push_bind(course.to_string()).push(" AND person_id IN ");
            push_list(&mut q, chunk);
            q.build_query_as().fetch_all(&mut **c).await?
        });
        out.extend(rows);
    }
    Ok(out)
}

/// Reserves `count` numbers for `prefix` in `year`; returns the last one reserved.
pub async fn reserve_numbers(
    tx: &mut Tx,
    prefix: &str,
    year: i64,
    count: i64,
) -> Result<i64, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "INSERT INTO certificate_sequences (prefix, year, last) VALUES ($1, $2, $3) \
         ON CONFLICT (prefix, year) DO UPDATE SET last = certificate_sequences.last + excluded.last \
         RETURNING last",
    ).bind(prefix).bind(year).bind(count).fetch_one(&mut **c).await)
}

/// A certificate to record.
pub struct NewCertificate<'a> {
    pub course: &'a str,
    pub person: &'a str,
    pub cycle: i64,
    pub number: &'a str,
    pub code: &'a str,
    pub issued_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

pub async fn insert(tx: &mut Tx, n: &NewCertificate<'_>) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "INSERT INTO certificates (course_id, person_id, cycle, number, verification_code, issued_at, valid_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    ).bind(n.course).bind(n.person).bind(n.cycle).bind(n.number).bind(n.code)
        .bind(n.issued_at).bind(n.valid_until).execute(&mut **c).await.map(|_| ()))
}

/// D4: revokes the certificate of a cycle; returns the numbers revoked.
pub async fn revoke(
    tx: &mut Tx,
    course: &str,
    person: &str,
    cycle: i64,
    now: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    on!(tx, t => sqlx::query_scalar(
        "UPDATE certificates SET revoked_at = $1 WHERE course_id = $2 AND person_id = $3 AND cycle = $4 \
         AND revoked_at IS NULL RETURNING number",
    ).bind(now).bind(course).bind(person).bind(cycle).fetch_all(&mut **t).await)
}

/// The certificate number of each participant's current cycle, if one is in force.
pub async fn numbers_in_force(
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

/// A certificate in force, as the templates show it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InForce {
    pub number: String,
    pub verification_code: String,
    pub issued_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

/// The certificate in force of a cycle, if any.
pub async fn in_force(
    tx: &mut Tx,
    course: &str,
    person: &str,
    cycle: i64,
) -> Result<Option<InForce>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT number, verification_code, issued_at, valid_until FROM certificates \
         WHERE course_id = $1 AND person_id = $2 AND cycle = $3 AND revoked_at IS NULL",
    ).bind(course).bind(person).bind(cycle).fetch_optional(&mut **c).await)
}

/// (course, person, cycle, number, verification code, issued, valid until)
type InForceRow = (
    String,
    String,
    i64,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// The certificates in force of `people` in `courses`, by (course, person, cycle): one
/// statement for a batch of the firing pass.
pub async fn in_force_of(
    tx: &mut Tx,
    courses: &[String],
    people: &[String],
) -> Result<HashMap<(String, String, i64), InForce>, sqlx::Error> {
    let rows: Vec<InForceRow> = on!(tx, c => {
        let mut q = QueryBuilder::new(
            "SELECT course_id, person_id, cycle, number, verification_code, issued_at, valid_until FROM certificates \
             WHERE revoked_at IS NULL AND course_id IN ",
        );
        push_list(&mut q, courses);
        q.push(" AND person_id IN ");
        push_list(&mut q, people);
        q.build_query_as().fetch_all(&mut **c).await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(course, person, cycle, number, verification_code, issued_at, valid_until)| {
                (
                    (course, person, cycle),
                    InForce {
                        number,
                        verification_code,
                        issued_at,
                        valid_until,
                    },
                )
            },
        )
        .collect())
}

/// The certificate number in force of each participant of `courses` (in their current
/// cycle), by course and person.
pub async fn numbers_in_force_of_courses(
    tx: &mut Tx,
    courses: &[String],
) -> Result<HashMap<String, HashMap<String, String>>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = on!(tx, c => {
        let mut q = QueryBuilder::new(
            "SELECT cert.course_id, cert.person_id, cert.number FROM certificates cert \
             JOIN enrolments e ON e.course_id = cert.course_id AND e.person_id = cert.person_id AND e.cycle = cert.cycle \
             WHERE cert.revoked_at IS NULL AND cert.course_id IN ",
        );
        push_list(&mut q, courses);
        q.build_query_as().fetch_all(&mut **c).await?
    });
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    for (course, person, number) in rows {
        out.entry(course).or_default().insert(person, number);
    }
    Ok(out)
}

/// For `plan`: the (course, person, cycle) of every certificate in force among `courses`.
pub async fn in_force_of_courses(
    tx: &mut Tx,
    courses: &[String],
) -> Result<HashSet<(String, String, i64)>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = on!(tx, c => {
        let mut q = QueryBuilder::new(
            "SELECT course_id, person_id, cycle FROM certificates WHERE revoked_at IS NULL AND course_id IN ",
        );
        push_list(&mut q, courses);
        q.build_query_as().fetch_all(&mut **c).await?
    });
    Ok(rows.into_iter().collect())
}

/// What `/verify/{code}` shows: number, holder, course, issued, valid until, revoked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Verified {
    pub course_id: String,
    pub person_id: String,
    pub number: String,
    pub full_name: String,
    /// For the credential's salted identifier only; the page never shows it.
    pub email: Option<String>,
    pub course_name: String,
    pub type_id: String,
    pub course_start: DateTime<Utc>,
    pub course_end: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn by_code(tx: &mut Tx, code: &str) -> Result<Option<Verified>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT cert.course_id, cert.person_id, cert.number, p.full_name, p.email, co.name AS course_name, co.type_id, co.start_at AS course_start, \
         co.end_at AS course_end, cert.issued_at, cert.valid_until, cert.revoked_at \
         FROM certificates cert JOIN people p ON p.id = cert.person_id JOIN courses co ON co.id = cert.course_id \
         WHERE cert.verification_code = $1",
    ).bind(code).fetch_optional(&mut **c).await)
}

/// A certificate issued, for the office digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Issued {
    pub number: String,
    pub course: String,
    pub person: String,
    pub issued_at: DateTime<Utc>,
    pub revoked: bool,
}

/// The certificates issued after `since` and at or before `until`, in number order.
pub async fn issued_between(
    tx: &mut Tx,
    since: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Result<Vec<Issued>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT number, course_id AS course, person_id AS person, issued_at, revoked_at IS NOT NULL AS revoked FROM certificates \
         WHERE ($1 IS NULL OR issued_at > $1) AND issued_at <= $2 ORDER BY issued_at, number",
    ).bind(since).bind(until).fetch_all(&mut **c).await)
}

/// The certificates in force (not revoked) valid until a moment in `[from, to]`: (course,
/// person, cycle, valid until).
pub async fn valid_until_between(
    tx: &mut Tx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, String, i64, DateTime<Utc>)>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT course_id, person_id, cycle, valid_until FROM certificates \
         WHERE revoked_at IS NULL AND valid_until >= $1 AND valid_until <= $2 ORDER BY course_id, person_id",
    ).bind(from).bind(to).fetch_all(&mut **c).await)
}

/// A certificate of a person, in force or revoked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OfPerson {
    pub course_id: String,
    pub cycle: i64,
    pub number: String,
    pub verification_code: String,
    pub issued_at: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Every certificate of a person, newest first.
pub async fn of_person(tx: &mut Tx, person: &str) -> Result<Vec<OfPerson>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT course_id, cycle, number, verification_code, issued_at, valid_until, revoked_at FROM certificates \
         WHERE person_id = $1 ORDER BY issued_at DESC, id DESC",
    ).bind(person).fetch_all(&mut **c).await)
}
