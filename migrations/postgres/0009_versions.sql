-- Every change of an action instance counts up `version`. The firing pass decides on a
-- snapshot and renders outside the write transaction; it then records its verdict only
-- for the instances whose version is still the one it read (a change in between leaves
-- the instance to be evaluated again).
ALTER TABLE actions ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
-- Approved manual instances are few: the pass looks for them first, by this index, not by
-- reading every instance.
CREATE INDEX actions_approved ON actions(id) WHERE state = 'approved';
