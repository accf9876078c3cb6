//! The rule engine (T2): turns recorded events into action instances — one per
//! (rule, subject, cycle), with its due time stored — and evaluates them with the one
//! [`verdict`]. It never sends: a fired action becomes an outbox row, and delivery takes
//! it from there.

pub mod conditions;
pub mod fire;
pub mod schedule;
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
use conditions::Reason;
use std::collections::{BTreeMap, HashMap};
use verdict::{Decision, Facts, Moment};

/// Events handled per transaction: from `MIN` to `MAX`, starting at `START`, adjusted
/// after each so that a transaction holds the write lock about `HOLD` (API writes wait
/// behind it). An import's events made into packs are cheap (thousands per transaction);
/// events that each make rows, or a busy database, bring the batch down.
mod batch {
    pub const MIN: i64 = 250;
    pub const START: i64 = 1000;
    pub const MAX: i64 = 8000;
    pub const HOLD: std::time::Duration = std::time::Duration::from_millis(25);

    /// The next batch's size after one of `size` events that took `took`.
    pub fn next(size: i64, full: bool, took: std::time::Duration) -> i64 {
        if took > HOLD {
            (size / 2).max(MIN)
        } else if full && took < HOLD / 2 {
            (size * 2).min(MAX)
        } else {
            size
        }
    }
}

/// Turns every unprocessed event into action instances and cancellations. Returns the
/// number of events processed.
pub async fn ingest(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    let mut size = batch::START;
    loop {
        // Usually nothing is new: find out without taking the write lock.
        if !history::any_unprocessed(store).await? {
            return Ok(total);
        }
        let started = std::time::Instant::now();
        let done = crate::store::transact!(store, |tx| {
            history::take_ingest_turn(tx).await?;
            let events = history::unprocessed(tx, size).await?;
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
        size = batch::next(size, done == size as u64, started.elapsed());
    }
}

/// The meaning of conditions, part of every rule's digest: raised when the engine's
/// reading of conditions changes, so that every waiting instance is evaluated again.
const VERDICT_VERSION: u32 = 2;

/// A digest of each rule as it bears on its instances (with the course types, whose
/// attendance percentages the conditions use).
pub fn rule_digests(rules: &RuleSet) -> Vec<(String, String)> {
    let types = format!("{VERDICT_VERSION}{:?}", rules.course_types);
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
pub async fn sync_rules(
    store: &Store,
    rules: &RuleSet,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let digests = rule_digests(rules);
    crate::store::transact!(store, |tx| actions::sync_rule_versions(tx, &digests, now)
        .await)
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
    // The batch's courses, read together (a course reads the same in the whole
    // transaction); certification events name a certification, not a course.
    let mut ids: Vec<String> = events
        .iter()
        .filter(|e| e.kind != EventKind::CertificationStatusChanged.as_str())
        .map(|e| e.course_id.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut found = catalogue::courses(tx, &ids).await?;
    let mut courses: HashMap<String, Option<CourseInfo>> = ids
        .into_iter()
        .map(|id| {
            let c = found.remove(&id);
            (id, c)
        })
        .collect();
    let (participants, learners) = touched(events);
    let pairs: Vec<(&str, &str)> = participants
        .iter()
        .flat_map(|(course, by_time)| {
            by_time
                .values()
                .flatten()
                .map(move |person| (*course, person.as_str()))
        })
        .collect();
    let enrolled = enrolments::standing_of_pairs(tx, &pairs).await?;
    // T2: every change of a subject's state has its waiting instances evaluated again,
    // eligible from the moment of the change: one statement per kind and moment.
    for (kind, subjects) in [
        (SubjectKind::Course, &participants),
        (SubjectKind::Certification, &learners),
    ] {
        let mut by_time: BTreeMap<DateTime<Utc>, Vec<(&str, &str)>> = BTreeMap::new();
        for (subject, times) in subjects {
            for (at, list) in times {
                by_time
                    .entry(*at)
                    .or_default()
                    .extend(list.iter().map(|p| (*subject, p.as_str())));
            }
        }
        for (at, pairs) in &by_time {
            actions::recheck_pairs(tx, kind, pairs, *at).await?;
        }
    }
    // The courses changed in the batch, each looked at once (it reads the same in the
    // whole transaction): waiting instances marked from its first change, due times
    // moved as of its last.
    let mut changed: BTreeMap<&str, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.kind == EventKind::CourseChanged.as_str())
    {
        changed
            .entry(e.course_id.as_str())
            .and_modify(|(_, last)| *last = e.at)
            .or_insert((e.at, e.at));
    }
    courses_changed(tx, rules, tz, now, &changed, &mut courses).await?;
    let mut new: Vec<NewAction> = Vec::new();
    type Times = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let mut times: HashMap<(usize, Option<DateTime<Utc>>), Times, foldhash::fast::RandomState> =
        HashMap::default();
    for e in events {
        let Ok(kind) = e.kind.parse::<EventKind>() else {
            continue;
        };
        if kind == EventKind::CertificationStatusChanged {
            // A certification learner's status moved: the instance's subject is the
            // learner (one per rule and cycle).
            if let (Some(person), Some(cycle)) = (e.person_id.as_deref(), e.cycle) {
                // The event carries the status it moved to (in part_id); the rule's
                // conditions are on that status. None: the learner was removed, and only
                // what waits for it is evaluated again.
                let Some(status) = e.part_id.as_deref().and_then(|s| {
                    s.parse::<crate::domain::certification::LearnerStatus>()
                        .ok()
                }) else {
                    continue;
                };
                let status = Some(status);
                for rule in rules.actions.iter().filter(|r| {
                    r.enabled
                        && r.data_group == DataGroup::CertificationLearner
                        && r.event == RuleEvent::CertificationStatusChanged
                        && r.conditions
                            .certification_status
                            .as_ref()
                            .is_none_or(|wanted| status.is_some_and(|s| wanted.contains(&s)))
                }) {
                    let due = timing::due(
                        e.at,
                        rule.timing().offset,
                        rule.timing().at.map(|t| t.0),
                        tz,
                    );
                    new.push(NewAction {
                        rule: &rule.id.value,
                        kind: SubjectKind::Certification,
                        subject: &e.course_id,
                        person,
                        cycle,
                        event_at: e.at,
                        seen_at: e.at,
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
            continue; // above
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
                &because(
                    "the participant was removed from the course (D7)",
                    "removed from the course",
                    "de deelnemer is uit de cursus verwijderd (D7)",
                ),
            )
            .await?;
            continue;
        };
        if !enrolment::takes_actions(info.status, enrolment.result) {
            // D9: pending actions are cancelled, new ones not created.
            let why = if info.status == CourseStatus::Cancelled {
                because(
                    "the course was cancelled (D9)",
                    "course cancelled",
                    "de cursus is geannuleerd (D9)",
                )
            } else {
                because(
                    &format!("the participant is {} (D9)", enrolment.result),
                    &format!("participant {}", enrolment.result),
                    &format!("de deelnemer is {} (D9)", enrolment.result),
                )
            };
            actions::cancel(
                tx,
                now,
                SubjectKind::Course,
                &e.course_id,
                Some(person),
                None,
                &why,
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
                &because(
                    &format!(
                        "a new cycle ({}) started: the participant was reset or reassigned (D4)",
                        enrolment.cycle
                    ),
                    "a new cycle started",
                    &format!(
                        "een nieuwe cyclus ({}) is begonnen: de deelnemer is gereset of opnieuw toegewezen (D4)",
                        enrolment.cycle
                    ),
                ),
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
                anchor_waiting_on_expiry(
                    tx,
                    rules,
                    tz,
                    now,
                    &e.course_id,
                    person,
                    cycle,
                    until,
                    e.at,
                )
                .await?;
            }
        }
        for (trigger, event_at) in triggers {
            for (r, rule) in rules
                .actions
                .iter()
                .enumerate()
                .filter(|(_, r)| applies(r, trigger, info))
            {
                // An import's participants share their rules' anchors (the course's
                // dates): each due time is worked out once per batch.
                let anchor = anchor_of(rule, info, event_at, expiry);
                let (due, expires) = *times.entry((r, anchor)).or_insert_with(|| {
                    let due = anchor.and_then(|a| {
                        timing::due(a, rule.timing().offset, rule.timing().at.map(|t| t.0), tz)
                    });
                    let expires = due
                        .zip(rule.expires_after)
                        .and_then(|(d, p)| p.add_to(d, tz));
                    (due, expires)
                });
                new.push(NewAction {
                    rule: &rule.id.value,
                    kind: SubjectKind::Course,
                    subject: &e.course_id,
                    person,
                    cycle,
                    event_at,
                    seen_at: e.at,
                    due,
                    expires,
                });
            }
        }
    }
    actions::insert(tx, &new, now).await
}

/// The subjects of a batch of events, by course (or certification) and by the moment of
/// their latest change.
type BySubject<'a> = BTreeMap<&'a str, BTreeMap<DateTime<Utc>, Vec<String>>>;

/// The subjects a batch of events is about: participants by course, learners by
/// certification.
fn touched(events: &[EventRow]) -> (BySubject<'_>, BySubject<'_>) {
    let mut latest: [BTreeMap<(&str, &str), DateTime<Utc>>; 2] = Default::default();
    for e in events {
        if let Some(p) = &e.person_id {
            let side = usize::from(e.kind == EventKind::CertificationStatusChanged.as_str());
            let at = latest[side]
                .entry((e.course_id.as_str(), p.as_str()))
                .or_insert(e.at);
            *at = (*at).max(e.at);
        }
    }
    let [participants, learners] = latest.map(|m| {
        let mut out: BySubject = BTreeMap::new();
        for ((subject, person), at) in m {
            out.entry(subject)
                .or_default()
                .entry(at)
                .or_default()
                .push(person.to_string());
        }
        out
    });
    (participants, learners)
}

/// A cancellation's reason as stored with the instance.
fn because(text: &str, gist: &str, nl: &str) -> String {
    conditions::stored(&[Reason::new(text.to_string(), gist).nl(nl)]).unwrap_or_default()
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
    match rule.timing().anchor {
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
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for (id, rule_id) in actions::waiting_without_due(tx, course, person, cycle).await? {
        let Some(rule) = rules.action(&rule_id) else {
            continue;
        };
        if rule.timing().anchor != Anchor::CertificateExpiry {
            continue;
        }
        let due = timing::due(
            until,
            rule.timing().offset,
            rule.timing().at.map(|t| t.0),
            tz,
        );
        let expires = due
            .zip(rule.expires_after)
            .and_then(|(d, p)| p.add_to(d, tz));
        actions::set_due(tx, actions::Held::Row(id), due, expires, now, at).await?;
    }
    Ok(())
}

/// Courses whose status or dates changed (each with its first and last change of the
/// batch): D9 for a cancelled course, else their waiting instances evaluated again and new
/// due times for those anchored on its start or end.
async fn courses_changed(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    changed: &BTreeMap<&str, (DateTime<Utc>, DateTime<Utc>)>,
    courses: &mut HashMap<String, Option<CourseInfo>>,
) -> Result<(), sqlx::Error> {
    // Marked from their first change: one statement for the batch's courses.
    let mut marked: Vec<(&str, DateTime<Utc>)> = Vec::new();
    for (&course_id, &(first, _)) in changed {
        let Some(info) = course(tx, courses, course_id).await? else {
            continue;
        };
        if info.status == CourseStatus::Cancelled {
            actions::cancel(
                tx,
                now,
                SubjectKind::Course,
                course_id,
                None,
                None,
                &because(
                    "the course was cancelled (D9)",
                    "course cancelled",
                    "de cursus is geannuleerd (D9)",
                ),
            )
            .await?;
            continue;
        }
        marked.push((course_id, first));
    }
    if marked.is_empty() {
        return Ok(());
    }
    actions::recheck_courses(tx, &marked).await?;
    // Due times anchored on the course's dates moved as of its last change.
    let ids: Vec<&str> = marked.iter().map(|(c, _)| *c).collect();
    for (id, course_id, rule_id, event_at) in actions::waiting_of_courses(tx, &ids).await? {
        let (Some(rule), Some(Some(info)), Some((_, last))) = (
            rules.action(&rule_id),
            courses.get(&course_id),
            changed.get(course_id.as_str()),
        ) else {
            continue;
        };
        if !matches!(
            rule.timing().anchor,
            Anchor::CourseStart | Anchor::CourseEnd
        ) {
            continue;
        }
        let due = anchor_of(rule, info, event_at, None)
            .and_then(|a| timing::due(a, rule.timing().offset, rule.timing().at.map(|t| t.0), tz));
        let expires = due
            .zip(rule.expires_after)
            .and_then(|(d, p)| p.add_to(d, tz));
        actions::set_due(tx, id, due, expires, now, *last).await?;
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
    /// The instance's number; `null` while it is held in a pack (instances made together
    /// by an import, numbered when the first of them is needed).
    pub id: Option<i64>,
    pub rule: String,
    pub course: String,
    pub person: String,
    pub cycle: i64,
    /// RFC 3339 in the office time zone; `null` while the anchor is not known.
    pub due: Option<String>,
    pub state: PlanState,
    /// For every state but `due`: why. For `waiting` one sentence per condition that does
    /// not hold (and when it is due); for `expired` the conditions that still failed; for
    /// `cancelled` what cancelled it; for `failed`/`retrying` the server's answer.
    pub reasons: Vec<String>,
    /// A condition cannot become true as the data stands: it will never fire unless the
    /// data (or the rule) changes.
    pub cannot_fire: bool,
    /// The reasons in Dutch where known (the English one otherwise), for the office's
    /// pages; only [`plan_of`] fills it in (empty from `plan`).
    #[serde(skip)]
    pub reasons_nl: Vec<String>,
    /// The reasons in words shared by every instance they hold back, for summaries, and
    /// whether each cannot change.
    #[serde(skip)]
    pub gists: Vec<(String, bool)>,
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
    emit: impl FnMut(PlanItem),
) -> Result<u64, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let count = plan_in(&mut tx, rules, tz, now, rule_filter, None, emit).await;
    tx.rollback().await?;
    count
}

/// [`plan`] of some courses (or certifications) only, and of some people in them when
/// `people` is given: what the office's course and person pages show, decided by the same
/// code as `plan` and the firing pass.
pub async fn plan_of(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    subjects: &[String],
    people: Option<&[String]>,
) -> Result<Vec<PlanItem>, sqlx::Error> {
    let mut out = Vec::new();
    plan_in(tx, rules, tz, now, None, Some((subjects, people)), |item| {
        out.push(item)
    })
    .await?;
    Ok(out)
}

/// [`plan_each`] in the caller's (read) transaction.
async fn plan_in(
    tx: &mut Tx,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    rule_filter: Option<&str>,
    scope: Option<(&[String], Option<&[String]>)>,
    mut emit: impl FnMut(PlanItem),
) -> Result<u64, sqlx::Error> {
    // A scoped plan is the office's pages' (a page of participants): only they show the
    // reasons in Dutch too, so `plan` of millions of instances does not word them twice.
    let dutch = scope.is_some();
    let (subjects, people) = match scope {
        Some((subjects, people)) => (subjects.to_vec(), people),
        None => (actions::subjects_with_actions(tx, rule_filter).await?, None),
    };
    let mut shown: HashMap<DateTime<Utc>, String> = HashMap::new();
    let mut count = 0;
    for batch in subjects.chunks(PLAN_BATCH) {
        let rows = actions::plan_rows(tx, batch, rule_filter, people).await?;
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
        let bulk = Bulk::read(
            tx,
            &courses,
            rules.actions.iter().any(verdict::attaches_certificate),
        )
        .await?;
        let learners = certifications::states(tx, &learner_keys).await?;
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
            let delivery_reason = |gist: &str| {
                vec![Reason::new(
                    a.delivery_error.clone().unwrap_or_default(),
                    gist,
                )]
            };
            let stored = |fallback: &str, gist: &str, nl: &str| {
                a.reason.as_deref().map_or_else(
                    || vec![Reason::new(fallback.to_string(), gist).nl(nl)],
                    conditions::from_stored,
                )
            };
            let (state, reasons) = match (a.state, a.delivery) {
                (_, Some(DeliveryState::Retrying)) => (
                    PlanState::Retrying,
                    delivery_reason("the delivery is retrying"),
                ),
                (_, Some(DeliveryState::Failed)) => {
                    (PlanState::Failed, delivery_reason("the delivery failed"))
                }
                (_, Some(_)) => (PlanState::Due, Vec::new()),
                (ActionState::Cancelled, None) => (
                    PlanState::Cancelled,
                    stored(
                        "cancelled (recorded before reasons were kept)",
                        "cancelled",
                        "geannuleerd (vastgelegd voordat redenen werden bewaard)",
                    ),
                ),
                (ActionState::Expired, None) => (
                    PlanState::Expired,
                    stored(
                        "its expires_after ran out before the conditions held",
                        "expired",
                        "de geldigheid (expires_after) liep af voordat aan de voorwaarden was voldaan",
                    ),
                ),
                (ActionState::Fired, None) => (PlanState::Due, Vec::new()),
                (ActionState::AwaitingApproval, None) => (
                    PlanState::AwaitingApproval,
                    vec![
                        Reason::new(
                            format!(
                                "waits for `registrar approve {}` (execution: manual)",
                                a.id.unwrap_or_default()
                            ),
                            "waits for approval",
                        )
                        .nl("wacht op goedkeuring (execution: manual)"),
                    ],
                ),
                (ActionState::Waiting | ActionState::Approved, None) => {
                    let rule = rules.action(&a.rule_id);
                    let facts = match a.kind {
                        SubjectKind::Office => Facts::Office,
                        SubjectKind::Certification => learners
                            .get(&(a.course_id.clone(), a.person_id.clone()))
                            .map_or(Facts::NotAssigned, |(_, cycle)| Facts::Learner {
                                cycle: *cycle,
                            }),
                        SubjectKind::Course => match bulk.participant(&a.course_id, &a.person_id) {
                            Some((course, e)) => {
                                let cached = summaries.get(&a.person_id).copied();
                                let summary = cached
                                    .unwrap_or_else(|| bulk.summaries(rules, course, &a.person_id));
                                if cached.is_none() {
                                    summaries.insert(a.person_id.clone(), summary);
                                }
                                // The certificate is looked up only for rules that attach it.
                                let certificate = rule
                                    .is_some_and(verdict::attaches_certificate)
                                    .then_some(a.cycle);
                                bulk.facts(course, e, summary, certificate)
                            }
                            None => Facts::NotEnrolled,
                        },
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
                cannot_fire: state == PlanState::Waiting && reasons.iter().any(|r| r.settled),
                reasons: reasons.iter().map(Reason::shown).collect(),
                reasons_nl: if dutch {
                    reasons.iter().map(|r| r.shown_in(true)).collect()
                } else {
                    Vec::new()
                },
                gists: reasons.into_iter().map(|r| (r.gist, r.settled)).collect(),
            });
            count += 1;
        }
        if shown.len() > 100_000 {
            shown.clear();
        }
    }
    Ok(count)
}

/// The participants of a batch of courses with what their facts need (enrolments, marks,
/// part results, certificates), read in bulk: a few queries per batch, whatever its size.
/// `plan` and schedule instants judge many participants this way.
pub(crate) struct Bulk {
    infos: HashMap<String, CourseInfo>,
    enrolled: HashMap<String, HashMap<String, enrolments::Enrolment>>,
    progress: HashMap<String, enrolments::Progress>,
    certificates: std::collections::HashSet<(String, String, i64)>,
    parts: HashMap<String, Vec<crate::domain::progress::PartRule>>,
}

impl Bulk {
    /// Reads `courses` (with the certificates in force when `certificates` is set).
    pub(crate) async fn read(
        tx: &mut Tx,
        courses: &[String],
        certificates: bool,
    ) -> Result<Bulk, sqlx::Error> {
        if courses.is_empty() {
            return Ok(Bulk {
                infos: HashMap::new(),
                enrolled: HashMap::new(),
                progress: HashMap::new(),
                certificates: Default::default(),
                parts: HashMap::new(),
            });
        }
        let infos = catalogue::courses(tx, courses).await?;
        let parts = infos
            .iter()
            .map(|(id, c)| (id.clone(), c.part_rules()))
            .collect();
        Ok(Bulk {
            enrolled: enrolments::of_courses(tx, courses).await?,
            progress: enrolments::progress_of_courses(tx, courses).await?,
            certificates: if certificates {
                certificates::in_force_of_courses(tx, courses).await?
            } else {
                Default::default()
            },
            infos,
            parts,
        })
    }

    /// The course and the enrolment of a participant, if both exist.
    pub(crate) fn participant(
        &self,
        course: &str,
        person: &str,
    ) -> Option<(&CourseInfo, &enrolments::Enrolment)> {
        Some((
            self.infos.get(course)?,
            self.enrolled.get(course)?.get(person)?,
        ))
    }

    /// The participants of `course`, in no particular order.
    pub(crate) fn participants_of(&self, course: &str) -> Vec<&enrolments::Enrolment> {
        self.enrolled
            .get(course)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    /// D1 and D2 of a participant.
    pub(crate) fn summaries(
        &self,
        rules: &RuleSet,
        course: &CourseInfo,
        person: &str,
    ) -> (AttendanceSummary, PassingSummary) {
        let percent = rules
            .course_types
            .get(&course.type_id)
            .map_or(100, |t| t.attendance_percent);
        let no_marks = HashMap::new();
        let no_results = HashMap::new();
        let progress = self.progress.get(&course.id);
        let parts = self.parts.get(&course.id).map_or(&[][..], Vec::as_slice);
        (
            attendance_requirement(
                parts,
                progress
                    .and_then(|p| p.marks.get(person))
                    .unwrap_or(&no_marks),
                percent,
            ),
            passing_obligation(
                parts,
                progress
                    .and_then(|p| p.part_results.get(person))
                    .unwrap_or(&no_results),
            ),
        )
    }

    /// The facts the verdict reads; `certificate_cycle`: the cycle whose certificate
    /// counts, for rules that attach it.
    pub(crate) fn facts<'a>(
        &self,
        course: &'a CourseInfo,
        e: &enrolments::Enrolment,
        (attendance, passing): (AttendanceSummary, PassingSummary),
        certificate_cycle: Option<i64>,
    ) -> Facts<'a> {
        Facts::Participant {
            course,
            result: e.result,
            cycle: e.cycle,
            completed: e.completed_at.is_some(),
            attendance,
            passing,
            certificate: certificate_cycle.is_some_and(|cycle| {
                self.certificates
                    .contains(&(course.id.clone(), e.person_id.clone(), cycle))
            }),
        }
    }
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

/// `plan --summary`: per rule and course, how many instances are in each state (sent ones
/// included) and the most common reasons.
#[derive(Debug, Default)]
pub struct Summary {
    rows: BTreeMap<(String, String), Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    states: BTreeMap<&'static str, u64>,
    /// (state, gist) -> (count, cannot change)
    reasons: HashMap<(&'static str, String), (u64, bool)>,
    cannot_fire: u64,
}

/// One line of the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SummaryRow {
    pub rule: String,
    pub course: String,
    /// Instances by state: `sent`, `due`, `awaiting_approval`, `waiting`, `retrying`,
    /// `failed`, `expired`, `cancelled`.
    pub states: BTreeMap<&'static str, u64>,
    /// By state, the reasons with how many instances each holds back, most common first.
    pub reasons: BTreeMap<&'static str, Vec<ReasonCount>>,
    /// Waiting instances that cannot fire as the data stands.
    pub cannot_fire: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub count: u64,
    pub cannot_change: bool,
}

/// The order states are shown in.
const SUMMARY_STATES: [&str; 8] = [
    "sent",
    "due",
    "awaiting_approval",
    "waiting",
    "retrying",
    "failed",
    "expired",
    "cancelled",
];

impl Summary {
    pub fn add(&mut self, item: &PlanItem) {
        let t = self
            .rows
            .entry((item.rule.clone(), item.course.clone()))
            .or_default();
        let state = item.state.as_str();
        *t.states.entry(state).or_default() += 1;
        t.cannot_fire += u64::from(item.cannot_fire);
        for (gist, settled) in &item.gists {
            let e = t.reasons.entry((state, gist.clone())).or_default();
            e.0 += 1;
            e.1 |= *settled;
        }
    }

    pub fn add_sent(&mut self, rule: &str, course: &str, n: u64) {
        *self
            .rows
            .entry((rule.to_string(), course.to_string()))
            .or_default()
            .states
            .entry("sent")
            .or_default() += n;
    }

    pub fn rows(self) -> Vec<SummaryRow> {
        self.rows
            .into_iter()
            .map(|((rule, course), t)| {
                let mut reasons: BTreeMap<&'static str, Vec<ReasonCount>> = BTreeMap::new();
                for ((state, gist), (count, settled)) in t.reasons {
                    reasons.entry(state).or_default().push(ReasonCount {
                        reason: gist,
                        count,
                        cannot_change: settled,
                    });
                }
                for list in reasons.values_mut() {
                    list.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
                }
                SummaryRow {
                    rule,
                    course,
                    states: t.states,
                    reasons,
                    cannot_fire: t.cannot_fire,
                }
            })
            .collect()
    }
}

impl std::fmt::Display for SummaryRow {
    /// "certificate-on-completion / ehbo-2026-03: 11 sent, 2 waiting: attendance below
    /// 75 % (2), course status completed, the rule needs final (1)"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {}:", self.rule, self.course)?;
        let mut first = true;
        for state in SUMMARY_STATES {
            let Some(n) = self.states.get(state).filter(|n| **n > 0) else {
                continue;
            };
            write!(
                f,
                "{} {n} {}",
                if first { "" } else { ";" },
                state.replace('_', " ")
            )?;
            first = false;
            if let Some(reasons) = self.reasons.get(state) {
                let shown: Vec<String> = reasons
                    .iter()
                    .take(3)
                    .map(|r| {
                        format!(
                            "{}{} ({})",
                            r.reason,
                            if r.cannot_change {
                                ", cannot change as the data stands"
                            } else {
                                ""
                            },
                            r.count
                        )
                    })
                    .collect();
                write!(f, ": {}", shown.join(", "))?;
                if reasons.len() > 3 {
                    write!(f, ", and {} more reason(s)", reasons.len() - 3)?;
                }
            }
        }
        Ok(())
    }
}

/// The summary of the plan at `now`, sent messages included.
pub async fn summary(
    store: &Store,
    rules: &RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
    rule_filter: Option<&str>,
) -> Result<Vec<SummaryRow>, sqlx::Error> {
    let mut sum = Summary::default();
    // One snapshot: an instance is counted once, as due or as sent.
    let mut tx = store.begin_read().await?;
    plan_in(&mut tx, rules, tz, now, rule_filter, None, |item| {
        sum.add(&item)
    })
    .await?;
    let sent = crate::store::outbox::sent_counts(&mut tx, rule_filter).await?;
    tx.rollback().await?;
    for (rule, course, n) in sent {
        sum.add_sent(&rule, &course, u64::try_from(n).unwrap_or(0));
    }
    Ok(sum.rows())
}

#[cfg(test)]
mod batch_tests {
    use super::batch;
    use std::time::Duration;

    #[test]
    fn ingest_batches_halve_when_they_hold_the_write_lock_too_long_and_double_when_quick() {
        let ms = Duration::from_millis;
        assert_eq!(batch::next(1000, true, ms(80)), 500);
        assert_eq!(batch::next(300, true, ms(80)), batch::MIN);
        assert_eq!(batch::next(1000, true, ms(5)), 2000);
        assert_eq!(batch::next(6000, true, ms(5)), batch::MAX);
        // A batch that was not full says nothing about a larger one.
        assert_eq!(batch::next(1000, false, ms(5)), 1000);
        assert_eq!(batch::next(1000, true, ms(20)), 1000);
    }
}
