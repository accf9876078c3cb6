//! The outbox (T3, SPEC §6): claims queued messages, hands them to the transport and
//! records what became of each. A row is marked `sending` before the transport is called
//! and `sent` after, so a process that dies in between leaves rows that another pass puts
//! back in the queue: the message is then sent again, with the same Message-ID. Rows are
//! never deleted.

pub mod transport;

use crate::domain::{ActionState, DeliveryState};
use crate::store::outbox::{self, Claimed};
use crate::store::{Change, Changes, Store, actions, j};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinSet;
pub use transport::{Outcome, Transport};

/// Messages claimed at once per pooled connection: enough to keep every connection busy
/// between claims, and few claims (each a write transaction that the recording of sent
/// messages waits behind; 8 rather than 2 took a tenth off the office benchmark's
/// delivery). Claimed messages not yet handed to the server are not "in flight": a crash
/// leaves them to be sent (once) by the next pass, another process's orphan release
/// after a minute.
const CLAIM_PER_CONNECTION: usize = 8;
/// A process whose heartbeat is older than this is taken for dead.
const STALE_SECONDS: i64 = 60;
/// The first retry waits this long; each next one twice as long, up to `BACKOFF_CAP`.
const BACKOFF_FIRST_SECONDS: i64 = 60;
const BACKOFF_CAP_SECONDS: i64 = 6 * 3600;

/// This process, as recorded in `instances`.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// When this process last looked for messages left by dead ones (unix ms).
    released_at: Arc<std::sync::atomic::AtomicI64>,
}

impl Instance {
    pub fn new() -> Instance {
        let host = crate::service::host();
        let pid = i64::from(std::process::id());
        let started = Utc::now().timestamp_millis();
        // Several daemons may run in one process (tests): each has its own id.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Instance {
            id: format!("{host}:{pid}:{started}:{n}"),
            host,
            pid,
            released_at: Arc::default(),
        }
    }

    /// At most every 10 s (and at the first pass), not at every pass of a busy `serve`.
    fn due_for_release(&self) -> bool {
        let now = Utc::now().timestamp_millis();
        let last = self.released_at.load(Ordering::Relaxed);
        if last == 0 || now - last >= 10_000 {
            self.released_at.store(now, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Records that this process is alive (by the database's clock, whatever `--now` says).
    pub async fn heartbeat(&self, store: &Store) -> Result<(), sqlx::Error> {
        outbox::heartbeat(store, &self.id, &self.host, self.pid).await
    }

    /// Forgets this process (on a clean exit).
    pub async fn leave(&self, store: &Store) -> Result<(), sqlx::Error> {
        outbox::leave(store, &self.id).await
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance::new()
    }
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    /// Messages found claimed by a process that is gone, queued again.
    pub released: u64,
    /// Delivery paused on a configuration problem (see [`Health`]).
    pub paused: bool,
}

/// Whether delivery is paused by a configuration problem (a refused login, a TLS
/// failure): shared with `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<std::sync::Mutex<Option<Paused>>>);

#[derive(Debug, Clone)]
pub struct Paused {
    pub reason: String,
    pub since: DateTime<Utc>,
    /// When delivery tries again by itself (a reload tries at once).
    pub retry_at: DateTime<Utc>,
}

/// How long delivery stays paused before it tries the server again by itself.
const PAUSE: i64 = 300;

impl Health {
    pub fn paused(&self) -> Option<Paused> {
        self.0
            .lock()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn set(&self, p: Option<Paused>) {
        match self.0.lock() {
            Ok(mut g) => *g = p,
            Err(e) => *e.into_inner() = p,
        }
    }

    /// Pauses delivery; the reason is logged once, when the pause begins.
    fn pause(&self, reason: &str) {
        let now = Utc::now();
        let retry_at = now + chrono::Duration::seconds(PAUSE);
        match self.paused() {
            Some(p) => self.set(Some(Paused { retry_at, ..p })),
            None => {
                tracing::error!(
                    "delivery paused: {reason}. Messages stay queued; fix the configuration and reload (systemctl reload registrar), or delivery tries again in {} min",
                    PAUSE / 60
                );
                self.set(Some(Paused {
                    reason: reason.to_string(),
                    since: now,
                    retry_at,
                }));
            }
        }
    }

    /// Delivery works again (or a reload is to try at once).
    pub fn resume(&self, why: &str) {
        if self.paused().is_some() {
            tracing::info!("delivery resumed ({why})");
            self.set(None);
        }
    }

    /// The time a paused delivery tries again, if paused.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        self.paused().map(|p| p.retry_at)
    }
}

/// Messages still being queued while delivery runs (a pass fires and delivers at once, so
/// the first messages go out while later ones are still composed): delivery that finds
/// the queue empty waits for more instead of ending, until the feed is closed.
#[derive(Debug)]
pub struct Feed {
    more: AtomicBool,
    notify: tokio::sync::Notify,
    /// Tests: delivery stops here once, after a claim that found nothing, tells the test
    /// and waits for its go (the moment firing may queue its last batch and close).
    #[cfg(test)]
    gate: std::sync::Mutex<Option<Gate>>,
}

#[cfg(test)]
type Gate = (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);

impl Feed {
    pub fn open() -> Feed {
        Feed {
            more: AtomicBool::new(true),
            notify: tokio::sync::Notify::new(),
            #[cfg(test)]
            gate: std::sync::Mutex::new(None),
        }
    }

    /// More messages were queued.
    pub fn fed(&self) {
        self.notify.notify_one();
    }

    /// Nothing more comes: delivery ends when the queue is empty.
    pub fn close(&self) {
        self.more.store(false, Ordering::SeqCst);
        self.notify.notify_one();
    }

    fn more(&self) -> bool {
        self.more.load(Ordering::SeqCst)
    }
}

/// How often a process that delivers records that it is alive, also while a slow server
/// holds its messages.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends every message whose time has come at `now`, until none is left (and `feed`, if
/// given, is closed) or `stop` is set. Each outcome is recorded as soon as it is known
/// (with whatever else finished at that moment), so a process killed mid-pass leaves at
/// most the messages in flight (at most the pool size) to be sent again.
#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    store: &Store,
    transport: &Arc<Transport>,
    me: &Instance,
    now: DateTime<Utc>,
    max_attempts: u32,
    stop: &AtomicBool,
    health: &Health,
    feed: Option<&Feed>,
) -> Result<Delivered, sqlx::Error> {
    let mut report = Delivered {
        released: if me.due_for_release() {
            release_orphans(store, me, now).await?
        } else {
            0
        },
        ..Delivered::default()
    };
    if health.retry_at().is_some_and(|at| at > Utc::now()) {
        return Ok(report);
    }
    // A pass of this process that ended on an error may have left messages claimed:
    // nothing of this process is in flight now, so they go back to the queue.
    if outbox::any_claimed_by(store, &me.id).await? {
        report.released +=
            crate::store::transact!(store, |tx| outbox::release_own(tx, &me.id, now).await)?;
    }
    let slots = transport.concurrency();
    let mut queue: std::collections::VecDeque<Claimed> = std::collections::VecDeque::new();
    let mut sends: JoinSet<Sent> = JoinSet::new();
    // The row each send task is for, so that a task that fails still has an outcome.
    let mut in_flight: std::collections::HashMap<tokio::task::Id, (i64, i64)> =
        std::collections::HashMap::new();
    // Outcomes not yet recorded, and the recording in progress (its own task, so the
    // connections keep sending meanwhile). Messages sent but not yet recorded count
    // against the pool: at any moment at most `pool` messages are in flight or sent and
    // unrecorded, which is what a kill could send twice.
    let mut pending: Vec<Sent> = Vec::new();
    let mut recording: Option<tokio::task::JoinHandle<Result<Delivered, sqlx::Error>>> = None;
    let mut being_recorded = 0;
    let mut drained = false;
    // The queue was empty while the feed was open: waiting for the next batch.
    let mut starved = false;
    let mut paused = false;
    // A database error stops claiming; what is in flight is still awaited and recorded
    // (or, if that fails too, left claimed for this process's next pass), and the error
    // is returned at the end. Nothing in flight is ever dropped.
    let mut failure: Option<sqlx::Error> = None;
    let mut beat = tokio::time::Instant::now();
    loop {
        while sends.len() + being_recorded + pending.len() < slots
            && !paused
            && !starved
            && failure.is_none()
            && !stop.load(Ordering::SeqCst)
        {
            if queue.is_empty() && !drained {
                // Whether more may come is read before claiming: firing queues its last
                // batch and then closes the feed, so a feed still open here wakes this
                // loop when it closes, and a feed closed here had queued everything
                // before this claim. (Read after the claim, a last batch queued and
                // closed between the two was never sent by this pass.)
                let more = feed.is_some_and(Feed::more);
                let claimed = async {
                    if outbox::any_ready(store, now).await? {
                        claim(store, me, now, slots * CLAIM_PER_CONNECTION).await
                    } else {
                        Ok(Vec::new())
                    }
                }
                .await;
                #[cfg(test)]
                if matches!(&claimed, Ok(c) if c.is_empty())
                    && let Some((tell, go)) = feed.and_then(|f| f.gate.lock().ok()?.take())
                {
                    let _ = tell.send(());
                    let _ = go.await;
                }
                match claimed {
                    Ok(c) if c.is_empty() && more => {
                        starved = true;
                        break;
                    }
                    Ok(c) => {
                        drained = c.is_empty();
                        queue.extend(c);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let Some(row) = queue.pop_front() else { break };
            let t = Arc::clone(transport);
            let (id, attempts) = (row.id, row.attempts);
            let task = sends.spawn(async move {
                let outcome = match &row.message {
                    Some(bytes) => {
                        let name = crate::mail::file_name(
                            &row.rule_id,
                            &row.course_id,
                            &row.person_id,
                            row.cycle,
                            row.instant,
                        );
                        t.send(&row.recipients, bytes, &name).await
                    }
                    None => Outcome::Permanent("no message was rendered".into()),
                };
                (row.id, row.attempts, outcome)
            });
            in_flight.insert(task.id(), (id, attempts));
        }
        if recording.is_none() && !pending.is_empty() {
            // A refused login or a TLS failure stops this pass: what was claimed and not
            // sent goes back to the queue, its attempt not counted.
            let mut unclaim: Vec<i64> = Vec::new();
            for (id, _, outcome) in &pending {
                if let Outcome::Config(why) = outcome {
                    if !paused {
                        health.pause(why);
                    }
                    paused = true;
                    unclaim.push(*id);
                }
            }
            if !paused && pending.iter().any(|(_, _, o)| *o == Outcome::Sent) {
                health.resume("the server accepts messages again");
            }
            if paused {
                unclaim.extend(queue.drain(..).map(|c| c.id));
                report.paused = true;
            }
            let batch: Vec<Sent> = std::mem::take(&mut pending)
                .into_iter()
                .filter(|(_, _, o)| !matches!(o, Outcome::Config(_)))
                .collect();
            being_recorded = batch.len();
            let (store, me_id) = (store.clone(), me.id.clone());
            recording = Some(tokio::spawn(async move {
                let mut part = Delivered::default();
                record(&store, &me_id, now, max_attempts, &batch, &mut part).await?;
                if !unclaim.is_empty() {
                    crate::store::transact!(store, |tx| outbox::unclaim(
                        tx, &me_id, &unclaim, now
                    )
                    .await)?;
                }
                Ok(part)
            }));
        }
        let waiting_for_more =
            starved && !paused && failure.is_none() && !stop.load(Ordering::SeqCst);
        if sends.is_empty() && recording.is_none() && pending.is_empty() && !waiting_for_more {
            break;
        }
        tokio::select! {
            r = sends.join_next_with_id(), if !sends.is_empty() => {
                let mut take = |r: Result<(tokio::task::Id, Sent), tokio::task::JoinError>| match r {
                    Ok((task, sent)) => {
                        in_flight.remove(&task);
                        pending.push(sent);
                    }
                    Err(e) => {
                        tracing::error!("a send task failed: {e}");
                        if let Some((id, attempts)) = in_flight.remove(&e.id()) {
                            pending.push((id, attempts, Outcome::Temporary(format!("the send failed: {e}"))));
                        }
                    }
                };
                if let Some(r) = r {
                    take(r);
                }
                while let Some(r) = sends.try_join_next_with_id() {
                    take(r);
                }
            }
            r = async {
                match recording.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            }, if recording.is_some() => {
                recording = None;
                being_recorded = 0;
                match r {
                    Ok(Ok(part)) => report.add(&part),
                    // The batch stays claimed by this process: its next pass queues it
                    // again (sent again, with the same Message-ID).
                    Ok(Err(e)) => {
                        failure.get_or_insert(e);
                    }
                    Err(e) => {
                        failure.get_or_insert(sqlx::Error::Protocol(format!("recording deliveries: {e}")));
                    }
                }
                crate::service::alive();
            }
            _ = async {
                match feed {
                    Some(f) => f.notify.notified().await,
                    None => std::future::pending().await,
                }
            }, if starved => {
                starved = false;
            }
            _ = tokio::time::sleep_until(beat + HEARTBEAT) => {}
        }
        if beat.elapsed() >= HEARTBEAT {
            // Alive for other processes (the database) and for systemd's watchdog, also
            // while a slow server holds every connection.
            if let Err(e) = me.heartbeat(store).await {
                tracing::warn!("cannot record the heartbeat: {e}");
            }
            crate::service::alive();
            beat = tokio::time::Instant::now();
        }
    }
    // Stopped (SIGTERM) or failed: what was claimed and not handed to the server goes back.
    let left: Vec<i64> = queue.drain(..).map(|c| c.id).collect();
    if !left.is_empty()
        && let Err(e) =
            crate::store::transact!(store, |tx| outbox::unclaim(tx, &me.id, &left, now).await)
    {
        failure.get_or_insert(e);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// One attempt: (delivery id, attempts, outcome).
type Sent = (i64, i64, Outcome);

impl Delivered {
    fn add(&mut self, o: &Delivered) {
        self.sent += o.sent;
        self.retrying += o.retrying;
        self.failed += o.failed;
    }
}

/// Marks up to `limit` ready messages `sending` for this process.
async fn claim(
    store: &Store,
    me: &Instance,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    crate::store::transact!(store, |tx| outbox::claim(tx, &me.id, now, limit as i64)
        .await)
}

/// The wait before attempt `attempts + 1`: 1 min, 2, 4, ... up to 6 h.
pub fn backoff(attempts: i64) -> chrono::Duration {
    let exp = attempts.clamp(1, 20) - 1;
    chrono::Duration::seconds((BACKOFF_FIRST_SECONDS << exp).min(BACKOFF_CAP_SECONDS))
}

async fn record(
    store: &Store,
    me: &str,
    now: DateTime<Utc>,
    max_attempts: u32,
    results: &[(i64, i64, Outcome)],
    report: &mut Delivered,
) -> Result<(), sqlx::Error> {
    let sent: Vec<i64> = results
        .iter()
        .filter(|(_, _, o)| *o == Outcome::Sent)
        .map(|(id, _, _)| *id)
        .collect();
    let mut unsent = Vec::new();
    for (id, attempts, outcome) in results {
        let (state, next, error) = match outcome {
            Outcome::Sent | Outcome::Config(_) => continue,
            Outcome::Temporary(why) if *attempts < i64::from(max_attempts) => {
                let next = now + backoff(*attempts);
                tracing::warn!(
                    delivery = id,
                    attempt = attempts,
                    "temporary failure, next attempt at {next}: {why}"
                );
                report.retrying += 1;
                (DeliveryState::Retrying, Some(next), why.clone())
            }
            Outcome::Temporary(why) => {
                tracing::error!(delivery = id, "failed after {attempts} attempts: {why}");
                report.failed += 1;
                (
                    DeliveryState::Failed,
                    None,
                    format!("gave up after {attempts} attempts: {why}"),
                )
            }
            Outcome::Permanent(why) => {
                tracing::error!(delivery = id, "failed: {why}");
                report.failed += 1;
                (DeliveryState::Failed, None, why.clone())
            }
        };
        // A server's words, kept and shown in terminals: no control characters.
        let error: String = error
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        unsent.push((*id, state, next, error));
    }
    report.sent += sent.len() as u64;
    if unsent.is_empty() {
        // Usually every message of the batch was accepted: one statement, no transaction.
        return outbox::mark_sent_alone(store, me, &sent, now).await;
    }
    crate::store::transact!(store, |tx| {
        outbox::mark_sent(tx, me, &sent, now).await?;
        for (id, state, next, error) in &unsent {
            outbox::mark_unsent(tx, me, *id, *state, *next, error, now).await?;
        }
        Ok::<(), sqlx::Error>(())
    })
}

/// Puts back in the queue the messages claimed by processes that are gone: those on this
/// machine whose process id no longer runs, and any whose heartbeat stopped.
async fn release_orphans(
    store: &Store,
    me: &Instance,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    me.heartbeat(store).await?;
    let released = crate::store::transact!(store, |tx| {
        let known = outbox::processes(tx, STALE_SECONDS).await?;
        let dead: Vec<String> = known
            .iter()
            .filter(|(id, host, pid, stale)| {
                *id != me.id && (*stale || (*host == me.host && !crate::service::pid_alive(*pid)))
            })
            .map(|(id, ..)| id.clone())
            .collect();
        // Decided in the UPDATE itself: a process that records its heartbeat and claims
        // messages meanwhile is not mistaken for a dead one.
        let released = outbox::release_orphans(tx, &me.id, &dead, STALE_SECONDS, now).await?;
        outbox::forget_processes(tx, &dead).await?;
        Ok::<u64, sqlx::Error>(released)
    })?;
    if released > 0 {
        tracing::warn!(
            "{released} message(s) were being sent by a registrar process that stopped without finishing; \
             they are queued again (one the SMTP server had already accepted arrives twice, with the same Message-ID)"
        );
    }
    Ok(released)
}

pub use outbox::DeliveryRow;

/// The outbox, oldest first, optionally of one state.
pub async fn list(
    store: &Store,
    state: Option<DeliveryState>,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    outbox::list(store, state).await
}

/// Why `retry` refused a delivery.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("there is no delivery {0} (see `registrar deliveries`)")]
    Unknown(i64),
    #[error("delivery {0} was already sent{1}; sending it again would break \"exactly once\"")]
    Sent(i64, String),
    #[error("delivery {0} is {1}: only failed or retrying deliveries can be retried")]
    NotFailed(i64, String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl crate::store::Retryable for RetryError {
    fn retryable(&self) -> bool {
        matches!(self, RetryError::Db(e) if crate::store::retryable(e))
    }
}

/// Queues a failed (or retrying) delivery for an attempt now. One that failed before a
/// message existed (no valid address, a template error) is fired again from its action,
/// so the fixed address or template is used.
pub async fn retry(
    store: &Store,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), RetryError> {
    crate::store::transact!(store, |tx| {
        let Some(d) = outbox::for_retry(tx, id).await? else {
            return Err(RetryError::Unknown(id));
        };
        match d.state.as_str() {
            "sent" => {
                return Err(RetryError::Sent(
                    id,
                    d.sent_at
                        .map(|t| format!(" at {}", t.to_rfc3339()))
                        .unwrap_or_default(),
                ));
            }
            "failed" | "retrying" => {}
            other => return Err(RetryError::NotFailed(id, other.to_string())),
        }
        if d.has_message {
            outbox::requeue(tx, id, now).await?;
        } else {
            actions::set_state(tx, d.action_id, ActionState::Approved, now).await?;
        }
        // D10, and a change that wakes running `serve` processes.
        let mut log = Changes::new(now, actor, "retry");
        log.push(Change {
            entity: "delivery",
            course_id: Some(d.course_id),
            person_id: Some(d.person_id),
            part_id: None,
            change: "retry",
            before: j(serde_json::json!({ "delivery": id, "state": d.state })),
            after: j(serde_json::json!({ "delivery": id, "state": DeliveryState::Queued })),
            event: None,
        });
        log.flush(tx).await?;
        Ok(())
    })
}

#[cfg(test)]
mod feed_tests {
    use super::*;
    use crate::store::outbox::{Message, NewDelivery};

    /// T3 (never zero): firing queues its last batch and closes the feed just after
    /// delivery's claim found the queue empty. Delivery still sends that batch in this
    /// pass instead of taking the closed feed for "nothing more comes".
    #[tokio::test]
    async fn t3_a_last_batch_queued_as_the_feed_closes_is_still_sent() {
        let (dir, store) = crate::store::temp_sqlite().await;
        let outbox_dir = dir.path().join("outbox");
        std::fs::create_dir_all(&outbox_dir).expect("outbox");
        let transport = Arc::new(Transport::File {
            dir: outbox_dir.clone(),
        });
        let me = Instance::new();
        me.heartbeat(&store).await.expect("heartbeat");
        let now = Utc::now();
        let feed = Arc::new(Feed::open());
        let (tell, told) = tokio::sync::oneshot::channel();
        let (go, gone) = tokio::sync::oneshot::channel();
        if let Ok(mut gate) = feed.gate.lock() {
            *gate = Some((tell, gone));
        }
        let delivering = {
            let (store, feed) = (store.clone(), Arc::clone(&feed));
            tokio::spawn(async move {
                let (stop, health) = (AtomicBool::new(false), Health::default());
                deliver(&store, &transport, &me, now, 5, &stop, &health, Some(&feed)).await
            })
        };
        // Delivery has claimed and found nothing: now firing queues its last message and
        // closes the feed, before delivery looks at the feed.
        told.await.expect("delivery reached the gate");
        let mut tx = store.begin().await.expect("begin");
        let crate::store::Tx::Sqlite(c) = &mut tx else {
            unreachable!("an SQLite store")
        };
        sqlx::query(
            "INSERT INTO actions (id, rule_id, course_id, person_id, cycle, state, event_at, created_at, updated_at) \
             VALUES (1, 'certificate', 'fa', 'anne', 1, 'due', $1, $1, $1)",
        )
        .bind(now)
        .execute(&mut **c)
        .await
        .expect("action");
        let bytes = b"From: office@example.nl\r\nTo: anne@example.nl\r\nSubject: Certificate\r\n\r\nHello\r\n";
        let row = NewDelivery {
            action: 1,
            rule: "certificate",
            kind: crate::domain::SubjectKind::Course,
            course: "fa",
            person: "anne",
            cycle: 1,
            instant: 0,
            due_at: Some(now),
            message: Ok(Message {
                recipients: "anne@example.nl",
                subject: "Certificate",
                message_id: "<certificate.fa.anne.1@example.nl>",
                bytes,
            }),
        };
        outbox::insert_many(&mut tx, std::slice::from_ref(&row), now)
            .await
            .expect("queued");
        tx.commit().await.expect("commit");
        feed.fed();
        feed.close();
        let _ = go.send(());
        let delivered = delivering.await.expect("delivery task").expect("delivery");
        assert_eq!(delivered.sent, 1, "{delivered:?}");
        let written = std::fs::read_dir(&outbox_dir).expect("outbox").count();
        assert_eq!(written, 1, "the message is in the outbox");
    }
}
