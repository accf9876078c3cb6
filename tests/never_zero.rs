//! Never zero (issue 13): whoever holds a certificate gets its email (D3 as amended: a
//! complete enrolment counts as having met D1 and D2), `plan` explains every instance that
//! did not send, `plan --summary` and `check` say which can never fire as the data stands,
//! and a catch-up pass logs a line per rule, not per message (T4).

mod common;

use common::office::{OFFICE, Office};
use serde_json::Value;
use std::collections::HashMap;

const AFTER_COURSE: &str = "2026-03-24T09:00:00+01:00";

fn file_office() -> Office {
    Office::new(&format!(
        "{OFFICE}  verify_base_url: https://opleidingen.example.nl\nmail:\n  transport: file\n  outbox: outbox\n"
    ))
}

/// The certificate emails in the outbox, by person.
fn certificate_emails(office: &Office) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for d in office.deliveries() {
        if d["rule"] == "certificate-on-completion" && d["state"] == "sent" {
            *out.entry(d["person"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    out
}

fn find<'a>(plan: &'a [Value], rule: &str, person: &str) -> &'a Value {
    plan.iter()
        .find(|i| i["rule"] == rule && i["person"] == person)
        .unwrap_or_else(|| panic!("no {rule} for {person} in {plan:?}"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn d3_seed_004_scenarios_a_b_and_c_each_get_the_certificate_email_once_and_a_reset_still_stops_it()
{
    let office = file_office();
    office.example(AFTER_COURSE);
    // Scenario A: anne was marked attended in the mass upload and completed; her attended
    // time for part 3 is then set to 0 minutes (under the part's 120).
    office.import(
        "2026-03-24T10:00:00+01:00",
        "attendance",
        office.csv(
            "a.csv",
            "course_id,part_id,person_id,status,minutes\nehbo-2026-03,p3,anne,attended,0\n",
        ),
    );
    // Scenario B: lotte completed; her attendance is corrected to 2 of 4 afterwards.
    office.import(
        "2026-03-24T10:00:00+01:00",
        "attendance",
        common::repo().join("examples/office/attendance-corrections.csv"),
    );
    // Scenario C: thijs completes by equivalency; a mass upload marks him attended, and his
    // attendance is then reset to 0 minutes.
    office.run(
        "2026-03-24T10:00:00+01:00",
        &[
            "participant",
            "equivalency",
            "--course",
            "ehbo-2026-03",
            "--person",
            "thijs",
        ],
    );
    office.import(
        "2026-03-24T10:05:00+01:00",
        "attendance",
        office.csv(
            "c1.csv",
            "course_id,part_id,person_id,status,minutes\nehbo-2026-03,p1,thijs,attended,\nehbo-2026-03,p2,thijs,attended,\nehbo-2026-03,p3,thijs,attended,180\n",
        ),
    );
    office.import(
        "2026-03-24T10:10:00+01:00",
        "attendance",
        office.csv(
            "c2.csv",
            "course_id,part_id,person_id,status,minutes\nehbo-2026-03,p1,thijs,attended,0\nehbo-2026-03,p3,thijs,attended,0\n",
        ),
    );
    // jan completed too (his certificate email is due), but is reset (D4) before anything
    // was sent.
    assert_eq!(
        find(
            &office.plan("2026-03-24T10:12:00+01:00"),
            "certificate-on-completion",
            "jan"
        )["state"],
        "due"
    );
    office.run(
        "2026-03-24T10:15:00+01:00",
        &[
            "participant",
            "reset",
            "--course",
            "ehbo-2026-03",
            "--person",
            "jan",
        ],
    );
    let plan = office.plan("2026-03-24T10:20:00+01:00");
    for p in ["anne", "lotte", "thijs"] {
        assert_eq!(
            find(&plan, "certificate-on-completion", p)["state"],
            "due",
            "{p}: {plan:?}"
        );
    }
    office.run("2026-03-24T10:20:00+01:00", &["tick"]);
    office.run("2026-03-25T10:20:00+01:00", &["tick"]);
    let sent = certificate_emails(&office);
    for p in ["anne", "lotte", "thijs"] {
        assert_eq!(
            sent.get(p),
            Some(&1),
            "{p} gets the certificate email once: {sent:?}"
        );
    }
    assert_eq!(sent.get("jan"), None, "the reset stopped jan's: {sent:?}");
    // The plan says why jan's did not go: his first cycle's was cancelled by the reset,
    // and his second cycle is not complete.
    let plan = office.plan("2026-03-25T10:20:00+01:00");
    let jan: Vec<&Value> = plan
        .iter()
        .filter(|i| i["rule"] == "certificate-on-completion" && i["person"] == "jan")
        .collect();
    let first = jan.iter().find(|i| i["cycle"] == 1).expect("cycle 1");
    assert_eq!(first["state"], "cancelled", "{first}");
    assert!(
        first["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("a new cycle (2) started"),
        "{first}"
    );
    let second = jan.iter().find(|i| i["cycle"] == 2).expect("cycle 2");
    assert!(
        second["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("not complete yet"),
        "{second}"
    );
    // Thijs's certificate reminder is for a certificate he did receive.
    assert_eq!(
        find(&plan, "certificate-expiring", "thijs")["state"],
        "waiting"
    );
}

#[test]
fn plan_gives_a_reason_for_every_instance_that_is_not_due_or_sent() {
    let office = file_office();
    office.example(AFTER_COURSE);
    office.plan(AFTER_COURSE);
    office.run(
        "2026-03-24T10:00:00+01:00",
        &[
            "participant",
            "reset",
            "--course",
            "ehbo-2026-03",
            "--person",
            "eline",
        ],
    );
    // Months later: what waited has expired, with what still failed when it did.
    office.run(AFTER_COURSE, &["tick"]);
    office.run("2026-10-01T12:00:00+02:00", &["tick"]);
    let plan = office.plan("2026-10-01T12:00:00+02:00");
    for item in &plan {
        let state = item["state"].as_str().unwrap_or_default();
        if state != "due" {
            assert!(
                item["reasons"].as_array().is_some_and(|r| !r.is_empty()),
                "{state} without a reason: {item}"
            );
        }
    }
    let sanne = find(&plan, "certificate-on-completion", "sanne");
    assert_eq!(sanne["state"], "expired");
    assert!(
        sanne["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("attendance 2 of 4 required parts (50 %), needs 75 %"),
        "{sanne}"
    );
    let eline = plan
        .iter()
        .find(|i| {
            i["rule"] == "certificate-on-completion" && i["person"] == "eline" && i["cycle"] == 1
        })
        .expect("eline's first cycle");
    assert_eq!(eline["state"], "cancelled");
    assert!(
        eline["reasons"][0]
            .as_str()
            .unwrap_or_default()
            .contains("reset or reassigned (D4)"),
        "{eline}"
    );
}

#[test]
fn conditions_that_cannot_become_true_are_marked_in_plan_summarized_and_warned_by_check() {
    let office = file_office();
    // The case's Example 2 taken literally, on the attendance-only fire-safety course, and
    // a rule that needs a final course on a course that is completed.
    let rules = office.dir.path().join("rules");
    common::copy_dir(&common::repo().join("rules"), &rules);
    std::fs::write(
        rules.join("literal.yaml"),
        "kind: action
id: proof-literal
name: Proof
data_group: course_participant
event: participant_added
process: send_email
email: { template: proof-of-participation, subject: \"Proof {{course.name}}\" }
timing: { anchor: course_end }
conditions:
  course_type: [fire-safety]
  attendance_requirement_achieved: true
  passing_obligation_passed: false
---
kind: action
id: final-only
name: Final only
data_group: course_participant
event: participant_added
process: send_email
email: { template: survey, subject: \"Survey {{course.name}}\" }
timing: { anchor: course_end }
conditions: { course_status: [final] }
",
    )
    .expect("rules");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    office.example(AFTER_COURSE);
    office.import(
        AFTER_COURSE,
        "courses",
        office.csv(
            "completed.csv",
            "id,name,type,status,start,end\nehbo-2026-03,EHBO basiscursus maart 2026,first-aid,completed,2026-03-02,2026-03-23\n",
        ),
    );
    let plan = office.plan("2026-11-01T12:00:00+01:00");
    // mehmet completed: his passing obligation counts as met (D3); siem did not, and the
    // course has no passing part: neither can ever get it.
    for p in ["mehmet", "siem"] {
        let item = find(&plan, "proof-literal", p);
        assert_eq!(item["state"], "waiting", "{item}");
        assert_eq!(item["cannot_fire"], true, "{item}");
    }
    assert!(
        find(&plan, "proof-literal", "siem")["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r
                .as_str()
                .unwrap_or_default()
                .contains("the course has no part with a passing requirement")),
        "{plan:?}"
    );
    let anne = find(&plan, "final-only", "anne");
    assert_eq!(anne["cannot_fire"], true, "{anne}");
    assert_eq!(
        anne["reasons"][0],
        "course status completed, needs final (this cannot change as the data stands)"
    );
    // The summary: per rule and course, counts and the most common reasons.
    let out = office.run("2026-11-01T12:00:00+01:00", &["plan", "--summary"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "final-only / ehbo-2026-03: 10 waiting: course status completed, the rule needs final, cannot change as the data stands (10)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "certificate-on-completion / ehbo-2026-03: 6 due; 4 expired: not complete yet (4)"
        ),
        "{text}"
    );
    let out = office.run(
        "2026-11-01T12:00:00+01:00",
        &["plan", "--summary", "--format", "json"],
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("summary json");
    let literal = rows
        .iter()
        .find(|r| r["rule"] == "proof-literal" && r["course"] == "bhv-2026-10")
        .expect("proof-literal row");
    assert_eq!(literal["cannot_fire"], 3, "{literal}");
    // check looks at the database: warnings, exit 0.
    let out = office.command(None, &["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("warning: proof-literal / bhv-2026-10: 3 waiting instance(s) cannot fire as the data stands"),
        "{text}"
    );
    assert!(
        text.contains("warning: final-only / ehbo-2026-03: 10 waiting instance(s) cannot fire"),
        "{text}"
    );
}

#[test]
fn the_plan_table_wraps_long_reasons_instead_of_cutting_them() {
    let office = file_office();
    office.example(AFTER_COURSE);
    let out = office
        .command(Some(AFTER_COURSE), &["plan"])
        .env("COLUMNS", "140")
        .output()
        .expect("plan");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('…'), "nothing is cut: {text}");
    assert!(text.lines().all(|l| l.chars().count() <= 140), "{text}");
    // sanne's reason, whole, over two lines.
    let joined: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        joined.contains("not complete yet (attendance 2 of 4 required parts (50 %), needs 75 %; 0 of 1 parts passed)"),
        "{text}"
    );
}

#[test]
fn t4_a_catch_up_pass_logs_one_line_per_rule_and_a_participant_who_completes_late_is_not_late() {
    let office = file_office();
    office.example("2026-03-10T09:00:00+01:00");
    office.run("2026-03-10T09:00:00+01:00", &["tick"]);
    // Nothing ran from the course's end until ten days later: a catch-up.
    let out = office
        .command(Some("2026-04-02T12:00:00+02:00"), &["tick"])
        .env("REGISTRAR_LOG", "info")
        .output()
        .expect("tick");
    let log = stderr(&out);
    let late: Vec<&str> = log.lines().filter(|l| l.contains("late")).collect();
    assert!(
        late.iter()
            .any(|l| l.contains("certificate-on-completion: fired") && l.contains("T4 catch-up")),
        "{log}"
    );
    assert!(
        late.len() <= 6,
        "a line per rule, not per message: {late:?}"
    );
    assert!(
        !late.iter().any(|l| l.contains("person=")),
        "no line per message at info level: {log}"
    );
    // sanne completes now, long after the course ended: she is served, not late.
    office.import(
        "2026-04-03T12:00:00+02:00",
        "attendance",
        office.csv(
            "late.csv",
            "course_id,part_id,person_id,status,minutes\nehbo-2026-03,p3,sanne,attended,\n",
        ),
    );
    office.import(
        "2026-04-03T12:00:00+02:00",
        "part-results",
        office.csv(
            "late-pass.csv",
            "course_id,part_id,person_id,passed\nehbo-2026-03,p4,sanne,true\n",
        ),
    );
    let out = office
        .command(Some("2026-04-03T12:00:30+02:00"), &["tick"])
        .env("REGISTRAR_LOG", "info")
        .output()
        .expect("tick");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!stderr(&out).contains("late"), "{}", stderr(&out));
    assert!(!printed.contains("late"), "{printed}");
    assert_eq!(certificate_emails(&office).get("sanne"), Some(&1));
}
