//! `registrar check`: validates the configuration, the rules and the templates (rendering
//! every email against a sample context), and lists every error at once. When the
//! database exists it also looks at it: action instances whose conditions cannot become
//! true as the data stands are warnings (printed; the exit code stays 0).

use crate::config::{Config, DatabaseUrl};
use crate::render;
use crate::rules::RuleSet;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config_path: &Path) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            for p in &e.problems {
                eprintln!("{p}");
            }
            eprintln!(
                "registrar: the configuration has errors; rules and templates were not checked"
            );
            return ExitCode::FAILURE;
        }
    };
    let (set, _templates, problems) = render::load_checked(&config);
    if problems.is_empty() {
        say(format_args!(
            "{}: ok ({} course type(s), {} certification(s), {} action rule(s); every email rendered against a sample context)",
            config_path.display(),
            set.course_types.len(),
            set.certifications.len(),
            set.actions.len(),
        ));
        let warnings = against_the_database(&config, &set).await;
        for w in &warnings {
            say(format_args!("warning: {w}"));
        }
        if !warnings.is_empty() {
            say(format_args!(
                "{} warning(s): these instances will not send unless the data or the rule changes (see `registrar plan --summary`)",
                warnings.len()
            ));
        }
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        eprintln!("{p}");
    }
    eprintln!(
        "registrar: {} error(s) in the rules and templates",
        problems.len()
    );
    ExitCode::FAILURE
}

/// Per rule and course, the waiting instances that cannot fire as the data stands, with
/// why. Nothing when there is no database yet (an SQLite file is not created by `check`)
/// or it cannot be reached (said in one line).
async fn against_the_database(config: &Config, rules: &RuleSet) -> Vec<String> {
    if let DatabaseUrl::Sqlite(path) = &config.database
        && !path.exists()
    {
        return Vec::new();
    }
    // Read as it is: `check` never migrates (a new binary's check before a deploy must
    // not upgrade the database the running one uses).
    let store = match crate::store::Store::open_current(&config.database).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            say(format_args!(
                "note: the database was not checked: it is not at this registrar's version (`registrar migrate` upgrades it)"
            ));
            return Vec::new();
        }
        Err(e) => {
            say(format_args!("note: the database was not checked: {e}"));
            return Vec::new();
        }
    };
    let rows =
        crate::engine::summary(&store, rules, config.timezone, chrono::Utc::now(), None).await;
    store.close().await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            say(format_args!("note: the database was not checked: {e}"));
            return Vec::new();
        }
    };
    rows.into_iter()
        .filter(|r| r.cannot_fire > 0)
        .map(|r| {
            let why: Vec<String> = r
                .reasons
                .get("waiting")
                .into_iter()
                .flatten()
                .filter(|c| c.cannot_change)
                .map(|c| format!("{} ({})", c.reason, c.count))
                .collect();
            format!(
                "{} / {}: {} waiting instance(s) cannot fire as the data stands: {}",
                r.rule,
                r.course,
                r.cannot_fire,
                why.join(", ")
            )
        })
        .collect()
}

/// A line on standard output; a closed one is no error for `check` (its exit code says it).
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
