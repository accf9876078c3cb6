//! People, and one person's everything.

use super::*;

pub async fn people(State(s): State<ApiState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let search = get(&q, "q");
    let skip = page_number(&q);
    let read = async {
        let mut tx = s.store.begin_read().await?;
        let rows = catalogue::person_page(&mut tx, search, skip * PAGE, PAGE + 1).await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>(rows)
    };
    let mut rows = match read.await {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let mut b = String::new();
    b.push_str(&search_form(
        "/office/people",
        ui.t("People", "Personen"),
        ui.t("Name, id or email address", "Naam, code of e-mailadres"),
        search,
        ui,
    ));
    b.push_str(&table_head(
        &[
            col("Name", "Naam"),
            col("Id", "Code"),
            col("Email address", "E-mailadres"),
        ],
        ui,
    ));
    for p in &rows {
        let email = match &p.email {
            Some(e) => esc(e),
            None => format!("<span class=\"bad\">{}</span>", ui.t("none", "geen")),
        };
        let _ = write!(
            b,
            "<tr><td><a href=\"/office/people/{}\">{}</a></td><td>{}</td><td>{email}</td></tr>",
            enc(&p.id),
            esc(&p.full_name),
            esc(&p.id)
        );
    }
    b.push_str("</tbody></table></div>");
    b.push_str(&numbered_pager("/office/people", skip, more, search, ui));
    page(&ctx, "/office/people", ui.t("People", "Personen"), &b)
}

pub async fn person(State(s): State<ApiState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let ui = &ctx.ui;
    let rules = s.rules();
    let now = Utc::now();
    let tz = s.config.timezone;
    let only = [id.clone()];
    let read = async {
        let mut tx = s.store.begin_read().await?;
        let Some(person) = catalogue::person(&mut tx, &id, Lock::None).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let courses = enrolments::courses_of_person(&mut tx, &id).await?;
        let mut statuses = Vec::new();
        for c in &courses {
            if let Some((info, mut p)) =
                crate::status::participants(&mut tx, &rules, tz, now, c, Some(&only), Lock::None)
                    .await?
                && let Some(p) = p.pop()
            {
                statuses.push((info, p));
            }
        }
        let certs = certificates::of_person(&mut tx, &id).await?;
        let learners = certifications::of_person(&mut tx, &id).await?;
        let learner_history = history::of_learner(&mut tx, &id, None).await?;
        let mut subjects = courses.clone();
        subjects.extend(learners.iter().map(|l| l.certification_id.clone()));
        let plan = engine::plan_of(&mut tx, &rules, tz, now, &subjects, Some(&only)).await?;
        let deliveries = outbox::page(
            &mut tx,
            &Filter {
                person: Some(id.clone()),
                ..Filter::default()
            },
            None,
            200,
        )
        .await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>(Some((
            person,
            statuses,
            certs,
            learners,
            learner_history,
            plan,
            deliveries,
        )))
    };
    let (person, statuses, certs, learners, learner_history, plan, deliveries) = match read.await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return html::error_page(
                StatusCode::NOT_FOUND,
                ui.t("There is no such person.", "Deze persoon bestaat niet."),
            );
        }
        Err(e) => return db_error(&e),
    };
    let mut b = String::new();
    let email = match &person.email {
        Some(e) => esc(e),
        None => format!(
            "<span class=\"bad\">{}</span>",
            ui.t(
                "none — emails to this person fail until an address is added",
                "geen — e-mails aan deze persoon mislukken tot er een adres is"
            )
        ),
    };
    let _ = write!(
        b,
        "<h1>{} <span class=\"muted\">{}</span></h1><dl class=\"facts\"><dt>{}</dt><dd>{email}</dd><dt>{}</dt><dd>{}</dd></dl>",
        esc(&person.full_name),
        esc(&person.id),
        ui.t("Email address", "E-mailadres"),
        ui.t("Language", "Taal"),
        esc(person.locale.as_deref().unwrap_or("–"))
    );

    let _ = write!(b, "<h2>{}</h2>", ui.t("Enrolments", "Inschrijvingen"));
    if statuses.is_empty() {
        let _ = write!(b, "<p class=\"muted\">{}</p>", ui.t("None.", "Geen."));
    } else {
        b.push_str(&table_head(
            &[
                col("Course", "Cursus"),
                col("Result", "Resultaat"),
                col("Attendance", "Aanwezig"),
                col("D1", "D1"),
                col("D2", "D2"),
                col("Completed", "Afgerond"),
                col("Certificate", "Certificaat"),
                col("Emails", "E-mails"),
            ],
            ui,
        ));
        let plan_refs: Vec<&PlanItem> = plan.iter().collect();
        for (info, p) in &statuses {
            let sent_of: Vec<&DeliveryRow> =
                deliveries.iter().filter(|d| d.course == info.id).collect();
            let course_plan: Vec<&PlanItem> = plan_refs
                .iter()
                .copied()
                .filter(|i| i.course == info.id)
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                course_link(&info.id),
                esc(&info.name),
                said(p.result.as_str(), ui),
                p.attendance
                    .percent()
                    .map(|v| format!("{v}%"))
                    .unwrap_or_else(|| "–".into()),
                yes_no(p.attendance.achieved, ui),
                yes_no(p.passing.met, ui),
                p.completed_at
                    .map(|t| time(t, ui))
                    .unwrap_or_else(|| "–".into()),
                esc(p.certificate_number.as_deref().unwrap_or("–")),
                emails_of(&person.id, &course_plan, &sent_of, ui)
            );
        }
        b.push_str("</tbody></table></div>");
    }

    let _ = write!(b, "<h2>{}</h2>", ui.t("Certificates", "Certificaten"));
    if certs.is_empty() {
        let _ = write!(b, "<p class=\"muted\">{}</p>", ui.t("None.", "Geen."));
    } else {
        b.push_str(&table_head(
            &[
                col("Number", "Nummer"),
                col("Course", "Cursus"),
                col("Issued", "Uitgegeven"),
                col("Valid until", "Geldig tot"),
                col("Check", "Controle"),
            ],
            ui,
        ));
        for c in &certs {
            let status = if c.revoked_at.is_some() {
                format!(
                    " <span class=\"badge bad\">{}</span>",
                    ui.t("revoked", "ingetrokken")
                )
            } else {
                String::new()
            };
            let _ = write!(
                b,
                "<tr><td>{}{status}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/verify/{}\">{}</a></td></tr>",
                esc(&c.number),
                course_link(&c.course_id),
                time(c.issued_at, ui),
                c.valid_until
                    .map(|t| time(t, ui))
                    .unwrap_or_else(|| "–".into()),
                enc(&c.verification_code),
                ui.t("verify page", "verificatiepagina")
            );
        }
        b.push_str("</tbody></table></div>");
    }

    if !learners.is_empty() {
        let _ = write!(b, "<h2>{}</h2>", ui.t("Certifications", "Certificeringen"));
        b.push_str(&table_head(
            &[
                col("Certification", "Certificering"),
                col("Status", "Status"),
                col("Cycle", "Cyclus"),
                col("Valid until", "Geldig tot"),
                col("Emails", "E-mails"),
            ],
            ui,
        ));
        let plan_refs: Vec<&PlanItem> = plan.iter().collect();
        for l in &learners {
            let sent_of: Vec<&DeliveryRow> = deliveries
                .iter()
                .filter(|d| d.course == l.certification_id)
                .collect();
            let cert_plan: Vec<&PlanItem> = plan_refs
                .iter()
                .copied()
                .filter(|i| i.course == l.certification_id)
                .collect();
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.certification_id),
                esc(&l.status),
                l.cycle,
                l.valid_until
                    .map(|t| time(t, ui))
                    .unwrap_or_else(|| "–".into()),
                emails_of(&person.id, &cert_plan, &sent_of, ui)
            );
        }
        b.push_str("</tbody></table></div>");
        if !learner_history.is_empty() {
            let _ = write!(
                b,
                "<h2>{}</h2><div class=\"table\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
                ui.t("Certification history", "Geschiedenis certificering"),
                ui.t("When", "Wanneer"),
                ui.t("Certification", "Certificering"),
                ui.t("Change", "Wijziging"),
                ui.t("By", "Door")
            );
            for h in &learner_history {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    time(h.at, ui),
                    esc(h.course_id.as_deref().unwrap_or_default()),
                    esc(&h.change),
                    esc(&h.actor)
                );
            }
            b.push_str("</tbody></table></div>");
        }
    }

    let _ = write!(
        b,
        "<h2>{}</h2>",
        ui.t(
            "Every email to this person",
            "Alle e-mails aan deze persoon"
        )
    );
    if deliveries.is_empty() {
        let _ = write!(
            b,
            "<p class=\"muted\">{}</p>",
            ui.t("None yet.", "Nog geen.")
        );
    } else {
        let names: Names = [(person.id.clone(), person.full_name.clone())].into();
        b.push_str(&deliveries_table(&deliveries, &names, ui));
    }
    page(&ctx, "/office/people", &person.full_name, &b)
}
