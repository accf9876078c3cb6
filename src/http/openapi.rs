//! The OpenAPI 3 document at /api/v1/openapi.json, built from [`super::ROUTES`] and a
//! short description of each; a test checks that every route is described.

use crate::import::Kind;
use axum::Json;
use serde_json::{Map, Value, json};

/// (summary, request body schema) of a route. The bodies of state changes are the
/// import kinds' columns (src/http/schema.rs), so the document and the server's check
/// are one description.
fn describe(method: &str, path: &str) -> (&'static str, Option<Value>) {
    use super::schema::body;
    let mark = body(Kind::Attendance, &["course_id"]);
    let result = body(Kind::Results, &["course_id"]);
    let bulk = |key: &str, item: Value| {
        json!({"type": "object", "additionalProperties": false, "required": [key],
               "properties": {key: {"type": "array", "items": item}}})
    };
    match (method, path) {
        ("PUT", "/api/v1/courses/{course}") => (
            "Create or update a course (idempotent)",
            Some(body(Kind::Courses, &["id"])),
        ),
        ("PUT", "/api/v1/courses/{course}/parts/{part}") => (
            "Create or update a part of a course",
            Some(body(Kind::Parts, &["course_id", "id"])),
        ),
        ("PUT", "/api/v1/people/{person}") => (
            "Create or update a person",
            Some(body(Kind::People, &["id"])),
        ),
        ("PUT", "/api/v1/courses/{course}/enrolments/{person}") => (
            "Enrol a person (idempotent); the body may be left out",
            Some(body(Kind::Enrolments, &["course_id", "person_id"])),
        ),
        ("DELETE", "/api/v1/courses/{course}/enrolments/{person}") => (
            "Remove a booking before the first part starts (D7); 409 after",
            None,
        ),
        ("POST", "/api/v1/courses/{course}/attendance") => (
            "Record one attendance mark; a known person who is not enrolled is a walk-in (D6)",
            Some(mark),
        ),
        ("POST", "/api/v1/courses/{course}/attendance/bulk") => (
            "Record many attendance marks, all or nothing",
            Some(bulk("marks", mark)),
        ),
        ("PUT", "/api/v1/courses/{course}/parts/{part}/results/{person}") => (
            "Record a part result",
            Some(body(
                Kind::PartResults,
                &["course_id", "part_id", "person_id"],
            )),
        ),
        ("PUT", "/api/v1/courses/{course}/results/{person}") => (
            "Record a result (D4: 409 naming the reset)",
            Some(body(Kind::Results, &["course_id", "person_id"])),
        ),
        ("POST", "/api/v1/courses/{course}/results/bulk") => (
            "Record many results, all or nothing",
            Some(bulk("results", result)),
        ),
        ("POST", "/api/v1/courses/{course}/participants/{person}/reset") => {
            ("Reset (D4): new cycle, certificate revoked", None)
        }
        ("POST", "/api/v1/courses/{course}/participants/{person}/reassign") => {
            ("Reassign (D4): new cycle, marks cleared", None)
        }
        ("POST", "/api/v1/courses/{course}/participants/{person}/equivalency") => {
            ("Complete by equivalency (D3)", None)
        }
        ("GET", "/api/v1/courses/{course}/participants") => {
            ("A course's participants with derived statuses", None)
        }
        ("GET", "/api/v1/plan") => (
            "Action instances not yet delivered, with reasons (query: rule)",
            None,
        ),
        ("GET", "/api/v1/deliveries") => ("The outbox (query: state)", None),
        ("POST", "/api/v1/deliveries/{id}/retry") => ("Queue a failed delivery again", None),
        ("POST", "/api/v1/certifications/{certification}/learners/{person}/{action}") => (
            "Certification learner: assign, record_payment (record-payment), or an administrator action (override_payment, override_training, override_exam, approve, revoke_access, force_recertification, permanent_revoke, restore_access, remove); record_exam has a path of its own; 409 names the status and where the action is allowed",
            Some(super::schema::certification_action(false)),
        ),
        ("POST", RECORD_EXAM) => (
            "Certification learner: record an exam result",
            Some(super::schema::certification_action(true)),
        ),
        ("GET", "/api/v1/certifications/{certification}/learners") => {
            ("A certification's learners and their statuses", None)
        }
        ("GET", "/api/v1/openapi.json") => ("This document", None),
        ("GET", "/verify/{code}") => (
            "Public: is this certificate valid, expired or revoked (HTML, or JSON with Accept: application/json)",
            None,
        ),
        ("GET", "/verify/{code}/credential") => (
            "Public: the certificate as an Open Badges 3.0 credential signed by the office (404 without office.signing_key_file; 410 once revoked)",
            None,
        ),
        ("GET", "/.well-known/did.json") | ("GET", "/did.json") => (
            "Public: the office's did:web document (its signing keys), for verifiers of its credentials",
            None,
        ),
        ("GET", "/healthz") => ("Public: database reachable and scheduler alive", None),
        ("GET", "/metrics") => ("Public: Prometheus metrics", None),
        _ => ("", None),
    }
}

/// record_exam needs `passed`, which the other certification actions do not take: the
/// document gives it its own path (the server's `{action}` route serves it).
const RECORD_EXAM: &str = "/api/v1/certifications/{certification}/learners/{person}/record_exam";

/// The answers of a route: its successes with their content types, and the errors it
/// can give (every one as `{"code", "message"}`).
fn responses(method: &str, path: &str) -> Value {
    let json_body = |d: &str| json!({"description": d, "content": {"application/json": {}}});
    let counts = json!({"description": "applied: how many created, updated, unchanged",
        "content": {"application/json": {"schema": {"type": "object",
            "required": ["created", "updated", "unchanged"],
            "properties": {"created": {"type": "integer"}, "updated": {"type": "integer"},
                           "unchanged": {"type": "integer"}}}}}});
    let error = json!({"$ref": "#/components/responses/Error"});
    let mut r = Map::new();
    let changes = matches!(method, "PUT")
        || (method == "POST" && (path.ends_with("/attendance") || path.ends_with("/bulk")));
    let codes: &[&str] = match (method, path) {
        ("DELETE", _) => {
            r.insert(
                "204".into(),
                json!({"description": "the booking is removed"}),
            );
            &["400", "401", "404", "409", "503"]
        }
        _ if changes => {
            r.insert("201".into(), counts.clone());
            r.insert("200".into(), counts);
            &["400", "401", "404", "409", "413", "415", "422", "503"]
        }
        (_, "/verify/{code}") => {
            let page = |d: &str| json!({"description": d, "content": {"text/html": {}, "application/json": {}}});
            r.insert(
                "200".into(),
                page("the certificate's status: valid, expiring soon, expired or revoked"),
            );
            r.insert("404".into(), page("no certificate has this code"));
            &["503"]
        }
        (_, "/verify/{code}/credential") => {
            r.insert("200".into(), json_body("the signed credential"));
            &["404", "410", "500", "503"]
        }
        (_, "/.well-known/did.json") | (_, "/did.json") => {
            r.insert("200".into(), json_body("the did:web document"));
            &["404"]
        }
        (_, "/healthz") => {
            r.insert("200".into(), json_body("healthy"));
            r.insert("503".into(), json_body("what is wrong"));
            &[]
        }
        (_, "/metrics") => {
            r.insert(
                "200".into(),
                json!({"description": "Prometheus text",
                "content": {"text/plain": {}}}),
            );
            &[]
        }
        ("POST", _) => {
            r.insert("200".into(), json_body("done"));
            &["400", "401", "404", "409", "413", "415", "422", "503"]
        }
        _ => {
            r.insert("200".into(), json_body("OK"));
            &["400", "401", "404", "503"]
        }
    };
    for code in codes {
        r.insert((*code).to_string(), error.clone());
    }
    Value::Object(r)
}

/// The schema of a path parameter.
fn parameter(name: &str) -> Value {
    let schema = match name {
        "course" | "part" | "person" | "certification" => super::schema::id_parameter(),
        "id" => json!({"type": "integer", "minimum": 1}),
        _ => json!({"type": "string"}),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

/// The query parameters of a route.
fn query(path: &str) -> Vec<Value> {
    match path {
        "/api/v1/plan" => vec![json!({"name": "rule", "in": "query", "required": false,
            "description": "only this rule's instances", "schema": {"type": "string"}})],
        "/api/v1/deliveries" => vec![json!({"name": "state", "in": "query", "required": false,
            "schema": {"type": "string", "enum": ["queued", "sending", "sent", "retrying", "failed"]}})],
        _ => Vec::new(),
    }
}

/// The document.
pub fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    let documented = super::ROUTES.iter().copied().chain([("POST", RECORD_EXAM)]);
    for (method, path) in documented {
        let (summary, body) = describe(method, path);
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(parameter)
            .collect();
        params.extend(query(path));
        let public = !path.starts_with("/api/v1/");
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": responses(method, path),
        });
        if public {
            op["security"] = json!([]);
        }
        if let Some(schema) = body {
            // A body that may be left out: the enrolment's and a certification action's.
            let required = !(path.ends_with("/enrolments/{person}")
                || path.contains("/learners/{person}/{action}"));
            op["requestBody"] = json!({"required": required,
                "content": {"application/json": {"schema": schema}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "registrar", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Participant state in, exactly-once emails out. Errors are {\"code\", \"message\"[, \"errors\"]}. Bodies are checked against this document: a value of the wrong type, an unknown field or a missing one is refused with 422 naming the field."},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "An error", "content": {"application/json": {"schema": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "errors": {"type": "array", "items": {"type": "object"}}}}}}}}
        },
        "paths": paths,
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described_in_the_openapi_document() {
        let doc = super::build();
        for (method, path) in super::super::ROUTES {
            let op = &doc["paths"][*path][method.to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} is missing");
            assert!(
                !op["summary"].as_str().unwrap_or_default().is_empty(),
                "{method} {path} has no summary"
            );
        }
    }
}
