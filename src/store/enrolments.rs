//! The tables `enrolments`, `attendance` and `part_results`: the participants of a course
//! and their progress.
//!
//! Consistency: every change of a participant first locks the enrolment row ([`lock`]:
//! `SELECT ... FOR UPDATE`, rows in person order) and only then reads the participant's
//! marks and part results. Two changes of one participant therefore run one after the
//! other, and the second reads what the first committed: completion (D3), the cycle (D4)
//! and the certificate (D5) are decided on the state that includes every change, whichever
//! transaction commits last. New enrolments are inserted with `ON CONFLICT DO NOTHING`.

use super::{Lock, Tx, on, packed, push_list, word};
use crate::domain::progress::GivenMark;
use crate::domain::{CompletedVia, Mark, Outcome};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use std::collections::{BTreeSet, HashMap};

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
    /// A new enrolment as created by [`insert`]: registered, cycle 1.
    pub fn new(course: &str, person: &str, walk_in: bool) -> Enrolment {
        Enrolment {
            course_id: course.to_string(),
            person_id: person.to_string(),
            result: Outcome::Registered,
            score: None,
            comment: None,
            walk_in,
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

const COLUMNS: &str = "SELECT course_id, person_id, result, score, comment, walk_in, cycle, completed_at, completed_via FROM enrolments ";

/// The enrolments of `course` among `people`, by person id, locked as `lock` says (rows
/// are locked in person order, so that two bulk changes never wait for each other in a
/// circle).
pub async fn of(
    tx: &mut Tx,
    course: &str,
    people: &[String],
    lock: Lock,
) -> Result<HashMap<String, Enrolment>, sqlx::Error> {
    let mut out = HashMap::new();
    let mut sorted: Vec<&String> = people.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let sorted: Vec<String> = sorted.into_iter().cloned().collect();
    let clause = lock.clause(tx);
    for chunk in sorted.chunks(500) {
        let rows: Vec<EnrolmentRow> = on!(tx, c => {
            let mut q = QueryBuilder::new(COLUMNS);
            q.push("WHERE course_id = ").push_bind(course.to_string()).push(" AND person_id IN ");
            push_list(&mut q, chunk);
            if !clause.is_empty() {
                q.push(" ORDER BY person_id").push(clause);
            }
            q.build_query_as().fetch_all(&mut **c).await?
        });
        for r in rows {
            let e = Enrolment::try_from(r)?;
            out.insert(e.person_id.clone(), e);
        }
    }
    Ok(out)
}

/// Where a participant stands as ingest reads it: the result and the current cycle.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub result: Outcome,
    pub cycle: i64,
}

/// The standing of many (course, person) pairs, unlocked, in one statement (the pairs
/// travel as one JSON array, and only the two columns ingest needs come back): what ingest
/// reads for a batch of events. A pair without an enrolment is absent.
pub async fn standing_of_pairs(
    tx: &mut Tx,
    pairs: &[(&str, &str)],
) -> Result<HashMap<(String, String), Standing, foldhash::fast::RandomState>, sqlx::Error> {
    // A course with many of the pairs (an import's enrolments) is read whole, along its
    // key, instead of looking each pair up; the rest pair by pair.
    const WHOLE: usize = 32;
    let mut per_course: HashMap<&str, usize, foldhash::fast::RandomState> = HashMap::default();
    for (course, _) in pairs {
        *per_course.entry(*course).or_default() += 1;
    }
    let mut whole: Vec<(&str,)> = per_course
        .iter()
        .filter(|(_, n)| **n >= WHOLE)
        .map(|(c, _)| (*c,))
        .collect();
    whole.sort_unstable();
    let single: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(c, _)| per_course.get(c).is_none_or(|n| *n < WHOLE))
        .copied()
        .collect();
    let mut out = HashMap::default();
    for chunk in whole.chunks(10_000) {
        let list = super::json_param(chunk)?;
        standing_into(
            tx,
            &list,
            "JOIN enrolments e ON e.course_id = j.value->>0",
            &mut out,
        )
        .await?;
    }
    for chunk in single.chunks(10_000) {
        let list = super::json_param(chunk)?;
        standing_into(
            tx,
            &list,
            "JOIN enrolments e ON e.course_id = j.value->>0 AND e.person_id = j.value->>1",
            &mut out,
        )
        .await?;
    }
    Ok(out)
}

/// The standing of the enrolments `join` finds for the JSON array `list`, into `out`.
async fn standing_into(
    tx: &mut Tx,
    list: &str,
    join: &str,
    out: &mut HashMap<(String, String), Standing, foldhash::fast::RandomState>,
) -> Result<(), sqlx::Error> {
    let from = super::json_rows(tx, 1);
    // Packed on SQLite: one text for the chunk instead of a row per participant (plain
    // rows again if one does not read back packed, as in `progress_in`).
    let packed = match tx {
        Tx::Sqlite(c) => {
            let packed: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT group_concat(e.course_id || char(31) || e.person_id || char(31) || e.result \
                 || char(31) || e.cycle, char(30)) FROM {from} {join}"
            )))
            .bind(list)
            .fetch_one(&mut **c)
            .await?;
            packed::rows::<4>(packed.as_slice(), "enrolment")
                .map(|r| {
                    let [course, person, result, cycle] = r?;
                    Ok((
                        course.to_string(),
                        person.to_string(),
                        result.to_string(),
                        packed::int(cycle, "enrolment")?,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .ok()
        }
        Tx::Postgres(_) => None,
    };
    let rows: Vec<(String, String, String, i64)> = match packed {
        Some(rows) => rows,
        None => on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT e.course_id, e.person_id, e.result, e.cycle FROM {from} {join}"
        ))).bind(list).fetch_all(&mut **c).await)?,
    };
    for (course, person, result, cycle) in rows {
        out.insert(
            (course, person),
            Standing {
                result: word(&result)?,
                cycle,
            },
        );
    }
    Ok(())
}

/// [`of`] with every row locked `FOR UPDATE`: what a change of these participants reads.
pub async fn lock(
    tx: &mut Tx,
    course: &str,
    people: &[String],
) -> Result<HashMap<String, Enrolment>, sqlx::Error> {
    of(tx, course, people, Lock::Update).await
}

/// One enrolment, locked as `lock` says.
pub async fn one(
    tx: &mut Tx,
    course: &str,
    person: &str,
    lock: Lock,
) -> Result<Option<Enrolment>, sqlx::Error> {
    Ok(of(tx, course, &[person.to_string()], lock)
        .await?
        .into_values()
        .next())
}

/// Creates enrolments (result `registered`, cycle 1) unless they exist; returns the people
/// this call enrolled. One enrolled at the same moment by another transaction is waited
/// for and not returned.
pub async fn insert(
    tx: &mut Tx,
    course: &str,
    people: &[(String, bool)],
    now: DateTime<Utc>,
) -> Result<BTreeSet<String>, sqlx::Error> {
    let mut created = BTreeSet::new();
    for chunk in people.chunks(400) {
        let rows: Vec<String> = on!(tx, t => {
            let mut q = QueryBuilder::new(
                "INSERT INTO enrolments (course_id, person_id, result, walk_in, cycle, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, (person, walk_in)| {
                b.push_bind(course.to_string()).push_bind(person.clone()).push_bind(Outcome::Registered.as_str())
                    .push_bind(*walk_in).push_bind(1_i64).push_bind(now).push_bind(now);
            });
            q.push(" ON CONFLICT (course_id, person_id) DO NOTHING RETURNING person_id");
            q.build_query_scalar().fetch_all(&mut **t).await?
        });
        created.extend(rows);
    }
    Ok(created)
}

pub async fn set_walk_in(
    tx: &mut Tx,
    course: &str,
    person: &str,
    walk_in: bool,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, t => sqlx::query(
        "UPDATE enrolments SET walk_in = $1, updated_at = $2 WHERE course_id = $3 AND person_id = $4",
    ).bind(walk_in).bind(now).bind(course).bind(person).execute(&mut **t).await.map(|_| ()))
}

/// D3: completion of `people` of `course` (those not complete yet).
pub async fn complete(
    tx: &mut Tx,
    course: &str,
    people: &[String],
    via: CompletedVia,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in people.chunks(500) {
        on!(tx, t => {
            let mut q = QueryBuilder::new("UPDATE enrolments SET completed_at = ");
            q.push_bind(now).push(", completed_via = ").push_bind(via.as_str())
                .push(", updated_at = ").push_bind(now)
                .push(" WHERE completed_at IS NULL AND course_id = ").push_bind(course.to_string())
                .push(" AND person_id IN ");
            push_list(&mut q, chunk);
            q.build().execute(&mut **t).await?;
        });
    }
    Ok(())
}

pub async fn set_result(
    tx: &mut Tx,
    course: &str,
    person: &str,
    result: Outcome,
    score: Option<f64>,
    comment: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, t => sqlx::query(
        "UPDATE enrolments SET result = $1, score = $2, comment = $3, updated_at = $4 WHERE course_id = $5 AND person_id = $6",
    ).bind(result.as_str()).bind(score).bind(comment).bind(now).bind(course).bind(person)
     .execute(&mut **t).await.map(|_| ()))
}

/// D4: a new cycle, result `registered`, completion cleared; the caller holds the row.
pub async fn start_cycle(
    tx: &mut Tx,
    course: &str,
    person: &str,
    cycle: i64,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, t => sqlx::query(
        "UPDATE enrolments SET cycle = $1, result = $2, score = NULL, completed_at = NULL, completed_via = NULL, \
         updated_at = $3 WHERE course_id = $4 AND person_id = $5",
    ).bind(cycle).bind(Outcome::Registered.as_str()).bind(now).bind(course).bind(person).execute(&mut **t).await.map(|_| ()))
}

/// Clears a participant's attendance marks and part results (reassign; the history keeps them).
pub async fn clear_progress(tx: &mut Tx, course: &str, person: &str) -> Result<(), sqlx::Error> {
    for sql in [
        "DELETE FROM attendance WHERE course_id = $1 AND person_id = $2",
        "DELETE FROM part_results WHERE course_id = $1 AND person_id = $2",
    ] {
        on!(tx, t => sqlx::query(sql).bind(course).bind(person).execute(&mut **t).await.map(|_| ()))?;
    }
    Ok(())
}

/// D7: deletes the booking with its marks and part results (the history keeps them).
pub async fn delete(tx: &mut Tx, course: &str, person: &str) -> Result<(), sqlx::Error> {
    clear_progress(tx, course, person).await?;
    on!(tx, t => sqlx::query("DELETE FROM enrolments WHERE course_id = $1 AND person_id = $2")
        .bind(course).bind(person).execute(&mut **t).await.map(|_| ()))
}

/// Every enrolment of a course with the participant's full name and email, ordered by
/// name: one query for the whole course (or only the people in `only`).
pub async fn participants_of_course(
    tx: &mut Tx,
    course: &str,
    only: Option<&[String]>,
) -> Result<Vec<(Enrolment, String, Option<String>)>, sqlx::Error> {
    participants_in(tx, std::slice::from_ref(&course.to_string()), only).await
}

/// [`participants_of_course`] for many courses at once: the enrolments of `people` in
/// `courses` (every pair of the two lists that exists), one statement.
pub async fn participants_of_courses(
    tx: &mut Tx,
    courses: &[String],
    people: &[String],
) -> Result<Vec<(Enrolment, String, Option<String>)>, sqlx::Error> {
    participants_in(tx, courses, Some(people)).await
}

/// An enrolment with the participant's full name and email.
#[derive(sqlx::FromRow)]
struct ParticipantRow {
    #[sqlx(flatten)]
    e: EnrolmentRow,
    full_name: String,
    email: Option<String>,
}

/// The enrolments of these (course, person) pairs (those that exist) with the
/// participant's full name and email, ordered by name: one statement per 10,000 pairs, one
/// index probe per pair (a batch of the firing pass names its pairs; the lists of its
/// courses and of its people would cross into many more).
pub async fn participants_of_pairs(
    tx: &mut Tx,
    pairs: &[(&str, &str)],
) -> Result<Vec<(Enrolment, String, Option<String>)>, sqlx::Error> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(10_000) {
        let list = super::json_param(chunk)?;
        let from = super::json_rows(tx, 1);
        let rows: Vec<ParticipantRow> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT e.course_id, e.person_id, e.result, e.score, e.comment, e.walk_in, e.cycle, e.completed_at, \
             e.completed_via, p.full_name, p.email FROM {from} \
             JOIN enrolments e ON e.course_id = j.value->>0 AND e.person_id = j.value->>1 \
             JOIN people p ON p.id = e.person_id ORDER BY p.full_name, p.id"
        ))).bind(&list).fetch_all(&mut **c).await)?;
        for r in rows {
            out.push((Enrolment::try_from(r.e)?, r.full_name, r.email));
        }
    }
    Ok(out)
}

async fn participants_in(
    tx: &mut Tx,
    courses: &[String],
    only: Option<&[String]>,
) -> Result<Vec<(Enrolment, String, Option<String>)>, sqlx::Error> {
    let rows: Vec<ParticipantRow> = on!(tx, c => {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT e.course_id, e.person_id, e.result, e.score, e.comment, e.walk_in, e.cycle, e.completed_at, e.completed_via, \
             p.full_name, p.email FROM enrolments e JOIN people p ON p.id = e.person_id WHERE e.course_id IN ",
        );
        push_list(&mut q, courses);
        if let Some(only) = only {
            q.push(" AND e.person_id IN ");
            push_list(&mut q, only);
        }
        q.push(" ORDER BY p.full_name, p.id");
        q.build_query_as().fetch_all(&mut **c).await?
    });
    rows.into_iter()
        .map(|r| Ok((Enrolment::try_from(r.e)?, r.full_name, r.email)))
        .collect()
}

/// The people of a course's incomplete enrolments (to re-check after its parts change).
pub async fn incomplete_people(tx: &mut Tx, course: &str) -> Result<Vec<String>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT person_id FROM enrolments WHERE course_id = $1 AND completed_at IS NULL ORDER BY person_id",
    ).bind(course).fetch_all(&mut **c).await)
}

/// Whether `person` completed (D3) a course of type `course_type` at or after `since`
/// (a certification's training step).
pub async fn completed_course_of_type(
    tx: &mut Tx,
    person: &str,
    course_type: &str,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM enrolments e JOIN courses c ON c.id = e.course_id \
         WHERE e.person_id = $1 AND c.type_id = $2 AND e.completed_at >= $3)",
    ).bind(person).bind(course_type).bind(since).fetch_one(&mut **c).await)
}

/// Attendance marks and part results of some participants of a course.
#[derive(Debug, Default)]
pub struct Progress {
    pub marks: HashMap<String, HashMap<String, GivenMark>>,
    pub part_results: HashMap<String, HashMap<String, bool>>,
}

/// The marks and part results of `people` of `course` (read after their enrolments are
/// locked, so that they include every committed change).
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

/// A mark to write: (course, person, part, mark, minutes).
pub type MarkRow<'a> = (&'a str, &'a str, &'a str, Mark, Option<u32>);

/// Writes attendance marks (the enrolments locked by the caller).
pub async fn upsert_marks(tx: &mut Tx, marks: &[MarkRow<'_>]) -> Result<(), sqlx::Error> {
    for chunk in marks.chunks(1000) {
        on!(tx, t => {
            let mut q = QueryBuilder::new(
                "INSERT INTO attendance (course_id, person_id, part_id, status, minutes) ",
            );
            q.push_values(chunk, |mut b, (course, person, part, mark, minutes)| {
                b.push_bind(course.to_string())
                    .push_bind(person.to_string())
                    .push_bind(part.to_string())
                    .push_bind(mark.as_str())
                    .push_bind(minutes.map(i64::from));
            });
            q.push(
                " ON CONFLICT (course_id, person_id, part_id) DO UPDATE SET status = excluded.status, \
                 minutes = excluded.minutes",
            );
            q.build().execute(&mut **t).await?;
        });
    }
    Ok(())
}

/// The recorded part result, if any.
pub async fn part_result(
    tx: &mut Tx,
    course: &str,
    person: &str,
    part: &str,
) -> Result<Option<bool>, sqlx::Error> {
    on!(tx, t => sqlx::query_scalar(
        "SELECT passed FROM part_results WHERE course_id = $1 AND person_id = $2 AND part_id = $3",
    ).bind(course).bind(person).bind(part).fetch_optional(&mut **t).await)
}

pub async fn set_part_result(
    tx: &mut Tx,
    course: &str,
    person: &str,
    part: &str,
    passed: bool,
) -> Result<(), sqlx::Error> {
    on!(tx, t => sqlx::query(
        "INSERT INTO part_results (course_id, person_id, part_id, passed) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (course_id, person_id, part_id) DO UPDATE SET passed = excluded.passed",
    ).bind(course).bind(person).bind(part).bind(passed).execute(&mut **t).await.map(|_| ()))
}

/// For `plan`: the result, cycle and completion of every enrolment of `courses`, by course
/// and person.
pub async fn of_courses(
    tx: &mut Tx,
    courses: &[String],
) -> Result<HashMap<String, HashMap<String, Enrolment>>, sqlx::Error> {
    type Row = (String, String, String, i64, Option<DateTime<Utc>>);
    // Packed on SQLite, one text per course; a row that does not read back packed (an id
    // stored before ids were checked for control characters) is read again as plain rows.
    let packed: Option<Vec<Row>> = match tx {
        Tx::Sqlite(c) => {
            let mut q = QueryBuilder::new(
                "SELECT group_concat(course_id || char(31) || person_id || char(31) || result || char(31) || cycle \
                 || char(31) || COALESCE(completed_at, ''), char(30)) FROM enrolments WHERE course_id IN ",
            );
            push_list(&mut q, courses);
            q.push(" GROUP BY course_id");
            let groups: Vec<String> = q.build_query_scalar().fetch_all(&mut **c).await?;
            packed::rows::<5>(&groups, "enrolment")
                .map(|r| {
                    let [course, person, result, cycle, completed] = r?;
                    Ok((
                        course.to_string(),
                        person.to_string(),
                        result.to_string(),
                        packed::int(cycle, "enrolment")?,
                        packed::time(completed)?,
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()
                .ok()
        }
        Tx::Postgres(_) => None,
    };
    let rows: Vec<Row> = match packed {
        Some(rows) => rows,
        None => on!(tx, c => {
            let mut q = QueryBuilder::new(
                "SELECT course_id, person_id, result, cycle, completed_at FROM enrolments WHERE course_id IN ",
            );
            push_list(&mut q, courses);
            q.build_query_as().fetch_all(&mut **c).await?
        }),
    };
    let mut out: HashMap<String, HashMap<String, Enrolment>> = HashMap::new();
    for (course, person, result, cycle, completed_at) in rows {
        let mut e = Enrolment::new(&course, &person, false);
        e.result = word(&result)?;
        e.cycle = cycle;
        e.completed_at = completed_at;
        out.entry(course).or_default().insert(person, e);
    }
    Ok(out)
}

/// For `plan`: marks and part results of every participant of `courses`, by course.
pub async fn progress_of_courses(
    tx: &mut Tx,
    courses: &[String],
) -> Result<HashMap<String, Progress>, sqlx::Error> {
    progress_in(tx, courses).await
}

/// The marks and part results of these (course, person) pairs, by course: two statements
/// per 10,000 pairs (a batch of the firing pass), one index probe per pair.
pub async fn progress_of_pairs(
    tx: &mut Tx,
    pairs: &[(&str, &str)],
) -> Result<HashMap<String, Progress>, sqlx::Error> {
    let mut out: HashMap<String, Progress> = HashMap::new();
    for chunk in pairs.chunks(10_000) {
        let list = super::json_param(chunk)?;
        let from = super::json_rows(tx, 1);
        let join = |table: &str| {
            format!(
                "{from} JOIN {table} x ON x.course_id = j.value->>0 AND x.person_id = j.value->>1"
            )
        };
        let (marks_from, results_from) = (join("attendance"), join("part_results"));
        // Packed on SQLite (one text for the chunk instead of a row per mark), plain rows
        // again if a row does not read back packed, as in `progress_in`.
        let packed = match tx {
            Tx::Sqlite(c) => {
                let marks: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT group_concat(x.course_id || char(31) || x.person_id || char(31) || x.part_id || char(31) \
                     || x.status || char(31) || COALESCE(x.minutes, ''), char(30)) FROM {marks_from}"
                )))
                .bind(&list)
                .fetch_one(&mut **c)
                .await?;
                let results: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT group_concat(x.course_id || char(31) || x.person_id || char(31) || x.part_id || char(31) \
                     || CASE WHEN x.passed THEN '1' ELSE '0' END, char(30)) FROM {results_from}"
                )))
                .bind(&list)
                .fetch_one(&mut **c)
                .await?;
                unpack_progress(marks.as_slice(), results.as_slice()).ok()
            }
            Tx::Postgres(_) => None,
        };
        let (marks, results) = match packed {
            Some(rows) => rows,
            None => {
                let marks: Vec<MarkText> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT x.course_id, x.person_id, x.part_id, x.status, x.minutes FROM {marks_from}"
                ))).bind(&list).fetch_all(&mut **c).await)?;
                let results: Vec<ResultText> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT x.course_id, x.person_id, x.part_id, x.passed FROM {results_from}"
                ))).bind(&list).fetch_all(&mut **c).await)?;
                (marks, results)
            }
        };
        add_progress(&mut out, marks, results)?;
    }
    Ok(out)
}

type MarkText = (String, String, String, String, Option<i64>);
type ResultText = (String, String, String, bool);

async fn progress_in(
    tx: &mut Tx,
    courses: &[String],
) -> Result<HashMap<String, Progress>, sqlx::Error> {
    // `plan` reads hundreds of thousands of marks: on SQLite packed, one text per course.
    // A row that does not read back packed (an id stored before ids were checked for
    // control characters) is read again as plain rows.
    let packed = match tx {
        Tx::Sqlite(c) => {
            let mut q = QueryBuilder::new(
                "SELECT group_concat(course_id || char(31) || person_id || char(31) || part_id || char(31) || status \
                 || char(31) || COALESCE(minutes, ''), char(30)) FROM attendance WHERE course_id IN ",
            );
            push_list(&mut q, courses);
            q.push(" GROUP BY course_id");
            let marks: Vec<String> = q.build_query_scalar().fetch_all(&mut **c).await?;
            let mut q = QueryBuilder::new(
                "SELECT group_concat(course_id || char(31) || person_id || char(31) || part_id || char(31) \
                 || CASE WHEN passed THEN '1' ELSE '0' END, char(30)) FROM part_results WHERE course_id IN ",
            );
            push_list(&mut q, courses);
            q.push(" GROUP BY course_id");
            let results: Vec<String> = q.build_query_scalar().fetch_all(&mut **c).await?;
            unpack_progress(&marks, &results).ok()
        }
        Tx::Postgres(_) => None,
    };
    let (marks, results) = match packed {
        Some(rows) => rows,
        None => {
            let marks: Vec<MarkText> = on!(tx, c => {
                let mut q = QueryBuilder::new(
                    "SELECT course_id, person_id, part_id, status, minutes FROM attendance WHERE course_id IN ",
                );
                push_list(&mut q, courses);
                q.build_query_as().fetch_all(&mut **c).await?
            });
            let results: Vec<ResultText> = on!(tx, c => {
                let mut q = QueryBuilder::new(
                    "SELECT course_id, person_id, part_id, passed FROM part_results WHERE course_id IN ",
                );
                push_list(&mut q, courses);
                q.build_query_as().fetch_all(&mut **c).await?
            });
            (marks, results)
        }
    };
    let mut out: HashMap<String, Progress> = HashMap::new();
    add_progress(&mut out, marks, results)?;
    Ok(out)
}

/// Adds marks and part results read as rows to `out`, by course and person.
fn add_progress(
    out: &mut HashMap<String, Progress>,
    marks: Vec<MarkText>,
    results: Vec<ResultText>,
) -> Result<(), sqlx::Error> {
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
    Ok(())
}

/// The rows of [`progress_in`]'s packed reads.
fn unpack_progress(
    marks: &[String],
    results: &[String],
) -> Result<(Vec<MarkText>, Vec<ResultText>), sqlx::Error> {
    let marks = packed::rows::<5>(marks, "attendance")
        .map(|r| {
            let [course, person, part, status, minutes] = r?;
            Ok((
                course.to_string(),
                person.to_string(),
                part.to_string(),
                status.to_string(),
                packed::opt_int(minutes, "attendance")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let results = packed::rows::<4>(results, "part result")
        .map(|r| {
            let [course, person, part, passed] = r?;
            let passed = match passed {
                "1" => true,
                "0" => false,
                _ => return Err(packed::bad("part result")),
            };
            Ok((
                course.to_string(),
                person.to_string(),
                part.to_string(),
                passed,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok((marks, results))
}

/// A page of a course's participants, by person id: up to `limit` after `after`.
pub async fn people_page(
    tx: &mut Tx,
    course: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT person_id FROM enrolments WHERE course_id = $1 AND ($2 IS NULL OR person_id > $2) \
         ORDER BY person_id LIMIT $3",
    ).bind(course).bind(after).bind(limit).fetch_all(&mut **c).await)
}

/// Participants per course, of `courses`.
pub async fn counts(tx: &mut Tx, courses: &[String]) -> Result<HashMap<String, i64>, sqlx::Error> {
    if courses.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = on!(tx, c => {
        let mut q = sqlx::QueryBuilder::new("SELECT course_id, COUNT(*) FROM enrolments WHERE course_id IN ");
        super::push_list(&mut q, courses);
        q.push(" GROUP BY course_id");
        q.build_query_as().fetch_all(&mut **c).await
    })?;
    Ok(rows.into_iter().collect())
}

/// The courses a person is enrolled in.
pub async fn courses_of_person(tx: &mut Tx, person: &str) -> Result<Vec<String>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT course_id FROM enrolments WHERE person_id = $1 ORDER BY course_id",
    ).bind(person).fetch_all(&mut **c).await)
}

#[cfg(test)]
mod packed_tests {
    use super::*;

    /// A database from before ids were checked for control characters: a person id holding
    /// U+001F (the packed reads' field separator) beside a plain one. The firing pass's
    /// and `plan`'s reads still give every mark, part result, standing and enrolment, each
    /// under its own id.
    #[tokio::test]
    async fn packed_reads_fall_back_to_plain_rows_for_an_id_holding_a_separator() {
        let (_dir, store) = super::super::temp_sqlite().await;
        let odd = "an\u{1f}n";
        let now = Utc::now();
        let mut tx = store.begin().await.expect("begin");
        let Tx::Sqlite(c) = &mut tx else {
            unreachable!("an SQLite store")
        };
        sqlx::query(
            "INSERT INTO courses (id, name, type_id, status, start_at, end_at, updated_at) \
             VALUES ('fa', 'First aid', 't', 'final', $1, $1, $1)",
        )
        .bind(now)
        .execute(&mut **c)
        .await
        .expect("course");
        for person in [odd, "bob"] {
            for sql in [
                "INSERT INTO people (id, full_name, updated_at) VALUES ($1, 'P', $2)",
                "INSERT INTO enrolments (course_id, person_id, result, walk_in, cycle, created_at, updated_at) \
                 VALUES ('fa', $1, 'passed', false, 2, $2, $2)",
                "INSERT INTO attendance (course_id, person_id, part_id, status, minutes) VALUES ('fa', $1, 'p1', 'attended', 90)",
                "INSERT INTO part_results (course_id, person_id, part_id, passed) VALUES ('fa', $1, 'p1', true)",
            ] {
                sqlx::query(sql)
                    .bind(person)
                    .bind(now)
                    .execute(&mut **c)
                    .await
                    .expect(sql);
            }
        }
        let pairs = [("fa", odd), ("fa", "bob")];
        let progress = progress_of_pairs(&mut tx, &pairs).await.expect("progress");
        let participants = participants_of_pairs(&mut tx, &pairs)
            .await
            .expect("participants");
        let standing = standing_of_pairs(&mut tx, &pairs).await.expect("standing");
        // `plan`'s reads of a course's enrolments and progress, too.
        let planned = of_courses(&mut tx, &["fa".to_string()])
            .await
            .expect("plan's enrolments");
        let planned_progress = progress_of_courses(&mut tx, &["fa".to_string()])
            .await
            .expect("plan's progress");
        tx.commit().await.expect("commit");
        assert_eq!(participants.len(), 2, "{participants:?}");
        for (fa, person) in [&progress, &planned_progress]
            .into_iter()
            .map(|p| p.get("fa").expect("the course's progress"))
            .flat_map(|fa| [(fa, odd), (fa, "bob")])
        {
            let mark = fa.marks.get(person).and_then(|m| m.get("p1"));
            assert_eq!(
                mark.map(|m| (m.mark, m.minutes)),
                Some((Mark::Attended, Some(90)))
            );
            assert_eq!(
                fa.part_results.get(person).and_then(|r| r.get("p1")),
                Some(&true)
            );
        }
        for person in [odd, "bob"] {
            let s = standing
                .get(&("fa".to_string(), person.to_string()))
                .expect("standing");
            assert_eq!((s.result, s.cycle), (Outcome::Passed, 2));
            let e = planned
                .get("fa")
                .and_then(|p| p.get(person))
                .expect("plan's enrolment");
            assert_eq!((e.result, e.cycle), (Outcome::Passed, 2));
        }
        store.close().await;
    }
}
