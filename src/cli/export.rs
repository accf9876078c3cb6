//! `registrar export attendance --course ID`: the course's participants with their
//! derived statuses, as CSV on standard output.

use super::App;
use crate::status;
use anyhow::Context;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Export {
    /// Attendance and derived statuses of every participant of a course.
    Attendance {
        /// The course id.
        #[arg(long)]
        course: String,
    },
}

/// The fixed columns; one column per part follows.
pub const COLUMNS: &[&str] = &[
    "person_id",
    "full_name",
    "email",
    "result",
    "walk_in",
    "cycle",
    "attended",
    "required",
    "attendance_percent",
    "attendance_requirement_achieved",
    "passing_obligation_passed",
    "completed_at",
    "certificate_number",
    "expiry_status",
];

pub async fn run(app: &App, e: Export) -> anyhow::Result<ExitCode> {
    let Export::Attendance { course } = e;
    let store = app.store().await?;
    let mut tx = store.begin_read().await?;
    let found =
        status::course_participants(&mut tx, &app.rules, app.config.timezone, app.now, &course)
            .await?;
    tx.rollback().await?;
    store.close().await;
    let Some((info, rows)) = found else {
        anyhow::bail!("unknown course {course:?}");
    };
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    header.extend(info.parts.iter().map(|p| p.rule.id.clone()));
    out.write_record(&header).context("while writing CSV")?;
    let tz = app.config.timezone;
    for p in rows {
        let mut rec = vec![
            p.person_id,
            p.full_name,
            p.email.unwrap_or_default(),
            p.result.to_string(),
            p.walk_in.to_string(),
            p.cycle.to_string(),
            p.attendance.attended.to_string(),
            p.attendance.required.to_string(),
            p.attendance
                .percent()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            p.attendance.achieved.to_string(),
            p.passing.met.to_string(),
            p.completed_at
                .map(|t| crate::domain::time::local_rfc3339(t, tz))
                .unwrap_or_default(),
            p.certificate_number.unwrap_or_default(),
            p.expiry.map(|s| s.to_string()).unwrap_or_default(),
        ];
        rec.extend(p.marks.iter().map(|m| m.to_string()));
        out.write_record(&rec).context("while writing CSV")?;
    }
    out.flush().context("while writing CSV")?;
    Ok(ExitCode::SUCCESS)
}
