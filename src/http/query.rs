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

/// GET /verify/{code}: public. In the office's name and the reader's language
/// (`Accept-Language`, else the office's): whether the certificate is valid, expiring soon,
/// expired or revoked (with the date), the holder's name, the course, its type and dates,
/// the number. No email address or other personal data. JSON when asked.
pub async fn verify(
    State(s): State<ApiState>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use crate::lang::{Lang, from_accept_language, long_date, words};
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let lang: Lang = from_accept_language(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
        &s.config.office.locale,
    );
    let w = words(&lang);
    let office = &s.config.office.name;
    let row = if code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        None
    } else {
        let mut tx = s.store.begin_read().await?;
        let row = certificates::by_code(&mut tx, &code).await?;
        tx.rollback().await?;
        row
    };
    let Some(v) = row else {
        let e = ApiError::not_found("no certificate has this verification code");
        return Ok(if wants_json {
            e.into_response()
        } else {
            (
                StatusCode::NOT_FOUND,
                Html(page(
                    &lang,
                    office,
                    w.not_found,
                    &format!("<p>{}</p>", w.not_found_text),
                    "#8a1c1c",
                )),
            )
                .into_response()
        });
    };
    let now = Utc::now();
    let tz = s.config.timezone;
    let rules = s.rules();
    let course_type = rules.course_types.get(&v.type_id);
    let soon = course_type.map(|t| t.expiring_soon);
    let status = if v.revoked_at.is_some() {
        "revoked"
    } else if v.valid_until.is_some_and(|u| u <= now) {
        "expired"
    } else if v
        .valid_until
        .zip(soon)
        .and_then(|(u, p)| p.negated().add_to(u, tz))
        .is_some_and(|from| from <= now)
    {
        "expiring_soon"
    } else {
        "valid"
    };
    let day = |t: DateTime<Utc>| long_date(t, tz, &lang);
    let type_name = course_type.map_or(v.type_id.clone(), |t| t.name.clone());
    if wants_json {
        return Ok(Json(json!({
            "status": status, "number": v.number, "name": v.full_name, "course": v.course_name,
            "course_type": type_name, "course_start": day(v.course_start), "course_end": day(v.course_end),
            "issued_on": day(v.issued_at), "valid_until": v.valid_until.map(day),
            "revoked_on": v.revoked_at.map(day), "office": office, "language": lang,
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
    let (title, colour, note) = match status {
        "valid" => (
            w.valid,
            "#1f6f3a",
            v.valid_until
                .map(|u| format!("{} {}", w.valid_until, day(u)))
                .unwrap_or_default(),
        ),
        "expiring_soon" => (
            w.expiring_soon,
            "#8a5a00",
            v.valid_until
                .map(|u| format!("{} {}", w.valid_until, day(u)))
                .unwrap_or_default(),
        ),
        "expired" => (
            w.expired,
            "#8a5a00",
            v.valid_until
                .map(|u| format!("{} {}", w.expired_on, day(u)))
                .unwrap_or_default(),
        ),
        _ => (
            w.revoked,
            "#8a1c1c",
            v.revoked_at
                .map(|r| format!("{} {}", w.revoked_on, day(r)))
                .unwrap_or_default(),
        ),
    };
    let dates = if day(v.course_start) == day(v.course_end) {
        day(v.course_start)
    } else {
        format!("{} – {}", day(v.course_start), day(v.course_end))
    };
    let row = |k: &str, val: &str| format!("<dt>{k}</dt><dd>{}</dd>", esc(val));
    let body = format!(
        "<p class=\"note\">{}</p><dl>{}{}{}{}{}{}</dl>",
        esc(&note),
        row(w.holder, &v.full_name),
        row(w.course, &v.course_name),
        row(w.course_type, &type_name),
        row(w.dates, &dates),
        row(w.number, &v.number),
        row(w.issued, &day(v.issued_at)),
    );
    Ok(Html(page(&lang, office, title, &body, colour)).into_response())
}

/// The verify page: the office's name, the status as a heading in its colour, the details.
fn page(lang: &crate::lang::Lang, office: &str, title: &str, body: &str, colour: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let w = crate::lang::words(lang);
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · {office}</title><style>body{{font-family:system-ui,sans-serif;max-width:38em;margin:2.5em auto;padding:0 1em;color:#222}}\
         header{{border-bottom:1px solid #ddd;padding-bottom:.6em;color:#555;font-size:.95em}}\
         h1{{color:{colour};margin:.8em 0 .2em}} .note{{font-size:1.1em;margin:0 0 1.4em}}\
         dl{{display:grid;grid-template-columns:max-content 1fr;gap:.5em 1.5em}} dt{{color:#666}} dd{{margin:0;font-weight:600}}\
         footer{{margin-top:2em;color:#777;font-size:.85em}}</style></head>\
         <body><header>{office}</header><h1>{title}</h1>{body}<footer>{} {office}</footer></body></html>",
        w.verified_by,
        office = esc(office),
    )
}

/// GET /healthz: the database answers and the scheduler loop is alive.
pub async fn healthz(State(s): State<ApiState>) -> Response {
    let db = s.store.ping().await;
    let beat = s.scheduler_beat.load(Ordering::Relaxed);
    // A long pass that keeps making progress (delivering a backlog) is alive too.
    let beat = if beat > 0 {
        beat.max(crate::service::last_alive())
    } else {
        beat
    };
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
