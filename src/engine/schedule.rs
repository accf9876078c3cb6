//! Schedule-driven rules (T6): at each instant of a rule's cron expression, one message
//! to each subject whose conditions hold then — every participant (or learner) in the
//! rule's window, or the office (a digest of what went wrong and what was issued).
//!
//! Exactly once: an instant is claimed in the rule's `schedules` row, read `FOR UPDATE`,
//! and each subject's instance is created with `ON CONFLICT DO NOTHING` on a key that
//! holds the instant, in the transaction that queues its message. After downtime only the
//! latest missed instant fires (its lateness logged); an instant before the rule was first
//! seen is not its own.

use super::Bulk;
use super::fire::{self, Env, Fired, participant_facts};
use super::verdict::{self, Decision, Facts, Moment};
use crate::domain::time::local_rfc3339;
use crate::domain::{ActionState, SubjectKind};
use crate::rules::action::{ActionRule, DataGroup, RuleEvent, WindowAnchor};
use crate::rules::schedule::CronSchedule;
use crate::status;
use crate::store::actions::{self, NewScheduled};
use crate::store::catalogue;
use crate::store::outbox::{self, NewDelivery};
use crate::store::{Lock, Store, Tx, certificates, certifications, schedules};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashSet};

/// Courses handled per transaction when an instant reaches participants.
const COURSE_BATCH: usize = 100;
/// A month added or taken away may land up to three days from the naive estimate.
const SLACK: chrono::TimeDelta = chrono::TimeDelta::days(4);

/// The schedule rules in force.
fn scheduled(rules: &crate::rules::RuleSet) -> impl Iterator<Item = (&ActionRule, &CronSchedule)> {
    rules
        .actions
        .iter()
        .filter(|r| r.enabled && r.event == RuleEvent::Schedule)
        .filter_map(|r| r.cron().map(|c| (r, c)))
}

/// Runs every schedule rule whose latest instant has not been served yet.
pub async fn run(store: &Store, env: &Env<'_>, now: DateTime<Utc>) -> Result<Fired, sqlx::Error> {
    let mut report = Fired::default();
    if scheduled(env.rules).next().is_none() {
        return Ok(report);
    }
    // Usually every rule's latest instant is served: find out without the write lock.
    let mut read = store.begin_read().await?;
    let rows = schedules::all(&mut read).await;
    read.rollback().await?;
    let rows = rows?;
    for (rule, cron) in scheduled(env.rules) {
        let served = rows
            .iter()
            .find(|r| r.rule_id == rule.id.value)
            .is_some_and(|r| {
                r.done()
                    && cron
                        .latest_until(now, env.tz)
                        .is_none_or(|l| l < r.first_seen || r.instant.is_some_and(|i| i >= l))
            });
        if served {
            continue;
        }
        let claimed =
            crate::store::transact!(store, |tx| claim(tx, rule, cron, env.tz, now).await)?;
        let Some((instant, since)) = claimed else {
            continue;
        };
        let part = match rule.data_group {
            DataGroup::Office => digest(store, env, rule, instant, since, now).await?,
            DataGroup::CourseParticipant | DataGroup::CertificationLearner => {
                reach(store, env, rule, instant, now).await?
            }
        };
        crate::store::transact!(store, |tx| schedules::finish(tx, &rule.id.value, instant)
            .await)?;
        report.queued += part.queued;
        report.failed += part.failed;
        crate::service::alive();
    }
    Ok(report)
}

/// The instant whose subjects are still to be reached, and the instant before it: a new
/// one is claimed here (the row held `FOR UPDATE` until the claim commits).
async fn claim(
    tx: &mut Tx,
    rule: &ActionRule,
    cron: &CronSchedule,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, Option<DateTime<Utc>>)>, sqlx::Error> {
    let id = rule.id.value.as_str();
    let row = schedules::get_or_create(tx, id, now, Lock::Update).await?;
    let Some(latest) = cron.latest_until(now, tz).filter(|l| *l >= row.first_seen) else {
        return Ok(None);
    };
    match row.instant {
        // Claimed already: unfinished when a pass stopped half-way (or another process
        // is at it); the instances it made stay, the others are made now.
        Some(i) if i == latest => return Ok((!row.done()).then_some((i, row.since))),
        // The clock went back (`--now`): nothing new.
        Some(i) if i > latest => return Ok(None),
        _ => {}
    }
    // A digest covers what happened since the instant before (or, the first time, since
    // the rule was first seen, if that is earlier).
    let since = row.instant.or_else(|| {
        Some(
            cron.previous(latest, tz)
                .map_or(row.first_seen, |p| p.min(row.first_seen)),
        )
    });
    // T6 catch-up: only the latest missed instant fires; the others are counted.
    let mut skipped = 0u32;
    let mut at = row
        .instant
        .unwrap_or(row.first_seen - chrono::TimeDelta::seconds(1));
    while let Some(next) = cron.next_after(at, tz).filter(|n| *n < latest) {
        skipped += 1;
        at = next;
        if skipped >= 10_000 {
            break;
        }
    }
    let late = now - latest;
    if late > chrono::TimeDelta::minutes(1) || skipped > 0 {
        tracing::info!(
            "{id}: the instant {} is reached {} late{} (T6 catch-up: only the latest missed instant fires)",
            local_rfc3339(latest, tz),
            crate::service::human(late),
            if skipped > 0 {
                format!("; {skipped} earlier instant(s) passed while no pass ran")
            } else {
                String::new()
            }
        );
    }
    schedules::claim(tx, id, latest, since).await?;
    Ok(Some((latest, since)))
}

/// The office digest of `(since, until]`, queued once; nothing when every list is empty.
async fn digest(
    store: &Store,
    env: &Env<'_>,
    rule: &ActionRule,
    until: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Fired, sqlx::Error> {
    let id = rule.id.value.as_str();
    let outcome = crate::store::transact!(store, |tx| {
        let Some(message) = compose_digest(tx, env, rule, until, since).await? else {
            return Ok::<_, sqlx::Error>(None);
        };
        let new = NewScheduled {
            rule: id,
            kind: SubjectKind::Office,
            subject: "",
            person: "",
            cycle: 0,
            instant: until,
            event_at: since.unwrap_or(until),
        };
        let mut part = Fired::default();
        // None: queued by another process already.
        if let Some(action) = actions::insert_scheduled(tx, &new, now).await? {
            queue(tx, &new, action, &message, now, &mut part).await?;
        }
        Ok(Some(part))
    })?;
    let Some(report) = outcome else {
        tracing::info!(
            "{id}: nothing to report for {}: the digest is not sent (T6)",
            local_rfc3339(until, env.tz)
        );
        return Ok(Fired::default());
    };
    Ok(report)
}

/// Writes the outbox row of the scheduled instance `new` (created as `action`) and counts
/// it as queued, or as failed when there is no message.
async fn queue(
    tx: &mut Tx,
    new: &NewScheduled<'_>,
    action: i64,
    message: &Result<fire::Composed, String>,
    now: DateTime<Utc>,
    report: &mut Fired,
) -> Result<(), sqlx::Error> {
    match message {
        Ok(_) => report.queued += 1,
        Err(why) => {
            report.failed += 1;
            tracing::warn!(rule = %new.rule, subject = %new.subject, person = %new.person, "not sent: {why}");
        }
    }
    outbox::insert(
        tx,
        &NewDelivery {
            action,
            rule: new.rule,
            kind: new.kind,
            course: new.subject,
            person: new.person,
            cycle: new.cycle,
            instant: new.instant.timestamp(),
            due_at: Some(new.instant),
            message: fire::outgoing_message(message),
        },
        now,
    )
    .await
}

/// The context of an office digest of `(since, until]` (`None` when every list is empty).
pub async fn digest_context(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    until: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    use serde_json::json;
    let failed = outbox::failed_between(tx, since, until).await?;
    let awaiting = actions::awaiting_approval(tx).await?;
    let issued = certificates::issued_between(tx, since, until).await?;
    if failed.is_empty() && awaiting.is_empty() && issued.is_empty() {
        return Ok(None);
    }
    let mut people: Vec<String> = failed
        .iter()
        .map(|f| f.person.clone())
        .chain(awaiting.iter().map(|a| a.person.clone()))
        .chain(issued.iter().map(|i| i.person.clone()))
        .filter(|p| !p.is_empty())
        .collect();
    people.sort();
    people.dedup();
    let names = catalogue::names(tx, &people).await?;
    let name = |p: &str| names.get(p).map(|(n, _)| n.clone()).unwrap_or_default();
    let lang = env.chooser(rule)(None);
    let tz = env.tz;
    let day = |t: DateTime<Utc>| crate::lang::long_date(t, tz, &lang);
    let since_or_until = since.unwrap_or(until);
    let failed: Vec<_> = failed
        .iter()
        .map(|f| {
            // The address it was for: the delivery's, else the person's (if any).
            let address = if f.recipients.is_empty() {
                names
                    .get(&f.person)
                    .and_then(|(_, e)| e.clone())
                    .unwrap_or_default()
            } else {
                f.recipients.clone()
            };
            json!({"id": f.id, "rule": f.rule, "course": f.course, "person": f.person,
                "name": name(&f.person), "address": address,
                "reason": f.reason.clone().unwrap_or_default(),
                "when": local_rfc3339(f.at, tz), "when_date": day(f.at)})
        })
        .collect();
    let awaiting: Vec<_> = awaiting
        .iter()
        .map(|a| {
            json!({"id": a.id, "rule": a.rule, "course": a.course, "person": a.person,
                "name": name(&a.person)})
        })
        .collect();
    let issued: Vec<_> = issued
        .iter()
        .map(|i| {
            json!({"number": i.number, "person": i.person, "name": name(&i.person),
                "course": i.course, "issued_on": day(i.issued_at), "revoked": i.revoked,
                "issued_at": local_rfc3339(i.issued_at, tz)})
        })
        .collect();
    let office = env.office;
    Ok(Some(json!({
        "recipient": {"language": lang},
        "office": {"name": office.name, "from": office.from, "verify_base_url": office.verify_base_url,
            "locale": office.locale},
        "digest": {
            "since": local_rfc3339(since_or_until, tz), "until": local_rfc3339(until, tz),
            "since_date": day(since_or_until), "until_date": day(until),
            "counts": {"failed_deliveries": failed.len(), "awaiting_approval": awaiting.len(),
                "certificates_issued": issued.len()},
            "failed_deliveries": failed, "awaiting_approval": awaiting, "certificates_issued": issued,
        },
    })))
}

/// The digest message of `(since, until]` as it would be sent; `None` when every list is
/// empty (T6: not sent).
pub async fn compose_digest(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    until: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<Option<Result<fire::Composed, String>>, sqlx::Error> {
    let Some(ctx) = digest_context(tx, env, rule, until, since).await? else {
        return Ok(None);
    };
    Ok(Some(fire::compose_message(
        env,
        rule,
        "",
        "",
        "",
        0,
        until.timestamp(),
        &ctx,
    )))
}

/// Who an instant may reach, before the conditions: courses (with the people among their
/// participants, when the window is on certificates), or certification learners.
enum Candidates {
    Courses(Vec<(String, Option<Vec<String>>)>),
    Learners(Vec<certifications::LearnerRow>),
}

/// The subjects whose window holds `instant`, set-wise: one query for the courses (or
/// certificates, or learners) in range, the window checked exactly in memory.
async fn candidates(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    instant: DateTime<Utc>,
) -> Result<Candidates, sqlx::Error> {
    let Some(w) = rule.window else {
        return Ok(Candidates::Courses(Vec::new()));
    };
    let tz = env.tz;
    // anchor + from <= instant <= anchor + to, so the anchor lies about in
    // [instant - to, instant - from].
    let lo = w.to.negated().add_to(instant, tz).map(|t| t - SLACK);
    let hi = w.from.negated().add_to(instant, tz).map(|t| t + SLACK);
    let types = rule.conditions.course_type.as_ref();
    let type_fits = |t: &str| types.is_none_or(|list| list.iter().any(|x| x.value == t));
    match w.anchor {
        WindowAnchor::CourseStart | WindowAnchor::CourseEnd => {
            let courses = catalogue::spans(tx)
                .await?
                .into_iter()
                .filter(|c| type_fits(&c.type_id))
                .filter(|c| {
                    let anchor = if w.anchor == WindowAnchor::CourseStart {
                        c.start_at
                    } else {
                        c.end_at
                    };
                    w.contains(anchor, instant, tz)
                })
                .map(|c| (c.id, None))
                .collect();
            Ok(Candidates::Courses(courses))
        }
        WindowAnchor::CertificateExpiry => {
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Ok(Candidates::Courses(Vec::new()));
            };
            let types: std::collections::HashMap<String, String> = catalogue::spans(tx)
                .await?
                .into_iter()
                .map(|c| (c.id, c.type_id))
                .collect();
            let mut by_course: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (course, person, _, until) in certificates::valid_until_between(tx, lo, hi).await? {
                if w.contains(until, instant, tz)
                    && types.get(&course).is_some_and(|t| type_fits(t))
                {
                    by_course.entry(course).or_default().push(person);
                }
            }
            Ok(Candidates::Courses(
                by_course.into_iter().map(|(c, p)| (c, Some(p))).collect(),
            ))
        }
        WindowAnchor::ValidUntil => {
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Ok(Candidates::Learners(Vec::new()));
            };
            let wanted = rule.conditions.certification_status.as_ref();
            let learners = certifications::valid_until_between(tx, lo, hi)
                .await?
                .into_iter()
                .filter(|l| l.valid_until.is_some_and(|u| w.contains(u, instant, tz)))
                .filter(|l| {
                    wanted.is_none_or(|list| {
                        l.status
                            .parse::<crate::domain::certification::LearnerStatus>()
                            .is_ok_and(|s| list.contains(&s))
                    })
                })
                .collect();
            Ok(Candidates::Learners(learners))
        }
    }
}

/// The participants of a batch of courses (of `only`, when given) that `rule` reaches at
/// `instant`: their facts read in bulk and judged by the one verdict.
async fn reached(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    instant: DateTime<Utc>,
    now: DateTime<Utc>,
    batch: &[(String, Option<Vec<String>>)],
) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
    let ids: Vec<String> = batch.iter().map(|(c, _)| c.clone()).collect();
    let bulk = Bulk::read(tx, &ids, verdict::attaches_certificate(rule)).await?;
    let mut out = Vec::new();
    for (course, only) in batch {
        let only: Option<HashSet<&str>> = only
            .as_ref()
            .map(|o| o.iter().map(String::as_str).collect());
        let mut people = Vec::new();
        for e in bulk.participants_of(course) {
            if only
                .as_ref()
                .is_some_and(|o| !o.contains(e.person_id.as_str()))
            {
                continue;
            }
            let Some((info, e)) = bulk.participant(course, &e.person_id) else {
                continue;
            };
            let summary = bulk.summaries(env.rules, info, &e.person_id);
            let facts = bulk.facts(info, e, summary, Some(e.cycle));
            if fires(env, rule, e.cycle, instant, &facts, now) {
                people.push(e.person_id.clone());
            }
        }
        if !people.is_empty() {
            people.sort();
            out.push((course.clone(), people));
        }
    }
    Ok(out)
}

/// Whether the verdict fires `rule` for a subject at `instant` (as an instance due then).
fn fires(
    env: &Env<'_>,
    rule: &ActionRule,
    cycle: i64,
    instant: DateTime<Utc>,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
) -> bool {
    let m = Moment {
        state: ActionState::Waiting,
        cycle,
        due_at: Some(instant),
        expires_at: None,
        due_shown: None,
    };
    verdict::verdict(env.rules, Some(rule), &m, facts, now).decision == Decision::Fire
}

/// One message to each participant or learner the instant reaches.
async fn reach(
    store: &Store,
    env: &Env<'_>,
    rule: &ActionRule,
    instant: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Fired, sqlx::Error> {
    let mut read = store.begin_read().await?;
    let found = candidates(&mut read, env, rule, instant).await;
    read.rollback().await?;
    let mut report = Fired::default();
    let id = rule.id.value.as_str();
    let secs = instant.timestamp();
    match found? {
        Candidates::Courses(courses) => {
            for batch in courses.chunks(COURSE_BATCH) {
                let part = crate::store::transact!(store, |tx| {
                    let mut part = Fired::default();
                    for (course, people) in reached(tx, env, rule, instant, now, batch).await? {
                        // Those reached, read again with their rows held until the batch
                        // commits, and judged again on what is held.
                        let Some((info, statuses)) = status::participants(
                            tx,
                            env.rules,
                            env.tz,
                            now,
                            &course,
                            Some(&people),
                            Lock::Share,
                        )
                        .await?
                        else {
                            continue;
                        };
                        for p in &statuses {
                            if !fires(
                                env,
                                rule,
                                p.cycle,
                                instant,
                                &participant_facts(&info, p),
                                now,
                            ) {
                                continue;
                            }
                            let new = NewScheduled {
                                rule: id,
                                kind: SubjectKind::Course,
                                subject: &course,
                                person: &p.person_id,
                                cycle: p.cycle,
                                instant,
                                event_at: instant,
                            };
                            let Some(action) = actions::insert_scheduled(tx, &new, now).await?
                            else {
                                continue;
                            };
                            let message =
                                fire::compose(tx, env, rule, &info, p, p.cycle, secs).await?;
                            queue(tx, &new, action, &message, now, &mut part).await?;
                        }
                    }
                    Ok::<_, sqlx::Error>(part)
                })?;
                report.queued += part.queued;
                report.failed += part.failed;
                crate::service::alive();
            }
        }
        Candidates::Learners(learners) => {
            for batch in learners.chunks(COURSE_BATCH * 10) {
                let part = crate::store::transact!(store, |tx| {
                    let mut part = Fired::default();
                    for l in batch {
                        // Still the learner it was, in the same cycle.
                        let Some(now_l) = certifications::load(
                            tx,
                            &l.certification_id,
                            &l.person_id,
                            Lock::Share,
                        )
                        .await?
                        else {
                            continue;
                        };
                        if now_l.cycle != l.cycle || now_l.status.as_str() != l.status {
                            continue;
                        }
                        let facts = Facts::Learner { cycle: l.cycle };
                        if !fires(env, rule, l.cycle, instant, &facts, now) {
                            continue;
                        }
                        let new = NewScheduled {
                            rule: id,
                            kind: SubjectKind::Certification,
                            subject: &l.certification_id,
                            person: &l.person_id,
                            cycle: l.cycle,
                            instant,
                            event_at: instant,
                        };
                        let Some(action) = actions::insert_scheduled(tx, &new, now).await? else {
                            continue;
                        };
                        let message = fire::compose_learner(
                            tx,
                            env,
                            rule,
                            &l.certification_id,
                            &l.person_id,
                            l.cycle,
                            secs,
                        )
                        .await?;
                        queue(tx, &new, action, &message, now, &mut part).await?;
                    }
                    Ok::<_, sqlx::Error>(part)
                })?;
                report.queued += part.queued;
                report.failed += part.failed;
            }
        }
    }
    if report.queued + report.failed > 0 {
        tracing::info!(
            "{id}: the instant {} reached {} subject(s)",
            local_rfc3339(instant, env.tz),
            report.queued + report.failed
        );
    }
    Ok(report)
}

/// The next instant of any schedule rule after `now` (`serve` wakes for it).
pub fn next_instant(
    rules: &crate::rules::RuleSet,
    tz: Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    scheduled(rules)
        .filter_map(|(_, cron)| cron.next_after(now, tz))
        .min()
}

/// A schedule rule as `plan` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Line {
    pub rule: String,
    pub data_group: &'static str,
    pub schedule: String,
    /// The next instant (office time zone).
    pub next: Option<String>,
    /// The latest instant served, and whether every subject of it was reached.
    pub last: Option<String>,
    /// Participant and learner schedules: how many subjects an instant now would reach.
    pub reached_now: Option<u64>,
    /// Office digests: whether one now would be sent (a list is not empty).
    pub digest_now: Option<bool>,
}

/// `plan`: each schedule rule's next instant and whom an instant now would reach.
pub async fn plan(
    store: &Store,
    env: &Env<'_>,
    now: DateTime<Utc>,
    rule_filter: Option<&str>,
) -> Result<Vec<Line>, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let rows = schedules::all(&mut tx).await?;
    let mut out = Vec::new();
    for (rule, cron) in scheduled(env.rules) {
        if rule_filter.is_some_and(|f| f != rule.id.value) {
            continue;
        }
        let row = rows.iter().find(|r| r.rule_id == rule.id.value);
        let mut line = Line {
            rule: rule.id.value.clone(),
            data_group: rule.data_group.as_str(),
            schedule: cron.as_str().to_string(),
            next: cron
                .next_after(now, env.tz)
                .map(|t| local_rfc3339(t, env.tz)),
            last: row
                .and_then(|r| r.instant)
                .map(|t| local_rfc3339(t, env.tz)),
            reached_now: None,
            digest_now: None,
        };
        match rule.data_group {
            DataGroup::Office => {
                let since = row.and_then(|r| r.instant);
                line.digest_now = Some(
                    digest_context(&mut tx, env, rule, now, since)
                        .await?
                        .is_some(),
                );
            }
            DataGroup::CourseParticipant | DataGroup::CertificationLearner => {
                line.reached_now = Some(reached_count(&mut tx, env, rule, now).await?);
            }
        }
        out.push(line);
    }
    tx.rollback().await?;
    Ok(out)
}

/// How many subjects an instant at `now` would reach (read only).
async fn reached_count(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut n = 0u64;
    match candidates(tx, env, rule, now).await? {
        Candidates::Courses(courses) => {
            for batch in courses.chunks(COURSE_BATCH) {
                for (_, people) in reached(tx, env, rule, now, now, batch).await? {
                    n += people.len() as u64;
                }
            }
        }
        Candidates::Learners(learners) => {
            for l in &learners {
                if fires(
                    env,
                    rule,
                    l.cycle,
                    now,
                    &Facts::Learner { cycle: l.cycle },
                    now,
                ) {
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// `preview --rule ID` of an office digest: the digest as it would be sent now (`None`
/// when every list is empty).
pub async fn preview_digest(
    store: &Store,
    env: &Env<'_>,
    rule: &ActionRule,
    now: DateTime<Utc>,
) -> Result<Option<Result<fire::Composed, String>>, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let since = schedules::all(&mut tx)
        .await?
        .into_iter()
        .find(|r| r.rule_id == rule.id.value)
        .and_then(|r| r.instant)
        .or_else(|| rule.cron().and_then(|c| c.previous(now, env.tz)));
    let out = compose_digest(&mut tx, env, rule, now, since).await;
    tx.rollback().await?;
    out
}
