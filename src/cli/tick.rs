//! `registrar tick [--now T]` (one pass, then exit) and `registrar serve` (the daemon).

use super::App;
use crate::delivery::{Instance, Transport};
use crate::scheduler::Runtime;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The runtime of a pass: the store, the checked rules and templates, the transport.
async fn runtime(app: &App) -> anyhow::Result<Runtime> {
    let (rules, templates, problems) = crate::render::load_checked(&app.config);
    if !problems.is_empty() {
        anyhow::bail!(
            "the rules and templates have {} error(s); nothing was sent:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
    let transport = Transport::from_config(&app.config.mail, &app.config.office.from)
        .map_err(anyhow::Error::msg)?;
    Ok(Runtime {
        store: app.store().await?,
        config: app.config.clone(),
        rules,
        templates,
        transport,
        me: Instance::new(),
        stop: Arc::new(AtomicBool::new(false)),
    })
}

pub async fn tick(app: &App) -> anyhow::Result<ExitCode> {
    let rt = runtime(app).await?;
    let result = rt.pass(app.now).await;
    rt.me.leave(&rt.store).await.ok();
    rt.store.close().await;
    let pass = result?;
    println!("{pass}");
    if pass.delivered.failed + pass.fired.failed > 0 {
        println!("see `registrar deliveries --state failed` for why");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn serve(app: &App) -> anyhow::Result<ExitCode> {
    if app.now_given {
        anyhow::bail!(
            "--now is for `tick`, `plan` and the like; `serve` always runs on the real clock"
        );
    }
    let rt = runtime(app).await?;
    crate::scheduler::serve(rt).await?;
    Ok(ExitCode::SUCCESS)
}
