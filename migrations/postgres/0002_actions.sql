-- Action instances (T2, T3): one per (rule, subject, cycle), created by the event that
-- triggers the rule, with its due time stored and indexed.
CREATE TABLE actions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id     TEXT NOT NULL,
    course_id   TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    cycle       BIGINT NOT NULL,
    -- waiting: not fired yet; due: fired, to be delivered; awaiting_approval: manual rule;
    -- cancelled (D9, removal, new cycle); expired (expires_after passed).
    state       TEXT NOT NULL,
    event_at    TIMESTAMPTZ NOT NULL,
    due_at      TIMESTAMPTZ,
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- The dedup key; course first so that it also serves per-course and per-participant lookups.
    UNIQUE (course_id, person_id, rule_id, cycle)
);
CREATE INDEX actions_waiting_due ON actions(due_at) WHERE state = 'waiting';
