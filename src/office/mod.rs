//! The office's own pages, served by `serve` under /office/ on the API's listener:
//! server-rendered HTML (no JavaScript needed) in the office's language, behind a sign-in
//! with an office account (`registrar office-user add NAME`).
//!
//! Every page asks the same functions as the CLI and the API: the plan's reasons come from
//! `engine::plan_of` (the code of `registrar plan` and of the firing pass), statuses from
//! `status::participants` (the export's), Retry is `delivery::retry` and Approve is
//! `fire::approve` (the code of `registrar retry` and `approve`), so a page can never do
//! what those would refuse. Who retried or approved is recorded in the history (D10) by
//! account name.
//!
//! Security: a session is a random cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind
//! TLS) known to the database only by its SHA-256; every form carries the session's CSRF
//! token and a POST without it is refused; five failed sign-ins in a row lock an account
//! for 15 minutes; pages are `no-store` and framed by nobody; a message's HTML is shown in
//! a sandboxed frame with scripts off.

pub mod auth;
mod html;
mod message;
mod pages;

use crate::http::ApiState;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

/// The signed-in account of a request, put there by [`require_session`].
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
}

/// What every page needs to know of its request: who, and in which language.
pub struct Ctx {
    pub session: Session,
    pub ui: html::Ui,
}

impl FromRequestParts<ApiState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Ctx, Response> {
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            return Err(Redirect::to("/office/sign-in").into_response());
        };
        Ok(Ctx {
            session,
            ui: html::Ui::of(&parts.headers, parts.uri.query(), s),
        })
    }
}

/// The pages, at their full paths (merged into the API's router).
pub fn router(state: ApiState) -> Router<ApiState> {
    let private = Router::new()
        .route("/office/", get(pages::overview))
        .route("/office/deliveries", get(pages::deliveries))
        .route("/office/deliveries/{id}", get(pages::delivery))
        .route("/office/deliveries/{id}/html", get(pages::delivery_html))
        .route(
            "/office/deliveries/{id}/part/{n}",
            get(pages::delivery_part),
        )
        .route("/office/deliveries/{id}/retry", post(pages::retry))
        .route(
            "/office/approvals",
            get(pages::approvals).post(pages::approve),
        )
        .route("/office/approvals/{id}", get(pages::approval))
        .route("/office/approvals/{id}/html", get(pages::approval_html))
        .route("/office/courses", get(pages::courses))
        .route("/office/courses/{id}", get(pages::course))
        .route("/office/people", get(pages::people))
        .route("/office/people/{id}", get(pages::person))
        .route("/office/sign-out", post(auth::sign_out))
        .route_layer(axum::middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route(
            "/office/sign-in",
            get(auth::sign_in_page).post(auth::sign_in),
        )
        .route("/office/style.css", get(html::style))
        .route("/office", get(|| async { Redirect::permanent("/office/") }))
        .merge(private)
        .layer(axum::middleware::from_fn(headers))
}

/// Every office response: not cached, not framed by others, no scripts.
async fn headers(request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    r
}

/// The session of the request's cookie, or: a GET goes to the sign-in page, anything else
/// is refused.
async fn require_session(State(s): State<ApiState>, mut request: Request, next: Next) -> Response {
    let session = match auth::session_of(&s, request.headers()).await {
        Ok(session) => session,
        Err(e) => {
            tracing::error!("office: reading the session failed: {e}");
            return html::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database did not answer; try again in a moment.",
            );
        }
    };
    let Some(session) = session else {
        if request.method() == axum::http::Method::GET {
            let next_path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            return Redirect::to(&format!("/office/sign-in?next={}", html::enc(&next_path)))
                .into_response();
        }
        return html::error_page(
            StatusCode::UNAUTHORIZED,
            "Not signed in (or the session ended): sign in again.",
        );
    };
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// Whether the request came over TLS (directly or through a proxy that says so), so that
/// the cookie is marked `Secure`.
/// (registrar itself listens without TLS; the proxy in front says `X-Forwarded-Proto`.)
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}
