//! The pass behind `tick` and `serve`: certification learners moved on by time, new
//! events turned into action instances, what is due fired, and the outbox delivered. The
//! daemon ([`crate::daemon`]) runs passes; `tick` runs one.

use crate::config::Config;
use crate::delivery::{self, Delivered, Instance, Transport};
use crate::engine::{self, fire};
use crate::render::Templates;
use crate::rules::RuleSet;
use crate::store::{Store, actions, outbox};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything a pass runs with.
pub struct Runtime {
    pub store: Store,
    pub config: Config,
    pub rules: RuleSet,
    pub templates: Templates,
    pub transport: Arc<Transport>,
    pub me: Instance,
    pub stop: Arc<AtomicBool>,
    /// Whether delivery is paused on a configuration problem.
    pub health: delivery::Health,
    /// Whether the rules in force were recorded (`rule_versions`) since they were loaded.
    pub rules_synced: AtomicBool,
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
        if d.paused {
            write!(f, "; delivery paused (configuration, see the log)")?;
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
        if !self.rules_synced.load(Ordering::Relaxed) {
            let changed = engine::sync_rules(&self.store, &self.rules, now).await?;
            if changed > 0 {
                tracing::info!(
                    "{changed} waiting action instance(s) of changed rules are evaluated again"
                );
            }
            self.rules_synced.store(true, Ordering::Relaxed);
        }
        // Certification learners first: the status changes they record are ingested,
        // fired and delivered in this same pass.
        let started = std::time::Instant::now();
        let learners =
            crate::change::certifications::advance_all(&self.store, &self.rules, tz, now).await?;
        let events = engine::ingest(&self.store, &self.rules, tz, now).await?;
        let ingested = started.elapsed();
        let env = fire::Env {
            rules: &self.rules,
            templates: &self.templates,
            office: &self.config.office,
            tz,
            locale: None,
        };
        // Fire and deliver at once: delivery (its own task) sends what each batch queued
        // while the next batch is composed, and ends when firing is done and the queue
        // is empty.
        let feed = Arc::new(delivery::Feed::open());
        let delivering = {
            let (store, transport, me) =
                (self.store.clone(), self.transport.clone(), self.me.clone());
            let (stop, health, feed) = (self.stop.clone(), self.health.clone(), feed.clone());
            let max_attempts = self.config.scheduler.max_attempts;
            tokio::spawn(async move {
                delivery::deliver(
                    &store,
                    &transport,
                    &me,
                    now,
                    max_attempts,
                    &stop,
                    &health,
                    Some(&feed),
                )
                .await
            })
        };
        let fired = async {
            let mut fired = fire::fire_feeding(&self.store, &env, now, &|| feed.fed()).await?;
            tracing::debug!(
                "pass: certification learners and ingest {} ms, firing done at {} ms",
                ingested.as_millis(),
                started.elapsed().as_millis()
            );
            // T6: schedule rules whose instant has come.
            let scheduled = engine::schedule::run(&self.store, &env, now).await?;
            fired.queued += scheduled.queued;
            fired.failed += scheduled.failed;
            Ok::<_, sqlx::Error>(fired)
        }
        .await;
        feed.close();
        // Delivery is awaited whatever firing did: nothing in flight is left behind.
        let delivered = delivering
            .await
            .map_err(|e| anyhow::anyhow!("the delivery task failed: {e}"))?;
        tracing::debug!(
            "pass: delivery done at {} ms",
            started.elapsed().as_millis()
        );
        let fired = fired?;
        let delivered = delivered?;
        Ok(Pass {
            events,
            learners,
            fired,
            delivered,
        })
    }

    /// When the next pass is needed at the latest: the next due instance or retry.
    pub async fn next_due(&self, now: DateTime<Utc>) -> anyhow::Result<Option<DateTime<Utc>>> {
        let mut tx = self.store.begin_read().await?;
        let action = actions::next_due(&mut tx, now).await?;
        // While delivery is paused, queued messages wait for the pause to end.
        let retry = outbox::next_attempt(&mut tx)
            .await?
            .map(|r| self.health.retry_at().map_or(r, |p| r.max(p)));
        tx.rollback().await?;
        let learner = crate::change::certifications::next_change(
            &self.store,
            &self.rules,
            self.config.timezone,
        )
        .await?
        .filter(|t| *t > now);
        let instant = engine::schedule::next_instant(&self.rules, self.config.timezone, now);
        Ok([action, retry, learner, instant]
            .into_iter()
            .flatten()
            .min())
    }

    /// SIGHUP (T5): a valid set replaces the running one at once; an invalid one is
    /// logged and the running set stays.
    pub fn reload(&mut self, shared: &std::sync::RwLock<Arc<RuleSet>>) {
        crate::service::reloading();
        self.reload_mail();
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
            self.rules_synced.store(false, Ordering::Relaxed);
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

impl Runtime {
    /// The runtime of passes for `config`: the database (migrated), the rules and
    /// templates (refused with every error when any is wrong), the transport.
    pub async fn build(config: Config) -> anyhow::Result<Runtime> {
        let (rules, templates, problems) = crate::render::load_checked(&config);
        if !problems.is_empty() {
            anyhow::bail!(
                "the rules and templates have {} error(s); nothing was sent:\n{}",
                problems.len(),
                problems.join("\n")
            );
        }
        let transport = Transport::from_config(&config.mail, &config.office.from)
            .map_err(anyhow::Error::msg)?;
        Ok(Runtime {
            store: Store::open(&config.database).await?,
            config,
            rules,
            templates,
            transport,
            me: Instance::new(),
            stop: Arc::new(AtomicBool::new(false)),
            health: delivery::Health::default(),
            rules_synced: AtomicBool::new(false),
        })
    }
}

impl Runtime {
    /// SIGHUP: the `mail` section is read again (a fixed password or TLS setting takes
    /// effect without a restart) and a paused delivery tries again at once. The rest of
    /// the configuration (database, HTTP) needs a restart.
    fn reload_mail(&mut self) {
        let fresh = match Config::load(&self.config.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "reload: {} has errors; the running configuration stays:\n{e}",
                    self.config.path.display()
                );
                return;
            }
        };
        match Transport::from_config(&fresh.mail, &fresh.office.from) {
            Ok(t) => {
                self.transport = t;
                self.config.mail = fresh.mail;
                self.health.resume("the configuration was reloaded");
            }
            Err(e) => tracing::error!("reload: the mail configuration is refused: {e}"),
        }
    }
}
