//! Large reads for `plan`: everything about a batch of courses in a handful of queries.
//! On SQLite, sqlx's cost per column dominates reads of millions of rows, so wide rows
//! are read as one text column (fields joined by U+001F, which no id may contain) and split
//! here; PostgreSQL reads the columns as they are.

use super::read::{CourseInfo, Enrolment, PartDetail, Progress};
use super::{Tx, on, push_list, word};
use crate::domain::progress::{GivenMark, PartRule};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use std::collections::HashMap;

const SEP: char = '\u{1f}';
/// Separates rows aggregated into one (char(30)).
const ROW: char = '\u{1e}';

/// An action instance as `plan` needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActionRow {
    pub id: i64,
    pub rule_id: String,
    pub course_id: String,
    pub person_id: String,
    pub cycle: i64,
    pub state: String,
    pub due_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

fn bad(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("malformed {what} row").into())
}

fn time(s: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    if s.is_empty() {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| bad("timestamp"))
}

/// The courses that have action instances (of `rule`, if given), in id order.
pub async fn courses_with_actions(
    tx: &mut Tx,
    rule: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT DISTINCT course_id FROM actions WHERE ($1 IS NULL OR rule_id = $1) ORDER BY course_id",
    ).bind(rule).fetch_all(&mut **c).await)
}

/// The action instances of `courses` (of `rule`, if given), ordered by course, due time,
/// person and rule.
pub async fn actions(
    tx: &mut Tx,
    courses: &[String],
    rule: Option<&str>,
) -> Result<Vec<ActionRow>, sqlx::Error> {
    // A fired action shows its delivery's state until it is sent; sent ones are left out.
    const STATE: &str = "CASE WHEN a.state = 'fired' THEN CASE d.state WHEN 'retrying' THEN 'retrying' \
        WHEN 'failed' THEN 'failed' ELSE 'due' END WHEN a.state = 'approved' THEN 'due' ELSE a.state END";
    const FROM: &str = " FROM actions a LEFT JOIN deliveries d ON d.action_id = a.id \
        WHERE (d.state IS NULL OR d.state <> 'sent') AND a.course_id IN ";
    const ORDER: &str = " ORDER BY a.course_id, a.due_at IS NULL, a.due_at, a.person_id, a.rule_id";
    match tx {
        Tx::Sqlite(c) => {
            // One row per course, its instances joined by char(30): the per-row cost of
            // crossing from SQLite's thread dominates a read of millions of rows.
            let mut q = QueryBuilder::new(format!(
                "SELECT group_concat(a.id || char(31) || a.rule_id || char(31) || a.course_id || char(31) || a.person_id \
                 || char(31) || a.cycle || char(31) || {STATE} || char(31) || COALESCE(a.due_at, '') \
                 || char(31) || COALESCE(a.expires_at, ''), char(30)){FROM}"
            ));
            push_list(&mut q, courses);
            q.push(" AND (")
                .push_bind(rule)
                .push(" IS NULL OR a.rule_id = ")
                .push_bind(rule)
                .push(") GROUP BY a.course_id");
            let groups: Vec<String> = q.build_query_scalar().fetch_all(&mut **c).await?;
            let mut out = Vec::new();
            for r in groups.iter().flat_map(|g| g.split(ROW)) {
                let f: Vec<&str> = r.split(SEP).collect();
                let [
                    id,
                    rule_id,
                    course_id,
                    person_id,
                    cycle,
                    state,
                    due,
                    expires,
                ] = f[..]
                else {
                    return Err(bad("action"));
                };
                out.push(ActionRow {
                    id: id.parse().map_err(|_| bad("action"))?,
                    rule_id: rule_id.to_string(),
                    course_id: course_id.to_string(),
                    person_id: person_id.to_string(),
                    cycle: cycle.parse().map_err(|_| bad("action"))?,
                    state: state.to_string(),
                    due_at: time(due)?,
                    expires_at: time(expires)?,
                });
            }
            // The order of ORDER below, which GROUP BY does not keep.
            out.sort_unstable_by(|a, b| {
                (
                    &a.course_id,
                    a.due_at.is_none(),
                    a.due_at,
                    &a.person_id,
                    &a.rule_id,
                )
                    .cmp(&(
                        &b.course_id,
                        b.due_at.is_none(),
                        b.due_at,
                        &b.person_id,
                        &b.rule_id,
                    ))
            });
            Ok(out)
        }
        Tx::Postgres(c) => {
            let mut q = QueryBuilder::new(format!(
                "SELECT a.id, a.rule_id, a.course_id, a.person_id, a.cycle, {STATE} AS state, a.due_at, a.expires_at{FROM}"
            ));
            push_list(&mut q, courses);
            q.push(" AND (")
                .push_bind(rule)
                .push("::text IS NULL OR a.rule_id = ")
                .push_bind(rule)
                .push(")")
                .push(ORDER);
            q.build_query_as().fetch_all(&mut **c).await
        }
    }
}

/// The (course, person, cycle) of every certificate in force among `courses`.
pub async fn certificates(
    tx: &mut Tx,
    courses: &[String],
) -> Result<std::collections::HashSet<(String, String, i64)>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = on!(tx, c => {
        let mut q = QueryBuilder::new(
            "SELECT course_id, person_id, cycle FROM certificates WHERE revoked_at IS NULL AND course_id IN ",
        );
        push_list(&mut q, courses);
        q.build_query_as().fetch_all(&mut **c).await?
    });
    Ok(rows.into_iter().collect())
}

/// `courses` with their parts, by id.
pub async fn courses(
    tx: &mut Tx,
    ids: &[String],
) -> Result<HashMap<String, CourseInfo>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct CourseRow {
        id: String,
        name: String,
        type_id: String,
        status: String,
        start_at: DateTime<Utc>,
        end_at: DateTime<Utc>,
        location: Option<String>,
        fields: String,
    }
    #[derive(sqlx::FromRow)]
    struct PartRow {
        course_id: String,
        id: String,
        name: String,
        start_at: DateTime<Utc>,
        end_at: DateTime<Utc>,
        attendance_required: bool,
        passing_required: bool,
        min_minutes: Option<i64>,
    }
    let rows: Vec<CourseRow> = on!(tx, c => {
        let mut q = QueryBuilder::new("SELECT id, name, type_id, status, start_at, end_at, location, fields FROM courses WHERE id IN ");
        push_list(&mut q, ids);
        q.build_query_as().fetch_all(&mut **c).await?
    });
    let parts: Vec<PartRow> = on!(tx, c => {
        let mut q = QueryBuilder::new(
            "SELECT course_id, id, name, start_at, end_at, attendance_required, passing_required, min_minutes \
             FROM parts WHERE course_id IN ",
        );
        push_list(&mut q, ids);
        q.push(" ORDER BY course_id, start_at, id");
        q.build_query_as().fetch_all(&mut **c).await?
    });
    let mut out = HashMap::new();
    for r in rows {
        out.insert(
            r.id.clone(),
            CourseInfo {
                status: word(&r.status)?,
                id: r.id,
                name: r.name,
                type_id: r.type_id,
                start: r.start_at,
                end: r.end_at,
                location: r.location,
                fields: r.fields,
                parts: Vec::new(),
            },
        );
    }
    for p in parts {
        if let Some(c) = out.get_mut(&p.course_id) {
            c.parts.push(PartDetail {
                name: p.name,
                rule: PartRule {
                    id: p.id,
                    start: p.start_at,
                    end: p.end_at,
                    attendance_required: p.attendance_required,
                    passing_required: p.passing_required,
                    min_minutes: p.min_minutes.and_then(|m| u32::try_from(m).ok()),
                },
            });
        }
    }
    Ok(out)
}

/// The result and cycle of every enrolment of `courses`, by course and person.
pub async fn enrolments(
    tx: &mut Tx,
    courses: &[String],
) -> Result<HashMap<String, HashMap<String, Enrolment>>, sqlx::Error> {
    let rows: Vec<(String, String, String, i64)> = match tx {
        Tx::Sqlite(c) => {
            let mut q = QueryBuilder::new(
                "SELECT group_concat(course_id || char(31) || person_id || char(31) || result || char(31) || cycle, char(30)) \
                 FROM enrolments WHERE course_id IN ",
            );
            push_list(&mut q, courses);
            q.push(" GROUP BY course_id");
            let groups: Vec<String> = q.build_query_scalar().fetch_all(&mut **c).await?;
            groups
                .iter()
                .flat_map(|g| g.split(ROW))
                .map(|r| {
                    let f: Vec<&str> = r.split(SEP).collect();
                    let [course, person, result, cycle] = f[..] else {
                        return Err(bad("enrolment"));
                    };
                    Ok((
                        course.to_string(),
                        person.to_string(),
                        result.to_string(),
                        cycle.parse().map_err(|_| bad("enrolment"))?,
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()?
        }
        Tx::Postgres(c) => {
            let mut q = QueryBuilder::new(
                "SELECT course_id, person_id, result, cycle FROM enrolments WHERE course_id IN ",
            );
            push_list(&mut q, courses);
            q.build_query_as().fetch_all(&mut **c).await?
        }
    };
    let mut out: HashMap<String, HashMap<String, Enrolment>> = HashMap::new();
    for (course, person, result, cycle) in rows {
        let mut e = Enrolment::new_walk_in(&course, &person);
        e.walk_in = false;
        e.result = word(&result)?;
        e.cycle = cycle;
        out.entry(course).or_default().insert(person, e);
    }
    Ok(out)
}

/// Marks and part results of every participant of `courses`, by course.
pub async fn progress(
    tx: &mut Tx,
    courses: &[String],
) -> Result<HashMap<String, Progress>, sqlx::Error> {
    let marks: Vec<(String, String, String, String, Option<i64>)> = on!(tx, c => {
        let mut q = QueryBuilder::new("SELECT course_id, person_id, part_id, status, minutes FROM attendance WHERE course_id IN ");
        push_list(&mut q, courses);
        q.build_query_as().fetch_all(&mut **c).await?
    });
    let results: Vec<(String, String, String, bool)> = on!(tx, c => {
        let mut q = QueryBuilder::new("SELECT course_id, person_id, part_id, passed FROM part_results WHERE course_id IN ");
        push_list(&mut q, courses);
        q.build_query_as().fetch_all(&mut **c).await?
    });
    let mut out: HashMap<String, Progress> = HashMap::new();
    for (course, person, part, status, minutes) in marks {
        let mark = GivenMark {
            mark: word(&status)?,
            minutes: minutes.and_then(|m| u32::try_from(m).ok()),
        };
        out.entry(course)
            .or_default()
            .marks
            .entry(person)
            .or_default()
            .insert(part, mark);
    }
    for (course, person, part, passed) in results {
        out.entry(course)
            .or_default()
            .part_results
            .entry(person)
            .or_default()
            .insert(part, passed);
    }
    Ok(out)
}
