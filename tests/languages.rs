//! Every participant in their own language (T7): a Dutch, a Belgian-Dutch, a German and an
//! English participant in one course, and one without a locale, each get the certificate
//! email and PDF in their language with dates in it; `check` refuses a subject map without
//! a language the templates are written in; the verify page follows Accept-Language.

mod common;

use common::office::Office;
use std::collections::HashMap;
use std::path::Path;

const RULES: &str = "kind: course_type
id: first-aid
name: Eerste hulp
attendance_percent: 75
certificate: { issue_on: completion, template: certificate, validity: 2 years }
---
kind: action
id: certificate-on-completion
name: Certificate
data_group: course_participant
event: completed
process: send_email
email:
  template: certificate
  subject:
    nl: \"Certificaat {{course.name}}\"
    en: \"Certificate {{course.name}}\"
    de: \"Zertifikat {{course.name}}\"
  to: participant
  attach: [certificate_pdf]
timing: { anchor: event }
conditions: { completed: true }
";

/// The office (locale nl) with the repository's templates and German ones of the test's own.
fn office() -> Office {
    let office = Office::new(
        "office:\n  name: Opleidingscentrum\n  from: \"Opleidingscentrum <opleidingen@example.nl>\"\n  verify_base_url: https://opleidingen.example.nl\n  locale: nl\nmail:\n  transport: file\n  outbox: outbox\n",
    );
    let templates = office.dir.path().join("templates");
    common::copy_dir(&common::repo().join("templates"), &templates);
    std::fs::write(
        templates.join("certificate.de.html.hbs"),
        "<html lang=\"de\"><body><p>Guten Tag {{participant.first_name}},</p><p>Sie haben <strong>{{course.name}}</strong> abgeschlossen. Ihr Zertifikat {{certificate.number}} wurde am {{certificate.issued_on}} ausgestellt ({{format_date certificate.issued_at \"short\"}}).</p></body></html>",
    )
    .expect("de html");
    std::fs::write(
        templates.join("certificate.de.txt.hbs"),
        "Guten Tag {{participant.first_name}},\nIhr Zertifikat {{certificate.number}} wurde am {{certificate.issued_on}} ausgestellt.\n",
    )
    .expect("de txt");
    let en_layout =
        std::fs::read_to_string(templates.join("certificate.en.svg.hbs")).expect("en layout");
    std::fs::write(
        templates.join("certificate.de.svg.hbs"),
        en_layout
            .replace(">Certificate<", ">Zertifikat<")
            .replace("This certifies that", "Hiermit wird bestätigt, dass"),
    )
    .expect("de layout");
    office.edit_config(
        &format!("templates: {}", common::repo().join("templates").display()),
        "templates: templates",
    );
    let rules = office.dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules");
    std::fs::write(rules.join("rules.yaml"), RULES).expect("rules");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    office
}

const NOW: &str = "2026-03-23T12:00:00+01:00";

/// Imports one course and five participants who complete it at NOW.
fn participants(office: &Office) {
    office.import(
        NOW,
        "courses",
        office.csv(
            "courses.csv",
            "id,name,type,status,start,end\nfa,EHBO maart,first-aid,final,2026-03-02,2026-03-23\n",
        ),
    );
    office.import(
        NOW,
        "parts",
        office.csv(
            "parts.csv",
            "course_id,id,name,start,end,attendance_required,passing_required\nfa,p1,Dag 1,2026-03-02T09:00:00+01:00,2026-03-02T17:00:00+01:00,yes,no\n",
        ),
    );
    office.import(
        NOW,
        "people",
        office.csv(
            "people.csv",
            "id,full_name,email,locale\nnl,Anne de Vries,anne@example.nl,nl\nbe,Joëlle Peeters,joelle@example.be,nl-BE\nde,Jürgen Weber,juergen@example.de,de\nen,Oliver Smith,oliver@example.com,en\nnone,Sem Jansen,sem@example.nl,\n",
        ),
    );
    office.import(
        NOW,
        "enrolments",
        office.csv(
            "enrolments.csv",
            "course_id,person_id\nfa,nl\nfa,be\nfa,de\nfa,en\nfa,none\n",
        ),
    );
    office.import(
        NOW,
        "attendance",
        office.csv(
            "attendance.csv",
            "course_id,part_id,person_id,status\nfa,p1,nl,attended\nfa,p1,be,attended\nfa,p1,de,attended\nfa,p1,en,attended\nfa,p1,none,attended\n",
        ),
    );
}

/// The outbox's messages by person id.
fn outbox(dir: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir.join("outbox")).expect("outbox") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let person = name.split("__").nth(2).unwrap_or_default().to_string();
        out.insert(person, std::fs::read_to_string(&path).expect("eml"));
    }
    out
}

/// The decoded parts of a message, as Python's `email` module reads them: (content type,
/// filename, text or the bytes written to a file).
fn parts(eml: &str, dir: &Path) -> Vec<(String, String, String)> {
    let script = r#"
import email, sys, os
from email import policy
m = email.message_from_string(open(sys.argv[1]).read(), policy=policy.default)
print("SUBJECT\t" + str(m["Subject"]))
for i, p in enumerate(m.walk()):
    if p.is_multipart(): continue
    ct, fn = p.get_content_type(), p.get_filename() or ""
    if ct == "application/pdf":
        path = os.path.join(sys.argv[2], "part%d.pdf" % i)
        open(path, "wb").write(p.get_payload(decode=True))
        print("PART\t%s\t%s\t%s" % (ct, fn, path))
    else:
        print("PART\t%s\t%s\t%s" % (ct, fn, p.get_content().replace("\n", " ")))
"#;
    let file = dir.join("message.eml");
    std::fs::write(&file, eml).expect("eml");
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&file)
        .arg(dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, '\t');
            match (f.next(), f.next(), f.next(), f.next()) {
                (Some("SUBJECT"), Some(s), _, _) => {
                    Some(("subject".to_string(), String::new(), s.to_string()))
                }
                (Some("PART"), Some(ct), Some(fname), Some(body)) => {
                    Some((ct.to_string(), fname.to_string(), body.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

fn pdf_text(path: &str) -> String {
    let out = std::process::Command::new("pdftotext")
        .args([path, "-"])
        .output()
        .expect("pdftotext (poppler-utils) is installed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn t7_each_participant_gets_the_certificate_in_their_language_with_dates_in_it() {
    let office = office();
    let check = office.command(None, &["check"]).output().expect("check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    participants(&office);
    office.run(NOW, &["tick"]);
    let mail = outbox(office.dir.path());
    assert_eq!(mail.len(), 5, "{:?}", mail.keys());
    let work = tempfile::tempdir().expect("dir");
    // person: subject, a phrase of the body, the long date, the attachment's name, a word
    // of the PDF.
    let expected = [
        (
            "nl",
            "Certificaat EHBO maart",
            "23 maart 2026",
            "certificaat-fa-nl.pdf",
            "Certificaat",
        ),
        (
            "be",
            "Certificaat EHBO maart",
            "23 maart 2026",
            "certificaat-fa-be.pdf",
            "Certificaat",
        ),
        (
            "de",
            "Zertifikat EHBO maart",
            "23. März 2026",
            "certificate-fa-de.pdf",
            "Zertifikat",
        ),
        (
            "en",
            "Certificate EHBO maart",
            "23 March 2026",
            "certificate-fa-en.pdf",
            "Certificate",
        ),
        // No locale: the office's language.
        (
            "none",
            "Certificaat EHBO maart",
            "23 maart 2026",
            "certificaat-fa-none.pdf",
            "Certificaat",
        ),
    ];
    for (person, subject, date, file, word) in expected {
        let eml = mail
            .get(person)
            .unwrap_or_else(|| panic!("no email for {person}"));
        let parts = parts(eml, work.path());
        let got_subject = &parts.iter().find(|p| p.0 == "subject").expect("subject").2;
        assert_eq!(got_subject, subject, "{person}");
        let html = &parts.iter().find(|p| p.0 == "text/html").expect("html").2;
        assert!(html.contains(date), "{person}: {date} in {html}");
        let pdf = parts
            .iter()
            .find(|p| p.0 == "application/pdf")
            .unwrap_or_else(|| panic!("{person}: no PDF"));
        assert_eq!(pdf.1, file, "{person}");
        let text = pdf_text(&pdf.2);
        assert!(text.contains(word), "{person}: {word} in {text}");
        assert!(text.contains(date), "{person}: {date} in {text}");
    }
    // The German short date, through {{format_date certificate.issued_at "short"}}.
    let de = parts(&mail["de"], work.path());
    assert!(
        de.iter()
            .any(|p| p.0 == "text/html" && p.2.contains("23.03.2026")),
        "{de:?}"
    );
    // The Dutch email is Dutch throughout; the English one English.
    let nl = parts(&mail["nl"], work.path());
    assert!(
        nl.iter()
            .any(|p| p.0 == "text/plain" && p.2.contains("Beste Anne")),
        "{nl:?}"
    );
    let en = parts(&mail["en"], work.path());
    assert!(
        en.iter()
            .any(|p| p.0 == "text/plain" && p.2.contains("Dear Oliver")),
        "{en:?}"
    );
}

#[test]
fn t7_check_fails_for_a_subject_without_a_language_its_templates_are_written_in() {
    let office = office();
    // Without the German subject while certificate.de.html.hbs exists, and without the
    // office's Dutch one.
    let rules = office.dir.path().join("rules/rules.yaml");
    std::fs::write(
        &rules,
        RULES
            .replace("    de: \"Zertifikat {{course.name}}\"\n", "")
            .replace("    nl: \"Certificaat {{course.name}}\"\n", ""),
    )
    .expect("rules");
    let out = office.command(None, &["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "action certificate-on-completion: email.subject has no text for the office language nl"
        ),
        "{text}"
    );
    assert!(
        text.contains("action certificate-on-completion: email.subject has no text for de, which templates/certificate.de.html.hbs is written in"),
        "{text}"
    );
}

#[test]
fn t7_a_dutch_html_part_without_its_dutch_text_part_is_reported() {
    let office = office();
    std::fs::remove_file(office.dir.path().join("templates/certificate.de.txt.hbs")).expect("rm");
    let out = office.command(None, &["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("certificate.de.txt.hbs") && text.contains("no de text part"),
        "{text}"
    );
}

#[test]
fn t7_preview_renders_another_language_on_request() {
    let office = office();
    participants(&office);
    let out_dir = office.dir.path().join("preview");
    let out = office.run(
        NOW,
        &[
            "preview",
            "--rule",
            "certificate-on-completion",
            "--course",
            "fa",
            "--person",
            "nl",
            "--locale",
            "en",
            "--out",
            &out_dir.to_string_lossy(),
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("Subject: Certificate EHBO maart"),
        "{printed}"
    );
    assert!(out_dir.join("certificate-fa-nl.pdf").exists(), "{printed}");
}
