//! Delivery that no input, server or overlap can stop or double (issue 12): names that
//! cannot go in a header, a subject that renders a line break, a silent SMTP server, a long
//! `tick` beside `serve`, ids a file name cannot tell apart, a refused login, a closed
//! standard output, and clients that never finish their requests.

mod common;

use common::daemon::{Running, call, http_config, wait_for};
use common::office::{OFFICE, Office};
use common::smtp::{SmtpServer, free_port};
use common::welcome::smtp_config;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The welcome office (a course, `n` participants, a welcome email due when enrolled),
/// with `extra` after the SMTP settings.
fn welcome(port: u16, n: usize, extra: &str) -> Office {
    let config = smtp_config(port).replace(
        "    rate_per_second: 10000\n",
        &format!("    rate_per_second: 10000\n{extra}"),
    );
    Office::new(&config).welcome(n, false)
}

fn output(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_name_with_a_line_break_a_nul_or_two_megabytes_is_refused_in_a_file_and_over_the_api() {
    let server = SmtpServer::start();
    let office = welcome(server.port, 0, "");
    office.import_own(None, &["courses"]);
    let long = "x".repeat(2 * 1024 * 1024);
    let file = office.csv(
        "bad-people.csv",
        &format!(
            "id,full_name,email\np1,\"Anne\nEvil\",anne@example.org\np2,Nul\0Byte,nul@example.org\np3,{long},long@example.org\np4,Fine Person,fine@example.org\n"
        ),
    );
    let out = office
        .command(None, &["import", "people", &file.to_string_lossy()])
        .output()
        .expect("import");
    let text = output(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("column full_name: contains a line break"),
        "{text}"
    );
    assert!(
        text.contains("column full_name: contains a NUL byte"),
        "{text}"
    );
    assert!(
        text.contains("column full_name: is longer than 200 characters"),
        "{text}"
    );
    assert!(text.contains("nothing was imported"), "{text}");

    // The same through the API: 422 with the field and why; the daemon stays up.
    std::fs::write(
        office.dir.path().join("config.yaml"),
        std::fs::read_to_string(office.config())
            .expect("config")
            .replace("http:\n  listen: 127.0.0.1:0\n", http_config()),
    )
    .expect("config");
    let api = Running::start(&office);
    for (name, why) in [
        ("Anne\nEvil".to_string(), "line break"),
        (
            "Anne\r\nBcc: evil@example.org".to_string(),
            "carriage return",
        ),
        ("Nul\0Byte".to_string(), "NUL byte"),
        (long, "longer than 200 characters"),
    ] {
        let a = api.call(
            "PUT",
            "/api/v1/people/p9",
            Some(&json!({"full_name": name, "email": "p9@example.org"})),
        );
        assert_eq!(a.status, 422, "{why}: {}", a.body);
        let body = a.json();
        assert_eq!(body["errors"][0]["field"], "full_name", "{body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains(why),
            "{body}"
        );
    }
    let id = api.call(
        "PUT",
        "/api/v1/people/a%0Ab",
        Some(&json!({"full_name": "Id With Break", "email": "ab@example.org"})),
    );
    assert_eq!(id.status, 422, "{}", id.body);
    let ok = api.call(
        "PUT",
        "/api/v1/people/p9",
        Some(&json!({"full_name": "Anne Evil", "email": "p9@example.org"})),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(
        common::http::request(api.port, "GET", "/healthz", &[], b"").status,
        200
    );
    api.stop();
    assert!(
        office.deliveries().is_empty(),
        "nothing of the refused input reached the outbox"
    );
}

#[test]
fn a_subject_that_renders_a_line_break_fails_that_one_delivery_and_the_rest_go_out() {
    let server = SmtpServer::start();
    let office = welcome(server.port, 5, "");
    // For p3 only, the subject template renders a line break (and a header after it).
    let rules = std::fs::read_to_string(office.dir.path().join("rules/rules.yaml")).expect("rules");
    std::fs::write(
        office.dir.path().join("rules/rules.yaml"),
        rules.replace(
            "subject: \"Welcome to {{course.name}}\"",
            "subject: \"Welcome{{#if (eq participant.id \\\"p3\\\")}}\\nBcc: evil@example.org{{/if}} to {{course.name}}\"",
        ),
    )
    .expect("rules");
    let check = office.command(None, &["check"]).output().expect("check");
    assert!(check.status.success(), "{}", output(&check));
    office.import_own(None, &["courses", "people", "enrolments"]);
    let out = office.run("2026-12-01T12:00:00+01:00", &["tick"]);
    let text = output(&out);
    assert!(text.contains("4 sent"), "{text}");
    assert_eq!(server.count(), 4);
    assert!(
        server
            .received()
            .iter()
            .all(|m| !m.data.contains("evil@example.org")),
        "no header was injected"
    );
    let failed: Vec<Value> = office
        .deliveries()
        .into_iter()
        .filter(|d| d["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["person"], "p3");
    let why = failed[0]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("email.subject renders a line break"), "{why}");
}

#[test]
fn t4_a_silent_smtp_server_ends_the_tick_within_the_timeout_and_the_messages_go_out_once_it_answers()
 {
    let server = SmtpServer::start();
    let office = welcome(server.port, 3, "    timeout: 2s\n");
    office.import_own(None, &["courses", "people", "enrolments"]);
    server.blackhole(true);
    let started = Instant::now();
    let out = office.run("2026-12-01T12:00:00+01:00", &["tick"]);
    let took = started.elapsed();
    server.blackhole(false);
    let text = output(&out);
    assert!(took < Duration::from_secs(20), "tick took {took:?}: {text}");
    assert!(text.contains("3 to retry"), "{text}");
    for d in office.deliveries() {
        assert_eq!(d["state"], "retrying", "{d}");
        assert!(
            d["last_error"]
                .as_str()
                .unwrap_or_default()
                .contains("did not answer within 2 s"),
            "{d}"
        );
    }
    assert_eq!(
        server.count(),
        0,
        "nothing was accepted by the silent server"
    );
    // The server answers again: the retries (after the one-minute backoff) go out once.
    let out = office.run("2026-12-01T12:02:00+01:00", &["tick"]);
    assert!(output(&out).contains("3 sent"), "{}", output(&out));
    let ids: HashSet<String> = server.received().iter().map(|m| m.message_id()).collect();
    assert_eq!((server.count(), ids.len()), (3, 3));
}

#[test]
fn t3_a_tick_delivering_for_over_a_minute_beside_serve_sends_nothing_twice() {
    let server = SmtpServer::start();
    let n = 24;
    // One connection each, six seconds a message: the tick delivers for over a minute.
    let office = welcome(server.port, n, "");
    office.edit_config("pool: 4", "pool: 1");
    server.slow_down(Duration::from_secs(6));
    office.import_own(None, &["courses", "people", "enrolments"]);
    let tick = office
        .command(None, &["tick"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tick");
    std::thread::sleep(Duration::from_secs(2));
    let serve = office
        .command(None, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let started = Instant::now();
    let out = tick.wait_with_output().expect("tick ends");
    let ticked = started.elapsed() + Duration::from_secs(2);
    wait_for(Duration::from_secs(60), || server.count() >= n);
    std::thread::sleep(Duration::from_secs(7));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    let serve_out = serve.wait_with_output().expect("serve ends");
    assert!(
        ticked > Duration::from_secs(60),
        "the tick delivered for {ticked:?}: {}",
        output(&out)
    );
    let received = server.received();
    let ids: HashSet<String> = received.iter().map(|m| m.message_id()).collect();
    assert_eq!(
        (received.len(), ids.len()),
        (n, n),
        "every message once; tick: {}; serve: {}",
        output(&out),
        output(&serve_out)
    );
}

#[test]
fn t3_ids_a_file_name_cannot_tell_apart_get_a_file_each() {
    let office = Office::new(&format!(
        "{OFFICE}mail:\n  transport: file\n  outbox: outbox\n"
    ))
    .welcome(0, false);
    office.csv(
        "people.csv",
        "id,full_name,email\nx y,X Space,a@example.org\nx_y,X Underscore,b@example.org\nx.y,X Dot,c@example.org\n",
    );
    office.csv(
        "enrolments.csv",
        "course_id,person_id\nfa-1,x y\nfa-1,x_y\nfa-1,x.y\n",
    );
    office.import_own(None, &["courses", "people", "enrolments"]);
    let out = office.run("2026-12-01T12:00:00+01:00", &["tick"]);
    assert!(output(&out).contains("3 sent"), "{}", output(&out));
    let files: Vec<String> = std::fs::read_dir(office.dir.path().join("outbox"))
        .expect("outbox")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| f.ends_with(".eml")), "{files:?}");
}

#[test]
fn a_refused_login_pauses_delivery_until_the_password_is_fixed_and_then_every_message_goes_once() {
    let server = SmtpServer::start();
    server.require_password(Some("right horse"));
    let office = welcome(
        server.port,
        6,
        "    username: registrar\n    password_file: smtp-password\n",
    );
    std::fs::write(office.dir.path().join("smtp-password"), "wrong").expect("password");
    let port = free_port();
    office.edit_config("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    office.import_own(None, &["courses", "people", "enrolments"]);
    let serve = office
        .command(None, &["serve"])
        .env("REGISTRAR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let health = || common::http::request(port, "GET", "/healthz", &[], b"");
    assert!(
        wait_for(Duration::from_secs(20), || {
            let h = health();
            h.status == 503 && h.body.contains("paused")
        }),
        "healthz shows the pause: {:?}",
        health()
    );
    let h = health().json();
    assert!(
        h["delivery"]["paused"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the login"),
        "{h}"
    );
    let metrics = common::http::request(port, "GET", "/metrics", &[], b"");
    assert!(
        metrics.body.contains("registrar_delivery_paused 1"),
        "{}",
        metrics.body
    );
    // Nothing failed, nothing counted as an attempt: the messages wait in the queue.
    for d in office.deliveries() {
        assert_eq!(
            (d["state"].as_str(), d["attempts"].as_i64()),
            (Some("queued"), Some(0)),
            "{d}"
        );
    }
    // The password is fixed and the configuration reloaded.
    std::fs::write(office.dir.path().join("smtp-password"), "right horse").expect("password");
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &serve.id().to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    assert!(
        wait_for(Duration::from_secs(20), || server.count() >= 6),
        "delivered after the reload: {}",
        server.count()
    );
    assert!(wait_for(Duration::from_secs(10), || health().status == 200));
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    let out = serve.wait_with_output().expect("serve ends");
    let log = output(&out);
    let ids: HashSet<String> = server.received().iter().map(|m| m.message_id()).collect();
    assert_eq!((server.count(), ids.len()), (6, 6), "{log}");
    assert!(office.deliveries().iter().all(|d| d["state"] == "sent"));
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("ERROR") && l.contains("delivery paused"))
            .count(),
        1,
        "one clear error in the log: {log}"
    );
}

/// Runs `args` with a reader that takes one byte and goes away (`| head -c 1`).
fn with_closed_stdout(office: &Office, args: &[&str]) {
    let mut child = office
        .command(None, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut one = [0u8; 1];
    let _ = stdout.read(&mut one);
    drop(stdout);
    let out = child.wait_with_output().expect("wait");
    let text = output(&out);
    assert!(!text.contains("panicked"), "{args:?}: {text}");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {text}");
}

#[test]
fn every_listing_command_survives_a_closed_stdout() {
    let office = Office::new(&format!(
        "{OFFICE}mail:\n  transport: file\n  outbox: outbox\n"
    ))
    .welcome(1000, false);
    office.import_own(None, &["courses", "people", "enrolments"]);
    // Outputs well beyond a pipe's buffer, so the writes meet the closed pipe.
    with_closed_stdout(&office, &["plan"]);
    with_closed_stdout(&office, &["plan", "--format", "json"]);
    with_closed_stdout(&office, &["export", "attendance", "--course", "fa-1"]);
    office.run("2026-12-01T12:00:00+01:00", &["tick"]);
    with_closed_stdout(&office, &["deliveries"]);
    with_closed_stdout(&office, &["deliveries", "--format", "json"]);
}

#[test]
fn five_hundred_held_partial_requests_neither_keep_healthz_from_answering_nor_stay_open() {
    let server = SmtpServer::start();
    let office = welcome(server.port, 0, "");
    let port = free_port();
    office.edit_config("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    let mut serve = office
        .command(None, &["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    assert!(wait_for(Duration::from_secs(20), || {
        common::http::request(port, "GET", "/healthz", &[], b"").status == 200
    }));
    let mut held = Vec::new();
    for _ in 0..500 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .expect("half a request");
        held.push(s);
    }
    let started = Instant::now();
    let h = common::http::request(port, "GET", "/healthz", &[], b"");
    let took = started.elapsed();
    assert_eq!(h.status, 200, "{}", h.body);
    assert!(took < Duration::from_secs(1), "healthz took {took:?}");
    // The server gives a request 10 s for its headers, then closes the connection.
    std::thread::sleep(registrar::http::server::HEADER_TIMEOUT + Duration::from_secs(2));
    let mut closed = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let mut buf = [0u8; 512];
        // Closed: end of file (after an error answer, if the server sent one).
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = serve.wait();
    assert_eq!(closed, 500, "the server closed every unfinished request");
}

#[test]
fn the_api_refuses_control_characters_in_every_text_field() {
    let server = SmtpServer::start();
    let office = welcome(server.port, 1, "");
    office.import_own(None, &["courses", "people", "enrolments"]);
    std::fs::write(
        office.config(),
        std::fs::read_to_string(office.config())
            .expect("config")
            .replace("http:\n  listen: 127.0.0.1:0\n", http_config()),
    )
    .expect("config");
    let api = Running::start(&office);
    let cases = [
        (
            "PUT",
            "/api/v1/courses/fa-2",
            json!({"name": "EHBO\nmaart", "type": "first-aid", "status": "final", "start": "2027-01-01", "end": "2027-01-02"}),
            "name",
        ),
        (
            "PUT",
            "/api/v1/courses/fa-2",
            json!({"name": "EHBO", "type": "first-aid", "status": "final", "start": "2027-01-01", "end": "2027-01-02", "location": "A\u{7}B"}),
            "location",
        ),
        (
            "PUT",
            "/api/v1/courses/fa-2",
            json!({"name": "EHBO", "type": "first-aid", "status": "final", "start": "2027-01-01", "end": "2027-01-02", "fields": {"room": "1\n2"}}),
            "fields.room",
        ),
        (
            "PUT",
            "/api/v1/courses/fa-1/results/p0",
            json!({"result": "registered", "comment": "fine\u{0}"}),
            "comment",
        ),
    ];
    for (method, path, body, field) in cases {
        let a = call(api.port, method, path, Some(&body));
        assert_eq!(a.status, 422, "{path} {body}: {}", a.body);
        assert_eq!(a.json()["errors"][0]["field"], field, "{}", a.body);
    }
    // A comment may have line breaks: it never reaches a header.
    let a = call(
        api.port,
        "PUT",
        "/api/v1/courses/fa-1/results/p0",
        Some(&json!({"result": "registered", "comment": "line one\nline two"})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    api.stop();
}

#[test]
fn a_server_without_starttls_when_the_config_asks_for_it_pauses_delivery_instead_of_failing_messages()
 {
    let server = SmtpServer::start();
    let office = welcome(server.port, 3, "");
    office.edit_config("tls: none", "tls: starttls");
    office.import_own(None, &["courses", "people", "enrolments"]);
    let out = office
        .command(Some("2026-12-01T12:00:00+01:00"), &["tick"])
        .output()
        .expect("tick");
    let text = output(&out);
    assert!(text.contains("delivery paused"), "{text}");
    assert!(text.contains("check mail.smtp.tls"), "{text}");
    for d in office.deliveries() {
        assert_eq!(
            (d["state"].as_str(), d["attempts"].as_i64()),
            (Some("queued"), Some(0)),
            "{d}"
        );
    }
    assert_eq!(server.count(), 0);
}
