-- Schedule-driven rules (T6). An instance of a schedule rule is one per (rule, subject,
-- scheduled instant): the instant (Unix seconds; 0 for event rules) joins the dedup keys
-- of actions and deliveries, and the office is a subject of its own (a digest).
ALTER TABLE actions ADD COLUMN instant BIGINT NOT NULL DEFAULT 0;
ALTER TABLE actions DROP CONSTRAINT actions_course_id_person_id_rule_id_cycle_key;
ALTER TABLE actions ADD CONSTRAINT actions_dedup UNIQUE (course_id, person_id, rule_id, cycle, instant);
ALTER TABLE actions DROP CONSTRAINT actions_subject_kind_check;
ALTER TABLE actions ADD CONSTRAINT actions_subject_kind_check
    CHECK (subject_kind IN ('course', 'certification', 'office'));

ALTER TABLE deliveries ADD COLUMN instant BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_rule_id_course_id_person_id_cycle_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_dedup UNIQUE (rule_id, course_id, person_id, cycle, instant);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_subject_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_subject_kind_check
    CHECK (subject_kind IN ('course', 'certification', 'office'));

-- One row per schedule rule: the latest instant claimed (by one process, in the
-- transaction that claims it), the instant before it (a digest's `since`), whether every
-- subject of it was reached, and when the rule was first seen (earlier instants are not
-- its own: a new rule does not catch up on last week).
CREATE TABLE schedules (
    rule_id    TEXT PRIMARY KEY,
    first_seen TIMESTAMPTZ NOT NULL,
    since      TIMESTAMPTZ,
    instant    TIMESTAMPTZ,
    done       INT NOT NULL DEFAULT 1
);
