//! `registrar deliveries [--state S] [--format table|json]`, `retry ID…` and
//! `approve ID…`: the outbox as an operator sees it.

use super::App;
use crate::delivery::{self, DeliveryRow};
use crate::domain::time::local_rfc3339;
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Queued,
    Sending,
    Sent,
    Retrying,
    Failed,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only deliveries in this state.
    #[arg(long, value_enum)]
    pub state: Option<State>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(clap::Args, Debug)]
pub struct Ids {
    /// One or more ids.
    #[arg(required = true)]
    pub ids: Vec<i64>,
}

fn state_of(s: State) -> crate::domain::DeliveryState {
    use crate::domain::DeliveryState as D;
    match s {
        State::Queued => D::Queued,
        State::Sending => D::Sending,
        State::Sent => D::Sent,
        State::Retrying => D::Retrying,
        State::Failed => D::Failed,
    }
}

pub async fn list(app: &App, args: Args) -> anyhow::Result<ExitCode> {
    let store = app.store().await?;
    let rows = delivery::list(&store, args.state.map(state_of)).await?;
    store.close().await;
    match args.format {
        Format::Json => say!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => print_table(app, &rows)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(app: &App, rows: &[DeliveryRow]) -> std::io::Result<()> {
    if rows.is_empty() {
        say!("no deliveries");
        return Ok(());
    }
    let tz = app.config.timezone;
    say!(
        "{:>6}  {:<8}  {:<26}  {:<16}  {:<10}  {:>3}  {:<19}  detail",
        "id",
        "state",
        "rule",
        "course",
        "person",
        "try",
        "when"
    );
    for r in rows {
        let when = r.sent_at.or(r.next_attempt_at).unwrap_or(r.created_at);
        let when = local_rfc3339(when, tz);
        let detail = match r.state.as_str() {
            "failed" | "retrying" => r.last_error.clone().unwrap_or_default(),
            _ => format!("{} — {}", r.recipients, r.subject),
        };
        say!(
            "{:>6}  {:<8}  {:<26}  {:<16}  {:<10}  {:>3}  {:<19}  {}",
            r.id,
            r.state,
            clip(&r.rule, 26),
            clip(&r.course, 16),
            clip(&r.person, 10),
            r.attempts,
            when.get(..16).unwrap_or(&when).replace('T', " "),
            clip(&detail, 90)
        );
    }
    let count = |s: &str| rows.iter().filter(|r| r.state.as_str() == s).count();
    say!(
        "{} deliveries: {} sent, {} queued, {} sending, {} retrying, {} failed",
        rows.len(),
        count("sent"),
        count("queued"),
        count("sending"),
        count("retrying"),
        count("failed")
    );
    Ok(())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

pub async fn retry(app: &App, args: Ids) -> anyhow::Result<ExitCode> {
    let store = app.store().await?;
    let mut refused = 0;
    for id in args.ids {
        match delivery::retry(&store, id, &app.actor, app.now).await {
            Ok(()) => say!("delivery {id} queued again; the next pass sends it"),
            Err(delivery::RetryError::Db(e)) => return Err(e.into()),
            Err(e) => {
                eprintln!("registrar: {e}");
                refused += 1;
            }
        }
    }
    store.close().await;
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn approve(app: &App, args: Ids) -> anyhow::Result<ExitCode> {
    use crate::engine::fire::{ApproveError, approve};
    let store = app.store().await?;
    let mut refused = 0;
    for id in args.ids {
        match approve(&store, id, &app.actor, app.now).await {
            Ok((rule, course, person)) => {
                say!("approved {id}: {rule} for {person} in {course}; the next pass sends it")
            }
            Err(ApproveError::Db(e)) => return Err(e.into()),
            Err(e) => {
                eprintln!("registrar: {e}");
                refused += 1;
            }
        }
    }
    store.close().await;
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
