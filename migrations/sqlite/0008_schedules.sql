-- Schedule-driven rules (T6). An instance of a schedule rule is one per (rule, subject,
-- scheduled instant): the instant (Unix seconds; 0 for event rules) joins the dedup keys
-- of actions and deliveries, and the office is a subject of its own (a digest). SQLite
-- cannot change a table's constraints: both tables are rebuilt, rows and ids kept.
CREATE TABLE actions_new (
    id           INTEGER PRIMARY KEY,
    rule_id      TEXT NOT NULL,
    course_id    TEXT NOT NULL,
    person_id    TEXT NOT NULL,
    cycle        BIGINT NOT NULL,
    state        TEXT NOT NULL,
    event_at     TEXT NOT NULL,
    due_at       TEXT,
    expires_at   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    recheck      INTEGER NOT NULL DEFAULT 1,
    subject_kind TEXT NOT NULL DEFAULT 'course'
        CHECK (subject_kind IN ('course', 'certification', 'office')),
    reason       TEXT,
    rechecked_at TEXT,
    instant      BIGINT NOT NULL DEFAULT 0,
    UNIQUE (course_id, person_id, rule_id, cycle, instant)
);
INSERT INTO actions_new (id, rule_id, course_id, person_id, cycle, state, event_at, due_at,
        expires_at, created_at, updated_at, recheck, subject_kind, reason, rechecked_at)
    SELECT id, rule_id, course_id, person_id, cycle, state, event_at, due_at,
        expires_at, created_at, updated_at, recheck, subject_kind, reason, rechecked_at
    FROM actions;

CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY,
    action_id       BIGINT NOT NULL REFERENCES actions_new(id),
    rule_id         TEXT NOT NULL,
    course_id       TEXT NOT NULL,
    person_id       TEXT NOT NULL,
    cycle           BIGINT NOT NULL,
    state           TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    message         BLOB,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    claimed_by      TEXT,
    claimed_at      TEXT,
    due_at          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         TEXT,
    subject_kind    TEXT NOT NULL DEFAULT 'course'
        CHECK (subject_kind IN ('course', 'certification', 'office')),
    instant         BIGINT NOT NULL DEFAULT 0,
    UNIQUE (rule_id, course_id, person_id, cycle, instant),
    UNIQUE (action_id)
);
INSERT INTO deliveries_new (id, action_id, rule_id, course_id, person_id, cycle, state,
        recipients, subject, message_id, message, attempts, next_attempt_at, last_error,
        claimed_by, claimed_at, due_at, created_at, updated_at, sent_at, subject_kind)
    SELECT id, action_id, rule_id, course_id, person_id, cycle, state,
        recipients, subject, message_id, message, attempts, next_attempt_at, last_error,
        claimed_by, claimed_at, due_at, created_at, updated_at, sent_at, subject_kind
    FROM deliveries;

DROP TABLE deliveries;
DROP TABLE actions;
-- Renaming also renames the reference of deliveries_new.
ALTER TABLE actions_new RENAME TO actions;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX actions_to_check ON actions(due_at) WHERE state = 'waiting' AND recheck = 1;
CREATE INDEX actions_to_expire ON actions(expires_at) WHERE state = 'waiting' AND expires_at IS NOT NULL;
CREATE INDEX deliveries_ready ON deliveries(next_attempt_at) WHERE state IN ('queued', 'retrying');
CREATE INDEX deliveries_in_flight ON deliveries(claimed_by) WHERE state = 'sending';
CREATE INDEX deliveries_state ON deliveries(state, id);

-- One row per schedule rule: the latest instant claimed (by one process, in the
-- transaction that claims it), the instant before it (a digest's `since`), whether every
-- subject of it was reached, and when the rule was first seen (earlier instants are not
-- its own: a new rule does not catch up on last week).
CREATE TABLE schedules (
    rule_id    TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    since      TEXT,
    instant    TEXT,
    done       INTEGER NOT NULL DEFAULT 1
);
