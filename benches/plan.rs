//! Benchmark: the rule engine over 1,000,000 enrolments with 5 rules on SQLite.
//! Run with `cargo bench --bench plan` (ENROLMENTS=... to change the size). Prints the time
//! to turn the enrolment events into action instances (ingest), to evaluate every instance
//! (plan), and to find what is due when nothing is due (the indexed query the timer runs).

use registrar::config::DatabaseUrl;
use registrar::engine;
use registrar::import::{Kind, Options, import_file};
use registrar::rules::{CourseType, RuleSet};
use registrar::store::{Store, on};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const PER_COURSE: usize = 100;

const RULES: &str = r#"
kind: action
id: certificate
name: "Certificate {{course.name}}"
data_group: course_participant
event: participant_added
process: send_email
email: { template: certificate, subject: "Certificate" }
timing: { anchor: course_end, offset: 0 days }
conditions: { course_status: [final, completed], course_type: [first-aid], attendance_requirement_achieved: true, passing_obligation_passed: true }
---
kind: action
id: proof
name: "Proof {{course.name}}"
data_group: course_participant
event: participant_added
process: send_email
email: { template: proof, subject: "Proof" }
timing: { anchor: course_end, offset: 0 days }
conditions: { course_status: [final, completed], course_type: [fire-safety], attendance_requirement_achieved: true }
---
kind: action
id: welcome
name: "Welcome"
data_group: course_participant
event: participant_added
process: send_email
email: { template: welcome, subject: "Welcome" }
timing: { anchor: course_start, offset: -7 days, at: "09:00" }
conditions: { course_status: [final] }
---
kind: action
id: reminder
name: "Reminder"
data_group: course_participant
event: participant_added
process: send_email
email: { template: reminder, subject: "Tomorrow" }
timing: { anchor: course_start, offset: -1 day, at: "16:00" }
conditions: { course_status: [final] }
---
kind: action
id: survey
name: "Survey"
data_group: course_participant
event: participant_added
process: send_email
email: { template: survey, subject: "How was it?" }
timing: { anchor: course_end, offset: 1 day, at: "10:00" }
conditions: { course_status: [final, completed], attendance_requirement_achieved: true }
"#;

fn write(path: &Path, header: &str, rows: impl Iterator<Item = String>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    writeln!(f, "{header}").expect("write");
    for r in rows {
        writeln!(f, "{r}").expect("write");
    }
    f.flush().expect("flush");
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total: usize = std::env::var("ENROLMENTS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let courses = total.div_ceil(PER_COURSE);
    let people = courses * PER_COURSE / 5;
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    write(
        &d.join("courses.csv"),
        "id,name,type,status,start,end",
        (0..courses).map(|c| {
            let t = if c % 2 == 0 {
                "first-aid"
            } else {
                "fire-safety"
            };
            format!(
                "c{c},Course {c},{t},final,2027-0{}-05,2027-0{}-20",
                1 + c % 9,
                1 + c % 9
            )
        }),
    );
    write(
        &d.join("parts.csv"),
        "course_id,id,name,start,end,attendance_required,passing_required",
        (0..courses).flat_map(|c| {
            (0..2).map(move |p| {
                format!(
                    "c{c},p{p},Part {p},2027-0{m}-{:02},2027-0{m}-{:02},true,{}",
                    5 + p,
                    5 + p,
                    p == 1,
                    m = 1 + c % 9
                )
            })
        }),
    );
    write(
        &d.join("people.csv"),
        "id,full_name,email",
        (0..people).map(|p| format!("u{p},Person {p},u{p}@example.nl")),
    );
    write(
        &d.join("enrolments.csv"),
        "course_id,person_id",
        (0..courses).flat_map(|c| {
            (0..PER_COURSE).map(move |i| format!("c{c},u{}", (c * PER_COURSE + i * 7) % people))
        }),
    );

    let mut rules = RuleSet::default();
    rules.course_types.insert(
        "first-aid".into(),
        CourseType::new("first-aid", "First aid", 75),
    );
    rules.course_types.insert(
        "fire-safety".into(),
        CourseType::new("fire-safety", "Fire safety", 100),
    );
    let mut errors = Vec::new();
    registrar::rules::load_text(RULES, Path::new("bench.yaml"), &mut rules, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let tz = chrono_tz::Europe::Amsterdam;
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00+01:00")
        .expect("now")
        .to_utc();
    let store = Store::open(&DatabaseUrl::Sqlite(d.join("bench.db")))
        .await
        .expect("open");
    let opts = Options {
        rules: &rules,
        tz,
        now,
        actor: "bench",
        dry_run: false,
        progress: None,
        delimiter: None,
    };
    let setup = Instant::now();
    for kind in [Kind::Courses, Kind::Parts, Kind::People, Kind::Enrolments] {
        let r = import_file(&store, kind, &d.join(format!("{}.csv", kind.name())), &opts)
            .await
            .expect("import");
        assert!(
            r.errors.is_empty(),
            "{:?}",
            &r.errors[..r.errors.len().min(3)]
        );
    }
    println!(
        "setup: {courses} courses, {people} people, {} enrolments imported in {:.1} s",
        courses * PER_COURSE,
        setup.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let events = engine::ingest(&store, &rules, tz, now)
        .await
        .expect("ingest");
    let ingest = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut waiting = 0u64;
    let count = engine::plan_each(&store, &rules, tz, now, None, |item| {
        waiting += u64::from(item.state == engine::PlanState::Waiting);
    })
    .await
    .expect("plan");
    let plan_secs = t.elapsed().as_secs_f64();
    println!(
        "ingest: {events} events -> {count} action instances in {ingest:.2} s; \
         plan: {count} instances evaluated ({waiting} waiting, with reasons) in {plan_secs:.2} s"
    );

    // The timer's question when nothing is due yet (all due times lie in 2027).
    let mut tx = store.begin().await.expect("tx");
    let t = Instant::now();
    let mut due = 0i64;
    for _ in 0..100 {
        due = on!(&mut tx, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at <= $1",
        ).bind(now).fetch_one(&mut **c).await)
        .expect("due");
        // Instances held in packs (made together by the import) are looked for the same way.
        due += on!(&mut tx, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM action_packs WHERE due_at <= $1",
        ).bind(now).fetch_one(&mut **c).await)
        .expect("due");
    }
    let per = t.elapsed().as_secs_f64() * 1000.0 / 100.0;
    let plan_of: Vec<(i64, i64, i64, String)> = on!(&mut tx, c => sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at <= $1",
    ).bind(now).fetch_all(&mut **c).await)
    .expect("explain");
    tx.rollback().await.expect("rollback");
    println!(
        "nothing due: {due} instances due, found in {per:.3} ms ({})",
        plan_of
            .iter()
            .map(|p| p.3.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    store.close().await;
}
