-- Certifications (SPEC §2): one row per learner and certification; every change of it is
-- in the history (entity 'certification', course_id holding the certification id).
CREATE TABLE certification_learners (
    certification_id    TEXT NOT NULL,
    person_id           TEXT NOT NULL REFERENCES people(id),
    status              TEXT NOT NULL,
    cycle               BIGINT NOT NULL,
    cycle_started_at    TIMESTAMPTZ NOT NULL,
    paid                BOOLEAN NOT NULL,
    training_overridden BOOLEAN NOT NULL,
    exam_passed         BOOLEAN NOT NULL,
    exam_test_out       BOOLEAN NOT NULL,
    valid_until         TIMESTAMPTZ,
    assigned_at         TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (certification_id, person_id)
);
CREATE INDEX certification_learners_person ON certification_learners(person_id);
