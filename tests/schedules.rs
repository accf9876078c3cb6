//! Schedule-driven rules (SPEC §3 `event: schedule`, T6) through the binary with `--now`:
//! the office's weekly digest, DST nights, bounded reminders, catch-up after downtime, and
//! two `serve` processes on PostgreSQL.

mod common;

use common::daemon::{Running, http_config, wait_for};
use common::office::{OFFICE, Office};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

const FILE_MAIL: &str = "mail:\n  transport: file\n  outbox: outbox\n";

const COURSE_TYPE: &str = "kind: course_type
id: first-aid
name: Eerste hulp
attendance_percent: 75
";

/// A welcome mail (fails for a person without an address) and a manual check of passed
/// participants (waits for approval): what a digest reports.
const EVENT_RULES: &str = "---
kind: action
id: welcome
name: Welcome
data_group: course_participant
event: participant_added
process: send_email
email:
  template: result-passed
  subject: \"Welkom {{course.name}}\"
timing: { anchor: event }
---
kind: action
id: passed-check
name: Check
execution: manual
data_group: course_participant
event: result_recorded
process: send_email
email:
  template: result-passed
  subject: \"Geslaagd {{course.name}}\"
timing: { anchor: event }
conditions:
  result: [passed]
";

fn digest_rule(schedule: &str) -> String {
    format!(
        "---
kind: action
id: weekly-digest
name: Digest
data_group: office
event: schedule
schedule: \"{schedule}\"
process: send_email
email:
  template: office-digest
  subject: \"registrar: week van {{{{format_date digest.since}}}}\"
  to: [\"planning@example.nl\"]
"
    )
}

/// An office with `rules` (and the repository's templates), file transport, the course
/// `fa` (two required parts, ending Monday 16 November 2026 12:00) and `people` enrolled.
fn office(rules: &str, extra: &str, people: &[(&str, &str)]) -> Office {
    let office = Office::new(&format!("{OFFICE}{FILE_MAIL}{extra}"));
    office.own_rules_only(rules);
    setup(&office, people, IMPORTED);
    office
}

const IMPORTED: &str = "2026-11-16T13:00:00+01:00";

fn setup(office: &Office, people: &[(&str, &str)], at: &str) {
    let dir = office.dir.path();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("csv");
        p
    };
    let courses = write(
        "courses.csv",
        "id,name,type,status,start,end\nfa,EHBO november,first-aid,final,2026-11-02T09:00:00+01:00,2026-11-16T12:00:00+01:00\n".into(),
    );
    let parts = write(
        "parts.csv",
        "course_id,id,name,start,end,attendance_required,passing_required,min_minutes\n\
         fa,p1,Deel 1,2026-11-02T09:00:00+01:00,2026-11-02T12:00:00+01:00,yes,no,\n\
         fa,p2,Deel 2,2026-11-16T09:00:00+01:00,2026-11-16T12:00:00+01:00,yes,no,\n"
            .into(),
    );
    let mut ppl = String::from("id,full_name,email,first_name,locale\n");
    let mut enr = String::from("course_id,person_id,walk_in\n");
    for (id, email) in people {
        let name = format!("{}{} Test", id[..1].to_uppercase(), &id[1..]);
        ppl.push_str(&format!("{id},{name},{email},,nl\n"));
        enr.push_str(&format!("fa,{id},\n"));
    }
    let people = write("people.csv", ppl);
    let enrolments = write("enrolments.csv", enr);
    for (kind, file) in [
        ("courses", courses),
        ("parts", parts),
        ("people", people),
        ("enrolments", enrolments),
    ] {
        office.import(at, kind, file);
    }
}

fn of_rule(office: &Office, rule: &str) -> Vec<Value> {
    office
        .deliveries()
        .into_iter()
        .filter(|d| d["rule"] == rule)
        .collect()
}

fn tick(office: &Office, now: &str) -> String {
    let out = office.run(now, &["tick"]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The text part of an .eml file, read by Python's email parser.
fn text_of(eml: &Path) -> String {
    let script = r#"
import email, sys
from email import policy
m = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=policy.default)
print("SUBJECT: " + str(m["Subject"]))
print("TO: " + str(m["To"]))
print(m.get_body(preferencelist=("plain",)).get_content())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(eml)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The .eml files of `rule` in the office's outbox.
fn outbox_files(office: &Office, rule: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(office.dir.path().join("outbox"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{rule}__")))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn t6_the_monday_digest_lists_the_failed_delivery_and_the_approval_once_and_not_when_empty() {
    let rules = format!("{COURSE_TYPE}{EVENT_RULES}{}", digest_rule("0 8 * * MON"));
    let office = office(&rules, "", &[("anne", "anne@example.nl"), ("siem", "")]);
    let results = office.csv(
        "results.csv",
        "course_id,person_id,result,score,comment\nfa,anne,passed,8,\n",
    );
    office.import(IMPORTED, "results", results);
    // Friday: the welcome to siem fails (no address), anne's check waits for approval.
    tick(&office, "2026-11-20T10:00:00+01:00");
    let welcome = of_rule(&office, "welcome");
    assert_eq!(welcome.len(), 2, "{welcome:?}");
    assert!(welcome.iter().any(|d| d["state"] == "failed"));
    assert!(of_rule(&office, "weekly-digest").is_empty());

    // Monday 08:00: one digest to the planners, listing both.
    tick(&office, "2026-11-23T08:00:00+01:00");
    let digests = of_rule(&office, "weekly-digest");
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert_eq!(digests[0]["state"], "sent");
    assert_eq!(digests[0]["recipients"], "planning@example.nl");
    let files = outbox_files(&office, "weekly-digest");
    assert_eq!(files.len(), 1);
    let text = text_of(&files[0]);
    assert!(text.contains("TO: planning@example.nl"), "{text}");
    assert!(
        text.contains("SUBJECT: registrar: week van 16 november 2026"),
        "{text}"
    );
    assert!(
        text.contains("1 niet bezorgd, 1 wacht op goedkeuring"),
        "{text}"
    );
    assert!(text.contains("Siem Test (siem): welcome, fa"), "{text}");
    assert!(text.contains("adres: geen"), "{text}");
    let plan = office.plan("2026-11-23T08:00:00+01:00");
    let awaiting = plan
        .iter()
        .find(|i| i["state"] == "awaiting_approval")
        .expect("anne's check awaits approval");
    let id = awaiting["id"].as_i64().expect("id");
    assert!(
        text.contains(&format!(
            "Anne Test (anne): passed-check, fa -- registrar approve {id}"
        )),
        "{text}"
    );

    // Not again at 08:00:30, nor by a later pass (each tick is a new process).
    tick(&office, "2026-11-23T08:00:30+01:00");
    tick(&office, "2026-11-23T11:00:00+01:00");
    assert_eq!(of_rule(&office, "weekly-digest").len(), 1);

    // The approval is given; next Monday nothing is left to report: no digest.
    office.run("2026-11-24T09:00:00+01:00", &["approve", &id.to_string()]);
    tick(&office, "2026-11-24T09:00:00+01:00");
    tick(&office, "2026-11-30T08:00:00+01:00");
    assert_eq!(of_rule(&office, "weekly-digest").len(), 1);
    assert_eq!(outbox_files(&office, "weekly-digest").len(), 1);
}

#[test]
fn t6_a_daily_0230_fires_at_0300_on_the_spring_night_and_once_on_the_autumn_night() {
    let rules = format!("{COURSE_TYPE}{EVENT_RULES}{}", digest_rule("30 2 * * *"));
    let office = Office::new(&format!("{OFFICE}{FILE_MAIL}"));
    office.own_rules_only(&rules);
    let march = "2026-03-20T12:00:00+01:00";
    setup(&office, &[("anne", "anne@example.nl")], march);
    let results = office.csv(
        "results.csv",
        "course_id,person_id,result,score,comment\nfa,anne,passed,8,\n",
    );
    office.import(march, "results", results);
    // The check stays unapproved: every digest has something to list.
    tick(&office, "2026-03-28T12:00:00+01:00");
    // 29 March 2026: 02:00 becomes 03:00; 02:30 does not exist.
    tick(&office, "2026-03-29T01:59:00+01:00");
    assert!(of_rule(&office, "weekly-digest").is_empty());
    let plan = office.run("2026-03-29T01:59:00+01:00", &["plan", "--schedules"]);
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        shown.contains("weekly-digest (office, \"30 2 * * *\"): next 2026-03-29 03:00"),
        "{shown}"
    );
    tick(&office, "2026-03-29T03:00:00+02:00");
    tick(&office, "2026-03-29T03:30:00+02:00");
    let digests = of_rule(&office, "weekly-digest");
    assert_eq!(digests.len(), 1, "{digests:?}");
    // The instant is 03:00 CEST = 01:00 UTC.
    assert!(
        digests[0]["message_id"]
            .as_str()
            .is_some_and(|m| m.contains(".0.1774746000@")),
        "{digests:?}"
    );
    // 25 October 2026: 03:00 becomes 02:00; 02:30 happens twice and fires once.
    tick(&office, "2026-10-24T12:00:00+02:00");
    assert_eq!(of_rule(&office, "weekly-digest").len(), 2);
    tick(&office, "2026-10-25T02:30:00+02:00");
    assert_eq!(of_rule(&office, "weekly-digest").len(), 3);
    tick(&office, "2026-10-25T02:30:00+01:00");
    tick(&office, "2026-10-25T02:59:00+01:00");
    let digests = of_rule(&office, "weekly-digest");
    assert_eq!(digests.len(), 3, "{digests:?}");
    let ids: HashSet<&str> = digests
        .iter()
        .filter_map(|d| d["message_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3, "one Message-ID per instant");
}

const REMINDER: &str = "---
kind: action
id: reminder
name: Reminder
data_group: course_participant
event: schedule
schedule: \"0 9 * * MON\"
process: send_email
email:
  template: not-completed-reminder
  subject: \"Herinnering {{course.name}}\"
window: { anchor: course_end, from: 0 days, to: 14 days }
conditions:
  completed: false
";

#[test]
fn t6_a_weekly_reminder_reaches_those_not_completed_stops_on_completion_and_after_the_window() {
    let office = office(
        &format!("{COURSE_TYPE}{REMINDER}"),
        "",
        &[
            ("anne", "anne@example.nl"),
            ("jan", "jan@example.nl"),
            ("lotte", "lotte@example.nl"),
        ],
    );
    let marks = office.csv(
        "attendance.csv",
        "course_id,part_id,person_id,status,minutes\nfa,p1,anne,attended,\nfa,p2,anne,attended,\nfa,p1,jan,attended,\n",
    );
    office.import(IMPORTED, "attendance", marks);
    tick(&office, IMPORTED);
    let plan = office.run("2026-11-20T12:00:00+01:00", &["plan", "--schedules"]);
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(
        shown.contains("next 2026-11-23 09:00") && shown.contains("an instant now would reach 2"),
        "{shown}"
    );
    // Monday 23 November 09:00: jan (1 of 2) and lotte (0 of 2); anne completed.
    tick(&office, "2026-11-23T09:00:00+01:00");
    let sent = of_rule(&office, "reminder");
    let to: HashSet<&str> = sent.iter().filter_map(|d| d["person"].as_str()).collect();
    assert_eq!(to, HashSet::from(["jan", "lotte"]), "{sent:?}");
    let text = text_of(&outbox_files(&office, "reminder")[0]);
    assert!(
        text.contains("SUBJECT: Herinnering EHBO november"),
        "{text}"
    );
    assert!(text.contains("nog niet afgerond"), "{text}");
    tick(&office, "2026-11-23T09:05:00+01:00");
    assert_eq!(of_rule(&office, "reminder").len(), 2);

    // Jan makes up part 2 and completes: the next Monday only lotte.
    let more = office.csv(
        "more.csv",
        "course_id,part_id,person_id,status,minutes\nfa,p2,jan,attended,\n",
    );
    office.import("2026-11-25T10:00:00+01:00", "attendance", more);
    tick(&office, "2026-11-30T09:00:00+01:00");
    let sent = of_rule(&office, "reminder");
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(
        sent.iter().filter(|d| d["person"] == "lotte").count(),
        2,
        "{sent:?}"
    );
    // 7 December is past the window (course end + 14 days): nobody.
    tick(&office, "2026-12-07T09:00:00+01:00");
    assert_eq!(of_rule(&office, "reminder").len(), 3);
    assert_eq!(outbox_files(&office, "reminder").len(), 3);
}

#[test]
fn t6_down_over_two_mondays_sends_one_digest_on_restart() {
    let rules = format!("{COURSE_TYPE}{EVENT_RULES}{}", digest_rule("0 8 * * MON"));
    let office = office(&rules, "", &[("anne", "anne@example.nl")]);
    let results = office.csv(
        "results.csv",
        "course_id,person_id,result,score,comment\nfa,anne,passed,8,\n",
    );
    office.import(IMPORTED, "results", results);
    tick(&office, "2026-11-22T12:00:00+01:00");
    // Nothing ran on 23 and 30 November and 7 December.
    let out = office
        .command(Some("2026-12-10T10:00:00+01:00"), &["tick"])
        .env("REGISTRAR_LOG", "info")
        .output()
        .expect("tick");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let digests = of_rule(&office, "weekly-digest");
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert!(
        log.contains("T6 catch-up") && log.contains("2 earlier instant(s)"),
        "{log}"
    );
    tick(&office, "2026-12-10T10:05:00+01:00");
    assert_eq!(of_rule(&office, "weekly-digest").len(), 1);
}

#[test]
fn t5_check_reports_a_bad_schedule_and_a_participant_schedule_without_window() {
    let rules = format!(
        "{COURSE_TYPE}{}{}",
        digest_rule("0 8 * * MOON"),
        REMINDER.replace(
            "window: { anchor: course_end, from: 0 days, to: 14 days }\n",
            ""
        )
    );
    let office = Office::new(&format!("{OFFICE}{FILE_MAIL}"));
    office.own_rules_only(&rules);
    let out = office.command(None, &["check"]).output().expect("check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "rules.yaml:11:11: day-of-week: \"MOON\" is not a number or a day name (SUN-SAT)"
        ),
        "{err}"
    );
    assert!(
        err.contains("a course_participant schedule needs a window that bounds it"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn t6_two_serve_processes_on_postgres_send_each_digest_once() {
    // Every five seconds (six fields: seconds first), so that instants come while both run.
    let rules = format!("{COURSE_TYPE}{EVENT_RULES}{}", digest_rule("*/5 * * * * *"));
    let Some(office) = Office::postgres(&format!("{OFFICE}{FILE_MAIL}{}", http_config())).await
    else {
        return;
    };
    office.own_rules_only(&rules);
    setup(&office, &[("anne", "anne@example.nl")], IMPORTED);
    let results = office.csv(
        "results.csv",
        "course_id,person_id,result,score,comment\nfa,anne,passed,8,\n",
    );
    office.import(IMPORTED, "results", results);
    let run = |args: &[&str]| {
        let out = office.command(None, args).output().expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["tick"]);
    let started = std::time::Instant::now();
    let (a, b) = tokio::task::block_in_place(|| (Running::start(&office), Running::start(&office)));
    tokio::task::block_in_place(|| {
        wait_for(Duration::from_secs(30), || {
            started.elapsed() > Duration::from_secs(16)
                && of_rule(&office, "weekly-digest")
                    .iter()
                    .all(|d| d["state"] == "sent")
        })
    });
    tokio::task::block_in_place(|| {
        a.stop();
        b.stop();
    });
    let digests = of_rule(&office, "weekly-digest");
    assert!(
        digests.len() >= 2,
        "instants came and were sent: {digests:?}"
    );
    let ids: HashSet<&str> = digests
        .iter()
        .filter_map(|d| d["message_id"].as_str())
        .collect();
    assert_eq!(ids.len(), digests.len(), "no instant twice: {digests:?}");
    assert_eq!(outbox_files(&office, "weekly-digest").len(), digests.len());
    office.cleanup().await;
}

/// The example office's rules, with `extra` rules beside them.
fn example_with(extra: &str) -> Office {
    let office = Office::new(&format!("{OFFICE}{FILE_MAIL}"));
    let rules = office.dir.path().join("rules");
    common::copy_dir(&common::repo().join("rules"), &rules);
    std::fs::write(rules.join("extra.yaml"), extra).expect("rules");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    office
}

const LEARNER_AND_EXPIRY: &str = "kind: action
id: renew-weekly
name: Renew
data_group: certification_learner
event: schedule
schedule: \"0 9 * * MON\"
process: send_email
email:
  template: certification-window-open
  subject: \"Verleng {{certification.name}} voor {{certification.valid_until}}\"
window: { anchor: valid_until, from: -30 days, to: 0 days }
conditions: { certification_status: [recertifying] }
---
kind: action
id: expiring-weekly
name: Expiring
data_group: course_participant
event: schedule
schedule: \"0 9 * * MON\"
process: send_email
email:
  template: certificate-expiring
  subject: \"Uw certificaat verloopt op {{certificate.valid_until}}\"
window: { anchor: certificate_expiry, from: -60 days, to: 0 days }
";

#[test]
fn t6_learner_and_certificate_schedules_keep_to_their_windows() {
    let office = example_with(LEARNER_AND_EXPIRY);
    office.example("2026-03-24T09:00:00+01:00");
    for action in ["assign", "approve"] {
        office.run(
            "2026-03-25T11:00:00+01:00",
            &[
                "certification",
                action,
                "--certification",
                "first-aid-responder",
                "--person",
                "anne",
                "--reason",
                "test",
            ],
        );
    }
    tick(&office, "2026-03-25T12:00:00+01:00");
    // Anne is certified until 2028-03-25 11:00 (recertifying from 26 December 2027); her
    // first-aid certificate of 23 March 2026 is valid until 23 March 2028.
    tick(&office, "2028-01-17T09:00:00+01:00");
    assert!(of_rule(&office, "renew-weekly").is_empty());
    assert!(of_rule(&office, "expiring-weekly").is_empty());
    tick(&office, "2028-01-24T09:00:00+01:00");
    let expiring = of_rule(&office, "expiring-weekly");
    let holders: HashSet<&str> = expiring
        .iter()
        .filter_map(|d| d["person"].as_str())
        .collect();
    assert!(
        holders.contains("anne") && !holders.contains("sanne"),
        "{expiring:?}"
    );
    assert!(
        of_rule(&office, "renew-weekly").is_empty(),
        "not in the window yet"
    );
    tick(&office, "2028-02-28T09:00:00+01:00");
    let renew = of_rule(&office, "renew-weekly");
    assert_eq!(renew.len(), 1, "{renew:?}");
    assert_eq!(renew[0]["course"], "first-aid-responder");
    assert_eq!(renew[0]["person"], "anne");
    tick(&office, "2028-03-06T09:00:00+01:00");
    assert_eq!(of_rule(&office, "renew-weekly").len(), 2);
    let per_holder = of_rule(&office, "expiring-weekly").len();
    // After valid_until (25 March) the learner is out of the window, and the certificates
    // have expired: nobody more.
    tick(&office, "2028-03-27T09:00:00+02:00");
    assert_eq!(of_rule(&office, "renew-weekly").len(), 2);
    assert_eq!(of_rule(&office, "expiring-weekly").len(), per_holder);
}
