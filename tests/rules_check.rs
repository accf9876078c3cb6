//! `registrar check` on the example rules, and on broken copies of them: one mistake each,
//! each reported with file, line, column and what was expected (T5).

mod common;

use std::process::{Command, Output};

struct Copy {
    dir: tempfile::TempDir,
}

impl Copy {
    /// The example rules and templates, with `old` replaced by `new` in actions.yaml.
    fn with(old: &str, new: &str) -> Copy {
        let dir = tempfile::tempdir().expect("dir");
        let repo = common::repo();
        std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
        std::fs::copy(
            repo.join("rules/course_types.yaml"),
            dir.path().join("rules/course_types.yaml"),
        )
        .expect("copy");
        let actions = std::fs::read_to_string(repo.join("rules/actions.yaml")).expect("read");
        assert!(
            actions.contains(old),
            "the example rules no longer contain {old:?}"
        );
        std::fs::write(
            dir.path().join("rules/actions.yaml"),
            actions.replacen(old, new, 1),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("config.yaml"),
            format!(
                "rules: rules\ntemplates: {}\noffice:\n  locale: nl\n",
                repo.join("templates").display()
            ),
        )
        .expect("config");
        Copy { dir }
    }

    fn check(&self) -> Output {
        Command::new(env!("CARGO_BIN_EXE_registrar"))
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .arg("check")
            .output()
            .expect("run")
    }
}

/// Expects exit 1 and a first error line `.../rules/actions.yaml:LINE:COL: ...` containing
/// `why`, where LINE is the line of the mistake (`new`) plus `below`.
fn refused(old: &str, new: &str, below: usize, col: usize, why: &str) {
    let copy = Copy::with(old, new);
    let text = std::fs::read_to_string(copy.dir.path().join("rules/actions.yaml")).expect("read");
    // The last occurrence: a duplicated id is reported where it is repeated.
    let line = text[..text.rfind(new).expect("mistake")]
        .matches('\n')
        .count()
        + 1
        + below;
    refused_at(&copy, line, col, why);
}

fn refused_at(copy: &Copy, line: usize, col: usize, why: &str) {
    let out = copy.check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let first = err.lines().next().unwrap_or_default();
    let at = format!("rules/actions.yaml:{line}:{col}: ");
    assert!(first.contains(&at), "expected {at}: {first}");
    assert!(first.contains(why), "expected {why:?} in: {first}");
    assert!(
        !first.contains(" at line "),
        "the location is said twice: {first}"
    );
}

#[test]
fn t5_the_example_rules_pass_check() {
    let out = Copy::with("execution: automatic", "execution: automatic").check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("9 action rule(s)"));
}

#[test]
fn t5_an_unknown_key_names_the_nearest_known_one() {
    refused(
        "execution: automatic",
        "exection: automatic",
        0,
        1,
        "unknown field `exection` (did you mean `execution`?)",
    );
}

#[test]
fn t5_a_duplicate_key() {
    refused(
        "execution: automatic",
        "execution: automatic\nexecution: manual",
        1,
        1,
        "duplicate mapping key: execution",
    );
}

#[test]
fn t5_a_wrong_type() {
    refused(
        "execution: automatic",
        "enabled: maybe",
        0,
        10,
        "invalid boolean (expected true or false)",
    );
}

#[test]
fn t5_an_unknown_event() {
    refused(
        "event: participant_added",
        "event: participant_joined",
        0,
        8,
        "unknown variant `participant_joined`, expected one of participant_added",
    );
}

#[test]
fn t5_an_unknown_anchor() {
    refused(
        "anchor: course_end",
        "anchor: course_ending",
        0,
        11,
        "unknown variant `course_ending` (did you mean `course_end`?)",
    );
}

#[test]
fn t5_an_unknown_condition() {
    refused(
        "  attendance_requirement_achieved: true",
        "  attendance_achieved: true",
        0,
        3,
        "unknown field `attendance_achieved`",
    );
}

#[test]
fn t5_an_unknown_data_group() {
    refused(
        "data_group: course_participant",
        "data_group: participants",
        0,
        13,
        "expected one of course_participant, certification_learner",
    );
}

#[test]
fn t5_a_malformed_duration() {
    refused(
        "  offset: 0 days",
        "  offset: 3 dayz",
        0,
        11,
        "unknown unit \"dayz\"; expected a number and a unit",
    );
}

#[test]
fn t5_an_invalid_at() {
    refused(
        "at: \"10:00\"",
        "at: \"25:00\"",
        0,
        7,
        "\"25:00\" is not a time of day (expected HH:MM",
    );
}

#[test]
fn t5_a_duplicate_rule_id() {
    refused(
        "id: proof-of-participation",
        "id: certificate-on-completion",
        0,
        5,
        "duplicate action id \"certificate-on-completion\"",
    );
}

#[test]
fn t5_a_template_that_does_not_exist() {
    refused(
        "template: survey",
        "template: survey-invite",
        0,
        13,
        "email.template \"survey-invite\"",
    );
}

#[test]
fn t5_an_unknown_course_type() {
    refused(
        "course_type: [fire-safety]",
        "course_type: [fire-safty]",
        0,
        17,
        "unknown course type \"fire-safty\" (known: fire-safety, first-aid)",
    );
}

#[test]
fn t5_an_unknown_course_status() {
    refused(
        "course_status: [final, completed]",
        "course_status: [final, done]",
        0,
        26,
        "unknown variant `done`, expected one of draft, final, completed, cancelled",
    );
}

#[test]
fn t5_an_event_that_does_not_fit_the_data_group() {
    // Reported at the start of the rule's document.
    let copy = Copy::with(
        "event: participant_added",
        "event: certification_status_changed",
    );
    refused_at(
        &copy,
        1,
        1,
        "does not go with data_group course_participant",
    );
}

#[test]
fn t5_every_error_is_listed_at_once() {
    let copy = Copy::with("anchor: course_end", "anchor: course_ending");
    let path = copy.dir.path().join("rules/actions.yaml");
    let text = std::fs::read_to_string(&path).expect("read").replacen(
        "template: survey",
        "template: survey-invite",
        1,
    );
    std::fs::write(&path, text).expect("write");
    std::fs::write(
        copy.dir.path().join("rules/more.yaml"),
        "kind: action\nid: x\n",
    )
    .expect("write");
    let out = copy.check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("course_ending") && err.contains("rules/more.yaml:"),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn t5_an_unknown_variable_in_a_subject_is_an_error_at_check() {
    refused(
        "nl: \"Uw resultaat voor {{course.name}}: geslaagd\"",
        "nl: \"Uw resultaat voor {{course.nme}}: geslaagd\"",
        0,
        5,
        "email.subject: unknown variable `course.nme`",
    );
}

/// `registrar check` on the example rules with one template edited: `from` -> `to` in
/// `templates/FILE`. Returns check's stderr; check must exit 1.
fn check_with_template_edit(file: &str, from: &str, to: &str) -> String {
    let copy = Copy::with("execution: automatic", "execution: automatic");
    let templates = copy.dir.path().join("templates");
    common::copy_dir(&common::repo().join("templates"), &templates);
    let path = templates.join(file);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{file} has no {from}");
    std::fs::write(&path, text.replace(from, to)).expect("write");
    std::fs::write(
        copy.dir.path().join("config.yaml"),
        "rules: rules\ntemplates: templates\noffice:\n  locale: nl\n",
    )
    .expect("config");
    let out = copy.check();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[test]
fn t5_an_unknown_variable_in_a_template_file_is_an_error_at_check() {
    let err = check_with_template_edit(
        "survey.txt.hbs",
        "{{participant.first_name}}",
        "{{participant.firstname}}",
    );
    assert!(
        err.contains("templates/survey.txt.hbs:1:7: unknown variable `participant.firstname`"),
        "{err}"
    );
}

#[test]
fn d5_t5_an_unknown_variable_in_the_certificate_layout_is_an_error_at_check() {
    let err = check_with_template_edit(
        "certificate.svg.hbs",
        "{{certificate.number}}",
        "{{certificate.numbr}}",
    );
    assert!(
        err.contains("templates/certificate.svg.hbs:")
            && err.contains("unknown variable `certificate.numbr`"),
        "{err}"
    );
}
