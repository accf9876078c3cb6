//! Messages awaiting approval: the list, a preview composed by the firing pass's code, Approve.

use super::*;

pub async fn approvals(State(s): State<ApiState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let skip = page_number(&q);
    let rows = async {
        let mut tx = s.store.begin_read().await?;
        let (shown, total) = actions::awaiting_approval_page(&mut tx, skip * PAGE, PAGE).await?;
        let names = names_of(&mut tx, shown.iter().map(|a| a.person.as_str())).await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>((total, shown, names))
    }
    .await;
    let (total, shown, names) = match rows {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} ({total})</h1>",
        ui.t("Awaiting approval", "Wachten op goedkeuring")
    );
    if let Some(n) = get(&q, "done") {
        b.push_str(&notice(&if ui.nl {
            format!("{n} goedgekeurd: de volgende ronde verstuurt ze.")
        } else {
            format!("{n} approved: the next pass sends them.")
        }));
    }
    if shown.is_empty() {
        let _ = write!(
            b,
            "<p class=\"muted\">{}</p>",
            ui.t(
                "No message waits for approval. Rules with execution: manual put their messages here.",
                "Er wacht geen bericht op goedkeuring. Regels met execution: manual zetten hun berichten hier."
            )
        );
        return page(
            &ctx,
            "/office/approvals",
            ui.t("Awaiting approval", "Wachten op goedkeuring"),
            &b,
        );
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/office/approvals\">{}<div class=\"table\"><table><thead><tr><th></th><th>#</th>\
         <th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
        csrf_field(&ctx),
        ui.t("Email (rule)", "E-mail (regel)"),
        ui.t("Course", "Cursus"),
        ui.t("Person", "Persoon")
    );
    for a in &shown {
        let _ = write!(
            b,
            "<tr><td><input type=\"checkbox\" name=\"id\" value=\"{id}\" aria-label=\"{id}\"></td><td>{id}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"/office/approvals/{id}\">{}</a></td></tr>",
            esc(&a.rule),
            course_link(&a.course),
            person_named(&a.person, &names),
            ui.t("Preview", "Voorbeeld"),
            id = a.id
        );
    }
    let _ = write!(
        b,
        "</tbody></table></div><p><button type=\"submit\">{}</button></p></form>",
        ui.t("Approve selected", "Geselecteerde goedkeuren")
    );
    b.push_str(&numbered_pager(
        "/office/approvals",
        skip,
        (skip + 1) * PAGE < total,
        None,
        ui,
    ));
    page(
        &ctx,
        "/office/approvals",
        ui.t("Awaiting approval", "Wachten op goedkeuring"),
        &b,
    )
}

/// The message an awaiting instance would send, composed now by the firing pass's code.
async fn preview_of(
    s: &ApiState,
    id: i64,
) -> Result<
    Option<(
        actions::Instance,
        Result<crate::engine::fire::Preview, String>,
    )>,
    sqlx::Error,
> {
    let instance = {
        let mut tx = s.store.begin_read().await?;
        let i = actions::get(&mut tx, id, Lock::None).await;
        tx.rollback().await?;
        i?
    };
    let Some(instance) = instance else {
        return Ok(None);
    };
    let rules = s.rules();
    let Some(rule) = rules.action(&instance.rule_id) else {
        return Ok(Some((
            instance,
            Err("its rule is no longer in force".to_string()),
        )));
    };
    let templates = match crate::render::Templates::load(&s.config.templates) {
        Ok(t) => t,
        Err(problems) => {
            let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Ok(Some((instance, Err(lines.join("; ")))));
        }
    };
    let env = crate::engine::fire::Env {
        rules: &rules,
        templates: &templates,
        office: &s.config.office,
        tz: s.config.timezone,
        locale: None,
    };
    let p = crate::engine::fire::preview(
        &s.store,
        &env,
        rule,
        &instance.course_id,
        &instance.person_id,
        Utc::now(),
    )
    .await?;
    let p = p.ok_or_else(|| "the person is no longer a participant".to_string());
    Ok(Some((instance, p)))
}

pub async fn approval(State(s): State<ApiState>, ctx: Ctx, Path(id): Path<i64>) -> Response {
    let ui = &ctx.ui;
    let (instance, preview) = match preview_of(&s, id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return html::error_page(
                StatusCode::NOT_FOUND,
                ui.t("There is no such message.", "Dit bericht bestaat niet."),
            );
        }
        Err(e) => return db_error(&e),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} {id} {}</h1><dl class=\"facts\"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd></dl>",
        ui.t("Message", "Bericht"),
        badge(instance.state.as_str(), ui),
        ui.t("Email (rule)", "E-mail (regel)"),
        esc(&instance.rule_id),
        ui.t("Course", "Cursus"),
        course_link(&instance.course_id),
        ui.t("Person", "Persoon"),
        person_link(&instance.person_id)
    );
    if instance.state == crate::domain::ActionState::AwaitingApproval {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/office/approvals\">{}<input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <p><button type=\"submit\">{}</button></p></form>",
            csrf_field(&ctx),
            ui.t("Approve and send", "Goedkeuren en verzenden")
        );
    }
    match preview {
        Err(why) => {
            let _ = write!(b, "<p class=\"error\">{}</p>", esc(&why));
        }
        Ok(p) => match p.message {
            Err(why) => {
                let _ = write!(
                    b,
                    "<p class=\"error\">{} {}</p>",
                    ui.t(
                        "This message cannot be made:",
                        "Dit bericht kan niet gemaakt worden:"
                    ),
                    esc(&why)
                );
            }
            Ok(m) => {
                let _ = write!(
                    b,
                    "<h2>{}</h2><dl class=\"facts\"><dt>{}</dt><dd>{}</dd></dl>",
                    ui.t("Preview", "Voorbeeld"),
                    ui.t("To", "Aan"),
                    esc(&m.recipients)
                );
                if let Some(shown) = message::show(&m.bytes) {
                    // Attachments are composed for the preview only: no links to them.
                    let mut shown = shown;
                    let names: Vec<String> = shown.attachments.drain(..).map(|a| a.name).collect();
                    b.push_str(&shown_message(
                        &shown,
                        ui,
                        &format!("/office/approvals/{id}"),
                    ));
                    if !names.is_empty() {
                        let _ = write!(
                            b,
                            "<p class=\"muted\">{} {}</p>",
                            ui.t("With attachments:", "Met bijlagen:"),
                            esc(&names.join(", "))
                        );
                    }
                }
            }
        },
    }
    page(
        &ctx,
        "/office/approvals",
        ui.t("Awaiting approval", "Wachten op goedkeuring"),
        &b,
    )
}

pub async fn approval_html(State(s): State<ApiState>, Path(id): Path<i64>) -> Response {
    match preview_of(&s, id).await {
        Ok(Some((_, Ok(p)))) => match p
            .message
            .ok()
            .and_then(|m| message::show(&m.bytes))
            .and_then(|m| m.html)
        {
            Some(h) => framed_html(h),
            None => html::error_page(StatusCode::NOT_FOUND, "no HTML part"),
        },
        Ok(_) => html::error_page(StatusCode::NOT_FOUND, "no message"),
        Err(e) => db_error(&e),
    }
}

pub async fn approve(State(s): State<ApiState>, ctx: Ctx, body: String) -> Response {
    let ui = &ctx.ui;
    let form = form_pairs(&body);
    if !csrf_ok(&ctx.session, get(&form, "csrf")) {
        return html::csrf_refused(ui);
    }
    let ids: Vec<i64> = form
        .iter()
        .filter(|(k, _)| k == "id")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    if ids.is_empty() {
        return refused(
            &ctx,
            ui.t(
                "Select at least one message to approve.",
                "Kies minstens één bericht om goed te keuren.",
            ),
            "/office/approvals",
        );
    }
    let now = Utc::now();
    let (mut approved, mut problems) = (0, Vec::new());
    for id in ids {
        // The code of `registrar approve`: it decides what may be approved.
        match crate::engine::fire::approve(&s.store, id, &ctx.session.user, now).await {
            Ok(_) => approved += 1,
            Err(crate::engine::fire::ApproveError::Db(e)) => return db_error(&e),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if approved > 0 {
        s.wake.notify_one();
        tracing::info!(account = %ctx.session.user, approved, "office: approved");
    }
    if problems.is_empty() {
        Redirect::to(&format!("/office/approvals?done={approved}")).into_response()
    } else {
        let mut why = if ui.nl {
            format!("{approved} goedgekeurd; geweigerd: ")
        } else {
            format!("{approved} approved; refused: ")
        };
        why.push_str(&problems.join("; "));
        refused(&ctx, &why, "/office/approvals")
    }
}
