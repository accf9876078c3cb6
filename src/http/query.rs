//! Reads over HTTP: a course's participants with their derived statuses, the plan, the
//! outbox; the public certificate check, health and metrics.

use super::ApiState;
use super::errors::ApiError;
use crate::domain::DeliveryState;
use crate::domain::time::local_rfc3339;
use crate::store::{actions, certificates, outbox};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// GET /api/v1/courses/{course}/participants: the fields of `export attendance`.
pub async fn participants(
    State(s): State<ApiState>,
    Path(course): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rules = s.rules();
    let tz = s.config.timezone;
    let mut tx = s.store.begin_read().await?;
    let found =
        crate::status::course_participants(&mut tx, &rules, tz, Utc::now(), &course).await?;
    tx.rollback().await?;
    let Some((info, people)) = found else {
        return Err(ApiError::not_found(format!("unknown course {course:?}")));
    };
    let list: Vec<Value> = people
        .iter()
        .map(|p| {
            let marks: serde_json::Map<String, Value> = info
                .parts
                .iter()
                .zip(&p.marks)
                .map(|(part, mark)| (part.rule.id.clone(), json!(mark)))
                .collect();
            json!({
                "person_id": p.person_id, "full_name": p.full_name, "email": p.email,
                "result": p.result, "walk_in": p.walk_in, "cycle": p.cycle,
                "attended": p.attendance.attended, "required": p.attendance.required,
                "attendance_percent": p.attendance.percent(),
                "attendance_requirement_achieved": p.attendance.achieved,
                "passing_obligation_passed": p.passing.met,
                "completed_at": p.completed_at.map(|t| local_rfc3339(t, tz)),
                "certificate_number": p.certificate_number,
                "expiry_status": p.expiry,
                "parts": marks,
            })
        })
        .collect();
    Ok(Json(json!({"course": info.id, "participants": list})))
}

#[derive(serde::Deserialize)]
pub struct PlanQuery {
    rule: Option<String>,
}

/// GET /api/v1/plan[?rule=ID]: as `registrar plan --format json`.
pub async fn plan(
    State(s): State<ApiState>,
    Query(q): Query<PlanQuery>,
) -> Result<Json<Value>, ApiError> {
    let rules = s.rules();
    let now = Utc::now();
    crate::engine::ingest(&s.store, &rules, s.config.timezone, now).await?;
    let items =
        crate::engine::plan(&s.store, &rules, s.config.timezone, now, q.rule.as_deref()).await?;
    Ok(Json(json!(items)))
}

#[derive(serde::Deserialize)]
pub struct DeliveriesQuery {
    state: Option<String>,
}

/// GET /api/v1/deliveries[?state=S].
pub async fn deliveries(
    State(s): State<ApiState>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<DeliveryState>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e))?;
    let rows = crate::delivery::list(&s.store, state).await?;
    Ok(Json(json!(rows)))
}

/// GET /verify/{code}: public. Name, course and dates only; HTML, or JSON when asked.
pub async fn verify(
    State(s): State<ApiState>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let row = if code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        None
    } else {
        let mut tx = s.store.begin_read().await?;
        let row = certificates::by_code(&mut tx, &code).await?;
        tx.rollback().await?;
        row
    };
    let Some(certificates::Verified {
        number,
        full_name: name,
        course_name: course,
        issued_at: issued,
        valid_until: until,
        revoked_at: revoked,
    }) = row
    else {
        let e = ApiError::not_found("no certificate has this verification code");
        return Ok(if wants_json {
            e.into_response()
        } else {
            (
                StatusCode::NOT_FOUND,
                Html(page(
                    "Not found",
                    "No certificate has this verification code.",
                    "#8a1c1c",
                )),
            )
                .into_response()
        });
    };
    let now = Utc::now();
    let status = if revoked.is_some() {
        "revoked"
    } else if until.is_some_and(|u| u <= now) {
        "expired"
    } else {
        "valid"
    };
    let tz = s.config.timezone;
    let day = |t: DateTime<Utc>| crate::render::long_date(t, tz);
    if wants_json {
        return Ok(Json(json!({
            "status": status, "number": number, "name": name, "course": course,
            "issued_on": day(issued), "valid_until": until.map(day),
        }))
        .into_response());
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    };
    let (title, colour) = match status {
        "valid" => ("Valid certificate", "#1f6f3a"),
        "expired" => ("Expired certificate", "#8a5a00"),
        _ => ("Revoked certificate", "#8a1c1c"),
    };
    let body = format!(
        "<p><strong>{}</strong> completed <strong>{}</strong>.</p><p>Certificate {} · issued on {}{}</p>",
        esc(&name),
        esc(&course),
        esc(&number),
        day(issued),
        until
            .map(|u| format!(" · valid until {}", day(u)))
            .unwrap_or_default()
    );
    Ok(Html(page(title, &body, colour)).into_response())
}

fn page(title: &str, body: &str, colour: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:3em auto;padding:0 1em;color:#222}}\
         h1{{color:{colour}}}</style></head><body><h1>{title}</h1>{body}</body></html>"
    )
}

/// GET /healthz: the database answers and the scheduler loop is alive.
pub async fn healthz(State(s): State<ApiState>) -> Response {
    let db = s.store.ping().await;
    let beat = s.scheduler_beat.load(Ordering::Relaxed);
    let limit = (s.config.scheduler.interval.as_millis() as i64).max(30_000) * 3;
    let scheduler = beat > 0 && Utc::now().timestamp_millis() - beat <= limit;
    let paused = s.delivery.paused();
    let status = if db && scheduler && paused.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let delivery = match &paused {
        None => json!("ok"),
        Some(p) => json!({"paused": p.reason, "since": p.since, "retry_at": p.retry_at}),
    };
    (
        status,
        Json(
            json!({"status": if status == StatusCode::OK { "ok" } else { "unhealthy" },
                    "database": db, "scheduler": scheduler, "delivery": delivery}),
        ),
    )
        .into_response()
}

/// GET /metrics: Prometheus text.
pub async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let now = Utc::now();
    let mut tx = s.store.begin_read().await?;
    let outbox::Figures {
        by_state,
        ready: depth,
        oldest_ready: oldest,
    } = outbox::figures(&mut tx, now).await?;
    let oldest_due = actions::oldest_due(&mut tx, now).await?;
    tx.rollback().await?;
    let lag = [oldest, oldest_due]
        .into_iter()
        .flatten()
        .min()
        .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    let mut out = String::new();
    out.push_str("# HELP registrar_deliveries Deliveries in the outbox by state.\n# TYPE registrar_deliveries gauge\n");
    for state in ["queued", "sending", "sent", "retrying", "failed"] {
        let n = by_state
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        out.push_str(&format!("registrar_deliveries{{state=\"{state}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "# HELP registrar_queue_depth Messages ready to send now.\n# TYPE registrar_queue_depth gauge\nregistrar_queue_depth {depth}\n"
    ));
    out.push_str(&format!(
        "# HELP registrar_oldest_due_lag_seconds How long the oldest due action or message has waited.\n# TYPE registrar_oldest_due_lag_seconds gauge\nregistrar_oldest_due_lag_seconds {lag}\n"
    ));
    out.push_str(&format!(
        "# HELP registrar_delivery_paused 1 while delivery is paused on a configuration problem (login, TLS).\n# TYPE registrar_delivery_paused gauge\nregistrar_delivery_paused {}\n",
        u8::from(s.delivery.paused().is_some())
    ));
    out.push_str(&format!(
        "# HELP registrar_pass_duration_seconds Duration of the scheduler's last pass.\n# TYPE registrar_pass_duration_seconds gauge\nregistrar_pass_duration_seconds {}\n",
        s.pass_millis.load(Ordering::Relaxed) as f64 / 1000.0
    ));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// GET /api/v1/certifications/{certification}/learners.
pub async fn certification_learners(
    State(s): State<ApiState>,
    Path(certification): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !s.rules().certifications.contains_key(&certification) {
        return Err(ApiError::not_found(format!(
            "unknown certification {certification:?}"
        )));
    }
    let rows = crate::store::certifications::list(&s.store, Some(&certification)).await?;
    Ok(Json(json!(rows)))
}
