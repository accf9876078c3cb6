//! The pages' shell and small HTML helpers: escaping, the layout, the language.

use super::Ctx;
use crate::http::ApiState;
use crate::lang::Lang;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The language (English or Dutch) and time zone a page is written in.
pub struct Ui {
    pub nl: bool,
    pub tz: Tz,
    /// Whether the language came from `?lang=` (then remembered in a cookie).
    chosen: Option<&'static str>,
}

const LANG_COOKIE: &str = "registrar_office_lang";

impl Ui {
    /// `?lang=nl|en`, else the language cookie, else the browser's Accept-Language, else
    /// the office's locale.
    pub fn of(headers: &HeaderMap, query: Option<&str>, s: &ApiState) -> Ui {
        let tz = s.config.timezone;
        let asked = query.and_then(|q| {
            form_pairs(q)
                .into_iter()
                .find(|(k, _)| k == "lang")
                .map(|(_, v)| v)
        });
        let chosen = match asked.as_deref() {
            Some("nl") => Some("nl"),
            Some("en") => Some("en"),
            _ => None,
        };
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == LANG_COOKIE)
            .map(|(_, v)| v.to_string());
        let nl = match (chosen, cookie.as_deref()) {
            (Some(l), _) => l == "nl",
            (None, Some("nl")) => true,
            (None, Some("en")) => false,
            _ => {
                let accept = headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok());
                crate::lang::from_accept_language(accept, &s.config.office.locale).base()
                    == Lang::parse("nl").unwrap_or_else(Lang::english)
            }
        };
        Ui { nl, tz, chosen }
    }

    /// The English or the Dutch words.
    pub fn t<'a>(&self, en: &'a str, nl: &'a str) -> &'a str {
        if self.nl { nl } else { en }
    }

    pub fn code(&self) -> &'static str {
        if self.nl { "nl" } else { "en" }
    }
}

/// HTML-escaped text (for element content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encoded for a URL's path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` pairs (a form's body or a query), in order;
/// repeated names kept.
pub fn form_pairs(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes.get(i) {
                Some(b'+') => out.push(b' '),
                Some(b'%') => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                Some(b) => out.push(*b),
                None => {}
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A moment in the office's time zone: `2026-11-24 14:05`.
pub fn time(t: DateTime<Utc>, ui: &Ui) -> String {
    t.with_timezone(&ui.tz).format("%Y-%m-%d %H:%M").to_string()
}

/// A delivery or plan state as a coloured word.
pub fn badge(state: &str, ui: &Ui) -> String {
    let (class, en, nl) = match state {
        "sent" => ("ok", "sent", "verzonden"),
        "queued" => ("info", "queued", "in wachtrij"),
        "sending" => ("info", "sending", "wordt verzonden"),
        "retrying" => ("warn", "retrying", "nieuwe poging"),
        "failed" => ("bad", "failed", "mislukt"),
        "due" => ("info", "due", "klaar om te verzenden"),
        "waiting" => ("muted", "waiting", "wacht"),
        "awaiting_approval" => ("warn", "awaiting approval", "wacht op goedkeuring"),
        "approved" => ("info", "approved", "goedgekeurd"),
        "cancelled" => ("muted", "cancelled", "geannuleerd"),
        "expired" => ("muted", "expired", "verlopen"),
        other => ("muted", other, other),
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(ui.t(en, nl)))
}

/// A stored word (an attendance mark, a result, a status) as the page's reader says it;
/// unknown words as they are.
pub fn said(code: &str, ui: &Ui) -> String {
    let (en, nl) = match code {
        "booked" => ("booked", "ingeschreven"),
        "attended" => ("attended", "aanwezig"),
        "not_attended" => ("not attended", "afwezig"),
        "pending" => ("not marked", "niet ingevuld"),
        "registered" => ("registered", "ingeschreven"),
        "passed" => ("passed", "geslaagd"),
        "failed" => ("failed", "niet geslaagd"),
        "not_finished" => ("not finished", "niet afgerond"),
        "deregistered" => ("deregistered", "afgemeld"),
        "valid" => ("valid", "geldig"),
        "expiring_soon" => ("expiring soon", "verloopt binnenkort"),
        "expired" => ("expired", "verlopen"),
        "draft" => ("draft", "concept"),
        "final" => ("final", "definitief"),
        "completed" => ("completed", "afgerond"),
        "cancelled" => ("cancelled", "geannuleerd"),
        other => (other, other),
    };
    esc(ui.t(en, nl))
}

const NAV: &[(&str, &str, &str)] = &[
    ("/office/", "Overview", "Overzicht"),
    ("/office/deliveries", "Deliveries", "Verzendingen"),
    ("/office/approvals", "Awaiting approval", "Goed te keuren"),
    ("/office/courses", "Courses", "Cursussen"),
    ("/office/people", "People", "Personen"),
];

/// A page with the navigation, the account and the sign-out button.
pub fn page(ctx: &Ctx, current: &str, title: &str, body: &str) -> Response {
    let ui = &ctx.ui;
    let mut nav = String::new();
    for (href, en, nl) in NAV {
        let here = if *href == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        nav.push_str(&format!("<a href=\"{href}\"{here}>{}</a>", ui.t(en, nl)));
    }
    let other = if ui.nl {
        ("en", "English")
    } else {
        ("nl", "Nederlands")
    };
    let header = format!(
        "<header><nav>{nav}</nav><div class=\"account\"><a href=\"?lang={}\" lang=\"{}\">{}</a> \
         <span>{}</span><form method=\"post\" action=\"/office/sign-out\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"link\">{}</button></form></div></header>",
        other.0,
        other.0,
        other.1,
        esc(&ctx.session.user),
        esc(&ctx.session.csrf),
        ui.t("Sign out", "Uitloggen")
    );
    let mut r = shell(ui, title, &format!("{header}<main>{body}</main>"));
    remember_language(ui, &mut r);
    r
}

/// A page without navigation (sign-in).
pub fn bare_page(ui: &Ui, title: &str, body: &str) -> Response {
    let mut r = shell(ui, title, body);
    remember_language(ui, &mut r);
    r
}

fn remember_language(ui: &Ui, r: &mut Response) {
    if let Some(l) = ui.chosen
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={l}; Path=/office; SameSite=Strict; Max-Age=31536000"
        ))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn shell(ui: &Ui, title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · registrar</title><link rel=\"stylesheet\" href=\"/office/style.css\"></head>\
         <body>{body}</body></html>",
        ui.code(),
        esc(title)
    ))
    .into_response()
}

/// A plain error page (no session needed).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>registrar</title><link rel=\"stylesheet\" href=\"/office/style.css\"></head>\
         <body><main class=\"narrow\"><p class=\"error\" role=\"alert\">{}</p><p><a href=\"/office/\">registrar</a></p></main></body></html>",
        esc(message)
    );
    (status, Html(body)).into_response()
}

/// The answer to a form posted without the session's CSRF token.
pub fn csrf_refused(ui: &Ui) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        ui.t(
            "Refused: the form was not sent from these pages (its security token is missing or wrong). Nothing was changed; open the page again and retry.",
            "Geweigerd: het formulier kwam niet van deze pagina's (het beveiligingstoken ontbreekt of klopt niet). Er is niets gewijzigd; open de pagina opnieuw en probeer het nog eens.",
        ),
    )
}

/// A page's answer when the database failed: logged, and said without its details.
pub fn db_error(e: &sqlx::Error) -> Response {
    tracing::error!("office page: {e}");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The database did not answer; try again in a moment.",
    )
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

const STYLE: &str = r#"
:root { --fg: #1d2433; --muted: #5b6478; --line: #d9dee8; --bg: #f6f7fb; --accent: #1f5fbf;
  --ok: #1b7f3b; --bad: #b42318; --warn: #a15c00; --info: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: center; gap: .5rem;
  padding: .6rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
header nav { display: flex; flex-wrap: wrap; gap: .25rem 1rem; }
header nav a { color: var(--fg); text-decoration: none; padding: .2rem 0; }
header nav a[aria-current=page] { font-weight: 600; border-bottom: 2px solid var(--accent); }
.account { display: flex; gap: .75rem; align-items: center; color: var(--muted); }
.account form { margin: 0; }
main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
main.narrow { max-width: 26rem; margin-top: 3rem; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1.5rem; }
h1 { font-size: 1.5rem; margin: .2rem 0 1rem; } h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
a { color: var(--accent); }
label { display: block; margin: .6rem 0; font-weight: 500; }
input, select { display: block; width: 100%; padding: .45rem .5rem; font: inherit; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
input[type=checkbox] { display: inline; width: auto; }
button { font: inherit; padding: .45rem .9rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button.link { background: none; border: none; color: var(--accent); padding: 0; text-decoration: underline; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: .75rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; text-decoration: none; color: var(--fg); }
.card b { display: block; font-size: 1.6rem; }
.card span { color: var(--muted); font-size: .9rem; }
.table { overflow-x: auto; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .85rem; color: var(--muted); font-weight: 600; white-space: nowrap; }
tr:last-child td { border-bottom: none; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: 999px; font-size: .8rem; white-space: nowrap; border: 1px solid currentColor; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); } .info { color: var(--info); } .muted { color: var(--muted); }
.error { color: var(--bad); background: #fdecea; border: 1px solid #f5c2bd; border-radius: 6px; padding: .6rem .8rem; }
.notice { color: var(--ok); background: #e9f6ee; border: 1px solid #b7e1c5; border-radius: 6px; padding: .6rem .8rem; }
.filters { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .5rem; align-items: end; margin-bottom: 1rem; }
.filters label { margin: 0; font-size: .85rem; }
.pager { display: flex; gap: 1rem; margin: .75rem 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .75rem; }
iframe { width: 100%; min-height: 28rem; border: 1px solid var(--line); border-radius: 8px; background: #fff; }
ul.reasons { margin: .2rem 0 0; padding-left: 1.1rem; color: var(--muted); font-size: .9rem; }
.rules { list-style: none; margin: 0; padding: 0; }
.rules li { margin-bottom: .3rem; }
tr.main td { border-bottom: none; }
tr.sub td { padding-top: 0; font-size: .92rem; }
tr.sub .rules { display: inline; }
tr.sub .rules li { display: inline-block; vertical-align: top; margin: 0 1.25rem .3rem 0; max-width: 24rem; }
details summary { cursor: pointer; font-size: .88rem; }
@media (max-width: 640px) { main { padding: .6rem; } th, td { padding: .35rem .4rem; } .hide-s { display: none; } }
"#;
