-- Why an instance waits, expired or was cancelled, as the last evaluation or the
-- cancellation found it (a JSON array of reasons): `plan` explains every instance that
-- did not send, also long after the fact.
ALTER TABLE actions ADD COLUMN reason TEXT;
-- The last moment the instance became eligible to be evaluated (created, or its subject
-- changed): with due_at it tells a T4 catch-up (due while no pass ran) from a participant
-- who completed late.
ALTER TABLE actions ADD COLUMN rechecked_at TIMESTAMPTZ;
UPDATE actions SET rechecked_at = event_at;
-- Conditions changed meaning (D3 as amended: a complete enrolment meets D1 and D2): every
-- waiting instance is evaluated again by the next pass.
UPDATE actions SET recheck = 1 WHERE state = 'waiting';
