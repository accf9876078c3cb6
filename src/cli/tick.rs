//! `registrar tick [--now T]` (one pass, then exit) and `registrar serve` (the daemon).

use super::App;
use crate::daemon::Daemon;
use crate::scheduler::Runtime;
use std::process::ExitCode;

pub async fn tick(app: &App) -> anyhow::Result<ExitCode> {
    let rt = Runtime::build(app.config.clone()).await?;
    let result = rt.pass(app.now).await;
    rt.me.leave(&rt.store).await.ok();
    rt.store.close().await;
    let pass = result?;
    say!("{pass}");
    if pass.delivered.failed + pass.fired.failed > 0 {
        say!("see `registrar deliveries --state failed` for why");
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve`: the daemon, with SIGTERM and SIGINT stopping it and SIGHUP reloading it.
pub async fn serve(app: &App) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    if app.now_given {
        anyhow::bail!(
            "--now is for `tick`, `plan` and the like; `serve` always runs on the real clock"
        );
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let daemon = Daemon::build(app.config.clone()).await?;
    let handle = daemon.handle();
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => handle.stop(),
                _ = int.recv() => handle.stop(),
                _ = hup.recv() => handle.reload(),
            }
        }
    });
    let result = daemon.run_until_stopped().await;
    signals.abort();
    result?;
    Ok(ExitCode::SUCCESS)
}
