//! The command line (SPEC §4). Each command lives in its own file; this one parses the
//! arguments, loads what every command needs, and maps errors to exit codes:
//! 0 success, 1 a user error (message on stderr), 2 bad usage.

/// `println!` for command output: a closed standard output (`registrar deliveries |
/// head`) is returned as an error (which `main` ends on quietly) instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod certification;
mod check;
mod deliveries;
mod export;
mod import;
mod office_user;
mod participant;
mod plan;
mod preview;
mod tick;

use crate::config::Config;
use crate::rules::{self, RuleSet};
use crate::store::Store;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "registrar",
    version,
    about = "Sends each course participant the email that is due, exactly once."
)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "REGISTRAR_CONFIG",
        default_value = "config.yaml"
    )]
    pub config: PathBuf,
    /// Act as if it were this moment, e.g. to replay or test; default: now. A date, a
    /// local time in the office's time zone (`2026-12-01 09:00`) or RFC 3339.
    #[arg(long, global = true, value_parser = parse_now)]
    pub now: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the configuration, rules and templates; list every error.
    Check,
    /// Create or upgrade the database.
    Migrate,
    /// Import a CSV file; a file with any bad row changes nothing.
    Import(import::Args),
    /// Export data as CSV to standard output.
    #[command(subcommand)]
    Export(export::Export),
    /// Administrator actions on one participant of a course.
    Participant(participant::Args),
    /// The action instances not yet delivered: who gets what when, and why the others wait.
    Plan(plan::Args),
    /// Write the email a rule would send to a participant as an .eml file; sends nothing.
    Preview(preview::Args),
    /// One pass: fire every action due at --now (default: now), deliver, exit.
    Tick,
    /// The daemon: fires and delivers as things fall due; SIGTERM drains, SIGHUP reloads.
    Serve,
    /// Release `execution: manual` action instances (ids from `registrar plan`).
    Approve(deliveries::Ids),
    /// The outbox: queued, sent, retrying and failed deliveries.
    Deliveries(deliveries::Args),
    /// Queue failed deliveries again (ids from `registrar deliveries`).
    Retry(deliveries::Ids),
    /// Certifications: assign a learner, administrator actions, exam and payment, history.
    Certification(certification::Args),
    /// Write a new Ed25519 signing key for Open Badges credentials (mode 0600; never over
    /// an existing file), or print the public key of one (--public).
    Keygen(KeygenArgs),
    /// Accounts of the office's pages (/office/ of `serve`): add, passwd, remove, list.
    #[command(subcommand)]
    OfficeUser(office_user::OfficeUser),
}

#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// The key file (office.signing_key_file).
    pub path: std::path::PathBuf,
    /// Print the public key of an existing key file (for office.retired_public_keys).
    #[arg(long)]
    pub public: bool,
}

/// `registrar keygen`: needs no configuration (the configuration may name the file that
/// does not exist yet).
fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    if args.public {
        let public = crate::credential::public_key_of(&args.path).map_err(anyhow::Error::msg)?;
        say!("{public}");
        return Ok(ExitCode::SUCCESS);
    }
    let public = crate::credential::keygen(&args.path).map_err(anyhow::Error::msg)?;
    say!(
        "wrote {} (mode 0600): the office's Ed25519 signing key",
        args.path.display()
    );
    say!("public key: {public}");
    say!("set office.signing_key_file to it, and keep a backup where only you can read it");
    Ok(ExitCode::SUCCESS)
}

/// `--now` as typed; read in the office's time zone once the config is loaded.
fn parse_now(s: &str) -> Result<String, String> {
    crate::domain::time::parse_instant(s, chrono_tz::UTC, crate::domain::time::DayEdge::Start)
        .map(|_| s.to_string())
}

/// What a command runs with.
pub struct App {
    pub config: Config,
    pub rules: RuleSet,
    pub now: DateTime<Utc>,
    /// Whether --now was given.
    pub now_given: bool,
    pub actor: String,
}

impl App {
    fn load(cli: &Cli) -> anyhow::Result<App> {
        let config = Config::load(&cli.config)?;
        let rules = rules::load(&config.rules, &config.templates).map_err(|e| {
            anyhow::anyhow!("the rules in {} have errors:\n{e}", config.rules.display())
        })?;
        let user = std::env::var("REGISTRAR_ACTOR")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        let now = match &cli.now {
            Some(s) => crate::domain::time::parse_instant(
                s,
                config.timezone,
                crate::domain::time::DayEdge::Start,
            )
            .map_err(anyhow::Error::msg)?,
            None => Utc::now(),
        };
        Ok(App {
            config,
            rules,
            now,
            now_given: cli.now.is_some(),
            actor: format!("cli:{user}"),
        })
    }

    async fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.config.database).await?)
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("registrar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say, and nothing went wrong.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registrar: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: coloured on a terminal; under systemd (JOURNAL_STREAM set) plain,
/// without timestamps, since journald adds its own. `serve` logs at info by default, the
/// other commands only warnings; REGISTRAR_LOG overrides (e.g. `debug`).
fn init_logging(daemon: bool) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("REGISTRAR_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if daemon {
                "info,sqlx=warn"
            } else {
                "warn,sqlx=warn"
            })
        });
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// Whether the error is a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    let json = |j: &serde_json::Error| j.io_error_kind() == Some(BrokenPipe);
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == BrokenPipe
                || io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<serde_json::Error>())
                    .is_some_and(json)
        }) || c.downcast_ref::<serde_json::Error>().is_some_and(json)
            || c.downcast_ref::<csv::Error>().is_some_and(
                |e| matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe),
            )
    })
}

/// The error and its causes, in one message.
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Check = cli.command {
        return Ok(check::run(&cli.config).await);
    }
    if let Command::Keygen(args) = &cli.command {
        return keygen(args);
    }
    let app = App::load(&cli)?;
    match cli.command {
        Command::Migrate => {
            let store = app.store().await.context("while migrating")?;
            say!("database is up to date ({})", store.backend());
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => import::run(&app, args).await,
        Command::Export(e) => export::run(&app, e).await,
        Command::Participant(args) => participant::run(&app, args).await,
        Command::Plan(args) => plan::run(&app, args).await,
        Command::Preview(args) => preview::run(&app, args).await,
        Command::Tick => tick::tick(&app).await,
        Command::Serve => tick::serve(&app).await,
        Command::Approve(ids) => deliveries::approve(&app, ids).await,
        Command::Deliveries(args) => deliveries::list(&app, args).await,
        Command::Retry(ids) => deliveries::retry(&app, ids).await,
        Command::Certification(args) => certification::run(&app, args).await,
        Command::OfficeUser(cmd) => office_user::run(&app, cmd).await,
        Command::Check | Command::Keygen(_) => Ok(ExitCode::SUCCESS),
    }
}
