//! State changes. A `Work` is one unit of work inside one transaction: it applies the
//! domain rules, writes the rows, and buffers the history (D10) and engine events that
//! go with them. `finish` settles completion (D3) for every enrolment the work touched.

mod attendance;
mod certificates;
mod lifecycle;

use super::read::{self, CourseInfo};
use super::{Change, Changes, Tx, j, on};
use crate::domain::input::{CourseInput, EnrolmentInput, PartInput, PersonInput};
use crate::domain::{CompletedVia, EventKind, Outcome, enrolment, progress};
use crate::rules::RuleSet;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Why one change was not made.
#[derive(Debug)]
pub enum WriteError {
    /// Refused by a domain rule or a missing reference; `column` names the input field.
    Refused {
        column: Option<&'static str>,
        message: String,
        /// The refusal is about something that does not exist (an unknown course, person
        /// or enrolment), not a rule: the HTTP API answers 404 rather than 409.
        missing: bool,
    },
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Sql(e)
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Refused { message, .. } => f.write_str(message),
            WriteError::Sql(e) => write!(f, "database error: {e}"),
        }
    }
}

pub(crate) fn refused(column: Option<&'static str>, message: String) -> WriteError {
    WriteError::Refused {
        column,
        message,
        missing: false,
    }
}

/// A refusal because a referenced course, person or enrolment does not exist.
pub(crate) fn missing(column: Option<&'static str>, message: String) -> WriteError {
    WriteError::Refused {
        column,
        message,
        missing: true,
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    Unchanged,
}

/// Counts for a summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub completed: u64,
    /// Certificates issued (D5).
    pub certificates: u64,
}

impl Tally {
    pub fn count(&mut self, a: Applied) {
        match a {
            Applied::Created => self.created += 1,
            Applied::Updated => self.updated += 1,
            Applied::Unchanged => self.unchanged += 1,
        }
    }
}

pub struct Work<'r> {
    pub rules: &'r RuleSet,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    pub log: Changes,
    pub tally: Tally,
    courses: HashMap<String, Option<Arc<CourseInfo>>>,
    /// Enrolments whose completion must be re-checked, by course.
    touched: BTreeMap<String, BTreeSet<String>>,
    /// Courses whose parts changed: all their incomplete enrolments are re-checked.
    touched_courses: BTreeSet<String>,
}

impl<'r> Work<'r> {
    pub fn new(
        rules: &'r RuleSet,
        tz: Tz,
        now: DateTime<Utc>,
        actor: &str,
        source: &str,
    ) -> Work<'r> {
        Work {
            rules,
            tz,
            now,
            log: Changes::new(now, actor, source),
            tally: Tally::default(),
            courses: HashMap::new(),
            touched: BTreeMap::new(),
            touched_courses: BTreeSet::new(),
        }
    }

    /// The course with its parts, cached for this unit of work.
    pub async fn course(
        &mut self,
        tx: &mut Tx,
        id: &str,
    ) -> Result<Option<Arc<CourseInfo>>, sqlx::Error> {
        if let Some(c) = self.courses.get(id) {
            return Ok(c.clone());
        }
        let c = read::course(tx, id).await?.map(Arc::new);
        self.courses.insert(id.to_string(), c.clone());
        Ok(c)
    }

    async fn known_course(&mut self, tx: &mut Tx, id: &str) -> Result<Arc<CourseInfo>, WriteError> {
        self.course(tx, id)
            .await?
            .ok_or_else(|| missing(Some("course_id"), format!("unknown course {id:?}")))
    }

    fn touch(&mut self, course: &str, person: &str) {
        self.touched
            .entry(course.to_string())
            .or_default()
            .insert(person.to_string());
    }

    fn local(&self, t: DateTime<Utc>) -> String {
        crate::domain::time::local_rfc3339(t, self.tz)
    }

    pub async fn upsert_course(
        &mut self,
        tx: &mut Tx,
        c: &CourseInput,
    ) -> Result<Applied, WriteError> {
        if !self.rules.course_types.contains_key(&c.type_id) {
            let known: Vec<&str> = self.rules.course_types.keys().map(String::as_str).collect();
            return Err(refused(
                Some("type"),
                format!(
                    "unknown course type {:?} (the rules directory defines {})",
                    c.type_id,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        crate::domain::one_of(&known)
                    }
                ),
            ));
        }
        let fields = serde_json::to_string(&c.fields).unwrap_or_else(|_| "{}".into());
        let after = json!({"name": c.name, "type": c.type_id, "status": c.status, "start": c.start,
                           "end": c.end, "location": c.location, "fields": c.fields});
        let before = self.course(tx, &c.id).await?;
        let before_json = before.as_ref().map(|b| {
            json!({"name": b.name, "type": b.type_id, "status": b.status, "start": b.start, "end": b.end,
                   "location": b.location, "fields": serde_json::from_str::<serde_json::Value>(&b.fields).unwrap_or_default()})
        });
        if before_json.as_ref() == Some(&after) {
            return Ok(Applied::Unchanged);
        }
        on!(tx, t => sqlx::query(
            "INSERT INTO courses (id, name, type_id, status, start_at, end_at, location, fields, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, type_id = excluded.type_id, status = excluded.status, \
             start_at = excluded.start_at, end_at = excluded.end_at, location = excluded.location, \
             fields = excluded.fields, updated_at = excluded.updated_at",
        ).bind(&c.id).bind(&c.name).bind(&c.type_id).bind(c.status.as_str()).bind(c.start).bind(c.end)
         .bind(&c.location).bind(&fields).bind(self.now).execute(&mut **t).await.map(|r| r.rows_affected()))?;
        self.courses.remove(&c.id);
        let created = before.is_none();
        self.log.push(Change {
            entity: "course",
            course_id: Some(c.id.clone()),
            person_id: None,
            part_id: None,
            change: if created { "created" } else { "updated" },
            before: before_json.map(Into::into),
            after: j(after),
            // Status and dates drive D9 and due times: the engine re-evaluates the course.
            event: (!created).then_some((EventKind::CourseChanged, None)),
        });
        Ok(if created {
            Applied::Created
        } else {
            Applied::Updated
        })
    }

    pub async fn upsert_part(&mut self, tx: &mut Tx, p: &PartInput) -> Result<Applied, WriteError> {
        let course = self.known_course(tx, &p.course_id).await?;
        let after = json!({"name": p.name, "start": p.start, "end": p.end,
            "attendance_required": p.attendance_required, "passing_required": p.passing_required,
            "min_minutes": p.min_minutes});
        let before = course.part(&p.id).map(|b| {
            json!({"name": b.name, "start": b.rule.start, "end": b.rule.end,
                "attendance_required": b.rule.attendance_required, "passing_required": b.rule.passing_required,
                "min_minutes": b.rule.min_minutes})
        });
        if before.as_ref() == Some(&after) {
            return Ok(Applied::Unchanged);
        }
        on!(tx, t => sqlx::query(
            "INSERT INTO parts (course_id, id, name, start_at, end_at, attendance_required, passing_required, min_minutes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (course_id, id) DO UPDATE SET name = excluded.name, start_at = excluded.start_at, \
             end_at = excluded.end_at, attendance_required = excluded.attendance_required, \
             passing_required = excluded.passing_required, min_minutes = excluded.min_minutes",
        ).bind(&p.course_id).bind(&p.id).bind(&p.name).bind(p.start).bind(p.end)
         .bind(p.attendance_required).bind(p.passing_required).bind(p.min_minutes.map(i64::from))
         .execute(&mut **t).await.map(|r| r.rows_affected()))?;
        self.courses.remove(&p.course_id);
        self.touched_courses.insert(p.course_id.clone());
        let created = before.is_none();
        self.log.push(Change {
            entity: "part",
            course_id: Some(p.course_id.clone()),
            person_id: None,
            part_id: Some(p.id.clone()),
            change: if created { "created" } else { "updated" },
            before: before.map(Into::into),
            after: j(after),
            event: Some((EventKind::CourseChanged, None)),
        });
        Ok(if created {
            Applied::Created
        } else {
            Applied::Updated
        })
    }

    pub async fn upsert_person(
        &mut self,
        tx: &mut Tx,
        p: &PersonInput,
    ) -> Result<Applied, WriteError> {
        let fields = serde_json::to_string(&p.fields).unwrap_or_else(|_| "{}".into());
        let email = p.email.as_ref().map(|e| e.as_str().to_string());
        let after = json!({"full_name": p.full_name, "email": email, "first_name": p.first_name,
                           "locale": p.locale, "fields": p.fields});
        let before = read::person(tx, &p.id).await?.map(|b| {
            json!({"full_name": b.full_name, "email": b.email, "first_name": b.first_name, "locale": b.locale,
                   "fields": serde_json::from_str::<serde_json::Value>(&b.fields).unwrap_or_default()})
        });
        if before.as_ref() == Some(&after) {
            return Ok(Applied::Unchanged);
        }
        on!(tx, t => sqlx::query(
            "INSERT INTO people (id, full_name, email, first_name, locale, fields, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET full_name = excluded.full_name, email = excluded.email, \
             first_name = excluded.first_name, locale = excluded.locale, fields = excluded.fields, \
             updated_at = excluded.updated_at",
        ).bind(&p.id).bind(&p.full_name).bind(&email).bind(&p.first_name).bind(&p.locale)
         .bind(&fields).bind(self.now).execute(&mut **t).await.map(|r| r.rows_affected()))?;
        let created = before.is_none();
        self.log.push(Change {
            entity: "person",
            course_id: None,
            person_id: Some(p.id.clone()),
            part_id: None,
            change: if created { "created" } else { "updated" },
            before: before.map(Into::into),
            after: j(after),
            event: None,
        });
        Ok(if created {
            Applied::Created
        } else {
            Applied::Updated
        })
    }

    pub async fn upsert_enrolment(
        &mut self,
        tx: &mut Tx,
        e: &EnrolmentInput,
    ) -> Result<Applied, WriteError> {
        let mut out = self.upsert_enrolments(tx, std::slice::from_ref(e)).await?;
        out.pop().unwrap_or(Ok(Applied::Unchanged))
    }

    /// Row indexes grouped by course, for bulk changes. A row whose course is unknown, or
    /// that `check` refuses for its course, gets its refusal in `out` instead.
    pub(crate) async fn group_by_course<'a>(
        &mut self,
        tx: &mut Tx,
        courses: &[&'a str],
        out: &mut [Option<Result<Applied, WriteError>>],
        check: impl Fn(&CourseInfo, usize) -> Option<WriteError>,
    ) -> Result<BTreeMap<&'a str, Vec<usize>>, sqlx::Error> {
        let mut grouped: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, &course) in courses.iter().enumerate() {
            match self.course(tx, course).await? {
                None => {
                    out[i] = Some(Err(missing(
                        Some("course_id"),
                        format!("unknown course {course:?}"),
                    )))
                }
                Some(c) => match check(&c, i) {
                    Some(refusal) => out[i] = Some(Err(refusal)),
                    None => grouped.entry(course).or_default().push(i),
                },
            }
        }
        Ok(grouped)
    }

    /// Upserts enrolments in bulk: a handful of statements per course, whatever the
    /// number of rows. Returns one outcome per row, in order.
    pub async fn upsert_enrolments(
        &mut self,
        tx: &mut Tx,
        rows: &[EnrolmentInput],
    ) -> Result<Vec<Result<Applied, WriteError>>, sqlx::Error> {
        let mut out: Vec<Option<Result<Applied, WriteError>>> = rows.iter().map(|_| None).collect();
        let courses: Vec<&str> = rows.iter().map(|r| r.course_id.as_str()).collect();
        let by_course = self
            .group_by_course(tx, &courses, &mut out, |_, _| None)
            .await?;
        for (course, idxs) in by_course {
            let people: Vec<String> = idxs
                .iter()
                .map(|&i| rows[i].person_id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let (existing, known) = read::enrolled_and_known(tx, course, &people).await?;
            let mut new: Vec<(String, bool)> = Vec::new();
            let mut created: BTreeSet<&str> = BTreeSet::new();
            for &i in &idxs {
                let r = &rows[i];
                out[i] = Some(match existing.get(&r.person_id) {
                    Some(e) => match r.walk_in {
                        Some(w) if w != e.walk_in => {
                            on!(tx, t => sqlx::query(
                                "UPDATE enrolments SET walk_in = $1, updated_at = $2 WHERE course_id = $3 AND person_id = $4",
                            ).bind(w).bind(self.now).bind(course).bind(&r.person_id).execute(&mut **t).await.map(|_| ()))?;
                            self.log.push(Change {
                                entity: "enrolment",
                                course_id: Some(course.to_string()),
                                person_id: Some(r.person_id.clone()),
                                part_id: None,
                                change: "walk_in",
                                before: j(json!({"walk_in": e.walk_in})),
                                after: j(json!({"walk_in": w})),
                                event: None,
                            });
                            Ok(Applied::Updated)
                        }
                        _ => Ok(Applied::Unchanged),
                    },
                    None if !known.contains(&r.person_id) => Err(missing(
                        Some("person_id"),
                        format!("unknown person {:?}", r.person_id),
                    )),
                    None if created.insert(&r.person_id) => {
                        new.push((r.person_id.clone(), r.walk_in.unwrap_or(false)));
                        Ok(Applied::Created)
                    }
                    None => Ok(Applied::Unchanged),
                });
            }
            self.insert_enrolments(tx, course, &new).await?;
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Ok(Applied::Unchanged)))
            .collect())
    }

    /// Creates enrolments (result `registered`, cycle 1) and raises `participant_added`.
    async fn insert_enrolments(
        &mut self,
        tx: &mut Tx,
        course: &str,
        people: &[(String, bool)],
    ) -> Result<(), sqlx::Error> {
        for chunk in people.chunks(400) {
            on!(tx, t => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO enrolments (course_id, person_id, result, walk_in, cycle, created_at, updated_at) ",
                );
                q.push_values(chunk, |mut b, (person, walk_in)| {
                    b.push_bind(course.to_string()).push_bind(person.clone()).push_bind(Outcome::Registered.as_str())
                        .push_bind(*walk_in).push_bind(1_i64).push_bind(self.now).push_bind(self.now);
                });
                q.build().execute(&mut **t).await?;
            });
        }
        for (person, walk_in) in people {
            self.touch(course, person);
            self.log.push(Change {
                entity: "enrolment",
                course_id: Some(course.to_string()),
                person_id: Some(person.clone()),
                part_id: None,
                change: if *walk_in { "walk_in_added" } else { "added" },
                before: None,
                after: j(json!({"result": Outcome::Registered, "walk_in": walk_in, "cycle": 1})),
                event: Some((EventKind::ParticipantAdded, Some(1))),
            });
        }
        Ok(())
    }

    /// Writes buffered history and events.
    pub async fn flush(&mut self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        self.log.flush(tx).await
    }

    /// D3: sets completion for every touched enrolment that now meets D1 and D2, then
    /// writes the history. Call once before committing.
    pub async fn finish(&mut self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        for course in std::mem::take(&mut self.touched_courses) {
            let people = read::incomplete_people(tx, &course).await?;
            self.touched.entry(course).or_default().extend(people);
        }
        for (course_id, people) in std::mem::take(&mut self.touched) {
            let Some(course) = self.course(tx, &course_id).await? else {
                continue;
            };
            let people: Vec<String> = people.into_iter().collect();
            for chunk in people.chunks(500) {
                let enrolments = read::enrolments_of(tx, &course_id, chunk).await?;
                let progress = read::progress(tx, &course_id, chunk).await?;
                self.settle(tx, &course, chunk, &enrolments, &progress)
                    .await?;
            }
            self.log.flush(tx).await?;
        }
        self.log.flush(tx).await
    }

    /// D3 for `people` of `course`, given their enrolments and their current marks and
    /// part results: sets completion where it first holds.
    async fn settle(
        &mut self,
        tx: &mut Tx,
        course: &CourseInfo,
        people: &[String],
        enrolments: &HashMap<String, read::Enrolment>,
        progress: &read::Progress,
    ) -> Result<(), sqlx::Error> {
        let percent = self
            .rules
            .course_types
            .get(&course.type_id)
            .map_or(100, |t| t.attendance_percent);
        let parts = course.part_rules();
        let (no_marks, no_results) = (HashMap::new(), HashMap::new());
        let mut completers = Vec::new();
        for person in people {
            let Some(e) = enrolments.get(person) else {
                continue;
            };
            if e.completed_at.is_some() {
                continue;
            }
            let att = progress::attendance_requirement(
                &parts,
                progress.marks.get(person).unwrap_or(&no_marks),
                percent,
            );
            let pass = progress::passing_obligation(
                &parts,
                progress.part_results.get(person).unwrap_or(&no_results),
            );
            if enrolment::becomes_complete(false, att.achieved, pass.met, e.result) {
                completers.push(person.clone());
                self.log.push(Change {
                    entity: "enrolment",
                    course_id: Some(course.id.clone()),
                    person_id: Some(person.clone()),
                    part_id: None,
                    change: "completed",
                    before: None,
                    after: j(
                        json!({"completed_via": CompletedVia::Requirements, "cycle": e.cycle,
                        "attended": att.attended, "required": att.required,
                        "attendance_percent": att.percent_needed, "passed_parts": pass.passed}),
                    ),
                    event: Some((EventKind::Completed, Some(e.cycle))),
                });
            }
        }
        if !completers.is_empty() {
            self.tally.completed += completers.len() as u64;
            on!(tx, t => {
                let mut q = QueryBuilder::new("UPDATE enrolments SET completed_at = ");
                q.push_bind(self.now).push(", completed_via = ").push_bind(CompletedVia::Requirements.as_str())
                    .push(", updated_at = ").push_bind(self.now)
                    .push(" WHERE completed_at IS NULL AND course_id = ").push_bind(course.id.clone())
                    .push(" AND person_id IN ");
                super::push_list(&mut q, &completers);
                q.build().execute(&mut **t).await?;
            });
        }
        // D5: completion, or a passed result, may make a certificate due.
        let completed: std::collections::HashSet<&str> =
            completers.iter().map(String::as_str).collect();
        let mine: HashMap<String, read::Enrolment> = people
            .iter()
            .filter_map(|p| enrolments.get(p).map(|e| (p.clone(), e.clone())))
            .collect();
        self.issue_certificates(tx, course, &mine, &completed).await
    }
}
