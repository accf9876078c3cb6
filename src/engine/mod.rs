//! The rule engine (T2): turns recorded events into action instances — one per
//! (rule, subject, cycle), with its due time stored — and evaluates them with the one
//! [`verdict`]. It never sends: a fired action becomes an outbox row, and delivery takes
//! it from there.

pub mod conditions;
pub mod fire;
pub mod verdict;

use crate::domain::progress::{
    AttendanceSummary, PassingSummary, attendance_requirement, passing_obligation,
};
use crate::domain::time::local_rfc3339;
use crate::domain::{ActionState, CourseStatus, DeliveryState, EventKind, SubjectKind, enrolment};
use crate::rules::RuleSet;
use crate::rules::action::{ActionRule, DataGroup, RuleEvent};
use crate::rules::timing::{self, Anchor};
use crate::store::actions::{self, NewAction};
use crate::store::catalogue::{self, CourseInfo};
use crate::store::history::{self, EventRow};
use crate::store::{Lock, Store, Tx, certificates, certifications, enrolments};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashMap};
use verdict::{Decision, Facts, Moment};

/// Events handled per transaction.
const EVENT_BATCH: i64 = 1000;

/// Turns every unprocessed event into action instances and cancellations. Returns the
/// number of events processed.
pub async fn ingest(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        // Usually nothing is new: find out without taking the write lock.
        if !history::any_unprocessed(store).await? {
            return Ok(total);
        }
        let done = crate::store::transact!(store, |tx| {
            history::take_ingest_turn(tx).await?;
            let events = history::unprocessed(tx, EVENT_BATCH).await?;
            if events.is_empty() {
                return Ok(0);
            }
            apply_events(tx, rules, tz, now, &events).await?;
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            history::mark_processed(tx, &ids, now).await?;
            Ok::<u64, sqlx::Error>(ids.len() as u64)
        })?;
        if done == 0 {
            return Ok(total);
        }
        total += done;
    }
}

/// A digest of each rule as it bears on its instances (with the course types, whose
/// attendance percentages the conditions use).
pub fn rule_digests(rules: &RuleSet) -> Vec<(String, String)> {
    let types = format!("{:?}", rules.course_types);
    rules
        .actions
        .iter()
        .map(|r| {
            let text = format!("{r:?}{types}");
            // Stable across runs and builds, which a digest kept in the database needs.
            let h = crate::domain::fnv64(text.as_bytes());
            (r.id.value.clone(), format!("{h:016x}"))
        })
        .collect()
}

/// Records the rules in force; the waiting instances of rules that changed since they were
/// last evaluated are evaluated again by the next pass. Returns how many.
pub async fn sync_rules(store: &Store, rules: &RuleSet) -> Result<u64, sqlx::Error> {
    let digests = rule_digests(rules);
    crate::store::transact!(store, |tx| actions::sync_rule_versions(tx, &digests).await)
}

/// One batch of events: the enrolments they concern are read in bulk, and the new
/// instances written with one statement per thousand.
async fn apply_events(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    events: &[EventRow],
) -> Result<(), sqlx::Error> {
    let mut courses: HashMap<String, Option<CourseInfo>> = HashMap::new();
    let (participants, learners) = touched(events);
    let mut enrolled: HashMap<(String, String), enrolments::Enrolment> = HashMap::new();
    for (course, list) in &participants {
        for (person, e) in enrolments::of(tx, course, list, Lock::None).await? {
            enrolled.insert((course.to_string(), person), e);
        }
    }
    // T2: every change of a subject's state has its waiting instances evaluated again.
    for (course, list) in &participants {
        actions::recheck_subjects(tx, SubjectKind::Course, course, list).await?;
    }
    for (certification, list) in &learners {
        actions::recheck_subjects(tx, SubjectKind::Certification, certification, list).await?;
    }
    let mut new: Vec<NewAction> = Vec::new();
    for e in events {
        let Ok(kind) = e.kind.parse::<EventKind>() else {
            continue;
        };
        if kind == EventKind::CertificationStatusChanged {
            // A certification learner's status moved: the instance's subject is the
            // learner (one per rule and cycle).
            if let (Some(person), Some(cycle)) = (e.person_id.as_deref(), e.cycle) {
                // The event carries the status it moved to (in part_id); the rule's
                // conditions are on that status.
                let status = e.part_id.as_deref().and_then(|s| {
                    s.parse::<crate::domain::certification::LearnerStatus>()
                        .ok()
                });
                for rule in rules.actions.iter().filter(|r| {
                    r.enabled
                        && r.data_group == DataGroup::CertificationLearner
                        && r.event == RuleEvent::CertificationStatusChanged
                        && r.conditions
                            .certification_status
                            .as_ref()
                            .is_none_or(|wanted| status.is_some_and(|s| wanted.contains(&s)))
                }) {
                    let due =
                        timing::due(e.at, rule.timing.offset, rule.timing.at.map(|t| t.0), tz);
                    new.push(NewAction {
                        rule: &rule.id.value,
                        kind: SubjectKind::Certification,
                        subject: &e.course_id,
                        person,
                        cycle,
                        event_at: e.at,
                        due,
                        expires: due
                            .zip(rule.expires_after)
                            .and_then(|(d, p)| p.add_to(d, tz)),
                    });
                }
            }
            continue;
        }
        if kind == EventKind::CourseChanged {
            courses.remove(&e.course_id);
            course_changed(tx, rules, tz, now, &e.course_id, &mut courses).await?;
            continue;
        }
        let Some(person) = e.person_id.as_deref() else {
            continue;
        };
        let trigger = match kind {
            EventKind::ParticipantAdded => Some(RuleEvent::ParticipantAdded),
            EventKind::AttendanceMarked => Some(RuleEvent::AttendanceMarked),
            EventKind::ResultRecorded => Some(RuleEvent::ResultRecorded),
            EventKind::Completed => Some(RuleEvent::Completed),
            EventKind::CertificateIssued => Some(RuleEvent::CertificateIssued),
            EventKind::CertificateExpiring => Some(RuleEvent::CertificateExpiring),
            // A new cycle starts the participant's rules afresh.
            EventKind::CycleStarted => Some(RuleEvent::ParticipantAdded),
            _ => None,
        };
        let Some(info) = course(tx, &mut courses, &e.course_id).await? else {
            continue;
        };
        let Some(enrolment) = enrolled.get(&(e.course_id.clone(), person.to_string())) else {
            // Removed (D7): nothing of it stays pending.
            actions::cancel(
                tx,
                now,
                SubjectKind::Course,
                &e.course_id,
                Some(person),
                None,
            )
            .await?;
            continue;
        };
        if !enrolment::takes_actions(info.status, enrolment.result) {
            // D9: pending actions are cancelled, new ones not created.
            actions::cancel(
                tx,
                now,
                SubjectKind::Course,
                &e.course_id,
                Some(person),
                None,
            )
            .await?;
            continue;
        }
        if kind == EventKind::CycleStarted {
            actions::cancel(
                tx,
                now,
                SubjectKind::Course,
                &e.course_id,
                Some(person),
                Some(enrolment.cycle),
            )
            .await?;
        }
        let Some(trigger) = trigger else { continue };
        let cycle = e.cycle.unwrap_or(enrolment.cycle);
        if cycle != enrolment.cycle {
            continue; // an event of an earlier cycle
        }
        // A certificate (D5) is the anchor of `certificate_expiry` timings and raises
        // `certificate_expiring` its course type's `expiring_soon` before it expires.
        let mut triggers = vec![(trigger, e.at)];
        let mut expiry = None;
        if kind == EventKind::CertificateIssued {
            expiry = certificates::in_force(tx, &e.course_id, person, cycle)
                .await?
                .and_then(|c| c.valid_until);
            if let Some(until) = expiry {
                let soon = rules
                    .course_types
                    .get(&info.type_id)
                    .map(|t| t.expiring_soon);
                if let Some(at) = soon.and_then(|p| p.negated().add_to(until, tz)) {
                    triggers.push((RuleEvent::CertificateExpiring, at));
                }
                anchor_waiting_on_expiry(tx, rules, tz, now, &e.course_id, person, cycle, until)
                    .await?;
            }
        }
        for (trigger, event_at) in triggers {
            for rule in rules.actions.iter().filter(|r| applies(r, trigger, info)) {
                let due = anchor_of(rule, info, event_at, expiry).and_then(|a| {
                    timing::due(a, rule.timing.offset, rule.timing.at.map(|t| t.0), tz)
                });
                new.push(NewAction {
                    rule: &rule.id.value,
                    kind: SubjectKind::Course,
                    subject: &e.course_id,
                    person,
                    cycle,
                    event_at,
                    due,
                    expires: due
                        .zip(rule.expires_after)
                        .and_then(|(d, p)| p.add_to(d, tz)),
                });
            }
        }
    }
    actions::insert(tx, &new, now).await
}

/// The subjects a batch of events is about: participants by course, learners by
/// certification.
type Touched<'a> = (
    BTreeMap<&'a str, Vec<String>>,
    BTreeMap<&'a str, Vec<String>>,
);

fn touched(events: &[EventRow]) -> Touched<'_> {
    let (mut participants, mut learners): Touched = Default::default();
    for e in events {
        if let Some(p) = &e.person_id {
            let side = if e.kind == EventKind::CertificationStatusChanged.as_str() {
                &mut learners
            } else {
                &mut participants
            };
            side.entry(e.course_id.as_str())
                .or_default()
                .push(p.clone());
        }
    }
    for list in participants.values_mut().chain(learners.values_mut()) {
        list.sort_unstable();
        list.dedup();
    }
    (participants, learners)
}

async fn course<'a>(
    tx: &mut Tx,
    cache: &'a mut HashMap<String, Option<CourseInfo>>,
    id: &str,
) -> Result<Option<&'a CourseInfo>, sqlx::Error> {
    if !cache.contains_key(id) {
        let c = catalogue::course(tx, id, Lock::None).await?;
        cache.insert(id.to_string(), c);
    }
    Ok(cache.get(id).and_then(Option::as_ref))
}

/// Whether `rule` creates an action for this event in this course.
fn applies(rule: &ActionRule, trigger: RuleEvent, course: &CourseInfo) -> bool {
    rule.enabled
        && rule.data_group == DataGroup::CourseParticipant
        && rule.event == trigger
        // The course type never changes for a course: other types get no instance at all.
        && rule.conditions.course_type.as_ref().is_none_or(|t| t.iter().any(|t| t.value == course.type_id))
}

fn anchor_of(
    rule: &ActionRule,
    course: &CourseInfo,
    event_at: DateTime<Utc>,
    certificate_expiry: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match rule.timing.anchor {
        Anchor::CourseStart => Some(course.start),
        Anchor::CourseEnd => Some(course.end),
        Anchor::Event => Some(event_at),
        // Known once the cycle's certificate exists; until then the action waits without
        // a due time.
        Anchor::CertificateExpiry => certificate_expiry,
    }
}

/// A certificate was issued: instances of this subject and cycle that wait for its
/// expiry as their anchor get their due time.
#[allow(clippy::too_many_arguments)]
async fn anchor_waiting_on_expiry(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    course: &str,
    person: &str,
    cycle: i64,
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for (id, rule_id) in actions::waiting_without_due(tx, course, person, cycle).await? {
        let Some(rule) = rules.action(&rule_id) else {
            continue;
        };
        if rule.timing.anchor != Anchor::CertificateExpiry {
            continue;
        }
        let due = timing::due(until, rule.timing.offset, rule.timing.at.map(|t| t.0), tz);
        let expires = due
            .zip(rule.expires_after)
            .and_then(|(d, p)| p.add_to(d, tz));
        actions::set_due(tx, id, due, expires, now).await?;
    }
    Ok(())
}

/// A course's status or dates changed: D9 for a cancelled course, else new due times for
/// actions anchored on its start or end.
async fn course_changed(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    course_id: &str,
    courses: &mut HashMap<String, Option<CourseInfo>>,
) -> Result<(), sqlx::Error> {
    let Some(info) = course(tx, courses, course_id).await?.cloned() else {
        return Ok(());
    };
    if info.status == CourseStatus::Cancelled {
        return actions::cancel(tx, now, SubjectKind::Course, course_id, None, None).await;
    }
    actions::recheck_course(tx, course_id).await?;
    for (id, rule_id, event_at) in actions::waiting_of_course(tx, course_id).await? {
        let Some(rule) = rules.action(&rule_id) else {
            continue;
        };
        if !matches!(rule.timing.anchor, Anchor::CourseStart | Anchor::CourseEnd) {
            continue;
        }
        let due = anchor_of(rule, &info, event_at, None)
            .and_then(|a| timing::due(a, rule.timing.offset, rule.timing.at.map(|t| t.0), tz));
        let expires = due
            .zip(rule.expires_after)
            .and_then(|(d, p)| p.add_to(d, tz));
        actions::set_due(tx, id, due, expires, now).await?;
    }
    Ok(())
}

/// The state of an action instance as `plan` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    Waiting,
    Due,
    AwaitingApproval,
    Retrying,
    Failed,
    Cancelled,
    Expired,
}

impl PlanState {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanState::Waiting => "waiting",
            PlanState::Due => "due",
            PlanState::AwaitingApproval => "awaiting_approval",
            PlanState::Retrying => "retrying",
            PlanState::Failed => "failed",
            PlanState::Cancelled => "cancelled",
            PlanState::Expired => "expired",
        }
    }
}

/// One action instance not yet delivered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanItem {
    pub id: i64,
    pub rule: String,
    pub course: String,
    pub person: String,
    pub cycle: i64,
    /// RFC 3339 in the office time zone; `null` while the anchor is not known.
    pub due: Option<String>,
    pub state: PlanState,
    /// For `waiting`: one sentence per condition that does not hold (and when it is due).
    pub reasons: Vec<String>,
}

/// Courses evaluated per round of queries.
const PLAN_BATCH: usize = 100;

/// Every action instance not yet delivered, as it stands at `now`: whether it is due (its
/// time has come and its conditions hold), or why it waits.
pub async fn plan(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    rule_filter: Option<&str>,
) -> Result<Vec<PlanItem>, sqlx::Error> {
    let mut out = Vec::new();
    plan_each(store, rules, tz, now, rule_filter, |item| out.push(item)).await?;
    Ok(out)
}

/// Like [`plan`], handing each instance to `emit` as soon as it is evaluated, course by
/// course, so that a plan of millions of instances needs no more memory than a batch.
pub async fn plan_each(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    rule_filter: Option<&str>,
    mut emit: impl FnMut(PlanItem),
) -> Result<u64, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let subjects = actions::subjects_with_actions(&mut tx, rule_filter).await?;
    let mut shown: HashMap<DateTime<Utc>, String> = HashMap::new();
    let mut count = 0;
    for batch in subjects.chunks(PLAN_BATCH) {
        let rows = actions::plan_rows(&mut tx, batch, rule_filter).await?;
        let evaluated = |a: &actions::PlanRow| {
            a.delivery.is_none() && matches!(a.state, ActionState::Waiting | ActionState::Approved)
        };
        // Subjects are only needed for instances still to be evaluated.
        let courses: Vec<String> = {
            let mut v: Vec<String> = rows
                .iter()
                .filter(|a| evaluated(a) && a.kind == SubjectKind::Course)
                .map(|a| a.course_id.clone())
                .collect();
            v.dedup();
            v
        };
        let learner_keys: Vec<(String, String)> = rows
            .iter()
            .filter(|a| evaluated(a) && a.kind == SubjectKind::Certification)
            .map(|a| (a.course_id.clone(), a.person_id.clone()))
            .collect();
        let (infos, enrolled, progress) = if courses.is_empty() {
            Default::default()
        } else {
            (
                catalogue::courses(&mut tx, &courses).await?,
                enrolments::of_courses(&mut tx, &courses).await?,
                enrolments::progress_of_courses(&mut tx, &courses).await?,
            )
        };
        let learners = certifications::states(&mut tx, &learner_keys).await?;
        let certificates =
            if courses.is_empty() || !rules.actions.iter().any(verdict::attaches_certificate) {
                Default::default()
            } else {
                certificates::in_force_of_courses(&mut tx, &courses).await?
            };
        let parts: HashMap<&str, Vec<crate::domain::progress::PartRule>> = infos
            .iter()
            .map(|(id, c)| (id.as_str(), c.part_rules()))
            .collect();
        let (no_progress, no_marks, no_results) =
            (Default::default(), HashMap::new(), HashMap::new());
        // D1 and D2 once per participant, however many rules wait for them (instances come
        // course by course, so the cache is per course).
        let mut summaries: HashMap<String, (AttendanceSummary, PassingSummary)> = HashMap::new();
        let mut summaries_of = String::new();
        for a in rows {
            if a.course_id != summaries_of {
                summaries.clear();
                summaries_of.clone_from(&a.course_id);
            }
            let due = a.due_at.map(|d| {
                shown
                    .entry(d)
                    .or_insert_with(|| local_rfc3339(d, tz))
                    .clone()
            });
            let (state, reasons) = match (a.state, a.delivery) {
                (_, Some(DeliveryState::Retrying)) => (PlanState::Retrying, Vec::new()),
                (_, Some(DeliveryState::Failed)) => (PlanState::Failed, Vec::new()),
                (_, Some(_)) => (PlanState::Due, Vec::new()),
                (ActionState::Cancelled, None) => (PlanState::Cancelled, Vec::new()),
                (ActionState::Expired, None) => (PlanState::Expired, Vec::new()),
                (ActionState::Fired, None) => (PlanState::Due, Vec::new()),
                (ActionState::AwaitingApproval, None) => (PlanState::AwaitingApproval, Vec::new()),
                (ActionState::Waiting | ActionState::Approved, None) => {
                    let rule = rules.action(&a.rule_id);
                    let facts = match a.kind {
                        SubjectKind::Certification => learners
                            .get(&(a.course_id.clone(), a.person_id.clone()))
                            .map_or(Facts::NotAssigned, |(_, cycle)| Facts::Learner {
                                cycle: *cycle,
                            }),
                        SubjectKind::Course => {
                            match (
                                infos.get(&a.course_id),
                                enrolled.get(&a.course_id).and_then(|m| m.get(&a.person_id)),
                            ) {
                                (Some(course), Some(e)) => {
                                    let cached = summaries.get(&a.person_id).copied();
                                    let (attendance, passing) = cached.unwrap_or_else(|| {
                                        let percent = rules
                                            .course_types
                                            .get(&course.type_id)
                                            .map_or(100, |t| t.attendance_percent);
                                        let p: &enrolments::Progress =
                                            progress.get(&a.course_id).unwrap_or(&no_progress);
                                        let course_parts = parts
                                            .get(a.course_id.as_str())
                                            .map_or(&[][..], Vec::as_slice);
                                        (
                                            attendance_requirement(
                                                course_parts,
                                                p.marks.get(&a.person_id).unwrap_or(&no_marks),
                                                percent,
                                            ),
                                            passing_obligation(
                                                course_parts,
                                                p.part_results
                                                    .get(&a.person_id)
                                                    .unwrap_or(&no_results),
                                            ),
                                        )
                                    });
                                    if cached.is_none() {
                                        summaries
                                            .insert(a.person_id.clone(), (attendance, passing));
                                    }
                                    Facts::Participant {
                                        course,
                                        result: e.result,
                                        cycle: e.cycle,
                                        completed: e.completed_at.is_some(),
                                        attendance,
                                        passing,
                                        // Looked up only for rules that attach it.
                                        certificate: rule
                                            .is_some_and(verdict::attaches_certificate)
                                            && certificates.contains(&(
                                                a.course_id.clone(),
                                                a.person_id.clone(),
                                                a.cycle,
                                            )),
                                    }
                                }
                                _ => Facts::NotEnrolled,
                            }
                        }
                    };
                    let v = verdict::verdict(
                        rules,
                        rule,
                        &Moment {
                            state: a.state,
                            cycle: a.cycle,
                            due_at: a.due_at,
                            expires_at: a.expires_at,
                            due_shown: due.as_deref(),
                        },
                        &facts,
                        now,
                    );
                    (PlanState::from(v.decision), v.reasons)
                }
            };
            emit(PlanItem {
                id: a.id,
                rule: a.rule_id,
                course: a.course_id,
                person: a.person_id,
                cycle: a.cycle,
                due,
                state,
                reasons,
            });
            count += 1;
        }
        if shown.len() > 100_000 {
            shown.clear();
        }
    }
    tx.rollback().await?;
    Ok(count)
}

impl From<Decision> for PlanState {
    fn from(d: Decision) -> PlanState {
        match d {
            Decision::Fire => PlanState::Due,
            Decision::AwaitApproval => PlanState::AwaitingApproval,
            Decision::Expire => PlanState::Expired,
            Decision::Wait => PlanState::Waiting,
            Decision::Cancel => PlanState::Cancelled,
        }
    }
}
