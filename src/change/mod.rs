//! State changes. A `Work` is one unit of work inside one transaction: it applies the
//! domain rules, asks the store to write the rows, and buffers the history (D10) and
//! engine events that go with them. `finish` settles completion (D3) for every enrolment
//! the work touched. There is no SQL here: every statement is in `store`, by table.
//!
//! Under concurrency (PostgreSQL) a `Work` locks before it reads what it decides on: the
//! course row `FOR SHARE` when it changes a participant (`FOR UPDATE` when it changes the
//! course or its parts), the enrolment rows `FOR UPDATE` in person order, and only then
//! the marks and part results. Run a `Work` through [`crate::store::transact!`],
//! which runs it again when the database picks it as a deadlock victim.

mod attendance;
mod certificates;
pub mod certifications;
mod lifecycle;

use crate::domain::input::{CourseInput, EnrolmentInput, PartInput, PersonInput};
use crate::domain::{CompletedVia, EventKind, Outcome, enrolment, progress};
use crate::rules::RuleSet;
use crate::store::catalogue::{self, CourseInfo};
use crate::store::enrolments::{self, Enrolment, Progress};
use crate::store::{Change, Changes, Lock, Retryable, Tx, j};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Why one change was not made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Refused by a domain rule; `column` names the input field.
    #[error("{message}")]
    Refused {
        column: Option<&'static str>,
        message: String,
    },
    /// About something that does not exist (an unknown course, person or enrolment): the
    /// HTTP API answers 404 rather than 409.
    #[error("{message}")]
    Missing {
        column: Option<&'static str>,
        message: String,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

impl WriteError {
    /// The input field a refusal is about, if any.
    pub fn column(&self) -> Option<&'static str> {
        match self {
            WriteError::Refused { column, .. } | WriteError::Missing { column, .. } => *column,
            WriteError::Sql(_) => None,
        }
    }
}

impl Retryable for WriteError {
    fn retryable(&self) -> bool {
        matches!(self, WriteError::Sql(e) if crate::store::retryable(e))
    }
}

pub(crate) fn refused(column: Option<&'static str>, message: String) -> WriteError {
    WriteError::Refused { column, message }
}

/// A refusal because a referenced course, person or enrolment does not exist.
pub(crate) fn missing(column: Option<&'static str>, message: String) -> WriteError {
    WriteError::Missing { column, message }
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
    /// Courses read in this unit of work (their rows locked for it).
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

    /// The course with its parts, cached for this unit of work; its row is held `FOR SHARE`
    /// until the transaction ends, so its parts cannot change under a decision on them.
    pub async fn course(
        &mut self,
        tx: &mut Tx,
        id: &str,
    ) -> Result<Option<Arc<CourseInfo>>, sqlx::Error> {
        if let Some(c) = self.courses.get(id) {
            return Ok(c.clone());
        }
        let c = catalogue::course(tx, id, Lock::Share).await?.map(Arc::new);
        self.courses.insert(id.to_string(), c.clone());
        Ok(c)
    }

    /// The course, its row locked `FOR UPDATE` for a change of the course or its parts.
    async fn course_to_change(
        &mut self,
        tx: &mut Tx,
        id: &str,
    ) -> Result<Option<Arc<CourseInfo>>, sqlx::Error> {
        let c = catalogue::course(tx, id, Lock::Update).await?.map(Arc::new);
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
        let after = json!({"name": c.name, "type": c.type_id, "status": c.status, "start": c.start,
                           "end": c.end, "location": c.location, "fields": c.fields});
        let mut before = self.course_to_change(tx, &c.id).await?;
        if before.is_none() {
            if catalogue::insert_course(tx, c, self.now).await? {
                self.courses.remove(&c.id);
                self.log.push(Change {
                    entity: "course",
                    course_id: Some(c.id.clone()),
                    person_id: None,
                    part_id: None,
                    change: "created",
                    before: None,
                    after: j(after),
                    event: None,
                });
                return Ok(Applied::Created);
            }
            // Created by a parallel change that committed first: this one updates it.
            before = self.course_to_change(tx, &c.id).await?;
        }
        let Some(b) = before else {
            return Err(WriteError::Sql(sqlx::Error::RowNotFound));
        };
        let before_json = json!({"name": b.name, "type": b.type_id, "status": b.status, "start": b.start, "end": b.end,
            "location": b.location, "fields": serde_json::from_str::<serde_json::Value>(&b.fields).unwrap_or_default()});
        if before_json == after {
            return Ok(Applied::Unchanged);
        }
        catalogue::update_course(tx, c, self.now).await?;
        self.courses.remove(&c.id);
        self.log.push(Change {
            entity: "course",
            course_id: Some(c.id.clone()),
            person_id: None,
            part_id: None,
            change: "updated",
            before: j(before_json),
            after: j(after),
            // Status and dates drive D9 and due times: the engine re-evaluates the course.
            event: Some((EventKind::CourseChanged, None)),
        });
        Ok(Applied::Updated)
    }

    pub async fn upsert_part(&mut self, tx: &mut Tx, p: &PartInput) -> Result<Applied, WriteError> {
        let course = self
            .course_to_change(tx, &p.course_id)
            .await?
            .ok_or_else(|| {
                missing(
                    Some("course_id"),
                    format!("unknown course {:?}", p.course_id),
                )
            })?;
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
        catalogue::upsert_part(tx, p).await?;
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
        let after = input_json(p);
        let mut before = catalogue::person(tx, &p.id, Lock::Update).await?;
        if before.is_none() {
            if catalogue::insert_person(tx, p, self.now).await? {
                self.log.push(person_change(&p.id, "created", None, after));
                return Ok(Applied::Created);
            }
            before = catalogue::person(tx, &p.id, Lock::Update).await?;
        }
        let Some(b) = before else {
            return Err(WriteError::Sql(sqlx::Error::RowNotFound));
        };
        let before = person_json(&b);
        if before == after {
            return Ok(Applied::Unchanged);
        }
        catalogue::update_person(tx, p, self.now).await?;
        self.log
            .push(person_change(&p.id, "updated", Some(before), after));
        Ok(Applied::Updated)
    }

    /// [`Self::upsert_person`] of many rows, in a few statements: the people read (locked)
    /// together, the new ones inserted together, the changed ones updated together (a
    /// person named twice ends as the last row says; each change is in the history). One
    /// result per input, in order.
    pub async fn upsert_people(
        &mut self,
        tx: &mut Tx,
        people: &[PersonInput],
    ) -> Result<Vec<Result<Applied, WriteError>>, sqlx::Error> {
        let ids: Vec<String> = people.iter().map(|p| p.id.clone()).collect();
        let found = catalogue::people_locked(tx, &ids, Lock::Update).await?;
        let mut new: Vec<&PersonInput> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for p in people {
            if !found.contains_key(&p.id) && seen.insert(p.id.as_str()) {
                new.push(p);
            }
        }
        let created = catalogue::insert_people(tx, &new, self.now).await?;
        let mut out = Vec::with_capacity(people.len());
        // What each person is now, as this call leaves them.
        let mut updated: HashMap<&str, &PersonInput> = HashMap::new();
        let mut current: HashMap<&str, serde_json::Value> = found
            .iter()
            .map(|(id, b)| (id.as_str(), person_json(b)))
            .collect();
        for p in people {
            let after = input_json(p);
            if let Some(before) = current.get(p.id.as_str()) {
                // Existing, or created by an earlier row of this call.
                if *before == after {
                    out.push(Ok(Applied::Unchanged));
                    continue;
                }
                updated.insert(&p.id, p);
                self.log.push(person_change(
                    &p.id,
                    "updated",
                    Some(before.clone()),
                    after.clone(),
                ));
                current.insert(&p.id, after);
                out.push(Ok(Applied::Updated));
            } else if created.contains(&p.id) {
                self.log
                    .push(person_change(&p.id, "created", None, after.clone()));
                current.insert(&p.id, after);
                out.push(Ok(Applied::Created));
            } else {
                // Created meanwhile by another transaction: compared with it, row by row.
                out.push(self.upsert_person(tx, p).await);
            }
        }
        let updated: Vec<&PersonInput> = updated.into_values().collect();
        catalogue::update_people(tx, &updated, self.now).await?;
        Ok(out)
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

    /// The enrolments of `people` in `course`, locked; with `walk_ins`, the known people
    /// among the others are enrolled first as walk-ins (D6). Returns the enrolments and
    /// whom this call enrolled.
    async fn lock_participants(
        &mut self,
        tx: &mut Tx,
        course: &str,
        people: &[String],
        new: impl Fn(&str) -> Option<bool>,
    ) -> Result<(HashMap<String, Enrolment>, BTreeSet<String>), sqlx::Error> {
        let mut found = enrolments::lock(tx, course, people).await?;
        let absent: Vec<String> = people
            .iter()
            .filter(|p| !found.contains_key(*p))
            .cloned()
            .collect();
        if absent.is_empty() {
            return Ok((found, BTreeSet::new()));
        }
        let known = catalogue::existing_people(tx, &absent).await?;
        let to_enrol: Vec<(String, bool)> = known
            .into_iter()
            .filter_map(|p| new(&p).map(|walk_in| (p, walk_in)))
            .collect();
        let created = enrolments::insert(tx, course, &to_enrol, self.now).await?;
        // All of them are ours now (ours, or committed by a parallel change); lock and read.
        let enrolled: Vec<String> = to_enrol.into_iter().map(|(p, _)| p).collect();
        found.extend(enrolments::lock(tx, course, &enrolled).await?);
        for person in &created {
            let walk_in = found.get(person).is_some_and(|e| e.walk_in);
            self.touch(course, person);
            self.log.push(Change {
                entity: "enrolment",
                course_id: Some(course.to_string()),
                person_id: Some(person.clone()),
                part_id: None,
                change: if walk_in { "walk_in_added" } else { "added" },
                before: None,
                after: j(json!({"result": Outcome::Registered, "walk_in": walk_in, "cycle": 1})),
                event: Some((EventKind::ParticipantAdded, Some(1))),
            });
        }
        Ok((found, created))
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
            // The first row of a person decides how a new enrolment is made.
            let mut walk_in: HashMap<&str, bool> = HashMap::new();
            for &i in &idxs {
                walk_in
                    .entry(rows[i].person_id.as_str())
                    .or_insert(rows[i].walk_in.unwrap_or(false));
            }
            let (mut existing, created) = self
                .lock_participants(tx, course, &people, |p| walk_in.get(p).copied())
                .await?;
            let mut reported: BTreeSet<&str> = BTreeSet::new();
            for &i in &idxs {
                let r = &rows[i];
                out[i] = Some(match existing.get_mut(&r.person_id) {
                    None => Err(missing(
                        Some("person_id"),
                        format!("unknown person {:?}", r.person_id),
                    )),
                    Some(_) if created.contains(&r.person_id) => {
                        if reported.insert(&r.person_id) {
                            Ok(Applied::Created)
                        } else {
                            Ok(Applied::Unchanged)
                        }
                    }
                    Some(e) => match r.walk_in {
                        Some(w) if w != e.walk_in => {
                            enrolments::set_walk_in(tx, course, &r.person_id, w, self.now).await?;
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
                            e.walk_in = w;
                            Ok(Applied::Updated)
                        }
                        _ => Ok(Applied::Unchanged),
                    },
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Ok(Applied::Unchanged)))
            .collect())
    }

    /// Writes buffered history and events.
    pub async fn flush(&mut self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        self.log.flush(tx).await
    }

    /// D3: sets completion for every touched enrolment that now meets D1 and D2, then
    /// writes the history. Call once before committing.
    pub async fn finish(&mut self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        for course in std::mem::take(&mut self.touched_courses) {
            let people = enrolments::incomplete_people(tx, &course).await?;
            self.touched.entry(course).or_default().extend(people);
        }
        for (course_id, people) in std::mem::take(&mut self.touched) {
            let Some(course) = self.course(tx, &course_id).await? else {
                continue;
            };
            let people: Vec<String> = people.into_iter().collect();
            for chunk in people.chunks(500) {
                let enrolments = enrolments::lock(tx, &course_id, chunk).await?;
                let progress = enrolments::progress(tx, &course_id, chunk).await?;
                self.settle(tx, &course, chunk, &enrolments, &progress)
                    .await?;
            }
            self.log.flush(tx).await?;
        }
        self.log.flush(tx).await
    }

    /// D3 for `people` of `course`, given their enrolments and their current marks and
    /// part results (read while the enrolments are locked): sets completion where it first
    /// holds.
    async fn settle(
        &mut self,
        tx: &mut Tx,
        course: &CourseInfo,
        people: &[String],
        enrolments: &HashMap<String, Enrolment>,
        progress: &Progress,
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
            enrolments::complete(
                tx,
                &course.id,
                &completers,
                CompletedVia::Requirements,
                self.now,
            )
            .await?;
        }
        // D5: completion, or a passed result, may make a certificate due.
        let completed: std::collections::HashSet<&str> =
            completers.iter().map(String::as_str).collect();
        let mine: HashMap<String, Enrolment> = people
            .iter()
            .filter_map(|p| enrolments.get(p).map(|e| (p.clone(), e.clone())))
            .collect();
        self.issue_certificates(tx, course, &mine, &completed).await
    }
}

/// A person as the history records them (before and after a change).
fn person_json(b: &catalogue::Person) -> serde_json::Value {
    json!({"full_name": b.full_name, "email": b.email, "first_name": b.first_name, "locale": b.locale,
           "fields": serde_json::from_str::<serde_json::Value>(&b.fields).unwrap_or_default()})
}

/// A person as given, in the shape of [`person_json`].
fn input_json(p: &PersonInput) -> serde_json::Value {
    let email = p.email.as_ref().map(|e| e.as_str().to_string());
    json!({"full_name": p.full_name, "email": email, "first_name": p.first_name,
           "locale": p.locale, "fields": p.fields})
}

/// The history row of a change of a person.
fn person_change(
    id: &str,
    change: &'static str,
    before: Option<serde_json::Value>,
    after: serde_json::Value,
) -> Change {
    Change {
        entity: "person",
        course_id: None,
        person_id: Some(id.to_string()),
        part_id: None,
        change,
        before: before.and_then(j),
        after: j(after),
        event: None,
    }
}
