//! Instances made together (issue 18): an import's participants get their rules' instances
//! as one pack per rule and course, which every reader sees as the instances they are and
//! which become rows of their own when first needed. Through the real binary, against the
//! SMTP server in the test process, on SQLite and PostgreSQL.

mod common;

use common::office::Office;
use common::smtp::SmtpServer;
use common::welcome::smtp_config;
use registrar::store::on;

const IMPORTED: &str = "2026-12-01T12:00:00+01:00";
const COURSE_MOVED: &str = "2026-12-02T12:00:00+01:00";
/// The day before the moved course starts, after 09:00.
const DUE: &str = "2027-01-17T09:05:00+01:00";

const RULES: &str = "kind: course_type
id: first-aid
name: First aid
attendance_percent: 75
---
kind: action
id: reminder
name: Reminder
data_group: course_participant
event: participant_added
process: send_email
email:
  template: welcome
  subject: \"Tomorrow: {{course.name}}\"
  to: participant
timing:
  anchor: course_start
  offset: -1 day
";

fn courses(first_start: &str, second_status: &str) -> String {
    format!(
        "id,name,type,status,start,end,location\n\
         fa-1,First aid January,first-aid,final,{first_start}T09:00:00+01:00,{first_start}T17:00:00+01:00,Utrecht\n\
         fa-2,First aid February,first-aid,{second_status},2027-02-08T09:00:00+01:00,2027-02-08T17:00:00+01:00,Utrecht\n"
    )
}

/// (instance rows, packs) of a course.
async fn held(office: &Office, course: &str) -> (i64, i64) {
    let store = office.store().await;
    let course = course.to_string();
    let counts = common::read(&store, async |tx| {
        let rows: i64 = on!(tx, c => sqlx::query_scalar("SELECT COUNT(*) FROM actions WHERE course_id = $1")
            .bind(&course).fetch_one(&mut **c).await)?;
        let packs: i64 = on!(tx, c => sqlx::query_scalar("SELECT COUNT(*) FROM action_packs WHERE course_id = $1")
            .bind(&course).fetch_one(&mut **c).await)?;
        Ok((rows, packs))
    })
    .await;
    store.close().await;
    counts
}

fn of<'a>(plan: &'a [serde_json::Value], course: &str) -> Vec<&'a serde_json::Value> {
    plan.iter().filter(|i| i["course"] == course).collect()
}

async fn an_imported_course_waits_in_one_pack_and_each_participant_gets_one_message(
    office: &Office,
    server: &SmtpServer,
) {
    office.own_rules(
        RULES,
        &[(
            "welcome.html.hbs",
            "<p>Dear {{participant.full_name}}, {{course.name}} starts tomorrow.</p>",
        )],
    );
    office.csv("courses.csv", &courses("2027-01-11", "final"));
    let mut people = String::from("id,full_name,email\n");
    let mut enrolments = String::from("course_id,person_id\n");
    for i in 0..24 {
        people.push_str(&format!("p{i},Person {i},p{i}@example.org\n"));
        enrolments.push_str(&format!("fa-{},p{i}\n", 1 + i / 12));
    }
    office.csv("people.csv", &people);
    office.csv("enrolments.csv", &enrolments);
    office.import_own(Some(IMPORTED), &["courses", "people", "enrolments"]);
    let out = office.run(IMPORTED, &["tick"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 sent"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // T2: one instance per participant, held as one pack per course until needed.
    assert_eq!(held(office, "fa-1").await, (0, 1));
    assert_eq!(held(office, "fa-2").await, (0, 1));
    let plan = office.plan(IMPORTED);
    let first = of(&plan, "fa-1");
    assert_eq!(first.len(), 12, "{plan:?}");
    let people: std::collections::HashSet<&str> =
        first.iter().filter_map(|i| i["person"].as_str()).collect();
    assert_eq!(people.len(), 12, "each participant once");
    for i in &first {
        assert_eq!(i["state"], "waiting", "{i}");
        assert_eq!(i["due"], "2027-01-10T09:00:00+01:00", "{i}");
        assert!(i["id"].is_null(), "not numbered while packed: {i}");
    }
    // The course moves a week (T1 from its new start); the second is cancelled (D9).
    office.csv("courses.csv", &courses("2027-01-18", "cancelled"));
    office.import_own(Some(COURSE_MOVED), &["courses"]);
    office.run(COURSE_MOVED, &["tick"]);
    assert_eq!(
        held(office, "fa-1").await,
        (0, 1),
        "the pack's due time moved"
    );
    let plan = office.plan(COURSE_MOVED);
    for i in of(&plan, "fa-1") {
        assert_eq!(i["due"], "2027-01-17T09:00:00+01:00", "{i}");
    }
    let second = of(&plan, "fa-2");
    assert_eq!(second.len(), 12, "{plan:?}");
    for i in &second {
        assert_eq!(i["state"], "cancelled", "{i}");
        assert_eq!(i["reasons"][0], "the course was cancelled (D9)", "{i}");
        assert!(i["id"].as_i64().is_some(), "cancelled ones are rows: {i}");
    }
    assert_eq!(held(office, "fa-2").await, (12, 0));
    // Nothing before the due time; at it, each participant once (T3).
    let out = office.run("2027-01-17T08:55:00+01:00", &["tick"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 sent"));
    assert_eq!(server.count(), 0);
    let out = office.run(DUE, &["tick"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("12 sent"), "{said}");
    assert_eq!(held(office, "fa-1").await, (12, 0));
    let received = server.received();
    let to: std::collections::HashSet<Vec<String>> =
        received.iter().map(|m| m.to.clone()).collect();
    assert_eq!((received.len(), to.len()), (12, 12), "{said}");
    let out = office.run(DUE, &["tick"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 sent"));
    assert_eq!(server.count(), 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn t2_t3_an_imported_course_waits_in_one_pack_and_each_participant_gets_one_message_on_sqlite()
 {
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port));
    an_imported_course_waits_in_one_pack_and_each_participant_gets_one_message(&office, &server)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn t2_t3_an_imported_course_waits_in_one_pack_and_each_participant_gets_one_message_on_postgres()
 {
    let server = SmtpServer::start();
    let Some(office) = Office::postgres(&smtp_config(server.port)).await else {
        return;
    };
    an_imported_course_waits_in_one_pack_and_each_participant_gets_one_message(&office, &server)
        .await;
    office.cleanup().await;
}
