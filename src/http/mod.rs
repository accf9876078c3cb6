//! The HTTP API (SPEC §5), served by `registrar serve` with axum: JSON under /api/v1
//! behind a bearer token; /healthz, /metrics and /verify/{code} public. Bodies are parsed
//! into the same inputs as CSV rows (one parser, one set of messages), every state change
//! goes through the same `Work` unit as an import, and wakes the scheduler so that what
//! fell due is delivered within a second.

mod batch;
mod errors;
mod ingest;
pub mod openapi;
mod query;
pub mod schema;
pub mod server;

use crate::config::Config;
use crate::rules::RuleSet;
use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
pub use errors::ApiError;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;

/// The largest request body accepted (a bulk of tens of thousands of marks fits).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub config: Arc<Config>,
    /// The rules in force; `serve` replaces them on SIGHUP.
    pub rules: Arc<RwLock<Arc<RuleSet>>>,
    /// Wakes the scheduler after a state change.
    pub wake: Arc<Notify>,
    /// The bearer token; `None` when none is configured (every API call is then refused).
    pub token: Option<Arc<str>>,
    /// Unix time (ms) of the scheduler's last completed loop, and the last pass duration.
    pub scheduler_beat: Arc<AtomicI64>,
    pub pass_millis: Arc<AtomicI64>,
    /// Single attendance marks go through the group-commit writer ([`batch`]).
    pub marks: tokio::sync::mpsc::Sender<(crate::import::kinds::Row, batch::Reply)>,
    /// Whether delivery is paused on a configuration problem.
    pub delivery: crate::delivery::Health,
}

impl ApiState {
    /// The state, with the writer task for single marks started.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        rules: Arc<RuleSet>,
        wake: Arc<Notify>,
        token: Option<Arc<str>>,
        delivery: crate::delivery::Health,
    ) -> ApiState {
        let (placeholder, _) = tokio::sync::mpsc::channel(1);
        let mut state = ApiState {
            store,
            config,
            rules: Arc::new(RwLock::new(rules)),
            wake,
            token,
            scheduler_beat: Arc::default(),
            pass_millis: Arc::default(),
            marks: placeholder,
            delivery,
        };
        state.marks = batch::start(state.clone());
        state
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }

    /// Records the scheduler's progress (for /healthz and /metrics).
    pub fn beat(&self, pass: std::time::Duration) {
        self.scheduler_beat
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        self.pass_millis
            .store(pass.as_millis() as i64, Ordering::Relaxed);
    }
}

/// Every route, with its method: the router below and the OpenAPI document are checked
/// against this list by the tests.
pub const ROUTES: &[(&str, &str)] = &[
    ("PUT", "/api/v1/courses/{course}"),
    ("PUT", "/api/v1/courses/{course}/parts/{part}"),
    ("PUT", "/api/v1/people/{person}"),
    ("PUT", "/api/v1/courses/{course}/enrolments/{person}"),
    ("DELETE", "/api/v1/courses/{course}/enrolments/{person}"),
    ("POST", "/api/v1/courses/{course}/attendance"),
    ("POST", "/api/v1/courses/{course}/attendance/bulk"),
    (
        "PUT",
        "/api/v1/courses/{course}/parts/{part}/results/{person}",
    ),
    ("PUT", "/api/v1/courses/{course}/results/{person}"),
    ("POST", "/api/v1/courses/{course}/results/bulk"),
    (
        "POST",
        "/api/v1/courses/{course}/participants/{person}/reset",
    ),
    (
        "POST",
        "/api/v1/courses/{course}/participants/{person}/reassign",
    ),
    (
        "POST",
        "/api/v1/courses/{course}/participants/{person}/equivalency",
    ),
    ("GET", "/api/v1/courses/{course}/participants"),
    ("GET", "/api/v1/plan"),
    ("GET", "/api/v1/deliveries"),
    ("POST", "/api/v1/deliveries/{id}/retry"),
    (
        "POST",
        "/api/v1/certifications/{certification}/learners/{person}/{action}",
    ),
    ("GET", "/api/v1/certifications/{certification}/learners"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/verify/{code}"),
    ("GET", "/verify/{code}/credential"),
    ("GET", "/.well-known/did.json"),
    ("GET", "/did.json"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
];

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/courses/{course}", put(ingest::put_course))
        .route("/courses/{course}/parts/{part}", put(ingest::put_part))
        .route("/people/{person}", put(ingest::put_person))
        .route(
            "/courses/{course}/enrolments/{person}",
            put(ingest::put_enrolment).delete(ingest::delete_enrolment),
        )
        .route("/courses/{course}/attendance", post(ingest::post_mark))
        .route(
            "/courses/{course}/attendance/bulk",
            post(ingest::post_marks),
        )
        .route(
            "/courses/{course}/parts/{part}/results/{person}",
            put(ingest::put_part_result),
        )
        .route(
            "/courses/{course}/results/{person}",
            put(ingest::put_result),
        )
        .route("/courses/{course}/results/bulk", post(ingest::post_results))
        .route(
            "/courses/{course}/participants/{person}/{action}",
            post(ingest::post_participant_action),
        )
        .route("/courses/{course}/participants", get(query::participants))
        .route("/plan", get(query::plan))
        .route("/deliveries", get(query::deliveries))
        .route("/deliveries/{id}/retry", post(ingest::post_retry))
        .route(
            "/certifications/{certification}/learners/{person}/{action}",
            post(ingest::post_certification_action),
        )
        .route(
            "/certifications/{certification}/learners",
            get(query::certification_learners),
        )
        .route("/openapi.json", get(openapi::document))
        .fallback(errors::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ));
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::office::router(state.clone()))
        .route("/verify/{code}", get(query::verify))
        .route("/verify/{code}/credential", get(query::credential))
        .route("/.well-known/did.json", get(query::did_document))
        .route("/did.json", get(query::did_document))
        .route("/healthz", get(query::healthz))
        .route("/metrics", get(query::metrics))
        .fallback(errors::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Bearer token, compared in constant time.
async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "no_token_configured",
            "the API is closed: set http.token_env or http.token_file in the configuration",
        )
        .into_response();
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        next.run(request).await
    } else {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer TOKEN)",
        )
        .into_response()
    }
}

/// Equal in time that depends only on the lengths, not on where the bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
    }
}
