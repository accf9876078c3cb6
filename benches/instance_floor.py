#!/usr/bin/env python3
"""What SQLite alone costs to store action instances, a row each (issue 18's ingest target).

Writes 800,000 rows shaped like registrar's `actions` (the same columns, 35-byte
timestamps, the INSERT ... SELECT from json_each per course and rule that ingest runs, a
commit per 10 courses = 4,000 rows, WAL, synchronous=NORMAL, a 32 MiB page cache) twice:
into the table with its unique key and its indexes as migrations 0008-0010 leave them, and
into the bare table with no index at all. No Rust, no sqlx: the floor under ingest.

    python3 benches/instance_floor.py [COURSES]    (2000 courses x 100 people x 4 rules)
"""
import json, os, sqlite3, sys, tempfile, time

TABLE = """CREATE TABLE actions (
    id INTEGER PRIMARY KEY, rule_id TEXT NOT NULL, course_id TEXT NOT NULL,
    person_id TEXT NOT NULL, cycle BIGINT NOT NULL, state TEXT NOT NULL,
    event_at TEXT NOT NULL, due_at TEXT, expires_at TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, recheck INTEGER NOT NULL DEFAULT 1,
    subject_kind TEXT NOT NULL DEFAULT 'course', reason TEXT, rechecked_at TEXT,
    instant BIGINT NOT NULL DEFAULT 0, version BIGINT NOT NULL DEFAULT 0{unique})"""
UNIQUE = ",\n    UNIQUE (course_id, person_id, rule_id, cycle, instant)"
INDEXES = [
    "CREATE INDEX actions_to_check ON actions(due_at) WHERE state = 'waiting' AND recheck = 1",
    "CREATE INDEX actions_to_expire ON actions(expires_at) WHERE state = 'waiting' AND expires_at IS NOT NULL",
    "CREATE INDEX actions_approved ON actions(id) WHERE state = 'approved'",
    "CREATE INDEX actions_awaiting ON actions(id) WHERE state = 'awaiting_approval'",
    "CREATE INDEX actions_waiting ON actions(id) WHERE state = 'waiting'",
]
RULES = [("certificate", "2027-01-20T22:59:59+00:00"), ("welcome", "2026-12-29T08:00:00+00:00"),
         ("reminder", "2027-01-04T15:00:00+00:00"), ("survey", "2027-01-21T09:00:00+00:00")]
TS = "2026-11-25T10:48:15.894970466+00:00"


def run(indexed, courses, path):
    db = sqlite3.connect(path, isolation_level=None)
    for p in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-32768"):
        db.execute("PRAGMA " + p)
    db.execute(TABLE.format(unique=UNIQUE if indexed else ""))
    for i in INDEXES if indexed else []:
        db.execute(i)
    conflict = " ON CONFLICT (rule_id, course_id, person_id, cycle, instant) DO NOTHING" if indexed else ""
    people = courses * 100 // 5
    start = time.time()
    for first in range(0, courses, 10):
        db.execute("BEGIN")
        for c in range(first, first + 10):
            ps = json.dumps([f"u{(c * 100 + i * 7) % people}" for i in range(100)])
            for rule, due in RULES:
                db.execute(
                    "INSERT INTO actions (rule_id, subject_kind, course_id, person_id, cycle, state, "
                    "event_at, due_at, expires_at, created_at, updated_at, rechecked_at) "
                    "SELECT ?, 'course', ?, value, 1, 'waiting', ?, ?, NULL, ?, ?, ? FROM json_each(?) WHERE true"
                    + conflict, (rule, f"c{c}", TS, due, TS, TS, TS, ps))
        db.execute("COMMIT")
    took = time.time() - start
    db.close()
    return took


def main():
    courses = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rows = courses * 100 * len(RULES)
    print(f"SQLite {sqlite3.sqlite_version}: {rows:,} instance rows, a commit per 4,000")
    for indexed in (True, False):
        with tempfile.TemporaryDirectory() as d:
            took = run(indexed, courses, os.path.join(d, "floor.db"))
        what = "with the unique key and indexes" if indexed else "bare table, no index"
        print(f"  {what:32} {took:6.2f} s  {rows / took:>9,.0f} rows/s  "
              f"(4,000,000 rows: {4_000_000 / (rows / took):.1f} s)")


if __name__ == "__main__":
    main()
