//! `registrar import KIND FILE.csv`: streams the file, parses each row at the edge, and
//! applies the rows in chunks inside one transaction. A file with any bad row changes
//! nothing: every bad row is reported (line, column, why) and the transaction rolls back.

pub mod kinds;

pub use kinds::Kind;

use crate::change::{Tally, Work, WriteError};
use crate::rules::RuleSet;
use crate::store::{Store, Tx};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kinds::{Row, parse_row, read_header};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;

/// Rows applied per chunk: bounds memory and keeps statements well under bind limits.
const CHUNK: usize = 2000;

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column {c}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// What an import did (or, with errors or a dry run, would have done).
#[derive(Debug, Default)]
pub struct Report {
    pub rows: u64,
    pub tally: Tally,
    pub errors: Vec<RowError>,
    pub committed: bool,
}

/// Who is importing, when, and with which rules.
pub struct Options<'a> {
    pub rules: &'a RuleSet,
    pub tz: Tz,
    pub now: DateTime<Utc>,
    pub actor: &'a str,
    pub dry_run: bool,
    /// Called with (bytes read, total bytes) every few thousand rows.
    pub progress: Option<&'a dyn Fn(u64, u64)>,
    /// The field separator; `None`: taken from the header row (comma or semicolon).
    pub delimiter: Option<u8>,
}

/// Imports `path` as `kind`. When PostgreSQL aborts the import's transaction as a
/// deadlock victim (a parallel change locked the same rows in another order), the file is
/// imported again from the start.
pub async fn import_file(
    store: &Store,
    kind: Kind,
    path: &Path,
    opts: &Options<'_>,
) -> anyhow::Result<Report> {
    use crate::store::Retryable;
    let mut attempt = 1;
    loop {
        match import_once(store, kind, path, opts).await {
            Err(e) if e.retryable() && attempt < crate::store::TRANSACT_ATTEMPTS => {
                tracing::info!(
                    "the database aborted the import (a parallel change); importing again"
                );
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn import_once(
    store: &Store,
    kind: Kind,
    path: &Path,
    opts: &Options<'_>,
) -> anyhow::Result<Report> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let delimiter = opts.delimiter.unwrap_or_else(|| sniff_delimiter(path));
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .delimiter(delimiter)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    let mut report = Report::default();
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            report.errors.push(RowError {
                line: 1,
                column: None,
                message: csv_message(&e),
            });
            return Ok(report);
        }
    };
    if header.is_empty()
        || (header.len() == 1 && header.get(0).is_some_and(|h| h.trim().is_empty()))
    {
        report.errors.push(RowError {
            line: 1,
            column: None,
            message: format!(
                "the file is empty; the first line must be a header with {}",
                kind.required().join(", ")
            ),
        });
        return Ok(report);
    }
    // One column holding the names with another separator between them: say which.
    if let Some(only) = header.get(0).filter(|_| header.len() == 1)
        && let Some(sep) = [',', ';', '\t', '|']
            .into_iter()
            .find(|c| only.contains(*c) && *c as u8 != delimiter)
    {
        let name = match sep {
            ',' => "comma",
            ';' => "semicolon",
            '\t' => "tab",
            _ => "pipe",
        };
        report.errors.push(RowError {
            line: 1,
            column: None,
            message: format!(
                "the header is one column, {only:?}: its fields seem separated by {sep:?}; import it with --delimiter {name}"
            ),
        });
        return Ok(report);
    }
    let cols = match read_header(kind, &header) {
        Ok(c) => c,
        Err(problems) => {
            report
                .errors
                .extend(problems.into_iter().map(|message| RowError {
                    line: 1,
                    column: None,
                    message,
                }));
            return Ok(report);
        }
    };

    let source = format!("import {} {}", kind.name(), path.display());
    let mut work = Work::new(opts.rules, opts.tz, opts.now, opts.actor, &source);
    let mut tx = store.begin().await?;
    // Parsing runs on its own thread, a few chunks ahead of the database work.
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Batch>(4);
    let tz = opts.tz;
    let parser = std::thread::spawn(move || parse_file(kind, &cols, reader, tz, &sender));
    while let Some(batch) = batches.recv().await {
        report.rows += batch.rows;
        report.errors.extend(batch.errors);
        let mut chunk = batch.parsed;
        apply_chunk(&mut work, &mut tx, &mut chunk, &mut report).await?;
        if let Some(p) = opts.progress {
            p(batch.bytes, total);
        }
    }
    if parser.join().is_err() {
        anyhow::bail!("the CSV parser stopped unexpectedly; nothing was imported");
    }
    work.finish(&mut tx).await?;
    report.tally = work.tally;
    if let Some(p) = opts.progress {
        p(total, total);
    }
    if report.errors.is_empty() && !opts.dry_run {
        tx.commit().await?;
        report.committed = true;
    } else {
        tx.rollback().await?;
    }
    report.errors.sort_by_key(|e| e.line);
    Ok(report)
}

/// Parsed rows and the problems found while parsing them, for one chunk of the file.
struct Batch {
    parsed: Vec<(u64, Row)>,
    errors: Vec<RowError>,
    /// Data rows read (blank lines not counted).
    rows: u64,
    /// Bytes of the file read so far.
    bytes: u64,
}

/// Reads and parses the whole file, sending a batch every `CHUNK` good rows. Stops early
/// only if the receiver is gone (the import failed).
fn parse_file(
    kind: Kind,
    cols: &kinds::Columns,
    mut reader: csv::Reader<std::io::BufReader<std::fs::File>>,
    tz: Tz,
    sender: &tokio::sync::mpsc::Sender<Batch>,
) {
    // Key hash -> first line, for "duplicate key in the file". 128 bits: no false alarms;
    // 24 bytes a row is all the import keeps per row.
    let mut seen: HashMap<[u64; 2], u32> = HashMap::new();
    let hashers = (std::hash::RandomState::new(), std::hash::RandomState::new());
    let new_batch = || Batch {
        parsed: Vec::with_capacity(CHUNK),
        errors: Vec::new(),
        rows: 0,
        bytes: 0,
    };
    let mut batch = new_batch();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                batch.errors.push(RowError {
                    line,
                    column: None,
                    message: csv_message(&e),
                });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        batch.rows += 1;
        match parse_row(kind, cols, &record, tz) {
            Ok(row) => {
                let key = kinds::key_of(kind, cols, &record);
                let (mut a, mut b) = (hashers.0.build_hasher(), hashers.1.build_hasher());
                a.write(key.as_bytes());
                b.write(key.as_bytes());
                let hash = [a.finish(), b.finish()];
                let line32 = u32::try_from(line).unwrap_or(u32::MAX);
                if let Some(first) = seen.insert(hash, line32) {
                    seen.insert(hash, first);
                    batch.errors.push(RowError {
                        line,
                        column: None,
                        message: format!(
                            "duplicate of line {first} (same {})",
                            kind.key().join(", ")
                        ),
                    });
                    continue;
                }
                batch.parsed.push((line, row));
            }
            Err(cells) => batch.errors.extend(cells.into_iter().map(|c| RowError {
                line,
                column: c.column,
                message: c.message,
            })),
        }
        if batch.parsed.len() >= CHUNK {
            batch.bytes = record.position().map_or(0, |p| p.byte());
            if sender
                .blocking_send(std::mem::replace(&mut batch, new_batch()))
                .is_err()
            {
                return;
            }
        }
    }
    let _ = sender.blocking_send(batch);
}

async fn apply_chunk(
    work: &mut Work<'_>,
    tx: &mut Tx,
    chunk: &mut Vec<(u64, Row)>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let outcomes = apply_rows(work, tx, std::mem::take(chunk)).await?;
    for (line, outcome) in outcomes {
        match outcome {
            Ok(a) => work.tally.count(a),
            Err(WriteError::Sql(e)) => return Err(e.into()),
            Err(e) => {
                report.errors.push(RowError {
                    line,
                    column: e.column().map(str::to_string),
                    message: e.to_string(),
                });
            }
        }
    }
    work.flush(tx).await?;
    Ok(())
}

/// The rows of one kind (applied in bulk), with their lines, and the others.
#[allow(clippy::type_complexity)]
fn take<T>(
    rows: Vec<(u64, Row)>,
    kind: impl Fn(Row) -> Result<T, Row>,
) -> ((Vec<u64>, Vec<T>), Vec<(u64, Row)>) {
    let (mut lines, mut taken, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for (line, row) in rows {
        match kind(row) {
            Ok(t) => {
                lines.push(line);
                taken.push(t);
            }
            Err(row) => others.push((line, row)),
        }
    }
    ((lines, taken), others)
}

/// The outcome of each row, by its position (line or index) in the input.
pub type Outcomes = Vec<(u64, Result<crate::change::Applied, WriteError>)>;

/// Applies parsed rows (any kinds): marks, enrolments and people in bulk, the others one
/// by one. Used by `import` and by the HTTP API, so both apply the same rules the same way.
#[allow(clippy::result_large_err)] // `take`'s closures hand the row back as it came
pub async fn apply_rows(
    work: &mut Work<'_>,
    tx: &mut Tx,
    rows: Vec<(u64, Row)>,
) -> Result<Outcomes, sqlx::Error> {
    let mut outcomes: Outcomes = Vec::with_capacity(rows.len());
    let (enrolments, rows) = take(rows, |r| match r {
        Row::Enrolment(e) => Ok(e),
        other => Err(other),
    });
    if !enrolments.1.is_empty() {
        let results = work.upsert_enrolments(tx, &enrolments.1).await?;
        outcomes.extend(enrolments.0.into_iter().zip(results));
    }
    let (people, rows) = take(rows, |r| match r {
        Row::Person(p) => Ok(p),
        other => Err(other),
    });
    if !people.1.is_empty() {
        let results = work.upsert_people(tx, &people.1).await?;
        outcomes.extend(people.0.into_iter().zip(results));
    }
    let (marks, others) = take(rows, |r| match r {
        Row::Mark(m) => Ok(m),
        other => Err(other),
    });
    if !marks.1.is_empty() {
        let results = work.mark_attendance(tx, &marks.1).await?;
        outcomes.extend(marks.0.into_iter().zip(results));
    }
    for (line, row) in others {
        let result = match &row {
            Row::Course(c) => work.upsert_course(tx, c).await,
            Row::Part(p) => work.upsert_part(tx, p).await,
            Row::Person(_) => continue,
            Row::Enrolment(_) => continue,
            Row::PartResult(r) => work.record_part_result(tx, r).await,
            Row::Result(r) => work.record_result(tx, r).await,
            Row::Mark(_) => continue,
        };
        outcomes.push((line, result));
    }
    outcomes.sort_by_key(|(line, _)| *line);
    // A database error ends the transaction (PostgreSQL refuses every later statement):
    // it is the caller's error, not one row's.
    if let Some(pos) = outcomes
        .iter()
        .position(|(_, o)| matches!(o, Err(WriteError::Sql(_))))
        && let (_, Err(WriteError::Sql(e))) = outcomes.swap_remove(pos)
    {
        return Err(e);
    }
    Ok(outcomes)
}

/// The field separator of a file, from its header row: a semicolon when the header has
/// more semicolons than commas (what Excel writes where the decimal mark is a comma, as in
/// the Netherlands and Belgium), else a comma.
fn sniff_delimiter(path: &Path) -> u8 {
    use std::io::{BufRead, Read};
    let mut first = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = std::io::BufReader::new(f.take(64 * 1024)).read_until(b'\n', &mut first);
    }
    let count = |b: u8| first.iter().filter(|c| **c == b).count();
    if count(b';') > count(b',') {
        b';'
    } else {
        b','
    }
}

fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "this line is not UTF-8: save the file as \"CSV UTF-8\" (in Excel: Save As, CSV UTF-8 (comma delimited)) and import it again".into(),
        csv::ErrorKind::Io(io) => format!("cannot read the file: {io}"),
        _ => {
            let text = e.to_string();
            text.split(": ").last().unwrap_or(&text).to_string()
        }
    }
}
