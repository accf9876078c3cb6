//! The OpenAPI 3 document at /api/v1/openapi.json, built from [`super::ROUTES`] and a
//! short description of each; a test checks that every route is described.

use axum::Json;
use serde_json::{Map, Value, json};

/// (summary, request body schema) of a route.
fn describe(method: &str, path: &str) -> (&'static str, Option<Value>) {
    let s = |t: &str| json!({"type": "string", "description": t});
    let course = json!({"type": "object", "required": ["name", "type", "status", "start", "end"], "properties": {
        "name": s("course name"), "type": s("course type id (rules directory)"),
        "status": {"type": "string", "enum": ["draft", "final", "completed", "cancelled"]},
        "start": s("RFC 3339, or a local date"), "end": s("RFC 3339, or a local date (23:59:59 that day)"),
        "location": s("optional"), "fields": {"type": "object", "description": "custom fields"}}});
    let part = json!({"type": "object", "required": ["name", "start", "end", "attendance_required", "passing_required"], "properties": {
        "name": s("part name"), "start": s("RFC 3339"), "end": s("RFC 3339"),
        "attendance_required": {"type": "boolean"}, "passing_required": {"type": "boolean"},
        "min_minutes": {"type": "integer", "minimum": 0}}});
    let person = json!({"type": "object", "required": ["full_name"], "properties": {
        "full_name": s("name as printed on certificates"), "email": s("email address (may be empty)"),
        "first_name": s("optional"), "locale": s("optional"), "fields": {"type": "object"}}});
    let mark = json!({"type": "object", "required": ["part_id", "person_id", "status"], "properties": {
        "part_id": s("part id"), "person_id": s("person id; unknown enrolment = walk-in (D6)"),
        "status": {"type": "string", "enum": ["booked", "attended", "not_attended"]},
        "minutes": {"type": "integer", "minimum": 0}}});
    let result = json!({"type": "object", "required": ["result"], "properties": {
        "result": {"type": "string", "enum": ["registered", "passed", "failed", "not_finished", "deregistered"]},
        "score": {"type": "number"}, "comment": s("optional")}});
    let mut bulk_result = result.clone();
    bulk_result["required"] = json!(["person_id", "result"]);
    bulk_result["properties"]["person_id"] = s("person id");
    match (method, path) {
        ("PUT", "/api/v1/courses/{course}") => {
            ("Create or update a course (idempotent)", Some(course))
        }
        ("PUT", "/api/v1/courses/{course}/parts/{part}") => {
            ("Create or update a part of a course", Some(part))
        }
        ("PUT", "/api/v1/people/{person}") => ("Create or update a person", Some(person)),
        ("PUT", "/api/v1/courses/{course}/enrolments/{person}") => (
            "Enrol a person (idempotent)",
            Some(json!({"type": "object", "properties": {"walk_in": {"type": "boolean"}}})),
        ),
        ("DELETE", "/api/v1/courses/{course}/enrolments/{person}") => (
            "Remove a booking before the first part starts (D7); 409 after",
            None,
        ),
        ("POST", "/api/v1/courses/{course}/attendance") => (
            "Record one attendance mark (D6 walk-ins included)",
            Some(mark),
        ),
        ("POST", "/api/v1/courses/{course}/attendance/bulk") => (
            "Record many attendance marks, all or nothing",
            Some(
                json!({"type": "object", "required": ["marks"], "properties": {"marks": {"type": "array", "items": mark}}}),
            ),
        ),
        ("PUT", "/api/v1/courses/{course}/parts/{part}/results/{person}") => (
            "Record a part result",
            Some(
                json!({"type": "object", "required": ["passed"], "properties": {"passed": {"type": "boolean"}}}),
            ),
        ),
        ("PUT", "/api/v1/courses/{course}/results/{person}") => {
            ("Record a result (D4: 409 naming the reset)", Some(result))
        }
        ("POST", "/api/v1/courses/{course}/results/bulk") => (
            "Record many results, all or nothing",
            Some(
                json!({"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": bulk_result}}}),
            ),
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
            "Certification learner: assign, record_payment, record_exam, or an administrator action (override_payment, override_training, override_exam, approve, revoke_access, force_recertification, permanent_revoke, restore_access, remove); 409 names the status and where the action is allowed",
            Some(
                json!({"type": "object", "properties": {"reason": s("kept in the history"),
                "passed": {"type": "boolean", "description": "record_exam"}, "test_out": {"type": "boolean"}}}),
            ),
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

/// The document.
pub fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, path) in super::ROUTES {
        let (summary, body) = describe(method, path);
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let public = !path.starts_with("/api/v1/");
        let mut op = json!({
            "summary": summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"},
                "413": {"$ref": "#/components/responses/Error"},
                "415": {"$ref": "#/components/responses/Error"},
                "422": {"$ref": "#/components/responses/Error"}
            }
        });
        if public {
            op["security"] = json!([]);
        }
        if let Some(schema) = body {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "registrar", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Participant state in, exactly-once emails out. Errors are {\"code\", \"message\"[, \"errors\"]}."},
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
