//! Delivery over real SMTP (T3, T4, SPEC §6): the real binary's `tick` against an SMTP
//! server running in the test process, on the example office and on generated offices.

mod common;

use common::office::{OFFICE, Office};
use common::smtp::{SmtpServer, free_port};
use common::welcome::smtp_config;
use serde_json::Value;
use std::collections::HashMap;

/// After the example office's courses: certificates, proofs and result notices are due.
const NOW: &str = "2026-12-01T12:00:00+01:00";
const TWO_MINUTES_LATER: &str = "2026-12-01T12:02:00+01:00";
const NEXT_DAY: &str = "2026-12-02T12:00:00+01:00";

fn example_office(port: u16) -> Office {
    let office = Office::new(&smtp_config(port));
    office.example(NOW);
    office
}

fn tick(office: &Office, now: &str) -> String {
    String::from_utf8_lossy(&office.run(now, &["tick"]).stdout).into_owned()
}

fn by_state(office: &Office) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for d in office.deliveries() {
        *out.entry(d["state"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    out
}

fn of<'a>(deliveries: &'a [Value], rule: &str, person: &str) -> &'a Value {
    deliveries
        .iter()
        .find(|d| d["rule"] == rule && d["person"] == person)
        .unwrap_or_else(|| panic!("no delivery of {rule} for {person}"))
}

/// Eighteen messages are due in the example office at NOW: six certificates, two proofs of
/// participation, seven "passed", two "failed" and one "not finished" notice.
const DUE_AT_NOW: usize = 18;

#[test]
fn t3_every_due_participant_gets_exactly_one_message_and_a_second_tick_sends_nothing() {
    let server = SmtpServer::start();
    let office = example_office(server.port);
    let out = tick(&office, NOW);
    assert!(out.contains(&format!("{DUE_AT_NOW} sent")), "{out}");
    let received = server.received();
    assert_eq!(received.len(), DUE_AT_NOW);
    let anne: Vec<_> = received
        .iter()
        .filter(|m| m.to == ["anne.devries@example.nl"])
        .collect();
    let subjects: Vec<String> = anne.iter().filter_map(|m| m.header("Subject")).collect();
    assert!(
        subjects.contains(&"Certificaat EHBO basiscursus maart 2026 - Anne de Vries".to_string()),
        "{subjects:?}"
    );
    assert!(
        anne.iter()
            .any(|m| m.message_id() == "<certificate-on-completion.ehbo-2026-03.anne.1@example.nl>")
    );
    let mut ids: Vec<String> = received.iter().map(|m| m.message_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        DUE_AT_NOW,
        "every message has its own Message-ID"
    );

    let out = tick(&office, NOW);
    assert!(out.contains("0 sent"), "{out}");
    // The next day at 10:00 the survey invitations fall due: eleven go out, and Siem, who
    // has no email address, gets a failed delivery that says so.
    let out = tick(&office, NEXT_DAY);
    assert!(out.contains("11 sent") && out.contains("1 failed"), "{out}");
    assert_eq!(server.count(), DUE_AT_NOW + 11);
    let d = office.deliveries();
    assert_eq!(
        of(&d, "survey-after-attendance", "siem")["last_error"],
        "siem has no email address"
    );
    assert_eq!(by_state(&office).get("sent"), Some(&(DUE_AT_NOW + 11)));
}

#[test]
fn t4_actions_that_fell_due_while_nothing_ran_fire_with_their_lateness_logged() {
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port));
    // The office is imported (and a pass runs) while the March course is on...
    office.example("2026-03-10T09:00:00+01:00");
    office.run("2026-03-10T09:00:00+01:00", &["tick"]);
    let before = server.count();
    // ...and no pass runs again until December: the certificates due at the course's end
    // are a catch-up, logged once per rule.
    let out = office
        .command(Some(NOW), &["tick"])
        .env("REGISTRAR_LOG", "info")
        .output()
        .expect("tick");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("late, up to 265 days"), "{stdout}");
    assert!(
        stderr.contains("certificate-on-completion: fired 6 late, up to 252 days")
            && stderr.contains("T4 catch-up"),
        "{stderr}"
    );
    assert!(server.count() > before);
}

#[test]
fn t3_a_4xx_answer_is_retried_with_backoff_and_delivered_later() {
    let server = SmtpServer::start();
    server.refuse("anne.devries", 451);
    let office = example_office(server.port);
    tick(&office, NOW);
    let d = office.deliveries();
    let cert = of(&d, "certificate-on-completion", "anne");
    assert_eq!(cert["state"], "retrying");
    assert_eq!(cert["attempts"], 1);
    assert!(
        cert["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("451"),
        "{cert}"
    );
    assert_eq!(server.count(), DUE_AT_NOW - 2, "Anne's two messages wait");

    server.accept_everyone();
    tick(&office, NOW);
    assert_eq!(
        server.count(),
        DUE_AT_NOW - 2,
        "not before the backoff has passed"
    );
    tick(&office, TWO_MINUTES_LATER);
    assert_eq!(server.count(), DUE_AT_NOW);
    let d = office.deliveries();
    let cert = of(&d, "certificate-on-completion", "anne");
    assert_eq!(cert["state"], "sent");
    assert_eq!(cert["attempts"], 2);
}

#[test]
fn t3_a_5xx_answer_fails_at_once_is_listed_and_can_be_retried() {
    let server = SmtpServer::start();
    server.refuse("jan.jansen", 550);
    let office = example_office(server.port);
    let out = tick(&office, NOW);
    assert!(out.contains("2 failed"), "{out}");
    let d = office.deliveries();
    let cert = of(&d, "certificate-on-completion", "jan");
    assert_eq!(cert["state"], "failed");
    assert_eq!(cert["attempts"], 1);
    assert!(
        cert["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("550"),
        "{cert}"
    );

    let table = office.run(NOW, &["deliveries", "--state", "failed"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("certificate-on-completion") && table.contains("jan"),
        "{table}"
    );
    assert!(table.contains("2 deliveries"), "{table}");

    tick(&office, NEXT_DAY);
    assert!(
        !server
            .received()
            .iter()
            .any(|m| m.to == ["jan.jansen@example.nl"]),
        "a permanent failure is not retried by itself"
    );

    server.accept_everyone();
    let id = cert["id"].to_string();
    office.run(NEXT_DAY, &["retry", &id]);
    tick(&office, NEXT_DAY);
    let jan: Vec<_> = server
        .received()
        .into_iter()
        .filter(|m| m.to == ["jan.jansen@example.nl"])
        .collect();
    assert_eq!(jan.len(), 1, "only the retried one");
    let again = office
        .command(Some(NEXT_DAY), &["retry", &id])
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already sent"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn t3_the_smtp_server_down_at_first_and_up_later_loses_nothing() {
    let port = free_port();
    let office = example_office(port);
    let out = tick(&office, NOW);
    assert!(
        out.contains("0 sent") && out.contains(&format!("{DUE_AT_NOW} to retry")),
        "{out}"
    );
    let server = SmtpServer::start_on(port);
    tick(&office, TWO_MINUTES_LATER);
    assert_eq!(server.count(), DUE_AT_NOW);
    assert_eq!(by_state(&office).get("sent"), Some(&DUE_AT_NOW));
}

#[test]
fn a_participant_without_a_valid_address_gets_a_failed_delivery_saying_so() {
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port)).welcome(2, false);
    office.csv(
        "people.csv",
        "id,full_name,email\np0,Person 0,p0@example.org\np1,Person 1,\n",
    );
    office.import_own(Some(NOW), &["courses", "people", "enrolments"]);
    let out = tick(&office, NOW);
    assert!(out.contains("1 sent") && out.contains("1 failed"), "{out}");
    let d = office.deliveries();
    let p1 = of(&d, "welcome", "p1");
    assert_eq!(p1["state"], "failed");
    assert_eq!(p1["last_error"], "p1 has no email address");
    assert_eq!(server.count(), 1);

    // Once the address is known, `retry` renders the message again and sends it.
    office.csv(
        "people.csv",
        "id,full_name,email\np0,Person 0,p0@example.org\np1,Person 1,p1@example.org\n",
    );
    let file = office.dir.path().join("people.csv");
    office.run(NOW, &["import", "people", &file.to_string_lossy()]);
    office.run(NOW, &["retry", &p1["id"].to_string()]);
    tick(&office, NOW);
    assert_eq!(server.count(), 2);
    assert_eq!(server.received()[1].to, ["p1@example.org"]);
}

#[test]
fn t2_execution_manual_waits_for_approve() {
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port)).welcome(2, true);
    office.import_own(Some(NOW), &["courses", "people", "enrolments"]);
    tick(&office, NOW);
    assert_eq!(server.count(), 0);
    let plan = office.plan(NOW);
    assert!(
        plan.iter().all(|a| a["state"] == "awaiting_approval"),
        "{plan:?}"
    );
    let first = plan[0]["id"].to_string();
    office.run(NOW, &["approve", &first]);
    tick(&office, NOW);
    assert_eq!(server.count(), 1);
    let again = office
        .command(Some(NOW), &["approve", &first])
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not awaiting approval"));
}

#[test]
fn the_file_transport_writes_one_eml_per_message_into_the_outbox() {
    let office = Office::new(&format!(
        "{OFFICE}mail:\n  transport: file\n  outbox: outbox\n"
    ));
    office.example(NOW);
    tick(&office, NOW);
    let outbox = office.dir.path().join("outbox");
    let files: Vec<String> = std::fs::read_dir(&outbox)
        .expect("outbox")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), DUE_AT_NOW, "{files:?}");
    let cert = std::fs::read_to_string(
        outbox.join("certificate-on-completion__ehbo-2026-03__anne__1.eml"),
    )
    .expect("Anne's certificate");
    assert!(
        cert.contains("Message-ID: <certificate-on-completion.ehbo-2026-03.anne.1@example.nl>")
    );
    assert!(cert.contains("multipart/alternative"));
}

#[test]
fn rate_per_second_spaces_the_messages() {
    let server = SmtpServer::start();
    let office = Office::new(
        &smtp_config(server.port).replace("rate_per_second: 10000", "rate_per_second: 10"),
    )
    .welcome(21, false);
    office.import_own(Some(NOW), &["courses", "people", "enrolments"]);
    let start = std::time::Instant::now();
    tick(&office, NOW);
    // 21 messages at 10 a second: the last starts 2 s after the first.
    assert!(
        start.elapsed() >= std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.count(), 21);
}

/// Issue 18: an office of three courses of 400 participants, their parts imported after
/// them (each course changes four times in one batch of events): the welcome messages,
/// 1,200, fire in six batches, each judged while the one before it is composed and the
/// one before that recorded. Every participant gets exactly one, and a second tick sends
/// nothing.
fn t3_overlapping_batches_send_each_of_1200_messages_exactly_once(
    office: &Office,
    server: &SmtpServer,
) {
    let mut courses = String::from("id,name,type,status,start,end,location\n");
    let mut parts = String::from(
        "course_id,id,name,start,end,attendance_required,passing_required,min_minutes\n",
    );
    let mut people = String::from("id,full_name,email\n");
    let mut enrolments = String::from("course_id,person_id\n");
    for c in 0..3 {
        courses.push_str(&format!(
            "fa-{c},First aid {c},first-aid,final,2027-01-1{c}T09:00:00+01:00,2027-01-1{c}T17:00:00+01:00,Utrecht\n"
        ));
        for p in 1..=4 {
            parts.push_str(&format!(
                "fa-{c},p{p},Part {p},2027-01-1{c}T0{p}:00:00+01:00,2027-01-1{c}T0{p}:30:00+01:00,true,false,\n"
            ));
        }
        for i in 0..400 {
            let id = c * 400 + i;
            people.push_str(&format!("u{id},Person {id},u{id}@example.org\n"));
            enrolments.push_str(&format!("fa-{c},u{id}\n"));
        }
    }
    office.csv("courses.csv", &courses);
    office.csv("parts.csv", &parts);
    office.csv("people.csv", &people);
    office.csv("enrolments.csv", &enrolments);
    office.import_own(None, &["courses", "people", "enrolments", "parts"]);
    let tick = || {
        let out = office.command(None, &["tick"]).output().expect("tick");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = tick();
    assert!(out.contains("1200 sent"), "{out}");
    let received = server.received();
    assert_eq!(received.len(), 1200, "{out}");
    let ids: std::collections::HashSet<String> = received.iter().map(|m| m.message_id()).collect();
    assert_eq!(ids.len(), 1200, "every message has its own Message-ID");
    let to: std::collections::HashSet<Vec<String>> =
        received.iter().map(|m| m.to.clone()).collect();
    assert_eq!(to.len(), 1200, "every participant got one message");
    let out = tick();
    assert!(out.contains("0 sent"), "{out}");
    assert_eq!(server.count(), 1200);
}

#[test]
fn t3_a_tick_firing_1200_messages_in_overlapping_batches_sends_each_once_on_sqlite() {
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port)).welcome(0, false);
    t3_overlapping_batches_send_each_of_1200_messages_exactly_once(&office, &server);
}

#[tokio::test(flavor = "multi_thread")]
async fn t3_a_tick_firing_1200_messages_in_overlapping_batches_sends_each_once_on_postgres() {
    let server = SmtpServer::start();
    let Some(office) = Office::postgres(&smtp_config(server.port)).await else {
        return;
    };
    let office = office.welcome(0, false);
    tokio::task::block_in_place(|| {
        t3_overlapping_batches_send_each_of_1200_messages_exactly_once(&office, &server)
    });
    office.cleanup().await;
}
