//! Exactly once under concurrent changes (issue 11), through `serve` and the HTTP API, on
//! SQLite and PostgreSQL: parallel resets of one participant (D4), parallel creations of
//! one course, the two halves of a completion arriving at once (D3, D5), two `serve`
//! processes on one database (T3), and a course and a certification sharing an id.

mod common;

use common::daemon::{Running, call, http_config, in_parallel, wait_for};
use common::office::{OFFICE, Office};
use common::smtp::{SmtpServer, free_port};
use registrar::store::{Lock, Tx, enrolments, history, on};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

const RULES: &str = "kind: course_type
id: first-aid
name: First aid
attendance_percent: 75
certificate: { issue_on: completion, template: certificate, validity: 2 years }
---
kind: course_type
id: safety
name: Safety
---
kind: certification
id: shared
name: Shared id
requires: { course_types: [first-aid] }
exam: false
payment_required: false
approval_required: true
validity: 2 years
grace_period: 90 days
recertification_window: 90 days
---
kind: action
id: certificate-on-completion
name: Certificate
data_group: course_participant
event: completed
process: send_email
email:
  template: certificate
  subject: \"Certificate {{course.name}}\"
  to: participant
  attach: [certificate_pdf]
timing: { anchor: event, offset: 0 days }
conditions: { attendance_requirement_achieved: true, passing_obligation_passed: true }
---
kind: action
id: marked
name: Marked
data_group: course_participant
event: attendance_marked
process: send_email
email: { template: survey, subject: \"Marked {{course.name}}\", to: participant }
timing: { anchor: event, offset: 0 days }
conditions: { course_type: [first-aid] }
---
kind: action
id: reminder
name: Reminder
data_group: course_participant
event: participant_added
process: send_email
email: { template: survey, subject: \"Reminder {{course.name}}\", to: participant }
timing: { anchor: course_start, offset: -1 days }
conditions: { course_type: [safety] }
---
kind: action
id: passed-notice
name: Passed
data_group: course_participant
event: participant_added
process: send_email
email: { template: result-passed, subject: \"Passed {{course.name}}\", to: participant }
timing: { anchor: event, offset: 0 days }
conditions: { course_type: [first-aid], result: [passed] }
---
kind: action
id: learner-welcome
name: Learner
data_group: certification_learner
event: certification_status_changed
process: send_email
email: { template: certification-window-open, subject: \"Learner {{certification.name}}\" }
timing: { anchor: event, offset: 30 days }
";

const NOW: &str = "2026-11-01T09:00:00+01:00";

/// The test office on each backend available: these rules, the repository's templates,
/// SMTP to `smtp`, the API on a free port.
fn offices(smtp: u16) -> Vec<Office> {
    let extra = format!(
        "{OFFICE}  verify_base_url: https://opleidingen.example.nl\nmail:\n  transport: smtp\n  smtp:\n    host: 127.0.0.1\n    port: {smtp}\n    tls: none\n    pool: 4\n    rate_per_second: 10000\n{}",
        http_config()
    );
    let mut out = vec![Office::new(&extra)];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    out.extend(rt.block_on(Office::postgres(&extra)));
    for o in &out {
        o.own_rules_only(RULES);
    }
    out
}

fn backend(office: &Office) -> &'static str {
    let text = std::fs::read_to_string(office.config()).unwrap_or_default();
    if text.contains("database: postgres") {
        "postgres"
    } else {
        "sqlite"
    }
}

/// Course `fa` (first aid, 75 %): four required parts in March 2026, p4 with a passing
/// obligation; `people` enrolled, with p1 and p2 attended when `attended` is set.
fn first_aid(office: &Office, people: &[String], attended: bool) {
    let f = |name: &str, text: String| office.csv(name, &text);
    office.import(
        NOW,
        "courses",
        f(
            "courses.csv",
            "id,name,type,status,start,end\nfa,EHBO maart,first-aid,final,2026-03-02,2026-03-23\n\
             shared,BHV 2027,safety,final,2027-06-01,2027-06-02\n"
                .into(),
        ),
    );
    let mut parts =
        String::from("course_id,id,name,start,end,attendance_required,passing_required\n");
    for (i, day) in [2, 9, 16, 23].iter().enumerate() {
        parts.push_str(&format!(
            "fa,p{},Deel {},2026-03-{day:02}T09:00:00+01:00,2026-03-{day:02}T12:00:00+01:00,true,{}\n",
            i + 1,
            i + 1,
            i == 3
        ));
    }
    parts.push_str(
        "shared,s1,Dag 1,2027-06-01T09:00:00+02:00,2027-06-01T17:00:00+02:00,true,false\n",
    );
    office.import(NOW, "parts", f("parts.csv", parts));
    let mut csv = String::from("id,full_name,email\n");
    for p in people {
        csv.push_str(&format!("{p},Person {p},{p}@example.nl\n"));
    }
    office.import(NOW, "people", f("people.csv", csv));
    let mut csv = String::from("course_id,person_id\n");
    for p in people {
        csv.push_str(&format!("fa,{p}\n"));
    }
    office.import(NOW, "enrolments", f("enrolments.csv", csv));
    if attended {
        let mut csv = String::from("course_id,part_id,person_id,status\n");
        for p in people {
            csv.push_str(&format!("fa,p1,{p},attended\nfa,p2,{p},attended\n"));
        }
        office.import(NOW, "attendance", f("attendance.csv", csv));
    }
}

fn json_of(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

#[test]
fn d4_fifty_parallel_resets_of_one_participant_make_fifty_cycles() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        first_aid(&office, &["rita".to_string()], false);
        let api = Running::start(&office);
        let port = api.port;
        let jobs: Vec<Box<dyn FnOnce() -> (u16, Value) + Send>> = (0..50)
            .map(|_| {
                Box::new(move || {
                    let a = call(
                        port,
                        "POST",
                        "/api/v1/courses/fa/participants/rita/reset",
                        None,
                    );
                    let cycle = if a.status == 200 {
                        a.json()["cycle"].clone()
                    } else {
                        Value::String(a.body)
                    };
                    (a.status, cycle)
                }) as Box<dyn FnOnce() -> (u16, Value) + Send>
            })
            .collect();
        let answers = in_parallel(16, jobs);
        assert!(
            answers.iter().all(|(s, _)| *s == 200),
            "{name}: every reset answers 200: {answers:?}"
        );
        let cycles: BTreeSet<i64> = answers.iter().filter_map(|(_, c)| c.as_i64()).collect();
        assert_eq!(
            cycles,
            (2..=51).collect::<BTreeSet<_>>(),
            "{name}: each reset started its own cycle"
        );
        let participants = api
            .call("GET", "/api/v1/courses/fa/participants", None)
            .json();
        assert_eq!(participants["participants"][0]["cycle"], 51, "{name}");
        api.stop();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let rows = rt.block_on(async {
            let store = office.store().await;
            let mut tx = store.begin_read().await.expect("tx");
            let rows = history::of_participant(&mut tx, "fa", "rita")
                .await
                .expect("history");
            let e = enrolments::one(&mut tx, "fa", "rita", Lock::None)
                .await
                .expect("enrolment")
                .expect("rita");
            assert_eq!(e.cycle, 51, "{name}");
            tx.rollback().await.expect("rollback");
            store.close().await;
            rows
        });
        let transitions: Vec<(Value, Value)> = rows
            .iter()
            .filter(|h| h.change == "reset")
            .map(|h| {
                (
                    json_of(&h.before)["cycle"].clone(),
                    json_of(&h.after)["cycle"].clone(),
                )
            })
            .collect();
        assert_eq!(transitions.len(), 50, "{name}: 50 history rows");
        let distinct: HashSet<String> = transitions.iter().map(|t| format!("{t:?}")).collect();
        assert_eq!(distinct.len(), 50, "{name}: each row a distinct transition");
        for (before, after) in &transitions {
            assert_eq!(
                after.as_i64(),
                before.as_i64().map(|b| b + 1),
                "{name}: {before} -> {after}"
            );
        }
        rt.block_on(office.cleanup());
    }
}

#[test]
fn twenty_parallel_puts_of_one_new_course_create_it_once() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        let api = Running::start(&office);
        let port = api.port;
        let body = json!({"name": "EHBO april", "type": "first-aid", "status": "final",
            "start": "2027-04-01", "end": "2027-04-20"});
        let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..20)
            .map(|_| {
                let body = body.clone();
                Box::new(move || call(port, "PUT", "/api/v1/courses/fa-april", Some(&body)).status)
                    as Box<dyn FnOnce() -> u16 + Send>
            })
            .collect();
        let statuses = in_parallel(20, jobs);
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{name}: exactly one 201: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 200),
            "{name}: the others 200: {statuses:?}"
        );
        api.stop();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let created: i64 = rt.block_on(async {
            let store = office.store().await;
            let mut tx = store.begin_read().await.expect("tx");
            let n = count_history(&mut tx, "course", "fa-april", "created").await;
            tx.rollback().await.expect("rollback");
            store.close().await;
            n
        });
        assert_eq!(created, 1, "{name}: one \"created\" history row");
        rt.block_on(office.cleanup());
    }
}

#[test]
fn twenty_parallel_puts_of_one_new_person_create_them_once_and_change_nothing_after() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        let api = Running::start(&office);
        let port = api.port;
        let body = json!({"full_name": "Eva de Vries", "email": "eva@example.nl"});
        let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = (0..20)
            .map(|_| {
                let body = body.clone();
                Box::new(move || call(port, "PUT", "/api/v1/people/eva", Some(&body)).status)
                    as Box<dyn FnOnce() -> u16 + Send>
            })
            .collect();
        let statuses = in_parallel(20, jobs);
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{name}: exactly one 201: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 200),
            "{name}: the others 200: {statuses:?}"
        );
        api.stop();
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let changes: Vec<String> = rt.block_on(async {
            let store = office.store().await;
            let mut tx = store.begin_read().await.expect("tx");
            let changes = on!(&mut tx, c => sqlx::query_scalar(
                "SELECT change FROM history WHERE entity = 'person' AND person_id = 'eva' ORDER BY id",
            ).fetch_all(&mut **c).await)
            .expect("history");
            tx.rollback().await.expect("rollback");
            store.close().await;
            changes
        });
        assert_eq!(changes, ["created"], "{name}: created once, then unchanged");
        rt.block_on(office.cleanup());
    }
}

async fn count_history(tx: &mut Tx, entity: &str, course: &str, change: &str) -> i64 {
    on!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM history WHERE entity = $1 AND course_id = $2 AND change = $3",
    ).bind(entity).bind(course).bind(change).fetch_one(&mut **c).await)
    .expect("count")
}

#[test]
fn d3_d5_the_two_halves_of_a_completion_in_parallel_complete_all_hundred() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        let before = smtp.count();
        let people: Vec<String> = (1..=100).map(|i| format!("c{i:03}")).collect();
        first_aid(&office, &people, true);
        let api = Running::start(&office);
        let port = api.port;
        // Each alone completes nobody: the mark makes 3 of 4 parts without the passed
        // part, the part result a pass with 2 of 4 parts. Together they complete.
        let mut jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = Vec::new();
        for p in &people {
            let (a, b) = (p.clone(), p.clone());
            jobs.push(Box::new(move || {
                call(
                    port,
                    "POST",
                    "/api/v1/courses/fa/attendance",
                    Some(&json!({"part_id": "p3", "person_id": a, "status": "attended"})),
                )
                .status
            }));
            jobs.push(Box::new(move || {
                call(
                    port,
                    "PUT",
                    &format!("/api/v1/courses/fa/parts/p4/results/{b}"),
                    Some(&json!({"passed": true})),
                )
                .status
            }));
        }
        let statuses = in_parallel(32, jobs);
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 201),
            "{name}: {statuses:?}"
        );
        let certificates = |s: &SmtpServer| {
            s.received()
                .into_iter()
                .skip(before)
                .filter(|m| {
                    m.header("Subject")
                        .is_some_and(|s| s.starts_with("Certificate"))
                })
                .collect::<Vec<_>>()
        };
        wait_for(Duration::from_secs(90), || certificates(&smtp).len() >= 100);
        std::thread::sleep(Duration::from_millis(500));
        let list = api
            .call("GET", "/api/v1/courses/fa/participants", None)
            .json();
        api.stop();
        let participants = list["participants"].as_array().expect("participants");
        let complete = participants
            .iter()
            .filter(|p| !p["completed_at"].is_null())
            .count();
        assert_eq!(complete, 100, "{name}: all 100 complete");
        let mut numbers: Vec<u64> = participants
            .iter()
            .filter_map(|p| p["certificate_number"].as_str())
            .filter_map(|n| n.rsplit('-').next()?.parse().ok())
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers.len(), 100, "{name}: 100 certificates");
        assert_eq!(
            numbers.last().copied().unwrap_or(0) - numbers[0] + 1,
            100,
            "{name}: contiguous numbers {numbers:?}"
        );
        let mails = certificates(&smtp);
        let ids: HashSet<String> = mails.iter().map(|m| m.message_id()).collect();
        assert_eq!(mails.len(), 100, "{name}: 100 certificate emails");
        assert_eq!(ids.len(), 100, "{name}: one per participant");
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(office.cleanup());
    }
}

#[test]
fn t3_two_serve_processes_on_one_database_send_every_email_once_while_marks_arrive_through_both() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        let before = smtp.count();
        let people: Vec<String> = (1..=1000).map(|i| format!("m{i:04}")).collect();
        first_aid(&office, &people, false);
        std::fs::write(office.dir.path().join("api-token"), common::daemon::TOKEN).expect("token");
        // Two processes, each with its own port.
        let ports = [free_port(), free_port()];
        let text = std::fs::read_to_string(office.config()).expect("config");
        let mut children = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let config = office.dir.path().join(format!("serve{i}.yaml"));
            std::fs::write(
                &config,
                text.replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}")),
            )
            .expect("config");
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
                .arg("--config")
                .arg(&config)
                .arg("serve")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("serve");
            children.push(child);
        }
        for port in ports {
            assert!(
                wait_for(Duration::from_secs(20), || {
                    common::http::request(port, "GET", "/healthz", &[], b"").status == 200
                }),
                "{name}: serve on {port} is healthy"
            );
        }
        let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = people
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (port, p) = (ports[i % 2], p.clone());
                Box::new(move || {
                    call(
                        port,
                        "POST",
                        "/api/v1/courses/fa/attendance",
                        Some(&json!({"part_id": "p1", "person_id": p, "status": "attended"})),
                    )
                    .status
                }) as Box<dyn FnOnce() -> u16 + Send>
            })
            .collect();
        let statuses = in_parallel(16, jobs);
        assert!(
            statuses.iter().all(|s| *s == 201),
            "{name}: every mark is recorded: {:?}",
            statuses.iter().filter(|s| **s != 201).collect::<Vec<_>>()
        );
        let marked = |s: &SmtpServer| {
            s.received()
                .into_iter()
                .skip(before)
                .filter(|m| m.header("Subject").is_some_and(|s| s.starts_with("Marked")))
                .collect::<Vec<_>>()
        };
        wait_for(Duration::from_secs(120), || marked(&smtp).len() >= 1000);
        // Anything sent twice would arrive within a pass or two more.
        std::thread::sleep(Duration::from_secs(2));
        for mut child in children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = child.wait();
        }
        let mails = marked(&smtp);
        let ids: HashSet<String> = mails.iter().map(|m| m.message_id()).collect();
        assert_eq!(ids.len(), 1000, "{name}: every participant's email arrived");
        assert_eq!(mails.len(), 1000, "{name}: and none twice");
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(office.cleanup());
    }
}

/// The state `GET /api/v1/plan` gives the instance of `rule` for `person`.
fn plan_state(api: &Running, rule: &str, person: &str) -> Option<String> {
    let plan = api.call("GET", "/api/v1/plan", None).json();
    plan.as_array()?
        .iter()
        .find(|i| i["rule"] == rule && i["person"] == person)
        .and_then(|i| i["state"].as_str().map(str::to_string))
}

#[test]
fn a_course_and_a_certification_with_the_same_id_do_not_touch_each_others_emails() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        first_aid(&office, &["ole".into(), "lea".into(), "max".into()], false);
        // lea and max take the safety course `shared`; ole and max are learners of the
        // certification `shared`; ole never enrolled in the course.
        office.import(
            NOW,
            "enrolments",
            office.csv(
                "shared.csv",
                "course_id,person_id\nshared,lea\nshared,max\n",
            ),
        );
        let api = Running::start(&office);
        for p in ["ole", "max"] {
            let a = api.call(
                "POST",
                &format!("/api/v1/certifications/shared/learners/{p}/assign"),
                None,
            );
            assert_eq!(a.status, 200, "{name}: {}", a.body);
        }
        for (rule, p) in [
            ("reminder", "lea"),
            ("reminder", "max"),
            ("learner-welcome", "ole"),
            ("learner-welcome", "max"),
        ] {
            assert!(
                wait_for(Duration::from_secs(10), || plan_state(&api, rule, p)
                    .as_deref()
                    == Some("waiting")),
                "{name}: {rule} for {p} waits: {:?}",
                plan_state(&api, rule, p)
            );
        }
        // max is deregistered from the course, then the course is cancelled (D9).
        let a = api.call(
            "PUT",
            "/api/v1/courses/shared/results/max",
            Some(&json!({"result": "deregistered"})),
        );
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        let a = api.call(
            "PUT",
            "/api/v1/courses/shared",
            Some(
                &json!({"name": "BHV 2027", "type": "safety", "status": "cancelled",
                "start": "2027-06-01", "end": "2027-06-02"}),
            ),
        );
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        for p in ["lea", "max"] {
            assert!(
                wait_for(Duration::from_secs(10), || plan_state(&api, "reminder", p)
                    .as_deref()
                    == Some("cancelled")),
                "{name}: the course's reminder for {p} is cancelled: {:?}",
                plan_state(&api, "reminder", p)
            );
        }
        for p in ["ole", "max"] {
            assert_eq!(
                plan_state(&api, "learner-welcome", p).as_deref(),
                Some("waiting"),
                "{name}: the certification's email for {p} stays pending"
            );
        }
        api.stop();
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(office.cleanup());
    }
}

#[test]
fn t2_a_change_that_lands_while_a_pass_evaluates_its_subject_is_never_missed() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        let before = smtp.count();
        let people: Vec<String> = (1..=300).map(|i| format!("r{i:03}")).collect();
        first_aid(&office, &[], false);
        let mut csv = String::from("id,full_name,email\n");
        for p in &people {
            csv.push_str(&format!("{p},Person {p},{p}@example.nl\n"));
        }
        office.import(NOW, "people", office.csv("people.csv", &csv));
        // Two daemons on one database: while one evaluates a participant's notice, the
        // other records the result that makes it due (and turns it into a re-evaluation).
        let (a, b) = (Running::start(&office), Running::start(&office));
        let ports = [a.port, b.port];
        let jobs: Vec<Box<dyn FnOnce() -> (u16, u16) + Send>> = people
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = p.clone();
                let (first, second) = (ports[i % 2], ports[(i + 1) % 2]);
                Box::new(move || {
                    let enrolled = call(
                        first,
                        "PUT",
                        &format!("/api/v1/courses/fa/enrolments/{p}"),
                        None,
                    );
                    let passed = call(
                        second,
                        "PUT",
                        &format!("/api/v1/courses/fa/results/{p}"),
                        Some(&json!({"result": "passed"})),
                    );
                    (enrolled.status, passed.status)
                }) as Box<dyn FnOnce() -> (u16, u16) + Send>
            })
            .collect();
        let statuses = in_parallel(16, jobs);
        assert!(
            statuses.iter().all(|(e, r)| *e == 201 && *r == 200),
            "{name}: {statuses:?}"
        );
        let notices = |s: &SmtpServer| recipients_since(s, before, "Passed").len();
        wait_for(Duration::from_secs(30), || notices(&smtp) >= 300);
        let waiting = plan_of_rule(&a, "passed-notice");
        a.stop();
        b.stop();
        assert_eq!(
            notices(&smtp),
            300,
            "{name}: every passed participant got the notice; still in the plan: {waiting:?}"
        );
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(office.cleanup());
    }
}

/// The recipients of the messages received after the first `before` whose subject starts
/// with `prefix`.
fn recipients_since(smtp: &SmtpServer, before: usize, prefix: &str) -> Vec<Vec<String>> {
    smtp.received()
        .into_iter()
        .skip(before)
        .filter(|m| m.header("Subject").is_some_and(|s| s.starts_with(prefix)))
        .map(|m| m.to)
        .collect()
}

/// What `plan` still lists of `rule`, through a daemon's API (for a failure's message).
fn plan_of_rule(daemon: &Running, rule: &str) -> Vec<Value> {
    daemon
        .call("GET", &format!("/api/v1/plan?rule={rule}"), None)
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The result notice at the course's end: made at enrolment, due when the course ends.
const AT_END: &str = "
---
kind: action
id: result-at-end
name: Result at the end
data_group: course_participant
event: participant_added
process: send_email
email: { template: result-passed, subject: \"Result {{course.name}}\", to: participant }
timing: { anchor: course_end, offset: 0 days }
conditions: { course_type: [first-aid], result: [passed] }
";

/// An import's participants wait in one pack (issue 18) that becomes rows when its due
/// time comes. Two daemons on one database, after the course's end: while one turns the
/// pack into rows and judges them, the other records the results that make them due.
#[test]
fn t2_results_recorded_while_an_imported_courses_pack_becomes_rows_are_never_missed() {
    let smtp = SmtpServer::start();
    for office in offices(smtp.port) {
        let name = backend(&office);
        std::fs::write(
            office.dir.path().join("rules/rules.yaml"),
            format!("{RULES}{AT_END}"),
        )
        .expect("rules");
        let before = smtp.count();
        let people: Vec<String> = (1..=300).map(|i| format!("k{i:03}")).collect();
        first_aid(&office, &people, false);
        // Ingested before the course (2026-03-02 to 03-23): the 300 notices, due at its
        // end, are one pack.
        office.run("2026-02-01T09:00:00+01:00", &["tick"]);
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let packed: (i64, i64) = rt.block_on(async {
            let store = office.store().await;
            let counts = common::read(&store, async |tx| {
                let rows: i64 = on!(tx, c => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM actions WHERE rule_id = 'result-at-end'",
                ).fetch_one(&mut **c).await)?;
                let packs: i64 = on!(tx, c => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM action_packs WHERE rule_id = 'result-at-end'",
                ).fetch_one(&mut **c).await)?;
                Ok((rows, packs))
            })
            .await;
            store.close().await;
            counts
        });
        assert_eq!(packed, (0, 1), "{name}: one pack, no rows yet");
        let (a, b) = (Running::start(&office), Running::start(&office));
        let ports = [a.port, b.port];
        let jobs: Vec<Box<dyn FnOnce() -> u16 + Send>> = people
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = p.clone();
                let port = ports[i % 2];
                Box::new(move || {
                    call(
                        port,
                        "PUT",
                        &format!("/api/v1/courses/fa/results/{p}"),
                        Some(&json!({"result": "passed"})),
                    )
                    .status
                }) as Box<dyn FnOnce() -> u16 + Send>
            })
            .collect();
        let statuses = in_parallel(16, jobs);
        assert!(statuses.iter().all(|s| *s == 200), "{name}: {statuses:?}");
        wait_for(Duration::from_secs(30), || {
            recipients_since(&smtp, before, "Result").len() >= 300
        });
        // Time for a duplicate to show, if there were one.
        std::thread::sleep(Duration::from_millis(500));
        let waiting = plan_of_rule(&a, "result-at-end");
        a.stop();
        b.stop();
        let got = recipients_since(&smtp, before, "Result");
        let to: HashSet<&Vec<String>> = got.iter().collect();
        assert_eq!(
            (got.len(), to.len()),
            (300, 300),
            "{name}: every passed participant got the notice once; still in the plan: {waiting:?}"
        );
        rt.block_on(office.cleanup());
    }
}
