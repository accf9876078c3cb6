//! Office accounts: argon2id password hashes, sign-in with a lockout, sessions, CSRF.

use super::html::{self, Ui, esc};
use super::{Session, behind_tls};
use crate::http::ApiState;
use crate::store::{Store, office};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};

/// The session cookie.
const COOKIE: &str = "registrar_office";
/// The sign-in form's CSRF cookie (double submit: there is no session yet).
const SIGN_IN_COOKIE: &str = "registrar_office_signin";
/// Failed sign-ins in a row that lock an account, and for how long.
pub const LOCK_AFTER: i64 = 5;
pub const LOCK_MINUTES: i64 = 15;
/// How long a session lasts.
const SESSION_HOURS: i64 = 12;
/// The shortest password `office-user add` accepts.
pub const MIN_PASSWORD: usize = 10;

/// 32 random bytes, base64url.
fn random_token() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The argon2id hash (PHC string) of a password, with a fresh salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| anyhow::anyhow!("cannot encode the salt: {e}"))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches the stored hash (false for a hash that cannot be read).
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to check against when the account does not exist, so that an unknown name takes
/// as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("registrar decoy password").unwrap_or_default())
}

/// Whether an account name is acceptable: 1-64 letters, digits, `.`, `-`, `_`, `@`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/office; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session of a request's cookie, if it is one that has not ended.
pub async fn session_of(s: &ApiState, headers: &HeaderMap) -> Result<Option<Session>, sqlx::Error> {
    let Some(token) = cookie_value(headers, COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut tx = s.store.begin_read().await?;
    let found = office::session(&mut tx, &sha256_hex(token), Utc::now()).await;
    tx.rollback().await?;
    Ok(found?.map(|(user, csrf)| Session { user, csrf }))
}

/// Whether a form's CSRF token is the session's.
pub fn csrf_ok(session: &Session, given: Option<&str>) -> bool {
    given.is_some_and(|g| crate::http::constant_time_eq(g.as_bytes(), session.csrf.as_bytes()))
}

#[derive(serde::Deserialize, Default)]
pub struct SignInQuery {
    next: Option<String>,
    lang: Option<String>,
}

/// Where to go after signing in: only a path of these pages.
fn next_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/office/") && !n.starts_with("/office//") && !n.contains('\\') =>
        {
            n.to_string()
        }
        _ => "/office/".to_string(),
    }
}

pub async fn sign_in_page(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<SignInQuery>,
) -> Response {
    let ui = Ui::of(
        &headers,
        q.lang.as_deref().map(|l| format!("lang={l}")).as_deref(),
        &s,
    );
    sign_in_form(&ui, &headers, q.next.as_deref(), None, StatusCode::OK)
}

fn sign_in_form(
    ui: &Ui,
    headers: &HeaderMap,
    next: Option<&str>,
    problem: Option<String>,
    status: StatusCode,
) -> Response {
    let Ok(token) = random_token() else {
        return html::error_page(StatusCode::SERVICE_UNAVAILABLE, "no randomness available");
    };
    let mut b = String::new();
    b.push_str(&format!(
        "<main class=\"narrow\"><h1>{}</h1>",
        ui.t("Sign in", "Inloggen")
    ));
    if let Some(p) = problem {
        b.push_str(&format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            esc(&p)
        ));
    }
    b.push_str(&format!(
        "<form method=\"post\" action=\"/office/sign-in\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>{}<input name=\"name\" autocomplete=\"username\" required autofocus></label>\
         <label>{}<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">{}</button></form>\
         <p class=\"muted\">{}</p></main>",
        esc(&next_path(next)),
        ui.t("Account", "Account"),
        ui.t("Password", "Wachtwoord"),
        ui.t("Sign in", "Inloggen"),
        ui.t(
            "An account is made on the server with: registrar office-user add NAME",
            "Een account maakt u op de server met: registrar office-user add NAAM"
        ),
    ));
    let mut r = html::bare_page(ui, ui.t("Sign in", "Inloggen"), &b);
    *r.status_mut() = status;
    if let Ok(v) = set_cookie(SIGN_IN_COOKIE, &token, 3600, behind_tls(headers)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn sign_in(State(s): State<ApiState>, headers: HeaderMap, body: String) -> Response {
    let form = html::form_pairs(&body);
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ui = Ui::of(&headers, None, &s);
    let next = field("next");
    // Double submit: the form's token must be the one its page set as a cookie.
    let expected = cookie_value(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    let given = field("csrf").unwrap_or_default();
    if expected.is_empty() || !crate::http::constant_time_eq(expected.as_bytes(), given.as_bytes())
    {
        return html::error_page(
            StatusCode::FORBIDDEN,
            ui.t(
                "The form was not sent from this site's sign-in page (its security token is missing or wrong); open the sign-in page again.",
                "Het formulier kwam niet van de inlogpagina van deze site (het beveiligingstoken ontbreekt of klopt niet); open de inlogpagina opnieuw.",
            ),
        );
    }
    let name = field("name").unwrap_or_default().trim().to_string();
    let password = field("password").unwrap_or_default().to_string();
    match check(&s.store, &name, &password).await {
        Ok(Checked::Ok) => {}
        Ok(Checked::Wrong) => {
            return sign_in_form(
                &ui,
                &headers,
                next,
                Some(
                    ui.t(
                        "Wrong account or password.",
                        "Onjuist account of wachtwoord.",
                    )
                    .into(),
                ),
                StatusCode::UNAUTHORIZED,
            );
        }
        Ok(Checked::Locked(until)) => {
            let until = html::time(until, &ui);
            return sign_in_form(
                &ui,
                &headers,
                next,
                Some(if ui.nl {
                    format!("Te veel mislukte pogingen: dit account is geblokkeerd tot {until}.")
                } else {
                    format!("Too many failed attempts: this account is locked until {until}.")
                }),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => {
            tracing::error!("office sign-in: {e}");
            return html::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database did not answer; try again in a moment.",
            );
        }
    }
    let (Ok(token), Ok(csrf)) = (random_token(), random_token()) else {
        return html::error_page(StatusCode::SERVICE_UNAVAILABLE, "no randomness available");
    };
    let now = Utc::now();
    let hashed = sha256_hex(&token);
    let saved = crate::store::transact!(s.store, |tx| office::add_session(
        tx,
        &hashed,
        &name,
        &csrf,
        now,
        now + Duration::hours(SESSION_HOURS)
    )
    .await);
    if let Err(e) = saved {
        tracing::error!("office sign-in: {e}");
        return html::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The database did not answer; try again in a moment.",
        );
    }
    tracing::info!(account = %name, "office: signed in");
    let mut r = Redirect::to(&next_path(next)).into_response();
    let secure = behind_tls(&headers);
    for c in [
        set_cookie(COOKIE, &token, SESSION_HOURS * 3600, secure),
        set_cookie(SIGN_IN_COOKIE, "", 0, secure),
    ] {
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

enum Checked {
    Ok,
    Wrong,
    Locked(DateTime<Utc>),
}

/// Checks a password; counts a failure (and locks after [`LOCK_AFTER`] in a row).
async fn check(store: &Store, name: &str, password: &str) -> Result<Checked, sqlx::Error> {
    let now = Utc::now();
    let user = {
        let mut tx = store.begin_read().await?;
        let u = office::user(&mut tx, name).await;
        tx.rollback().await?;
        u?
    };
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_string(), |u| u.password_hash.clone());
    let given = password.to_string();
    // argon2 takes tens of milliseconds of CPU: not on the runtime's threads.
    let matches = tokio::task::spawn_blocking(move || verify_password(&given, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user else {
        return Ok(Checked::Wrong);
    };
    if let Some(until) = user.locked_until.filter(|t| *t > now) {
        return Ok(Checked::Locked(until));
    }
    if matches {
        crate::store::transact!(store, |tx| office::record_success(tx, name, now).await)?;
        return Ok(Checked::Ok);
    }
    let until = now + Duration::minutes(LOCK_MINUTES);
    let locked = crate::store::transact!(store, |tx| office::record_failure(
        tx, name, LOCK_AFTER, until, now
    )
    .await)?;
    tracing::warn!(account = %name, locked, "office: failed sign-in");
    Ok(if locked {
        Checked::Locked(until)
    } else {
        Checked::Wrong
    })
}

pub async fn sign_out(
    State(s): State<ApiState>,
    ctx: super::Ctx,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = html::form_pairs(&body);
    let csrf = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    if !csrf_ok(&ctx.session, csrf) {
        return html::csrf_refused(&ctx.ui);
    }
    if let Some(token) = cookie_value(&headers, COOKIE) {
        let hashed = sha256_hex(token);
        if let Err(e) =
            crate::store::transact!(s.store, |tx| office::remove_session(tx, &hashed).await)
        {
            tracing::error!("office sign-out: {e}");
        }
    }
    let mut r = Redirect::to("/office/sign-in").into_response();
    if let Ok(v) = set_cookie(COOKIE, "", 0, behind_tls(&headers)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_argon2id_hash() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("correct horse battery", "not a hash"));
    }

    #[test]
    fn after_sign_in_only_a_path_of_the_office_pages_is_followed() {
        assert_eq!(
            next_path(Some("/office/deliveries?state=failed")),
            "/office/deliveries?state=failed"
        );
        assert_eq!(next_path(Some("https://evil.example/")), "/office/");
        assert_eq!(next_path(Some("//evil.example/office/")), "/office/");
        assert_eq!(next_path(Some("/office//evil.example")), "/office/");
        assert_eq!(next_path(None), "/office/");
    }
}
