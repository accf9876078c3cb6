//! The seven CSV kinds of SPEC §4: their columns, keys, and how a row becomes a
//! validated input. Nothing from a file reaches the store unparsed.

use crate::domain::input::*;
use crate::domain::time::{DayEdge, parse_instant};
use crate::domain::{
    CourseStatus, EmailAddress, MAX_LINE, MAX_TEXT, Mark, Outcome, parse_bool, parse_id,
    parse_line, parse_text,
};
use chrono_tz::Tz;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    // The singular (and the other spellings people type) is what they mean, not a
    // near-miss to be corrected into another kind (`person` is not `parts`).
    #[value(alias = "course")]
    Courses,
    #[value(alias = "part")]
    Parts,
    #[value(aliases = ["person", "persons", "participants", "participant"])]
    People,
    #[value(aliases = ["enrolment", "enrollments", "enrollment"])]
    Enrolments,
    #[value(aliases = ["marks", "mark"])]
    Attendance,
    #[value(name = "part-results", aliases = ["part-result", "part_results"])]
    PartResults,
    #[value(alias = "result")]
    Results,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Courses => "courses",
            Kind::Parts => "parts",
            Kind::People => "people",
            Kind::Enrolments => "enrolments",
            Kind::Attendance => "attendance",
            Kind::PartResults => "part-results",
            Kind::Results => "results",
        }
    }

    pub fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Courses => &["id", "name", "type", "status", "start", "end"],
            Kind::Parts => &[
                "course_id",
                "id",
                "name",
                "start",
                "end",
                "attendance_required",
                "passing_required",
            ],
            Kind::People => &["id", "full_name", "email"],
            Kind::Enrolments => &["course_id", "person_id"],
            Kind::Attendance => &["course_id", "part_id", "person_id", "status"],
            Kind::PartResults => &["course_id", "part_id", "person_id", "passed"],
            Kind::Results => &["course_id", "person_id", "result"],
        }
    }

    pub fn optional(self) -> &'static [&'static str] {
        match self {
            Kind::Courses => &["location"],
            Kind::Parts => &["min_minutes"],
            Kind::People => &["first_name", "locale"],
            Kind::Enrolments => &["walk_in"],
            Kind::Attendance => &["minutes"],
            Kind::PartResults => &[],
            Kind::Results => &["score", "comment"],
        }
    }

    /// What `column` holds: the API checks a JSON body's values by it, and its OpenAPI
    /// document declares it (src/http/schema.rs).
    pub fn holds(self, column: &str) -> Holds {
        match column {
            "id" | "course_id" | "part_id" | "person_id" | "type" => Holds::Id,
            "start" | "end" => Holds::Time,
            "email" => Holds::Email,
            "attendance_required" | "passing_required" | "walk_in" | "passed" => Holds::Bool,
            "min_minutes" | "minutes" => Holds::Whole,
            "score" => Holds::Number,
            "comment" => Holds::Text,
            "status" if self == Kind::Courses => Holds::Word(CourseStatus::WORDS),
            "status" => Holds::Word(Mark::WORDS),
            "result" => Holds::Word(Outcome::WORDS),
            _ => Holds::Line,
        }
    }

    /// The columns that identify a row: a second row with the same key is an error.
    pub fn key(self) -> &'static [&'static str] {
        match self {
            Kind::Courses | Kind::People => &["id"],
            Kind::Parts => &["course_id", "id"],
            Kind::Enrolments | Kind::Results => &["course_id", "person_id"],
            Kind::Attendance | Kind::PartResults => &["course_id", "part_id", "person_id"],
        }
    }

    /// Whether extra `field.NAME` columns fill the free `fields` map.
    pub fn has_fields(self) -> bool {
        matches!(self, Kind::Courses | Kind::People)
    }
}

/// What a column holds (see [`Kind::holds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// An identifier (`parse_id`).
    Id,
    /// One line of text (a name): `parse_line`.
    Line,
    /// Free text with line breaks (a comment): `parse_text`.
    Text,
    /// A time as `parse_instant` reads it.
    Time,
    /// An email address, or nothing.
    Email,
    Bool,
    /// A whole number, 0 or more.
    Whole,
    Number,
    /// One of these words.
    Word(&'static [&'static str]),
}

/// A problem with one cell (or the row as a whole when `column` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    pub column: Option<String>,
    pub message: String,
    /// A rule between cells (an end before its start), not the form of one value: the
    /// API answers it as a refusal (409), like an unknown course type.
    pub between: bool,
}

/// The header of a file: column positions by name.
#[derive(Debug)]
pub struct Columns {
    index: HashMap<String, usize>,
    fields: Vec<(String, usize)>,
    pub width: usize,
}

/// Checks the header row; every problem is returned.
pub fn read_header(kind: Kind, header: &csv::StringRecord) -> Result<Columns, Vec<String>> {
    let mut problems = Vec::new();
    let mut index = HashMap::new();
    let mut fields = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        let name = raw.trim_start_matches('\u{feff}').trim().to_string();
        let known =
            kind.required().contains(&name.as_str()) || kind.optional().contains(&name.as_str());
        if let Some(field) = name.strip_prefix("field.").filter(|_| kind.has_fields()) {
            if field.is_empty() {
                problems.push(format!(
                    "column {}: `field.` needs a name, e.g. field.cost_centre",
                    i + 1
                ));
            } else if let Err(e) = parse_id(field, "the custom field name") {
                problems.push(format!("column {}: {e}", i + 1));
            } else {
                fields.push((field.to_string(), i));
            }
        } else if !known {
            let mut expected: Vec<&str> = kind.required().to_vec();
            expected.extend(kind.optional());
            problems.push(format!(
                "unknown column {name:?} (a {} file has columns {}{})",
                kind.name(),
                expected.join(", "),
                if kind.has_fields() {
                    ", and field.NAME for custom fields"
                } else {
                    ""
                }
            ));
        }
        if index.insert(name.clone(), i).is_some() {
            problems.push(format!("column {name:?} appears twice"));
        }
    }
    for required in kind.required() {
        if !index.contains_key(*required) {
            problems.push(format!(
                "missing column {required} (a {} file needs {})",
                kind.name(),
                kind.required().join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(Columns {
            index,
            fields,
            width: header.len(),
        })
    } else {
        Err(problems)
    }
}

/// A parsed row of any kind.
#[derive(Debug, Clone)]
pub enum Row {
    Course(CourseInput),
    Part(PartInput),
    Person(PersonInput),
    Enrolment(EnrolmentInput),
    Mark(MarkInput),
    PartResult(PartResultInput),
    Result(ResultInput),
}

/// Reads cells by column name, collecting every problem of the row.
struct Cells<'a> {
    cols: &'a Columns,
    rec: &'a csv::StringRecord,
    errors: Vec<CellError>,
}

impl Cells<'_> {
    fn raw(&self, col: &str) -> Option<&str> {
        self.cols
            .index
            .get(col)
            .and_then(|&i| self.rec.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    fn fail(&mut self, col: &str, message: String) {
        self.errors.push(CellError {
            column: Some(col.to_string()),
            message,
            between: false,
        });
    }

    fn required(&mut self, col: &str) -> Option<&str> {
        let v = self
            .cols
            .index
            .get(col)
            .and_then(|&i| self.rec.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty());
        if v.is_none() {
            self.errors.push(CellError {
                column: Some(col.to_string()),
                message: "is empty".into(),
                between: false,
            });
        }
        v
    }

    fn parse<T>(
        &mut self,
        col: &str,
        optional: bool,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let v = if optional {
            self.raw(col)
        } else {
            self.required(col)
        }?;
        let v = v.to_string();
        match f(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.fail(col, e);
                None
            }
        }
    }

    fn id(&mut self, col: &str) -> Option<String> {
        self.parse(col, false, |s| parse_id(s, col))
    }

    /// A required line of text (a name): one line, at most 200 characters.
    fn text(&mut self, col: &str) -> Option<String> {
        self.parse(col, false, |s| parse_line(s, MAX_LINE))
    }

    /// An optional line of text.
    fn opt_text(&mut self, col: &str) -> Option<String> {
        self.parse(col, true, |s| parse_line(s, MAX_LINE))
    }

    /// Optional free text (a comment): line breaks allowed.
    fn opt_free_text(&mut self, col: &str) -> Option<String> {
        self.parse(col, true, |s| parse_text(s, MAX_TEXT))
    }

    /// The `field.NAME` columns: one line each, at most 1,000 characters.
    fn fields(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let fields: Vec<(String, usize)> = self
            .cols
            .fields
            .iter()
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        for (name, i) in fields {
            let Some(v) = self.rec.get(i).map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            match parse_line(v, 5 * MAX_LINE) {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(e) => self.fail(&format!("field.{name}"), e),
            }
        }
        out
    }
}

fn whole(what: &'static str) -> impl Fn(&str) -> Result<u32, String> {
    move |s| {
        s.parse::<u32>()
            .map_err(|_| format!("{s:?} is not a whole number of {what}"))
    }
}

/// Parses one data row into a validated input, or every problem it has.
pub fn parse_row(
    kind: Kind,
    cols: &Columns,
    rec: &csv::StringRecord,
    tz: Tz,
) -> Result<Row, Vec<CellError>> {
    if rec.len() != cols.width {
        return Err(vec![CellError {
            column: None,
            message: format!(
                "the row has {} fields, the header has {}",
                rec.len(),
                cols.width
            ),
            between: false,
        }]);
    }
    let mut c = Cells {
        cols,
        rec,
        errors: Vec::new(),
    };
    let row = match kind {
        Kind::Courses => {
            let (id, name, type_id) = (c.id("id"), c.text("name"), c.id("type"));
            let status = c.parse("status", false, |s| s.parse::<CourseStatus>());
            let start = c.parse("start", false, |s| parse_instant(s, tz, DayEdge::Start));
            let end = c.parse("end", false, |s| parse_instant(s, tz, DayEdge::End));
            if let (Some(s), Some(e)) = (start, end)
                && e < s
            {
                c.errors.push(CellError {
                    column: Some("end".into()),
                    message: "is before start".into(),
                    between: true,
                });
            }
            let (location, fields) = (c.opt_text("location"), c.fields());
            (|| {
                Some(Row::Course(CourseInput {
                    id: id?,
                    name: name?,
                    type_id: type_id?,
                    status: status?,
                    start: start?,
                    end: end?,
                    location,
                    fields,
                }))
            })()
        }
        Kind::Parts => {
            let (course_id, id, name) = (c.id("course_id"), c.id("id"), c.text("name"));
            let start = c.parse("start", false, |s| parse_instant(s, tz, DayEdge::Start));
            let end = c.parse("end", false, |s| parse_instant(s, tz, DayEdge::End));
            if let (Some(s), Some(e)) = (start, end)
                && e < s
            {
                c.errors.push(CellError {
                    column: Some("end".into()),
                    message: "is before start".into(),
                    between: true,
                });
            }
            let attendance_required = c.parse("attendance_required", false, parse_bool);
            let passing_required = c.parse("passing_required", false, parse_bool);
            let min_minutes = c.parse("min_minutes", true, whole("minutes"));
            (|| {
                Some(Row::Part(PartInput {
                    course_id: course_id?,
                    id: id?,
                    name: name?,
                    start: start?,
                    end: end?,
                    attendance_required: attendance_required?,
                    passing_required: passing_required?,
                    min_minutes,
                }))
            })()
        }
        Kind::People => {
            let (id, full_name) = (c.id("id"), c.text("full_name"));
            // An empty email is allowed (the delivery then fails with that reason);
            // a malformed one is refused here.
            let email = c.parse("email", true, EmailAddress::parse);
            let bad_email = c
                .errors
                .iter()
                .any(|e| e.column.as_deref() == Some("email"));
            let (first_name, locale, fields) =
                (c.opt_text("first_name"), c.opt_text("locale"), c.fields());
            (|| {
                Some(Row::Person(PersonInput {
                    id: id?,
                    full_name: full_name?,
                    email: if bad_email { return None } else { email },
                    first_name,
                    locale,
                    fields,
                }))
            })()
        }
        Kind::Enrolments => {
            let (course_id, person_id) = (c.id("course_id"), c.id("person_id"));
            let walk_in = c.parse("walk_in", true, parse_bool);
            (|| {
                Some(Row::Enrolment(EnrolmentInput {
                    course_id: course_id?,
                    person_id: person_id?,
                    walk_in,
                }))
            })()
        }
        Kind::Attendance => {
            let (course_id, part_id, person_id) =
                (c.id("course_id"), c.id("part_id"), c.id("person_id"));
            let mark = c.parse("status", false, |s| {
                if s == "pending" {
                    Err("\"pending\" is derived (a part that ended without a mark), not given: use booked, attended or not_attended".into())
                } else {
                    s.parse::<Mark>()
                }
            });
            let minutes = c.parse("minutes", true, whole("minutes"));
            (|| {
                Some(Row::Mark(MarkInput {
                    course_id: course_id?,
                    part_id: part_id?,
                    person_id: person_id?,
                    mark: mark?,
                    minutes,
                }))
            })()
        }
        Kind::PartResults => {
            let (course_id, part_id, person_id) =
                (c.id("course_id"), c.id("part_id"), c.id("person_id"));
            let passed = c.parse("passed", false, parse_bool);
            (|| {
                Some(Row::PartResult(PartResultInput {
                    course_id: course_id?,
                    part_id: part_id?,
                    person_id: person_id?,
                    passed: passed?,
                }))
            })()
        }
        Kind::Results => {
            let (course_id, person_id) = (c.id("course_id"), c.id("person_id"));
            let result = c.parse("result", false, |s| s.parse::<Outcome>());
            let score = c.parse("score", true, |s| {
                s.replace(',', ".")
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| format!("{s:?} is not a number"))
            });
            let comment = c.opt_free_text("comment");
            (|| {
                Some(Row::Result(ResultInput {
                    course_id: course_id?,
                    person_id: person_id?,
                    result: result?,
                    score,
                    comment,
                }))
            })()
        }
    };
    match row {
        Some(r) if c.errors.is_empty() => Ok(r),
        _ => Err(c.errors),
    }
}

/// The key cells of a row, joined, for duplicate detection.
pub fn key_of(kind: Kind, cols: &Columns, rec: &csv::StringRecord) -> String {
    kind.key()
        .iter()
        .map(|k| {
            cols.index
                .get(*k)
                .and_then(|&i| rec.get(i))
                .unwrap_or("")
                .trim()
        })
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [Kind; 7] = [
        Kind::Courses,
        Kind::Parts,
        Kind::People,
        Kind::Enrolments,
        Kind::Attendance,
        Kind::PartResults,
        Kind::Results,
    ];

    proptest! {
        #[test]
        fn no_row_of_any_kind_makes_the_parser_panic(
            kind in 0usize..7,
            cells in proptest::collection::vec(".{0,40}", 0..12),
        ) {
            let kind = KINDS[kind];
            let mut names: Vec<&str> = kind.required().to_vec();
            names.extend(kind.optional());
            let header = csv::StringRecord::from(names.clone());
            let cols = read_header(kind, &header).expect("header");
            let mut row = cells.clone();
            row.resize(names.len(), String::new());
            for rec in [csv::StringRecord::from(cells), csv::StringRecord::from(row)] {
                // Either a parsed row or a list of problems, never a panic.
                let _ = parse_row(kind, &cols, &rec, chrono_tz::Europe::Amsterdam);
            }
        }

        #[test]
        fn no_header_makes_the_header_check_panic(cells in proptest::collection::vec(".{0,20}", 0..10), kind in 0usize..7) {
            let _ = read_header(KINDS[kind], &csv::StringRecord::from(cells));
        }
    }
}
