//! Attendance marks (with D6 walk-ins) and part results, in bulk: a chunk of marks costs
//! a handful of statements, whatever its size.

use super::{Applied, Work, WriteError, missing, refused};
use crate::domain::EventKind;
use crate::domain::input::{MarkInput, PartResultInput};
use crate::domain::progress::GivenMark;
use crate::store::read;
use crate::store::{Change, Json, Tx, j, on};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A mark as the history shows it.
#[derive(serde::Serialize)]
struct Shown {
    status: &'static str,
    minutes: Option<u32>,
}

impl From<&GivenMark> for Shown {
    fn from(m: &GivenMark) -> Shown {
        Shown {
            status: m.mark.as_str(),
            minutes: m.minutes,
        }
    }
}

/// A part whose mark changes: (part id, the mark before, index of the new row).
type ChangedMark<'a> = (&'a str, Option<GivenMark>, usize);

impl Work<'_> {
    /// Records attendance marks. A mark for a known person without an enrolment creates
    /// the enrolment as a walk-in first (D6). Returns one outcome per row, in order.
    pub async fn mark_attendance(
        &mut self,
        tx: &mut Tx,
        rows: &[MarkInput],
    ) -> Result<Vec<Result<Applied, WriteError>>, sqlx::Error> {
        let mut out: Vec<Option<Result<Applied, WriteError>>> = rows.iter().map(|_| None).collect();
        let courses: Vec<&str> = rows.iter().map(|r| r.course_id.as_str()).collect();
        let by_course = self
            .group_by_course(tx, &courses, &mut out, |c, i| {
                let r = &rows[i];
                c.part(&r.part_id).is_none().then(|| {
                    refused(
                        Some("part_id"),
                        format!("course {:?} has no part {:?}", r.course_id, r.part_id),
                    )
                })
            })
            .await?;
        for (course, idxs) in by_course {
            let people: Vec<String> = idxs
                .iter()
                .map(|&i| rows[i].person_id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let (enrolments, known) = read::enrolled_and_known(tx, course, &people).await?;
            let walk_ins: Vec<(String, bool)> = known.iter().map(|p| (p.clone(), true)).collect();
            self.insert_enrolments(tx, course, &walk_ins).await?;
            let mut enrolments = enrolments;
            for (person, _) in &walk_ins {
                enrolments.insert(person.clone(), read::Enrolment::new_walk_in(course, person));
            }
            let cycles: HashMap<String, i64> = enrolments
                .values()
                .map(|e| (e.person_id.clone(), e.cycle))
                .collect();
            // The marks before this call; updated below to the marks after it, so that
            // completion (D3) is settled here without reading them again.
            let mut state = read::progress(tx, course, &people).await?;

            // The last mark for a key wins within one call.
            let mut latest: HashMap<(&str, &str), usize> = HashMap::new();
            for &i in &idxs {
                let r = &rows[i];
                if !cycles.contains_key(r.person_id.as_str()) {
                    out[i] = Some(Err(missing(
                        Some("person_id"),
                        format!("unknown person {:?}", r.person_id),
                    )));
                    continue;
                }
                if let Some(prev) = latest.insert((&r.person_id, &r.part_id), i) {
                    out[prev] = Some(Ok(Applied::Unchanged));
                }
            }
            // One history row per participant per call, holding every part that changed:
            // a bulk import of ten parts writes one row per participant, not ten.
            let mut changed = Vec::new();
            let mut per_person: BTreeMap<&str, Vec<ChangedMark>> = BTreeMap::new();
            for (&(person, part), &i) in &latest {
                let r = &rows[i];
                let old = state.marks.get(person).and_then(|m| m.get(part)).copied();
                let applied = match old {
                    Some(o) if o.mark == r.mark && o.minutes == r.minutes => Applied::Unchanged,
                    Some(_) => Applied::Updated,
                    None => Applied::Created,
                };
                if applied != Applied::Unchanged {
                    changed.push(i);
                    per_person.entry(person).or_default().push((part, old, i));
                }
                out[i] = Some(Ok(applied));
            }
            for (person, parts) in per_person {
                let before: BTreeMap<&str, Option<Shown>> = parts
                    .iter()
                    .map(|(part, old, _)| (*part, old.as_ref().map(Shown::from)))
                    .collect();
                let after: BTreeMap<&str, Shown> = parts
                    .iter()
                    .map(|(part, _, i)| {
                        (
                            *part,
                            Shown {
                                status: rows[*i].mark.as_str(),
                                minutes: rows[*i].minutes,
                            },
                        )
                    })
                    .collect();
                self.log.push(Change {
                    entity: "attendance",
                    course_id: Some(course.to_string()),
                    person_id: Some(person.to_string()),
                    part_id: (parts.len() == 1).then(|| parts[0].0.to_string()),
                    change: "marked",
                    before: Some(Json::of(&before)),
                    after: Some(Json::of(&after)),
                    event: Some((
                        EventKind::AttendanceMarked,
                        Some(cycles.get(person).copied().unwrap_or(1)),
                    )),
                });
            }
            let mut touched = BTreeSet::new();
            for &i in &changed {
                let r = &rows[i];
                state.marks.entry(r.person_id.clone()).or_default().insert(
                    r.part_id.clone(),
                    GivenMark {
                        mark: r.mark,
                        minutes: r.minutes,
                    },
                );
                touched.insert(r.person_id.clone());
            }
            changed.sort_unstable();
            if let Some(info) = self.course(tx, course).await? {
                let touched: Vec<String> = touched.into_iter().collect();
                self.settle(tx, &info, &touched, &enrolments, &state)
                    .await?;
            }
            for chunk in changed.chunks(1000) {
                on!(tx, t => {
                    let mut q = sqlx::QueryBuilder::new(
                        "INSERT INTO attendance (course_id, person_id, part_id, status, minutes) ",
                    );
                    q.push_values(chunk, |mut b, &i| {
                        let r = &rows[i];
                        b.push_bind(r.course_id.clone())
                            .push_bind(r.person_id.clone())
                            .push_bind(r.part_id.clone())
                            .push_bind(r.mark.as_str())
                            .push_bind(r.minutes.map(i64::from));
                    });
                    q.push(
                        " ON CONFLICT (course_id, person_id, part_id) DO UPDATE SET status = excluded.status, \
                         minutes = excluded.minutes",
                    );
                    q.build().execute(&mut **t).await?;
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(Ok(Applied::Unchanged)))
            .collect())
    }

    /// Records whether a participant passed a part (D2). The participant must be enrolled.
    pub async fn record_part_result(
        &mut self,
        tx: &mut Tx,
        r: &PartResultInput,
    ) -> Result<Applied, WriteError> {
        let course = self.known_course(tx, &r.course_id).await?;
        if course.part(&r.part_id).is_none() {
            return Err(refused(
                Some("part_id"),
                format!("course {:?} has no part {:?}", r.course_id, r.part_id),
            ));
        }
        let Some(e) = read::enrolment(tx, &r.course_id, &r.person_id).await? else {
            return Err(not_enrolled(tx, &r.course_id, &r.person_id).await?);
        };
        let before: Option<bool> = on!(tx, t => sqlx::query_scalar(
            "SELECT passed FROM part_results WHERE course_id = $1 AND person_id = $2 AND part_id = $3",
        ).bind(&r.course_id).bind(&r.person_id).bind(&r.part_id).fetch_optional(&mut **t).await)?;
        if before == Some(r.passed) {
            return Ok(Applied::Unchanged);
        }
        on!(tx, t => sqlx::query(
            "INSERT INTO part_results (course_id, person_id, part_id, passed) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (course_id, person_id, part_id) DO UPDATE SET passed = excluded.passed",
        ).bind(&r.course_id).bind(&r.person_id).bind(&r.part_id).bind(r.passed).execute(&mut **t).await.map(|r| r.rows_affected()))?;
        self.touch(&r.course_id, &r.person_id);
        self.log.push(Change {
            entity: "part_result",
            course_id: Some(r.course_id.clone()),
            person_id: Some(r.person_id.clone()),
            part_id: Some(r.part_id.clone()),
            change: "recorded",
            before: before.and_then(|p| j(json!({"passed": p}))),
            after: j(json!({"passed": r.passed})),
            event: Some((EventKind::PartResultRecorded, Some(e.cycle))),
        });
        Ok(if before.is_some() {
            Applied::Updated
        } else {
            Applied::Created
        })
    }
}

/// The refusal for a change that needs an enrolment: names whether the person is unknown
/// altogether or only not enrolled.
pub(super) async fn not_enrolled(
    tx: &mut Tx,
    course: &str,
    person: &str,
) -> Result<WriteError, sqlx::Error> {
    Ok(if read::person(tx, person).await?.is_none() {
        missing(Some("person_id"), format!("unknown person {person:?}"))
    } else {
        missing(
            Some("person_id"),
            format!("{person} is not enrolled in course {course}"),
        )
    })
}
