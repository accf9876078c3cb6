//! `registrar check`: validates the configuration, the rules and the templates (rendering
//! every email against a sample context), and lists every error at once.

use crate::config::Config;
use crate::render;
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
    let (set, _templates, problems) = render::load_checked(&config);
    if problems.is_empty() {
        println!(
            "{}: ok ({} course type(s), {} certification(s), {} action rule(s); every email rendered against a sample context)",
            config_path.display(),
            set.course_types.len(),
            set.certifications.len(),
            set.actions.len(),
        );
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
