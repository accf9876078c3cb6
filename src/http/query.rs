//! Reads over HTTP: a course's participants with their derived statuses, the plan, the
//! outbox; the public certificate check, health and metrics.

use super::ApiState;
use super::errors::ApiError;
use crate::domain::DeliveryState;
use crate::domain::time::local_rfc3339;
use crate::store::{actions, certificates, outbox};
use axum::Json;
use axum::extract::rejection::QueryRejection;
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

/// A query string that does not fit: 400 with the error body, like every other refusal.
fn query_of<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the query string does not fit: {}", e.body_text()),
        )
    })
}

#[derive(serde::Deserialize)]
pub struct PlanQuery {
    rule: Option<String>,
}

/// GET /api/v1/plan[?rule=ID]: as `registrar plan --format json`.
pub async fn plan(
    State(s): State<ApiState>,
    q: Result<Query<PlanQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query_of(q)?;
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
    q: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query_of(q)?;
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
    let now = Utc::now();
    let Some((v, status)) = certificate_of(&s, &code, now).await? else {
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
    let tz = s.config.timezone;
    let rules = s.rules();
    let course_type = rules.course_types.get(&v.type_id);
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
    let body = if s.config.office.signer.is_some() && status != "revoked" {
        // Relative, so that it works behind a proxy that adds a path.
        format!(
            "{body}<p class=\"links\"><a href=\"{code}/credential\">{}</a></p>",
            esc(w.credential_link)
        )
    } else {
        body
    };
    Ok(Html(page(&lang, office, title, &body, colour)).into_response())
}

/// The certificate of `code` and its status at `now` (`valid`, `expiring_soon`, `expired`,
/// `revoked`), or `None`.
async fn certificate_of(
    s: &ApiState,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Option<(certificates::Verified, &'static str)>, ApiError> {
    if code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    let mut tx = s.store.begin_read().await?;
    let row = certificates::by_code(&mut tx, code).await?;
    tx.rollback().await?;
    let Some(v) = row else { return Ok(None) };
    let tz = s.config.timezone;
    let soon = s
        .rules()
        .course_types
        .get(&v.type_id)
        .map(|t| t.expiring_soon);
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
    Ok(Some((v, status)))
}

/// GET /verify/{code}/credential: public. The certificate as an `OpenBadgeCredential`
/// signed by the office — the same bytes as the email's attachment. 404 when the office
/// does not sign (no `office.signing_key_file`) or the code is unknown; 410 once revoked
/// (`/verify/{code}` says when).
pub async fn credential(
    State(s): State<ApiState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let Some(signer) = s.config.office.signer.clone() else {
        return Err(ApiError::not_found(
            "this office does not issue signed credentials (office.signing_key_file is not set)",
        ));
    };
    let Some((v, status)) = certificate_of(&s, &code, Utc::now()).await? else {
        return Err(ApiError::not_found(
            "no certificate has this verification code",
        ));
    };
    if status == "revoked" {
        return Err(ApiError::new(
            StatusCode::GONE,
            "revoked",
            format!(
                "certificate {} was revoked on {} (see /verify/{code})",
                v.number,
                local_rfc3339(v.revoked_at.unwrap_or_default(), s.config.timezone)
            ),
        ));
    }
    let rules = s.rules();
    let tz = s.config.timezone;
    let course_type = rules.course_types.get(&v.type_id);
    let type_name = course_type.map_or(v.type_id.clone(), |t| t.name.clone());
    let (description, criteria) =
        crate::credential::achievement_texts(course_type, &type_name, &s.config.office.locale);
    let facts = crate::credential::Facts {
        verification_code: code,
        number: v.number,
        holder: v.full_name,
        email: v.email,
        type_id: v.type_id,
        type_name,
        description,
        criteria,
        course_start: v.course_start.with_timezone(&tz).date_naive(),
        course_end: v.course_end.with_timezone(&tz).date_naive(),
        issued_at: v.issued_at,
        valid_until: v.valid_until,
    };
    let doc = signer.credential(&facts).map_err(|why| {
        tracing::error!("credential of certificate {}: {why}", facts.number);
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "credential_failed",
            "the credential could not be made; the server log says why",
        )
    })?;
    let body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// GET /.well-known/did.json (and /did.json, for a `did:web` with a path): public. The
/// office's DID document with its signing keys.
pub async fn did_document(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    match &s.config.office.signer {
        Some(signer) => Ok(Json(signer.did_document())),
        None => Err(ApiError::not_found(
            "this office does not sign credentials (office.signing_key_file is not set)",
        )),
    }
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
    // A mark beside the status that does not depend on colour alone.
    let mark = match colour {
        "#1f6f3a" => "✓",
        "#8a5a00" => "!",
        _ => "✕",
    };
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · {office}</title><style>\
         body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;margin:0;padding:2.5em 1em;color:#1f2933}}\
         main{{max-width:36em;margin:0 auto;background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.12);border-top:8px solid {colour};padding:1.6em 2em 1.4em}}\
         header{{color:#52606d;font-size:.85em;letter-spacing:.08em;text-transform:uppercase}}\
         h1{{color:{colour};font-size:1.7em;margin:.5em 0 .15em;display:flex;align-items:center;gap:.45em}}\
         .mark{{display:inline-flex;justify-content:center;align-items:center;width:1.3em;height:1.3em;border-radius:50%;background:{colour};color:#fff;font-size:.8em}}\
         .note{{font-size:1.1em;margin:0 0 1.4em;color:#323f4b}}\
         dl{{display:grid;grid-template-columns:max-content 1fr;gap:.55em 1.5em;margin:0;padding-top:1.1em;border-top:1px solid #e4e7eb}} dt{{color:#616e7c}} dd{{margin:0;font-weight:600}}\
         .links{{margin:1.4em 0 0}} .links a{{color:#2f6fb7}}\
         footer{{max-width:36em;margin:1em auto 0;color:#7b8794;font-size:.85em;text-align:center}}</style></head>\
         <body><main><header>{office}</header><h1><span class=\"mark\" aria-hidden=\"true\">{mark}</span>{title}</h1>{body}</main>\
         <footer>{} {office}</footer></body></html>",
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
