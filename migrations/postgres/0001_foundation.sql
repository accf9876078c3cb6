-- Participant state, history (D10) and the event queue for the rule engine.
-- When a mark or part result was recorded, and by whom, is in the history.
-- Same shape as the SQLite schema; timestamps are TIMESTAMPTZ.

CREATE TABLE courses (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    type_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    start_at    TIMESTAMPTZ NOT NULL,
    end_at      TIMESTAMPTZ NOT NULL,
    location    TEXT,
    fields      TEXT NOT NULL DEFAULT '{}',
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE parts (
    course_id           TEXT NOT NULL REFERENCES courses(id),
    id                  TEXT NOT NULL,
    name                TEXT NOT NULL,
    start_at            TIMESTAMPTZ NOT NULL,
    end_at              TIMESTAMPTZ NOT NULL,
    attendance_required BOOLEAN NOT NULL,
    passing_required    BOOLEAN NOT NULL,
    min_minutes         BIGINT,
    PRIMARY KEY (course_id, id)
);

CREATE TABLE people (
    id          TEXT PRIMARY KEY,
    full_name   TEXT NOT NULL,
    email       TEXT,
    first_name  TEXT,
    locale      TEXT,
    fields      TEXT NOT NULL DEFAULT '{}',
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE enrolments (
    course_id     TEXT NOT NULL REFERENCES courses(id),
    person_id     TEXT NOT NULL REFERENCES people(id),
    result        TEXT NOT NULL,
    score         DOUBLE PRECISION,
    comment       TEXT,
    walk_in       BOOLEAN NOT NULL,
    cycle         BIGINT NOT NULL,
    completed_at  TIMESTAMPTZ,
    completed_via TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (course_id, person_id)
);
CREATE INDEX enrolments_person ON enrolments(person_id);

CREATE TABLE attendance (
    course_id  TEXT NOT NULL,
    person_id  TEXT NOT NULL,
    part_id    TEXT NOT NULL,
    status     TEXT NOT NULL,
    minutes    BIGINT,
    PRIMARY KEY (course_id, person_id, part_id)
);

CREATE TABLE part_results (
    course_id   TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    part_id     TEXT NOT NULL,
    passed      BOOLEAN NOT NULL,
    PRIMARY KEY (course_id, person_id, part_id)
);

CREATE TABLE certificates (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    course_id         TEXT NOT NULL,
    person_id         TEXT NOT NULL,
    cycle             BIGINT NOT NULL,
    number            TEXT NOT NULL UNIQUE,
    verification_code TEXT NOT NULL UNIQUE,
    issued_at         TIMESTAMPTZ NOT NULL,
    valid_until       TIMESTAMPTZ,
    revoked_at        TIMESTAMPTZ,
    UNIQUE (course_id, person_id, cycle)
);

-- D10: append-only. The triggers refuse any rewrite, whoever asks.
CREATE TABLE history (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    source     TEXT NOT NULL,
    entity     TEXT NOT NULL,
    course_id  TEXT,
    person_id  TEXT,
    part_id    TEXT,
    change     TEXT NOT NULL,
    before     TEXT,
    after      TEXT,
    event      TEXT,
    cycle      BIGINT
);
CREATE INDEX history_subject ON history(course_id, person_id);
CREATE FUNCTION history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'history is append-only'; END; $$;
CREATE TRIGGER history_no_rewrite BEFORE UPDATE OR DELETE OR TRUNCATE ON history
FOR EACH STATEMENT EXECUTE FUNCTION history_append_only();

-- State changes the rule engine has to look at.
CREATE TABLE events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL,
    kind         TEXT NOT NULL,
    course_id    TEXT NOT NULL,
    person_id    TEXT,
    part_id      TEXT,
    cycle        BIGINT,
    processed_at TIMESTAMPTZ
);
CREATE INDEX events_unprocessed ON events(id) WHERE processed_at IS NULL;

-- A history row that raises an event queues it for the engine, in the same statement.
CREATE FUNCTION history_raise_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (at, kind, course_id, person_id, part_id, cycle)
    VALUES (NEW.at, NEW.event, COALESCE(NEW.course_id, ''), NEW.person_id, NEW.part_id, NEW.cycle);
    RETURN NULL;
END; $$;
CREATE TRIGGER history_raises_event AFTER INSERT ON history
FOR EACH ROW WHEN (NEW.event IS NOT NULL) EXECUTE FUNCTION history_raise_event();
