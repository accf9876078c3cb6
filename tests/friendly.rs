//! Friendly to the people who type (issue 17): times as people write them, Excel's
//! semicolon CSV with a byte-order mark, and a file that is not UTF-8 — through the binary.

mod common;

use common::office::{OFFICE, Office};
use registrar::store::{Lock, catalogue};
use std::process::Output;

fn office() -> Office {
    Office::new(&format!(
        "{OFFICE}mail:\n  transport: file\n  outbox: outbox\n"
    ))
}

/// `registrar import KIND FILE [extra...]` on 1 November 2026.
fn import(office: &Office, kind: &str, file: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec!["import", kind, file.to_str().expect("path")];
    args.extend(extra);
    office
        .command(Some("2026-11-01"), &args)
        .output()
        .expect("import")
}

/// `registrar check`: whether it passed, and what it said on standard error.
fn check(office: &Office) -> (bool, String) {
    let out = office.command(None, &["check"]).output().expect("check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn t1_a_semicolon_csv_with_a_bom_and_local_times_imports_in_the_office_zone() {
    let office = office();
    // What Excel writes in the Netherlands: semicolons, a BOM, times without offset.
    let csv = "\u{feff}id;name;type;status;start;end\n\
               ehbo-2026-11;EHBO november;first-aid;final;2026-11-24 19:00;2026-11-24 22:00\n\
               ehbo-2026-06;EHBO juni;first-aid;final;2026-06-24T19:00;2026-06-24T22:00:00\n";
    let file = office.csv("courses.csv", csv);
    let out = import(&office, "courses", &file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = office.store().await;
    let shown = |t: chrono::DateTime<chrono::Utc>| {
        registrar::domain::time::local_rfc3339(t, chrono_tz::Europe::Amsterdam)
    };
    let nov = common::read(&store, async |tx| {
        catalogue::course(tx, "ehbo-2026-11", Lock::None).await
    })
    .await
    .expect("course");
    assert_eq!(shown(nov.start), "2026-11-24T19:00:00+01:00");
    assert_eq!(shown(nov.end), "2026-11-24T22:00:00+01:00");
    let june = common::read(&store, async |tx| {
        catalogue::course(tx, "ehbo-2026-06", Lock::None).await
    })
    .await
    .expect("course");
    assert_eq!(shown(june.start), "2026-06-24T19:00:00+02:00");
    store.close().await;

    // --now as people type it: a date, or a local time.
    for now in ["2026-12-01", "2026-12-01 09:00"] {
        let out = office.command(Some(now), &["plan"]).output().expect("plan");
        assert!(
            out.status.success(),
            "{now}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = office
        .command(Some("1 december"), &["plan"])
        .output()
        .expect("plan");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2026-03-02 09:00"), "{err}");
}

#[test]
fn csv_a_file_that_is_not_utf8_is_refused_saying_how_to_save_it() {
    let office = office();
    let file = office.dir.path().join("people.csv");
    // "Zoë" in Windows-1252, as an older Excel saves "CSV (comma delimited)".
    let mut bytes = b"id,full_name,email\nanne,Anne de Vries,anne@example.nl\nzoe,Zo".to_vec();
    bytes.push(0xEB);
    bytes.extend_from_slice(b" van 't Hof,zoe@example.nl\n");
    std::fs::write(&file, bytes).expect("write");
    let out = import(&office, "people", &file, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("save the file as \"CSV UTF-8\""),
        "{err}"
    );
}

#[test]
fn t5_check_names_the_setting_of_a_config_type_error_and_the_course_type_of_a_missing_layout() {
    let office = office();
    office.edit_config("mail:\n", "scheduler:\n  max_attempts: abc\nmail:\n");
    let (passed, err) = check(&office);
    assert!(!passed);
    assert!(
        err.contains("config.yaml:")
            && err.contains("`scheduler.max_attempts`: expected a whole number, 0 or more"),
        "{err}"
    );

    // A course type naming a layout that does not exist: said at its `template:` line.
    let office = self::office();
    let rules = office.dir.path().join("rules");
    common::copy_dir(&common::repo().join("rules"), &rules);
    let types = rules.join("course_types.yaml");
    let text = std::fs::read_to_string(&types).expect("types");
    let line = text
        .lines()
        .position(|l| l == "  template: certificate")
        .expect("the example names its layout")
        + 1;
    std::fs::write(
        &types,
        text.replace("  template: certificate\n", "  template: certificaat\n"),
    )
    .expect("types");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    let (_, err) = check(&office);
    assert!(
        err.contains(&format!(
            "course_types.yaml:{line}:13: course type first-aid: certificate.template \"certificaat\""
        )),
        "{err}"
    );
}

#[test]
fn import_takes_the_singular_of_a_kind_as_meant() {
    let office = office();
    let file = office.csv(
        "people.csv",
        "id,full_name,email\nanne,Anne de Vries,anne@example.nl\n",
    );
    let out = import(&office, "person", &file, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn t5_a_template_typo_gets_the_nearest_field() {
    let office = office();
    office.own_rules(
        "kind: course_type\nid: first-aid\nname: EHBO\n---\nkind: action\nid: welcome\nname: Welcome\n\
         data_group: course_participant\nevent: participant_added\nprocess: send_email\n\
         email: { template: welcome, subject: \"Welkom {{course.nme}}\" }\ntiming: { anchor: event }\n\
         ---\nkind: action\nid: welcome-2\nname: Welcome\n\
         data_group: course_participant\nevent: participant_added\nprocess: send_email\n\
         email: { template: welcome, subject: \"Welkom\" }\ntiming: { anchor: event }\n",
        &[(
            "welcome.html.hbs",
            "<p>Beste {{participant.fist_name}},</p>",
        )],
    );
    let (passed, err) = check(&office);
    assert!(!passed);
    assert!(
        err.contains("unknown variable `course.nme` (did you mean `course.name`?)"),
        "{err}"
    );
    assert!(
        err.contains(
            "unknown variable `participant.fist_name` (did you mean `participant.first_name`?)"
        ),
        "{err}"
    );
}

#[test]
fn t5_check_reports_every_mistake_of_a_document_at_once() {
    // The config: three mistakes, three lines, each with its setting and a near name.
    let office = office();
    office.edit_config(
        "mail:\n  transport: file\n",
        "mail:\n  transport: fil\n  smtp:\n    port: 99999\nscheduler:\n  max_attemps: 3\n",
    );
    let (passed, err) = check(&office);
    assert!(!passed);
    for expected in [
        "`mail.transport`: unknown variant `fil` (did you mean `file`?)",
        "`mail.smtp.port`: expected a whole number from 0 to 65535",
        "`scheduler.max_attemps`: unknown field `max_attemps` (did you mean `max_attempts`?)",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }

    // One rule with a misspelt status and a misspelt condition, and a template with two
    // unknown variables: every one reported, at its own line.
    let office = self::office();
    office.own_rules(
        "kind: course_type\nid: first-aid\nname: EHBO\n---\nkind: action\nid: welcome\nname: Welcome\n\
         data_group: course_participant\nevent: participant_added\nprocess: send_email\n\
         email: { template: welcome, subject: \"Welkom\" }\ntiming: { anchor: event }\n\
         conditions:\n  course_status: [finale]\n  attendance_requirement_achieved: true\n  attendence_requirement_achieved: true\n\
         ---\nkind: action\nid: welcome-2\nname: Welcome\n\
         data_group: course_participant\nevent: participant_added\nprocess: send_email\n\
         email: { template: welcome, subject: \"Welkom\" }\ntiming: { anchor: event }\n",
        &[(
            "welcome.html.hbs",
            "<p>Beste {{participant.fist_name}},</p>\n<p>{{course.nme}}</p>",
        )],
    );
    let (passed, err) = check(&office);
    assert!(!passed);
    for expected in [
        "rules.yaml:14:19: unknown variant `finale` (did you mean `final`?)",
        "rules.yaml:16:3: unknown field `attendence_requirement_achieved` (did you mean `attendance_requirement_achieved`?)",
        "welcome.html.hbs:1:10: unknown variable `participant.fist_name` (did you mean `participant.first_name`?)",
        "welcome.html.hbs:2:4: unknown variable `course.nme` (did you mean `course.name`?)",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
}

#[test]
fn csv_a_pipe_separated_file_names_the_delimiter_flag_and_imports_with_it() {
    let office = office();
    let file = office.csv(
        "people.csv",
        "id|full_name|email\nanne|Anne de Vries|anne@example.nl\n",
    );
    let out = import(&office, "people", &file, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("its fields seem separated by '|'; import it with --delimiter pipe"),
        "{err}"
    );
    let out = import(&office, "people", &file, &["--delimiter", "pipe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 new"));
}
