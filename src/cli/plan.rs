//! `registrar plan [--now T] [--rule ID] [--summary] [--format table|json]`: every action
//! instance not yet delivered, when it is due, and why the others did not send; or, with
//! `--summary`, per rule and course how many are in each state and the common reasons; with
//! `--schedules`, the schedule rules' next instants and whom they would reach now.

use super::App;
use crate::engine::{self, PlanItem};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only the instances of this rule.
    #[arg(long)]
    pub rule: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Per rule and course: how many instances are in each state, and the most common
    /// reasons.
    #[arg(long)]
    pub summary: bool,
    /// Only the schedule rules (T6): each one's next instant, the latest served, and whom
    /// an instant now would reach (the table shows them above the instances too).
    #[arg(long)]
    pub schedules: bool,
}

/// The schedule rules as `plan` shows them (the templates give a digest its language).
async fn schedule_lines(
    app: &App,
    store: &crate::store::Store,
    rule: Option<&str>,
) -> anyhow::Result<Vec<engine::schedule::Line>> {
    if !app
        .rules
        .actions
        .iter()
        .any(|r| r.event == crate::rules::action::RuleEvent::Schedule)
    {
        return Ok(Vec::new());
    }
    let templates = crate::render::Templates::load(&app.config.templates)
        .map_err(|_| anyhow::anyhow!("the templates have errors (run `registrar check`)"))?;
    let env = engine::fire::Env {
        rules: &app.rules,
        templates: &templates,
        office: &app.config.office,
        tz: app.config.timezone,
        locale: None,
    };
    Ok(engine::schedule::plan(store, &env, app.now, rule).await?)
}

fn write_schedules(out: &mut impl Write, lines: &[engine::schedule::Line]) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(out, "SCHEDULE RULES")?;
    for l in lines {
        let now = match (l.reached_now, l.digest_now) {
            (Some(n), _) => format!("an instant now would reach {n}"),
            (_, Some(true)) => "a digest now would be sent".into(),
            (_, Some(false)) => "a digest now would be empty (not sent)".into(),
            _ => String::new(),
        };
        writeln!(
            out,
            "{} ({}, \"{}\"): next {}; last {}; {now}",
            l.rule,
            l.data_group,
            l.schedule,
            l.next
                .as_deref()
                .map(|d| d.get(..16).unwrap_or(d).replace('T', " "))
                .unwrap_or_else(|| "never".into()),
            l.last
                .as_deref()
                .map(|d| d.get(..16).unwrap_or(d).replace('T', " "))
                .unwrap_or_else(|| "none yet".into()),
        )?;
    }
    writeln!(out)
}

pub async fn run(app: &App, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(r) = &args.rule
        && app.rules.action(r).is_none()
    {
        anyhow::bail!("unknown rule {r:?} (see `registrar check` for the rules loaded)");
    }
    let store = app.store().await?;
    let tz = app.config.timezone;
    engine::ingest(&store, &app.rules, tz, app.now).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.schedules {
        let lines = schedule_lines(app, &store, args.rule.as_deref()).await?;
        store.close().await;
        match args.format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &lines)?;
                writeln!(out)?;
            }
            Format::Table if lines.is_empty() => writeln!(out, "no schedule rules")?,
            Format::Table => write_schedules(&mut out, &lines)?,
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.summary {
        let rows = engine::summary(&store, &app.rules, tz, app.now, args.rule.as_deref()).await?;
        store.close().await;
        match args.format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            }
            Format::Table => {
                if rows.is_empty() {
                    writeln!(out, "no action instances")?;
                }
                let width = terminal_width();
                for r in &rows {
                    for (i, line) in wrap(&r.to_string(), width.saturating_sub(4).max(40))
                        .into_iter()
                        .enumerate()
                    {
                        writeln!(out, "{}{line}", if i == 0 { "" } else { "    " })?;
                    }
                }
            }
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        Format::Json => {
            // Streamed: a plan of millions of instances is never held in memory.
            let mut first = true;
            let mut failed: Option<std::io::Error> = None;
            engine::plan_each(
                &store,
                &app.rules,
                tz,
                app.now,
                args.rule.as_deref(),
                |item| {
                    if failed.is_some() {
                        return;
                    }
                    let sep = if first { "[\n" } else { ",\n" };
                    first = false;
                    let written = out.write_all(sep.as_bytes()).and_then(|()| {
                        serde_json::to_writer_pretty(&mut out, &item).map_err(std::io::Error::other)
                    });
                    if let Err(e) = written {
                        failed = Some(e);
                    }
                },
            )
            .await?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            writeln!(out, "{}", if first { "[]" } else { "\n]" })?;
        }
        Format::Table => {
            let lines = schedule_lines(app, &store, args.rule.as_deref()).await?;
            write_schedules(&mut out, &lines)?;
            let items = engine::plan(&store, &app.rules, tz, app.now, args.rule.as_deref()).await?;
            write_table(&mut out, &items)?;
        }
    }
    out.flush()?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The width to fit: `COLUMNS`, else 120 on a terminal and 160 in a pipe.
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(if std::io::stdout().is_terminal() {
            120
        } else {
            160
        })
}

/// `text` in lines of at most `width` characters, broken at spaces (a word longer than
/// the width gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let fits = line.chars().count() + 1 + word.chars().count() <= width;
        if !line.is_empty() && !fits {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn write_table(out: &mut impl Write, items: &[PlanItem]) -> std::io::Result<()> {
    if items.is_empty() {
        return writeln!(out, "nothing planned: no action instance is waiting or due");
    }
    let width = terminal_width();
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|i| {
            [
                i.id.map_or_else(|| "-".into(), |id| id.to_string()),
                clip(&i.rule, 28),
                clip(&i.course, 16),
                format!("{}#{}", clip(&i.person, 14), i.cycle),
                i.due
                    .as_deref()
                    .map(|d| d.get(..16).unwrap_or(d).replace('T', " "))
                    .unwrap_or_else(|| "-".into()),
                i.state.as_str().to_string(),
            ]
        })
        .collect();
    let head = ["ID", "RULE", "COURSE", "PERSON#CYCLE", "DUE", "STATE"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (k, cell) in r.iter().enumerate() {
            w[k] = w[k].max(cell.chars().count());
        }
    }
    let used: usize = w.iter().sum::<usize>() + 2 * w.len();
    let why_width = width.saturating_sub(used).max(30);
    let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
    let line = |cells: [&str; 6], why: &str| {
        let mut l = String::new();
        for (k, c) in cells.iter().enumerate() {
            l.push_str(&pad(c, w[k]));
            l.push_str("  ");
        }
        l.push_str(why);
        l.trim_end().to_string()
    };
    writeln!(out, "{}", line(head, "WHY"))?;
    for (r, item) in rows.iter().zip(items) {
        let cells = [
            r[0].as_str(),
            r[1].as_str(),
            r[2].as_str(),
            r[3].as_str(),
            r[4].as_str(),
            r[5].as_str(),
        ];
        // Every reason whole: long ones wrap under the WHY column.
        let mut why_lines = item.reasons.iter().flat_map(|reason| {
            wrap(reason, why_width)
                .into_iter()
                .enumerate()
                .map(|(i, l)| if i == 0 { l } else { format!("  {l}") })
        });
        writeln!(
            out,
            "{}",
            line(cells, &why_lines.next().unwrap_or_default())
        )?;
        for more in why_lines {
            writeln!(out, "{}", line(["", "", "", "", "", ""], &more))?;
        }
    }
    let count = |s: engine::PlanState| items.iter().filter(|i| i.state == s).count();
    let cannot = items.iter().filter(|i| i.cannot_fire).count();
    writeln!(
        out,
        "\n{} instance(s): {} due, {} waiting{}, {} awaiting approval, {} retrying, {} failed, {} cancelled, {} expired",
        items.len(),
        count(engine::PlanState::Due),
        count(engine::PlanState::Waiting),
        if cannot > 0 {
            format!(" ({cannot} of them cannot fire as the data stands)")
        } else {
            String::new()
        },
        count(engine::PlanState::AwaitingApproval),
        count(engine::PlanState::Retrying),
        count(engine::PlanState::Failed),
        count(engine::PlanState::Cancelled),
        count(engine::PlanState::Expired)
    )
}
