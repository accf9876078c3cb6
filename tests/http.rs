//! The HTTP API (SPEC §5) against the real `serve` on a free port with a real database and
//! a real SMTP server: every route, auth, every error code, the one-second path from a
//! mark to a delivered email, and the public certificate check.

mod common;

use common::http::{Answer, request};
use common::office::Office;
use common::smtp::{SmtpServer, free_port};
use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789";

struct Api {
    port: u16,
    child: Child,
    /// Taken by `cleanup` (PostgreSQL offices drop their schema).
    office: Option<Office>,
    smtp: SmtpServer,
}

impl Api {
    /// The example office (imported), served with the API on a free port.
    fn start() -> Api {
        let smtp = SmtpServer::start();
        let port = free_port();
        let office = Office::new(&Api::config(smtp.port, port));
        Api::serve(office, smtp, port)
    }

    /// The same on its own PostgreSQL schema; `None` without REGISTRAR_TEST_POSTGRES_URL.
    async fn start_postgres() -> Option<Api> {
        let smtp = SmtpServer::start();
        let port = free_port();
        let office = Office::postgres(&Api::config(smtp.port, port)).await?;
        Some(Api::serve(office, smtp, port))
    }

    fn config(smtp: u16, port: u16) -> String {
        format!(
            "{}  verify_base_url: https://opleidingen.example.nl\nmail:\n  transport: smtp\n  smtp:\n    host: 127.0.0.1\n    port: {smtp}\n    tls: none\nhttp:\n  listen: 127.0.0.1:{port}\n  token_env: REGISTRAR_TEST_API_TOKEN\n",
            common::office::OFFICE,
        )
    }

    fn serve(office: Office, smtp: SmtpServer, port: u16) -> Api {
        office.example("2026-03-24T09:00:00+01:00");
        let child = office
            .command(None, &["serve"])
            .env("REGISTRAR_TEST_API_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve");
        let api = Api {
            port,
            child,
            office: Some(office),
            smtp,
        };
        let start = Instant::now();
        loop {
            let h = request(port, "GET", "/healthz", &[], b"");
            if h.status == 200 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve did not become healthy on port {port}: {} {}",
                h.status,
                h.body
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        api
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = format!("Bearer {TOKEN}");
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Authorization", auth.as_str())];
        if !bytes.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        request(self.port, method, path, &headers, bytes.as_bytes())
    }

    /// GET /verify/{code} asking for JSON.
    fn verify_json(&self, code: &str) -> Value {
        request(
            self.port,
            "GET",
            &format!("/verify/{code}"),
            &[("Accept", "application/json")],
            b"",
        )
        .json()
    }

    async fn db(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            self.office
                .as_ref()
                .expect("office")
                .dir
                .path()
                .join("test.db")
                .display()
        ))
        .await
        .expect("db")
    }
}

impl Api {
    /// Stops `serve` and drops the office's PostgreSQL schema, if it has one.
    async fn cleanup(mut self) {
        self.stop();
        if let Some(office) = self.office.take() {
            office.cleanup().await;
        }
    }

    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop();
    }
}

fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let v = a.json();
    assert_eq!(v["code"], code, "{}", a.body);
    assert!(
        !v["message"].as_str().unwrap_or_default().is_empty(),
        "{}",
        a.body
    );
}

#[test]
fn every_route_in_the_openapi_document_is_served_and_every_served_route_is_in_it() {
    let api = Api::start();
    let doc = api.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut count = 0;
    for (path, ops) in paths {
        for method in ops.as_object().expect("ops").keys() {
            count += 1;
            let concrete = path
                .replace("{course}", "ehbo-2026-03")
                .replace("{part}", "exam")
                .replace("{person}", "nobody")
                .replace("{id}", "999999")
                .replace("{code}", "nocode")
                .replace("{certification}", "first-aid-responder")
                .replace("{action}", "approve");
            let a = api.call(&method.to_uppercase(), &concrete, Some(json!({})));
            assert_ne!(a.status, 405, "{method} {path}: {}", a.body);
            assert!(
                !a.body
                    .contains("no such resource (see /api/v1/openapi.json)"),
                "{method} {path} is described but not served"
            );
        }
    }
    // record_exam has a path of its own in the document (it takes `passed`).
    assert_eq!(count, registrar::http::ROUTES.len() + 1);
}

#[test]
fn the_api_requires_the_bearer_token_and_the_public_pages_do_not() {
    let api = Api::start();
    assert_error(
        &request(api.port, "GET", "/api/v1/plan", &[], b""),
        401,
        "unauthorized",
    );
    assert_error(
        &request(
            api.port,
            "GET",
            "/api/v1/plan",
            &[("Authorization", "Bearer wrong")],
            b"",
        ),
        401,
        "unauthorized",
    );
    assert_eq!(api.call("GET", "/api/v1/plan", None).status, 200);
    assert_eq!(request(api.port, "GET", "/healthz", &[], b"").status, 200);
    let metrics = request(api.port, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("registrar_deliveries{state=\"sent\"}"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("registrar_queue_depth"));
    assert!(metrics.body.contains("registrar_pass_duration_seconds"));
}

#[test]
fn upserts_are_idempotent_and_every_caller_mistake_gets_its_code() {
    let api = Api::start();
    let course = json!({"name": "EHBO april", "type": "first-aid", "status": "final",
                        "start": "2027-04-05", "end": "2027-04-26", "location": "Utrecht"});
    assert_eq!(
        api.call("PUT", "/api/v1/courses/ehbo-2027-04", Some(course.clone()))
            .status,
        201
    );
    let again = api.call("PUT", "/api/v1/courses/ehbo-2027-04", Some(course));
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["unchanged"], 1);
    let person = json!({"full_name": "Ada Lovelace", "email": "ada@example.org"});
    assert_eq!(
        api.call("PUT", "/api/v1/people/ada", Some(person)).status,
        201
    );
    assert_eq!(
        api.call("PUT", "/api/v1/courses/ehbo-2027-04/enrolments/ada", None)
            .status,
        201
    );

    // 400 malformed JSON, 415 not JSON, 413 too large, 422 wrong shape or values, 404 unknown.
    let auth = format!("Bearer {TOKEN}");
    let raw = |ct: &str, body: &[u8]| {
        request(
            api.port,
            "PUT",
            "/api/v1/people/bob",
            &[("Authorization", &auth), ("Content-Type", ct)],
            body,
        )
    };
    assert_error(
        &raw("application/json", b"{\"full_name\": "),
        400,
        "malformed_json",
    );
    assert_error(
        &raw("text/plain", b"full_name=Bob"),
        415,
        "unsupported_media_type",
    );
    let huge = format!("{{\"full_name\": \"{}\"}}", "x".repeat(5 * 1024 * 1024));
    assert_error(&raw("application/json", huge.as_bytes()), 413, "too_large");
    assert_error(&raw("application/json", b"[1, 2]"), 422, "invalid");
    let wrong = api.call(
        "PUT",
        "/api/v1/people/bob",
        Some(json!({"full_name": "Bob", "email": "not-an-address"})),
    );
    assert_error(&wrong, 422, "invalid");
    assert!(wrong.body.contains("email"), "{}", wrong.body);
    let unknown_field = api.call(
        "PUT",
        "/api/v1/people/bob",
        Some(json!({"full_name": "Bob", "nickname": "B"})),
    );
    assert_error(&unknown_field, 422, "invalid");
    assert!(
        unknown_field.body.contains("nickname"),
        "{}",
        unknown_field.body
    );
    let nested = api.call(
        "PUT",
        "/api/v1/people/bob",
        Some(json!({"full_name": {"first": "Bob"}})),
    );
    assert_error(&nested, 422, "invalid");
    let bad_bool = api.call(
        "PUT",
        "/api/v1/courses/ehbo-2026-03/parts/exam/results/anne",
        Some(json!({"passed": "maybe"})),
    );
    assert_error(&bad_bool, 422, "invalid");
    let unknown_course = api.call(
        "POST",
        "/api/v1/courses/no-such-course/attendance",
        Some(json!({"part_id": "p1", "person_id": "anne", "status": "attended"})),
    );
    assert_error(&unknown_course, 404, "not_found");
    let unknown_person = api.call(
        "POST",
        "/api/v1/courses/ehbo-2026-03/attendance",
        Some(json!({"part_id": "p1", "person_id": "nobody", "status": "attended"})),
    );
    assert_error(&unknown_person, 404, "not_found");
    assert_error(
        &api.call("GET", "/api/v1/courses/nope/participants", None),
        404,
        "not_found",
    );
    assert_error(
        &api.call("POST", "/api/v1/deliveries/abc/retry", None),
        404,
        "not_found",
    );
    assert_error(
        &api.call("GET", "/api/v1/deliveries?state=lost", None),
        400,
        "bad_request",
    );
    assert_error(
        &api.call("GET", "/api/v1/nothing-here", None),
        404,
        "not_found",
    );

    // A bulk request with one bad item changes nothing.
    let bulk = api.call(
        "POST",
        "/api/v1/courses/ehbo-2027-04/attendance/bulk",
        Some(json!({"marks": [
            {"part_id": "x", "person_id": "ada", "status": "attended"},
            {"part_id": "x", "person_id": "ada", "status": "present"}
        ]})),
    );
    assert_error(&bulk, 422, "invalid");
    assert_eq!(bulk.json()["errors"][0]["index"], 1, "{}", bulk.body);
}

#[test]
fn d4_d7_refusals_are_409_with_the_reason() {
    let api = Api::start();
    let back = api.call(
        "PUT",
        "/api/v1/courses/ehbo-2026-03/results/anne",
        Some(json!({"result": "failed"})),
    );
    assert_error(&back, 409, "refused");
    assert!(
        back.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("reset"),
        "{}",
        back.body
    );
    let remove = api.call(
        "DELETE",
        "/api/v1/courses/ehbo-2026-03/enrolments/sanne",
        None,
    );
    assert_error(&remove, 409, "refused");
    assert!(remove.body.contains("not_attended"), "{}", remove.body);
    // Before the June course starts, removing a booking works.
    assert_eq!(
        api.call(
            "DELETE",
            "/api/v1/courses/ehbo-2027-06/enrolments/joelle",
            None
        )
        .status,
        204
    );
    let reset = api.call(
        "POST",
        "/api/v1/courses/ehbo-2026-03/participants/anne/reset",
        None,
    );
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert_eq!(reset.json()["cycle"], 2);
    assert_error(
        &api.call(
            "POST",
            "/api/v1/courses/ehbo-2026-03/participants/anne/dance",
            None,
        ),
        404,
        "not_found",
    );
}

#[tokio::test]
async fn d6_a_mark_that_completes_a_participant_gets_the_certificate_email_within_a_second() {
    let api = Api::start();
    // Wait for the start-up pass to send what was due after the import.
    let settle = Instant::now();
    let mut last = usize::MAX;
    while settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(300));
        let n = api.smtp.count();
        if n == last && n > 0 {
            break;
        }
        last = n;
    }
    // A course that ended yesterday, built through the API; Kim enrolled, two parts
    // attended, the exam passed.
    let day = |d: i64| {
        (chrono::Utc::now() - chrono::Duration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    let course = json!({"name": "EHBO spoedcursus", "type": "first-aid", "status": "completed",
                        "start": day(4), "end": day(1)});
    assert_eq!(
        api.call("PUT", "/api/v1/courses/fa-api", Some(course))
            .status,
        201
    );
    for (i, part) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
        let d = day(4 - i as i64);
        let body = json!({"name": format!("Deel {}", i + 1), "start": format!("{d}T09:00:00+00:00"),
                          "end": format!("{d}T12:00:00+00:00"), "attendance_required": true,
                          "passing_required": *part == "p4"});
        let a = api.call(
            "PUT",
            &format!("/api/v1/courses/fa-api/parts/{part}"),
            Some(body),
        );
        assert_eq!(a.status, 201, "{}", a.body);
    }
    assert_eq!(
        api.call(
            "PUT",
            "/api/v1/people/kim",
            Some(json!({"full_name": "Kim de Wit", "email": "kim@example.org"}))
        )
        .status,
        201
    );
    assert_eq!(
        api.call("PUT", "/api/v1/courses/fa-api/enrolments/kim", None)
            .status,
        201
    );
    let bulk = api.call(
        "POST",
        "/api/v1/courses/fa-api/attendance/bulk",
        Some(json!({"marks": [
            {"part_id": "p1", "person_id": "kim", "status": "attended"},
            {"part_id": "p2", "person_id": "kim", "status": "attended"}
        ]})),
    );
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    assert_eq!(bulk.json()["created"], 2);
    let exam = api.call(
        "PUT",
        "/api/v1/courses/fa-api/parts/p4/results/kim",
        Some(json!({"passed": true})),
    );
    assert!(exam.status == 200 || exam.status == 201, "{}", exam.body);
    std::thread::sleep(Duration::from_millis(500));
    let before = api.smtp.count();
    // The course ended long ago, so Kim's certificate email is due the moment she completes:
    // her third attended part.
    let t = Instant::now();
    let mark = api.call(
        "POST",
        "/api/v1/courses/fa-api/attendance",
        Some(json!({"part_id": "p3", "person_id": "kim", "status": "attended"})),
    );
    assert!(mark.status == 200 || mark.status == 201, "{}", mark.body);
    let arrived = loop {
        if api.smtp.received().iter().skip(before).any(|m| {
            m.to == ["kim@example.org"]
                && m.header("Subject")
                    .is_some_and(|s| s.starts_with("Certificaat"))
        }) {
            break Some(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = arrived.expect("Kim's certificate email arrived");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // The certificate verifies publicly; after a reset it is revoked.
    let db = api.db().await;
    let code: String = sqlx::query_scalar(
        "SELECT verification_code FROM certificates WHERE course_id = 'fa-api' AND person_id = 'kim'",
    )
    .fetch_one(&db)
    .await
    .expect("code");
    // In the office's language (nl), or the reader's (Accept-Language).
    let page = request(api.port, "GET", &format!("/verify/{code}"), &[], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Geldig certificaat")
            && page.body.contains("Kim de Wit")
            && page.body.contains("Opleidingscentrum"),
        "{}",
        page.body
    );
    let page = request(
        api.port,
        "GET",
        &format!("/verify/{code}"),
        &[("Accept-Language", "en-GB,en;q=0.9")],
        b"",
    );
    assert!(page.body.contains("Valid certificate"), "{}", page.body);
    let j = api.verify_json(&code);
    assert_eq!(j["status"], "valid");
    assert_eq!(j["course"], "EHBO spoedcursus");
    assert!(j.get("email").is_none(), "name, course and dates only");
    let reset = api.call(
        "POST",
        "/api/v1/courses/fa-api/participants/kim/reset",
        None,
    );
    assert_eq!(reset.status, 200, "{}", reset.body);
    let j = api.verify_json(&code);
    assert_eq!(j["status"], "revoked");
    assert_eq!(
        request(api.port, "GET", "/verify/unknowncode", &[], b"").status,
        404
    );

    // The participants, plan and deliveries read back.
    let people = api
        .call("GET", "/api/v1/courses/ehbo-2026-03/participants", None)
        .json();
    let anne = people["participants"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["person_id"] == "anne")
        .cloned()
        .expect("anne");
    assert_eq!(anne["attendance_requirement_achieved"], true);
    assert!(
        anne["certificate_number"]
            .as_str()
            .unwrap_or_default()
            .starts_with("FA-")
    );
    let plan = api
        .call("GET", "/api/v1/plan?rule=survey-after-attendance", None)
        .json();
    assert!(
        plan.as_array()
            .expect("plan")
            .iter()
            .all(|a| a["rule"] == "survey-after-attendance")
    );
    let sent = api
        .call("GET", "/api/v1/deliveries?state=sent", None)
        .json();
    assert!(sent.as_array().expect("deliveries").len() >= 3);
}

#[test]
fn concurrent_single_marks_each_get_their_own_answer() {
    let api = Api::start();
    let course = json!({"name": "BHV mei", "type": "fire-safety", "status": "final",
                        "start": "2027-05-03", "end": "2027-05-03"});
    assert_eq!(
        api.call("PUT", "/api/v1/courses/bhv-2027-05", Some(course))
            .status,
        201
    );
    let part = json!({"name": "Brand", "start": "2027-05-03T09:00:00+02:00", "end": "2027-05-03T12:00:00+02:00",
                      "attendance_required": true, "passing_required": false});
    assert_eq!(
        api.call("PUT", "/api/v1/courses/bhv-2027-05/parts/b1", Some(part))
            .status,
        201
    );
    for i in 0..40 {
        let p = json!({"full_name": format!("Person {i}"), "email": format!("p{i}@example.org")});
        assert_eq!(
            api.call("PUT", &format!("/api/v1/people/p{i}"), Some(p))
                .status,
            201
        );
    }
    // 40 known people (walk-ins, D6) and one unknown, all at once.
    let port = api.port;
    let threads: Vec<_> = (0..41)
        .map(|i| {
            std::thread::spawn(move || {
                let who = if i == 40 {
                    "ghost".to_string()
                } else {
                    format!("p{i}")
                };
                let body =
                    json!({"part_id": "b1", "person_id": who, "status": "attended"}).to_string();
                let auth = format!("Bearer {TOKEN}");
                let a = request(
                    port,
                    "POST",
                    "/api/v1/courses/bhv-2027-05/attendance",
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                    ],
                    body.as_bytes(),
                );
                (i, a.status)
            })
        })
        .collect();
    for t in threads {
        let (i, status) = t.join().expect("thread");
        if i == 40 {
            assert_eq!(status, 404, "the unknown person is refused on its own");
        } else {
            assert_eq!(status, 201, "mark {i}");
        }
    }
    let people = api
        .call("GET", "/api/v1/courses/bhv-2027-05/participants", None)
        .json();
    let list = people["participants"].as_array().expect("participants");
    assert_eq!(list.len(), 40);
    assert!(
        list.iter()
            .all(|p| p["walk_in"] == true && p["parts"]["b1"] == "attended"),
        "{people}"
    );
}

#[test]
fn no_malformed_input_on_any_route_gets_a_server_error() {
    let api = Api::start();
    let bodies: [&[u8]; 9] = [
        b"",
        b"null",
        b"{",
        b"[]",
        b"{\"name\": 1e999}",
        b"{\"start\": \"yesterday\", \"end\": 42, \"status\": true}",
        b"{\"marks\": [null, 1, \"x\", {\"part_id\": []}]}",
        b"{\"results\": {\"person_id\": \"anne\"}}",
        "{\"full_name\": \"\u{0}\u{202e}\u{fffd}\"}".as_bytes(),
    ];
    let auth = format!("Bearer {TOKEN}");
    for (method, path) in registrar::http::ROUTES {
        let concrete = path
            .replace("{course}", "ehbo-2026-03")
            .replace("{part}", "p1")
            .replace("{person}", "anne")
            .replace("{id}", "1")
            .replace("{code}", "x")
            .replace("{certification}", "first-aid-responder")
            .replace("{action}", "record-exam");
        for body in bodies {
            for ct in ["application/json", "text/plain"] {
                let a = request(
                    api.port,
                    method,
                    &concrete,
                    &[("Authorization", &auth), ("Content-Type", ct)],
                    body,
                );
                assert!(
                    a.status < 500 && a.status != 0,
                    "{method} {concrete} with {:?} ({ct}): {} {}",
                    String::from_utf8_lossy(body),
                    a.status,
                    a.body
                );
            }
        }
    }
}

#[test]
fn certification_actions_work_through_the_api_with_the_same_refusals() {
    let api = Api::start();
    let base = "/api/v1/certifications/first-aid-responder/learners";
    let assign = api.call(
        "POST",
        &format!("{base}/anne/assign"),
        Some(json!({"reason": "new responder"})),
    );
    assert_eq!(assign.status, 200, "{}", assign.body);
    assert_eq!(assign.json()["status"], "pending_approval");
    let wrong = api.call("POST", &format!("{base}/anne/permanent_revoke"), None);
    assert_error(&wrong, 409, "refused");
    assert!(
        wrong.body.contains("pending_approval") && wrong.body.contains("allowed in certified"),
        "{}",
        wrong.body
    );
    assert_eq!(
        api.call("POST", &format!("{base}/anne/approve"), None)
            .json()["status"],
        "certified"
    );
    assert_error(
        &api.call("POST", &format!("{base}/anne/dance"), None),
        404,
        "not_found",
    );
    assert_error(
        &api.call("POST", &format!("{base}/nobody/approve"), None),
        404,
        "not_found",
    );
    assert_error(
        &api.call(
            "POST",
            "/api/v1/certifications/nope/learners/anne/assign",
            None,
        ),
        404,
        "not_found",
    );
    let learners = api.call("GET", base, None).json();
    assert_eq!(learners[0]["person_id"], "anne");
    assert_eq!(learners[0]["status"], "certified");
}

#[tokio::test]
async fn the_api_runs_the_same_on_postgresql() {
    let Some(api) = Api::start_postgres().await else {
        return;
    };
    let person = json!({"full_name": "Ada Lovelace", "email": "ada@example.org"});
    assert_eq!(
        api.call("PUT", "/api/v1/people/ada", Some(person.clone()))
            .status,
        201
    );
    assert_eq!(
        api.call("PUT", "/api/v1/people/ada", Some(person)).json()["unchanged"],
        1
    );
    // A walk-in mark (D6) through the group-commit path, and a refusal (D4) as 409.
    let mark = api.call(
        "POST",
        "/api/v1/courses/ehbo-2026-03/attendance",
        Some(json!({"part_id": "p1", "person_id": "ada", "status": "attended"})),
    );
    assert_eq!(mark.status, 201, "{}", mark.body);
    let back = api.call(
        "PUT",
        "/api/v1/courses/ehbo-2026-03/results/anne",
        Some(json!({"result": "failed"})),
    );
    assert_error(&back, 409, "refused");
    let people = api
        .call("GET", "/api/v1/courses/ehbo-2026-03/participants", None)
        .json();
    let ada = people["participants"]
        .as_array()
        .expect("list")
        .iter()
        .find(|p| p["person_id"] == "ada")
        .cloned()
        .expect("ada is a walk-in");
    assert_eq!(ada["walk_in"], true);
    // The emails due after the import went out through the scheduler on PostgreSQL.
    let start = Instant::now();
    while api.smtp.count() == 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(api.smtp.count() > 0);
    let sent = api
        .call("GET", "/api/v1/deliveries?state=sent", None)
        .json();
    assert!(!sent.as_array().expect("deliveries").is_empty());
    let metrics = request(api.port, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert!(
        metrics
            .body
            .contains("registrar_deliveries{state=\"sent\"}")
    );
    assert_eq!(
        request(api.port, "GET", "/verify/nocode", &[], b"").status,
        404
    );
    let plan = api.call("GET", "/api/v1/plan", None);
    assert_eq!(plan.status, 200, "{}", plan.body);
    let base = "/api/v1/certifications/first-aid-responder/learners";
    assert_eq!(
        api.call("POST", &format!("{base}/anne/assign"), None)
            .status,
        200
    );
    assert_eq!(
        api.call("GET", base, None).json()[0]["status"],
        "pending_approval"
    );
    api.cleanup().await;
}

/// The schemathesis binary: `REGISTRAR_SCHEMATHESIS`, else `schemathesis` on the PATH.
fn schemathesis() -> Option<String> {
    if let Ok(path) = std::env::var("REGISTRAR_SCHEMATHESIS") {
        return Some(path);
    }
    common::tool(
        "schemathesis",
        "pip install schemathesis; .ci/run installs it in a virtual environment",
    )
    .then(|| "schemathesis".to_string())
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    // Part 4 of "friendly": the document is exact. schemathesis (PyPI) generates requests
    // from /api/v1/openapi.json, valid and invalid, and runs every check it has with its
    // default expectations: no 5xx, every status and content type documented, every
    // schema-valid body accepted (2xx, or 404/409 for what does not exist or a domain
    // refusal), every schema-violating one refused.
    let Some(st) = schemathesis() else { return };
    let api = Api::start();
    let examples =
        std::env::var("REGISTRAR_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "100".into());
    let seed = std::env::var("REGISTRAR_SCHEMATHESIS_SEED").unwrap_or_else(|_| "17".into());
    let report = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(&st)
        .arg("--config-file")
        .arg(common::repo().join("tests/schemathesis/schemathesis.toml"))
        .args(["--no-color", "run"])
        .arg(format!("http://127.0.0.1:{}/api/v1/openapi.json", api.port))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", "all", "--workers", "1"])
        .args(["--max-examples", &examples, "--seed", &seed])
        .current_dir(report.path())
        .output()
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated,") || l.contains(" in ") && l.starts_with('='))
        .collect();
    eprintln!("schemathesis: {}", summary.join(" | "));
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(" passed"),
        "schemathesis ran no test case:\n{text}"
    );
}

#[tokio::test]
async fn the_readme_api_examples_work_as_written() {
    // Part 6 of "friendly": the ```sh block of the README's "HTTP API" section, run by
    // bash against `serve` as it stands there (only the port, and the ID and CODE
    // placeholders, filled in). Every call must succeed, but for those whose comment
    // names another answer (D7's 409 once the course has started).
    if !common::tool("curl", "apt-get install curl") {
        return;
    }
    let api = Api::start();
    // A failed delivery (Siem has no address) for ID and an issued certificate for CODE.
    let db = api.db().await;
    let mut failed = None;
    for _ in 0..100 {
        failed = sqlx::query_scalar::<_, i64>(
            "SELECT id FROM deliveries WHERE state = 'failed' ORDER BY id LIMIT 1",
        )
        .fetch_optional(&db)
        .await
        .expect("deliveries");
        if failed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = failed.expect("the example office has a failed delivery");
    let code: String =
        sqlx::query_scalar("SELECT verification_code FROM certificates ORDER BY id LIMIT 1")
            .fetch_one(&db)
            .await
            .expect("a certificate");
    let readme = std::fs::read_to_string(common::repo().join("README.md")).expect("README");
    let section = readme
        .split("\n## HTTP API\n")
        .nth(1)
        .expect("an HTTP API section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a sh block");
    let script = block
        .replace("localhost:8080", &format!("127.0.0.1:{}", api.port))
        .replace("/deliveries/ID/", &format!("/deliveries/{failed}/"))
        .replace("/verify/CODE", &format!("/verify/{code}"))
        .replace("export TOKEN=...", &format!("export TOKEN={TOKEN}"));
    // Each curl call appends "STATUS LINE" to a log: its answer, and the README line.
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("answers");
    let mut wrapped = String::new();
    let mut continued = false;
    for (i, line) in script.lines().enumerate() {
        if !continued {
            wrapped.push_str(&format!("LINE={}\n", i + 1));
        }
        wrapped.push_str(line);
        wrapped.push('\n');
        continued = line.ends_with('\\');
    }
    let program = format!(
        "set -u\ncurl() {{ command curl -o /dev/null -w \"%{{http_code}} $LINE\\n\" \"$@\" >> {log}; }}\n{wrapped}",
        log = log.display()
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&program)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "the README's block did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = std::fs::read_to_string(&log).expect("answers");
    let lines: Vec<&str> = script.lines().collect();
    let mut calls = 0;
    for answer in answers.lines() {
        let (status, n) = answer.split_once(' ').expect("status and line");
        let first = n.parse::<usize>().expect("line number") - 1;
        let mut command = Vec::new();
        for l in lines.iter().skip(first) {
            command.push(*l);
            if !l.ends_with('\\') {
                break;
            }
        }
        let line = command.join("\n");
        let status: u16 = status.parse().expect("status");
        let allowed = (200..300).contains(&status)
            || line
                .split_once('#')
                .is_some_and(|(_, comment)| comment.contains(&status.to_string()));
        assert!(allowed, "README line `{line}` answered {status}");
        calls += 1;
    }
    assert!(calls >= 20, "only {calls} calls ran: {answers}");
    api.cleanup().await;
}

#[test]
fn wrong_json_types_are_refused_with_422_naming_the_field_never_coerced() {
    // The cases schemathesis found accepted before the document was exact.
    let api = Api::start();
    let refused = |method: &str, path: &str, body: Value, field: &str| {
        let a = api.call(method, path, Some(body.clone()));
        assert_eq!(a.status, 422, "{method} {path} {body}: {}", a.body);
        assert!(
            a.json()["errors"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e["field"] == field)),
            "{body}: the answer names {field}: {}",
            a.body
        );
    };
    refused(
        "PUT",
        "/api/v1/people/ada",
        json!({"full_name": false}),
        "full_name",
    );
    refused(
        "PUT",
        "/api/v1/people/ada",
        json!({"full_name": 0}),
        "full_name",
    );
    refused(
        "PUT",
        "/api/v1/people/ada",
        json!({"email": "ada@example.org"}),
        "full_name",
    );
    refused(
        "PUT",
        "/api/v1/people/ada",
        json!({"full_name": "Ada", "fields": null}),
        "fields",
    );
    refused(
        "PUT",
        "/api/v1/courses/ehbo-2026-03/enrolments/anne",
        json!({"walk_in": 0}),
        "walk_in",
    );
    refused(
        "PUT",
        "/api/v1/courses/ehbo-2026-03/results/anne",
        json!({"result": "passed", "comment": -224662}),
        "comment",
    );
    let typo = api.call(
        "PUT",
        "/api/v1/people/ada",
        Some(json!({"ful_name": "Ada Lovelace"})),
    );
    assert_eq!(typo.status, 422);
    assert!(
        typo.body.contains("did you mean `full_name`?"),
        "{}",
        typo.body
    );
    // A bare list is not `{"marks": [...]}`.
    let bare = api.call(
        "POST",
        "/api/v1/courses/ehbo-2026-03/attendance/bulk",
        Some(json!([])),
    );
    assert_eq!(bare.status, 422, "{}", bare.body);
    // Nothing of the above changed anything: ada does not exist.
    let mark = api.call(
        "POST",
        "/api/v1/courses/ehbo-2026-03/attendance",
        Some(json!({"part_id": "p1", "person_id": "ada", "status": "attended"})),
    );
    assert_eq!(mark.status, 404, "{}", mark.body);
    // A local time is the office's; an end before the start is a refusal naming `end`.
    let ok = api.call(
        "PUT",
        "/api/v1/courses/late-2027",
        Some(
            json!({"name": "Late", "type": "first-aid", "status": "draft",
                    "start": "2027-04-05 09:00", "end": "2027-04-05"}),
        ),
    );
    assert!(ok.status == 201, "{}", ok.body);
    let backwards = api.call(
        "PUT",
        "/api/v1/courses/late-2027",
        Some(
            json!({"name": "Late", "type": "first-aid", "status": "draft",
                    "start": "2027-04-05", "end": "2027-04-04 23:00"}),
        ),
    );
    assert_eq!(backwards.status, 409, "{}", backwards.body);
    assert_eq!(backwards.json()["errors"][0]["field"], "end");
}
