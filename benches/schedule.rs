//! Benchmark (issue 16): one instant of a participant schedule over 1,000,000 enrolments on
//! SQLite. Run with `cargo bench --bench schedule` (ENROLMENTS=... to change the size).
//!
//! Every course ended in the last four weeks, so every enrolment lies in the reminder's
//! window and is judged (`completed: false`, nobody has completed): the time to evaluate
//! the instant set-wise is what `plan --schedules` spends on "whom would it reach now". A
//! second rule, limited to a course type with 1 % of the courses, then fires a real
//! instant: evaluate, render and queue its messages.

use registrar::config::{DatabaseUrl, Office};
use registrar::engine::{fire, schedule};
use registrar::import::{Kind, Options, import_file};
use registrar::render::Templates;
use registrar::rules::{CourseType, RuleSet};
use registrar::store::Store;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const PER_COURSE: usize = 100;

const RULES: &str = r#"
kind: action
id: everyone
name: "Reminder"
data_group: course_participant
event: schedule
schedule: "0 9 * * MON"
process: send_email
email: { template: reminder, subject: "Not completed yet: {{course.name}}" }
window: { anchor: course_end, from: 0 days, to: 28 days }
conditions: { completed: false }
---
kind: action
id: rare-type
name: "Reminder"
data_group: course_participant
event: schedule
schedule: "0 9 * * MON"
process: send_email
email: { template: reminder, subject: "Not completed yet: {{course.name}}" }
window: { anchor: course_end, from: 0 days, to: 28 days }
conditions: { completed: false, course_type: [rare] }
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
    // Courses ended between 2 and 20 November 2026; one in a hundred of type `rare`.
    write(
        &d.join("courses.csv"),
        "id,name,type,status,start,end",
        (0..courses).map(|c| {
            let t = if c % 100 == 0 { "rare" } else { "first-aid" };
            format!(
                "c{c},Course {c},{t},final,2026-10-{:02},2026-11-{:02}",
                1 + c % 19,
                2 + c % 19
            )
        }),
    );
    write(
        &d.join("parts.csv"),
        "course_id,id,name,start,end,attendance_required,passing_required",
        (0..courses).flat_map(|c| {
            (0..2).map(move |p| {
                format!(
                    "c{c},p{p},Part {p},2026-10-{:02},2026-10-{:02},true,false",
                    1 + c % 19 + p,
                    1 + c % 19 + p,
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
    let templates_dir = d.join("templates");
    std::fs::create_dir_all(&templates_dir).expect("templates");
    std::fs::write(
        templates_dir.join("reminder.html.hbs"),
        "<p>Dear {{participant.first_name}}, you attended {{attendance.attended}} of {{attendance.required}} parts of {{course.name}}.</p>",
    )
    .expect("template");
    let templates = Templates::load(&templates_dir).unwrap_or_else(|p| panic!("{p:?}"));

    let mut rules = RuleSet::default();
    for (id, name) in [("first-aid", "First aid"), ("rare", "Rare")] {
        rules
            .course_types
            .insert(id.into(), CourseType::new(id, name, 75));
    }
    let mut errors = Vec::new();
    registrar::rules::load_text(RULES, Path::new("bench.yaml"), &mut rules, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let tz = chrono_tz::Europe::Amsterdam;
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00+01:00")
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
        assert!(r.errors.is_empty(), "{:?}", r.errors.first());
    }
    println!(
        "setup: {courses} courses, {people} people, {} enrolments imported in {:.1} s",
        courses * PER_COURSE,
        setup.elapsed().as_secs_f64()
    );
    let office = Office {
        name: "Opleidingscentrum".into(),
        from: "Opleidingscentrum <opleidingen@example.nl>".into(),
        verify_base_url: "https://opleidingen.example.nl".into(),
        locale: registrar::lang::Lang::parse("nl").expect("nl"),
        signer: None,
        linkedin_organization_id: None,
        reply_to: None,
    };
    let env = fire::Env {
        rules: &rules,
        templates: &templates,
        office: &office,
        tz,
        locale: None,
    };

    let t = Instant::now();
    let lines = schedule::plan(&store, &env, now, Some("everyone"))
        .await
        .expect("plan");
    let evaluate = t.elapsed().as_secs_f64();
    let reached = lines.first().and_then(|l| l.reached_now).unwrap_or(0);
    println!(
        "evaluate one instant over {} enrolments (every one in the window): {reached} reached in {evaluate:.2} s",
        courses * PER_COURSE
    );

    // Fire a real instant of the rare type's rule only.
    let mut only_rare = rules.clone();
    only_rare.actions.retain(|r| r.id.value == "rare-type");
    let env = fire::Env {
        rules: &only_rare,
        ..env
    };
    let t = Instant::now();
    let fired = schedule::run(&store, &env, now).await.expect("run");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "fire one instant of the rare type's rule: {} messages evaluated, rendered and queued in {secs:.2} s ({:.0} messages/s)",
        fired.queued,
        fired.queued as f64 / secs
    );
    let again = schedule::run(&store, &env, now).await.expect("run");
    assert_eq!(again.queued, 0, "an instant fires once");
}
