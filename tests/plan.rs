//! `registrar plan` on the example office: who gets what when, and why the others wait
//! (T1, T2, D9), through the real binary with a real SQLite database.

mod common;

use common::office::Office;
use serde_json::Value;
use std::process::Command;

const AFTER_COURSE: &str = "2026-03-24T09:00:00+01:00";

fn find<'a>(plan: &'a [Value], rule: &str, person: &str) -> Option<&'a Value> {
    plan.iter()
        .find(|i| i["rule"] == rule && i["person"] == person)
}

#[test]
fn t2_plan_shows_who_gets_the_certificate_and_why_the_others_wait() {
    let office = Office::new(common::office::OFFICE);
    office.example(AFTER_COURSE);
    let plan = office.plan(AFTER_COURSE);
    for item in &plan {
        for key in [
            "id", "rule", "course", "person", "cycle", "due", "state", "reasons",
        ] {
            assert!(item.get(key).is_some(), "{key} missing in {item}");
        }
    }
    let anne = find(&plan, "certificate-on-completion", "anne").expect("anne");
    assert_eq!(anne["state"], "due");
    // T1: offset 0 after course end is the end itself (a date-only end is 23:59:59 local).
    assert_eq!(anne["due"], "2026-03-23T23:59:59+01:00");
    let sanne = find(&plan, "certificate-on-completion", "sanne").expect("sanne");
    assert_eq!(sanne["state"], "waiting");
    let reasons: Vec<&str> = sanne["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        reasons,
        [
            "not complete yet (attendance 2 of 4 required parts (50 %), needs 75 %; 0 of 1 parts passed)"
        ]
    );
    let zoe = find(&plan, "certificate-on-completion", "zoe").expect("zoe");
    assert_eq!(
        zoe["reasons"][0],
        "not complete yet (0 of 1 parts passed; result failed)"
    );
    // The fire-safety course has not started yet: its proof of participation waits for its end.
    let mehmet = find(&plan, "proof-of-participation", "mehmet").expect("mehmet");
    assert_eq!(mehmet["state"], "waiting");
    assert_eq!(mehmet["reasons"][0], "due 2026-10-12T17:00:00+02:00");
    // The rule's course type decides: no certificate rule for the fire-safety course.
    assert!(find(&plan, "certificate-on-completion", "mehmet").is_none());
}

#[test]
fn d9_deregistered_and_cancelled_course_participants_get_no_actions() {
    let office = Office::new(common::office::OFFICE);
    office.example(AFTER_COURSE);
    let plan = office.plan(AFTER_COURSE);
    assert!(
        plan.iter()
            .all(|i| i["person"] != "fenna" || i["state"] == "cancelled"),
        "fenna is deregistered"
    );
    cancelled_course_and_deregistering_cancel(&office, &plan);
}

/// D9 on either backend: the cancelled June course has no actions, and deregistering Sanne
/// later cancels what was pending for her.
fn cancelled_course_and_deregistering_cancel(office: &Office, plan: &[Value]) {
    assert!(
        plan.iter().all(|i| i["course"] != "ehbo-2027-06"),
        "D9: the June course is cancelled"
    );
    office.import(
        AFTER_COURSE,
        "results",
        office.csv(
            "r.csv",
            "course_id,person_id,result\nehbo-2026-03,sanne,deregistered\n",
        ),
    );
    let plan = office.plan(AFTER_COURSE);
    let sanne = find(&plan, "certificate-on-completion", "sanne").expect("sanne");
    assert_eq!(sanne["state"], "cancelled");
}

#[test]
fn t2_a_participant_who_completes_late_is_due_the_moment_the_mark_is_recorded() {
    let office = Office::new(common::office::OFFICE);
    office.example(AFTER_COURSE);
    let later = "2026-04-02T14:00:00+02:00";
    office.import(
        later,
        "attendance",
        office.csv("late.csv", "course_id,part_id,person_id,status\nehbo-2026-03,p3,sanne,attended\nehbo-2026-03,p4,sanne,attended\n"),
    );
    office.import(
        later,
        "part-results",
        office.csv(
            "pr.csv",
            "course_id,part_id,person_id,passed\nehbo-2026-03,p4,sanne,yes\n",
        ),
    );
    let plan = office.plan(later);
    let sanne = find(&plan, "certificate-on-completion", "sanne").expect("sanne");
    assert_eq!(sanne["state"], "due", "{sanne}");
}

#[test]
fn t1_a_change_of_the_course_end_moves_the_due_time() {
    let office = Office::new(common::office::OFFICE);
    office.example(AFTER_COURSE);
    office.import(
        AFTER_COURSE,
        "courses",
        office.csv(
            "c.csv",
            "id,name,type,status,start,end,location\nbhv-2026-10,BHV basis oktober 2026,fire-safety,final,2026-10-05T13:00:00+02:00,2026-10-19T17:00:00+02:00,Amersfoort\n",
        ),
    );
    let plan = office.plan(AFTER_COURSE);
    let mehmet = find(&plan, "proof-of-participation", "mehmet").expect("mehmet");
    assert_eq!(mehmet["due"], "2026-10-19T17:00:00+02:00");
}

#[test]
fn t1_the_survey_is_due_the_next_day_at_ten_local_time() {
    let office = Office::new(common::office::OFFICE);
    // Marked on Saturday 28 March 2026, the day before the clocks go forward.
    office.example("2026-03-28T15:00:00+01:00");
    let plan = office.plan("2026-03-28T15:00:00+01:00");
    let survey = find(&plan, "survey-after-attendance", "anne").expect("survey");
    assert_eq!(survey["due"], "2026-03-29T10:00:00+02:00");
    assert_eq!(survey["state"], "waiting");
    let plan = office.plan("2026-03-29T10:00:00+02:00");
    assert_eq!(
        find(&plan, "survey-after-attendance", "anne").expect("survey")["state"],
        "due"
    );
}

#[test]
fn preview_writes_the_exact_multipart_message_and_sends_nothing() {
    let office = Office::new(common::office::OFFICE);
    office.example(AFTER_COURSE);
    let out_dir = office.dir.path().join("preview");
    let out = office.run(
        AFTER_COURSE,
        &[
            "preview",
            "--rule",
            "result-failed",
            "--course",
            "ehbo-2026-03",
            "--person",
            "zoe",
            "--out",
            &out_dir.to_string_lossy(),
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("Due now: the next pass sends it to zoe (action "),
        "{printed}"
    );
    let path = out_dir.join("result-failed__ehbo-2026-03__zoe.eml");
    assert!(printed.contains(&*path.to_string_lossy()), "{printed}");
    let eml = std::fs::read_to_string(&path).expect("eml");
    assert!(eml.contains("Content-Type: multipart/alternative"), "{eml}");
    assert!(eml.contains("Content-Type: text/plain; charset=utf-8"));
    assert!(eml.contains("Content-Type: text/html; charset=utf-8"));
    assert!(
        eml.contains("Message-ID: <result-failed.ehbo-2026-03.zoe.1@example.nl>"),
        "{eml}"
    );
    assert!(eml.contains("zoe.vanthof@example.nl"));
    assert!(
        eml.contains("Subject: Uw resultaat voor EHBO basiscursus maart 2026"),
        "{eml}"
    );
    // A rule whose conditions do not hold is previewed all the same, and says why not.
    let out = office.run(
        AFTER_COURSE,
        &[
            "preview",
            "--rule",
            "certificate-on-completion",
            "--course",
            "ehbo-2026-03",
            "--person",
            "zoe",
            "--out",
            &out_dir.to_string_lossy(),
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(
            "Not sent as things stand: not complete yet (0 of 1 parts passed; result failed)"
        ),
        "{printed}"
    );
    // Nothing was sent: the plan still shows the action as due.
    let plan = office.plan(AFTER_COURSE);
    assert_eq!(
        find(&plan, "result-failed", "zoe").expect("zoe")["state"],
        "due"
    );
}

#[test]
fn preview_for_a_participant_without_an_email_says_so() {
    let office = Office::new(common::office::OFFICE);
    office.example(AFTER_COURSE);
    let out = Command::new(env!("CARGO_BIN_EXE_registrar"))
        .arg("--config")
        .arg(office.dir.path().join("config.yaml"))
        .args([
            "preview",
            "--rule",
            "proof-of-participation",
            "--course",
            "bhv-2026-10",
            "--person",
            "siem",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("siem has no email address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn t2_d9_the_plan_story_runs_the_same_on_postgres() {
    let Some(office) = Office::postgres(common::office::OFFICE).await else {
        return;
    };
    office.example(AFTER_COURSE);
    let plan = office.plan(AFTER_COURSE);
    assert_eq!(
        find(&plan, "certificate-on-completion", "anne").expect("anne")["state"],
        "due"
    );
    let sanne = find(&plan, "certificate-on-completion", "sanne").expect("sanne");
    assert_eq!(
        sanne["reasons"][0],
        "not complete yet (attendance 2 of 4 required parts (50 %), needs 75 %; 0 of 1 parts passed)"
    );
    cancelled_course_and_deregistering_cancel(&office, &plan);
    office.cleanup().await;
}

#[test]
fn d5_t2_the_certificate_email_waits_for_the_certificate_and_plan_says_so() {
    let office = Office::new(common::office::OFFICE);
    // A rule that attaches the certificate without waiting for completion.
    let rules = office.dir.path().join("rules");
    common::copy_dir(&common::repo().join("rules"), &rules);
    std::fs::write(
        rules.join("zz-registered.yaml"),
        "kind: action
id: certificate-registered
name: Certificate to the registered
data_group: course_participant
event: participant_added
process: send_email
email: { template: certificate, subject: \"Certificate {{course.name}}\", attach: [certificate_pdf] }
timing: { anchor: course_end }
conditions: { course_type: [first-aid], result: [registered] }
",
    )
    .expect("rule");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    office.example(AFTER_COURSE);
    // A reset (D4) revokes Eline's certificate; cycle 2 has none until she completes again.
    office.run(
        AFTER_COURSE,
        &[
            "participant",
            "reset",
            "--course",
            "ehbo-2026-03",
            "--person",
            "eline",
        ],
    );
    let plan = office.plan(AFTER_COURSE);
    let eline = plan
        .iter()
        .find(|a| {
            a["rule"] == "certificate-registered" && a["person"] == "eline" && a["cycle"] == 2
        })
        .expect("eline's cycle 2");
    assert_eq!(eline["state"], "waiting");
    assert_eq!(
        eline["reasons"][0],
        "waits for the certificate of cycle 2 (the email attaches it; issued when the participant completes)"
    );
}

/// Extra rules beside the example office's: a manual rule, a rule that is disabled later,
/// and a certification-learner rule due a day after the recertification window opens.
const EXTRA_RULES: &str = "kind: action
id: result-passed-manual
name: Manual notice
execution: manual
data_group: course_participant
event: result_recorded
process: send_email
email: { template: result-passed, subject: \"Checked result {{course.name}}\" }
timing: { anchor: event }
conditions: { result: [passed] }
---
kind: action
id: later-disabled
name: Later disabled
data_group: course_participant
event: participant_added
process: send_email
email: { template: survey, subject: \"Follow-up {{course.name}}\" }
timing: { anchor: course_end, offset: 7 days }
conditions: { result: [not_finished] }
expires_after: 10 days
---
kind: action
id: window-follow-up
name: Window follow-up
data_group: certification_learner
event: certification_status_changed
process: send_email
email: { template: certification-window-open, subject: \"Still time to renew {{certification.name}}\" }
timing: { anchor: event, offset: 1 day }
conditions: { certification_status: [recertifying] }
";

/// `plan` at `now`, then one pass at `now`: every instance `plan` called due got its
/// delivery in that pass, and every other instance kept the state `plan` gave it. Plan
/// items and deliveries are matched by the dedup key (rule, course, person, cycle): an
/// instance still held in its import's pack has no id yet.
fn plan_then_pass_agree(office: &Office, now: &str) -> usize {
    type Key = (String, String, String, i64);
    let key = |v: &Value| -> Key {
        (
            v["rule"].as_str().unwrap_or_default().to_string(),
            v["course"].as_str().unwrap_or_default().to_string(),
            v["person"].as_str().unwrap_or_default().to_string(),
            v["cycle"].as_i64().unwrap_or_default(),
        )
    };
    let before = office.plan(now);
    // Schedule rules (T6) make their instances at their instants, in the pass itself:
    // `plan --schedules` speaks for them, not the list of instances.
    let delivered = |o: &Office| -> std::collections::HashSet<Key> {
        o.deliveries()
            .iter()
            .filter(|d| {
                d["rule"] != "weekly-office-digest" && d["rule"] != "not-completed-reminder"
            })
            .map(key)
            .collect()
    };
    let had = delivered(office);
    office.run(now, &["tick"]);
    let fired: std::collections::HashSet<Key> =
        delivered(office).difference(&had).cloned().collect();
    let after = office.plan(now);
    let mut due = 0;
    for item in &before {
        let id = key(item);
        if item["state"] == "due" && !had.contains(&id) {
            assert!(
                fired.contains(&id),
                "{now}: plan called {item} due; the pass did not fire it"
            );
            due += 1;
        } else if !had.contains(&id) {
            assert!(
                !fired.contains(&id),
                "{now}: the pass fired {item}, which plan did not call due"
            );
            let later = after.iter().find(|a| key(a) == id);
            assert_eq!(
                later.map(|a| &a["state"]),
                Some(&item["state"]),
                "{now}: {item} became {later:?}"
            );
        }
    }
    for id in &fired {
        assert!(
            before.iter().any(|i| key(i) == *id && i["state"] == "due"),
            "{now}: {id:?} was fired without plan calling it due"
        );
    }
    due
}

async fn t2_plan_and_the_pass_agree_on(office: Office) {
    let rules = office.dir.path().join("rules");
    common::copy_dir(&common::repo().join("rules"), &rules);
    std::fs::write(rules.join("zz-extra.yaml"), EXTRA_RULES).expect("extra rules");
    office.edit_config(
        &format!("rules: {}", common::repo().join("rules").display()),
        "rules: rules",
    );
    office.example(AFTER_COURSE);
    // A certification learner: anne completed the course; certified on approval.
    for action in ["assign", "approve"] {
        office.run(
            "2026-03-25T10:00:00+01:00",
            &[
                "certification",
                action,
                "--certification",
                "first-aid-responder",
                "--person",
                "anne",
            ],
        );
    }
    let mut due = 0;
    // Certificates, result notices, the manual notice awaiting approval, cancelled
    // instances of the deregistered participant.
    due += plan_then_pass_agree(&office, AFTER_COURSE);
    // daan is deregistered (D9): plan and the pass cancel what waited for him.
    office.import(
        "2026-03-26T10:00:00+01:00",
        "results",
        office.csv(
            "daan.csv",
            "course_id,person_id,result\nehbo-2026-03,daan,deregistered\n",
        ),
    );
    // Surveys the day after attendance, at 10:00.
    due += plan_then_pass_agree(&office, "2026-03-29T10:00:00+02:00");
    // The follow-up rule is disabled while sanne's instance waits: past its expiry, plan
    // and the pass both call it expired.
    let extra = std::fs::read_to_string(rules.join("zz-extra.yaml")).expect("rules");
    std::fs::write(
        rules.join("zz-extra.yaml"),
        extra.replace(
            "name: Later disabled\n",
            "name: Later disabled\nenabled: false\n",
        ),
    )
    .expect("rules");
    let plan = office.plan("2026-04-15T12:00:00+02:00");
    assert_eq!(
        find(&plan, "later-disabled", "sanne").expect("sanne")["state"],
        "expired",
        "{plan:?}"
    );
    due += plan_then_pass_agree(&office, "2026-04-15T12:00:00+02:00");
    // The recertification window opens (the pass moves anne on and her window email is
    // due at once); the follow-up is due a day later.
    office.run("2027-12-27T12:00:00+01:00", &["tick"]);
    let plan = office.plan("2027-12-28T12:30:00+01:00");
    assert_eq!(
        find(&plan, "window-follow-up", "anne").expect("follow-up")["state"],
        "due",
        "{plan:?}"
    );
    due += plan_then_pass_agree(&office, "2027-12-28T12:30:00+01:00");
    assert!(due >= 10, "only {due} instances were due over the timeline");
    // Every state was seen along the way.
    let plan = office.plan("2027-12-28T12:30:00+01:00");
    for state in ["waiting", "awaiting_approval", "cancelled", "expired"] {
        assert!(
            plan.iter().any(|i| i["state"] == state),
            "no {state} instance in {plan:?}"
        );
    }
    office.cleanup().await;
}

#[tokio::test]
async fn t2_what_plan_calls_due_is_what_the_pass_fires_and_no_other() {
    let extra = format!(
        "{}mail:\n  transport: file\n  outbox: outbox\n",
        common::office::OFFICE
    );
    t2_plan_and_the_pass_agree_on(Office::new(&extra)).await;
    if let Some(pg) = Office::postgres(&extra).await {
        t2_plan_and_the_pass_agree_on(pg).await;
    }
}
