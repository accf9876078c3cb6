//! The tables `actions` (action instances, T2/T3: one per rule, subject and cycle, with
//! its due time stored and indexed) and `rule_versions` (a digest of each rule the
//! instances were last evaluated against).
//!
//! Consistency: instances are created with `ON CONFLICT DO NOTHING` on the dedup key, by
//! one process at a time (the engine's turn, [`super::history::take_ingest_turn`]). Every
//! change of an instance counts up its `version`, also a change of its subject while it is
//! already marked for re-evaluation (`recheck = 1`). The firing pass reads and decides on
//! a snapshot, renders without a transaction, and then records its verdict in one
//! statement only where the version is still the one it read ([`set_states_if_unchanged`]):
//! a change in between (of the subject, or another process's verdict) leaves the instance
//! marked, to be evaluated again on the new facts. No change is missed, and no instance is
//! decided twice.

use super::{Lock, Store, Tx, on, packed, push_list, word};
use crate::domain::{ActionState, DeliveryState, SubjectKind};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

/// An action instance to create.
pub struct NewAction<'a> {
    pub rule: &'a str,
    pub kind: SubjectKind,
    /// The course, or for a certification learner the certification.
    pub subject: &'a str,
    pub person: &'a str,
    pub cycle: i64,
    pub event_at: DateTime<Utc>,
    /// When the change that made this instance happened (for T4: due while no pass ran).
    pub seen_at: DateTime<Utc>,
    pub due: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
}

/// Creates instances; one that exists already (same rule, subject and cycle) stays as it is.
///
/// Set-wise: the instances that differ only in their person (an import enrols a course's
/// participants at one moment, so their rules' instances share rule, subject, cycle and
/// times) are one group. A course's group becomes one pack (migration 0011: one row, its
/// people a JSON array) when the course has no instance rows yet and the group's due time
/// is still to come (or not known yet), leaving out the people already packed for the same
/// rule and cycle; otherwise one `INSERT ... SELECT` over the people as a JSON array, with
/// the times bound once. The rest go as multi-row inserts,
/// after the packs of their courses became rows, so that an instance made earlier always
/// wins as it would have as a row.
pub async fn insert<'a>(
    tx: &mut Tx,
    new: &[NewAction<'a>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    type Key<'a> = (
        &'a str,
        SubjectKind,
        &'a str,
        i64,
        DateTime<Utc>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let key_of = |a: &NewAction<'a>| -> Key<'a> {
        (
            a.rule, a.kind, a.subject, a.cycle, a.event_at, a.seen_at, a.due, a.expires,
        )
    };
    // Each instance's group, in the order of the input, so that instances are numbered as
    // their events came.
    // Hashed with foldhash: an import's millions of instances each pass through it.
    let mut index: std::collections::HashMap<Key<'_>, usize, foldhash::fast::RandomState> =
        std::collections::HashMap::default();
    let mut groups: Vec<(Key<'_>, Vec<&str>)> = Vec::new();
    let mut group_of: Vec<usize> = Vec::with_capacity(new.len());
    for a in new {
        let key = key_of(a);
        let g = *index.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        if let Some((_, people)) = groups.get_mut(g) {
            people.push(a.person);
        }
        group_of.push(g);
    }
    // Groups too small for a statement of their own go together, row by row.
    const GROUP: usize = 8;
    let big: Vec<bool> = groups.iter().map(|(_, p)| p.len() >= GROUP).collect();
    let is_big = |g: usize| big.get(g).copied().unwrap_or(false);
    // The courses of large groups: which have rows already, and who is packed in them.
    let mut courses: Vec<&str> = groups
        .iter()
        .zip(&big)
        .filter(|((k, _), b)| **b && k.1 == SubjectKind::Course && k.6.is_none_or(|d| d > now))
        .map(|((k, _), _)| k.2)
        .collect();
    courses.sort_unstable();
    courses.dedup();
    let (with_rows, packed) = if courses.is_empty() {
        Default::default()
    } else {
        (
            courses_with_rows(tx, &courses).await?,
            packed_members(tx, &courses).await?,
        )
    };
    // A large group is packed when its course has no rows and its time is still to come
    // (one due already goes in as rows: the pass that follows fires it).
    let packable = |key: &Key<'_>| {
        key.1 == SubjectKind::Course
            && !with_rows.contains(key.2)
            && key.6.is_none_or(|due| due > now)
    };
    // The courses whose new instances go in as rows: their packs become rows first, so
    // that an instance packed earlier keeps its place.
    let mut as_rows: Vec<&str> = groups
        .iter()
        .enumerate()
        .filter(|(g, (k, _))| k.1 == SubjectKind::Course && !(is_big(*g) && packable(k)))
        .map(|(_, (k, _))| k.2)
        .collect();
    as_rows.sort_unstable();
    as_rows.dedup();
    unpack(tx, &as_rows).await?;
    let packed_in = |rule: &str, course: &str, cycle: i64| {
        packed
            .get(rule)
            .and_then(|by_course| by_course.get(course))
            .and_then(|by_cycle| by_cycle.get(&cycle))
    };
    let is_packed = |rule: &str, course: &str, cycle: i64, person: &str| {
        packed_in(rule, course, cycle).is_some_and(|people| people.contains(person))
    };
    // Packed by this batch, for the (rule, course, cycle) of more than one large group
    // (usually each has one, and a group's people are told apart by sorting).
    let mut shared: std::collections::HashMap<
        (&str, &str, i64),
        usize,
        foldhash::fast::RandomState,
    > = std::collections::HashMap::default();
    for (g, (k, _)) in groups.iter().enumerate() {
        if is_big(g) && packable(k) {
            *shared.entry((k.0, k.2, k.3)).or_default() += 1;
        }
    }
    let mut packing: std::collections::HashSet<
        (&str, &str, i64, &str),
        foldhash::fast::RandomState,
    > = std::collections::HashSet::default();
    let mut packs: Vec<(Key<'_>, String)> = Vec::new();
    for (g, (key, people)) in groups.iter().enumerate() {
        if !is_big(g) {
            continue;
        }
        let (rule, kind, subject, cycle, event_at, seen_at, due, expires) = *key;
        if packable(key) {
            let before = packed_in(rule, subject, cycle);
            let alone = shared.get(&(rule, subject, cycle)).is_some_and(|n| *n == 1) && {
                let mut sorted = people.clone();
                sorted.sort_unstable();
                sorted.windows(2).all(|w| w.first() != w.get(1))
            };
            let members: Vec<&str> = people
                .iter()
                .copied()
                .filter(|p| {
                    !before.is_some_and(|b| b.contains(*p))
                        && (alone || packing.insert((rule, subject, cycle, p)))
                })
                .collect();
            if !members.is_empty() {
                packs.push((*key, super::json_param(&members)?));
            }
            continue;
        }
        for chunk in people.chunks(10_000) {
            let list = super::json_param(chunk)?;
            let from = match tx {
                Tx::Sqlite(_) => "json_each($11) WHERE true",
                Tx::Postgres(_) => "jsonb_array_elements_text($11::jsonb) AS value",
            };
            on!(tx, c => sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO actions (rule_id, subject_kind, course_id, person_id, cycle, state, event_at, due_at, \
                 expires_at, created_at, updated_at, rechecked_at) \
                 SELECT $1, $2, $3, value, $4, $5, $6, $7, $8, $9, $9, $10 FROM {from} \
                 ON CONFLICT (rule_id, course_id, person_id, cycle, instant) DO NOTHING"
            ))).bind(rule).bind(kind.as_str()).bind(subject).bind(cycle).bind(ActionState::Waiting.as_str())
                .bind(event_at).bind(due).bind(expires).bind(now).bind(seen_at).bind(list)
                .execute(&mut **c).await.map(|_| ()))?;
        }
    }
    for chunk in packs.chunks(1000) {
        on!(tx, c => {
            let mut q = QueryBuilder::new(
                "INSERT INTO action_packs (rule_id, subject_kind, course_id, cycle, event_at, seen_at, due_at, expires_at, created_at, people) ",
            );
            q.push_values(chunk, |mut b, (key, people)| {
                let (rule, kind, subject, cycle, event_at, seen_at, due, expires) = *key;
                b.push_bind(rule).push_bind(kind.as_str()).push_bind(subject).push_bind(cycle).push_bind(event_at)
                    .push_bind(seen_at).push_bind(due).push_bind(expires).push_bind(now).push_bind(people.clone());
            });
            q.build().execute(&mut **c).await?;
        });
    }
    // Packed by this batch (looked for only where this batch packed the rule, course and
    // cycle: a batch of single changes makes no pack).
    let packed_now = |rule: &str, course: &str, cycle: i64, person: &str| {
        shared.contains_key(&(rule, course, cycle))
            && groups.iter().enumerate().any(|(g, (key, people))| {
                is_big(g)
                    && packable(key)
                    && (key.0, key.2, key.3) == (rule, course, cycle)
                    && people.contains(&person)
            })
    };
    // Not one packed already (by this batch or before): that one was made first.
    let single: Vec<&NewAction<'_>> = new
        .iter()
        .zip(&group_of)
        .filter(|(a, g)| {
            !is_big(**g)
                && (a.kind != SubjectKind::Course
                    || !(is_packed(a.rule, a.subject, a.cycle, a.person)
                        || packed_now(a.rule, a.subject, a.cycle, a.person)))
        })
        .map(|(a, _)| a)
        .collect();
    for chunk in single.chunks(1000) {
        on!(tx, c => {
            let mut q = QueryBuilder::new(
                "INSERT INTO actions (rule_id, subject_kind, course_id, person_id, cycle, state, event_at, due_at, expires_at, created_at, updated_at, rechecked_at) ",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(a.rule).push_bind(a.kind.as_str()).push_bind(a.subject).push_bind(a.person).push_bind(a.cycle)
                    .push_bind(ActionState::Waiting.as_str()).push_bind(a.event_at).push_bind(a.due).push_bind(a.expires)
                    .push_bind(now).push_bind(now).push_bind(a.seen_at);
            });
            q.push(" ON CONFLICT (rule_id, course_id, person_id, cycle, instant) DO NOTHING");
            q.build().execute(&mut **c).await?;
        });
    }
    Ok(())
}

/// The courses among these that have instance rows (of any rule).
async fn courses_with_rows(
    tx: &mut Tx,
    courses: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut out = std::collections::HashSet::new();
    for chunk in courses.chunks(10_000) {
        let list: Vec<(&str,)> = chunk.iter().map(|c| (*c,)).collect();
        let list = super::json_param(&list)?;
        let from = super::json_rows(tx, 1);
        let rows: Vec<String> = on!(tx, c => sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT j.value->>0 FROM {from} \
             WHERE EXISTS (SELECT 1 FROM actions a WHERE a.course_id = j.value->>0)"
        ))).bind(list).fetch_all(&mut **c).await)?;
        out.extend(rows);
    }
    Ok(out)
}

/// Who is packed: by rule, course and cycle, the people.
type Packed = std::collections::HashMap<
    String,
    std::collections::HashMap<
        String,
        std::collections::HashMap<i64, std::collections::HashSet<String>>,
    >,
>;

/// Who is packed in these courses' packs.
async fn packed_members(tx: &mut Tx, courses: &[&str]) -> Result<Packed, sqlx::Error> {
    let mut out = Packed::new();
    for p in packs_of(tx, courses, None).await? {
        let people = p.people()?;
        out.entry(p.rule_id)
            .or_default()
            .entry(p.course_id)
            .or_default()
            .entry(p.cycle)
            .or_default()
            .extend(people);
    }
    Ok(out)
}

/// A pack of instances (migration 0011), as its readers see it.
#[derive(sqlx::FromRow)]
struct Pack {
    id: i64,
    rule_id: String,
    subject_kind: String,
    course_id: String,
    cycle: i64,
    event_at: DateTime<Utc>,
    seen_at: DateTime<Utc>,
    due_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    people: String,
}

impl Pack {
    fn people(&self) -> Result<Vec<String>, sqlx::Error> {
        serde_json::from_str(&self.people)
            .map_err(|e| sqlx::Error::Decode(format!("malformed pack {}: {e}", self.id).into()))
    }

    /// Its instance for `person`, as a row would read before it was first evaluated;
    /// numbered 0 (it has no id until it becomes a row).
    fn instance(&self, person: &str) -> Result<Instance, sqlx::Error> {
        Ok(Instance {
            id: 0,
            rule_id: self.rule_id.clone(),
            kind: word(&self.subject_kind)?,
            course_id: self.course_id.clone(),
            person_id: person.to_string(),
            cycle: self.cycle,
            state: ActionState::Waiting,
            due_at: self.due_at,
            expires_at: self.expires_at,
            rechecked_at: Some(self.seen_at),
            instant: 0,
            event_at: self.event_at,
            version: 0,
        })
    }
}

const PACK: &str =
    "id, rule_id, subject_kind, course_id, cycle, event_at, seen_at, due_at, expires_at, people";

/// The packs of these courses (of `rule`, if given), oldest first.
async fn packs_of(
    tx: &mut Tx,
    courses: &[&str],
    rule: Option<&str>,
) -> Result<Vec<Pack>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in courses.chunks(10_000) {
        let list: Vec<(&str,)> = chunk.iter().map(|c| (*c,)).collect();
        let list = super::json_param(&list)?;
        let from = super::json_rows(tx, 1);
        let rows: Vec<Pack> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PACK} FROM action_packs WHERE course_id IN (SELECT j.value->>0 FROM {from}) \
             AND ($2 IS NULL OR rule_id = $2) ORDER BY id"
        ))).bind(list).bind(rule).fetch_all(&mut **c).await)?;
        out.extend(rows);
    }
    Ok(out)
}

/// The packs of these courses become rows of `actions`, each instance with an id of its
/// own, in the order they were made; an instance that is a row already stays as it is.
pub async fn unpack(tx: &mut Tx, courses: &[&str]) -> Result<(), sqlx::Error> {
    if courses.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = packs_of(tx, courses, None)
        .await?
        .iter()
        .map(|p| p.id)
        .collect();
    unpack_ids(tx, &ids).await
}

/// Up to `limit` packs whose due time has come become rows (the firing pass, before it
/// reads what is due); returns how many.
pub async fn unpack_due(tx: &mut Tx, now: DateTime<Utc>, limit: i64) -> Result<i64, sqlx::Error> {
    // In the engine's turn: an ingest marking a participant's instances (T2) either sees
    // these rows, or commits before they are made (and the pass reads its change).
    super::history::take_ingest_turn(tx).await?;
    let ids: Vec<i64> = on!(tx, c => sqlx::query_scalar(
        "SELECT id FROM action_packs WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2",
    ).bind(now).bind(limit).fetch_all(&mut **c).await)?;
    unpack_ids(tx, &ids).await?;
    Ok(ids.len() as i64)
}

/// Whether a pack's due time has come (a cheap read before the write lock).
pub async fn any_packs_due(store: &Store, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    store
        .any(
            "SELECT EXISTS (SELECT 1 FROM action_packs WHERE due_at <= $1)",
            now,
        )
        .await
}

async fn unpack_ids(tx: &mut Tx, ids: &[i64]) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(10_000) {
        let list = super::json_param(chunk)?;
        let (from, members) = match tx {
            Tx::Sqlite(_) => (
                "SELECT j.value FROM json_each($1) AS j",
                "json_each(p.people) AS m",
            ),
            Tx::Postgres(_) => (
                "SELECT (j.value)::bigint FROM jsonb_array_elements($1::jsonb) AS j(value)",
                "jsonb_array_elements_text(p.people::jsonb) WITH ORDINALITY AS m(value, key)",
            ),
        };
        on!(tx, c => sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO actions (rule_id, subject_kind, course_id, person_id, cycle, state, event_at, due_at, \
             expires_at, created_at, updated_at, rechecked_at) \
             SELECT p.rule_id, p.subject_kind, p.course_id, m.value, p.cycle, 'waiting', p.event_at, p.due_at, \
             p.expires_at, p.created_at, p.created_at, p.seen_at FROM action_packs p, {members} \
             WHERE p.id IN ({from}) ORDER BY p.id, m.key \
             ON CONFLICT (rule_id, course_id, person_id, cycle, instant) DO NOTHING"
        ))).bind(&list).execute(&mut **c).await.map(|_| ()))?;
        on!(tx, c => sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM action_packs WHERE id IN ({from})"
        ))).bind(&list).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Every change of a subject's state (T2): the waiting instances of these (subject,
/// person) pairs, changed at `at`, are evaluated again, eligible from `at` (or from an
/// earlier change not yet evaluated); each counts up its version, even one already marked,
/// so that a verdict judged before the change is not recorded. One statement (the pairs
/// travel as one JSON array).
pub async fn recheck_pairs(
    tx: &mut Tx,
    kind: SubjectKind,
    pairs: &[(&str, &str)],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // Packed instances have nothing to mark (never evaluated, no verdict in flight: packs
    // become rows only in the engine's turn): the pairs of courses without rows are left
    // out before the statement looks each pair up.
    let mut pairs: Vec<(&str, &str)> = pairs.to_vec();
    if kind == SubjectKind::Course {
        let mut courses: Vec<&str> = pairs.iter().map(|(c, _)| *c).collect();
        courses.sort_unstable();
        courses.dedup();
        let with_rows = courses_with_rows(tx, &courses).await?;
        pairs.retain(|(c, _)| with_rows.contains(*c));
    }
    for chunk in pairs.chunks(10_000) {
        let list = super::json_param(chunk)?;
        let from = super::json_rows(tx, 3);
        on!(tx, c => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET recheck = 1, version = actions.version + 1, \
             rechecked_at = CASE WHEN actions.recheck = 0 THEN $1 ELSE actions.rechecked_at END \
             FROM (SELECT j.value->>0 AS subject, j.value->>1 AS person FROM {from}) AS p \
             WHERE actions.state = 'waiting' AND actions.subject_kind = $2 \
             AND actions.course_id = p.subject AND actions.person_id = p.person"
        ))).bind(at).bind(kind.as_str()).bind(list).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// Cancels the pending instances of a course, or of one participant (only those of cycles
/// before `before_cycle`, if given), recording why (`reason`: stored reasons, JSON).
#[allow(clippy::too_many_arguments)]
pub async fn cancel(
    tx: &mut Tx,
    now: DateTime<Utc>,
    kind: SubjectKind,
    subject: &str,
    person: Option<&str>,
    before_cycle: Option<i64>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    // Each cancelled instance keeps its reason: packed ones become rows first.
    if kind == SubjectKind::Course {
        unpack(tx, &[subject]).await?;
    }
    on!(tx, c => sqlx::query(
        "UPDATE actions SET state = 'cancelled', updated_at = $1, reason = $6, version = version + 1 WHERE subject_kind = $2 AND course_id = $3 \
         AND ($4 IS NULL OR person_id = $4) AND ($5 IS NULL OR cycle < $5) \
         AND state IN ('waiting', 'awaiting_approval', 'approved')",
    ).bind(now).bind(kind.as_str()).bind(subject).bind(person).bind(before_cycle).bind(reason)
        .execute(&mut **c).await.map(|_| ()))
}

/// The waiting instances of a participant's cycle that have no due time yet: (id, rule).
pub async fn waiting_without_due(
    tx: &mut Tx,
    course: &str,
    person: &str,
    cycle: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    // Each is given its due time by id: packed ones become rows first.
    unpack(tx, &[course]).await?;
    on!(tx, c => sqlx::query_as(
        "SELECT id, rule_id FROM actions WHERE subject_kind = 'course' AND course_id = $1 AND person_id = $2 \
         AND cycle = $3 AND state = 'waiting' AND due_at IS NULL",
    ).bind(course).bind(person).bind(cycle).fetch_all(&mut **c).await)
}

/// Where waiting instances are held: a row of their own, or a pack (migration 0011) whose
/// instances share rule, course, cycle and times and are given a due time together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Row(i64),
    Pack(i64),
}

/// The waiting instances of these courses: (where held, course, rule, event time). One
/// statement for the rows (the courses travel as one JSON array), one for the packs.
pub async fn waiting_of_courses(
    tx: &mut Tx,
    courses: &[&str],
) -> Result<Vec<(Held, String, String, DateTime<Utc>)>, sqlx::Error> {
    let mut out: Vec<(Held, String, String, DateTime<Utc>)> = packs_of(tx, courses, None)
        .await?
        .into_iter()
        .map(|p| (Held::Pack(p.id), p.course_id, p.rule_id, p.event_at))
        .collect();
    for chunk in courses.chunks(10_000) {
        let list: Vec<(&str,)> = chunk.iter().map(|c| (*c,)).collect();
        let list = super::json_param(&list)?;
        let from = super::json_rows(tx, 1);
        let rows: Vec<(i64, String, String, DateTime<Utc>)> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT a.id, a.course_id, a.rule_id, a.event_at FROM {from} \
             JOIN actions a ON a.subject_kind = 'course' AND a.course_id = j.value->>0 AND a.state = 'waiting'"
        ))).bind(list).fetch_all(&mut **c).await)?;
        out.extend(
            rows.into_iter()
                .map(|(id, course, rule, at)| (Held::Row(id), course, rule, at)),
        );
    }
    Ok(out)
}

/// Every waiting instance of these courses is evaluated again at the next pass (each
/// course changed at its moment; eligible from then, or from an earlier change not yet
/// evaluated). One statement (the courses travel as one JSON array).
pub async fn recheck_courses(
    tx: &mut Tx,
    changes: &[(&str, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    let at = match tx {
        Tx::Sqlite(_) => "p.at",
        Tx::Postgres(_) => "p.at::timestamptz",
    };
    for chunk in changes.chunks(10_000) {
        // Times as sqlx writes them on SQLite, so that stored times compare as text.
        let list: Vec<(&str, String)> = chunk
            .iter()
            .map(|(course, at)| {
                (
                    *course,
                    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
                )
            })
            .collect();
        let list = super::json_param(&list)?;
        let from = super::json_rows(tx, 1);
        on!(tx, c => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE actions SET recheck = 1, version = actions.version + 1, \
             rechecked_at = CASE WHEN actions.recheck = 0 THEN {at} ELSE actions.rechecked_at END \
             FROM (SELECT j.value->>0 AS course, j.value->>1 AS at FROM {from}) AS p \
             WHERE actions.subject_kind = 'course' AND actions.course_id = p.course AND actions.state = 'waiting'"
        ))).bind(list).execute(&mut **c).await.map(|_| ()))?;
    }
    Ok(())
}

/// A new due time (and expiry) for one instance, or for a pack's, to be evaluated at it
/// (the change that moved it happened at `at`).
pub async fn set_due(
    tx: &mut Tx,
    held: Held,
    due: Option<DateTime<Utc>>,
    expires: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let id = match held {
        Held::Row(id) => id,
        Held::Pack(id) => {
            return on!(tx, c => sqlx::query(
                "UPDATE action_packs SET due_at = $1, expires_at = $2, seen_at = $3 WHERE id = $4",
            ).bind(due).bind(expires).bind(at).bind(id).execute(&mut **c).await.map(|_| ()));
        }
    };
    on!(tx, c => sqlx::query(
        "UPDATE actions SET due_at = $1, expires_at = $2, recheck = 1, updated_at = $3, rechecked_at = $5, \
         version = version + 1 \
         WHERE id = $4 AND state = 'waiting'",
    ).bind(due).bind(expires).bind(now).bind(id).bind(at).execute(&mut **c).await.map(|_| ()))
}

/// An instance as the firing pass and `approve` see it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: i64,
    pub rule_id: String,
    pub kind: SubjectKind,
    pub course_id: String,
    pub person_id: String,
    pub cycle: i64,
    pub state: ActionState,
    pub due_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last became eligible to be evaluated (created, or its subject changed).
    pub rechecked_at: Option<DateTime<Utc>>,
    /// A schedule rule's instant (Unix seconds); 0 for event rules.
    pub instant: i64,
    /// When the instance's event happened (for an office digest: the start of its period).
    pub event_at: DateTime<Utc>,
    /// Counts every change of the instance (see the module's consistency note).
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: i64,
    rule_id: String,
    subject_kind: String,
    course_id: String,
    person_id: String,
    cycle: i64,
    state: String,
    due_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    rechecked_at: Option<DateTime<Utc>>,
    instant: i64,
    event_at: DateTime<Utc>,
    version: i64,
}

impl TryFrom<InstanceRow> for Instance {
    type Error = sqlx::Error;
    fn try_from(r: InstanceRow) -> Result<Instance, sqlx::Error> {
        Ok(Instance {
            kind: word(&r.subject_kind)?,
            state: word(&r.state)?,
            id: r.id,
            rule_id: r.rule_id,
            course_id: r.course_id,
            person_id: r.person_id,
            cycle: r.cycle,
            due_at: r.due_at,
            expires_at: r.expires_at,
            rechecked_at: r.rechecked_at,
            instant: r.instant,
            event_at: r.event_at,
            version: r.version,
        })
    }
}

const INSTANCE: &str = "id, rule_id, subject_kind, course_id, person_id, cycle, state, due_at, expires_at, rechecked_at, instant, event_at, version";

/// An instance of a schedule rule, fired when it is created (T6).
pub struct NewScheduled<'a> {
    pub rule: &'a str,
    pub kind: SubjectKind,
    pub subject: &'a str,
    pub person: &'a str,
    pub cycle: i64,
    /// The scheduled instant.
    pub instant: DateTime<Utc>,
    /// For an office digest the start of its period, else the instant.
    pub event_at: DateTime<Utc>,
}

/// Creates a fired instance of a schedule rule for one subject and instant; `None` when
/// it exists already (another pass or process reached this subject at this instant).
pub async fn insert_scheduled(
    tx: &mut Tx,
    a: &NewScheduled<'_>,
    now: DateTime<Utc>,
) -> Result<Option<i64>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "INSERT INTO actions (rule_id, subject_kind, course_id, person_id, cycle, instant, state, event_at, due_at, \
         created_at, updated_at, rechecked_at, recheck) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $9, 0) \
         ON CONFLICT (rule_id, course_id, person_id, cycle, instant) DO NOTHING RETURNING id",
    ).bind(a.rule).bind(a.kind.as_str()).bind(a.subject).bind(a.person).bind(a.cycle).bind(a.instant.timestamp())
        .bind(ActionState::Fired.as_str()).bind(a.event_at).bind(a.instant).bind(now)
        .fetch_optional(&mut **c).await)
}

/// One instance awaiting `registrar approve`, for the office digest.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Awaiting {
    pub id: i64,
    pub rule: String,
    pub course: String,
    pub person: String,
}

/// Every instance awaiting approval, oldest first.
pub async fn awaiting_approval(tx: &mut Tx) -> Result<Vec<Awaiting>, sqlx::Error> {
    on!(tx, c => sqlx::query_as(
        "SELECT id, rule_id AS rule, course_id AS course, person_id AS person FROM actions \
         WHERE state = 'awaiting_approval' ORDER BY id",
    ).fetch_all(&mut **c).await)
}

/// For the office's overview: how many instances wait (for a condition or their time), how
/// many of those the timer will evaluate later (waiting for their time), and how many
/// await approval. Each by a partial index, not by reading every instance.
pub async fn open_counts(tx: &mut Tx, now: DateTime<Utc>) -> Result<(i64, i64, i64), sqlx::Error> {
    let waiting: i64 = on!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM actions WHERE state = 'waiting'",
    ).fetch_one(&mut **c).await)?;
    let scheduled: i64 = on!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at > $1",
    ).bind(now).fetch_one(&mut **c).await)?;
    let awaiting: i64 = on!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM actions WHERE state = 'awaiting_approval'",
    ).fetch_one(&mut **c).await)?;
    // Packed instances all wait, none evaluated yet (few rows, each counted by its people).
    let length = match tx {
        Tx::Sqlite(_) => "json_array_length(people)",
        Tx::Postgres(_) => "jsonb_array_length(people::jsonb)",
    };
    let (packed, later): (i64, i64) = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COALESCE(SUM({length}), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN due_at > $1 THEN {length} ELSE 0 END), 0) AS BIGINT) FROM action_packs"
    ))).bind(now).fetch_one(&mut **c).await)?;
    Ok((waiting + packed, scheduled + later, awaiting))
}

/// The next instances the timer will evaluate after `now`, soonest first: (rule, course,
/// person, due time).
pub async fn next_due_list(
    tx: &mut Tx,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, String, String, DateTime<Utc>)>, sqlx::Error> {
    let mut rows: Vec<(String, String, String, DateTime<Utc>)> = on!(tx, c => sqlx::query_as(
        "SELECT rule_id, course_id, person_id, due_at FROM actions \
         WHERE state = 'waiting' AND recheck = 1 AND due_at > $1 ORDER BY due_at, id LIMIT $2",
    ).bind(now).bind(limit).fetch_all(&mut **c).await)?;
    // The packs due soonest hold at least `limit` instances, or all there are.
    let packs: Vec<Pack> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PACK} FROM action_packs WHERE due_at > $1 ORDER BY due_at, id LIMIT $2"
    ))).bind(now).bind(limit).fetch_all(&mut **c).await)?;
    for p in &packs {
        let Some(due) = p.due_at else { continue };
        for person in p.people()? {
            rows.push((p.rule_id.clone(), p.course_id.clone(), person, due));
        }
    }
    rows.sort_by_key(|r| r.3);
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(rows)
}

/// A page of the instances awaiting approval, oldest first, and how many there are.
pub async fn awaiting_approval_page(
    tx: &mut Tx,
    skip: i64,
    limit: i64,
) -> Result<(Vec<Awaiting>, i64), sqlx::Error> {
    let rows = on!(tx, c => sqlx::query_as(
        "SELECT id, rule_id AS rule, course_id AS course, person_id AS person FROM actions \
         WHERE state = 'awaiting_approval' ORDER BY id LIMIT $1 OFFSET $2",
    ).bind(limit).bind(skip).fetch_all(&mut **c).await)?;
    let total: i64 = on!(tx, c => sqlx::query_scalar(
        "SELECT COUNT(*) FROM actions WHERE state = 'awaiting_approval'",
    ).fetch_one(&mut **c).await)?;
    Ok((rows, total))
}

/// Whether the firing pass has anything to do (a cheap read before the write lock).
pub async fn any_to_fire(store: &Store, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    store
        .any(
            "SELECT EXISTS (SELECT 1 FROM actions WHERE state = 'approved') \
             OR EXISTS (SELECT 1 FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at <= $1)",
            now,
        )
        .await
}

/// Up to `limit` instances to evaluate now: approved manual ones first (few), then the due
/// ones oldest first. Read from a snapshot, without locks: the verdict is recorded only on
/// instances still at the version read ([`set_states_if_unchanged`]). `skip`: instances
/// judged and not recorded yet, left out.
pub async fn candidates(
    tx: &mut Tx,
    now: DateTime<Utc>,
    limit: i64,
    skip: &[i64],
) -> Result<Vec<Instance>, sqlx::Error> {
    let mut rows: Vec<InstanceRow> = Vec::new();
    for waiting in [false, true] {
        let want = limit - rows.len() as i64;
        if want <= 0 {
            break;
        }
        let more: Vec<InstanceRow> = on!(tx, c => {
            let mut q = QueryBuilder::new(format!("SELECT {INSTANCE} FROM actions WHERE "));
            if waiting {
                q.push("state = 'waiting' AND recheck = 1 AND due_at <= ").push_bind(now);
            } else {
                q.push("state = 'approved'");
            }
            if !skip.is_empty() {
                q.push(" AND id NOT IN (");
                let mut sep = q.separated(", ");
                for id in skip {
                    sep.push_bind(*id);
                }
                q.push(")");
            }
            q.push(if waiting { " ORDER BY due_at, id LIMIT " } else { " ORDER BY id LIMIT " })
                .push_bind(want);
            q.build_query_as().fetch_all(&mut **c).await?
        });
        rows.extend(more);
    }
    rows.into_iter().map(Instance::try_from).collect()
}

/// A verdict to record: the instance, the version it was decided on, its new state and why
/// (stored reasons, JSON).
pub struct Verdict {
    pub id: i64,
    pub version: i64,
    pub state: ActionState,
    pub reason: Option<String>,
}

/// Records verdicts (evaluated: `recheck = 0`) on the instances whose version is still the
/// one they were decided on; returns those. One statement for the lot (the verdicts travel
/// as one JSON array): each statement costs a hand-off to the database.
pub async fn set_states_if_unchanged(
    tx: &mut Tx,
    verdicts: &[Verdict],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<i64>, sqlx::Error> {
    if verdicts.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let rows: Vec<serde_json::Value> = verdicts
        .iter()
        .map(|v| {
            serde_json::json!({"id": v.id, "version": v.version, "state": v.state.as_str(), "reason": v.reason})
        })
        .collect();
    let rows = serde_json::Value::Array(rows).to_string();
    let ids: Vec<i64> = match tx {
        Tx::Sqlite(c) => sqlx::query_scalar(
            "UPDATE actions SET state = j.state, recheck = 0, updated_at = $1, reason = j.reason, \
             version = actions.version + 1 \
             FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.version') AS version, \
                          json_extract(value, '$.state') AS state, json_extract(value, '$.reason') AS reason \
                   FROM json_each($2)) AS j \
             WHERE actions.id = j.id AND actions.version = j.version RETURNING actions.id",
        )
        .bind(now)
        .bind(rows)
        .fetch_all(&mut **c)
        .await?,
        Tx::Postgres(c) => sqlx::query_scalar(
            "UPDATE actions SET state = j.state, recheck = 0, updated_at = $1, reason = j.reason, \
             version = actions.version + 1 \
             FROM jsonb_to_recordset($2::jsonb) AS j(id BIGINT, version BIGINT, state TEXT, reason TEXT) \
             WHERE actions.id = j.id AND actions.version = j.version RETURNING actions.id",
        )
        .bind(now)
        .bind(rows)
        .fetch_all(&mut **c)
        .await?,
    };
    Ok(ids.into_iter().collect())
}

/// Whether instances evaluated with conditions unmet and unchanged since have run out of
/// time (`expires_after`).
pub async fn any_to_expire(store: &Store, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    store
        .any(
            "SELECT EXISTS (SELECT 1 FROM actions WHERE state = 'waiting' AND recheck = 0 AND expires_at <= $1)",
            now,
        )
        .await
}

/// Expires them; returns how many.
pub async fn expire_unchanged(tx: &mut Tx, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    on!(tx, c => sqlx::query(
        "UPDATE actions SET state = 'expired', updated_at = $1, version = version + 1 \
         WHERE state = 'waiting' AND recheck = 0 AND expires_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.processed_at IS NULL \
                         AND e.course_id = actions.course_id AND e.person_id = actions.person_id)",
    ).bind(now).execute(&mut **c).await.map(|r| r.rows_affected()))
}

/// One instance by id, locked as `lock` says.
pub async fn get(tx: &mut Tx, id: i64, lock: Lock) -> Result<Option<Instance>, sqlx::Error> {
    let sql = format!(
        "SELECT {INSTANCE} FROM actions WHERE id = $1{}",
        lock.clause(tx)
    );
    let row: Option<InstanceRow> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id).fetch_optional(&mut **c).await)?;
    row.map(Instance::try_from).transpose()
}

/// The instance of an event rule for a subject's cycle, if the rule made one (a schedule
/// rule makes one per instant: none of them is "the" instance).
pub async fn find(
    tx: &mut Tx,
    rule: &str,
    course: &str,
    person: &str,
    cycle: i64,
) -> Result<Option<Instance>, sqlx::Error> {
    let sql = format!(
        "SELECT {INSTANCE} FROM actions WHERE rule_id = $1 AND course_id = $2 AND person_id = $3 AND cycle = $4 \
         AND instant = 0"
    );
    let row: Option<InstanceRow> = on!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(rule).bind(course).bind(person).bind(cycle).fetch_optional(&mut **c).await)?;
    if let Some(row) = row {
        return Instance::try_from(row).map(Some);
    }
    // Held in a pack: numbered 0 until it becomes a row.
    for p in packs_of(tx, &[course], Some(rule)).await? {
        if p.cycle == cycle && p.people()?.iter().any(|p| p == person) {
            return p.instance(person).map(Some);
        }
    }
    Ok(None)
}

pub async fn set_state(
    tx: &mut Tx,
    id: i64,
    state: ActionState,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on!(tx, c => sqlx::query("UPDATE actions SET state = $1, updated_at = $2, version = version + 1 WHERE id = $3")
        .bind(state.as_str()).bind(now).bind(id).execute(&mut **c).await.map(|_| ()))
}

/// The earliest due time after `now` of an instance the timer will evaluate.
pub async fn next_due(
    tx: &mut Tx,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let row: Option<DateTime<Utc>> = on!(tx, c => sqlx::query_scalar(
        "SELECT MIN(due_at) FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at > $1",
    ).bind(now).fetch_one(&mut **c).await)?;
    let pack: Option<DateTime<Utc>> = on!(tx, c => sqlx::query_scalar(
        "SELECT MIN(due_at) FROM action_packs WHERE due_at > $1",
    ).bind(now).fetch_one(&mut **c).await)?;
    Ok(row.into_iter().chain(pack).min())
}

/// The oldest due time at or before `now` of an instance not evaluated yet (lag metric).
pub async fn oldest_due(
    tx: &mut Tx,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let row: Option<DateTime<Utc>> = on!(tx, c => sqlx::query_scalar(
        "SELECT MIN(due_at) FROM actions WHERE state = 'waiting' AND recheck = 1 AND due_at <= $1",
    ).bind(now).fetch_one(&mut **c).await)?;
    let pack: Option<DateTime<Utc>> = on!(tx, c => sqlx::query_scalar(
        "SELECT MIN(due_at) FROM action_packs WHERE due_at <= $1",
    ).bind(now).fetch_one(&mut **c).await)?;
    Ok(row.into_iter().chain(pack).min())
}

/// Records the digest of every rule in force; the waiting instances of a rule whose digest
/// changed (edited, enabled, disabled) or was not known (new, or back after being removed)
/// are evaluated again at the next pass, so that what `plan` says of them is what the pass
/// does. Rules no longer in force are forgotten.
pub async fn sync_rule_versions(
    tx: &mut Tx,
    digests: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let known: Vec<(String, String)> = on!(tx, c => sqlx::query_as(
        "SELECT rule_id, digest FROM rule_versions",
    ).fetch_all(&mut **c).await)?;
    let known: std::collections::HashMap<String, String> = known.into_iter().collect();
    let mut changed = 0;
    for (rule, digest) in digests {
        if known.get(rule) == Some(digest) {
            continue;
        }
        on!(tx, c => sqlx::query(
            "INSERT INTO rule_versions (rule_id, digest) VALUES ($1, $2) \
             ON CONFLICT (rule_id) DO UPDATE SET digest = excluded.digest",
        ).bind(rule).bind(digest).execute(&mut **c).await.map(|_| ()))?;
        changed += on!(tx, c => sqlx::query(
            "UPDATE actions SET recheck = 1, rechecked_at = $2, version = version + 1 WHERE rule_id = $1 \
             AND state = 'waiting' AND recheck = 0",
        ).bind(rule).bind(now).execute(&mut **c).await?.rows_affected());
    }
    let gone: Vec<String> = known
        .keys()
        .filter(|k| !digests.iter().any(|(r, _)| r == *k))
        .cloned()
        .collect();
    if !gone.is_empty() {
        on!(tx, c => {
            let mut q = QueryBuilder::new("DELETE FROM rule_versions WHERE rule_id IN ");
            push_list(&mut q, &gone);
            q.build().execute(&mut **c).await.map(|_| ())
        })?;
    }
    Ok(changed)
}

/// The courses (and certifications) that have action instances (of `rule`, if given), in
/// id order.
pub async fn subjects_with_actions(
    tx: &mut Tx,
    rule: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    on!(tx, c => sqlx::query_scalar(
        "SELECT course_id FROM actions WHERE ($1 IS NULL OR rule_id = $1) \
         UNION SELECT course_id FROM action_packs WHERE ($1 IS NULL OR rule_id = $1) ORDER BY 1",
    ).bind(rule).fetch_all(&mut **c).await)
}

/// An action instance as `plan` reads it, with the state of its delivery if it fired.
#[derive(Debug, Clone)]
pub struct PlanRow {
    /// `None` while the instance is held in a pack (it is numbered when it becomes a row).
    pub id: Option<i64>,
    pub rule_id: String,
    pub kind: SubjectKind,
    pub course_id: String,
    pub person_id: String,
    pub cycle: i64,
    pub state: ActionState,
    pub delivery: Option<DeliveryState>,
    pub due_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Stored reasons (JSON) of the last evaluation or the cancellation.
    pub reason: Option<String>,
    /// The delivery's last error, if it fired and failed or is retrying.
    pub delivery_error: Option<String>,
}

/// The instances of `subjects` (of `rule`, and of `people`, if given) not yet sent,
/// ordered by subject, due time, person and rule.
pub async fn plan_rows(
    tx: &mut Tx,
    subjects: &[String],
    rule: Option<&str>,
    people: Option<&[String]>,
) -> Result<Vec<PlanRow>, sqlx::Error> {
    const FROM: &str = " FROM actions a LEFT JOIN deliveries d ON d.action_id = a.id \
        WHERE (d.state IS NULL OR d.state <> 'sent') AND a.course_id IN ";
    let mut out = Vec::new();
    match tx {
        Tx::Sqlite(c) => {
            // One row per course, its instances joined by char(30): the per-row cost of
            // crossing from SQLite's thread dominates a read of millions of rows.
            let mut q = QueryBuilder::new(format!(
                "SELECT group_concat(a.id || char(31) || a.rule_id || char(31) || a.subject_kind || char(31) || a.course_id \
                 || char(31) || a.person_id || char(31) || a.cycle || char(31) || a.state || char(31) || COALESCE(d.state, '') \
                 || char(31) || COALESCE(a.due_at, '') || char(31) || COALESCE(a.expires_at, '') \
                 || char(31) || CASE WHEN a.state IN ('cancelled', 'expired') THEN COALESCE(a.reason, '') ELSE '' END \
                 || char(31) || CASE WHEN d.state IN ('failed', 'retrying') \
                 THEN replace(replace(COALESCE(d.last_error, ''), char(30), ' '), char(31), ' ') ELSE '' END, char(30)){FROM}"
            ));
            push_list(&mut q, subjects);
            q.push(" AND (")
                .push_bind(rule)
                .push(" IS NULL OR a.rule_id = ")
                .push_bind(rule)
                .push(")");
            if let Some(people) = people {
                q.push(" AND a.person_id IN ");
                push_list(&mut q, people);
            }
            q.push(" GROUP BY a.course_id");
            let groups: Vec<String> = q.build_query_scalar().fetch_all(&mut **c).await?;
            for r in packed::rows::<12>(&groups, "action") {
                let [
                    id,
                    rule_id,
                    kind,
                    course_id,
                    person_id,
                    cycle,
                    state,
                    delivery,
                    due,
                    expires,
                    reason,
                    error,
                ] = r?;
                out.push(PlanRow {
                    id: Some(packed::int(id, "action")?),
                    rule_id: rule_id.to_string(),
                    kind: word(kind)?,
                    course_id: course_id.to_string(),
                    person_id: person_id.to_string(),
                    cycle: packed::int(cycle, "action")?,
                    state: word(state)?,
                    delivery: if delivery.is_empty() {
                        None
                    } else {
                        Some(word(delivery)?)
                    },
                    due_at: packed::time(due)?,
                    expires_at: packed::time(expires)?,
                    reason: (!reason.is_empty()).then(|| reason.to_string()),
                    delivery_error: (!error.is_empty()).then(|| error.to_string()),
                });
            }
        }
        Tx::Postgres(c) => {
            #[derive(sqlx::FromRow)]
            struct Row {
                id: i64,
                rule_id: String,
                subject_kind: String,
                course_id: String,
                person_id: String,
                cycle: i64,
                state: String,
                delivery: Option<String>,
                due_at: Option<DateTime<Utc>>,
                expires_at: Option<DateTime<Utc>>,
                reason: Option<String>,
                delivery_error: Option<String>,
            }
            let mut q = QueryBuilder::new(format!(
                "SELECT a.id, a.rule_id, a.subject_kind, a.course_id, a.person_id, a.cycle, a.state, d.state AS delivery, \
                 a.due_at, a.expires_at, CASE WHEN a.state IN ('cancelled', 'expired') THEN a.reason END AS reason, \
                 CASE WHEN d.state IN ('failed', 'retrying') THEN d.last_error END AS delivery_error{FROM}"
            ));
            push_list(&mut q, subjects);
            q.push(" AND (")
                .push_bind(rule)
                .push("::text IS NULL OR a.rule_id = ")
                .push_bind(rule)
                .push(")");
            if let Some(people) = people {
                q.push(" AND a.person_id IN ");
                push_list(&mut q, people);
            }
            let rows: Vec<Row> = q.build_query_as().fetch_all(&mut **c).await?;
            for r in rows {
                out.push(PlanRow {
                    id: Some(r.id),
                    rule_id: r.rule_id,
                    kind: word(&r.subject_kind)?,
                    course_id: r.course_id,
                    person_id: r.person_id,
                    cycle: r.cycle,
                    state: word(&r.state)?,
                    delivery: r.delivery.as_deref().map(word).transpose()?,
                    due_at: r.due_at,
                    expires_at: r.expires_at,
                    reason: r.reason,
                    delivery_error: r.delivery_error,
                });
            }
        }
    }
    // Packed instances: waiting, never evaluated, nothing delivered.
    let courses: Vec<&str> = subjects.iter().map(String::as_str).collect();
    for p in packs_of(tx, &courses, rule).await? {
        for person in p.people()? {
            if people.is_some_and(|wanted| !wanted.contains(&person)) {
                continue;
            }
            let i = p.instance(&person)?;
            out.push(PlanRow {
                id: None,
                rule_id: i.rule_id,
                kind: i.kind,
                course_id: i.course_id,
                person_id: i.person_id,
                cycle: i.cycle,
                state: i.state,
                delivery: None,
                due_at: i.due_at,
                expires_at: i.expires_at,
                reason: None,
                delivery_error: None,
            });
        }
    }
    out.sort_unstable_by(|a, b| {
        (
            &a.course_id,
            a.due_at.is_none(),
            a.due_at,
            &a.person_id,
            &a.rule_id,
        )
            .cmp(&(
                &b.course_id,
                b.due_at.is_none(),
                b.due_at,
                &b.person_id,
                &b.rule_id,
            ))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgConnectOptions;
    use std::str::FromStr;

    /// One waiting instance marked for evaluation, read as the firing pass reads it; then
    /// its subject changes (a result recorded) before the pass records its verdict.
    async fn a_verdict_on_a_changed_instance_is_not_recorded(store: &Store) {
        let now = Utc::now();
        let mut tx = store.begin().await.expect("begin");
        let new = NewAction {
            rule: "passed-notice",
            kind: SubjectKind::Course,
            subject: "fa",
            person: "ann",
            cycle: 1,
            event_at: now,
            seen_at: now,
            due: Some(now),
            expires: None,
        };
        insert(&mut tx, &[new], now).await.expect("insert");
        tx.commit().await.expect("commit");
        let mut read = store.begin_read().await.expect("read");
        let seen = candidates(&mut read, now, 10, &[])
            .await
            .expect("candidates");
        read.rollback().await.expect("rollback");
        assert_eq!(seen.len(), 1);
        // The change: the instance is already marked, and is marked again.
        let mut tx = store.begin().await.expect("begin");
        recheck_pairs(&mut tx, SubjectKind::Course, &[("fa", "ann")], now)
            .await
            .expect("recheck");
        tx.commit().await.expect("commit");
        let verdict = |i: &Instance| Verdict {
            id: i.id,
            version: i.version,
            state: ActionState::Waiting,
            reason: Some("[]".into()),
        };
        let mut tx = store.begin().await.expect("begin");
        let kept = set_states_if_unchanged(&mut tx, &[verdict(&seen[0])], now)
            .await
            .expect("record");
        tx.commit().await.expect("commit");
        assert!(kept.is_empty(), "the stale verdict is not recorded");
        // Still to evaluate; read again, the verdict is recorded.
        let mut read = store.begin_read().await.expect("read");
        let again = candidates(&mut read, now, 10, &[])
            .await
            .expect("candidates");
        read.rollback().await.expect("rollback");
        assert_eq!(again.len(), 1, "the instance is still to be evaluated");
        let mut tx = store.begin().await.expect("begin");
        let kept = set_states_if_unchanged(&mut tx, &[verdict(&again[0])], now)
            .await
            .expect("record");
        tx.commit().await.expect("commit");
        assert_eq!(kept.len(), 1);
        let mut read = store.begin_read().await.expect("read");
        assert!(
            candidates(&mut read, now, 10, &[])
                .await
                .expect("read")
                .is_empty()
        );
        read.rollback().await.expect("rollback");
    }

    /// A pack becomes rows in the engine's turn: an ingest marking one of its participants
    /// meanwhile (T2) waits for that transaction, then marks the new row. Were it to mark
    /// before the rows were committed, it would miss them, and a pass could record a verdict
    /// on the participant's old state.
    #[tokio::test(flavor = "multi_thread")]
    async fn t2_a_change_while_a_pack_becomes_rows_waits_and_then_marks_the_row_on_postgres() {
        let Some((store, admin, schema)) = postgres_store("pk").await else {
            return;
        };
        let now = Utc::now();
        let due = now + chrono::Duration::days(1);
        let people: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
        let new: Vec<NewAction> = people
            .iter()
            .map(|p| NewAction {
                rule: "reminder",
                kind: SubjectKind::Course,
                subject: "fa",
                person: p,
                cycle: 1,
                event_at: now,
                seen_at: now,
                due: Some(due),
                expires: None,
            })
            .collect();
        let mut tx = store.begin().await.expect("begin");
        insert(&mut tx, &new, now).await.expect("insert");
        tx.commit().await.expect("commit");
        let mut read = store.begin_read().await.expect("read");
        let packed = find(&mut read, "reminder", "fa", "p3", 1)
            .await
            .expect("find")
            .expect("packed");
        read.rollback().await.expect("rollback");
        assert_eq!(packed.id, 0, "ten people at one moment: one pack, no rows");
        // The pass turns the pack into rows and has not committed yet.
        let mut pass = store.begin().await.expect("begin");
        assert_eq!(unpack_due(&mut pass, due, 10).await.expect("unpack"), 1);
        let ingest = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin().await.expect("begin");
                super::super::history::take_ingest_turn(&mut tx)
                    .await
                    .expect("turn");
                recheck_pairs(&mut tx, SubjectKind::Course, &[("fa", "p3")], due)
                    .await
                    .expect("recheck");
                tx.commit().await.expect("commit");
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(
            !ingest.is_finished(),
            "the change waits while the pack becomes rows"
        );
        pass.commit().await.expect("commit");
        ingest.await.expect("ingest");
        let mut read = store.begin_read().await.expect("read");
        let row = find(&mut read, "reminder", "fa", "p3", 1)
            .await
            .expect("find")
            .expect("row");
        let other = find(&mut read, "reminder", "fa", "p4", 1)
            .await
            .expect("find")
            .expect("row");
        read.rollback().await.expect("rollback");
        assert!(row.id > 0 && other.id > 0, "the pack is rows now");
        assert_eq!(
            (row.version, other.version),
            (1, 0),
            "the change marked its participant's new row"
        );
        store.close().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await;
        admin.close().await;
    }

    /// A store in a PostgreSQL schema of its own, the admin pool and the schema's name;
    /// `None` (after one printed line) without REGISTRAR_TEST_POSTGRES_URL.
    async fn postgres_store(prefix: &str) -> Option<(Store, sqlx::PgPool, String)> {
        let Ok(url) = std::env::var("REGISTRAR_TEST_POSTGRES_URL") else {
            eprintln!("skipping the PostgreSQL half: REGISTRAR_TEST_POSTGRES_URL is not set");
            return None;
        };
        let schema = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let admin = sqlx::PgPool::connect(&url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("schema");
        let opts = PgConnectOptions::from_str(&url)
            .expect("url")
            .options([("search_path", schema.as_str())]);
        let store = Store::open_postgres(opts, "test").await.expect("open");
        Some((store, admin, schema))
    }

    #[tokio::test]
    async fn t2_a_verdict_on_an_instance_whose_subject_changed_meanwhile_is_not_recorded_on_sqlite()
    {
        let dir = tempfile::tempdir().expect("dir");
        let url = crate::config::DatabaseUrl::Sqlite(dir.path().join("t.db"));
        let store = Store::open(&url).await.expect("open");
        a_verdict_on_a_changed_instance_is_not_recorded(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn t2_a_verdict_on_an_instance_whose_subject_changed_meanwhile_is_not_recorded_on_postgres()
     {
        let Some((store, admin, schema)) = postgres_store("v9").await else {
            return;
        };
        a_verdict_on_a_changed_instance_is_not_recorded(&store).await;
        store.close().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}
