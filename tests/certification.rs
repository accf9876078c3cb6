//! Certifications through the real binary (SPEC §2, seed 003): a three-year timeline with
//! `--now` through certification, the recertification window, expiry, grace, lapse and
//! recertification; administrator actions and their refusals; the history with who and why.

mod common;

use common::office::{OFFICE, Office};

const CERT: &str = "first-aid-responder";

fn office() -> Office {
    let office = Office::new(&format!(
        "{OFFICE}mail:\n  transport: file\n  outbox: outbox\n"
    ));
    office.example("2026-03-24T09:00:00+01:00");
    office
}

fn cert(office: &Office, now: &str, action: &str, person: &str) -> std::process::Output {
    office
        .command(
            Some(now),
            &[
                "certification",
                action,
                "--certification",
                CERT,
                "--person",
                person,
                "--reason",
                "test",
            ],
        )
        .output()
        .expect("run")
}

fn status(office: &Office, person: &str) -> String {
    let out = office.run("2026-03-24T09:00:00+01:00", &["certification", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(person))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_else(|| "(none)".into())
}

fn tick(office: &Office, now: &str) {
    office.run(now, &["tick"]);
}

#[test]
fn certification_a_three_year_timeline_certifies_expires_lapses_and_renews() {
    let office = office();
    // Anne completed the March 2026 first-aid course; the programme needs approval.
    let out = cert(&office, "2026-03-25T10:00:00+01:00", "assign", "anne");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&office, "anne"), "pending_approval");
    cert(&office, "2026-03-25T11:00:00+01:00", "approve", "anne");
    assert_eq!(status(&office, "anne"), "certified");
    // Valid two years, until 2028-03-25 11:00; the window opens 90 days before.
    tick(&office, "2027-12-25T12:00:00+01:00");
    assert_eq!(status(&office, "anne"), "certified");
    tick(&office, "2027-12-26T12:00:00+01:00");
    assert_eq!(status(&office, "anne"), "recertifying");
    tick(&office, "2028-03-25T10:59:00+02:00");
    assert_eq!(status(&office, "anne"), "recertifying");
    // Past valid_until: expired, renewable until the grace period ends 90 days later.
    tick(&office, "2028-04-01T12:00:00+02:00");
    assert_eq!(status(&office, "anne"), "expired");
    tick(&office, "2028-06-22T12:00:00+02:00");
    assert_eq!(status(&office, "anne"), "expired");
    tick(&office, "2028-06-24T12:00:00+02:00");
    assert_eq!(status(&office, "anne"), "lapsed");
    // One email at each step, exactly once (the ticks between sent nothing more).
    let outbox = office.dir.path().join("outbox");
    for rule in [
        "certification-window-open",
        "certification-expired",
        "certification-lapsed",
    ] {
        let file = outbox.join(format!("{rule}__{CERT}__anne__2.eml"));
        let eml = std::fs::read_to_string(&file).unwrap_or_else(|_| panic!("{rule} for Anne"));
        assert!(
            eml.contains("To: \"Anne de Vries\" <anne.devries@example.nl>"),
            "{eml}"
        );
    }
    let expired =
        std::fs::read_to_string(outbox.join(format!("certification-expired__{CERT}__anne__2.eml")))
            .expect("expired email");
    assert!(
        expired.contains("23 juni 2028"),
        "the grace period's end is named: {expired}"
    );
    let deliveries = office.run(
        "2028-06-24T12:00:00+02:00",
        &["deliveries", "--format", "json"],
    );
    let deliveries: serde_json::Value = serde_json::from_slice(&deliveries.stdout).expect("json");
    let for_anne = deliveries
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["course"] == CERT && d["person"] == "anne")
        .count();
    assert_eq!(for_anne, 3, "three emails, once each");

    // Jan is certified too, and nothing runs for years: the next pass brings him through
    // every stage (catch-up after downtime), and each stage's email goes out once.
    cert(&office, "2026-03-25T10:00:00+01:00", "assign", "jan");
    cert(&office, "2026-03-25T11:00:00+01:00", "approve", "jan");
    tick(&office, "2029-01-01T12:00:00+01:00");
    assert_eq!(status(&office, "jan"), "lapsed");
    for rule in [
        "certification-window-open",
        "certification-expired",
        "certification-lapsed",
    ] {
        assert!(
            outbox.join(format!("{rule}__{CERT}__jan__2.eml")).is_file(),
            "{rule} for Jan"
        );
    }

    // Force a new cycle for Anne and let her complete a 2028 course: after approval she is
    // certified again with a new validity.
    let out = cert(
        &office,
        "2028-07-01T10:00:00+02:00",
        "force_recertification",
        "anne",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(&office, "anne"), "recertifying");
    let courses = office.csv(
        "c2028.csv",
        "id,name,type,status,start,end\nehbo-2028-09,EHBO herhaling,first-aid,completed,2028-09-04,2028-09-04\n",
    );
    let parts = office.csv(
        "p2028.csv",
        "course_id,id,name,start,end,attendance_required,passing_required\n\
         ehbo-2028-09,h1,Herhaling,2028-09-04T09:00:00+02:00,2028-09-04T12:00:00+02:00,true,false\n",
    );
    let enrol = office.csv("e2028.csv", "course_id,person_id\nehbo-2028-09,anne\n");
    let marks = office.csv(
        "a2028.csv",
        "course_id,part_id,person_id,status\nehbo-2028-09,h1,anne,attended\n",
    );
    let at = "2028-09-04T13:00:00+02:00";
    office.import(at, "courses", courses);
    office.import(at, "parts", parts);
    office.import(at, "enrolments", enrol);
    office.import(at, "attendance", marks);
    tick(&office, "2028-09-04T14:00:00+02:00");
    assert_eq!(status(&office, "anne"), "pending_approval");
    cert(&office, "2028-09-05T09:00:00+02:00", "approve", "anne");
    assert_eq!(status(&office, "anne"), "certified");
    let list = office.run(at, &["certification", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("valid until 5 September 2030"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );

    // The history: every transition, with who and why.
    let history = office.run(at, &["certification", "history", "--person", "anne"]);
    let history = String::from_utf8_lossy(&history.stdout);
    for expected in [
        "assigned",
        "approve",
        "certified -> recertifying",
        "recertifying -> expired",
        "expired -> lapsed",
        "force_recertification",
        "(test)",
    ] {
        assert!(
            history.contains(expected),
            "{expected:?} missing in:\n{history}"
        );
    }
}

#[test]
fn certification_an_action_in_the_wrong_status_is_refused_naming_both() {
    let office = office();
    cert(&office, "2026-03-25T10:00:00+01:00", "assign", "anne");
    let out = cert(
        &office,
        "2026-03-25T10:00:00+01:00",
        "permanent_revoke",
        "anne",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permanent_revoke is not allowed while the learner is pending_approval")
            && err.contains("allowed in certified"),
        "{err}"
    );
    let unknown = cert(&office, "2026-03-25T10:00:00+01:00", "promote", "anne");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown certification action"));
    let twice = cert(&office, "2026-03-25T10:00:00+01:00", "assign", "anne");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already assigned"));
    // Permanent revoke from certified; restore access starts a new cycle.
    cert(&office, "2026-03-25T11:00:00+01:00", "approve", "anne");
    cert(
        &office,
        "2026-03-26T11:00:00+01:00",
        "permanent_revoke",
        "anne",
    );
    assert_eq!(status(&office, "anne"), "disallowed");
    let again = cert(&office, "2026-03-26T11:00:00+01:00", "approve", "anne");
    assert_eq!(again.status.code(), Some(1));
    cert(
        &office,
        "2026-03-27T11:00:00+01:00",
        "restore_access",
        "anne",
    );
    assert_eq!(status(&office, "anne"), "recertifying");
    cert(&office, "2026-03-27T12:00:00+01:00", "remove", "anne");
    assert_eq!(status(&office, "anne"), "(none)");
}
