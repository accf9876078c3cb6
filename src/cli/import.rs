//! `registrar import KIND FILE.csv [--dry-run]`.

use super::App;
use crate::import::{self, Kind, Options};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// What the file holds.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The CSV file, with a header row.
    pub file: PathBuf,
    /// Check the file and report what would change, without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// The field separator: comma, semicolon or tab (a single character). Without it,
    /// a semicolon when the header row has more semicolons than commas, else a comma.
    #[arg(long, value_parser = delimiter)]
    pub delimiter: Option<u8>,
}

fn delimiter(s: &str) -> Result<u8, String> {
    match s {
        "comma" | "," => Ok(b','),
        "semicolon" | ";" => Ok(b';'),
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        "pipe" | "|" => Ok(b'|'),
        other => Err(format!(
            "{other:?} is not a separator: use comma, semicolon, tab or pipe"
        )),
    }
}

pub async fn run(app: &App, args: Args) -> anyhow::Result<ExitCode> {
    let store = app.store().await?;
    let bar = (std::io::stderr().is_terminal()
        && std::fs::metadata(&args.file).is_ok_and(|m| m.len() > 1 << 20))
    .then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let opts = Options {
        rules: &app.rules,
        tz: app.config.timezone,
        now: app.now,
        actor: &app.actor,
        dry_run: args.dry_run,
        progress: Some(&progress),
        delimiter: args.delimiter,
    };
    let report = import::import_file(&store, args.kind, &args.file, &opts).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    store.close().await;
    let t = report.tally;
    let shown = args.file.display();
    if !report.errors.is_empty() {
        for e in &report.errors {
            eprintln!("{shown}: {e}");
        }
        eprintln!(
            "registrar: {} problem{} in {shown}; nothing was imported",
            report.errors.len(),
            if report.errors.len() == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    let head = if report.committed {
        "imported"
    } else {
        "dry run, nothing changed; would import"
    };
    say!(
        "{shown}: {head} {} row{} of {}: {} new, {} changed, {} unchanged{}",
        report.rows,
        if report.rows == 1 { "" } else { "s" },
        args.kind.name(),
        t.created,
        t.updated,
        t.unchanged,
        match (t.completed, t.certificates) {
            (0, 0) => String::new(),
            (c, 0) => format!("; {c} participant(s) completed"),
            (c, n) => format!("; {c} participant(s) completed, {n} certificate(s) issued"),
        }
    );
    Ok(ExitCode::SUCCESS)
}
