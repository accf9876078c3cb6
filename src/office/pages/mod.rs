//! The pages: overview, deliveries (and one delivery with its message and attempts),
//! awaiting approval, courses (and one course's participants with the plan's reasons),
//! people (and one person's everything). This module holds what several pages show.

mod approvals;
mod courses;
mod deliveries;
mod overview;
mod people;

pub use approvals::{approval, approval_html, approvals, approve};
pub use courses::{course, courses};
pub use deliveries::{deliveries, delivery, delivery_html, delivery_part, retry};
pub use overview::overview;
pub use people::{people, person};

use super::Ctx;
use super::auth::csrf_ok;
use super::html::{self, Ui, badge, db_error, enc, esc, form_pairs, page, said, time};
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

/// The `page=` of a list paged by number: 0 and up, bounded (so that an offset never
/// overflows, whatever the address says).
fn page_number(q: &[(String, String)]) -> i64 {
    get(q, "page")
        .and_then(|p| p.parse::<i64>().ok())
        .unwrap_or(0)
        .clamp(0, 1_000_000)
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

/// A list page's title and its search form (`q`).
fn search_form(action: &str, title: &str, label: &str, value: Option<&str>, ui: &Ui) -> String {
    format!(
        "<h1>{}</h1><form class=\"filters\" method=\"get\" action=\"{action}\"><label>{}<input name=\"q\" value=\"{}\"></label>\
         <button type=\"submit\">{}</button></form>",
        esc(title),
        esc(label),
        esc(value.unwrap_or_default()),
        ui.t("Search", "Zoeken")
    )
}

/// Previous and next links of a list paged by number (`page=`), keeping `q` if given.
fn numbered_pager(action: &str, page: i64, more: bool, q: Option<&str>, ui: &Ui) -> String {
    let q = q.map(|v| format!("&q={}", enc(v))).unwrap_or_default();
    let mut b = String::from("<div class=\"pager\">");
    if page > 0 {
        let _ = write!(
            b,
            "<a href=\"{action}?page={}{q}\">{}</a>",
            page - 1,
            ui.t("« Previous", "« Vorige")
        );
    }
    if more {
        let _ = write!(
            b,
            "<a href=\"{action}?page={}{q}\">{}</a>",
            page + 1,
            ui.t("Next »", "Volgende »")
        );
    }
    b.push_str("</div>");
    b
}

/// A column heading in English and Dutch; `wide` ones are left out on a phone.
struct Col(&'static str, &'static str, bool);

const fn col(en: &'static str, nl: &'static str) -> Col {
    Col(en, nl, false)
}

const fn wide(en: &'static str, nl: &'static str) -> Col {
    Col(en, nl, true)
}

/// The start of a table, up to its body.
fn table_head(cols: &[Col], ui: &Ui) -> String {
    let mut b = String::from("<div class=\"table\"><table><thead><tr>");
    for Col(en, nl, wide) in cols {
        let class = if *wide { " class=\"hide-s\"" } else { "" };
        let _ = write!(b, "<th{class}>{}</th>", esc(ui.t(en, nl)));
    }
    b.push_str("</tr></thead><tbody>");
    b
}

fn csrf_field(ctx: &Ctx) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&ctx.session.csrf)
    )
}

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
            for r in if ui.nl {
                &item.reasons_nl
            } else {
                &item.reasons
            } {
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
                item.id.unwrap_or_default(),
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
