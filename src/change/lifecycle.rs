//! Results (D4) and the administrator's actions on a participant: reset, reassign (D4),
//! equivalency (D3) and removal (D7).

use super::attendance::not_enrolled;
use super::{Applied, Work, WriteError, missing, refused};
use crate::domain::enrolment::{self, ResultChange};
use crate::domain::input::ResultInput;
use crate::domain::{CompletedVia, EventKind, Outcome};
use crate::store::enrolments::{self, Enrolment};
use crate::store::{Change, Lock, Tx, certificates, j};
use serde_json::json;

impl Work<'_> {
    async fn enrolled(
        &mut self,
        tx: &mut Tx,
        course: &str,
        person: &str,
    ) -> Result<Enrolment, WriteError> {
        self.known_course(tx, course).await?;
        match enrolments::one(tx, course, person, Lock::Update).await? {
            Some(e) => Ok(e),
            None => Err(not_enrolled(tx, course, person).await?),
        }
    }

    /// Records a result. From `passed`, only `registered` is accepted, and it is a reset.
    pub async fn record_result(
        &mut self,
        tx: &mut Tx,
        r: &ResultInput,
    ) -> Result<Applied, WriteError> {
        let e = self.enrolled(tx, &r.course_id, &r.person_id).await?;
        let change = enrolment::result_change(e.result, r.result, &r.course_id, &r.person_id)
            .map_err(|d| refused(Some("result"), d.0))?;
        if change == ResultChange::Reset {
            self.start_cycle(tx, &e, "reset", false).await?;
        }
        let score_comment_same = e.score == r.score && e.comment == r.comment;
        if change == ResultChange::Unchanged && score_comment_same {
            return Ok(Applied::Unchanged);
        }
        enrolments::set_result(
            tx,
            &r.course_id,
            &r.person_id,
            r.result,
            r.score,
            r.comment.as_deref(),
            self.now,
        )
        .await?;
        let cycle = if change == ResultChange::Reset {
            e.cycle + 1
        } else {
            e.cycle
        };
        self.log.push(Change {
            entity: "enrolment",
            course_id: Some(r.course_id.clone()),
            person_id: Some(r.person_id.clone()),
            part_id: None,
            change: "result",
            before: j(json!({"result": e.result, "score": e.score, "comment": e.comment})),
            after: j(json!({"result": r.result, "score": r.score, "comment": r.comment})),
            event: (change != ResultChange::Unchanged)
                .then_some((EventKind::ResultRecorded, Some(cycle))),
        });
        // A result other than failed/deregistered may complete an enrolment whose
        // requirements are met; completion itself is never taken back here (D3).
        if change == ResultChange::Set {
            self.touch(&r.course_id, &r.person_id);
        }
        Ok(Applied::Updated)
    }

    /// D4 reset: a new cycle with result `registered`; the cycle's certificate is revoked and
    /// completion cleared. Attendance and part results stay: the participant did attend.
    pub async fn reset(
        &mut self,
        tx: &mut Tx,
        course: &str,
        person: &str,
    ) -> Result<i64, WriteError> {
        let e = self.enrolled(tx, course, person).await?;
        self.start_cycle(tx, &e, "reset", false).await
    }

    /// D4 reassign: like a reset, and the participant must take the course again, so the
    /// attendance marks and part results are cleared too (the history keeps them).
    pub async fn reassign(
        &mut self,
        tx: &mut Tx,
        course: &str,
        person: &str,
    ) -> Result<i64, WriteError> {
        let e = self.enrolled(tx, course, person).await?;
        self.start_cycle(tx, &e, "reassigned", true).await
    }

    async fn start_cycle(
        &mut self,
        tx: &mut Tx,
        e: &Enrolment,
        why: &'static str,
        clear_progress: bool,
    ) -> Result<i64, WriteError> {
        let cycle = e.cycle + 1;
        let (course, person) = (&e.course_id, &e.person_id);
        enrolments::start_cycle(tx, course, person, cycle, self.now).await?;
        let revoked = certificates::revoke(tx, course, person, e.cycle, self.now).await?;
        let mut cleared = serde_json::Value::Null;
        if clear_progress {
            let progress = enrolments::progress(tx, course, std::slice::from_ref(person)).await?;
            cleared = json!({
                "attendance": progress.marks.get(person).map(|m| m.iter().map(|(k, v)| (k.clone(), json!({"status": v.mark, "minutes": v.minutes}))).collect::<serde_json::Map<_, _>>()),
                "part_results": progress.part_results.get(person),
            });
            enrolments::clear_progress(tx, course, person).await?;
        }
        self.log.push(Change {
            entity: "enrolment",
            course_id: Some(course.clone()),
            person_id: Some(person.clone()),
            part_id: None,
            change: why,
            before: j(json!({"cycle": e.cycle, "result": e.result, "completed_at": e.completed_at,
                                "completed_via": e.completed_via, "cleared": cleared})),
            after: j(json!({"cycle": cycle, "result": Outcome::Registered, "revoked_certificates": revoked})),
            event: Some((EventKind::CycleStarted, Some(cycle))),
        });
        Ok(cycle)
    }

    /// D3 equivalency: the administrator completes the enrolment without its requirements.
    pub async fn equivalency(
        &mut self,
        tx: &mut Tx,
        course: &str,
        person: &str,
    ) -> Result<Applied, WriteError> {
        let e = self.enrolled(tx, course, person).await?;
        if let Some(at) = e.completed_at {
            return Err(refused(
                None,
                format!(
                    "{person} already completed course {course} on {} ({}); nothing changed",
                    self.local(at),
                    e.completed_via.map_or("requirements", CompletedVia::as_str)
                ),
            ));
        }
        if matches!(e.result, Outcome::Failed | Outcome::Deregistered) {
            return Err(refused(
                None,
                format!(
                    "{person} is {} in course {course}; record another result before completing by equivalency",
                    e.result
                ),
            ));
        }
        enrolments::complete(
            tx,
            course,
            &[person.to_string()],
            CompletedVia::Equivalency,
            self.now,
        )
        .await?;
        self.tally.completed += 1;
        self.log.push(Change {
            entity: "enrolment",
            course_id: Some(course.to_string()),
            person_id: Some(person.to_string()),
            part_id: None,
            change: "completed",
            before: None,
            after: j(json!({"completed_via": CompletedVia::Equivalency, "cycle": e.cycle})),
            event: Some((EventKind::Completed, Some(e.cycle))),
        });
        // D5 for a course type that certifies on completion.
        self.touch(course, person);
        Ok(Applied::Updated)
    }

    /// D7: deletes a booking before the course's first part starts; refused after.
    pub async fn remove(
        &mut self,
        tx: &mut Tx,
        course_id: &str,
        person: &str,
    ) -> Result<(), WriteError> {
        let e = self.enrolled(tx, course_id, person).await?;
        let Some(course) = self.course(tx, course_id).await? else {
            return Err(missing(
                Some("course_id"),
                format!("unknown course {course_id:?}"),
            ));
        };
        let start = course.first_start();
        enrolment::check_removal(start, self.now, course_id, person, &self.local(start))
            .map_err(|d| refused(None, d.0))?;
        enrolments::delete(tx, course_id, person).await?;
        self.log.push(Change {
            entity: "enrolment",
            course_id: Some(course_id.to_string()),
            person_id: Some(person.to_string()),
            part_id: None,
            change: "removed",
            before: j(json!({"result": e.result, "walk_in": e.walk_in, "cycle": e.cycle})),
            after: None,
            event: Some((EventKind::ParticipantRemoved, Some(e.cycle))),
        });
        Ok(())
    }
}
