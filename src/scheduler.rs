//! The loop behind `tick` and `serve`: a pass turns new events into action instances,
//! fires what is due, and delivers the outbox. `serve` runs passes on a timer, at the
//! next due time, and at once when another process records a change (LISTEN/NOTIFY on
//! PostgreSQL, a cheap poll of the history table on SQLite); SIGTERM drains, SIGHUP
//! reloads the rules and templates.

use crate::config::Config;
use crate::delivery::{self, Delivered, Instance, Transport};
use crate::engine::{self, fire};
use crate::render::Templates;
use crate::rules::RuleSet;
use crate::store::{Store, on};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How long SIGTERM waits for the pass in progress (in-flight messages) before exiting.
const DRAIN_LIMIT: Duration = Duration::from_secs(45);
/// How often a `serve` process records that it is alive.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often SQLite is polled for changes made by other processes.
const POLL: Duration = Duration::from_millis(500);

/// Everything a pass runs with.
pub struct Runtime {
    pub store: Store,
    pub config: Config,
    pub rules: RuleSet,
    pub templates: Templates,
    pub transport: Arc<Transport>,
    pub me: Instance,
    pub stop: Arc<AtomicBool>,
}

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct Pass {
    pub events: u64,
    /// Certification learners moved on by completed training or by time.
    pub learners: u64,
    pub fired: fire::Fired,
    pub delivered: Delivered,
}

impl Pass {
    pub fn is_quiet(&self) -> bool {
        self.events == 0
            && self.learners == 0
            && self.fired.queued
                + self.fired.failed
                + self.fired.expired
                + self.fired.awaiting_approval
                == 0
            && self.delivered.sent + self.delivered.retrying + self.delivered.failed == 0
    }
}

impl std::fmt::Display for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (fi, d) = (&self.fired, &self.delivered);
        write!(f, "{} event(s); ", self.events)?;
        if self.learners > 0 {
            write!(f, "{} certification learner(s) moved on; ", self.learners)?;
        }
        write!(f, "fired {} message(s)", fi.queued + fi.failed)?;
        if fi.late > 0 {
            write!(
                f,
                " ({} late, up to {})",
                fi.late,
                crate::service::human(fi.max_late)
            )?;
        }
        if fi.awaiting_approval > 0 {
            write!(f, ", {} awaiting approval", fi.awaiting_approval)?;
        }
        if fi.expired > 0 {
            write!(f, ", {} expired", fi.expired)?;
        }
        write!(
            f,
            "; delivered: {} sent, {} to retry, {} failed",
            d.sent,
            d.retrying,
            d.failed + fi.failed
        )?;
        if d.released > 0 {
            write!(f, " ({} re-queued after a crash)", d.released)?;
        }
        Ok(())
    }
}

impl Runtime {
    /// One pass at `now`.
    pub async fn pass(&self, now: DateTime<Utc>) -> anyhow::Result<Pass> {
        let tz = self.config.timezone;
        // Certification learners first: the status changes they record are ingested,
        // fired and delivered in this same pass.
        let learners =
            crate::store::certifications::advance_all(&self.store, &self.rules, tz, now).await?;
        let events = engine::ingest(&self.store, &self.rules, tz, now).await?;
        let env = fire::Env {
            rules: &self.rules,
            templates: &self.templates,
            office: &self.config.office,
            tz,
        };
        let fired = fire::fire(&self.store, &env, now).await?;
        let delivered = delivery::deliver(
            &self.store,
            &self.transport,
            &self.me,
            now,
            self.config.scheduler.max_attempts,
            &self.stop,
        )
        .await?;
        Ok(Pass {
            events,
            learners,
            fired,
            delivered,
        })
    }

    /// When the next pass is needed at the latest: the next due instance or retry.
    async fn next_due(&self, now: DateTime<Utc>) -> anyhow::Result<Option<DateTime<Utc>>> {
        let mut tx = self.store.begin_read().await?;
        let (action, retry): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = on!(&mut tx, c => sqlx::query_as(
            "SELECT (SELECT MIN(due_at) FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at > $1), \
                    (SELECT MIN(next_attempt_at) FROM deliveries WHERE state IN ('queued', 'retrying'))",
        ).bind(now).fetch_one(&mut **c).await)?;
        tx.rollback().await?;
        let learner = crate::store::certifications::next_change(
            &self.store,
            &self.rules,
            self.config.timezone,
        )
        .await?
        .filter(|t| *t > now);
        Ok([action, retry, learner].into_iter().flatten().min())
    }

    /// SIGHUP (T5): a valid set replaces the running one at once; an invalid one is
    /// logged and the running set stays.
    fn reload(&mut self, shared: &std::sync::RwLock<Arc<RuleSet>>) {
        crate::service::reloading();
        let (rules, templates, problems) = crate::render::load_checked(&self.config);
        if problems.is_empty() {
            tracing::info!(
                "reloaded {} action rule(s) and the templates from {} and {}",
                rules.actions.len(),
                self.config.rules.display(),
                self.config.templates.display()
            );
            if let Ok(mut r) = shared.write() {
                *r = Arc::new(rules.clone());
            }
            self.rules = rules;
            self.templates = templates;
        } else {
            for p in &problems {
                tracing::error!("{p}");
            }
            tracing::error!(
                "reload refused: {} error(s) in the rules and templates; the running set stays in force",
                problems.len()
            );
        }
        crate::service::ready("running");
    }
}

/// `serve`: passes until SIGTERM (or SIGINT); then the pass in progress finishes its
/// in-flight messages, within [`DRAIN_LIMIT`].
pub async fn serve(mut rt: Runtime) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    rt.me.heartbeat(&rt.store).await?;
    let wake = Arc::new(Notify::new());
    // The HTTP API runs beside the loop and wakes it after every state change.
    let token = match &rt.config.http.token {
        Some(secret) => Some(Arc::<str>::from(
            secret
                .read()
                .map_err(|e| anyhow::anyhow!("http.token: {e}"))?
                .as_str(),
        )),
        None => {
            tracing::warn!(
                "no http.token_env or http.token_file: the API under /api/v1 refuses every request"
            );
            None
        }
    };
    let api = crate::http::ApiState::new(
        rt.store.clone(),
        Arc::new(rt.config.clone()),
        Arc::new(rt.rules.clone()),
        Arc::clone(&wake),
        token,
    );
    let stop_http = Arc::new(Notify::new());
    let http = {
        let (api, stop) = (api.clone(), Arc::clone(&stop_http));
        let listener = tokio::net::TcpListener::bind(api.config.http.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {} (http.listen): {e}",
                    api.config.http.listen
                )
            })?;
        tracing::info!(
            "HTTP API on http://{}",
            listener.local_addr().unwrap_or(api.config.http.listen)
        );
        tokio::spawn(async move {
            let app = crate::http::router(api);
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.notified().await })
                .await
            {
                tracing::error!("the HTTP server stopped: {e}");
            }
        })
    };
    let watcher = tokio::spawn(watch(rt.store.clone(), Arc::clone(&wake)));
    let beat = {
        let (store, me) = (rt.store.clone(), rt.me.clone());
        tokio::spawn(async move {
            let mut t = tokio::time::interval(HEARTBEAT);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                t.tick().await;
                if let Err(e) = me.heartbeat(&store).await {
                    tracing::warn!("cannot record the heartbeat: {e}");
                }
            }
        })
    };
    tracing::info!(
        "serving ({}, {} action rule(s), transport {:?})",
        rt.store.backend(),
        rt.rules.actions.len(),
        rt.config.mail.transport
    );
    crate::service::ready("running");
    let interval = rt.config.scheduler.interval;
    let watchdog = crate::service::watchdog_interval().map(|w| w / 2);
    let mut failures = 0u32;
    loop {
        let now = Utc::now();
        let started = std::time::Instant::now();
        let pass = {
            let run = rt.pass(now);
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => r,
                _ = term.recv() => drain(&rt, run).await,
                _ = int.recv() => drain(&rt, run).await,
            }
        };
        api.beat(started.elapsed());
        let failed = match pass {
            Ok(p) => {
                if !p.is_quiet() {
                    tracing::info!("{p}");
                    crate::service::status(&format!("last pass {}: {p}", now.format("%H:%M:%S")));
                }
                failures = 0;
                false
            }
            Err(e) => {
                failures += 1;
                tracing::error!("pass failed (trying again shortly): {e:#}");
                true
            }
        };
        crate::service::alive();
        if rt.stop.load(Ordering::SeqCst) {
            break;
        }
        let mut sleep = interval;
        if failed {
            // A locked or unreachable database: try again soon, backing off to the interval.
            sleep = sleep.min(Duration::from_millis(250) * 2u32.pow(failures.min(7)));
        } else if let Ok(Some(next)) = rt.next_due(now).await {
            let until = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            sleep = sleep.min(until.max(Duration::from_millis(50)));
        }
        if let Some(w) = watchdog {
            sleep = sleep.min(w);
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            // A short gather: under a stream of changes one pass serves many of them.
            _ = wake.notified() => tokio::time::sleep(Duration::from_millis(20)).await,
            _ = hup.recv() => rt.reload(&api.rules),
            _ = term.recv() => rt.stop.store(true, Ordering::SeqCst),
            _ = int.recv() => rt.stop.store(true, Ordering::SeqCst),
        }
        if rt.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    crate::service::stopping();
    watcher.abort();
    beat.abort();
    stop_http.notify_one();
    if tokio::time::timeout(Duration::from_secs(5), http)
        .await
        .is_err()
    {
        tracing::warn!("the HTTP server did not stop within 5 s");
    }
    if let Err(e) = rt.me.leave(&rt.store).await {
        tracing::warn!("cannot remove this process from the instance list: {e}");
    }
    rt.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM during a pass: claim nothing more, let the messages in flight finish.
async fn drain(
    rt: &Runtime,
    run: std::pin::Pin<&mut impl std::future::Future<Output = anyhow::Result<Pass>>>,
) -> anyhow::Result<Pass> {
    rt.stop.store(true, Ordering::SeqCst);
    crate::service::stopping();
    tracing::info!("stopping: finishing the messages in flight");
    match tokio::time::timeout(DRAIN_LIMIT, run).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "messages still in flight after {} s; they are sent again on the next start",
            DRAIN_LIMIT.as_secs()
        ),
    }
}

/// Wakes the loop when another process records a change.
async fn watch(store: Store, wake: Arc<Notify>) {
    match &store {
        Store::Postgres(pool) => loop {
            match sqlx::postgres::PgListener::connect_with(pool).await {
                Ok(mut l) => {
                    if let Err(e) = l.listen("registrar").await {
                        tracing::warn!("LISTEN failed: {e}");
                    } else {
                        while l.recv().await.is_ok() {
                            wake.notify_one();
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot listen for changes: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
        Store::Sqlite(pool) => {
            // Every change (imports, participant actions, approve, retry) writes history.
            let mut last: Option<i64> = None;
            loop {
                let seen: Result<Option<i64>, _> =
                    sqlx::query_scalar("SELECT MAX(id) FROM history")
                        .fetch_one(pool)
                        .await;
                if let Ok(h) = seen {
                    let h = h.unwrap_or(0);
                    if last.is_some_and(|l| l != h) {
                        wake.notify_one();
                    }
                    last = Some(h);
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}
