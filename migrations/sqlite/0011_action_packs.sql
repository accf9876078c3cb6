-- Action instances made together and not needed yet (issue 18): the instances of one rule
-- for the participants a course gained at one moment (an import), one row for the lot,
-- their people a JSON array. They become rows of `actions` (each with its id) when one of
-- them is first needed: at their due time, when the course's instances are cancelled or
-- given a due time one by one, or when another instance of the course is made one by one.
-- Until then every reader of instances (plan, the pages, the timer, preview) reads them
-- here; they are waiting and never evaluated, so a change of their subject has nothing to
-- mark on them.
CREATE TABLE action_packs (
    id           INTEGER PRIMARY KEY,
    rule_id      TEXT NOT NULL,
    subject_kind TEXT NOT NULL,
    course_id    TEXT NOT NULL,
    cycle        BIGINT NOT NULL,
    event_at     TEXT NOT NULL,
    -- When the change that made them happened (their instances' rechecked_at).
    seen_at      TEXT NOT NULL,
    due_at       TEXT,
    expires_at   TEXT,
    created_at   TEXT NOT NULL,
    people       TEXT NOT NULL
);
CREATE INDEX action_packs_course ON action_packs(course_id);
CREATE INDEX action_packs_due ON action_packs(due_at);
