//! The rule engine (T2): turns recorded events into action instances — one per
//! (rule, subject, cycle), with its due time stored — and evaluates their conditions.
//! It never sends: a fired action becomes `due`, and delivery takes it from there.

pub mod conditions;
pub mod fire;

use crate::domain::progress::{
    AttendanceSummary, PassingSummary, attendance_requirement, passing_obligation,
};
use crate::domain::time::local_rfc3339;
use crate::domain::{CourseStatus, EventKind, enrolment};
use crate::rules::RuleSet;
use crate::rules::action::{ActionRule, DataGroup, Execution, RuleEvent};
use crate::rules::timing::{self, Anchor};
use crate::store::read::{self, CourseInfo, EventRow};
use crate::store::scan;
use crate::store::{Store, Tx, on};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use conditions::Subject;
use sqlx::QueryBuilder;
use std::collections::{BTreeMap, HashMap};

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
        if !store
            .any(
                "SELECT EXISTS (SELECT 1 FROM events WHERE processed_at IS NULL) OR $1 IS NULL",
                now,
            )
            .await?
        {
            return Ok(total);
        }
        let mut tx = store.begin().await?;
        if let Tx::Postgres(c) = &mut tx {
            // Several processes on one database ingest one at a time, in event order.
            sqlx::query("SELECT pg_advisory_xact_lock(7468201)")
                .execute(&mut **c)
                .await?;
        }
        let events = read::unprocessed_events(&mut tx, EVENT_BATCH).await?;
        if events.is_empty() {
            tx.rollback().await?;
            return Ok(total);
        }
        apply_events(&mut tx, rules, tz, now, &events).await?;
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        on!(&mut tx, c => {
            let mut q = QueryBuilder::new("UPDATE events SET processed_at = ");
            q.push_bind(now).push(" WHERE id IN (");
            let mut sep = q.separated(", ");
            for id in &ids {
                sep.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut **c).await?;
        });
        tx.commit().await?;
        total += ids.len() as u64;
    }
}

/// An action instance to create.
struct NewAction<'a> {
    rule: &'a str,
    course: &'a str,
    person: &'a str,
    cycle: i64,
    event_at: DateTime<Utc>,
    due: Option<DateTime<Utc>>,
    expires: Option<DateTime<Utc>>,
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
    let people = touched(events);
    let mut enrolments: HashMap<(String, String), read::Enrolment> = HashMap::new();
    for (course, list) in &people {
        for (person, e) in read::enrolments_of(tx, course, list).await? {
            enrolments.insert((course.to_string(), person), e);
        }
    }
    // T2: every change of a subject's state has its waiting instances evaluated again.
    for (course, list) in &people {
        on!(tx, c => {
            let mut q = QueryBuilder::new("UPDATE actions SET recheck = 1 WHERE state = 'waiting' AND recheck = 0 AND course_id = ");
            q.push_bind(*course).push(" AND person_id IN ");
            crate::store::push_list(&mut q, list);
            q.build().execute(&mut **c).await?;
        });
    }
    let mut new: Vec<NewAction> = Vec::new();
    for e in events {
        let Ok(kind) = e.kind.parse::<EventKind>() else {
            continue;
        };
        if kind == EventKind::CertificationStatusChanged {
            // A certification learner's status moved: the instance's subject is the
            // learner, its course_id the certification (one per rule and cycle).
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
                        course: &e.course_id,
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
        let Some(enrolment) = enrolments.get(&(e.course_id.clone(), person.to_string())) else {
            // Removed (D7): nothing of it stays pending.
            cancel(tx, now, &e.course_id, Some(person), None).await?;
            continue;
        };
        if !enrolment::takes_actions(info.status, enrolment.result) {
            // D9: pending actions are cancelled, new ones not created.
            cancel(tx, now, &e.course_id, Some(person), None).await?;
            continue;
        }
        if kind == EventKind::CycleStarted {
            cancel(tx, now, &e.course_id, Some(person), Some(enrolment.cycle)).await?;
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
            expiry = read::certificate_expiry(tx, &e.course_id, person, cycle).await?;
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
                    course: &e.course_id,
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
    for chunk in new.chunks(1000) {
        on!(tx, c => {
            let mut q = QueryBuilder::new(
                "INSERT INTO actions (rule_id, course_id, person_id, cycle, state, event_at, due_at, expires_at, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(a.rule).push_bind(a.course).push_bind(a.person).push_bind(a.cycle).push_bind("waiting")
                    .push_bind(a.event_at).push_bind(a.due).push_bind(a.expires).push_bind(now).push_bind(now);
            });
            q.push(" ON CONFLICT (rule_id, course_id, person_id, cycle) DO NOTHING");
            q.build().execute(&mut **c).await?;
        });
    }
    Ok(())
}

/// The participants each batch of events is about, by course.
fn touched(events: &[EventRow]) -> BTreeMap<&str, Vec<String>> {
    let mut out: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in events {
        if let Some(p) = &e.person_id {
            out.entry(e.course_id.as_str()).or_default().push(p.clone());
        }
    }
    for list in out.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    out
}

async fn course<'a>(
    tx: &mut Tx,
    cache: &'a mut HashMap<String, Option<CourseInfo>>,
    id: &str,
) -> Result<Option<&'a CourseInfo>, sqlx::Error> {
    if !cache.contains_key(id) {
        let c = read::course(tx, id).await?;
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
    let waiting: Vec<(i64, String)> = on!(tx, c => sqlx::query_as(
        "SELECT id, rule_id FROM actions WHERE course_id = $1 AND person_id = $2 AND cycle = $3 \
         AND state = 'waiting' AND due_at IS NULL",
    ).bind(course).bind(person).bind(cycle).fetch_all(&mut **c).await)?;
    for (id, rule_id) in waiting {
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
        on!(tx, c => sqlx::query("UPDATE actions SET due_at = $1, expires_at = $2, recheck = 1, updated_at = $3 WHERE id = $4")
            .bind(due).bind(expires).bind(now).bind(id).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Cancels waiting actions of a course, or of one participant (optionally only those of
/// cycles before `before_cycle`).
async fn cancel(
    tx: &mut Tx,
    now: DateTime<Utc>,
    course: &str,
    person: Option<&str>,
    before_cycle: Option<i64>,
) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE actions SET state = 'cancelled', updated_at = $1 WHERE course_id = $2 \
         AND ($3 IS NULL OR person_id = $3) AND ($4 IS NULL OR cycle < $4) AND state IN ('waiting', 'awaiting_approval', 'approved')",
    ).bind(now).bind(course).bind(person).bind(before_cycle).execute(&mut **c).await.map(|_| ()))
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
        return cancel(tx, now, course_id, None, None).await;
    }
    on!(tx, c => sqlx::query("UPDATE actions SET recheck = 1 WHERE course_id = $1 AND state = 'waiting'")
        .bind(course_id).execute(&mut **c).await.map(|_| ()))?;
    let waiting: Vec<(i64, String, DateTime<Utc>)> = on!(tx, c => sqlx::query_as(
        "SELECT id, rule_id, event_at FROM actions WHERE course_id = $1 AND state = 'waiting'",
    ).bind(course_id).fetch_all(&mut **c).await)?;
    for (id, rule_id, event_at) in waiting {
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
        on!(tx, c => sqlx::query("UPDATE actions SET due_at = $1, expires_at = $2, updated_at = $3 WHERE id = $4")
            .bind(due).bind(expires).bind(now).bind(id).execute(&mut **c).await.map(|_| ()))?;
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
    let courses = scan::courses_with_actions(&mut tx, rule_filter).await?;
    let mut shown: HashMap<DateTime<Utc>, String> = HashMap::new();
    let mut count = 0;
    for batch in courses.chunks(PLAN_BATCH) {
        let actions = scan::actions(&mut tx, batch, rule_filter).await?;
        // Subjects are only needed for instances still waiting.
        let waiting: Vec<String> = {
            let mut v: Vec<String> = actions
                .iter()
                .filter(|a| a.state == "waiting")
                .map(|a| a.course_id.clone())
                .collect();
            v.dedup();
            v
        };
        let (infos, enrolments, progress) = if waiting.is_empty() {
            Default::default()
        } else {
            (
                scan::courses(&mut tx, &waiting).await?,
                scan::enrolments(&mut tx, &waiting).await?,
                scan::progress(&mut tx, &waiting).await?,
            )
        };
        let certificates =
            if waiting.is_empty() || !rules.actions.iter().any(fire::needs_certificate) {
                Default::default()
            } else {
                scan::certificates(&mut tx, &waiting).await?
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
        for a in actions {
            if a.course_id != summaries_of {
                summaries.clear();
                summaries_of.clone_from(&a.course_id);
            }
            let mut reasons = Vec::new();
            let due = a.due_at.map(|d| {
                shown
                    .entry(d)
                    .or_insert_with(|| local_rfc3339(d, tz))
                    .clone()
            });
            let state = match a.state.as_str() {
                "cancelled" => PlanState::Cancelled,
                "expired" => PlanState::Expired,
                "due" => PlanState::Due,
                "retrying" => PlanState::Retrying,
                "failed" => PlanState::Failed,
                "awaiting_approval" => PlanState::AwaitingApproval,
                _ => {
                    let rule = rules.action(&a.rule_id);
                    let course = infos.get(&a.course_id);
                    let enrolment = enrolments
                        .get(&a.course_id)
                        .and_then(|m| m.get(&a.person_id));
                    match (rule, course, enrolment) {
                        (Some(rule), _, _)
                            if rule.data_group == DataGroup::CertificationLearner =>
                        {
                            let wanted: Vec<&str> = rule
                                .conditions
                                .certification_status
                                .iter()
                                .flatten()
                                .map(|s| s.as_str())
                                .collect();
                            reasons.push(format!(
                                "waits until the learner's certification status is {}",
                                crate::domain::one_of(&wanted)
                            ));
                            PlanState::Waiting
                        }
                        (None, _, _) => {
                            reasons.push(format!(
                                "rule {} is no longer in the rules directory",
                                a.rule_id
                            ));
                            PlanState::Waiting
                        }
                        (Some(_), None, _) | (Some(_), _, None) => {
                            reasons.push("the participant is no longer enrolled".into());
                            PlanState::Waiting
                        }
                        (Some(rule), Some(course), Some(e)) => {
                            let summary = summaries.get(&a.person_id).copied();
                            let (attendance, passing) = summary.unwrap_or_else(|| {
                                let percent = rules
                                    .course_types
                                    .get(&course.type_id)
                                    .map_or(100, |t| t.attendance_percent);
                                let p: &read::Progress =
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
                                        p.part_results.get(&a.person_id).unwrap_or(&no_results),
                                    ),
                                )
                            });
                            if summary.is_none() {
                                summaries.insert(a.person_id.clone(), (attendance, passing));
                            }
                            let subject = Subject {
                                course_status: course.status,
                                course_type: &course.type_id,
                                result: e.result,
                                attendance,
                                passing,
                            };
                            let attachable = !fire::needs_certificate(rule)
                                || certificates.contains(&(
                                    a.course_id.clone(),
                                    a.person_id.clone(),
                                    a.cycle,
                                ));
                            // Said only when nothing else holds the email back: the
                            // certificate follows once the conditions are met.
                            let waits_for_certificate = (!attachable).then(|| {
                                format!(
                                    "waits for the certificate of cycle {} (the email attaches it; issued when {})",
                                    a.cycle,
                                    rules
                                        .course_types
                                        .get(&course.type_id)
                                        .and_then(|t| t.certificate.as_ref())
                                        .map_or("the course type's certificate block says", |c| {
                                            match c.issue_on {
                                                crate::rules::IssueOn::Completion => {
                                                    "the participant completes"
                                                }
                                                crate::rules::IssueOn::Passed => "the result is passed",
                                            }
                                        })
                                )
                            });
                            evaluate(
                                rule,
                                &subject,
                                waits_for_certificate,
                                a.due_at,
                                due.as_deref(),
                                a.expires_at,
                                now,
                                &mut reasons,
                            )
                        }
                    }
                }
            };
            if state != PlanState::Waiting && state != PlanState::Expired {
                reasons.clear();
            }
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

/// T2 for one waiting instance: due when its time has come and its conditions hold;
/// expired when `expires_after` has passed with conditions unmet; else waiting, with why.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    rule: &ActionRule,
    subject: &Subject<'_>,
    waits_for_certificate: Option<String>,
    due_at: Option<DateTime<Utc>>,
    due_shown: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    reasons: &mut Vec<String>,
) -> PlanState {
    let mut unmet = conditions::unmet(&rule.conditions, subject);
    if unmet.is_empty() {
        unmet.extend(waits_for_certificate);
    }
    if !rule.enabled {
        reasons.push("the rule is disabled (enabled: false)".into());
    }
    match due_at {
        None => reasons.push("due time not known yet (waiting for its anchor)".into()),
        Some(d) if d > now => reasons.push(format!("due {}", due_shown.unwrap_or_default())),
        Some(_) => {}
    }
    let timely = due_at.is_some_and(|d| d <= now);
    if timely && unmet.is_empty() && rule.enabled {
        if rule.execution == Execution::Manual {
            PlanState::AwaitingApproval
        } else {
            PlanState::Due
        }
    } else if expires_at.is_some_and(|x| x <= now) && !unmet.is_empty() {
        reasons.extend(unmet);
        PlanState::Expired
    } else {
        reasons.extend(unmet);
        PlanState::Waiting
    }
}
