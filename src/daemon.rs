//! `registrar serve` as a value: [`Daemon::build`] loads everything and binds the HTTP
//! port, [`Daemon::run_until_stopped`] runs passes until [`Handle::stop`]. The daemon runs
//! a pass at start, then at the next due time, at every change (the HTTP API's, and other
//! processes': LISTEN/NOTIFY on PostgreSQL, a cheap poll of the history on SQLite), and
//! every `scheduler.interval`. A stop lets the messages in flight finish; a reload
//! replaces the rules and templates when the new set is valid (T5).
//!
//! The command line maps SIGTERM/SIGINT to `stop` and SIGHUP to `reload`; tests start a
//! daemon in-process on port 0 and stop it through its handle.

use crate::config::Config;
use crate::http::ApiState;
use crate::scheduler::{Pass, Runtime};
use crate::store::{Store, history};
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a stop waits for the pass in progress (in-flight messages) before exiting.
const DRAIN_LIMIT: Duration = Duration::from_secs(45);
/// How often a `serve` process records that it is alive.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often SQLite is polled for changes made by other processes.
const POLL: Duration = Duration::from_millis(500);

/// The daemon, built and bound, not yet running.
pub struct Daemon {
    rt: Runtime,
    listener: tokio::net::TcpListener,
    api: ApiState,
    control: Arc<Control>,
}

#[derive(Default)]
struct Control {
    stopping: AtomicBool,
    stop: Notify,
    reload: Notify,
}

/// Stops or reloads a running daemon.
#[derive(Clone)]
pub struct Handle {
    control: Arc<Control>,
    stop_sending: Arc<AtomicBool>,
}

impl Handle {
    /// Claims nothing more, lets the messages in flight finish, and ends
    /// [`Daemon::run_until_stopped`].
    pub fn stop(&self) {
        self.control.stopping.store(true, Ordering::SeqCst);
        self.stop_sending.store(true, Ordering::SeqCst);
        self.control.stop.notify_one();
    }

    /// Loads the rules and templates again (SIGHUP).
    pub fn reload(&self) {
        self.control.reload.notify_one();
    }
}

impl Daemon {
    /// Opens the database, loads the rules and templates (refusing a set with errors),
    /// and binds `http.listen` (port 0 picks a free port: see [`Daemon::port`]).
    pub async fn build(config: Config) -> anyhow::Result<Daemon> {
        let rt = Runtime::build(config).await?;
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
        let listen = rt.config.http.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (http.listen): {e}"))?;
        let api = ApiState::new(
            rt.store.clone(),
            Arc::new(rt.config.clone()),
            Arc::new(rt.rules.clone()),
            Arc::new(Notify::new()),
            token,
            rt.health.clone(),
        );
        Ok(Daemon {
            rt,
            listener,
            api,
            control: Arc::default(),
        })
    }

    /// The HTTP port the daemon listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn handle(&self) -> Handle {
        Handle {
            control: Arc::clone(&self.control),
            stop_sending: Arc::clone(&self.rt.stop),
        }
    }

    /// Runs until [`Handle::stop`]; then the pass in progress finishes its in-flight
    /// messages, within [`DRAIN_LIMIT`].
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Daemon {
            mut rt,
            listener,
            api,
            control,
        } = self;
        rt.me.heartbeat(&rt.store).await?;
        let wake = Arc::clone(&api.wake);
        let stop_http = Arc::new(Notify::new());
        tracing::info!(
            "HTTP API on http://{}",
            listener
                .local_addr()
                .map_or_else(|_| rt.config.http.listen.to_string(), |a| a.to_string())
        );
        let http = {
            let (api, stop) = (api.clone(), Arc::clone(&stop_http));
            tokio::spawn(crate::http::server::serve(
                listener,
                crate::http::router(api),
                stop,
            ))
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
        while !control.stopping.load(Ordering::SeqCst) {
            let now = Utc::now();
            let started = std::time::Instant::now();
            let pass = {
                let run = rt.pass(now);
                tokio::pin!(run);
                tokio::select! {
                    r = &mut run => r,
                    _ = control.stop.notified() => drain(run).await,
                }
            };
            api.beat(started.elapsed());
            let failed = match pass {
                Ok(p) => {
                    report(&p, now);
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
            if control.stopping.load(Ordering::SeqCst) {
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
                _ = control.reload.notified() => rt.reload(&api.rules),
                _ = control.stop.notified() => {}
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
}

fn report(p: &Pass, now: chrono::DateTime<Utc>) {
    if !p.is_quiet() {
        tracing::info!("{p}");
        crate::service::status(&format!("last pass {}: {p}", now.format("%H:%M:%S")));
    }
}

/// A stop during a pass: claim nothing more, let the messages in flight finish.
async fn drain(
    run: std::pin::Pin<&mut impl std::future::Future<Output = anyhow::Result<Pass>>>,
) -> anyhow::Result<Pass> {
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
        Store::Sqlite(..) => {
            // Every change (imports, participant actions, approve, retry) writes history.
            let mut last: Option<i64> = None;
            loop {
                if let Ok(h) = history::last_id(&store).await {
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
