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
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// The event this change raises for the rule engine, if any.
    pub event: Option<(EventKind, Option<i64>)>,
}

/// History and events waiting to be written, with who and why.
#[derive(Debug)]
pub struct Changes {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pending: Vec<Change>,
    pub written: u64,
}

/// Rows per multi-row INSERT: well under both engines' bind-parameter limits.
const BATCH: usize = 400;

impl Changes {
    pub fn new(at: DateTime<Utc>, actor: &str, source: &str) -> Changes {
        Changes { at, actor: actor.to_string(), source: source.to_string(), pending: Vec::new(), written: 0 }
    }

    pub fn push(&mut self, c: Change) {
        self.pending.push(c);
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes the buffered history rows and events.
    pub async fn flush(&mut self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        let pending = std::mem::take(&mut self.pending);
        for chunk in pending.chunks(BATCH) {
            on!(tx, c => {
                let mut q = QueryBuilder::new(
                    "INSERT INTO history (at, actor, source, entity, course_id, person_id, part_id, change, before, after) ",
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
                        .push_bind(ch.before.as_ref().map(|v| v.to_string()))
                        .push_bind(ch.after.as_ref().map(|v| v.to_string()));
                });
                q.build().execute(&mut **c).await?;
            });
            let events: Vec<&Change> = chunk.iter().filter(|c| c.event.is_some()).collect();
            if !events.is_empty() {
                on!(tx, c => {
                    let mut q = QueryBuilder::new("INSERT INTO events (at, kind, course_id, person_id, part_id, cycle) ");
                    q.push_values(events, |mut b, ch| {
                        let (kind, cycle) = ch.event.unwrap_or((EventKind::CourseChanged, None));
                        b.push_bind(self.at)
                            .push_bind(kind.as_str())
                            .push_bind(ch.course_id.clone().unwrap_or_default())
                            .push_bind(ch.person_id.clone())
                            .push_bind(ch.part_id.clone())
                            .push_bind(cycle);
                    });
                    q.build().execute(&mut **c).await?;
                });
            }
            self.written += chunk.len() as u64;
        }
        Ok(())
    }
}
