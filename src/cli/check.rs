//! `registrar check`: validates the configuration, the rules and the templates, and lists
//! every error at once.

use crate::config::Config;
use crate::rules;
use std::path::Path;
use std::process::ExitCode;

pub fn run(config_path: &Path) -> ExitCode {
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
    match rules::load(&config.rules, &config.templates) {
        Ok(set) => {
            println!(
                "{}: ok ({} course type(s), {} action rule(s); templates in {})",
                config_path.display(),
                set.course_types.len(),
                set.actions.len(),
                config.templates.display()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("registrar: {} error(s) in the rules", errors.0.len());
            ExitCode::FAILURE
        }
    }
}
