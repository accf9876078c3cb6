//! Firing (T2, T4): the waiting action instances whose time has come and whose subject
//! changed since they were last looked at are evaluated; those whose conditions hold
//! become outbox rows holding the exact message to send. The timer pass reads them from
//! an index (`state = 'waiting' AND recheck = 1 AND due_at <= now`), never every enrolment.

use super::conditions::{self, Subject};
use crate::config::Office;
use crate::mail;
use crate::render::Templates;
use crate::rules::RuleSet;
use crate::rules::action::{ActionRule, Execution};
use crate::status::{self, ParticipantStatus};
use crate::store::read::CourseInfo;
use crate::store::{Store, Tx, on};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;

/// Instances evaluated per transaction.
const BATCH: i64 = 200;

/// What firing needs besides the database: the rules, templates and office in force.
pub struct Env<'a> {
    pub rules: &'a RuleSet,
    pub templates: &'a Templates,
    pub office: &'a Office,
    pub tz: Tz,
}

/// What one firing pass did.
#[derive(Debug, Default, Clone)]
pub struct Fired {
    /// Messages queued for delivery.
    pub queued: u64,
    /// Deliveries that failed before sending (no valid address, a template error).
    pub failed: u64,
    /// Manual rules now waiting for `registrar approve`.
    pub awaiting_approval: u64,
    /// Instances given up on (`expires_after` passed with conditions unmet).
    pub expired: u64,
    /// Instances fired more than a minute after their due time (T4), and the worst lateness.
    pub late: u64,
    pub max_late: chrono::Duration,
}

#[derive(sqlx::FromRow)]
struct Candidate {
    id: i64,
    rule_id: String,
    course_id: String,
    person_id: String,
    cycle: i64,
    state: String,
    due_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

/// A new outbox row.
struct Outgoing {
    action: i64,
    rule: String,
    course: String,
    person: String,
    cycle: i64,
    due_at: Option<DateTime<Utc>>,
    /// The message, or why there is none (the delivery fails with that reason).
    message: Result<Composed, String>,
}

struct Composed {
    recipients: String,
    subject: String,
    message_id: String,
    bytes: Vec<u8>,
}

/// Fires every instance due at `now` whose conditions hold, expires those past
/// `expires_after`, and leaves the others waiting until their subject changes again.
pub async fn fire(store: &Store, env: &Env<'_>, now: DateTime<Utc>) -> Result<Fired, sqlx::Error> {
    let mut report = Fired::default();
    loop {
        if !store
            .any(
                "SELECT EXISTS (SELECT 1 FROM actions WHERE state = 'approved') \
                 OR EXISTS (SELECT 1 FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at <= $1)",
                now,
            )
            .await?
        {
            break;
        }
        let mut tx = store.begin().await?;
        let batch = candidates(&mut tx, now).await?;
        if batch.is_empty() {
            tx.commit().await?;
            break;
        }
        fire_batch(&mut tx, env, now, batch, &mut report).await?;
        tx.commit().await?;
        crate::service::alive();
    }
    // Instances evaluated at or after their due time with conditions unmet, and no change
    // since: they expire when `expires_after` runs out.
    if !store
        .any(
            "SELECT EXISTS (SELECT 1 FROM actions WHERE state = 'waiting' AND recheck = 0 AND expires_at <= $1)",
            now,
        )
        .await?
    {
        return Ok(report);
    }
    let mut tx = store.begin().await?;
    report.expired += on!(&mut tx, c => sqlx::query(
        "UPDATE actions SET state = 'expired', updated_at = $1 \
         WHERE state = 'waiting' AND recheck = 0 AND expires_at <= $1",
    ).bind(now).execute(&mut **c).await?.rows_affected());
    tx.commit().await?;
    Ok(report)
}

async fn candidates(tx: &mut Tx, now: DateTime<Utc>) -> Result<Vec<Candidate>, sqlx::Error> {
    // Approved manual instances first (few), then the due ones oldest first. On PostgreSQL
    // rows another instance is evaluating are skipped, not waited for.
    let lock = match tx {
        Tx::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        Tx::Sqlite(_) => "",
    };
    let cols = "id, rule_id, course_id, person_id, cycle, state, due_at, expires_at";
    let mut rows: Vec<Candidate> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {cols} FROM actions WHERE state = 'approved' ORDER BY id LIMIT $1{lock}"
    ))).bind(BATCH).fetch_all(&mut **c).await)?;
    if (rows.len() as i64) < BATCH {
        let more: Vec<Candidate> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {cols} FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at <= $1 \
             ORDER BY due_at, id LIMIT $2{lock}"
        ))).bind(now).bind(BATCH - rows.len() as i64).fetch_all(&mut **c).await)?;
        rows.extend(more);
    }
    Ok(rows)
}

/// A course and the statuses of the participants a batch is about.
type CourseStatuses = (CourseInfo, HashMap<String, ParticipantStatus>);

enum Verdict {
    Fire,
    AwaitApproval,
    Expire,
    /// Conditions unmet (or the rule gone or disabled): wait for the next change.
    Wait,
    /// The participant is no longer enrolled.
    Cancel,
}

async fn fire_batch(
    tx: &mut Tx,
    env: &Env<'_>,
    now: DateTime<Utc>,
    batch: Vec<Candidate>,
    report: &mut Fired,
) -> Result<(), sqlx::Error> {
    // The batch's participants are read once per course, only those the batch is about.
    let mut courses: HashMap<String, Option<CourseStatuses>> = HashMap::new();
    let mut outgoing = Vec::new();
    let mut verdicts: Vec<(i64, &'static str)> = Vec::new();
    let mut people: HashMap<&str, Vec<String>> = HashMap::new();
    for a in &batch {
        people
            .entry(&a.course_id)
            .or_default()
            .push(a.person_id.clone());
    }
    for a in &batch {
        if let Some(rule) = env
            .rules
            .action(&a.rule_id)
            .filter(|r| r.data_group == crate::rules::action::DataGroup::CertificationLearner)
        {
            let (state, out) = fire_learner(tx, env, rule, a, now, report).await?;
            verdicts.push((a.id, state));
            outgoing.extend(out);
            continue;
        }
        if !courses.contains_key(&a.course_id) {
            let only = people.get(a.course_id.as_str()).map(Vec::as_slice);
            let found =
                status::participants(tx, env.rules, env.tz, now, &a.course_id, only).await?;
            let found = found.map(|(course, people)| {
                let by_person = people
                    .into_iter()
                    .map(|p| (p.person_id.clone(), p))
                    .collect::<HashMap<_, _>>();
                (course, by_person)
            });
            courses.insert(a.course_id.clone(), found);
        }
        let subject = courses
            .get(&a.course_id)
            .and_then(Option::as_ref)
            .and_then(|(course, people)| people.get(&a.person_id).map(|p| (course, p)));
        let rule = env.rules.action(&a.rule_id);
        let verdict = match (rule, subject) {
            (_, None) => Verdict::Cancel,
            (None, _) => Verdict::Wait,
            (Some(rule), Some((course, p))) => judge(rule, a, course, p, now),
        };
        match verdict {
            Verdict::Fire => {
                let (Some(rule), Some((course, p))) = (rule, subject) else {
                    continue;
                };
                if let Some(due) = a.due_at {
                    let late = now - due;
                    if late > chrono::Duration::minutes(1) {
                        report.late += 1;
                        report.max_late = report.max_late.max(late);
                        tracing::warn!(
                            rule = %a.rule_id, course = %a.course_id, person = %a.person_id,
                            due = %due, "fired {} late (T4 catch-up)", crate::service::human(late)
                        );
                    }
                }
                let message = compose(tx, env, rule, course, p, a.cycle).await?;
                match &message {
                    Ok(_) => report.queued += 1,
                    Err(why) => {
                        report.failed += 1;
                        tracing::warn!(rule = %a.rule_id, course = %a.course_id, person = %a.person_id, "not sent: {why}");
                    }
                }
                outgoing.push(Outgoing {
                    action: a.id,
                    rule: a.rule_id.clone(),
                    course: a.course_id.clone(),
                    person: a.person_id.clone(),
                    cycle: a.cycle,
                    due_at: a.due_at,
                    message,
                });
                verdicts.push((a.id, "fired"));
            }
            Verdict::AwaitApproval => {
                report.awaiting_approval += 1;
                verdicts.push((a.id, "awaiting_approval"));
            }
            Verdict::Expire => {
                report.expired += 1;
                verdicts.push((a.id, "expired"));
            }
            Verdict::Cancel => verdicts.push((a.id, "cancelled")),
            Verdict::Wait => verdicts.push((a.id, "waiting")),
        }
    }
    for (id, state) in verdicts {
        on!(tx, c => sqlx::query("UPDATE actions SET state = $1, recheck = 0, updated_at = $2 WHERE id = $3")
            .bind(state).bind(now).bind(id).execute(&mut **c).await.map(|_| ()))?;
    }
    for o in outgoing {
        let (state, recipients, subject, message_id, bytes, error) = match o.message {
            Ok(m) => (
                "queued",
                m.recipients,
                m.subject,
                m.message_id,
                Some(m.bytes),
                None,
            ),
            Err(why) => (
                "failed",
                String::new(),
                String::new(),
                String::new(),
                None,
                Some(why),
            ),
        };
        // A failed row without a message is filled in when `retry` fires the action again.
        on!(tx, c => sqlx::query(
            "INSERT INTO deliveries (action_id, rule_id, course_id, person_id, cycle, state, recipients, subject, \
             message_id, message, attempts, next_attempt_at, last_error, due_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13, $11, $11) \
             ON CONFLICT (rule_id, course_id, person_id, cycle) DO UPDATE SET state = excluded.state, \
             recipients = excluded.recipients, subject = excluded.subject, message_id = excluded.message_id, \
             message = excluded.message, attempts = 0, next_attempt_at = excluded.next_attempt_at, \
             last_error = excluded.last_error, updated_at = excluded.updated_at \
             WHERE deliveries.message IS NULL AND deliveries.state = 'failed'",
        ).bind(o.action).bind(&o.rule).bind(&o.course).bind(&o.person).bind(o.cycle).bind(state)
            .bind(recipients).bind(subject).bind(message_id).bind(bytes).bind(now).bind(error).bind(o.due_at)
            .execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// T2 for one instance whose time may have come.
fn judge(
    rule: &ActionRule,
    a: &Candidate,
    course: &CourseInfo,
    p: &ParticipantStatus,
    now: DateTime<Utc>,
) -> Verdict {
    let subject = Subject {
        course_status: course.status,
        course_type: &course.type_id,
        result: p.result,
        attendance: p.attendance,
        passing: p.passing,
    };
    // A rule that attaches the certificate waits until the cycle's certificate exists.
    let attachable = !needs_certificate(rule) || p.certificate_number.is_some();
    let holds =
        rule.enabled && attachable && conditions::unmet(&rule.conditions, &subject).is_empty();
    let timely = a.due_at.is_some_and(|d| d <= now);
    if a.state == "approved" {
        return if holds { Verdict::Fire } else { Verdict::Wait };
    }
    if holds && timely {
        if rule.execution == Execution::Manual {
            Verdict::AwaitApproval
        } else {
            Verdict::Fire
        }
    } else if a.expires_at.is_some_and(|x| x <= now) {
        Verdict::Expire
    } else {
        Verdict::Wait
    }
}

/// T2 for a certification_learner rule: the subject is the learner of the certification
/// named by the instance's course_id; the condition is the learner's status.
async fn fire_learner(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    a: &Candidate,
    now: DateTime<Utc>,
    report: &mut Fired,
) -> Result<(&'static str, Option<Outgoing>), sqlx::Error> {
    let Some((ctx, status, cycle)) = status::learner_context(
        tx,
        env.rules,
        env.office,
        env.tz,
        &a.course_id,
        &a.person_id,
    )
    .await?
    else {
        return Ok(("cancelled", None));
    };
    // The status condition was checked against the status the event carried, when the
    // instance was made; here the learner must still be in that cycle.
    let _ = status;
    let holds = rule.enabled && cycle == a.cycle;
    let timely = a.state == "approved" || a.due_at.is_some_and(|d| d <= now);
    if !(holds && timely) {
        if a.expires_at.is_some_and(|x| x <= now) {
            report.expired += 1;
            return Ok(("expired", None));
        }
        return Ok(("waiting", None));
    }
    if rule.execution == Execution::Manual && a.state != "approved" {
        report.awaiting_approval += 1;
        return Ok(("awaiting_approval", None));
    }
    let message = compose_message(env, rule, &a.course_id, &a.person_id, "", a.cycle, &ctx);
    match &message {
        Ok(_) => report.queued += 1,
        Err(why) => {
            report.failed += 1;
            tracing::warn!(rule = %a.rule_id, certification = %a.course_id, person = %a.person_id, "not sent: {why}");
        }
    }
    Ok((
        "fired",
        Some(Outgoing {
            action: a.id,
            rule: a.rule_id.clone(),
            course: a.course_id.clone(),
            person: a.person_id.clone(),
            cycle: a.cycle,
            due_at: a.due_at,
            message,
        }),
    ))
}

/// Whether the rule's email carries the certificate PDF.
pub fn needs_certificate(rule: &ActionRule) -> bool {
    rule.email
        .attach
        .contains(&crate::rules::action::Attachment::CertificatePdf)
}

/// Renders the rule's message for this participant, exactly as it will be sent.
async fn compose(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    course: &CourseInfo,
    p: &ParticipantStatus,
    cycle: i64,
) -> Result<Result<Composed, String>, sqlx::Error> {
    let Some(ctx) =
        status::participant_context(tx, env.rules, env.office, env.tz, course, p, None).await?
    else {
        return Ok(Err(format!("{} is no longer a participant", p.person_id)));
    };
    Ok(compose_message(
        env,
        rule,
        &course.id,
        &p.person_id,
        &course.type_id,
        cycle,
        &ctx,
    ))
}

/// The message of `rule` for `person` about `subject` (a course, or a certification), with
/// the certificate PDF of course type `type_id` when the rule attaches it.
fn compose_message(
    env: &Env<'_>,
    rule: &ActionRule,
    subject: &str,
    person: &str,
    type_id: &str,
    cycle: i64,
    ctx: &serde_json::Value,
) -> Result<Composed, String> {
    let to = mail::recipients(&rule.email.to, ctx)?;
    let rendered = env
        .templates
        .render(rule, ctx)
        .map_err(|e| format!("template error: {e}"))?;
    let message_id = mail::message_id(
        &rule.id.value,
        subject,
        person,
        cycle,
        mail::domain_of(&env.office.from),
    );
    let mut attachments = Vec::new();
    if needs_certificate(rule) {
        let layout = env
            .rules
            .course_types
            .get(type_id)
            .and_then(|t| t.certificate.as_ref())
            .map(|c| c.template.as_str())
            .ok_or_else(|| {
                format!(
                    "the rule attaches the certificate, but course type {type_id} has no certificate block"
                )
            })?;
        let bytes = env
            .templates
            .render_pdf(layout, ctx)
            .map_err(|e| format!("certificate PDF: {e}"))?;
        attachments.push(mail::Attached {
            filename: mail::certificate_file_name(subject, person),
            content_type: "application/pdf",
            bytes,
        });
    }
    let message = mail::build(&env.office.from, &to, &rendered, &message_id, &attachments)?;
    Ok(Composed {
        recipients: to
            .iter()
            .map(|m| m.email.to_string())
            .collect::<Vec<_>>()
            .join(","),
        subject: rendered.subject,
        message_id,
        bytes: message.formatted(),
    })
}

/// Why `approve` refused an instance.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("there is no action instance {0} (see `registrar plan`)")]
    Unknown(i64),
    #[error("action {0} is {1}, not awaiting approval (see `registrar plan`)")]
    NotAwaiting(i64, String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// `registrar approve`: releases a manual instance awaiting approval; the next pass sends it.
pub async fn approve(
    store: &Store,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(String, String, String), ApproveError> {
    use crate::store::{Change, Changes, j};
    let mut tx = store.begin().await?;
    let row: Option<(String, String, String, String)> = on!(&mut tx, c => sqlx::query_as(
        "SELECT state, rule_id, course_id, person_id FROM actions WHERE id = $1",
    ).bind(id).fetch_optional(&mut **c).await)?;
    let Some((state, rule, course, person)) = row else {
        return Err(ApproveError::Unknown(id));
    };
    if state != "awaiting_approval" {
        return Err(ApproveError::NotAwaiting(id, state));
    }
    on!(&mut tx, c => sqlx::query("UPDATE actions SET state = 'approved', updated_at = $1 WHERE id = $2")
        .bind(now).bind(id).execute(&mut **c).await.map(|_| ()))?;
    let mut log = Changes::new(now, actor, "approve");
    log.push(Change {
        entity: "action",
        course_id: Some(course.clone()),
        person_id: Some(person.clone()),
        part_id: None,
        change: "approve",
        before: j(serde_json::json!({ "action": id, "rule": rule, "state": state })),
        after: j(serde_json::json!({ "action": id, "rule": rule, "state": "approved" })),
        event: None,
    });
    log.flush(&mut tx).await?;
    tx.commit().await?;
    Ok((rule, course, person))
}
