//! The outbox, and one delivery: its message as sent, its attempts, Retry.

use super::*;

pub async fn deliveries(State(s): State<ApiState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let mut problems = Vec::new();
    let state = get(&q, "state").and_then(|v| {
        let st = v.parse::<DeliveryState>().ok();
        if st.is_none() {
            problems.push(format!("state {v:?}"));
        }
        st
    });
    let mut date = |k: &str| {
        get(&q, k).and_then(|v| match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                problems.push(format!("{k} {v:?} (YYYY-MM-DD)"));
                None
            }
        })
    };
    let from = date("from");
    let until = date("until");
    let filter = Filter {
        state,
        rule: get(&q, "rule").map(str::to_string),
        course: get(&q, "course").map(str::to_string),
        person: get(&q, "person").map(str::to_string),
        from: from.map(|d| local_midnight(d, ui)),
        until: until
            .and_then(|d| d.succ_opt())
            .map(|d| local_midnight(d, ui)),
    };
    let before = get(&q, "before").and_then(|v| v.parse::<i64>().ok());
    let rows = async {
        let mut tx = s.store.begin_read().await?;
        let rows = outbox::page(&mut tx, &filter, before, PAGE + 1).await?;
        let names = names_of(&mut tx, rows.iter().map(|r| r.person.as_str())).await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>((rows, names))
    }
    .await;
    let (mut rows, names) = match rows {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);

    let mut b = String::new();
    let _ = write!(b, "<h1>{}</h1>", ui.t("Deliveries", "Verzendingen"));
    if !problems.is_empty() {
        let _ = write!(
            b,
            "<p class=\"error\">{} {}</p>",
            ui.t("Ignored filter:", "Genegeerd filter:"),
            esc(&problems.join(", "))
        );
    }
    // Filters.
    let value = |k: &str| esc(get(&q, k).unwrap_or_default());
    let _ = write!(
        b,
        "<form class=\"filters\" method=\"get\" action=\"/office/deliveries\"><label>{}<select name=\"state\"><option value=\"\">{}</option>",
        ui.t("State", "Status"),
        ui.t("all", "alle")
    );
    for st in ["queued", "sending", "sent", "retrying", "failed"] {
        let sel = if get(&q, "state") == Some(st) {
            " selected"
        } else {
            ""
        };
        let label = badge(st, ui);
        // The option shows the word without the badge's markup.
        let label = label
            .split('>')
            .nth(1)
            .and_then(|t| t.split('<').next())
            .unwrap_or(st)
            .to_string();
        let _ = write!(b, "<option value=\"{st}\"{sel}>{label}</option>");
    }
    b.push_str("</select></label>");
    let rules = s.rules();
    let _ = write!(
        b,
        "<label>{}<select name=\"rule\"><option value=\"\">{}</option>",
        ui.t("Email (rule)", "E-mail (regel)"),
        ui.t("all", "alle")
    );
    for r in &rules.actions {
        let id = &r.id.value;
        let sel = if get(&q, "rule") == Some(id.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, "<option value=\"{}\"{sel}>{}</option>", esc(id), esc(id));
    }
    b.push_str("</select></label>");
    let _ = write!(
        b,
        "<label>{}<input name=\"course\" value=\"{}\"></label><label>{}<input name=\"person\" value=\"{}\"></label>\
         <label>{}<input name=\"from\" type=\"date\" value=\"{}\"></label><label>{}<input name=\"until\" type=\"date\" value=\"{}\"></label>\
         <button type=\"submit\">{}</button></form>",
        ui.t("Course", "Cursus"),
        value("course"),
        ui.t("Person", "Persoon"),
        value("person"),
        ui.t("From", "Vanaf"),
        value("from"),
        ui.t("Until", "Tot en met"),
        value("until"),
        ui.t("Filter", "Filteren")
    );
    if rows.is_empty() {
        let _ = write!(
            b,
            "<p class=\"muted\">{}</p>",
            ui.t("No deliveries match.", "Geen verzendingen gevonden.")
        );
    } else {
        b.push_str(&deliveries_table(&rows, &names, ui));
    }
    // Paging: newest first, the next page below the last id shown.
    let kept: String = q
        .iter()
        .filter(|(k, v)| k != "before" && k != "lang" && !v.is_empty())
        .map(|(k, v)| format!("&{}={}", enc(k), enc(v)))
        .collect();
    b.push_str("<div class=\"pager\">");
    if before.is_some() {
        let _ = write!(
            b,
            "<a href=\"/office/deliveries?{}\">{}</a>",
            kept.trim_start_matches('&'),
            ui.t("« Newest", "« Nieuwste")
        );
    }
    if more && let Some(last) = rows.last() {
        let _ = write!(
            b,
            "<a href=\"/office/deliveries?before={}{kept}\">{}</a>",
            last.id,
            ui.t("Older »", "Ouder »")
        );
    }
    b.push_str("</div>");
    page(
        &ctx,
        "/office/deliveries",
        ui.t("Deliveries", "Verzendingen"),
        &b,
    )
}

pub async fn delivery(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    RawQuery(raw): RawQuery,
) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let read = async {
        let mut tx = s.store.begin_read().await?;
        let one = outbox::one(&mut tx, id).await?;
        let attempts = outbox::attempts(&mut tx, id).await?;
        let names = names_of(&mut tx, one.iter().map(|(r, _)| r.person.as_str())).await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>((one, attempts, names))
    };
    let (one, mut attempts, names) = match read.await {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let Some((r, bytes)) = one else {
        return html::error_page(
            StatusCode::NOT_FOUND,
            ui.t(
                "There is no such delivery.",
                "Deze verzending bestaat niet.",
            ),
        );
    };
    // The attempt that succeeded is the delivery's sent time.
    if let (DeliveryState::Sent, Some(at)) = (r.state, r.sent_at) {
        attempts.push(outbox::Attempt {
            attempt: r.attempts,
            at,
            outcome: "sent".into(),
            answer: None,
        });
    }
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} {id} {}</h1>",
        ui.t("Delivery", "Verzending"),
        badge(r.state.as_str(), ui)
    );
    if get(&q, "done") == Some("retry") {
        b.push_str(&notice(ui.t(
            "Queued again: the next pass sends it (or, if no message could be made, fires the rule again with the data as it is now).",
            "Opnieuw in de wachtrij: de volgende ronde verstuurt het (of, als er geen bericht gemaakt kon worden, voert de regel opnieuw uit met de gegevens van nu).",
        )));
    }
    let _ = write!(b, "<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(b, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    };
    fact(ui.t("Email (rule)", "E-mail (regel)"), esc(&r.rule));
    fact(ui.t("Course", "Cursus"), course_link(&r.course));
    fact(ui.t("Person", "Persoon"), person_named(&r.person, &names));
    fact(ui.t("To", "Aan"), esc(&r.recipients));
    fact(ui.t("Subject", "Onderwerp"), esc(&r.subject));
    fact(ui.t("Made", "Gemaakt"), time(r.created_at, ui));
    if let Some(t) = r.sent_at {
        fact(ui.t("Sent", "Verzonden"), time(t, ui));
    }
    if let (Some(t), DeliveryState::Retrying | DeliveryState::Queued) = (r.next_attempt_at, r.state)
    {
        fact(ui.t("Next attempt", "Volgende poging"), time(t, ui));
    }
    fact(ui.t("Attempts", "Pogingen"), r.attempts.to_string());
    if let Some(e) = &r.last_error
        && matches!(r.state, DeliveryState::Failed | DeliveryState::Retrying)
    {
        fact(
            ui.t("Why it was not sent", "Waarom het niet verzonden is"),
            format!("<span class=\"bad\">{}</span>", esc(e)),
        );
    }
    fact("Message-ID", esc(&r.message_id));
    b.push_str("</dl>");
    if matches!(r.state, DeliveryState::Failed | DeliveryState::Retrying) {
        let _ = write!(
            b,
            "<form method=\"post\" action=\"/office/deliveries/{id}/retry\">{}<p><button type=\"submit\">{}</button> \
             <span class=\"muted\">{}</span></p></form>",
            csrf_field(&ctx),
            ui.t("Retry", "Opnieuw proberen"),
            ui.t(
                "Sends it once more now (the same message, or the rule fired again if no message could be made).",
                "Verstuurt het nu nog een keer (hetzelfde bericht, of de regel opnieuw als er geen bericht gemaakt kon worden)."
            )
        );
    }
    let _ = write!(b, "<h2>{}</h2>", ui.t("Attempts", "Pogingen"));
    if attempts.is_empty() {
        let _ = write!(
            b,
            "<p class=\"muted\">{}</p>",
            ui.t(
                "No attempt to hand it to the mail server yet.",
                "Nog geen poging om het aan de mailserver te geven."
            )
        );
    } else {
        b.push_str(&table_head(
            &[
                col("#", "#"),
                col("When", "Wanneer"),
                col("Outcome", "Uitkomst"),
                col("Server's answer", "Antwoord van de server"),
            ],
            ui,
        ));
        for a in &attempts {
            let answer = match (a.outcome.as_str(), &a.answer) {
                (_, Some(text)) => esc(text),
                ("sent", None) => esc(ui.t("accepted", "aangenomen")),
                _ => String::new(),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{answer}</td></tr>",
                a.attempt,
                time(a.at, ui),
                badge(&a.outcome, ui)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    let _ = write!(b, "<h2>{}</h2>", ui.t("The message", "Het bericht"));
    match bytes.as_deref().map(|m| (m, message::show(m))) {
        None => {
            let _ = write!(
                b,
                "<p>{}</p>",
                ui.t(
                    "No message was made (see why above). Retry fires the rule again with the data as it is then.",
                    "Er is geen bericht gemaakt (zie hierboven waarom). Opnieuw proberen voert de regel opnieuw uit met de gegevens van dat moment."
                )
            );
        }
        Some((_, None)) => {
            let _ = write!(
                b,
                "<p class=\"error\">{} <a href=\"/office/deliveries/{id}/part/0\">.eml</a></p>",
                ui.t(
                    "The stored message cannot be read as an email; download it:",
                    "Het opgeslagen bericht is niet als e-mail te lezen; download het:"
                )
            );
        }
        Some((_, Some(m))) => {
            b.push_str(&shown_message(&m, ui, &format!("/office/deliveries/{id}")));
            let _ = write!(
                b,
                "<p><a href=\"/office/deliveries/{id}/part/0\">{}</a></p>",
                ui.t(
                    "Download the whole message (.eml)",
                    "Download het hele bericht (.eml)"
                )
            );
        }
    }
    page(
        &ctx,
        "/office/deliveries",
        &format!("{} {id}", ui.t("Delivery", "Verzending")),
        &b,
    )
}

async fn stored_message(s: &ApiState, id: i64) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let mut tx = s.store.begin_read().await?;
    let one = outbox::one(&mut tx, id).await?;
    tx.rollback().await?;
    Ok(one.and_then(|(_, m)| m))
}

pub async fn delivery_html(State(s): State<ApiState>, Path(id): Path<i64>) -> Response {
    match stored_message(&s, id).await {
        Ok(Some(bytes)) => match message::show(&bytes).and_then(|m| m.html) {
            Some(h) => framed_html(h),
            None => html::error_page(StatusCode::NOT_FOUND, "this message has no HTML part"),
        },
        Ok(None) => html::error_page(StatusCode::NOT_FOUND, "no message"),
        Err(e) => db_error(&e),
    }
}

/// A file name safe in a Content-Disposition header.
fn header_filename(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub async fn delivery_part(
    State(s): State<ApiState>,
    Path((id, n)): Path<(i64, usize)>,
) -> Response {
    let bytes = match stored_message(&s, id).await {
        Ok(Some(b)) => b,
        Ok(None) => return html::error_page(StatusCode::NOT_FOUND, "no message"),
        Err(e) => return db_error(&e),
    };
    let (media, name, body) = if n == 0 {
        (
            "message/rfc822".to_string(),
            format!("delivery-{id}.eml"),
            bytes,
        )
    } else {
        let Some(a) = message::show(&bytes).and_then(|m| m.attachments.into_iter().nth(n - 1))
        else {
            return html::error_page(StatusCode::NOT_FOUND, "no such attachment");
        };
        (a.media_type, a.name, a.bytes)
    };
    // Every part is a download, opened by the reader's own program (the certificate PDF
    // in their PDF viewer): a browser's built-in viewer would be blocked by the sandbox
    // these parts are served under, and nothing of a message runs in the pages' origin.
    let disposition = format!("attachment; filename=\"{}\"", header_filename(&name));
    let mut r = body.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&media) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; frame-ancestors 'self'"),
    );
    r
}

pub async fn retry(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    body: String,
) -> Response {
    let form = form_pairs(&body);
    if !csrf_ok(&ctx.session, get(&form, "csrf")) {
        return html::csrf_refused(&ctx.ui);
    }
    // The code of `registrar retry`: it decides what may be retried.
    match crate::delivery::retry(&s.store, id, &ctx.session.user, Utc::now()).await {
        Ok(()) => {
            s.wake.notify_one();
            tracing::info!(account = %ctx.session.user, delivery = id, "office: retry");
            Redirect::to(&format!("/office/deliveries/{id}?done=retry")).into_response()
        }
        Err(crate::delivery::RetryError::Db(e)) => db_error(&e),
        Err(e) => refused(&ctx, &e.to_string(), &format!("/office/deliveries/{id}")),
    }
}
