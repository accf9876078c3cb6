//! The same story on SQLite and PostgreSQL: create, upsert, query, history, and the
//! domain rules as a training office sees them through the store.

mod common;

use common::{TestDb, at, rules, tz};
use registrar::change::{Applied, Work, WriteError};
use registrar::domain::input::*;
use registrar::domain::{CourseStatus, EmailAddress, Mark, Outcome};
use registrar::rules::RuleSet;
use registrar::store::{Lock, catalogue, certificates, enrolments, history};
use registrar::store::{Store, Tx, on};
use std::collections::BTreeMap;

/// Every part of course c1 attended.
const ALL_FOUR: &[(&str, Mark)] = &[
    ("p1", Mark::Attended),
    ("p2", Mark::Attended),
    ("p3", Mark::Attended),
    ("p4", Mark::Attended),
];

const NOW: &str = "2026-04-01T10:00:00+02:00";

async fn apply<T>(
    store: &Store,
    rules: &RuleSet,
    now: &str,
    f: impl AsyncFnOnce(&mut Work<'_>, &mut Tx) -> Result<T, WriteError>,
) -> Result<T, WriteError> {
    let mut work = Work::new(rules, tz(), at(now), "test", "store story");
    let mut tx = store.begin().await?;
    let out = f(&mut work, &mut tx).await;
    if out.is_ok() {
        work.finish(&mut tx).await?;
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    out
}

fn course(id: &str, type_id: &str, status: CourseStatus) -> CourseInput {
    CourseInput {
        id: id.into(),
        name: format!("Course {id}"),
        type_id: type_id.into(),
        status,
        start: at("2026-03-02T09:00:00+01:00"),
        end: at("2026-03-23T12:00:00+01:00"),
        location: Some("Utrecht".into()),
        fields: BTreeMap::new(),
    }
}

fn part(course: &str, id: &str, day: u32, passing: bool) -> PartInput {
    PartInput {
        course_id: course.into(),
        id: id.into(),
        name: format!("Part {id}"),
        start: at(&format!("2026-03-{day:02}T09:00:00+01:00")),
        end: at(&format!("2026-03-{day:02}T12:00:00+01:00")),
        attendance_required: true,
        passing_required: passing,
        min_minutes: None,
    }
}

fn person(id: &str, name: &str) -> PersonInput {
    PersonInput {
        id: id.into(),
        full_name: name.into(),
        email: Some(EmailAddress::parse(&format!("{id}@example.nl")).expect("email")),
        first_name: None,
        locale: None,
        fields: BTreeMap::new(),
    }
}

fn mark(person: &str, part: &str, m: Mark) -> MarkInput {
    MarkInput {
        course_id: "c1".into(),
        part_id: part.into(),
        person_id: person.into(),
        mark: m,
        minutes: None,
    }
}

/// Course c1 (first aid, 75 %) with four required parts, p4 with a passing obligation;
/// people anne, jan and zoë enrolled.
async fn office(store: &Store, rules: &RuleSet) {
    apply(store, rules, NOW, async |w, tx| {
        w.upsert_course(tx, &course("c1", "first-aid", CourseStatus::Final))
            .await?;
        for (i, id) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
            w.upsert_part(tx, &part("c1", id, 2 + 7 * i as u32, *id == "p4"))
                .await?;
        }
        for (id, name) in [
            ("anne", "Anne de Vries"),
            ("jan", "Jan Jansen"),
            ("zoe", "Zoë van 't Hof"),
        ] {
            w.upsert_person(tx, &person(id, name)).await?;
            w.upsert_enrolment(
                tx,
                &EnrolmentInput {
                    course_id: "c1".into(),
                    person_id: id.into(),
                    walk_in: None,
                },
            )
            .await?;
        }
        Ok(())
    })
    .await
    .expect("office");
}

async fn enrolment(store: &Store, person: &str) -> Option<enrolments::Enrolment> {
    common::read(store, async |tx| {
        enrolments::one(tx, "c1", person, Lock::None).await
    })
    .await
}

async fn marks(store: &Store, person: &str, m: &[(&str, Mark)]) {
    let rows: Vec<MarkInput> = m.iter().map(|(p, k)| mark(person, p, *k)).collect();
    apply(store, &rules(), NOW, async |w, tx| {
        for r in w.mark_attendance(tx, &rows).await? {
            r?;
        }
        Ok(())
    })
    .await
    .expect("marks");
}

async fn pass_exam(store: &Store, person: &str) {
    apply(store, &rules(), NOW, async |w, tx| {
        w.record_part_result(
            tx,
            &PartResultInput {
                course_id: "c1".into(),
                part_id: "p4".into(),
                person_id: person.into(),
                passed: true,
            },
        )
        .await
    })
    .await
    .expect("part result");
}

#[tokio::test]
async fn create_upsert_and_query_work_the_same_on_every_backend() {
    for db in TestDb::all().await {
        let rules = rules();
        office(&db.store, &rules).await;
        // The same upsert again changes nothing and records nothing.
        let again = apply(&db.store, &rules, NOW, async |w, tx| {
            w.upsert_course(tx, &course("c1", "first-aid", CourseStatus::Final))
                .await
        })
        .await
        .expect("upsert");
        assert_eq!(again, Applied::Unchanged, "{}", db.name);
        let changed = apply(&db.store, &rules, NOW, async |w, tx| {
            let mut c = course("c1", "first-aid", CourseStatus::Completed);
            c.name = "EHBO maart".into();
            w.upsert_course(tx, &c).await
        })
        .await
        .expect("upsert");
        assert_eq!(changed, Applied::Updated, "{}", db.name);

        let mut tx = db.store.begin().await.expect("tx");
        let c = catalogue::course(&mut tx, "c1", Lock::None)
            .await
            .expect("read")
            .expect("course");
        assert_eq!(
            (c.name.as_str(), c.status, c.parts.len()),
            ("EHBO maart", CourseStatus::Completed, 4),
            "{}",
            db.name
        );
        let people = enrolments::participants_of_course(&mut tx, "c1", None)
            .await
            .expect("read");
        let names: Vec<&str> = people
            .iter()
            .map(|(e, _, _)| e.person_id.as_str())
            .collect();
        assert_eq!(
            names,
            ["anne", "jan", "zoe"],
            "{}: ordered by full name",
            db.name
        );
        let zoe = catalogue::person(&mut tx, "zoe", Lock::None)
            .await
            .expect("read")
            .expect("zoe");
        assert_eq!(
            zoe.full_name, "Zoë van 't Hof",
            "{}: names round-trip exactly",
            db.name
        );
        tx.rollback().await.expect("rollback");
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d1_d3_three_of_four_parts_and_a_passed_exam_complete_the_enrolment() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        marks(
            &db.store,
            "jan",
            &[
                ("p1", Mark::Attended),
                ("p2", Mark::Attended),
                ("p3", Mark::NotAttended),
            ],
        )
        .await;
        assert!(
            enrolment(&db.store, "jan")
                .await
                .expect("jan")
                .completed_at
                .is_none(),
            "{}",
            db.name
        );
        marks(&db.store, "jan", &[("p4", Mark::Attended)]).await;
        assert!(
            enrolment(&db.store, "jan")
                .await
                .expect("jan")
                .completed_at
                .is_none(),
            "{}: D2 exam not yet passed",
            db.name
        );
        pass_exam(&db.store, "jan").await;
        let e = enrolment(&db.store, "jan").await.expect("jan");
        assert!(
            e.completed_at.is_some(),
            "{}: 3 of 4 at 75 % and exam passed",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d3_completion_stays_when_attendance_is_later_set_to_not_attended_or_zero_minutes() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        marks(&db.store, "anne", ALL_FOUR).await;
        pass_exam(&db.store, "anne").await;
        let done = enrolment(&db.store, "anne")
            .await
            .expect("anne")
            .completed_at
            .expect("complete");
        marks(
            &db.store,
            "anne",
            &[("p1", Mark::NotAttended), ("p2", Mark::NotAttended)],
        )
        .await;
        apply(
            &db.store,
            &rules(),
            "2026-05-01T10:00:00+02:00",
            async |w, tx| {
                let mut m = mark("anne", "p3", Mark::Attended);
                m.minutes = Some(0);
                w.mark_attendance(tx, &[m]).await?;
                Ok(())
            },
        )
        .await
        .expect("mark");
        let e = enrolment(&db.store, "anne").await.expect("anne");
        assert_eq!(
            e.completed_at,
            Some(done),
            "{}: completion is preserved",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d3_equivalency_completes_without_requirements_and_is_not_repeated() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        apply(&db.store, &rules(), NOW, async |w, tx| {
            w.equivalency(tx, "c1", "zoe").await
        })
        .await
        .expect("equivalency");
        let e = enrolment(&db.store, "zoe").await.expect("zoe");
        assert_eq!(
            e.completed_via.map(|v| v.as_str()),
            Some("equivalency"),
            "{}",
            db.name
        );
        let again = apply(&db.store, &rules(), NOW, async |w, tx| {
            w.equivalency(tx, "c1", "zoe").await
        })
        .await;
        assert!(
            matches!(again, Err(WriteError::Refused { ref message, .. }) if message.contains("already completed")),
            "{}",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d4_passed_to_failed_is_refused_naming_the_reset() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        let set = |r: Outcome| ResultInput {
            course_id: "c1".into(),
            person_id: "anne".into(),
            result: r,
            score: None,
            comment: None,
        };
        apply(&db.store, &rules(), NOW, async |w, tx| {
            w.record_result(tx, &set(Outcome::Passed)).await
        })
        .await
        .expect("passed");
        let refused = apply(&db.store, &rules(), NOW, async |w, tx| {
            w.record_result(tx, &set(Outcome::Failed)).await
        })
        .await;
        let Err(WriteError::Refused { message, .. }) = refused else {
            panic!("{}: passed -> failed accepted", db.name)
        };
        assert!(message.contains("reset"), "{}: {message}", db.name);
        assert_eq!(
            enrolment(&db.store, "anne").await.expect("anne").result,
            Outcome::Passed,
            "{}: nothing changed",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d4_reset_and_reassign_start_a_new_cycle_revoke_the_certificate_and_clear_completion() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        for who in ["anne", "jan"] {
            marks(&db.store, who, ALL_FOUR).await;
            pass_exam(&db.store, who).await;
            let mut tx = db.store.begin().await.expect("tx");
            on!(&mut tx, c => sqlx::query(
                "INSERT INTO certificates (course_id, person_id, cycle, number, verification_code, issued_at) VALUES ('c1', $1, 1, $2, $3, $4)",
            ).bind(who).bind(format!("FA-2026-{who}")).bind(format!("code-{who}")).bind(at(NOW)).execute(&mut **c).await.map(|_| ())).expect("certificate");
            tx.commit().await.expect("commit");
        }
        apply(&db.store, &rules(), NOW, async |w, tx| {
            w.reset(tx, "c1", "anne").await
        })
        .await
        .expect("reset");
        apply(&db.store, &rules(), NOW, async |w, tx| {
            w.reassign(tx, "c1", "jan").await
        })
        .await
        .expect("reassign");
        for who in ["anne", "jan"] {
            let e = enrolment(&db.store, who).await.expect("enrolment");
            assert_eq!(
                (e.cycle, e.result, e.completed_at),
                (2, Outcome::Registered, None),
                "{}: {who}",
                db.name
            );
            let mut tx = db.store.begin().await.expect("tx");
            assert!(
                certificates::numbers_in_force(&mut tx, "c1")
                    .await
                    .expect("certs")
                    .is_empty(),
                "{}: {who}'s certificate revoked",
                db.name
            );
            tx.rollback().await.expect("rollback");
        }
        let p = common::read(&db.store, async |tx| {
            enrolments::progress(tx, "c1", &["anne".into(), "jan".into()]).await
        })
        .await;
        assert_eq!(
            p.marks.get("anne").map(|m| m.len()),
            Some(4),
            "{}: a reset keeps attendance",
            db.name
        );
        assert!(
            !p.marks.contains_key("jan"),
            "{}: a reassign clears attendance",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d6_a_walk_in_mark_creates_the_enrolment_and_gets_full_credit() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        apply(&db.store, &rules(), NOW, async |w, tx| {
            w.upsert_person(tx, &person("bram", "Bram Mulder")).await
        })
        .await
        .expect("person");
        marks(&db.store, "bram", ALL_FOUR).await;
        pass_exam(&db.store, "bram").await;
        let e = enrolment(&db.store, "bram")
            .await
            .expect("walk-in enrolment created");
        assert!(e.walk_in, "{}", db.name);
        assert!(e.completed_at.is_some(), "{}: full credit", db.name);
        // An unknown person is refused, not created.
        let out = apply(&db.store, &rules(), NOW, async |w, tx| {
            Ok(
                w.mark_attendance(tx, &[mark("nobody", "p1", Mark::Attended)])
                    .await?
                    .remove(0),
            )
        })
        .await
        .expect("sql");
        assert!(
            matches!(
                out,
                Err(WriteError::Missing {
                    column: Some("person_id"),
                    ..
                })
            ),
            "{}",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d7_removal_is_allowed_before_the_first_part_and_refused_after_it() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        let before = "2026-03-01T10:00:00+01:00";
        apply(&db.store, &rules(), before, async |w, tx| {
            w.remove(tx, "c1", "zoe").await
        })
        .await
        .expect("removed before start");
        assert!(enrolment(&db.store, "zoe").await.is_none(), "{}", db.name);
        let after = "2026-03-02T09:00:00+01:00";
        let refused = apply(&db.store, &rules(), after, async |w, tx| {
            w.remove(tx, "c1", "jan").await
        })
        .await;
        let Err(WriteError::Refused { message, .. }) = refused else {
            panic!("{}: removal after start accepted", db.name)
        };
        assert!(message.contains("not_attended"), "{}: {message}", db.name);
        assert!(enrolment(&db.store, "jan").await.is_some(), "{}", db.name);
        // The history keeps the removed booking.
        let h = common::read(&db.store, async |tx| {
            history::of_participant(tx, "c1", "zoe").await
        })
        .await;
        assert!(
            h.iter()
                .any(|r| r.change == "removed" && r.before.is_some()),
            "{}",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d9_deregistered_and_cancelled_are_recorded_as_events_for_the_engine() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        apply(&db.store, &rules(), NOW, async |w, tx| {
            w.record_result(
                tx,
                &ResultInput {
                    course_id: "c1".into(),
                    person_id: "zoe".into(),
                    result: Outcome::Deregistered,
                    score: None,
                    comment: None,
                },
            )
            .await?;
            w.upsert_course(tx, &course("c1", "first-aid", CourseStatus::Cancelled))
                .await
        })
        .await
        .expect("changes");
        // A deregistered enrolment never completes (D3), whatever its attendance.
        marks(&db.store, "zoe", ALL_FOUR).await;
        pass_exam(&db.store, "zoe").await;
        assert!(
            enrolment(&db.store, "zoe")
                .await
                .expect("zoe")
                .completed_at
                .is_none(),
            "{}",
            db.name
        );
        let events = common::read(&db.store, async |tx| history::unprocessed(tx, 1000).await).await;
        assert!(
            events
                .iter()
                .any(|e| e.kind == "result_recorded" && e.person_id.as_deref() == Some("zoe")),
            "{}",
            db.name
        );
        assert!(
            events
                .iter()
                .any(|e| e.kind == "course_changed" && e.person_id.is_none()),
            "{}",
            db.name
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind == "participant_added")
                .count(),
            3,
            "{}",
            db.name
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn d10_every_change_has_a_history_row_and_history_cannot_be_rewritten() {
    for db in TestDb::all().await {
        office(&db.store, &rules()).await;
        marks(&db.store, "anne", &[("p1", Mark::Attended)]).await;
        marks(&db.store, "anne", &[("p1", Mark::NotAttended)]).await;
        let h = common::read(&db.store, async |tx| {
            history::of_participant(tx, "c1", "anne").await
        })
        .await;
        let marks: Vec<_> = h.iter().filter(|r| r.entity == "attendance").collect();
        assert_eq!(marks.len(), 2, "{}", db.name);
        assert!(
            marks[1]
                .before
                .as_deref()
                .is_some_and(|b| b.contains("attended")),
            "{}",
            db.name
        );
        assert!(
            marks[1]
                .after
                .as_deref()
                .is_some_and(|a| a.contains("not_attended")),
            "{}",
            db.name
        );
        assert_eq!(marks[1].actor, "test", "{}", db.name);

        for sql in [
            "UPDATE history SET actor = 'mallory'",
            "DELETE FROM history",
        ] {
            let mut tx = db.store.begin().await.expect("tx");
            let r = on!(&mut tx, c => sqlx::query(sql).execute(&mut **c).await.map(|_| ()));
            assert!(r.is_err(), "{}: {sql} was allowed", db.name);
            let _ = tx.rollback().await;
        }
        db.cleanup().await;
    }
}
