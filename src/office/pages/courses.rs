//! Courses, and one course's participants with the export's statuses and the plan's reasons.

use super::*;

pub async fn courses(State(s): State<ApiState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let search = get(&q, "q");
    let skip = page_number(&q);
    let read = async {
        let mut tx = s.store.begin_read().await?;
        let rows = catalogue::course_page(&mut tx, search, skip * PAGE, PAGE + 1).await?;
        let ids: Vec<String> = rows.iter().map(|c| c.id.clone()).collect();
        let counts = enrolments::counts(&mut tx, &ids).await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>((rows, counts))
    };
    let (mut rows, counts) = match read.await {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let mut b = String::new();
    b.push_str(&search_form(
        "/office/courses",
        ui.t("Courses", "Cursussen"),
        ui.t("Course id or name", "Cursuscode of naam"),
        search,
        ui,
    ));
    b.push_str(&table_head(
        &[
            col("Course", "Cursus"),
            col("Name", "Naam"),
            wide("Type", "Type"),
            col("Status", "Status"),
            col("Dates", "Data"),
            col("Participants", "Deelnemers"),
        ],
        ui,
    ));
    for c in &rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"hide-s\">{}</td><td>{}</td><td>{} – {}</td><td>{}</td></tr>",
            course_link(&c.id),
            esc(&c.name),
            esc(&c.type_id),
            said(&c.status, ui),
            c.start_at.with_timezone(&ui.tz).format("%Y-%m-%d"),
            c.end_at.with_timezone(&ui.tz).format("%Y-%m-%d"),
            counts.get(&c.id).copied().unwrap_or(0)
        );
    }
    b.push_str("</tbody></table></div>");
    b.push_str(&numbered_pager("/office/courses", skip, more, search, ui));
    page(&ctx, "/office/courses", ui.t("Courses", "Cursussen"), &b)
}

pub async fn course(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let after = get(&q, "after").map(str::to_string);
    let rules = s.rules();
    let now = Utc::now();
    let tz = s.config.timezone;
    let read = async {
        let mut tx = s.store.begin_read().await?;
        let Some(info) = catalogue::course(&mut tx, &id, Lock::None).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let mut people = enrolments::people_page(&mut tx, &id, after.as_deref(), PAGE + 1).await?;
        let more = people.len() as i64 > PAGE;
        people.truncate(PAGE as usize);
        let total = enrolments::counts(&mut tx, std::slice::from_ref(&id))
            .await?
            .get(&id)
            .copied()
            .unwrap_or(0);
        let statuses =
            crate::status::participants(&mut tx, &rules, tz, now, &id, Some(&people), Lock::None)
                .await?
                .map(|(_, p)| p)
                .unwrap_or_default();
        let plan = engine::plan_of(
            &mut tx,
            &rules,
            tz,
            now,
            std::slice::from_ref(&id),
            Some(&people),
        )
        .await?;
        let sent = outbox::of_people_in(&mut tx, &id, &people).await?;
        let counts = outbox::counts_of_course(&mut tx, &id).await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>(Some((
            info, people, more, total, statuses, plan, sent, counts,
        )))
    };
    let (info, people, more, total, statuses, plan, sent, counts) = match read.await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html::error_page(
                StatusCode::NOT_FOUND,
                ui.t("There is no such course.", "Deze cursus bestaat niet."),
            );
        }
        Err(e) => return db_error(&e),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} <span class=\"muted\">{}</span></h1><dl class=\"facts\"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd>\
         <dt>{}</dt><dd>{} – {}</dd><dt>{}</dt><dd>{total}</dd></dl>",
        esc(&info.name),
        esc(&info.id),
        ui.t("Type", "Type"),
        esc(&info.type_id),
        ui.t("Status", "Status"),
        said(info.status.as_str(), ui),
        ui.t("Dates", "Data"),
        time(info.start, ui),
        time(info.end, ui),
        ui.t("Participants", "Deelnemers"),
    );
    // Every email of the course at a glance: per rule, how many were sent, failed, wait to
    // be retried or sent. The rows below say, per participant, why the others were not.
    if !counts.is_empty() {
        b.push_str(&format!(
            "<h2>{}</h2>",
            ui.t("Emails of this course", "E-mails van deze cursus")
        ));
        b.push_str(&table_head(
            &[
                col("Email (rule)", "E-mail (regel)"),
                col("Sent", "Verzonden"),
                col("Failed", "Mislukt"),
                col("Retrying", "Nieuwe poging"),
                col("Queued", "In wachtrij"),
            ],
            ui,
        ));
        let mut rules: Vec<&str> = counts.iter().map(|(r, _, _)| r.as_str()).collect();
        rules.dedup();
        for rule in rules {
            let n = |state: &str| {
                counts
                    .iter()
                    .filter(|(r, st, _)| {
                        r == rule && (st == state || (state == "queued" && st == "sending"))
                    })
                    .map(|(_, _, n)| *n)
                    .sum::<i64>()
            };
            let link = |state: &str, n: i64, class: &str| {
                if n == 0 {
                    "0".to_string()
                } else {
                    format!(
                        "<a class=\"{class}\" href=\"/office/deliveries?course={}&rule={}&state={state}\">{n}</a>",
                        enc(&info.id),
                        enc(rule)
                    )
                }
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{} <span class=\"muted\">/ {total}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(rule),
                link("sent", n("sent"), "ok"),
                link("failed", n("failed"), "bad"),
                link("retrying", n("retrying"), "warn"),
                link("queued", n("queued"), "info"),
            );
        }
        b.push_str("</tbody></table></div>");
    }
    let _ = write!(
        b,
        "<h2>{}</h2><p class=\"muted\">{}</p>",
        ui.t("Participants", "Deelnemers"),
        ui.t(
            "Attendance per part, the requirements (D1 attendance, D2 passing), completion and certificate as the export derives them; and per email rule whether it was sent or why it waits.",
            "Aanwezigheid per onderdeel, de eisen (D1 aanwezigheid, D2 geslaagd), afronding en certificaat zoals de export ze afleidt; en per e-mailregel of hij verzonden is of waarom hij wacht."
        )
    );
    let _ = write!(
        b,
        "<div class=\"table\"><table><thead><tr><th>{}</th>",
        ui.t("Participant", "Deelnemer")
    );
    for p in &info.parts {
        let _ = write!(b, "<th class=\"hide-s\">{}</th>", esc(&p.rule.id));
    }
    let _ = write!(
        b,
        "<th>{}</th><th>D1</th><th>D2</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        ui.t("Attendance", "Aanwezig"),
        ui.t("Completed", "Afgerond"),
        ui.t("Certificate", "Certificaat"),
    );
    let columns = info.parts.len() + 6;
    let by_person: HashMap<&str, &crate::status::ParticipantStatus> =
        statuses.iter().map(|p| (p.person_id.as_str(), p)).collect();
    let plan_refs: Vec<&PlanItem> = plan.iter().collect();
    for person in &people {
        let Some(p) = by_person.get(person.as_str()) else {
            continue;
        };
        let email = match &p.email {
            Some(e) => format!("<br><span class=\"muted\">{}</span>", esc(e)),
            None => format!(
                "<br><span class=\"bad\">{}</span>",
                ui.t("no email address", "geen e-mailadres")
            ),
        };
        let _ = write!(
            b,
            "<tr class=\"main\"><td><a href=\"/office/people/{}\">{}</a>{email}</td>",
            enc(person),
            esc(&p.full_name)
        );
        for m in &p.marks {
            let _ = write!(b, "<td class=\"hide-s\">{}</td>", said(m, ui));
        }
        let percent = p
            .attendance
            .percent()
            .map(|v| format!("{v}%"))
            .unwrap_or_else(|| "–".into());
        let completed = p.completed_at.map(|t| time(t, ui)).unwrap_or_else(|| {
            format!(
                "<span class=\"muted\">{}</span>",
                said(p.result.as_str(), ui)
            )
        });
        let cert = match (&p.certificate_number, &p.expiry) {
            (Some(n), Some(e)) => format!(
                "{}<br><span class=\"muted\">{}</span>",
                esc(n),
                said(e.as_str(), ui)
            ),
            (Some(n), None) => esc(n),
            _ => "–".into(),
        };
        let sent_of: Vec<&DeliveryRow> = sent.iter().filter(|d| &d.person == person).collect();
        let _ = write!(
            b,
            "<td>{percent} <span class=\"muted\">({}/{})</span></td><td>{}</td><td>{}</td><td>{completed}</td><td>{cert}</td></tr>\
             <tr class=\"sub\"><td colspan=\"{columns}\"><span class=\"muted\">{}:</span> {}</td></tr>",
            p.attendance.attended,
            p.attendance.required,
            yes_no(p.attendance.achieved, ui),
            yes_no(p.passing.met, ui),
            ui.t("Emails", "E-mails"),
            emails_of(person, &plan_refs, &sent_of, ui)
        );
    }
    b.push_str("</tbody></table></div><div class=\"pager\">");
    if after.is_some() {
        let _ = write!(
            b,
            "<a href=\"/office/courses/{}\">{}</a>",
            enc(&id),
            ui.t("« First", "« Eerste")
        );
    }
    if more && let Some(last) = people.last() {
        let _ = write!(
            b,
            "<a href=\"/office/courses/{}?after={}\">{}</a>",
            enc(&id),
            enc(last),
            ui.t("Next »", "Volgende »")
        );
    }
    b.push_str("</div>");
    page(&ctx, "/office/courses", &info.name, &b)
}
