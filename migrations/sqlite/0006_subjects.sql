-- Action instances and deliveries name what their subject is: a participant of a course,
-- or a learner of a certification. Until now a certification instance kept the
-- certification id in course_id, so a course with the same id shared its instances.
ALTER TABLE actions ADD COLUMN subject_kind TEXT NOT NULL DEFAULT 'course'
    CHECK (subject_kind IN ('course', 'certification'));
-- Existing certification instances: made by a certification_status_changed event of that
-- learner, cycle and moment (or about an id that is no course at all).
UPDATE actions SET subject_kind = 'certification'
WHERE NOT EXISTS (SELECT 1 FROM courses c WHERE c.id = actions.course_id)
   OR EXISTS (SELECT 1 FROM history h
              WHERE h.entity = 'certification' AND h.event = 'certification_status_changed'
                AND h.course_id = actions.course_id AND h.person_id = actions.person_id
                AND h.cycle = actions.cycle AND h.at = actions.event_at);

ALTER TABLE deliveries ADD COLUMN subject_kind TEXT NOT NULL DEFAULT 'course'
    CHECK (subject_kind IN ('course', 'certification'));
UPDATE deliveries SET subject_kind = 'certification'
WHERE EXISTS (SELECT 1 FROM actions a WHERE a.id = deliveries.action_id AND a.subject_kind = 'certification');

-- The digest of each action rule the waiting instances were last evaluated against: when
-- a rule changes (edited, enabled, disabled), its waiting instances are evaluated again,
-- so that `plan` and the pass agree.
CREATE TABLE rule_versions (
    rule_id TEXT PRIMARY KEY,
    digest  TEXT NOT NULL
);
