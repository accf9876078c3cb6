//! D10 history rows and engine events, buffered during a change and written in bulk in
//! the same transaction as the change itself.

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
