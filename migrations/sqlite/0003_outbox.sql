-- The outbox (T3, SPEC §6): one delivery per fired action, keyed by the dedup key
-- (rule, subject, cycle). Rows are never deleted; their state moves
-- queued -> sending -> sent, or retrying -> ... -> failed.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    action_id       BIGINT NOT NULL REFERENCES actions(id),
    rule_id         TEXT NOT NULL,
    course_id       TEXT NOT NULL,
    person_id       TEXT NOT NULL,
    cycle           BIGINT NOT NULL,
    state           TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    -- The exact RFC 5322 message, rendered once when the action fired, so that a resend
    -- after a crash is byte for byte the same message with the same Message-ID.
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
    UNIQUE (rule_id, course_id, person_id, cycle),
    UNIQUE (action_id)
);
CREATE INDEX deliveries_ready ON deliveries(next_attempt_at) WHERE state IN ('queued', 'retrying');
CREATE INDEX deliveries_in_flight ON deliveries(claimed_by) WHERE state = 'sending';
CREATE INDEX deliveries_state ON deliveries(state, id);

-- Running registrar processes, so that a message claimed by one that died is released.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

-- 1: to be evaluated once due (new, or its subject changed since it was last evaluated).
ALTER TABLE actions ADD COLUMN recheck INTEGER NOT NULL DEFAULT 1;
-- The timer's "what is due now?" (replaces the index of every waiting instance: an
-- instance evaluated with its conditions unmet waits for a change, not for the timer).
DROP INDEX actions_waiting_due;
CREATE INDEX actions_to_check ON actions(due_at) WHERE state = 'waiting' AND recheck = 1;
CREATE INDEX actions_to_expire ON actions(expires_at) WHERE state = 'waiting' AND expires_at IS NOT NULL;
