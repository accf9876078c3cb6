//! The tables `history` (D10: append-only, triggers refuse any rewrite) and `events`
//! (what the rule engine has to look at, filled from history rows by a trigger, so that an
//! event is never recorded without its history row). History rows are buffered during a
//! change and written in bulk in the same transaction as the change itself.

use super::{Tx, on};
use crate::domain::EventKind;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

/// One change of state: what, to whom, before and after.
#[derive(Debug, Clone)]
pub struct Change {
    pub entity: &'static str,
    pub course_id: Option<String>,
    pub person_id: Option<String>,
    pub part_id: Option<String>,
    pub change: &'static str,
    pub before: Option<Json>,
    pub after: Option<Json>,
    /// The event this change raises for the rule engine, if any.
    pub event: Option<(EventKind, Option<i64>)>,
}

/// A JSON document as text, made once when the change is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(pub String);

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Json {
        Json(v.to_string())
    }
}

impl Json {
    /// Serializes a value; the types recorded here always serialize.
    pub fn of<T: serde::Serialize>(v: &T) -> Json {
        Json(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
    }
}

/// `Some(value)` as recorded JSON.
pub fn j(v: serde_json::Value) -> Option<Json> {
    Some(Json::from(v))
}

/// History and events waiting to be written, with who and why.
#[derive(Debug)]
pub struct Changes {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pending: Vec<Change>,
}

/// Rows per multi-row INSERT: 12 parameters a row stays under SQLite's 32,766.
const BATCH: usize = 1000;

impl Changes {
    pub fn new(at: DateTime<Utc>, actor: &str, source: &str) -> Changes {
        Changes {
            at,
            actor: actor.to_string(),
            source: source.to_string(),
            pending: Vec::new(),
        }
    }

    pub fn push(&mut self, c: Change) {
        self.pending.push(c);
    }

    /// Writes the buffered history rows and events.
    pub async fn flush(&mut self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(BATCH) {
            // The events table is filled by a trigger from the `event` column.
            on!(tx, c => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO history (at, actor, source, entity, course_id, person_id, part_id, change, before, after, event, cycle) ",
                );
                q.push_values(chunk, |mut b, ch| {
                    b.push_bind(self.at)
                        .push_bind(self.actor.clone())
                        .push_bind(self.source.clone())
                        .push_bind(ch.entity)
                        .push_bind(ch.course_id.clone())
                        .push_bind(ch.person_id.clone())
                        .push_bind(ch.part_id.clone())
                        .push_bind(ch.change)
                        .push_bind(ch.before.as_ref().map(|j| j.0.clone()))
                        .push_bind(ch.after.as_ref().map(|j| j.0.clone()))
                        .push_bind(ch.event.map(|(k, _)| k.as_str()))
                        .push_bind(ch.event.and_then(|(_, c)| c));
                });
                q.build().execute(&mut **c).await?;
            });
        }
        Ok(())
    }
}

/// One row of the history (D10).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct HistoryRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pub entity: String,
    pub course_id: Option<String>,
    pub person_id: Option<String>,
    pub part_id: Option<String>,
    pub change: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The history of one participant in one course, oldest first (a certification with the
/// same id as the course has its own history, left out here).
pub async fn of_participant(
    tx: &mut Tx,
    course: &str,
    person: &str,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, at, actor, source, entity, course_id, person_id, part_id, change, before, after \
         FROM history WHERE course_id = $1 AND person_id = $2 AND entity <> 'certification' ORDER BY id",
    ).bind(course).bind(person).fetch_all(&mut **c).await)
}

/// The certification history of a person (D10), of one certification or all.
pub async fn of_learner(
    tx: &mut Tx,
    person: &str,
    certification: Option<&str>,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, at, actor, source, entity, course_id, person_id, part_id, change, before, after \
         FROM history WHERE entity = 'certification' AND person_id = $1 AND ($2 IS NULL OR course_id = $2) ORDER BY id",
    ).bind(person).bind(certification).fetch_all(&mut **c).await)
}

/// The newest history id (SQLite's `serve` polls it to notice changes by other processes).
pub async fn last_id(store: &super::Store) -> Result<i64, sqlx::Error> {
    let id: Option<i64> = match store {
        super::Store::Sqlite(p, _) => {
            sqlx::query_scalar("SELECT MAX(id) FROM history")
                .fetch_one(p)
                .await?
        }
        super::Store::Postgres(p) => {
            sqlx::query_scalar("SELECT MAX(id) FROM history")
                .fetch_one(p)
                .await?
        }
    };
    Ok(id.unwrap_or(0))
}

/// An event recorded for the rule engine. For `certification_status_changed` the subject
/// is a certification learner: `course_id` holds the certification id and `part_id` the
/// status the learner moved to.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub course_id: String,
    pub person_id: Option<String>,
    pub part_id: Option<String>,
    pub cycle: Option<i64>,
}

/// Whether any event waits for the engine (a cheap read before taking the write lock).
pub async fn any_unprocessed(store: &super::Store) -> Result<bool, sqlx::Error> {
    store
        .any(
            "SELECT EXISTS (SELECT 1 FROM events WHERE processed_at IS NULL) OR $1 IS NULL",
            Utc::now(),
        )
        .await
}

/// Takes the engine's turn: on PostgreSQL several processes ingest one at a time, in
/// event order (a transaction-scoped advisory lock); SQLite has one writer anyway.
pub async fn take_ingest_turn(tx: &mut Tx) -> Result<(), sqlx::Error> {
    if let Tx::Postgres(c) = tx {
        sqlx::query("SELECT pg_advisory_xact_lock(7468201)")
            .execute(&mut **c)
            .await?;
    }
    Ok(())
}

/// Events not yet processed by the engine, oldest first.
pub async fn unprocessed(tx: &mut Tx, limit: i64) -> Result<Vec<EventRow>, sqlx::Error> {
    const SQL: &str = "SELECT id, at, kind, course_id, person_id, part_id, cycle FROM events \
                       WHERE processed_at IS NULL ORDER BY id LIMIT $1";
    if let Tx::Sqlite(c) = tx {
        // Packed (one text for the batch): a thousand rows of seven values each crossed
        // from SQLite's thread one by one. A row that does not read back (a time written
        // by something else than registrar) falls back to the plain rows.
        let packed: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(id || char(31) || at || char(31) || kind || char(31) || course_id \
             || char(31) || COALESCE(person_id, '') || char(31) || COALESCE(part_id, '') \
             || char(31) || COALESCE(cycle, ''), char(30)) \
             FROM (SELECT * FROM events WHERE processed_at IS NULL ORDER BY id LIMIT $1)",
        )
        .bind(limit)
        .fetch_one(&mut **c)
        .await?;
        if let Ok(mut events) = unpack_events(packed.as_slice()) {
            events.sort_unstable_by_key(|e| e.id);
            return Ok(events);
        }
    }
    on!(tx, c => sqlx::query_as(SQL).bind(limit).fetch_all(&mut **c).await)
}

fn unpack_events(packed: &[String]) -> Result<Vec<EventRow>, sqlx::Error> {
    use super::packed;
    packed::rows::<7>(packed, "event")
        .map(|r| {
            let [id, at, kind, course, person, part, cycle] = r?;
            Ok(EventRow {
                id: packed::int(id, "event")?,
                at: packed::time(at)?.ok_or_else(|| packed::bad("event"))?,
                kind: kind.to_string(),
                course_id: course.to_string(),
                person_id: packed::opt(person).map(str::to_string),
                part_id: packed::opt(part).map(str::to_string),
                cycle: packed::opt_int(cycle, "event")?,
            })
        })
        .collect()
}

/// Marks events processed.
pub async fn mark_processed(
    tx: &mut Tx,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(1000) {
        on!(tx, c => {
            let mut q = QueryBuilder::new("UPDATE events SET processed_at = ");
            q.push_bind(now).push(" WHERE id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut **c).await?;
        });
    }
    Ok(())
}
