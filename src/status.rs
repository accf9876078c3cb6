//! The derived status of every participant of a course: what `export attendance` prints
//! and, later, what the HTTP API and the rule engine read.

use crate::domain::progress::{self, AttendanceSummary, PassingSummary};
use crate::domain::{ExpiryStatus, Outcome, expiry};
use crate::lang::Lang;
use crate::rules::RuleSet;
use crate::store::catalogue::{self, CourseInfo};
use crate::store::{Lock, Tx, certificates, certifications, enrolments};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone)]
pub struct ParticipantStatus {
    pub person_id: String,
    pub full_name: String,
    pub email: Option<String>,
    pub result: Outcome,
    pub walk_in: bool,
    pub cycle: i64,
    pub attendance: AttendanceSummary,
    pub passing: PassingSummary,
    pub completed_at: Option<DateTime<Utc>>,
    pub certificate_number: Option<String>,
    pub expiry: Option<ExpiryStatus>,
    /// One shown mark per part, in the course's part order.
    pub marks: Vec<&'static str>,
}

/// The course and its participants' statuses at `now`; `None` if the course is unknown.
pub async fn course_participants(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    course_id: &str,
) -> Result<Option<(CourseInfo, Vec<ParticipantStatus>)>, sqlx::Error> {
    participants(tx, rules, tz, now, course_id, None, Lock::None).await
}

/// [`course_participants`], of only the people in `only` when given (an empty list
/// reads nobody). With `Lock::Share` the course row and the enrolments of `only` are held
/// until the transaction ends (a change of them waits for it).
pub async fn participants(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    course_id: &str,
    only: Option<&[String]>,
    lock: Lock,
) -> Result<Option<(CourseInfo, Vec<ParticipantStatus>)>, sqlx::Error> {
    let Some(course) = catalogue::course(tx, course_id, lock).await? else {
        return Ok(None);
    };
    if let (Some(only), Lock::Share | Lock::Update) = (only, lock) {
        enrolments::of(tx, course_id, only, lock).await?;
    }
    if only.is_some_and(<[String]>::is_empty) {
        return Ok(Some((course, Vec::new())));
    }
    let enrolled = enrolments::participants_of_course(tx, course_id, only).await?;
    let people: Vec<String> = enrolled
        .iter()
        .map(|(e, _, _)| e.person_id.clone())
        .collect();
    let progress = enrolments::progress(tx, course_id, &people).await?;
    let certificates = certificates::numbers_in_force(tx, course_id).await?;
    let out = derive(rules, tz, now, &course, enrolled, &progress, &certificates);
    Ok(Some((course, out)))
}

/// The enrolments [`participants_and_enrolments`] read, by (course, person): what
/// [`ContextRows::with_enrolments`] takes instead of reading them again.
pub type Enrolled = HashMap<(String, String), enrolments::Enrolment>;

/// [`participants`] of several courses at once, each only of the people `wanted` names
/// for it, without locks: a handful of statements whatever the number of courses (the
/// firing pass reads a batch's participants so; unknown courses are left out), and the
/// enrolment rows the statuses were derived from.
pub async fn participants_and_enrolments(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    wanted: &HashMap<String, Vec<String>>,
) -> Result<
    (
        HashMap<String, (CourseInfo, Vec<ParticipantStatus>)>,
        Enrolled,
    ),
    sqlx::Error,
> {
    let mut rows_read: Enrolled = HashMap::new();
    let ids: Vec<String> = wanted.keys().cloned().collect();
    let mut out = HashMap::new();
    for ids in ids.chunks(500) {
        let courses = catalogue::courses(tx, ids).await?;
        // Exactly the pairs asked for, each once (a participant may have several instances
        // in a batch): one index probe each.
        let pairs: BTreeSet<(&str, &str)> = ids
            .iter()
            .flat_map(|c| {
                wanted
                    .get(c)
                    .into_iter()
                    .flatten()
                    .map(move |p| (c.as_str(), p.as_str()))
            })
            .collect();
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        let mut enrolled: HashMap<String, Vec<_>> = HashMap::new();
        for row in enrolments::participants_of_pairs(tx, &pairs).await? {
            rows_read.insert(
                (row.0.course_id.clone(), row.0.person_id.clone()),
                row.0.clone(),
            );
            enrolled
                .entry(row.0.course_id.clone())
                .or_default()
                .push(row);
        }
        let progress = enrolments::progress_of_pairs(tx, &pairs).await?;
        let numbers = certificates::numbers_in_force_of_courses(tx, ids).await?;
        let (no_progress, no_numbers) = (enrolments::Progress::default(), HashMap::new());
        for (id, course) in courses {
            let statuses = derive(
                rules,
                tz,
                now,
                &course,
                enrolled.remove(&id).unwrap_or_default(),
                progress.get(&id).unwrap_or(&no_progress),
                numbers.get(&id).unwrap_or(&no_numbers),
            );
            out.insert(id, (course, statuses));
        }
    }
    Ok((out, rows_read))
}

/// The statuses of a course's participants from their rows: the one derivation behind
/// `export`, `plan`, the firing pass and the API.
fn derive(
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    course: &CourseInfo,
    enrolled: Vec<(enrolments::Enrolment, String, Option<String>)>,
    progress: &enrolments::Progress,
    certificates: &HashMap<String, String>,
) -> Vec<ParticipantStatus> {
    let course_type = rules.course_types.get(&course.type_id);
    let percent = course_type.map_or(100, |t| t.attendance_percent);
    let parts = course.part_rules();
    let (no_marks, no_results) = (HashMap::new(), HashMap::new());
    let mut out = Vec::with_capacity(enrolled.len());
    for (e, full_name, email) in enrolled {
        let marks = progress.marks.get(&e.person_id).unwrap_or(&no_marks);
        let results = progress
            .part_results
            .get(&e.person_id)
            .unwrap_or(&no_results);
        out.push(ParticipantStatus {
            full_name,
            email,
            result: e.result,
            walk_in: e.walk_in,
            cycle: e.cycle,
            attendance: progress::attendance_requirement(&parts, marks, percent),
            passing: progress::passing_obligation(&parts, results),
            completed_at: e.completed_at,
            certificate_number: certificates.get(&e.person_id).cloned(),
            expiry: course_type.and_then(|t| {
                expiry::expiry_status(
                    e.completed_at,
                    t.attendance_validity,
                    t.expiring_soon,
                    now,
                    tz,
                )
            }),
            marks: parts
                .iter()
                .map(|p| progress::shown_mark(p, marks.get(&p.id), now))
                .collect(),
            person_id: e.person_id,
        });
    }
    out
}

/// Chooses the language of a message from the recipient's `locale` (T7).
pub type Chooser<'a> = &'a (dyn Fn(Option<&str>) -> Lang + Sync);

/// [`email_context`] for a participant whose status is already known (the engine reads a
/// course's participants once for every action of that course it fires), in the language
/// `choose` picks for the participant's locale (`recipient.language`; dates written in it).
#[allow(clippy::too_many_arguments)]
pub async fn participant_context(
    tx: &mut Tx,
    rules: &RuleSet,
    office: &crate::config::Office,
    tz: Tz,
    course: &CourseInfo,
    p: &ParticipantStatus,
    part_id: Option<&str>,
    choose: Chooser<'_>,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let rows = ContextRows::read(
        tx,
        std::slice::from_ref(&course.id),
        std::slice::from_ref(&p.person_id),
    )
    .await?;
    Ok(rows.participant_context(rules, office, tz, course, p, part_id, choose))
}

/// What participants' template contexts are made of besides their status (the person,
/// the enrolment, the certificate in force), read for many participants of many courses
/// in a few statements: the firing pass reads them once per batch.
pub struct ContextRows {
    people: HashMap<String, catalogue::Person>,
    enrolments: HashMap<(String, String), enrolments::Enrolment>,
    certificates: HashMap<(String, String, i64), certificates::InForce>,
}

impl ContextRows {
    /// The rows of `people` in `courses` (up to 500 of each).
    pub async fn read(
        tx: &mut Tx,
        courses: &[String],
        people: &[String],
    ) -> Result<ContextRows, sqlx::Error> {
        let enrolments = enrolments::participants_of_courses(tx, courses, people)
            .await?
            .into_iter()
            .map(|(e, _, _)| ((e.course_id.clone(), e.person_id.clone()), e))
            .collect();
        ContextRows::with_enrolments(tx, enrolments, courses, people).await
    }

    /// [`ContextRows::read`] with the enrolments read before (by
    /// [`participants_and_enrolments`], in the same transaction).
    pub async fn with_enrolments(
        tx: &mut Tx,
        enrolments: Enrolled,
        courses: &[String],
        people: &[String],
    ) -> Result<ContextRows, sqlx::Error> {
        Ok(ContextRows {
            people: catalogue::people(tx, people).await?,
            enrolments,
            certificates: certificates::in_force_of(tx, courses, people).await?,
        })
    }

    /// [`participant_context`] from rows read before; `None` when the participant is not
    /// among them (no longer a participant).
    #[allow(clippy::too_many_arguments)]
    pub fn participant_context(
        &self,
        rules: &RuleSet,
        office: &crate::config::Office,
        tz: Tz,
        course: &CourseInfo,
        p: &ParticipantStatus,
        part_id: Option<&str>,
        choose: Chooser<'_>,
    ) -> Option<serde_json::Value> {
        let person = self.people.get(&p.person_id)?;
        let e = self
            .enrolments
            .get(&(course.id.clone(), p.person_id.clone()))?;
        let certificate = self
            .certificates
            .get(&(course.id.clone(), p.person_id.clone(), e.cycle));
        Some(build_participant_context(
            rules,
            office,
            tz,
            course,
            p,
            part_id,
            choose,
            person,
            e,
            certificate,
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn build_participant_context(
    rules: &RuleSet,
    office: &crate::config::Office,
    tz: Tz,
    course: &CourseInfo,
    p: &ParticipantStatus,
    part_id: Option<&str>,
    choose: Chooser<'_>,
    person: &catalogue::Person,
    e: &enrolments::Enrolment,
    certificate: Option<&certificates::InForce>,
) -> serde_json::Value {
    use crate::domain::time::local_rfc3339;
    use serde_json::json;
    let lang = choose(person.locale.as_deref());
    let long_date = |t: DateTime<Utc>, tz: Tz| crate::lang::long_date(t, tz, &lang);
    let type_name = rules
        .course_types
        .get(&course.type_id)
        .map_or(course.type_id.clone(), |t| t.name.clone());
    let part = part_id
        .and_then(|id| course.part(id))
        .or_else(|| course.parts.first())
        .map(|d| {
            json!({"id": d.rule.id, "name": d.name, "start": local_rfc3339(d.rule.start, tz),
                        "end": local_rfc3339(d.rule.end, tz), "date": long_date(d.rule.start, tz)})
        });
    let certificate = match certificate {
        Some(&certificates::InForce {
            ref number,
            verification_code: ref code,
            issued_at: issued,
            valid_until: until,
        }) => json!({
            "linkedin_url": crate::credential::linkedin_url(&type_name, office,
                issued.with_timezone(&tz).date_naive(), until.map(|u| u.with_timezone(&tz).date_naive()),
                &format!("{}/verify/{code}", office.verify_base_url), number),
            "number": number, "verification_code": code,
            "verify_url": format!("{}/verify/{code}", office.verify_base_url),
            "issued_on": long_date(issued, tz), "valid_until": until.map(|u| long_date(u, tz)).unwrap_or_default(),
            "issued_at": local_rfc3339(issued, tz),
            "valid_until_at": until.map(|u| local_rfc3339(u, tz)).unwrap_or_default()}),
        None => {
            json!({"number": "(not issued yet)", "verification_code": "", "verify_url": "", "linkedin_url": "",
                       "issued_on": "(not issued yet)", "valid_until": "(not issued yet)",
                       "issued_at": "", "valid_until_at": ""})
        }
    };
    let fields =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_else(|_| json!({}));
    json!({
        "recipient": {"language": lang},
        "participant": {"id": person.id, "full_name": person.full_name,
            "first_name": person.first_name.clone().unwrap_or_else(|| person.full_name.split_whitespace().next().unwrap_or_default().to_string()),
            "email": person.email, "locale": person.locale, "fields": fields(&person.fields)},
        "course": {"id": course.id, "name": course.name, "type": course.type_id, "type_name": type_name,
            "status": course.status, "start": local_rfc3339(course.start, tz), "end": local_rfc3339(course.end, tz),
            "start_date": long_date(course.start, tz), "end_date": long_date(course.end, tz),
            "location": course.location.clone().unwrap_or_default(), "fields": fields(&course.fields)},
        "part": part,
        "enrolment": {"result": e.result, "score": e.score, "comment": e.comment.clone().unwrap_or_default(),
            "cycle": e.cycle, "walk_in": e.walk_in,
            "completed_at": e.completed_at.map(|t| local_rfc3339(t, tz)).unwrap_or_default()},
        "attendance": {"attended": p.attendance.attended, "required": p.attendance.required,
            "percent": p.attendance.percent().unwrap_or(100), "percent_needed": p.attendance.percent_needed,
            "achieved": p.attendance.achieved, "passing_obligation_passed": p.passing.met,
            "expiry_status": p.expiry.map(|x| x.as_str()).unwrap_or_default()},
        "certificate": certificate,
        "certification": {"id": "", "name": "", "status": "", "valid_until": "", "grace_period_ends": ""},
        "office": {"name": office.name, "from": office.from, "verify_base_url": office.verify_base_url,
            "locale": office.locale},
    })
}

/// The template context of a certification learner (SPEC §3): `participant`,
/// `certification` and `office`; the course-related keys are there, empty, so that a
/// template checked against the sample context still renders. With the learner's status
/// and cycle; `None` when the learner or the certification is gone.
pub async fn learner_context(
    tx: &mut Tx,
    rules: &RuleSet,
    office: &crate::config::Office,
    tz: Tz,
    certification: &str,
    person_id: &str,
    choose: Chooser<'_>,
) -> Result<
    Option<(
        serde_json::Value,
        crate::domain::certification::LearnerStatus,
        i64,
    )>,
    sqlx::Error,
> {
    let Some(spec) = rules.certifications.get(certification) else {
        return Ok(None);
    };
    let Some(learner) = certifications::load(tx, certification, person_id, Lock::None).await?
    else {
        return Ok(None);
    };
    let (status, cycle, until) = (learner.status, learner.cycle, learner.valid_until);
    let Some(person) = catalogue::person(tx, person_id, Lock::None).await? else {
        return Ok(None);
    };
    let lang = choose(person.locale.as_deref());
    let long_date = |t: DateTime<Utc>, tz: Tz| crate::lang::long_date(t, tz, &lang);
    let mut ctx = crate::render::sample_context(office, &lang);
    for key in ["course", "part", "enrolment", "attendance", "certificate"] {
        blank(&mut ctx[key]);
    }
    let grace_ends = until.and_then(|u| spec.grace_period.add_to(u, tz));
    ctx["participant"] = serde_json::json!({"id": person.id, "full_name": person.full_name,
        "first_name": person.first_name.clone().unwrap_or_else(|| person.full_name.split_whitespace().next().unwrap_or_default().to_string()),
        "email": person.email, "locale": person.locale,
        "fields": serde_json::from_str::<serde_json::Value>(&person.fields).unwrap_or_else(|_| serde_json::json!({}))});
    ctx["certification"] = serde_json::json!({"id": spec.id, "name": spec.name, "status": status,
        "valid_until": until.map(|u| long_date(u, tz)).unwrap_or_default(),
        "grace_period_ends": grace_ends.map(|g| long_date(g, tz)).unwrap_or_default()});
    Ok(Some((ctx, status, cycle)))
}

/// Every leaf emptied: strings "", numbers 0, booleans false.
fn blank(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => s.clear(),
        serde_json::Value::Number(_) => *v = serde_json::json!(0),
        serde_json::Value::Bool(b) => *b = false,
        serde_json::Value::Object(m) => m.values_mut().for_each(blank),
        serde_json::Value::Array(a) => a.iter_mut().for_each(blank),
        serde_json::Value::Null => {}
    }
}
