-- The office's pages (`serve`, /office/): accounts, their sessions, and every attempt to
-- deliver a message with the server's answer.
CREATE TABLE office_users (
    name          TEXT PRIMARY KEY,
    -- argon2id, PHC string: the password itself is never stored.
    password_hash TEXT NOT NULL,
    -- Failed sign-ins in a row, and until when the account is locked after too many.
    failures      BIGINT NOT NULL DEFAULT 0,
    locked_until  TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
-- A session is known by the SHA-256 of its cookie (a stolen database holds no cookie).
CREATE TABLE office_sessions (
    token_hash  TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES office_users(name) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX office_sessions_user ON office_sessions(user_name);
-- One row per attempt to hand a message to the server, with its answer.
CREATE TABLE delivery_attempts (
    delivery_id BIGINT NOT NULL REFERENCES deliveries(id),
    attempt     BIGINT NOT NULL,
    at          TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    answer      TEXT,
    PRIMARY KEY (delivery_id, attempt, at)
);
-- The overview's "sent today / this week" and the deliveries page's date filter.
CREATE INDEX deliveries_sent_at ON deliveries(sent_at) WHERE state = 'sent';
-- The deliveries page filtered by course or person, newest first.
CREATE INDEX deliveries_course ON deliveries(course_id, id);
CREATE INDEX deliveries_person ON deliveries(person_id, id);
-- The person page: a person's history, certificates and deliveries without a scan.
CREATE INDEX history_person ON history(person_id);
CREATE INDEX certificates_person ON certificates(person_id);
-- Messages awaiting approval are few among millions of instances: the approvals page, its
-- count on the overview and the office digest find them by this index.
CREATE INDEX actions_awaiting ON actions(id) WHERE state = 'awaiting_approval';
-- The overview's count of waiting instances.
CREATE INDEX actions_waiting ON actions(id) WHERE state = 'waiting';
