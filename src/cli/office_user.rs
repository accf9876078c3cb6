//! `registrar office-user add|passwd|remove|list NAME`: the accounts of the office's pages
//! (`serve`, /office/). The password is read from the terminal without echo (twice), or
//! from standard input with `--password-stdin`; only its argon2id hash is stored.

use super::App;
use crate::office::auth;
use crate::store::office;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum OfficeUser {
    /// Create an account and set its password.
    Add(NameArgs),
    /// Set a new password (unlocks the account, ends its sessions).
    Passwd(NameArgs),
    /// Delete an account and end its sessions.
    Remove {
        /// The account name.
        name: String,
    },
    /// The accounts.
    List,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// The account name (letters, digits, `.`, `-`, `_`, `@`; at most 64).
    pub name: String,
    /// Read the password from the first line of standard input (for scripts).
    #[arg(long)]
    pub password_stdin: bool,
}

/// A line from the terminal with echo off (`stty -echo`), restored afterwards.
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success())
    };
    let hidden = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
    }
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn password(args: &NameArgs) -> anyhow::Result<String> {
    let password = if args.password_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = read_hidden(&format!("password for {}: ", args.name))?;
        let again = read_hidden("again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing was changed");
        }
        first
    };
    if password.chars().count() < auth::MIN_PASSWORD {
        anyhow::bail!(
            "the password is too short: at least {} characters; nothing was changed",
            auth::MIN_PASSWORD
        );
    }
    Ok(password)
}

pub async fn run(app: &App, cmd: OfficeUser) -> anyhow::Result<ExitCode> {
    match cmd {
        OfficeUser::Add(args) | OfficeUser::Passwd(args) if !auth::valid_name(&args.name) => {
            anyhow::bail!(
                "{:?} is not an account name: use 1-64 letters, digits, '.', '-', '_' or '@'",
                args.name
            );
        }
        OfficeUser::Add(args) => {
            let hash = auth::hash_password(&password(&args)?)?;
            let store = app.store().await?;
            let added = crate::store::transact!(store, |tx| office::add_user(
                tx, &args.name, &hash, app.now
            )
            .await);
            store.close().await;
            if !added? {
                anyhow::bail!(
                    "there is an account {:?} already (a new password: registrar office-user passwd {})",
                    args.name,
                    args.name
                );
            }
            say!(
                "account {} added: sign in at /office/ of `registrar serve` ({})",
                args.name,
                app.config.http.listen
            );
        }
        OfficeUser::Passwd(args) => {
            let hash = auth::hash_password(&password(&args)?)?;
            let store = app.store().await?;
            let changed = crate::store::transact!(store, |tx| office::set_password(
                tx, &args.name, &hash, app.now
            )
            .await);
            store.close().await;
            if !changed? {
                anyhow::bail!(
                    "there is no account {:?} (see registrar office-user list)",
                    args.name
                );
            }
            say!("password of {} changed; its sessions ended", args.name);
        }
        OfficeUser::Remove { name } => {
            let store = app.store().await?;
            let removed = crate::store::transact!(store, |tx| office::remove_user(tx, &name).await);
            store.close().await;
            if !removed? {
                anyhow::bail!("there is no account {name:?} (see registrar office-user list)");
            }
            say!("account {name} removed");
        }
        OfficeUser::List => {
            let store = app.store().await?;
            let mut tx = store.begin_read().await?;
            let users = office::users(&mut tx).await?;
            tx.rollback().await?;
            store.close().await;
            if users.is_empty() {
                say!("no accounts (add one: registrar office-user add NAME)");
            }
            for (name, created, locked) in users {
                let locked = locked
                    .filter(|t| *t > app.now)
                    .map(|t| {
                        format!(
                            "  locked until {}",
                            crate::domain::time::local_rfc3339(t, app.config.timezone)
                        )
                    })
                    .unwrap_or_default();
                say!(
                    "{name}  added {}{locked}",
                    crate::domain::time::local_rfc3339(created, app.config.timezone)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
