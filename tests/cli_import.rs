//! The real binary on real files: importing the example office, exporting it, and every
//! kind of bad input (each reported with line, column and why; nothing changed).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOW: &str = "2026-11-23T12:00:00+01:00";

struct Office {
    dir: tempfile::TempDir,
}

impl Office {
    /// A config with its own SQLite database and the repository's rules.
    fn new() -> Office {
        let dir = tempfile::tempdir().expect("temp dir");
        common::office_config(dir.path(), "");
        Office { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_registrar"))
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .args(["--now", NOW])
            .args(args)
            .output()
            .expect("run registrar")
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write csv");
        p
    }

    fn import(&self, kind: &str, path: &Path) -> Output {
        self.run(&["import", kind, &path.to_string_lossy()])
    }

    fn import_example(&self) {
        let office = common::repo().join("examples/office");
        for kind in common::EXAMPLE_KINDS {
            let out = self.import(kind, &office.join(format!("{kind}.csv")));
            assert!(
                out.status.success(),
                "{kind}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = self.import("attendance", &office.join("attendance-corrections.csv"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `export attendance` as rows keyed by person id.
    fn export(&self, course: &str) -> HashMap<String, HashMap<String, String>> {
        let out = self.run(&["export", "attendance", "--course", course]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut rdr = csv::Reader::from_reader(out.stdout.as_slice());
        let header = rdr.headers().expect("header").clone();
        rdr.records()
            .map(|r| {
                let r = r.expect("row");
                let row: HashMap<String, String> = header
                    .iter()
                    .zip(r.iter())
                    .map(|(h, v)| (h.to_string(), v.to_string()))
                    .collect();
                (row["person_id"].clone(), row)
            })
            .collect()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_example_office_exports_what_the_d_rules_say() {
    let office = Office::new();
    office.import_example();
    let rows = office.export("ehbo-2026-03");
    let expect = |who: &str,
                  attended: &str,
                  percent: &str,
                  achieved: &str,
                  passing: &str,
                  complete: bool,
                  result: &str| {
        let r = &rows[who];
        assert_eq!(
            (
                r["attended"].as_str(),
                r["required"].as_str(),
                r["attendance_percent"].as_str(),
                r["attendance_requirement_achieved"].as_str(),
                r["passing_obligation_passed"].as_str(),
                !r["completed_at"].is_empty(),
                r["result"].as_str()
            ),
            (attended, "4", percent, achieved, passing, complete, result),
            "{who}: {r:?}"
        );
    };
    // D1: four required parts at 75 % need three.
    expect("anne", "4", "100", "true", "true", true, "passed");
    expect("jan", "3", "75", "true", "true", true, "passed");
    expect("sanne", "2", "50", "false", "false", false, "not_finished");
    // D1 min_minutes: 60 of the 120 minutes of p3 does not count.
    expect("daan", "2", "50", "false", "true", false, "failed");
    // D2 + D4: every part attended but the exam failed.
    expect("zoe", "4", "100", "true", "false", false, "failed");
    // D3: completion stays after p4 was corrected to not_attended and p3 to 0 minutes.
    expect("lotte", "2", "50", "false", "true", true, "passed");
    // D6: a walk-in with full credit.
    expect("bram", "4", "100", "true", "true", true, "passed");
    assert_eq!(rows["bram"]["walk_in"], "true");
    assert_eq!(rows["anne"]["walk_in"], "false");
    // D9: deregistered never completes.
    expect("fenna", "1", "25", "false", "false", false, "deregistered");
    // Unmarked parts that have ended show as pending.
    assert_eq!(
        (rows["sanne"]["p3"].as_str(), rows["sanne"]["p4"].as_str()),
        ("pending", "pending")
    );
    assert_eq!(rows["daan"]["p2"], "not_attended");
    // D8: completed today, valid for two years.
    assert_eq!(rows["anne"]["expiry_status"], "valid");
    assert_eq!(rows["sanne"]["expiry_status"], "");
    assert_eq!(rows["zoe"]["full_name"], "Zoë van 't Hof");

    let bhv = office.export("bhv-2026-10");
    assert_eq!(bhv["mehmet"]["attendance_requirement_achieved"], "true");
    assert_eq!(
        bhv["siem"]["attendance_requirement_achieved"], "false",
        "100 %: 1 of 2 is not enough"
    );
    assert_eq!(bhv["siem"]["email"], "", "an empty email is kept empty");
}

#[test]
fn importing_the_same_file_twice_changes_nothing_the_second_time() {
    let office = Office::new();
    office.import_example();
    let again = office.import(
        "attendance",
        &common::repo().join("examples/office/attendance.csv"),
    );
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("0 new") && text.contains("unchanged"),
        "{text}"
    );
}

/// Imports `text` as `kind` into the example office and expects exit 1, stderr holding
/// every `needles`, and the course's export unchanged.
fn refused(kind: &str, text: &str, needles: &[&str]) {
    let office = Office::new();
    office.import_example();
    let before = office.export("ehbo-2026-03");
    let path = office.file("bad.csv", text);
    let out = office.import(kind, &path);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in:\n{err}");
    }
    assert!(err.contains("nothing was imported"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        office.export("ehbo-2026-03"),
        before,
        "a file with a bad row changed something"
    );
}

#[test]
fn a_bad_date_is_reported_with_line_and_column() {
    refused(
        "courses",
        "id,name,type,status,start,end\nehbo-2026-03,EHBO,first-aid,completed,2026-03-02,2026-03-23\nx2,X,first-aid,final,2026-02-30,2026-03-01\n",
        &["line 3, column start", "\"2026-02-30\" is not a date"],
    );
}

#[test]
fn an_unknown_course_or_person_is_reported() {
    refused(
        "attendance",
        "course_id,part_id,person_id,status\nehbo-2026-03,p3,sanne,attended\nehbo-2099,p1,anne,attended\nehbo-2026-03,p1,nobody,attended\n",
        &[
            "line 3, column course_id: unknown course \"ehbo-2099\"",
            "line 4, column person_id: unknown person \"nobody\"",
        ],
    );
}

#[test]
fn an_unknown_part_is_reported() {
    refused(
        "attendance",
        "course_id,part_id,person_id,status\nehbo-2026-03,p9,sanne,attended\n",
        &["line 2, column part_id: course \"ehbo-2026-03\" has no part \"p9\""],
    );
}

#[test]
fn an_unknown_status_is_reported_with_the_allowed_ones() {
    refused(
        "attendance",
        "course_id,part_id,person_id,status\nehbo-2026-03,p3,sanne,atended\nehbo-2026-03,p4,sanne,pending\n",
        &[
            "line 2, column status: unknown attendance status \"atended\" (expected booked, attended or not_attended)",
            "line 3, column status: \"pending\" is derived",
        ],
    );
}

#[test]
fn a_missing_column_is_reported() {
    refused(
        "attendance",
        "course_id,part_id,status\nehbo-2026-03,p3,attended\n",
        &["line 1: missing column person_id"],
    );
}

#[test]
fn an_unknown_column_is_reported() {
    refused(
        "people",
        "id,full_name,email,phone\nx,X,x@example.nl,0612345678\n",
        &["line 1: unknown column \"phone\""],
    );
}

#[test]
fn a_duplicate_key_in_the_file_is_reported_with_the_first_line() {
    refused(
        "attendance",
        "course_id,part_id,person_id,status\nehbo-2026-03,p3,sanne,attended\nehbo-2026-03,p4,sanne,attended\nehbo-2026-03,p3,sanne,not_attended\n",
        &["line 4: duplicate of line 2 (same course_id, part_id, person_id)"],
    );
}

#[test]
fn a_bad_boolean_is_reported() {
    refused(
        "part-results",
        "course_id,part_id,person_id,passed\nehbo-2026-03,p4,sanne,maybe\n",
        &["line 2, column passed: \"maybe\" is not a boolean (use true/false, yes/no or 1/0)"],
    );
}

#[test]
fn every_bad_row_is_reported_at_once() {
    refused(
        "parts",
        "course_id,id,name,start,end,attendance_required,passing_required,min_minutes\n\
         ehbo-2026-03,p5,Extra,2026-03-30,2026-03-30,ja,no,\n\
         ehbo-2026-03,p6,Extra,2026-03-30,2026-03-29,yes,no,veel\n\
         ehbo-2026-03,p7,Extra,2026-03-30\n",
        &[
            "line 2, column attendance_required",
            "line 3, column end: is before start",
            "line 3, column min_minutes: \"veel\" is not a whole number",
            "line 4: the row has 4 fields, the header has 8",
            "4 problems",
        ],
    );
}

#[test]
fn an_invalid_email_is_reported() {
    refused(
        "people",
        "id,full_name,email\nkees,Kees Koç,kees@@example\n",
        &["line 2, column email", "not a valid email address"],
    );
}

#[test]
fn d4_a_passed_result_changed_to_failed_is_refused_in_a_file() {
    refused(
        "results",
        "course_id,person_id,result\nehbo-2026-03,sanne,failed\nehbo-2026-03,anne,failed\n",
        &[
            "line 3, column result",
            "registrar participant reset --course ehbo-2026-03 --person anne",
        ],
    );
}

#[test]
fn a_file_that_is_not_utf8_or_empty_is_reported_without_a_panic() {
    let office = Office::new();
    office.import_example();
    let path = office.dir.path().join("latin1.csv");
    std::fs::write(
        &path,
        b"id,full_name,email\nzoe,Zo\xeb van 't Hof,zoe@example.nl\n",
    )
    .expect("write");
    let out = office.import("people", &path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2: this line is not UTF-8: save the file as \"CSV UTF-8\""),
        "{}",
        stderr(&out)
    );
    let empty = office.file("empty.csv", "");
    let out = office.import("people", &empty);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the file is empty"),
        "{}",
        stderr(&out)
    );
    let out = office.import("people", Path::new("/nonexistent/people.csv"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot open /nonexistent/people.csv"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dry_run_reports_what_would_change_and_changes_nothing() {
    let office = Office::new();
    office.import_example();
    let before = office.export("ehbo-2026-03");
    let path = office.file("marks.csv", "course_id,part_id,person_id,status\nehbo-2026-03,p3,sanne,attended\nehbo-2026-03,p4,sanne,attended\n");
    let out = office.run(&["import", "attendance", &path.to_string_lossy(), "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dry run") && text.contains("2 new"), "{text}");
    assert_eq!(office.export("ehbo-2026-03"), before);
}

#[test]
fn d7_the_cli_refuses_removal_after_the_start_and_says_to_mark_not_attended() {
    let office = Office::new();
    office.import_example();
    let out = office.run(&[
        "participant",
        "remove",
        "--course",
        "ehbo-2026-03",
        "--person",
        "sanne",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("mark the participant not_attended instead"),
        "{}",
        stderr(&out)
    );
    let out = office.run(&[
        "participant",
        "remove",
        "--course",
        "ehbo-2027-06",
        "--person",
        "pieter-jan",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn d4_the_cli_reset_starts_cycle_two_and_a_new_pass_completes_again() {
    let office = Office::new();
    office.import_example();
    let out = office.run(&[
        "participant",
        "reset",
        "--course",
        "ehbo-2026-03",
        "--person",
        "eline",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = &office.export("ehbo-2026-03")["eline"];
    assert_eq!(
        (
            e["cycle"].as_str(),
            e["result"].as_str(),
            e["completed_at"].as_str()
        ),
        ("2", "registered", "")
    );
    let path = office.file(
        "r.csv",
        "course_id,person_id,result\nehbo-2026-03,eline,passed\n",
    );
    assert!(office.import("results", &path).status.success());
    let e = &office.export("ehbo-2026-03")["eline"];
    assert_eq!((e["cycle"].as_str(), e["result"].as_str()), ("2", "passed"));
    assert!(
        !e["completed_at"].is_empty(),
        "the new pass completes the new cycle"
    );
}

#[test]
fn bad_usage_exits_2_and_an_unknown_course_exits_1() {
    let office = Office::new();
    assert_eq!(
        office.run(&["import", "grades", "x.csv"]).status.code(),
        Some(2)
    );
    let out = office.run(&["export", "attendance", "--course", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown course \"nope\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_config_names_the_key_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "database: sqlite://x.db\nmail:\n  smtp:\n    port: smtp\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("--config")
        .arg(&cfg)
        .arg("migrate")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("config.yaml:4:11: `mail.smtp.port`"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("x.db").exists(), "no database was created");
}
