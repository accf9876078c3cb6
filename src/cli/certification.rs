//! `registrar certification ACTION --certification ID --person P`: assign, the
//! administrator actions of SPEC §2, recorded exams and payments; `history` and `list`.

use super::App;
use crate::change::certifications::{self, CertError, Command};
use crate::domain::certification::AdminAction;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// assign, record-payment, record-exam, override-payment, override-training,
    /// override-exam, approve, revoke-access, force-recertification, permanent-revoke,
    /// restore-access, remove; or history, list (underscores are accepted for hyphens).
    pub action: String,
    /// The certification id (rules directory).
    #[arg(long)]
    pub certification: Option<String>,
    /// The person id.
    #[arg(long)]
    pub person: Option<String>,
    /// Why (kept in the history).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// record-exam: the result.
    #[arg(long)]
    pub passed: Option<bool>,
    /// record-exam: a test-out exam (a pass is permanent).
    #[arg(long)]
    pub test_out: bool,
}

pub async fn run(app: &App, args: Args) -> anyhow::Result<ExitCode> {
    let word = args.action.replace('-', "_");
    let store = app.store().await?;
    if word == "list" {
        let rows =
            crate::store::certifications::list(&store, args.certification.as_deref()).await?;
        if rows.is_empty() {
            say!("no learners");
        }
        for r in rows {
            say!(
                "{:<24} {:<16} {:<17} cycle {}{}",
                r.certification_id,
                r.person_id,
                r.status,
                r.cycle,
                r.valid_until
                    .map(|u| format!(
                        ", valid until {}",
                        crate::render::long_date(u, app.config.timezone)
                    ))
                    .unwrap_or_default()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(person) = args.person.as_deref() else {
        anyhow::bail!("--person is required for `certification {}`", args.action);
    };
    if word == "history" {
        let mut tx = store.begin_read().await?;
        let rows =
            crate::store::history::of_learner(&mut tx, person, args.certification.as_deref())
                .await?;
        tx.rollback().await?;
        if rows.is_empty() {
            say!("no certification history for {person}");
        }
        for h in rows {
            let status = |v: &Option<String>| {
                v.as_deref()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|j| j["status"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "-".into())
            };
            say!(
                "{}  {:<20} {:<22} {:>17} -> {:<17} by {}{}",
                crate::domain::time::local_rfc3339(h.at, app.config.timezone),
                h.course_id.unwrap_or_default(),
                h.change,
                status(&h.before),
                status(&h.after),
                h.actor,
                if h.source.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", h.source)
                }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(certification) = args.certification.as_deref() else {
        anyhow::bail!(
            "--certification is required for `certification {}`",
            args.action
        );
    };
    let command = match word.as_str() {
        "assign" => Command::Assign,
        "record_payment" => Command::RecordPayment,
        "record_exam" => Command::RecordExam {
            passed: args.passed.ok_or_else(|| {
                anyhow::anyhow!("record-exam needs --passed true or --passed false")
            })?,
            test_out: args.test_out,
        },
        other => Command::Admin(other.parse::<AdminAction>().map_err(|e| {
            anyhow::anyhow!("{e}; or assign, record-payment, record-exam, history, list")
        })?),
    };
    match certifications::run(
        &store,
        &app.rules,
        app.config.timezone,
        app.now,
        &app.actor,
        &args.reason,
        certification,
        person,
        command,
    )
    .await
    {
        Ok(Some(status)) => say!("{person} in {certification}: {status}"),
        Ok(None) => {
            say!("{person} removed from {certification} (the history keeps the record)")
        }
        Err(CertError::Refused(why) | CertError::Missing(why)) => {
            eprintln!("registrar: {why}");
            return Ok(ExitCode::FAILURE);
        }
        Err(CertError::Db(e)) => return Err(e.into()),
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
