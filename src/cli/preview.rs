//! `registrar preview --rule ID --course C --person P [--out DIR]`: writes the exact
//! message the rule would send to this participant as an .eml file; sends nothing.

use super::App;
use crate::mail;
use crate::render::Templates;
use anyhow::Context;
use lettre::message::Mailbox;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The action rule id.
    #[arg(long)]
    pub rule: String,
    /// The course id.
    #[arg(long)]
    pub course: String,
    /// The person id.
    #[arg(long)]
    pub person: String,
    /// Where to write the .eml file.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
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
    let mut tx = store.begin_read().await?;
    let ctx = crate::status::email_context(
        &mut tx,
        &app.rules,
        &app.config.office,
        app.config.timezone,
        app.now,
        &args.course,
        &args.person,
        None,
    )
    .await?;
    // Whether the rule's conditions hold for this participant now, said next to the preview.
    let participants = crate::status::course_participants(
        &mut tx,
        &app.rules,
        app.config.timezone,
        app.now,
        &args.course,
    )
    .await?;
    let unmet = participants.and_then(|(course, people)| {
        people
            .into_iter()
            .find(|p| p.person_id == args.person)
            .map(|p| {
                let subject = crate::engine::conditions::Subject {
                    course_status: course.status,
                    course_type: &course.type_id,
                    result: p.result,
                    attendance: p.attendance,
                    passing: p.passing,
                };
                crate::engine::conditions::unmet(&rule.conditions, &subject)
            })
    });
    tx.rollback().await?;
    store.close().await;
    let Some(ctx) = ctx else {
        anyhow::bail!(
            "{} is not a participant of course {:?}",
            args.person,
            args.course
        );
    };
    let rendered = templates
        .render(rule, &ctx)
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    let to: Vec<Mailbox> = mail::recipients(&rule.email.to, &ctx).map_err(|why| {
        anyhow::anyhow!(
            "{why}: this message cannot be sent (the delivery would fail with that reason)"
        )
    })?;
    let cycle = ctx["enrolment"]["cycle"].as_i64().unwrap_or(1);
    let id = mail::message_id(
        &rule.id.value,
        &args.course,
        &args.person,
        cycle,
        mail::domain_of(&app.config.office.from),
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // The certificate PDF, attached as it would be, and written next to the .eml. Before
    // the certificate is issued it shows the placeholders of the context.
    let mut attachments = Vec::new();
    if crate::engine::fire::needs_certificate(rule) {
        let type_id = ctx["course"]["type"].as_str().unwrap_or_default();
        let Some(layout) = app
            .rules
            .course_types
            .get(type_id)
            .and_then(|t| t.certificate.as_ref())
        else {
            anyhow::bail!(
                "rule {} attaches the certificate, but course type {type_id:?} has no certificate block",
                rule.id.value
            );
        };
        let bytes = templates
            .render_pdf(&layout.template, &ctx)
            .map_err(|p| anyhow::anyhow!("{p}"))?;
        let filename = mail::certificate_file_name(&args.course, &args.person);
        let pdf = args.out.join(&filename);
        std::fs::write(&pdf, &bytes).with_context(|| format!("cannot write {}", pdf.display()))?;
        println!("{}", pdf.display());
        attachments.push(mail::Attached {
            filename,
            content_type: "application/pdf",
            bytes,
        });
    }
    let message = mail::build(&app.config.office.from, &to, &rendered, &id, &attachments)
        .map_err(anyhow::Error::msg)?;
    let path = args.out.join(format!(
        "{}__{}__{}.eml",
        mail::safe(&rule.id.value),
        mail::safe(&args.course),
        mail::safe(&args.person)
    ));
    std::fs::write(&path, message.formatted())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", path.display());
    println!(
        "  To:      {}",
        to.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  Subject: {}", rendered.subject);
    println!(
        "  Parts:   {}{}",
        if rendered.text.is_some() {
            "text + HTML"
        } else {
            "HTML"
        },
        if attachments.is_empty() {
            ""
        } else {
            " + certificate PDF"
        }
    );
    match unmet.unwrap_or_default().as_slice() {
        [] => println!("  The rule's conditions hold for {} now.", args.person),
        reasons => println!(
            "  Not sent as things stand: {} (this is a preview all the same)",
            reasons.join("; ")
        ),
    }
    Ok(ExitCode::SUCCESS)
}
