//! D10 history rows and engine events, buffered during a change and written in bulk in
//! the same transaction as the change itself.

use super::{Tx, on};
use crate::domain::EventKind;
use chrono::{DateTime, Utc};

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
const BATCH: usize = 1000;

const INSERT_HISTORY_SQLITE: &str = "INSERT INTO history \
    (at, actor, source, entity, course_id, person_id, part_id, change, before, after, event, cycle) \
    SELECT $1, $2, $3, j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, \
    j.value->>6, j.value->>7, CAST(j.value->>8 AS BIGINT) FROM json_each($4) AS j ORDER BY j.key";
const INSERT_HISTORY_PG: &str = "INSERT INTO history \
    (at, actor, source, entity, course_id, person_id, part_id, change, before, after, event, cycle) \
    SELECT $1, $2, $3, j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, \
    j.value->>6, j.value->>7, CAST(j.value->>8 AS BIGINT) \
    FROM json_array_elements($4::json) WITH ORDINALITY AS j(value, n) ORDER BY j.n";

impl Changes {
    pub fn new(at: DateTime<Utc>, actor: &str, source: &str) -> Changes {
        Changes {
            at,
            actor: actor.to_string(),
            source: source.to_string(),
            pending: Vec::new(),
            written: 0,
        }
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
        let tx_is_pg = matches!(tx, Tx::Postgres(_));
        for chunk in pending.chunks(BATCH) {
            // One JSON parameter per chunk: the database unpacks the rows itself, which
            // costs far less than thousands of separate bind parameters. The events table
            // is filled by a trigger from the `event` column.
            // before/after go in as JSON values; `->>` gives back their text.
            let rows: Vec<_> = chunk
                .iter()
                .map(|ch| {
                    (
                        ch.entity,
                        &ch.course_id,
                        &ch.person_id,
                        &ch.part_id,
                        ch.change,
                        &ch.before,
                        &ch.after,
                        ch.event.map(|(k, _)| k.as_str()),
                        ch.event.and_then(|(_, c)| c),
                    )
                })
                .collect();
            let rows = serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(e.into()))?;
            on!(tx, c => sqlx::query(super::pick(tx_is_pg, INSERT_HISTORY_PG, INSERT_HISTORY_SQLITE))
                .bind(self.at).bind(self.actor.clone()).bind(self.source.clone()).bind(rows)
                .execute(&mut **c).await.map(|_| ()))?;
            self.written += chunk.len() as u64;
        }
        Ok(())
    }
}
