//! Certificates (D5, D8) through the real binary: issued once per cycle, numbered, revoked
//! by a reset, kept after an attendance change, attached as a PDF whose text a reader can
//! extract, and the expiring reminder at its local time.

mod common;

use common::office::{OFFICE, Office};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const NOW: &str = "2026-12-01T12:00:00+01:00";

fn file_office() -> Office {
    Office::new(&format!(
        "{OFFICE}  verify_base_url: https://opleidingen.example.nl\nmail:\n  transport: file\n  outbox: outbox\n"
    ))
}

/// `export attendance` as one map per participant.
fn export(office: &Office, course: &str) -> HashMap<String, HashMap<String, String>> {
    let out = office.run(NOW, &["export", "attendance", "--course", course]);
    let mut r = csv::Reader::from_reader(out.stdout.as_slice());
    let headers = r.headers().expect("headers").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            let row: HashMap<String, String> = headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            (row["person_id"].clone(), row)
        })
        .collect()
}

/// The decoded application/pdf parts of an .eml file.
fn pdf_parts(eml: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for part in eml.split("\r\n--").skip(1) {
        let Some((head, body)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        if head
            .to_ascii_lowercase()
            .contains("content-type: application/pdf")
        {
            let b64: String = body
                .lines()
                .take_while(|l| !l.starts_with("--"))
                .collect::<Vec<_>>()
                .concat();
            out.push(base64(&b64));
        }
    }
    out
}

fn base64(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(value).collect();
    digits
        .chunks(4)
        .flat_map(|c| {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
            let bytes = n.to_be_bytes();
            bytes[1..c.len()].to_vec()
        })
        .collect()
}

/// The text of a PDF, or `None` (after one line) where pdftotext is not installed.
fn pdf_text(pdf: &[u8], dir: &Path, args: &[&str]) -> Option<String> {
    let path = dir.join("extract.pdf");
    std::fs::write(&path, pdf).expect("write pdf");
    match Command::new("pdftotext")
        .args(args)
        .arg(&path)
        .arg("-")
        .output()
    {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => {
            eprintln!(
                "skipping the PDF text check: pdftotext is not installed (apt-get install poppler-utils)"
            );
            None
        }
    }
}

#[test]
fn d5_the_certificate_email_carries_exactly_one_pdf_with_name_course_number_and_link() {
    let office = file_office();
    office.example(NOW);
    office.run(NOW, &["tick"]);
    let eml = std::fs::read_to_string(
        office
            .dir
            .path()
            .join("outbox/certificate-on-completion__ehbo-2026-03__anne__1.eml"),
    )
    .expect("Anne's certificate email");
    assert!(
        eml.contains("certificaat-ehbo-2026-03-anne.pdf\""),
        "{}",
        &eml[..eml.len().min(2000)]
    );
    let pdfs = pdf_parts(&eml);
    assert_eq!(pdfs.len(), 1, "exactly one PDF part");
    assert!(pdfs[0].starts_with(b"%PDF-"));
    let number = export(&office, "ehbo-2026-03")["anne"]["certificate_number"].clone();
    assert!(number.starts_with("FA-2026-"), "{number}");
    if let Some(text) = pdf_text(&pdfs[0], office.dir.path(), &[]) {
        assert!(text.contains("Anne de Vries"), "{text}");
        assert!(text.contains("EHBO basiscursus maart 2026"), "{text}");
        assert!(text.contains(&number), "{text}");
        assert!(
            text.contains("https://opleidingen.example.nl/verify/"),
            "{text}"
        );
    }
}

#[test]
fn d5_numbers_are_per_prefix_and_year_without_gaps_and_codes_differ() {
    let office = file_office();
    office.example(NOW);
    let rows = export(&office, "ehbo-2026-03");
    let mut numbers: Vec<String> = rows
        .values()
        .map(|r| r["certificate_number"].clone())
        .filter(|n| !n.is_empty())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=numbers.len())
        .map(|i| format!("FA-2026-{i:06}"))
        .collect();
    assert_eq!(numbers, expected);
}

#[test]
fn d4_d5_a_reset_revokes_the_certificate_and_a_re_pass_issues_a_new_number_in_the_next_cycle() {
    let office = file_office();
    office.example(NOW);
    let before = export(&office, "ehbo-2026-03")["anne"]["certificate_number"].clone();
    assert!(!before.is_empty());
    office.run(
        NOW,
        &[
            "participant",
            "reset",
            "--course",
            "ehbo-2026-03",
            "--person",
            "anne",
        ],
    );
    let reset = export(&office, "ehbo-2026-03");
    assert_eq!(
        reset["anne"]["certificate_number"], "",
        "revoked with the reset"
    );
    assert_eq!(reset["anne"]["cycle"], "2");
    let results = office.csv(
        "again.csv",
        "course_id,person_id,result\nehbo-2026-03,anne,passed\n",
    );
    office.import(NOW, "results", results);
    let after = export(&office, "ehbo-2026-03")["anne"]["certificate_number"].clone();
    assert!(
        after.starts_with("FA-2026-") && after != before,
        "{before} -> {after}"
    );
}

#[test]
fn d3_d5_an_attendance_change_after_issue_keeps_the_certificate() {
    let office = file_office();
    office.example(NOW);
    let before = export(&office, "ehbo-2026-03")["lotte"]["certificate_number"].clone();
    assert!(!before.is_empty(), "Lotte completed and got a certificate");
    office.import(
        NOW,
        "attendance",
        common::repo().join("examples/office/attendance-corrections.csv"),
    );
    let after = export(&office, "ehbo-2026-03");
    assert_eq!(after["lotte"]["certificate_number"], before);
    assert!(!after["lotte"]["completed_at"].is_empty());
}

#[test]
fn d5_the_expiring_reminder_fires_sixty_days_before_expiry_at_nine_local_time() {
    let office = file_office();
    office.example(NOW);
    // Certificates issued at NOW are valid two years: until 2028-12-01 12:00 (+01:00).
    // The reminder is due 60 days earlier at 09:00 Amsterdam time, which is summer time.
    let outbox = office.dir.path().join("outbox");
    let expiring = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("certificate-expiring__")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    office.run("2028-10-02T08:59:00+02:00", &["tick"]);
    assert_eq!(expiring(&outbox), 0, "not a minute early");
    office.run("2028-10-02T09:00:30+02:00", &["tick"]);
    assert!(
        expiring(&outbox) >= 3,
        "Anne, Jan and Bram are reminded at 09:00"
    );
    let anne =
        std::fs::read_to_string(outbox.join("certificate-expiring__ehbo-2026-03__anne__1.eml"))
            .expect("Anne's reminder");
    assert!(
        anne.contains("1 december 2028"),
        "the reminder names the expiry date, in Dutch"
    );
}

#[test]
fn d5_names_with_accents_apostrophes_and_markup_render_exactly_and_a_long_name_fits() {
    let office = file_office();
    office.example(NOW);
    let name = "Zoë-Émilie van 't Hof & <Partner> Maximiliaan Johannes de la Fuente-Vermeulen";
    let people = office.csv(
        "people-long.csv",
        &format!("id,full_name,email\nanne,\"{name}\",anne.devries@example.nl\n"),
    );
    office.import(NOW, "people", people);
    let out_dir = office.dir.path().join("preview");
    office.run(
        NOW,
        &[
            "preview",
            "--rule",
            "certificate-on-completion",
            "--course",
            "ehbo-2026-03",
            "--person",
            "anne",
            "--out",
            &out_dir.to_string_lossy(),
        ],
    );
    let pdf = std::fs::read(out_dir.join("certificaat-ehbo-2026-03-anne.pdf"))
        .expect("preview writes the PDF");
    let Some(text) = pdf_text(&pdf, office.dir.path(), &[]) else {
        return;
    };
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains(name), "{flat}");
    // Every word of the page lies inside the A4 landscape page (842 x 595 points).
    let boxes = pdf_text(&pdf, office.dir.path(), &["-bbox"]).unwrap_or_default();
    for line in boxes.lines().filter(|l| l.contains("<word ")) {
        let x_max: f64 = line
            .split("xMax=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|v| v.parse().ok())
            .expect("xMax");
        assert!(x_max <= 820.0, "a word runs off the page: {line}");
    }
}

#[test]
fn d5_a_certificate_expiring_rule_fires_the_course_types_expiring_soon_before_valid_until() {
    let office = file_office();
    // A second rule file: event certificate_expiring, at 10:00 local on that day.
    let extra = office.dir.path().join("rules");
    common::copy_dir(&common::repo().join("rules"), &extra);
    std::fs::write(
        extra.join("expiring.yaml"),
        "kind: action
id: expiring-soon
name: Expiring soon
data_group: course_participant
event: certificate_expiring
process: send_email
email:
  template: certificate-expiring
  subject: \"Expiring: {{course.name}}\"
timing:
  anchor: event
  offset: 0 days
  at: \"10:00\"
",
    )
    .expect("rule");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    office.example(NOW);
    // Valid until 2028-12-01 12:00 +01:00; first-aid's expiring_soon is 60 days: the event
    // is on 2028-10-02, and the rule sends at 10:00 local (summer time) that day.
    let plan = office.plan(NOW);
    let anne = plan
        .iter()
        .find(|a| a["rule"] == "expiring-soon" && a["person"] == "anne")
        .expect("an instance for Anne");
    assert_eq!(anne["due"], "2028-10-02T10:00:00+02:00");
}

#[tokio::test]
async fn d5_two_processes_issuing_at_once_on_postgresql_take_distinct_numbers_without_gaps() {
    let Some(office) = Office::postgres(OFFICE).await else {
        return;
    };
    // Twenty participants in each of two first-aid courses, all attended; the passing part
    // results of both courses are imported by two processes at the same moment.
    let mut courses = String::from("id,name,type,status,start,end\n");
    let mut parts =
        String::from("course_id,id,name,start,end,attendance_required,passing_required\n");
    let mut people = String::from("id,full_name,email\n");
    let mut enrolments = String::from("course_id,person_id\n");
    let mut attendance = String::from("course_id,part_id,person_id,status\n");
    let mut results = [
        String::from("course_id,part_id,person_id,passed\n"),
        String::from("course_id,part_id,person_id,passed\n"),
    ];
    for (c, result) in results.iter_mut().enumerate() {
        courses.push_str(&format!(
            "fa-{c},First aid {c},first-aid,completed,2026-03-02,2026-03-02\n"
        ));
        parts.push_str(&format!(
            "fa-{c},exam,Exam,2026-03-02T09:00:00+01:00,2026-03-02T12:00:00+01:00,true,true\n"
        ));
        for i in 0..20 {
            if c == 0 {
                people.push_str(&format!("p{i},Person {i},p{i}@example.org\n"));
            }
            enrolments.push_str(&format!("fa-{c},p{i}\n"));
            attendance.push_str(&format!("fa-{c},exam,p{i},attended\n"));
            result.push_str(&format!("fa-{c},exam,p{i},true\n"));
        }
    }
    for (kind, text) in [
        ("courses", &courses),
        ("parts", &parts),
        ("people", &people),
        ("enrolments", &enrolments),
        ("attendance", &attendance),
    ] {
        let file = office.csv(&format!("{kind}.csv"), text);
        office.import(NOW, kind, file);
    }
    let files: Vec<_> = results
        .iter()
        .enumerate()
        .map(|(i, r)| office.csv(&format!("results-{i}.csv"), r))
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            office
                .command(Some(NOW), &["import", "part-results", &f.to_string_lossy()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut numbers: Vec<String> = (0..2)
        .flat_map(|c| export(&office, &format!("fa-{c}")).into_values())
        .map(|r| r["certificate_number"].clone())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=40).map(|i| format!("FA-2026-{i:06}")).collect();
    assert_eq!(numbers, expected);
    office.cleanup().await;
}
