//! Attendance marks (with D6 walk-ins) and part results, in bulk: a chunk of marks costs
//! a handful of statements, whatever its size.

use super::{Applied, Work, WriteError, missing, refused};
use crate::domain::EventKind;
use crate::domain::input::{MarkInput, PartResultInput};
use crate::domain::progress::GivenMark;
use crate::store::enrolments::{self, MarkRow};
use crate::store::{Change, Json, Lock, Tx, catalogue, j};
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
            // D6: a known person without an enrolment is enrolled as a walk-in first.
            let (enrolled, _) = self
                .lock_participants(tx, course, &people, |_| Some(true))
                .await?;
            let cycles: HashMap<String, i64> = enrolled
                .values()
                .map(|e| (e.person_id.clone(), e.cycle))
                .collect();
            // The marks before this call; updated below to the marks after it, so that
            // completion (D3) is settled here without reading them again.
            let mut state = enrolments::progress(tx, course, &people).await?;

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
                self.settle(tx, &info, &touched, &enrolled, &state).await?;
            }
            let marks: Vec<MarkRow> = changed
                .iter()
                .map(|&i| {
                    let r = &rows[i];
                    (
                        r.course_id.as_str(),
                        r.person_id.as_str(),
                        r.part_id.as_str(),
                        r.mark,
                        r.minutes,
                    )
                })
                .collect();
            enrolments::upsert_marks(tx, &marks).await?;
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
        let Some(e) = enrolments::one(tx, &r.course_id, &r.person_id, Lock::Update).await? else {
            return Err(not_enrolled(tx, &r.course_id, &r.person_id).await?);
        };
        let before = enrolments::part_result(tx, &r.course_id, &r.person_id, &r.part_id).await?;
        if before == Some(r.passed) {
            return Ok(Applied::Unchanged);
        }
        enrolments::set_part_result(tx, &r.course_id, &r.person_id, &r.part_id, r.passed).await?;
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
    Ok(
        if catalogue::person(tx, person, Lock::None).await?.is_none() {
            missing(Some("person_id"), format!("unknown person {person:?}"))
        } else {
            missing(
                Some("person_id"),
                format!("{person} is not enrolled in course {course}"),
            )
        },
    )
}
