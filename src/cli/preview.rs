//! `registrar preview --rule ID --course C --person P [--out DIR]`: writes the exact
//! message the rule would send to this participant as an .eml file; sends nothing. An
//! office digest (`data_group: office`) needs only `--rule`: the digest as it would be
//! sent now.

use super::App;
use crate::engine::fire::{Env, preview};
use crate::engine::verdict::Decision;
use crate::mail;
use crate::render::Templates;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The action rule id.
    #[arg(long)]
    pub rule: String,
    /// The course id (or, for a certification rule, the certification id); not for an
    /// office digest.
    #[arg(long)]
    pub course: Option<String>,
    /// The person id; not for an office digest.
    #[arg(long)]
    pub person: Option<String>,
    /// Where to write the .eml file.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Render as if the participant's locale were this (e.g. `en`, `nl-BE`).
    #[arg(long)]
    pub locale: Option<String>,
}

pub async fn run(app: &App, args: Args) -> anyhow::Result<ExitCode> {
    let Some(rule) = app.rules.action(&args.rule) else {
        anyhow::bail!(
            "unknown rule {:?} (see `registrar check` for the rules loaded)",
            args.rule
        );
    };
    let templates = Templates::load(&app.config.templates).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the templates have errors (run `registrar check`):\n{}",
            lines.join("\n")
        )
    })?;
    let store = app.store().await?;
    // Events not yet turned into action instances are, so the preview names its instance.
    crate::engine::ingest(&store, &app.rules, app.config.timezone, app.now).await?;
    let locale = match &args.locale {
        Some(l) => Some(crate::lang::Lang::parse(l).ok_or_else(|| {
            anyhow::anyhow!("--locale {l:?} is not a language tag (e.g. nl, en, de or nl-BE)")
        })?),
        None => None,
    };
    let env = Env {
        rules: &app.rules,
        templates: &templates,
        office: &app.config.office,
        tz: app.config.timezone,
        locale,
    };
    if rule.data_group == crate::rules::action::DataGroup::Office {
        let digest = crate::engine::schedule::preview_digest(&store, &env, rule, app.now).await?;
        store.close().await;
        let Some(message) = digest else {
            say!(
                "{}: nothing to report now (no failed delivery, none awaiting approval, no certificate issued since the last digest): an empty digest is not sent",
                rule.id.value
            );
            return Ok(ExitCode::SUCCESS);
        };
        let message = message.map_err(|why| {
            anyhow::anyhow!(
                "{why}: this digest cannot be sent (the delivery would fail with that reason)"
            )
        })?;
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        let path = args
            .out
            .join(format!("{}.eml", mail::key_name(&[&rule.id.value], None)));
        std::fs::write(&path, &message.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        say!("{}", path.display());
        say!("  To:      {}", message.recipients);
        say!("  Subject: {}", message.subject);
        if let Some(next) = rule.cron().and_then(|c| c.next_after(app.now, env.tz)) {
            say!(
                "  Sent at the next instant of {:?}: {}",
                rule.cron().map(|c| c.as_str()).unwrap_or_default(),
                crate::domain::time::local_rfc3339(next, env.tz)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(course), Some(person)) = (args.course.clone(), args.person.clone()) else {
        anyhow::bail!("--course and --person name the participant to preview the message for");
    };
    let args = Resolved {
        course,
        person,
        out: args.out,
    };
    // The same composer and the same verdict as the pass that would send it.
    let preview = preview(&store, &env, rule, &args.course, &args.person, app.now).await?;
    store.close().await;
    let Some(preview) = preview else {
        anyhow::bail!(
            "{} is not a {} of {:?}",
            args.person,
            if rule.data_group == crate::rules::action::DataGroup::CertificationLearner {
                "learner"
            } else {
                "participant of course"
            },
            args.course
        );
    };
    let message = preview.message.map_err(|why| {
        anyhow::anyhow!(
            "{why}: this message cannot be sent (the delivery would fail with that reason)"
        )
    })?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // The attachments (certificate PDF, credential), as attached, written next to the .eml.
    for (filename, bytes) in &message.attachments {
        let file = args.out.join(filename);
        std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
        say!("{}", file.display());
    }
    let path = args.out.join(format!(
        "{}.eml",
        mail::key_name(&[&rule.id.value, &args.course, &args.person], None)
    ));
    std::fs::write(&path, &message.bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    say!("{}", path.display());
    say!("  To:      {}", message.recipients);
    say!("  Subject: {}", message.subject);
    say!(
        "  Parts:   {}{}",
        if rule_has_text(&templates, rule) {
            "text + HTML"
        } else {
            "HTML"
        },
        message
            .attachments
            .iter()
            .map(|(name, _)| if name.ends_with(".pdf") {
                " + certificate PDF"
            } else {
                " + credential"
            })
            .collect::<String>()
    );
    let who = &args.person;
    let instance = preview
        .instance
        .map(|id| format!(" (action {id})"))
        .unwrap_or_default();
    let reasons = preview.verdict.texts().join("; ");
    if let Some(cron) = rule.cron() {
        // A schedule rule: sent at its instants while the subject is in the window.
        let next = cron
            .next_after(app.now, app.config.timezone)
            .map(|t| crate::domain::time::local_rfc3339(t, app.config.timezone))
            .unwrap_or_else(|| "never".into());
        match preview.verdict.decision {
            Decision::Fire | Decision::AwaitApproval => say!(
                "  Schedule \"{}\": the conditions hold now; the next instant ({next}) sends it to {who} if that falls in the rule's window.",
                cron.as_str()
            ),
            _ => say!(
                "  Schedule \"{}\": not sent as things stand: {reasons}; this is a preview all the same (next instant {next}).",
                cron.as_str()
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    match preview.verdict.decision {
        Decision::Fire => say!("  Due now: the next pass sends it to {who}{instance}."),
        Decision::AwaitApproval => {
            say!("  Due now, and waits for `registrar approve` (execution: manual){instance}.")
        }
        Decision::Wait => {
            say!("  Not sent as things stand: {reasons}{instance}; this is a preview all the same")
        }
        Decision::Expire => {
            say!("  Not sent: its time ran out (expires_after) while {reasons}{instance}")
        }
        Decision::Cancel => say!("  Not sent: {reasons}{instance}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The participant named on the command line.
struct Resolved {
    course: String,
    person: String,
    out: PathBuf,
}

fn rule_has_text(templates: &Templates, rule: &crate::rules::action::ActionRule) -> bool {
    templates.has_text(&rule.email.template.value)
}
