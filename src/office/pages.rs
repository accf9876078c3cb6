//! The pages: overview, deliveries (and one delivery with its message and attempts),
//! awaiting approval, courses (and one course's participants with the plan's reasons),
//! people (and one person's everything).

use super::Ctx;
use super::auth::csrf_ok;
use super::html::{self, Ui, badge, db_error, enc, esc, form_pairs, page, time};
use super::message;
use crate::domain::DeliveryState;
use crate::engine::{self, PlanItem};
use crate::http::ApiState;
use crate::store::outbox::{self, DeliveryRow, Filter};
use crate::store::{Lock, actions, catalogue, certificates, certifications, enrolments, history};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use std::collections::HashMap;
use std::fmt::Write;

/// Rows a list shows at once.
const PAGE: i64 = 50;

fn query_of(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref().map(form_pairs).unwrap_or_default()
}

fn get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter()
        .find(|(n, v)| n == k && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

/// The start of a local day, in UTC.
fn local_midnight(d: NaiveDate, ui: &Ui) -> DateTime<Utc> {
    let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    ui.tz
        .from_local_datetime(&naive)
        .earliest()
        .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
}

fn notice(text: &str) -> String {
    format!("<p class=\"notice\" role=\"status\">{}</p>", esc(text))
}

fn person_link(id: &str) -> String {
    format!("<a href=\"/office/people/{}\">{}</a>", enc(id), esc(id))
}

/// Full names by person id, for the people a page shows.
type Names = HashMap<String, String>;

async fn names_of<'a>(
    tx: &mut crate::store::Tx,
    ids: impl Iterator<Item = &'a str>,
) -> Result<Names, sqlx::Error> {
    let mut ids: Vec<String> = ids.map(str::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(catalogue::people(tx, &ids)
        .await?
        .into_iter()
        .map(|(id, p)| (id, p.full_name))
        .collect())
}

/// A person's name (their id when unknown), linking to their page.
fn person_named(id: &str, names: &Names) -> String {
    match names.get(id) {
        Some(name) => format!(
            "<a href=\"/office/people/{}\" title=\"{}\">{}</a>",
            enc(id),
            esc(id),
            esc(name)
        ),
        None => person_link(id),
    }
}

fn course_link(id: &str) -> String {
    format!("<a href=\"/office/courses/{}\">{}</a>", enc(id), esc(id))
}

fn csrf_field(ctx: &Ctx) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&ctx.session.csrf)
    )
}

// ---- overview ----

pub async fn overview(State(s): State<ApiState>, ctx: Ctx) -> Response {
    let ui = &ctx.ui;
    let now = Utc::now();
    let today = now.with_timezone(&ui.tz).date_naive();
    let day_start = local_midnight(today, ui);
    let week_start = local_midnight(
        today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday())),
        ui,
    );
    let started = std::time::Instant::now();
    let read = async {
        let mut tx = s.store.begin_read().await?;
        let sent_today = outbox::sent_since(&mut tx, day_start).await?;
        let sent_week = outbox::sent_since(&mut tx, week_start).await?;
        let failed = outbox::in_state(&mut tx, DeliveryState::Failed, week_start).await?;
        let retrying = outbox::in_state(&mut tx, DeliveryState::Retrying, week_start).await?;
        let queued = outbox::in_state(&mut tx, DeliveryState::Queued, week_start).await?;
        let (waiting, scheduled, awaiting) = actions::open_counts(&mut tx, now).await?;
        let next = actions::next_due_list(&mut tx, now, 10).await?;
        let recent = outbox::page(
            &mut tx,
            &Filter {
                state: Some(DeliveryState::Failed),
                ..Filter::default()
            },
            None,
            5,
        )
        .await?;
        let names = names_of(
            &mut tx,
            recent
                .iter()
                .map(|r| r.person.as_str())
                .chain(next.iter().map(|n| n.3.as_str())),
        )
        .await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>((
            sent_today, sent_week, failed, retrying, queued, waiting, scheduled, awaiting, next,
            recent, names,
        ))
    };
    let (
        sent_today,
        sent_week,
        failed,
        retrying,
        queued,
        waiting,
        scheduled,
        awaiting,
        next,
        recent,
        names,
    ) = match read.await {
        Ok(r) => r,
        Err(e) => return db_error(&e),
    };
    let db_ms = started.elapsed().as_millis();
    let mut b = String::new();
    let _ = write!(b, "<h1>{}</h1>", ui.t("Overview", "Overzicht"));
    let card = |href: &str, n: i64, en: &str, nl: &str, class: &str| {
        format!(
            "<a class=\"card\" href=\"{href}\"><b class=\"{class}\">{n}</b><span>{}</span></a>",
            esc(ui.t(en, nl))
        )
    };
    let today_q = today.format("%Y-%m-%d");
    let week_q = (today
        - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday())))
    .format("%Y-%m-%d");
    b.push_str("<div class=\"cards\">");
    b.push_str(&card(
        &format!("/office/deliveries?state=sent&from={today_q}"),
        sent_today,
        "sent today",
        "vandaag verzonden",
        "ok",
    ));
    b.push_str(&card(
        &format!("/office/deliveries?state=sent&from={week_q}"),
        sent_week,
        "sent this week",
        "deze week verzonden",
        "ok",
    ));
    b.push_str(&card(
        "/office/deliveries?state=failed",
        failed.0,
        "failed (all)",
        "mislukt (alle)",
        if failed.0 > 0 { "bad" } else { "muted" },
    ));
    b.push_str(&card(
        "/office/deliveries?state=retrying",
        retrying.0,
        "retrying",
        "nieuwe poging gepland",
        if retrying.0 > 0 { "warn" } else { "muted" },
    ));
    b.push_str(&card(
        "/office/approvals",
        awaiting,
        "awaiting approval",
        "wachten op goedkeuring",
        if awaiting > 0 { "warn" } else { "muted" },
    ));
    b.push_str(&card(
        "/office/deliveries?state=queued",
        queued.0,
        "queued to send",
        "klaar om te verzenden",
        "info",
    ));
    let waiting_label = if ui.nl {
        format!("wachtend (voorwaarden of tijd); {scheduled} gepland voor later")
    } else {
        format!("waiting (for conditions or time); {scheduled} scheduled for later")
    };
    b.push_str(&card(
        "#next",
        waiting,
        &waiting_label,
        &waiting_label,
        "muted",
    ));
    b.push_str("</div>");
    if failed.1 > 0 {
        let _ = write!(
            b,
            "<p class=\"error\">{} <a href=\"/office/deliveries?state=failed\">{}</a></p>",
            esc(&if ui.nl {
                format!("Deze week mislukt: {}.", failed.1)
            } else {
                format!("Failed this week: {}.", failed.1)
            }),
            ui.t("See why", "Bekijk waarom")
        );
    }

    // Health.
    let _ = write!(
        b,
        "<h2>{}</h2><dl class=\"facts\">",
        ui.t("Health", "Systeemstatus")
    );
    let _ = write!(
        b,
        "<dt>{}</dt><dd><span class=\"ok\">{}</span> ({db_ms} ms, {})</dd>",
        ui.t("Database", "Database"),
        ui.t("answers", "antwoordt"),
        s.store.backend()
    );
    let delivery = match s.delivery.paused() {
        None => format!("<span class=\"ok\">{}</span>", ui.t("working", "werkt")),
        Some(p) => format!(
            "<span class=\"bad\">{}</span> {} — {} {}",
            ui.t("paused", "gepauzeerd"),
            esc(&p.reason),
            ui.t("tries again at", "probeert opnieuw om"),
            time(p.retry_at, ui)
        ),
    };
    let _ = write!(
        b,
        "<dt>{}</dt><dd>{delivery}</dd>",
        ui.t("Mail delivery", "Verzending e-mail")
    );
    let beat = s.scheduler_beat.load(std::sync::atomic::Ordering::Relaxed);
    let pass = s.pass_millis.load(std::sync::atomic::Ordering::Relaxed);
    let last = match DateTime::<Utc>::from_timestamp_millis(beat).filter(|_| beat > 0) {
        Some(t) => format!("{} ({} {pass} ms)", time(t, ui), ui.t("took", "duurde")),
        None => ui.t("not yet", "nog niet").to_string(),
    };
    let _ = write!(
        b,
        "<dt>{}</dt><dd>{last}</dd></dl>",
        ui.t("Last pass", "Laatste ronde")
    );

    // The latest failures, with their reasons.
    if !recent.is_empty() {
        let _ = write!(
            b,
            "<h2>{}</h2>{}",
            ui.t("Latest failed deliveries", "Laatst mislukte verzendingen"),
            deliveries_table(&recent, &names, ui)
        );
    }

    let _ = write!(
        b,
        "<h2 id=\"next\">{}</h2>",
        ui.t("Next due emails", "Eerstvolgende e-mails")
    );
    if next.is_empty() {
        let _ = write!(
            b,
            "<p class=\"muted\">{}</p>",
            ui.t(
                "Nothing is scheduled to be evaluated later.",
                "Er staat niets gepland om later te beoordelen."
            )
        );
    } else {
        let _ = write!(
            b,
            "<div class=\"table\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            ui.t("Due", "Gepland"),
            ui.t("Email (rule)", "E-mail (regel)"),
            ui.t("Course", "Cursus"),
            ui.t("Person", "Persoon")
        );
        for (_, rule, course, person, due) in &next {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(*due, ui),
                esc(rule),
                course_link(course),
                person_named(person, &names)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    page(&ctx, "/office/", ui.t("Overview", "Overzicht"), &b)
}

// ---- deliveries ----

fn deliveries_table(rows: &[DeliveryRow], names: &Names, ui: &Ui) -> String {
    let mut b = format!(
        "<div class=\"table\"><table><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th class=\"hide-s\">{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        ui.t("State", "Status"),
        ui.t("Email (rule)", "E-mail (regel)"),
        ui.t("Course", "Cursus"),
        ui.t("Person", "Persoon"),
        ui.t("To", "Aan"),
        ui.t("When", "Wanneer"),
        ui.t("Why / server's answer", "Waarom / antwoord server")
    );
    for r in rows {
        let when = r.sent_at.or(r.next_attempt_at).unwrap_or(r.created_at);
        let why = match r.state {
            DeliveryState::Failed | DeliveryState::Retrying => {
                esc(r.last_error.as_deref().unwrap_or_default())
            }
            _ => String::new(),
        };
        let _ = write!(
            b,
            "<tr><td><a href=\"/office/deliveries/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"hide-s\">{}</td><td>{}</td><td>{why}</td></tr>",
            badge(r.state.as_str(), ui),
            esc(&r.rule),
            course_link(&r.course),
            person_named(&r.person, names),
            esc(&r.recipients),
            time(when, ui),
            id = r.id,
        );
    }
    b.push_str("</tbody></table></div>");
    b
}

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
    let (one, attempts, names) = match read.await {
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
        let _ = write!(
            b,
            "<div class=\"table\"><table><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            ui.t("When", "Wanneer"),
            ui.t("Outcome", "Uitkomst"),
            ui.t("Server's answer", "Antwoord van de server")
        );
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

/// The parts of a message: headers, the HTML in a sandboxed frame, the text, the files.
fn shown_message(m: &message::Shown, ui: &Ui, base: &str) -> String {
    let mut b = String::from("<dl class=\"facts\">");
    let _ = write!(
        b,
        "<dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd>",
        ui.t("From", "Van"),
        esc(&m.from),
        ui.t("Subject", "Onderwerp"),
        esc(&m.subject)
    );
    if !m.date.is_empty() {
        let _ = write!(
            b,
            "<dt>{}</dt><dd>{}</dd>",
            ui.t("Date", "Datum"),
            esc(&m.date)
        );
    }
    if !m.attachments.is_empty() {
        let files: Vec<String> = m
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| {
                format!(
                    "<a href=\"{base}/part/{}\">{}</a> ({}, {} kB)",
                    i + 1,
                    esc(&a.name),
                    esc(&a.media_type),
                    a.bytes.len().div_ceil(1024)
                )
            })
            .collect();
        let _ = write!(
            b,
            "<dt>{}</dt><dd>{}</dd>",
            ui.t("Attachments", "Bijlagen"),
            files.join("<br>")
        );
    }
    b.push_str("</dl>");
    if m.html.is_some() {
        let _ = write!(
            b,
            "<h2>{}</h2><iframe sandbox src=\"{base}/html\" title=\"{}\"></iframe>",
            ui.t("As the recipient sees it", "Zoals de ontvanger het ziet"),
            ui.t("The message as HTML", "Het bericht als HTML")
        );
    }
    if let Some(t) = &m.text {
        let _ = write!(
            b,
            "<h2>{}</h2><pre>{}</pre>",
            ui.t("Text version", "Tekstversie"),
            esc(t)
        );
    }
    b
}

/// A message's HTML, for the sandboxed frame: no scripts, nothing loaded from elsewhere.
fn framed_html(html: String) -> Response {
    let mut r = Html(html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    r
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
    let inline = media == "application/pdf";
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        header_filename(&name)
    );
    let mut r = body.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&media) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // A PDF opens in the browser's viewer, in a frame of its own page.
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

fn refused(ctx: &Ctx, why: &str, back: &str) -> Response {
    let ui = &ctx.ui;
    let b = format!(
        "<h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"{}\">{}</a></p>",
        ui.t("Refused", "Geweigerd"),
        esc(why),
        esc(back),
        ui.t("Back", "Terug")
    );
    let mut r = page(ctx, "", ui.t("Refused", "Geweigerd"), &b);
    *r.status_mut() = StatusCode::CONFLICT;
    r
}

// ---- awaiting approval ----

pub async fn approvals(State(s): State<ApiState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let skip = get(&q, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0);
    let rows = async {
        let mut tx = s.store.begin_read().await?;
        let rows = actions::awaiting_approval(&mut tx).await?;
        let total = rows.len();
        let shown: Vec<_> = rows
            .into_iter()
            .skip(skip * PAGE as usize)
            .take(PAGE as usize)
            .collect();
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
    b.push_str("<div class=\"pager\">");
    if skip > 0 {
        let _ = write!(
            b,
            "<a href=\"/office/approvals?page={}\">{}</a>",
            skip - 1,
            ui.t("« Previous", "« Vorige")
        );
    }
    if (skip + 1) * (PAGE as usize) < total {
        let _ = write!(
            b,
            "<a href=\"/office/approvals?page={}\">{}</a>",
            skip + 1,
            ui.t("Next »", "Volgende »")
        );
    }
    b.push_str("</div>");
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

// ---- courses ----

pub async fn courses(State(s): State<ApiState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let search = get(&q, "q");
    let skip = get(&q, "page")
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
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
    let _ = write!(
        b,
        "<h1>{}</h1><form class=\"filters\" method=\"get\" action=\"/office/courses\"><label>{}<input name=\"q\" value=\"{}\"></label>\
         <button type=\"submit\">{}</button></form>",
        ui.t("Courses", "Cursussen"),
        ui.t("Course id or name", "Cursuscode of naam"),
        esc(search.unwrap_or_default()),
        ui.t("Search", "Zoeken")
    );
    let _ = write!(
        b,
        "<div class=\"table\"><table><thead><tr><th>{}</th><th>{}</th><th class=\"hide-s\">{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        ui.t("Course", "Cursus"),
        ui.t("Name", "Naam"),
        ui.t("Type", "Type"),
        ui.t("Status", "Status"),
        ui.t("Dates", "Data"),
        ui.t("Participants", "Deelnemers")
    );
    for c in &rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"hide-s\">{}</td><td>{}</td><td>{} – {}</td><td>{}</td></tr>",
            course_link(&c.id),
            esc(&c.name),
            esc(&c.type_id),
            esc(&c.status),
            c.start_at.with_timezone(&ui.tz).format("%Y-%m-%d"),
            c.end_at.with_timezone(&ui.tz).format("%Y-%m-%d"),
            counts.get(&c.id).copied().unwrap_or(0)
        );
    }
    b.push_str("</tbody></table></div><div class=\"pager\">");
    let sq = search.map(|v| format!("&q={}", enc(v))).unwrap_or_default();
    if skip > 0 {
        let _ = write!(
            b,
            "<a href=\"/office/courses?page={}{sq}\">{}</a>",
            skip - 1,
            ui.t("« Previous", "« Vorige")
        );
    }
    if more {
        let _ = write!(
            b,
            "<a href=\"/office/courses?page={}{sq}\">{}</a>",
            skip + 1,
            ui.t("Next »", "Volgende »")
        );
    }
    b.push_str("</div>");
    page(&ctx, "/office/courses", ui.t("Courses", "Cursussen"), &b)
}

fn yes_no(v: bool, ui: &Ui) -> String {
    if v {
        format!("<span class=\"ok\">{}</span>", ui.t("yes", "ja"))
    } else {
        format!("<span class=\"bad\">{}</span>", ui.t("no", "nee"))
    }
}

/// Each rule's state for one participant: the sent and pending deliveries, then what the
/// plan says of the rest, with its reasons.
fn emails_of(person: &str, plan: &[&PlanItem], sent: &[&DeliveryRow], ui: &Ui) -> String {
    let mut b = String::from("<ul class=\"rules\">");
    for d in sent {
        let _ = write!(
            b,
            "<li>{} {} <a href=\"/office/deliveries/{}\">#{}</a>{}</li>",
            esc(&d.rule),
            badge(d.state.as_str(), ui),
            d.id,
            d.id,
            match (d.state, &d.last_error) {
                (DeliveryState::Failed | DeliveryState::Retrying, Some(e)) =>
                    format!("<ul class=\"reasons\"><li>{}</li></ul>", esc(e)),
                _ => String::new(),
            }
        );
    }
    // Rules that cannot fire as the data stands (a result notice for another result) are
    // folded away, with their reasons, below the ones that matter.
    let mut folded = String::new();
    let mut folded_count = 0;
    for item in plan.iter().filter(|i| i.person == person) {
        // A fired instance shows as its delivery above.
        if sent.iter().any(|d| d.rule == item.rule) {
            continue;
        }
        let state = match item.state {
            engine::PlanState::AwaitingApproval => "awaiting_approval",
            other => other.as_str(),
        };
        let mut reasons = String::new();
        if !item.reasons.is_empty() {
            reasons.push_str("<ul class=\"reasons\">");
            for r in &item.reasons {
                let _ = write!(reasons, "<li>{}</li>", esc(r));
            }
            reasons.push_str("</ul>");
        }
        let due = item
            .due
            .as_deref()
            .map(|d| {
                format!(
                    " <span class=\"muted\">{}</span>",
                    esc(&d.replace('T', " ").chars().take(16).collect::<String>())
                )
            })
            .unwrap_or_default();
        let approve = if item.state == engine::PlanState::AwaitingApproval {
            format!(
                " <a href=\"/office/approvals/{}\">{}</a>",
                item.id,
                ui.t("Preview", "Voorbeeld")
            )
        } else {
            String::new()
        };
        let line = format!(
            "<li>{} {}{due}{approve}{reasons}</li>",
            esc(&item.rule),
            badge(state, ui)
        );
        if item.cannot_fire {
            folded.push_str(&line);
            folded_count += 1;
        } else {
            b.push_str(&line);
        }
    }
    b.push_str("</ul>");
    if folded_count > 0 {
        let _ = write!(
            b,
            "<details><summary class=\"muted\">{}</summary><ul class=\"rules\">{folded}</ul></details>",
            esc(&if ui.nl {
                format!("{folded_count} regel(s) die nu niet van toepassing zijn")
            } else {
                format!("{folded_count} rule(s) that do not apply as things stand")
            })
        );
    }
    b
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
        tx.rollback().await?;
        Ok::<_, sqlx::Error>(Some((info, people, more, total, statuses, plan, sent)))
    };
    let (info, people, more, total, statuses, plan, sent) = match read.await {
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
        esc(info.status.as_str()),
        ui.t("Dates", "Data"),
        time(info.start, ui),
        time(info.end, ui),
        ui.t("Participants", "Deelnemers"),
    );
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
            let _ = write!(b, "<td class=\"hide-s\">{}</td>", esc(m));
        }
        let percent = p
            .attendance
            .percent()
            .map(|v| format!("{v}%"))
            .unwrap_or_else(|| "–".into());
        let completed = p.completed_at.map(|t| time(t, ui)).unwrap_or_else(|| {
            format!(
                "<span class=\"muted\">{}</span>",
                esc(&p.result.to_string())
            )
        });
        let cert = match (&p.certificate_number, &p.expiry) {
            (Some(n), Some(e)) => format!(
                "{}<br><span class=\"muted\">{}</span>",
                esc(n),
                esc(&e.to_string())
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

// ---- people ----

pub async fn people(State(s): State<ApiState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let ui = &ctx.ui;
    let q = query_of(&raw);
    let search = get(&q, "q");
    let skip = get(&q, "page")
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
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
    let _ = write!(
        b,
        "<h1>{}</h1><form class=\"filters\" method=\"get\" action=\"/office/people\"><label>{}<input name=\"q\" value=\"{}\"></label>\
         <button type=\"submit\">{}</button></form>",
        ui.t("People", "Personen"),
        ui.t("Name, id or email address", "Naam, code of e-mailadres"),
        esc(search.unwrap_or_default()),
        ui.t("Search", "Zoeken")
    );
    let _ = write!(
        b,
        "<div class=\"table\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        ui.t("Name", "Naam"),
        ui.t("Id", "Code"),
        ui.t("Email address", "E-mailadres")
    );
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
    b.push_str("</tbody></table></div><div class=\"pager\">");
    let sq = search.map(|v| format!("&q={}", enc(v))).unwrap_or_default();
    if skip > 0 {
        let _ = write!(
            b,
            "<a href=\"/office/people?page={}{sq}\">{}</a>",
            skip - 1,
            ui.t("« Previous", "« Vorige")
        );
    }
    if more {
        let _ = write!(
            b,
            "<a href=\"/office/people?page={}{sq}\">{}</a>",
            skip + 1,
            ui.t("Next »", "Volgende »")
        );
    }
    b.push_str("</div>");
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
        let _ = write!(
            b,
            "<div class=\"table\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>D1</th><th>D2</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            ui.t("Course", "Cursus"),
            ui.t("Result", "Resultaat"),
            ui.t("Attendance", "Aanwezig"),
            ui.t("Completed", "Afgerond"),
            ui.t("Certificate", "Certificaat"),
            ui.t("Emails", "E-mails")
        );
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
                esc(&p.result.to_string()),
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
        let _ = write!(
            b,
            "<div class=\"table\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            ui.t("Number", "Nummer"),
            ui.t("Course", "Cursus"),
            ui.t("Issued", "Uitgegeven"),
            ui.t("Valid until", "Geldig tot"),
            ui.t("Check", "Controle")
        );
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
        let _ = write!(
            b,
            "<div class=\"table\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            ui.t("Certification", "Certificering"),
            ui.t("Status", "Status"),
            ui.t("Cycle", "Cyclus"),
            ui.t("Valid until", "Geldig tot"),
            ui.t("Emails", "E-mails")
        );
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
