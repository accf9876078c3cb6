//! `registrar plan [--now T] [--rule ID] [--format table|json]`: every action instance not
//! yet delivered, when it is due, and why the waiting ones wait.

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

fn write_table(out: &mut impl Write, items: &[PlanItem]) -> std::io::Result<()> {
    if items.is_empty() {
        return writeln!(out, "nothing planned: no action instance is waiting or due");
    }
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(if std::io::stdout().is_terminal() {
            120
        } else {
            160
        });
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|i| {
            [
                i.id.to_string(),
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
        let mut reasons = item.reasons.iter();
        writeln!(
            out,
            "{}",
            line(
                cells,
                &clip(reasons.next().map_or("", String::as_str), why_width)
            )
        )?;
        for more in reasons {
            writeln!(
                out,
                "{}",
                line(["", "", "", "", "", ""], &clip(more, why_width))
            )?;
        }
    }
    let count = |s: engine::PlanState| items.iter().filter(|i| i.state == s).count();
    writeln!(
        out,
        "\n{} instance(s): {} due, {} waiting, {} awaiting approval, {} cancelled, {} expired",
        items.len(),
        count(engine::PlanState::Due),
        count(engine::PlanState::Waiting),
        count(engine::PlanState::AwaitingApproval),
        count(engine::PlanState::Cancelled),
        count(engine::PlanState::Expired)
    )
}
