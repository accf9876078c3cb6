//! State changes over HTTP. A JSON object becomes a row of the matching CSV kind (its keys
//! the columns, the path's ids added), parsed by the import's parser and applied by the
//! same code in one transaction: the same rules, the same messages. A bulk request is all
//! or nothing, like a file.

use super::ApiState;
use super::errors::{ApiError, Body};
use crate::change::{Applied, Work, WriteError};
use crate::import::kinds::{self, Row};
use crate::import::{Kind, apply_rows};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};

/// Why a body is not a row: the problems, and whether they are only rules between its
/// fields (409, like an unknown course type) rather than a misfit of the schema (422).
struct Misfit {
    between: bool,
    errors: Vec<Value>,
}

impl From<Vec<Value>> for Misfit {
    fn from(errors: Vec<Value>) -> Misfit {
        Misfit {
            between: false,
            errors,
        }
    }
}

impl From<Misfit> for ApiError {
    fn from(m: Misfit) -> ApiError {
        let message = first_message(&m.errors);
        if m.between {
            let mut e = ApiError::conflict(message);
            e.errors = m.errors;
            e
        } else {
            ApiError::invalid(message, m.errors)
        }
    }
}

/// One JSON object as a row of `kind`, with the path's ids as columns: checked against
/// the body's schema (src/http/schema.rs), then parsed by the importer's parser.
fn to_row(
    kind: Kind,
    object: &Map<String, Value>,
    ids: &[(&str, &str)],
    tz: chrono_tz::Tz,
) -> Result<Row, Misfit> {
    let (header, cells) = super::schema::row_cells(kind, object, ids)?;
    let cols =
        kinds::read_header(kind, &csv::StringRecord::from(header.clone())).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| json!({"message": p.replace("column", "field")}))
                .collect::<Vec<_>>()
        })?;
    kinds::parse_row(kind, &cols, &csv::StringRecord::from(cells), tz).map_err(|errors| Misfit {
        between: errors.iter().all(|e| e.between),
        errors: errors
            .into_iter()
            .map(|e| json!({"field": e.column, "message": e.message}))
            .collect(),
    })
}

/// A body that may be left out: empty means `{}`.
fn optional_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not JSON: {e}"),
        )
    })
}

fn object(v: &Value) -> Result<&Map<String, Value>, ApiError> {
    v.as_object()
        .ok_or_else(|| ApiError::invalid("the body must be a JSON object", Vec::new()))
}

/// Applies rows in one transaction; any refusal or unknown reference changes nothing.
async fn apply(
    state: &ApiState,
    rows: Vec<(u64, Row)>,
    source: &str,
) -> Result<Vec<Applied>, ApiError> {
    let rules = state.rules();
    let now = Utc::now();
    let applied = crate::store::transact!(state.store, |tx| {
        let mut work = Work::new(&rules, state.config.timezone, now, "api", source);
        let outcomes = apply_rows(&mut work, tx, rows.clone()).await?;
        let mut applied = Vec::new();
        let mut refused = Vec::new();
        let mut all_missing = true;
        for (i, o) in outcomes {
            match o {
                Ok(a) => applied.push(a),
                Err(WriteError::Sql(e)) => return Err(e.into()),
                Err(e) => {
                    all_missing &= matches!(e, WriteError::Missing { .. });
                    refused
                        .push(json!({"index": i, "field": e.column(), "message": e.to_string()}));
                }
            }
        }
        if !refused.is_empty() {
            let message = if refused.len() == 1 {
                refused[0]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            } else {
                format!("{} item(s) refused; nothing was changed", refused.len())
            };
            let mut e = if all_missing {
                ApiError::not_found(message)
            } else {
                ApiError::conflict(message)
            };
            e.errors = refused;
            return Err(e);
        }
        work.finish(tx).await?;
        Ok(applied)
    })?;
    state.wake.notify_one();
    Ok(applied)
}

fn answer(applied: &[Applied]) -> Response {
    let created = applied.iter().filter(|a| **a == Applied::Created).count();
    let updated = applied.iter().filter(|a| **a == Applied::Updated).count();
    let unchanged = applied.len() - created - updated;
    let status = if applied.len() == 1 && created == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({"created": created, "updated": updated, "unchanged": unchanged})),
    )
        .into_response()
}

async fn put_one(
    state: &ApiState,
    kind: Kind,
    body: &Value,
    ids: &[(&str, &str)],
) -> Result<Response, ApiError> {
    let row = to_row(kind, object(body)?, ids, state.config.timezone)?;
    let applied = apply(state, vec![(0, row)], &format!("api {}", kind.name())).await?;
    Ok(answer(&applied))
}

async fn post_many(
    state: &ApiState,
    kind: Kind,
    body: &Value,
    key: &str,
    course: &str,
) -> Result<Response, ApiError> {
    // Exactly `{"marks": [...]}` (or `results`): a bare list or other keys are refused.
    let items = body
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get(key))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::invalid(
                format!("the body must be {{\"{key}\": [ ... ]}} and nothing else"),
                Vec::new(),
            )
        })?;
    let mut rows = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut between = true;
    for (i, item) in items.iter().enumerate() {
        let parsed = match item.as_object() {
            Some(o) => to_row(kind, o, &[("course_id", course)], state.config.timezone),
            None => Err(Misfit::from(vec![
                json!({"message": "must be a JSON object"}),
            ])),
        };
        match parsed {
            Ok(r) => rows.push((i as u64, r)),
            Err(m) => {
                between &= m.between;
                errors.extend(m.errors.into_iter().map(|mut e| {
                    e["index"] = json!(i);
                    e
                }))
            }
        }
    }
    if !errors.is_empty() {
        let mut e = ApiError::from(Misfit { between, errors });
        e.message = format!(
            "{} problem(s) in the items; nothing was changed",
            e.errors.len()
        );
        return Err(e);
    }
    let applied = apply(state, rows, &format!("api {} bulk", kind.name())).await?;
    Ok(answer(&applied))
}

fn first_message(errors: &[Value]) -> String {
    errors
        .first()
        .map(|e| match (e["field"].as_str(), e["message"].as_str()) {
            (Some(f), Some(m)) => format!("{f}: {m}"),
            (None, Some(m)) => m.to_string(),
            _ => "invalid body".to_string(),
        })
        .unwrap_or_else(|| "invalid body".into())
}

pub async fn put_course(
    State(s): State<ApiState>,
    Path(course): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    put_one(&s, Kind::Courses, &body, &[("id", &course)]).await
}

pub async fn put_part(
    State(s): State<ApiState>,
    Path((course, part)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    put_one(
        &s,
        Kind::Parts,
        &body,
        &[("course_id", &course), ("id", &part)],
    )
    .await
}

pub async fn put_person(
    State(s): State<ApiState>,
    Path(person): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    put_one(&s, Kind::People, &body, &[("id", &person)]).await
}

pub async fn put_enrolment(
    State(s): State<ApiState>,
    Path((course, person)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional here: `{}` or `{"walk_in": true}`.
    let body = optional_json(&body)?;
    put_one(
        &s,
        Kind::Enrolments,
        &body,
        &[("course_id", &course), ("person_id", &person)],
    )
    .await
}

/// One mark, applied together with the marks that arrive at the same moment.
pub async fn post_mark(
    State(s): State<ApiState>,
    Path(course): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    let row = to_row(
        Kind::Attendance,
        object(&body)?,
        &[("course_id", &course)],
        s.config.timezone,
    )?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is stopping; try again",
        )
    };
    s.marks
        .send((row, reply))
        .await
        .map_err(|_| unavailable())?;
    let applied = answer.await.map_err(|_| unavailable())??;
    Ok(super::ingest::answer(&[applied]))
}

pub async fn post_marks(
    State(s): State<ApiState>,
    Path(course): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    post_many(&s, Kind::Attendance, &body, "marks", &course).await
}

pub async fn put_part_result(
    State(s): State<ApiState>,
    Path((course, part, person)): Path<(String, String, String)>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    put_one(
        &s,
        Kind::PartResults,
        &body,
        &[
            ("course_id", &course),
            ("part_id", &part),
            ("person_id", &person),
        ],
    )
    .await
}

pub async fn put_result(
    State(s): State<ApiState>,
    Path((course, person)): Path<(String, String)>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    put_one(
        &s,
        Kind::Results,
        &body,
        &[("course_id", &course), ("person_id", &person)],
    )
    .await
}

pub async fn post_results(
    State(s): State<ApiState>,
    Path(course): Path<String>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    post_many(&s, Kind::Results, &body, "results", &course).await
}

/// reset, reassign, equivalency (D3, D4).
pub async fn post_participant_action(
    State(s): State<ApiState>,
    Path((course, person, action)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    if !matches!(action.as_str(), "reset" | "reassign" | "equivalency") {
        return Err(ApiError::not_found(format!(
            "unknown participant action {action:?} (reset, reassign or equivalency)"
        )));
    }
    let rules = s.rules();
    let now = Utc::now();
    let source = format!("api {action}");
    let answer = crate::store::transact!(s.store, |tx| {
        let mut work = Work::new(&rules, s.config.timezone, now, "api", &source);
        let answer = match action.as_str() {
            "reset" => work
                .reset(tx, &course, &person)
                .await
                .map(|cycle| json!({"cycle": cycle})),
            "reassign" => work
                .reassign(tx, &course, &person)
                .await
                .map(|cycle| json!({"cycle": cycle})),
            _ => work
                .equivalency(tx, &course, &person)
                .await
                .map(|_| json!({"completed_via": "equivalency"})),
        }?;
        work.finish(tx).await?;
        Ok::<_, WriteError>(answer)
    })?;
    s.wake.notify_one();
    Ok(Json(answer).into_response())
}

/// D7: before the course's first part starts; 409 with the reason after.
pub async fn delete_enrolment(
    State(s): State<ApiState>,
    Path((course, person)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let rules = s.rules();
    let now = Utc::now();
    crate::store::transact!(s.store, |tx| {
        let mut work = Work::new(&rules, s.config.timezone, now, "api", "api remove");
        work.remove(tx, &course, &person).await?;
        work.finish(tx).await?;
        Ok::<_, WriteError>(())
    })?;
    s.wake.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn post_retry(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("there is no delivery {id:?}")))?;
    match crate::delivery::retry(&s.store, id, "api", Utc::now()).await {
        Ok(()) => {
            s.wake.notify_one();
            Ok(Json(json!({"id": id, "state": "queued"})).into_response())
        }
        Err(crate::delivery::RetryError::Unknown(_)) => {
            Err(ApiError::not_found(format!("there is no delivery {id}")))
        }
        Err(crate::delivery::RetryError::Db(e)) => Err(e.into()),
        Err(e) => Err(ApiError::conflict(e.to_string())),
    }
}

/// POST /api/v1/certifications/{certification}/learners/{person}/{action}: assign,
/// record-payment, record-exam (`{"passed": true, "test_out": false}`) or an
/// administrator action; `{"reason": "..."}` goes into the history.
pub async fn post_certification_action(
    State(s): State<ApiState>,
    Path((certification, person, action)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    use crate::change::certifications::{self, CertError, Command};
    let body = optional_json(&body)?;
    let word = action.replace('-', "_");
    let (reason, passed, test_out) =
        super::schema::certification_fields(&body, word == "record_exam")
            .map_err(|errors| ApiError::invalid(first_message(&errors), errors))?;
    let command = match word.as_str() {
        "assign" => Command::Assign,
        "record_payment" => Command::RecordPayment,
        "record_exam" => Command::RecordExam {
            passed: passed.unwrap_or(false),
            test_out,
        },
        other => Command::Admin(other.parse().map_err(|e: String| ApiError::not_found(e))?),
    };
    let rules = s.rules();
    match certifications::run(
        &s.store,
        &rules,
        s.config.timezone,
        Utc::now(),
        "api",
        &reason,
        &certification,
        &person,
        command,
    )
    .await
    {
        Ok(status) => {
            s.wake.notify_one();
            Ok(
                Json(json!({"certification": certification, "person": person, "status": status}))
                    .into_response(),
            )
        }
        Err(CertError::Missing(why)) => Err(ApiError::not_found(why)),
        Err(CertError::Refused(why)) => Err(ApiError::conflict(why)),
        Err(CertError::Db(e)) => Err(e.into()),
    }
}
