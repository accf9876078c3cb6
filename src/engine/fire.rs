//! Firing (T2, T4): the waiting action instances whose time has come and whose subject
//! changed since they were last looked at are judged by the one [`super::verdict`]; those
//! it fires become outbox rows holding the exact message to send. The timer pass reads
//! them from an index (`state = 'waiting' AND recheck = 1 AND due_at <= now`), never
//! every enrolment.

use super::verdict::{self, Decision, Facts, Moment};
use crate::config::Office;
use crate::domain::{ActionState, SubjectKind};
use crate::mail;
use crate::render::Templates;
use crate::rules::RuleSet;
use crate::rules::action::{ActionRule, Attachment};
use crate::status::{self, ParticipantStatus};
use crate::store::actions::{self, Instance};
use crate::store::catalogue::CourseInfo;
use crate::store::outbox::{self, Message, NewDelivery};
use crate::store::{Change, Changes, Lock, Store, Tx, certifications, j};
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
    /// `preview --locale`: render as if the recipient's locale were this.
    pub locale: Option<crate::lang::Lang>,
}

impl Env<'_> {
    /// T7: the language of `rule`'s message for a recipient with `locale`: the first of
    /// the recipient's languages (then the office's) that the rule's template is written in.
    pub fn chooser(
        &self,
        rule: &ActionRule,
    ) -> impl Fn(Option<&str>) -> crate::lang::Lang + Sync + '_ {
        let template = rule.email.template.value.clone();
        move |locale| {
            let locale = self.locale.as_ref().map(|l| l.as_str()).or(locale);
            let prefs = crate::lang::preferences(locale, &self.office.locale);
            self.templates
                .language_for(&template, &prefs, &self.office.locale)
        }
    }
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
    /// Instances fired more than a minute after they were due and eligible (T4: due while
    /// no pass ran), and the worst lateness; by rule, for one log line per rule.
    pub late: u64,
    pub max_late: chrono::Duration,
    pub late_by_rule: std::collections::BTreeMap<String, (u64, chrono::Duration)>,
}

/// The message of a fired instance, or why there is none.
pub struct Composed {
    pub recipients: String,
    pub subject: String,
    pub message_id: String,
    pub bytes: Vec<u8>,
    /// The files the message carries (certificate PDF, credential), with their names.
    pub attachments: Vec<(String, Vec<u8>)>,
}

/// The outbox's view of a composed message, or of why there is none.
pub(super) fn outgoing_message(message: &Result<Composed, String>) -> Result<Message<'_>, &str> {
    match message {
        Ok(m) => Ok(Message {
            recipients: &m.recipients,
            subject: &m.subject,
            message_id: &m.message_id,
            bytes: &m.bytes,
        }),
        Err(why) => Err(why.as_str()),
    }
}

/// Fires every instance due at `now` whose conditions hold, expires those past
/// `expires_after`, and leaves the others waiting until their subject changes again.
///
/// Batch by batch, in three steps: read and judge on a snapshot (no write lock, a few
/// statements per course of the batch), compose the messages without a transaction on
/// every core, then record the verdicts and queue the messages in one short write
/// transaction, only for the instances no change reached meanwhile (their version is still
/// the one read); the others are read again.
pub async fn fire(store: &Store, env: &Env<'_>, now: DateTime<Utc>) -> Result<Fired, sqlx::Error> {
    fire_feeding(store, env, now, &|| {}).await
}

/// [`fire`], calling `fed` after each batch that queued messages (delivery running at the
/// same time sends them).
pub async fn fire_feeding(
    store: &Store,
    env: &Env<'_>,
    now: DateTime<Utc>,
    fed: &(dyn Fn() + Sync),
) -> Result<Fired, sqlx::Error> {
    let mut report = Fired::default();
    // Instances held in packs (made together by an import) whose due time has come become
    // rows first, a bounded number of packs per transaction.
    for _ in 0..UNPACK_ROUNDS {
        if !actions::any_packs_due(store, now).await? {
            break;
        }
        let n = crate::store::transact!(store, |tx| actions::unpack_due(tx, now, UNPACK).await)?;
        if n < UNPACK {
            break;
        }
    }
    // Batches of which no verdict could be recorded (each instance changed meanwhile), in a
    // row: bounded, so that a storm of changes cannot hold the pass; the next pass goes on.
    let mut lost = 0;
    // Three batches at once: while one is composed on the cores, the one before it is
    // recorded and the one after it judged (its snapshot leaves out the two in flight,
    // which are not recorded yet). Judging reads nothing that recording writes: a verdict
    // depends on the subject's state, never on another instance's.
    let mut current = judge_next(store, env, now, &[]).await?;
    let mut composed: Option<(Vec<Judged>, Messages)> = None;
    while !current.is_empty() || composed.is_some() {
        let mut busy: Vec<i64> = current.iter().map(|j| j.instance.id).collect();
        if let Some((previous, _)) = &composed {
            busy.extend(previous.iter().map(|j| j.instance.id));
        }
        let jobs: Vec<Option<Job>> = current.iter_mut().map(|j| j.job.take()).collect();
        let judge_more = !current.is_empty() && lost < MAX_LOST;
        let record = async {
            match &composed {
                Some((judged, messages)) => crate::store::transact!(store, |tx| {
                    record_batch(tx, judged, messages, now).await
                })
                .map(Some),
                None => Ok(None),
            }
        };
        let judge = async {
            if judge_more {
                judge_next(store, env, now, &busy).await
            } else {
                Ok(Vec::new())
            }
        };
        let (messages, (recorded, next)) = alongside(|| compose_all(env, &current, jobs), async {
            tokio::join!(record, judge)
        })
        .await;
        let messages = messages.unwrap_or_else(|| {
            current
                .iter()
                .map(|_| Some(Err("the message could not be composed (see the log)".into())))
                .collect()
        });
        // Recorded whatever happened to the judging: nothing composed is left behind.
        if let (Some(kept), Some((judged, messages))) = (recorded?, composed.take()) {
            for (j, m) in judged.iter().zip(&messages) {
                if kept.contains(&j.instance.id) {
                    report.count(j, m.as_ref());
                }
            }
            fed();
            crate::service::alive();
            if kept.is_empty() {
                lost += 1;
                if lost == MAX_LOST {
                    tracing::warn!(
                        "the instances due keep changing while they are evaluated; the next pass evaluates them"
                    );
                }
            } else {
                lost = 0;
            }
        }
        if !current.is_empty() {
            composed = Some((std::mem::take(&mut current), messages));
        }
        current = if lost < MAX_LOST { next? } else { Vec::new() };
    }
    // T4: one line per rule, however many messages caught up (each one is at debug level).
    for (rule, (n, worst)) in &report.late_by_rule {
        tracing::info!(
            "{rule}: fired {n} late, up to {}: T4 catch-up (due while no pass ran)",
            crate::service::human(*worst)
        );
    }
    // Instances evaluated at or after their due time with conditions unmet, and no change
    // since: they expire when `expires_after` runs out (their last reasons stay recorded).
    if actions::any_to_expire(store, now).await? {
        report.expired +=
            crate::store::transact!(store, |tx| actions::expire_unchanged(tx, now).await)?;
    }
    Ok(report)
}

/// Packs made rows per transaction, and transactions per pass (the rest wait for the next).
const UNPACK: i64 = 200;
const UNPACK_ROUNDS: u32 = 1000;

/// A batch's messages, in the order of its instances (`None`: not fired).
type Messages = Vec<Option<Result<Composed, String>>>;

/// Batches in a row of which nothing could be recorded before the pass leaves the rest to
/// the next one.
const MAX_LOST: u32 = 10;

/// The next batch due, judged on a snapshot, leaving out the instances in `busy` (judged
/// and not recorded yet); empty when nothing more is due.
async fn judge_next(
    store: &Store,
    env: &Env<'_>,
    now: DateTime<Utc>,
    busy: &[i64],
) -> Result<Vec<Judged>, sqlx::Error> {
    if !actions::any_to_fire(store, now).await? {
        return Ok(Vec::new());
    }
    let mut tx = store.begin_read().await?;
    let judged = judge_batch(&mut tx, env, now, busy).await;
    tx.rollback().await?;
    judged
}

/// Runs the CPU work `work` on its own thread while this thread drives `fut` (database
/// work) to its end; `None` for the work if it panicked. On a runtime that cannot block
/// (a test's current-thread runtime) the two run one after the other.
async fn alongside<R: Send, F: std::future::Future>(
    work: impl FnOnce() -> R + Send,
    fut: F,
) -> (Option<R>, F::Output) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| {
                std::thread::scope(|s| {
                    let worker = s.spawn(work);
                    let out = h.block_on(fut);
                    (worker.join().ok(), out)
                })
            })
        }
        _ => {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).ok();
            (done, fut.await)
        }
    }
}

/// A course and the statuses of the participants a batch is about.
type CourseStatuses = (CourseInfo, HashMap<String, ParticipantStatus>);

/// The facts of a participant as the verdict reads them.
pub fn participant_facts<'a>(course: &'a CourseInfo, p: &ParticipantStatus) -> Facts<'a> {
    Facts::Participant {
        course,
        result: p.result,
        cycle: p.cycle,
        completed: p.completed_at.is_some(),
        attendance: p.attendance,
        passing: p.passing,
        certificate: p.certificate_number.is_some(),
    }
}

/// An instance of a batch as judged on the snapshot: its new state, why, and (fired) what
/// its message is made of.
struct Judged {
    instance: Instance,
    state: ActionState,
    reason: Option<String>,
    /// How late it fires (T4), when more than a minute.
    late: Option<chrono::Duration>,
    job: Option<Job>,
}

/// What a fired instance's message is made of.
enum Job {
    /// The template context, and the course type (for the certificate's layout; empty for
    /// a certification learner).
    Context {
        type_id: String,
        ctx: serde_json::Value,
    },
    /// Composed while reading (an office digest), or why there is no message.
    Ready(Result<Composed, String>),
}

impl Fired {
    /// Counts a recorded verdict (with its message, when it fired).
    fn count(&mut self, j: &Judged, message: Option<&Result<Composed, String>>) {
        let a = &j.instance;
        match j.state {
            ActionState::Fired => match message {
                Some(Ok(_)) => self.queued += 1,
                Some(Err(why)) => {
                    self.failed += 1;
                    tracing::warn!(rule = %a.rule_id, subject = %a.course_id, person = %a.person_id, "not sent: {why}");
                }
                None => {}
            },
            ActionState::AwaitingApproval => self.awaiting_approval += 1,
            ActionState::Expired => self.expired += 1,
            _ => {}
        }
        if let (Some(late), Some(due)) = (j.late, a.due_at) {
            self.late += 1;
            self.max_late = self.max_late.max(late);
            let per_rule = self.late_by_rule.entry(a.rule_id.clone()).or_default();
            per_rule.0 += 1;
            per_rule.1 = per_rule.1.max(late);
            tracing::debug!(
                rule = %a.rule_id, course = %a.course_id, person = %a.person_id,
                due = %due, "fired {} late (T4 catch-up)", crate::service::human(late)
            );
        }
    }
}

/// Step 1: the next batch of instances to evaluate, judged on the snapshot `tx` reads, with
/// the template contexts of those that fire. Per course of the batch a few statements (the
/// course, its participants' statuses, their people, enrolments and certificates), not
/// some per instance.
async fn judge_batch(
    tx: &mut Tx,
    env: &Env<'_>,
    now: DateTime<Utc>,
    busy: &[i64],
) -> Result<Vec<Judged>, sqlx::Error> {
    let batch = actions::candidates(tx, now, BATCH, busy).await?;
    // The batch's participants are read once per course, only those the batch is about.
    let mut people: HashMap<String, Vec<String>> = HashMap::new();
    for a in batch.iter().filter(|a| a.kind == SubjectKind::Course) {
        people
            .entry(a.course_id.clone())
            .or_default()
            .push(a.person_id.clone());
    }
    let (statuses, enrolled) =
        status::participants_and_enrolments(tx, env.rules, env.tz, now, &people).await?;
    let courses: HashMap<String, CourseStatuses> = statuses
        .into_iter()
        .map(|(id, (course, statuses))| {
            let by_person = statuses
                .into_iter()
                .map(|p| (p.person_id.clone(), p))
                .collect::<HashMap<_, _>>();
            (id, (course, by_person))
        })
        .collect();
    let subject = |a: &Instance| {
        courses
            .get(&a.course_id)
            .and_then(|(course, people)| people.get(&a.person_id).map(|p| (course, p)))
    };
    let mut judged = Vec::with_capacity(batch.len());
    // Participants that fire, by course: their contexts are read together below.
    let mut firing: HashMap<&str, Vec<String>> = HashMap::new();
    for a in &batch {
        let rule = env.rules.action(&a.rule_id);
        let m = Moment {
            state: a.state,
            cycle: a.cycle,
            due_at: a.due_at,
            expires_at: a.expires_at,
            due_shown: None,
        };
        let verdict = match a.kind {
            SubjectKind::Certification => {
                let learner =
                    certifications::load(tx, &a.course_id, &a.person_id, Lock::None).await?;
                let facts =
                    learner.map_or(Facts::NotAssigned, |l| Facts::Learner { cycle: l.cycle });
                verdict::verdict(env.rules, rule, &m, &facts, now)
            }
            SubjectKind::Office => verdict::verdict(env.rules, rule, &m, &Facts::Office, now),
            SubjectKind::Course => {
                let facts = subject(a).map_or(Facts::NotEnrolled, |(c, p)| participant_facts(c, p));
                verdict::verdict(env.rules, rule, &m, &facts, now)
            }
        };
        let (state, mut late, mut job) = match verdict.decision {
            Decision::Fire => {
                let Some(rule) = rule else { continue };
                // T4: late only when it was due, and eligible, while no pass ran: a
                // participant who completes late is served at once, not late.
                let late = a.due_at.and_then(|due| {
                    let eligible = a.rechecked_at.map_or(due, |r| r.max(due));
                    Some(now - eligible).filter(|l| *l > chrono::Duration::minutes(1))
                });
                let job = match a.kind {
                    // Read together, per course, below.
                    SubjectKind::Course => {
                        if subject(a).is_some() {
                            firing
                                .entry(&a.course_id)
                                .or_default()
                                .push(a.person_id.clone());
                            None
                        } else {
                            Some(Job::Ready(Err(format!(
                                "{} is no longer a participant",
                                a.person_id
                            ))))
                        }
                    }
                    SubjectKind::Certification => {
                        let choose = env.chooser(rule);
                        Some(
                            match status::learner_context(
                                tx,
                                env.rules,
                                env.office,
                                env.tz,
                                &a.course_id,
                                &a.person_id,
                                &choose,
                            )
                            .await?
                            {
                                Some((ctx, _, _)) => Job::Context {
                                    type_id: String::new(),
                                    ctx,
                                },
                                None => Job::Ready(Err(format!(
                                    "{} is no longer a learner of {}",
                                    a.person_id, a.course_id
                                ))),
                            },
                        )
                    }
                    // A digest fired again by `retry`: its period as it was.
                    SubjectKind::Office => Some(Job::Ready(
                        super::schedule::compose_digest(
                            tx,
                            env,
                            rule,
                            a.due_at.unwrap_or(now),
                            Some(a.event_at),
                        )
                        .await?
                        .unwrap_or_else(|| Err("the digest has nothing to report any more".into())),
                    )),
                };
                (ActionState::Fired, late, job)
            }
            Decision::AwaitApproval => (ActionState::AwaitingApproval, None, None),
            Decision::Expire => (ActionState::Expired, None, None),
            Decision::Cancel => (ActionState::Cancelled, None, None),
            Decision::Wait => (ActionState::Waiting, None, None),
        };
        // Why it waits, expired or was cancelled, for `plan` later.
        let reason = match verdict.decision {
            Decision::Wait | Decision::Expire | Decision::Cancel => {
                super::conditions::stored(&verdict.reasons)
            }
            Decision::Fire | Decision::AwaitApproval => None,
        };
        if state != ActionState::Fired {
            (late, job) = (None, None);
        }
        judged.push(Judged {
            instance: a.clone(),
            state,
            reason,
            late,
            job,
        });
    }
    // The contexts of the participants that fire: a few statements for the batch.
    let fired_courses: Vec<String> = firing.keys().map(|c| (*c).to_string()).collect();
    let mut fired_people: Vec<String> = firing.values().flatten().cloned().collect();
    fired_people.sort_unstable();
    fired_people.dedup();
    let rows = if fired_courses.is_empty() {
        None
    } else {
        Some(
            status::ContextRows::with_enrolments(tx, enrolled, &fired_courses, &fired_people)
                .await?,
        )
    };
    for j in judged.iter_mut().filter(|j| {
        j.state == ActionState::Fired && j.job.is_none() && j.instance.kind == SubjectKind::Course
    }) {
        let a = &j.instance;
        let (Some(rule), Some((course, p)), Some(rows)) =
            (env.rules.action(&a.rule_id), subject(a), rows.as_ref())
        else {
            continue;
        };
        let choose = env.chooser(rule);
        j.job = Some(
            match rows.participant_context(env.rules, env.office, env.tz, course, p, None, &choose)
            {
                Some(ctx) => Job::Context {
                    type_id: course.type_id.clone(),
                    ctx,
                },
                None => Job::Ready(Err(format!("{} is no longer a participant", a.person_id))),
            },
        );
    }
    // Never fired without a message or a reason.
    for j in judged.iter_mut() {
        if j.state == ActionState::Fired && j.job.is_none() {
            j.job = Some(Job::Ready(Err(format!(
                "{} is no longer a participant",
                j.instance.person_id
            ))));
        }
    }
    Ok(judged)
}

/// Step 2: the messages of the fired instances (`None` for the others), composed on every
/// core: rendering, PDFs and credentials are CPU work, done without a transaction.
fn compose_all(
    env: &Env<'_>,
    judged: &[Judged],
    jobs: Vec<Option<Job>>,
) -> Vec<Option<Result<Composed, String>>> {
    let compose = |a: &Instance, job: Option<Job>| -> Option<Result<Composed, String>> {
        Some(match job? {
            Job::Ready(m) => m,
            Job::Context { type_id, ctx } => match env.rules.action(&a.rule_id) {
                // Never a panic for the pass, whatever the rule and the values.
                Some(rule) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    compose_message(
                        env,
                        rule,
                        &a.course_id,
                        &a.person_id,
                        &type_id,
                        a.cycle,
                        a.instant,
                        &ctx,
                    )
                }))
                .unwrap_or_else(|_| Err("the message could not be composed (see the log)".into())),
                None => Err(format!("rule {} is no longer in force", a.rule_id)),
            },
        })
    };
    let mut work: Vec<(&Instance, Option<Job>)> =
        judged.iter().map(|j| &j.instance).zip(jobs).collect();
    let composing = work
        .iter()
        .filter(|(_, j)| matches!(j, Some(Job::Context { .. })))
        .count();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if threads < 2 || composing < 32 {
        return work.into_iter().map(|(a, j)| compose(a, j)).collect();
    }
    let per = work.len().div_ceil(threads.min(8));
    let mut chunks = Vec::new();
    while !work.is_empty() {
        let rest = work.split_off(per.min(work.len()));
        chunks.push(std::mem::replace(&mut work, rest));
    }
    let compose = &compose;
    let run = move || {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let n = chunk.len();
                    let h = s.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|(a, j)| compose(a, j))
                            .collect::<Vec<_>>()
                    });
                    (n, h)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join().unwrap_or_else(|_| {
                        (0..n)
                            .map(|_| {
                                Some(Err("the message could not be composed (see the log)".into()))
                            })
                            .collect()
                    })
                })
                .collect()
        })
    };
    // A worker of a multi-threaded runtime may block here (its other tasks move on);
    // elsewhere (a test's runtime) the work simply runs.
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run)
        }
        _ => run(),
    }
}

/// Step 3: the verdicts of the instances still at the version read, and their messages
/// queued, in one write transaction; returns the instances recorded.
async fn record_batch(
    tx: &mut Tx,
    judged: &[Judged],
    messages: &[Option<Result<Composed, String>>],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<i64>, sqlx::Error> {
    let verdicts: Vec<actions::Verdict> = judged
        .iter()
        .map(|j| actions::Verdict {
            id: j.instance.id,
            version: j.instance.version,
            state: j.state,
            reason: j.reason.clone(),
        })
        .collect();
    let kept = actions::set_states_if_unchanged(tx, &verdicts, now).await?;
    let rows: Vec<NewDelivery<'_>> = judged
        .iter()
        .zip(messages)
        .filter(|(j, _)| kept.contains(&j.instance.id))
        .filter_map(|(j, m)| {
            let a = &j.instance;
            Some(NewDelivery {
                action: a.id,
                rule: &a.rule_id,
                kind: a.kind,
                course: &a.course_id,
                person: &a.person_id,
                cycle: a.cycle,
                instant: a.instant,
                due_at: a.due_at,
                message: outgoing_message(m.as_ref()?),
            })
        })
        .collect();
    outbox::insert_many(tx, &rows, now).await?;
    Ok(kept)
}

/// Renders the rule's message for this participant, exactly as it will be sent (`instant`:
/// a schedule rule's, else 0).
pub(super) async fn compose(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    course: &CourseInfo,
    p: &ParticipantStatus,
    cycle: i64,
    instant: i64,
) -> Result<Result<Composed, String>, sqlx::Error> {
    let choose = env.chooser(rule);
    let Some(ctx) =
        status::participant_context(tx, env.rules, env.office, env.tz, course, p, None, &choose)
            .await?
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
        instant,
        &ctx,
    ))
}

/// Renders the rule's message for a certification learner.
pub(super) async fn compose_learner(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    certification: &str,
    person: &str,
    cycle: i64,
    instant: i64,
) -> Result<Result<Composed, String>, sqlx::Error> {
    let choose = env.chooser(rule);
    let Some((ctx, _, _)) = status::learner_context(
        tx,
        env.rules,
        env.office,
        env.tz,
        certification,
        person,
        &choose,
    )
    .await?
    else {
        return Ok(Err(format!(
            "{person} is no longer a learner of {certification}"
        )));
    };
    Ok(compose_message(
        env,
        rule,
        certification,
        person,
        "",
        cycle,
        instant,
        &ctx,
    ))
}

/// What `preview` shows: the message the rule would send to a subject now, and the verdict
/// on its instance (or on the conditions, when the rule made no instance yet).
pub struct Preview {
    pub message: Result<Composed, String>,
    pub verdict: verdict::Verdict,
    /// The instance the verdict is on, if the rule made one.
    pub instance: Option<i64>,
}

/// Composes `rule`'s message for a participant (or, for a certification rule, a learner)
/// as the pass would, and judges it with the pass's verdict; writes nothing.
pub async fn preview(
    store: &Store,
    env: &Env<'_>,
    rule: &ActionRule,
    subject: &str,
    person: &str,
    now: DateTime<Utc>,
) -> Result<Option<Preview>, sqlx::Error> {
    let mut tx = store.begin_read().await?;
    let out = preview_in(&mut tx, env, rule, subject, person, now).await;
    tx.rollback().await?;
    out
}

async fn preview_in(
    tx: &mut Tx,
    env: &Env<'_>,
    rule: &ActionRule,
    subject: &str,
    person: &str,
    now: DateTime<Utc>,
) -> Result<Option<Preview>, sqlx::Error> {
    let learner_rule = rule.data_group == crate::rules::action::DataGroup::CertificationLearner;
    let (message, facts_cycle, instance) = if learner_rule {
        let Some(l) = certifications::load(tx, subject, person, Lock::None).await? else {
            return Ok(None);
        };
        let message = compose_learner(tx, env, rule, subject, person, l.cycle, 0).await?;
        let instance = actions::find(tx, &rule.id.value, subject, person, l.cycle).await?;
        (message, l.cycle, instance)
    } else {
        let only = [person.to_string()];
        let Some((course, people)) =
            status::participants(tx, env.rules, env.tz, now, subject, Some(&only), Lock::None)
                .await?
        else {
            return Ok(None);
        };
        let Some(p) = people.into_iter().next() else {
            return Ok(None);
        };
        let message = compose(tx, env, rule, &course, &p, p.cycle, 0).await?;
        let instance = actions::find(tx, &rule.id.value, subject, person, p.cycle).await?;
        let facts = participant_facts(&course, &p);
        let verdict = judge_preview(env, rule, instance.as_ref(), p.cycle, &facts, now);
        return Ok(Some(Preview {
            message,
            verdict,
            instance: instance.map(|i| i.id).filter(|id| *id > 0),
        }));
    };
    let facts = Facts::Learner { cycle: facts_cycle };
    let verdict = judge_preview(env, rule, instance.as_ref(), facts_cycle, &facts, now);
    Ok(Some(Preview {
        message,
        verdict,
        instance: instance.map(|i| i.id).filter(|id| *id > 0),
    }))
}

/// The verdict on the instance, or, without one, on a hypothetical instance due now.
fn judge_preview(
    env: &Env<'_>,
    rule: &ActionRule,
    instance: Option<&Instance>,
    cycle: i64,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
) -> verdict::Verdict {
    let shown = instance
        .and_then(|i| i.due_at)
        .map(|d| crate::domain::time::local_rfc3339(d, env.tz));
    let m = match instance {
        Some(i) => Moment {
            state: i.state,
            cycle: i.cycle,
            due_at: i.due_at,
            expires_at: i.expires_at,
            due_shown: shown.as_deref(),
        },
        None => Moment {
            state: ActionState::Waiting,
            cycle,
            due_at: Some(now),
            expires_at: None,
            due_shown: None,
        },
    };
    verdict::verdict(env.rules, Some(rule), &m, facts, now)
}

/// The message of `rule` for `person` about `subject` (a course, or a certification), with
/// the certificate PDF of course type `type_id` when the rule attaches it.
#[allow(clippy::too_many_arguments)]
pub(super) fn compose_message(
    env: &Env<'_>,
    rule: &ActionRule,
    subject: &str,
    person: &str,
    type_id: &str,
    cycle: i64,
    instant: i64,
    ctx: &serde_json::Value,
) -> Result<Composed, String> {
    let to = mail::recipients(&rule.email.to, ctx)?;
    let rendered = env
        .templates
        .render(rule, ctx, &env.office.locale)
        .map_err(|e| format!("template error: {e}"))?;
    let lang = ctx["recipient"]["language"]
        .as_str()
        .and_then(crate::lang::Lang::parse)
        .unwrap_or_else(|| env.office.locale.clone());
    let message_id = mail::message_id(
        &rule.id.value,
        subject,
        person,
        cycle,
        instant,
        mail::domain_of(&env.office.from),
    );
    let mut attachments = Vec::new();
    if rule.email.attach.contains(&Attachment::CertificatePdf) {
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
        // Never a panic for the pass, whatever the layout and the values make of the SVG.
        let bytes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            env.templates.render_pdf(layout, ctx)
        }))
        .map_err(|_| "certificate PDF: the layout could not be converted".to_string())?
        .map_err(|e| format!("certificate PDF: {e}"))?;
        attachments.push(mail::Attached {
            filename: mail::certificate_file_name(subject, person, &lang),
            content_type: "application/pdf",
            bytes,
        });
    }
    if rule.email.attach.contains(&Attachment::Credential) {
        let signer = env.office.signer.as_deref().ok_or(
            "the rule attaches the credential, but office.signing_key_file is not set (see `registrar keygen`)",
        )?;
        let course_type = env.rules.course_types.get(type_id);
        let facts = crate::credential::facts_of_context(ctx, course_type, &env.office.locale)?;
        let credential = signer.credential(&facts)?;
        attachments.push(mail::Attached {
            filename: mail::credential_file_name(subject, person),
            content_type: "application/json",
            bytes: serde_json::to_vec_pretty(&credential)
                .map_err(|e| format!("credential: {e}"))?,
        });
    }
    let envelope = mail::Envelope {
        from: &env.office.from,
        reply_to: env.office.reply_to.as_deref(),
        date: chrono::Utc::now().with_timezone(&env.tz).fixed_offset(),
    };
    let bytes = mail::build_bytes(&envelope, &to, &rendered, &message_id, &attachments)?;
    Ok(Composed {
        recipients: to
            .iter()
            .map(|m| m.email.to_string())
            .collect::<Vec<_>>()
            .join(","),
        subject: rendered.subject,
        message_id,
        bytes,
        attachments: attachments
            .into_iter()
            .map(|a| (a.filename, a.bytes))
            .collect(),
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

impl crate::store::Retryable for ApproveError {
    fn retryable(&self) -> bool {
        matches!(self, ApproveError::Db(e) if crate::store::retryable(e))
    }
}

/// `registrar approve`: releases a manual instance awaiting approval; the next pass sends it.
pub async fn approve(
    store: &Store,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(String, String, String), ApproveError> {
    crate::store::transact!(store, |tx| {
        let Some(a) = actions::get(tx, id, Lock::Update).await? else {
            return Err(ApproveError::Unknown(id));
        };
        if a.state != ActionState::AwaitingApproval {
            return Err(ApproveError::NotAwaiting(id, a.state.to_string()));
        }
        actions::set_state(tx, id, ActionState::Approved, now).await?;
        let mut log = Changes::new(now, actor, "approve");
        log.push(Change {
                entity: "action",
                course_id: Some(a.course_id.clone()),
                person_id: Some(a.person_id.clone()),
                part_id: None,
                change: "approve",
                before: j(serde_json::json!({ "action": id, "rule": a.rule_id, "state": a.state })),
                after: j(serde_json::json!({ "action": id, "rule": a.rule_id, "state": ActionState::Approved })),
                event: None,
            });
        log.flush(tx).await?;
        Ok((a.rule_id, a.course_id, a.person_id))
    })
}
