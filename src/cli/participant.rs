//! `registrar participant remove|reset|reassign|equivalency --course C --person P`.

use super::App;
use crate::change::{Work, WriteError};
use std::process::ExitCode;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Action {
    /// Delete the booking (only before the course's first part starts).
    Remove,
    /// Back to registered: new cycle, certificate revoked, completion cleared.
    Reset,
    /// Take the course again: like reset, and attendance and part results are cleared.
    Reassign,
    /// Complete by equivalency, without the course's requirements.
    Equivalency,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_enum)]
    pub action: Action,
    /// The course id.
    #[arg(long)]
    pub course: String,
    /// The person id.
    #[arg(long)]
    pub person: String,
}

pub async fn run(app: &App, args: Args) -> anyhow::Result<ExitCode> {
    let store = app.store().await?;
    let source = format!("participant {:?}", args.action).to_lowercase();
    let (c, p) = (args.course.as_str(), args.person.as_str());
    let done = crate::store::transact!(store, |tx| {
        let mut work = Work::new(
            &app.rules,
            app.config.timezone,
            app.now,
            &app.actor,
            &source,
        );
        let message = match args.action {
                Action::Remove => work.remove(tx, c, p).await.map(|()| format!("removed {p} from course {c}")),
                Action::Reset => work.reset(tx, c, p).await.map(|cycle| {
                    format!("reset {p} in course {c} to registered; cycle {cycle} started, its certificate (if any) revoked")
                }),
                Action::Reassign => work.reassign(tx, c, p).await.map(|cycle| {
                    format!("reassigned {p} to course {c}; cycle {cycle} started with attendance cleared")
                }),
                Action::Equivalency => work.equivalency(tx, c, p).await.map(|_| format!("{p} completed course {c} by equivalency")),
            }?;
        work.finish(tx).await?;
        Ok::<_, WriteError>(message)
    });
    store.close().await;
    match done {
        Ok(message) => {
            say!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Err(WriteError::Sql(e)) => Err(e.into()),
        Err(e) => {
            eprintln!("registrar: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
