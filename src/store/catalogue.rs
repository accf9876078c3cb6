//! The tables `courses`, `parts` and `people`: the office's catalogue.
//!
//! Consistency: a change of a course or of its parts locks the course row `FOR UPDATE`; a
//! change of a participant of the course holds it `FOR SHARE` (see [`course`]), so that
//! completion (D3) is never decided on parts another transaction is changing. A new course
//! or person is inserted with `ON CONFLICT DO NOTHING`: of two parallel creators exactly
//! one creates, the other finds the row and updates it.

use super::{Lock, Tx, on, push_list, word};
use crate::domain::CourseStatus;
use crate::domain::input::{CourseInput, PartInput, PersonInput};
use crate::domain::progress::PartRule;
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

/// The course with its parts, the course row locked as `lock` says.
pub async fn course(tx: &mut Tx, id: &str, lock: Lock) -> Result<Option<CourseInfo>, sqlx::Error> {
    if lock != Lock::None && matches!(tx, Tx::Postgres(_)) {
        let sql = format!("SELECT id FROM courses WHERE id = $1{}", lock.clause(tx));
        let found: Option<String> = on!(tx, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id).fetch_optional(&mut **c).await)?;
        if found.is_none() {
            return Ok(None);
        }
    }
    Ok(courses(tx, &[id.to_string()]).await?.remove(id))
}

/// `ids` with their parts, by id.
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
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
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

fn fields_json(fields: &std::collections::BTreeMap<String, String>) -> String {
    serde_json::to_string(fields).unwrap_or_else(|_| "{}".into())
}

/// Creates the course unless it exists; whether this call created it. A parallel creator
/// that got there first is waited for, and this call then creates nothing.
pub async fn insert_course(
    tx: &mut Tx,
    c: &CourseInput,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let fields = fields_json(&c.fields);
    let n = on!(tx, t => sqlx::query(
        "INSERT INTO courses (id, name, type_id, status, start_at, end_at, location, fields, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
    ).bind(&c.id).bind(&c.name).bind(&c.type_id).bind(c.status.as_str()).bind(c.start).bind(c.end)
     .bind(&c.location).bind(&fields).bind(now).execute(&mut **t).await?.rows_affected());
    Ok(n == 1)
}

/// Overwrites an existing course (locked by the caller).
pub async fn update_course(
    tx: &mut Tx,
    c: &CourseInput,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let fields = fields_json(&c.fields);
    on!(tx, t => sqlx::query(
        "UPDATE courses SET name = $2, type_id = $3, status = $4, start_at = $5, end_at = $6, location = $7, \
         fields = $8, updated_at = $9 WHERE id = $1",
    ).bind(&c.id).bind(&c.name).bind(&c.type_id).bind(c.status.as_str()).bind(c.start).bind(c.end)
     .bind(&c.location).bind(&fields).bind(now).execute(&mut **t).await.map(|_| ()))
}

/// Creates or overwrites a part (its course row locked `FOR UPDATE` by the caller).
pub async fn upsert_part(tx: &mut Tx, p: &PartInput) -> Result<(), sqlx::Error> {
    on!(tx, t => sqlx::query(
        "INSERT INTO parts (course_id, id, name, start_at, end_at, attendance_required, passing_required, min_minutes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (course_id, id) DO UPDATE SET name = excluded.name, start_at = excluded.start_at, \
         end_at = excluded.end_at, attendance_required = excluded.attendance_required, \
         passing_required = excluded.passing_required, min_minutes = excluded.min_minutes",
    ).bind(&p.course_id).bind(&p.id).bind(&p.name).bind(p.start).bind(p.end)
     .bind(p.attendance_required).bind(p.passing_required).bind(p.min_minutes.map(i64::from))
     .execute(&mut **t).await.map(|_| ()))
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

pub async fn person(tx: &mut Tx, id: &str, lock: Lock) -> Result<Option<Person>, sqlx::Error> {
    let sql = format!(
        "SELECT id, full_name, email, first_name, locale, fields FROM people WHERE id = $1{}",
        lock.clause(tx)
    );
    on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **c).await)
}

/// The people of `ids` that exist, by id (a few statements for any number).
pub async fn people(tx: &mut Tx, ids: &[String]) -> Result<HashMap<String, Person>, sqlx::Error> {
    people_locked(tx, ids, Lock::None).await
}

/// [`people`], their rows locked as `lock` says (in id order, so that two importers of
/// overlapping files cannot deadlock).
pub async fn people_locked(
    tx: &mut Tx,
    ids: &[String],
    lock: Lock,
) -> Result<HashMap<String, Person>, sqlx::Error> {
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let sorted: Vec<String> = sorted.into_iter().cloned().collect();
    let clause = lock.clause(tx);
    let mut out = HashMap::new();
    for chunk in sorted.chunks(500) {
        let rows: Vec<Person> = on!(tx, c => {
            let mut q = QueryBuilder::new(
                "SELECT id, full_name, email, first_name, locale, fields FROM people WHERE id IN ",
            );
            push_list(&mut q, chunk);
            if !clause.is_empty() {
                q.push(" ORDER BY id").push(clause);
            }
            q.build_query_as().fetch_all(&mut **c).await?
        });
        out.extend(rows.into_iter().map(|p| (p.id.clone(), p)));
    }
    Ok(out)
}

/// Creates the people unless they exist (in bulk: a statement per 500); returns the ids
/// this call created. One created at the same moment by another transaction is not.
pub async fn insert_people(
    tx: &mut Tx,
    people: &[&PersonInput],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut created = std::collections::HashSet::new();
    for chunk in people.chunks(500) {
        let ids: Vec<String> = on!(tx, t => {
            let mut q = QueryBuilder::new(
                "INSERT INTO people (id, full_name, email, first_name, locale, fields, updated_at) ",
            );
            q.push_values(chunk, |mut b, p| {
                b.push_bind(p.id.clone()).push_bind(p.full_name.clone())
                    .push_bind(p.email.as_ref().map(|e| e.as_str().to_string()))
                    .push_bind(p.first_name.clone()).push_bind(p.locale.clone())
                    .push_bind(fields_json(&p.fields)).push_bind(now);
            });
            q.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            q.build_query_scalar().fetch_all(&mut **t).await?
        });
        created.extend(ids);
    }
    Ok(created)
}

/// Creates the person unless they exist; whether this call created them.
pub async fn insert_person(
    tx: &mut Tx,
    p: &PersonInput,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let fields = fields_json(&p.fields);
    let email = p.email.as_ref().map(|e| e.as_str().to_string());
    let n = on!(tx, t => sqlx::query(
        "INSERT INTO people (id, full_name, email, first_name, locale, fields, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    ).bind(&p.id).bind(&p.full_name).bind(&email).bind(&p.first_name).bind(&p.locale)
     .bind(&fields).bind(now).execute(&mut **t).await?.rows_affected());
    Ok(n == 1)
}

/// [`update_person`] of many people in one statement (each id once; locked by the caller).
pub async fn update_people(
    tx: &mut Tx,
    people: &[&PersonInput],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in people.chunks(1000) {
        let rows: Vec<serde_json::Value> = chunk
            .iter()
            .map(|p| {
                serde_json::json!({"id": p.id, "full_name": p.full_name,
                    "email": p.email.as_ref().map(|e| e.as_str().to_string()),
                    "first_name": p.first_name, "locale": p.locale, "fields": fields_json(&p.fields)})
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        match tx {
            Tx::Sqlite(c) => sqlx::query(
                "UPDATE people SET full_name = j.full_name, email = j.email, first_name = j.first_name, \
                 locale = j.locale, fields = j.fields, updated_at = $1 \
                 FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.full_name') AS full_name, \
                              json_extract(value, '$.email') AS email, json_extract(value, '$.first_name') AS first_name, \
                              json_extract(value, '$.locale') AS locale, json_extract(value, '$.fields') AS fields \
                       FROM json_each($2)) AS j \
                 WHERE people.id = j.id",
            )
            .bind(now)
            .bind(rows)
            .execute(&mut **c)
            .await
            .map(|_| ())?,
            Tx::Postgres(c) => sqlx::query(
                "UPDATE people SET full_name = j.full_name, email = j.email, first_name = j.first_name, \
                 locale = j.locale, fields = j.fields, updated_at = $1 \
                 FROM jsonb_to_recordset($2::jsonb) AS j(id TEXT, full_name TEXT, email TEXT, first_name TEXT, \
                      locale TEXT, fields TEXT) \
                 WHERE people.id = j.id",
            )
            .bind(now)
            .bind(rows)
            .execute(&mut **c)
            .await
            .map(|_| ())?,
        }
    }
    Ok(())
}

/// Overwrites an existing person (locked by the caller).
pub async fn update_person(
    tx: &mut Tx,
    p: &PersonInput,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let fields = fields_json(&p.fields);
    let email = p.email.as_ref().map(|e| e.as_str().to_string());
    on!(tx, t => sqlx::query(
        "UPDATE people SET full_name = $2, email = $3, first_name = $4, locale = $5, fields = $6, updated_at = $7 \
         WHERE id = $1",
    ).bind(&p.id).bind(&p.full_name).bind(&email).bind(&p.first_name).bind(&p.locale)
     .bind(&fields).bind(now).execute(&mut **t).await.map(|_| ()))
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

/// The names and addresses of `ids` (for lists such as the office digest).
pub async fn names(
    tx: &mut Tx,
    ids: &[String],
) -> Result<std::collections::HashMap<String, (String, Option<String>)>, sqlx::Error> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let found: Vec<(String, String, Option<String>)> = on!(tx, c => {
            let mut q = QueryBuilder::new("SELECT id, full_name, email FROM people WHERE id IN ");
            push_list(&mut q, chunk);
            q.build_query_as().fetch_all(&mut **c).await?
        });
        out.extend(found.into_iter().map(|(id, n, e)| (id, (n, e))));
    }
    Ok(out)
}

/// A course as a schedule window sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Span {
    pub id: String,
    pub type_id: String,
    pub status: String,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

/// Every course that is not cancelled, with its type and dates (one row each: a schedule
/// instant decides on its window from these, set-wise).
pub async fn spans(tx: &mut Tx) -> Result<Vec<Span>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, type_id, status, start_at, end_at FROM courses WHERE status <> 'cancelled' ORDER BY id",
    ).fetch_all(&mut **c).await)
}

/// One course in the office's list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CourseLine {
    pub id: String,
    pub name: String,
    pub type_id: String,
    pub status: String,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
}

/// A page of courses, latest start first: up to `limit` after offset `skip`, those whose
/// id or name contains `search` when given.
pub async fn course_page(
    tx: &mut Tx,
    search: Option<&str>,
    skip: i64,
    limit: i64,
) -> Result<Vec<CourseLine>, sqlx::Error> {
    let pattern = search.map(|s| format!("%{}%", s.replace(['%', '_'], "")));
    on!(tx, c => sqlx::query_as(
        "SELECT id, name, type_id, status, start_at, end_at FROM courses \
         WHERE ($1 IS NULL OR id LIKE $1 OR name LIKE $1) ORDER BY start_at DESC, id LIMIT $2 OFFSET $3",
    ).bind(pattern).bind(limit).bind(skip).fetch_all(&mut **c).await)
}

/// A page of people whose id, name or address contains `search`, by name.
pub async fn person_page(
    tx: &mut Tx,
    search: Option<&str>,
    skip: i64,
    limit: i64,
) -> Result<Vec<Person>, sqlx::Error> {
    let pattern = search.map(|s| format!("%{}%", s.replace(['%', '_'], "")));
    on!(tx, c => sqlx::query_as(
        "SELECT id, full_name, email, first_name, locale, fields FROM people \
         WHERE ($1 IS NULL OR id LIKE $1 OR full_name LIKE $1 OR email LIKE $1) ORDER BY full_name, id LIMIT $2 OFFSET $3",
    ).bind(pattern).bind(limit).bind(skip).fetch_all(&mut **c).await)
}
