//! Benchmark: importing a 1,000,000-row attendance file into SQLite, then 200,000 people
//! (new, the same again, half of them renamed).
//! Run with `cargo bench --bench import` (ROWS=... and PEOPLE=... to change the sizes).
//! Prints the time, the rate and the peak memory (VmHWM) so that "memory stays flat" can
//! be checked too.

use registrar::config::DatabaseUrl;
use registrar::import::{Kind, Options, import_file};
use registrar::rules::{CourseType, RuleSet};
use registrar::store::Store;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const PARTS: usize = 10;
const PER_COURSE: usize = 100;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

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
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let courses = rows.div_ceil(PARTS * PER_COURSE);
    let people = courses * PER_COURSE / 5; // each person is in five courses
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    write(
        &d.join("courses.csv"),
        "id,name,type,status,start,end",
        (0..courses).map(|c| format!("c{c},Course {c},first-aid,final,2026-01-05,2026-03-30")),
    );
    write(&d.join("parts.csv"), "course_id,id,name,start,end,attendance_required,passing_required", (0..courses).flat_map(|c| {
        (0..PARTS).map(move |p| format!("c{c},p{p},Part {p},2026-01-{:02}T09:00:00+01:00,2026-01-{:02}T12:00:00+01:00,true,false", p + 5, p + 5))
    }));
    write(
        &d.join("people.csv"),
        "id,full_name,email",
        (0..people).map(|p| format!("u{p},Person {p},u{p}@example.nl")),
    );
    let member = move |c: usize, i: usize| (c * PER_COURSE + i * 7) % people;
    write(
        &d.join("enrolments.csv"),
        "course_id,person_id",
        (0..courses).flat_map(|c| (0..PER_COURSE).map(move |i| format!("c{c},u{}", member(c, i)))),
    );
    let mut n = 0;
    write(
        &d.join("attendance.csv"),
        "course_id,part_id,person_id,status,minutes",
        (0..courses)
            .flat_map(|c| (0..PER_COURSE).flat_map(move |i| (0..PARTS).map(move |p| (c, i, p))))
            .take_while(|_| {
                n += 1;
                n <= rows
            })
            .map(|(c, i, p)| {
                let status = if (c + i + p) % 5 == 0 {
                    "not_attended"
                } else {
                    "attended"
                };
                format!("c{c},p{p},u{},{status},{}", member(c, i), 150 + p)
            }),
    );
    let size = std::fs::metadata(d.join("attendance.csv"))
        .map(|m| m.len())
        .unwrap_or(0);

    let mut rules = RuleSet::default();
    rules.course_types.insert(
        "first-aid".into(),
        CourseType::new("first-aid", "First aid", 75),
    );
    let store = Store::open(&DatabaseUrl::Sqlite(d.join("bench.db")))
        .await
        .expect("open");
    let opts = Options {
        rules: &rules,
        tz: chrono_tz::Europe::Amsterdam,
        now: chrono::Utc::now(),
        actor: "bench",
        dry_run: false,
        progress: None,
        delimiter: None,
    };
    let setup = Instant::now();
    for kind in [Kind::Courses, Kind::Parts, Kind::People, Kind::Enrolments] {
        let r = import_file(&store, kind, &d.join(format!("{}.csv", kind.name())), &opts)
            .await
            .expect("setup import");
        assert!(
            r.errors.is_empty(),
            "{:?}",
            &r.errors[..r.errors.len().min(5)]
        );
    }
    println!(
        "setup: {courses} courses, {} parts, {people} people, {} enrolments in {:.1} s",
        courses * PARTS,
        courses * PER_COURSE,
        setup.elapsed().as_secs_f64()
    );
    let rss_before = peak_rss_mib();
    let start = Instant::now();
    let report = import_file(&store, Kind::Attendance, &d.join("attendance.csv"), &opts)
        .await
        .expect("import");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        report.errors.is_empty(),
        "{:?}",
        &report.errors[..report.errors.len().min(5)]
    );
    assert!(report.committed);
    println!(
        "import attendance: {} rows ({:.1} MiB) in {secs:.2} s = {:.0} rows/s; {} enrolments completed; \
         peak RSS {:.0} MiB (before the import {:.0} MiB)",
        report.rows,
        size as f64 / 1048576.0,
        report.rows as f64 / secs,
        report.tally.completed,
        peak_rss_mib(),
        rss_before
    );

    // People in bulk: new, then the same file again (nothing changes), then with every
    // other name changed.
    let many: usize = std::env::var("PEOPLE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000);
    for (round, rename) in [("new", false), ("unchanged", false), ("half renamed", true)] {
        write(
            &d.join("many.csv"),
            "id,full_name,email",
            (0..many).map(|p| {
                let name = if rename && p % 2 == 0 {
                    "Persoon"
                } else {
                    "Person"
                };
                format!("m{p},{name} {p},m{p}@example.nl")
            }),
        );
        let start = Instant::now();
        let report = import_file(&store, Kind::People, &d.join("many.csv"), &opts)
            .await
            .expect("import people");
        assert!(report.errors.is_empty() && report.committed);
        println!(
            "import people ({round}): {} rows in {:.2} s = {:.0} rows/s",
            report.rows,
            start.elapsed().as_secs_f64(),
            report.rows as f64 / start.elapsed().as_secs_f64()
        );
    }
    store.close().await;
}
