//! The API's JSON bodies, described once: each field of a body is a column of an import
//! kind ([`Kind::holds`] says what it holds), and that one description gives both the
//! schema in the OpenAPI document and the check of a body the server receives. A body is
//! accepted exactly when the document calls it valid: a value of the wrong JSON type is
//! refused (never coerced into text), a string must match the pattern the document
//! states, an unknown key is refused. What passes is then parsed by the importer's own
//! parser; only what no schema can say is left to it (an end before its start, a
//! course type or person that does not exist).

use crate::import::Kind;
use crate::import::kinds::Holds;
use regex::Regex;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// A character that is neither a control character nor white space (what `trim` keeps).
macro_rules! solid {
    () => {
        r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    };
}
/// A character of a line: no control character but tab.
macro_rules! line_char {
    () => {
        r"[^\x00-\x08\x0a-\x1f\x7f-\x9f]"
    };
}
/// A character of free text: line breaks allowed too.
macro_rules! text_char {
    () => {
        r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    };
}

/// An id, or a required line of text: 1 to 200 characters, one line, no white space at
/// either end.
const ID: &str = concat!(
    "^",
    solid!(),
    "(?:",
    line_char!(),
    "{0,198}",
    solid!(),
    ")?$"
);
/// An optional line: the same, or empty.
const LINE: &str = concat!(
    "^(?:",
    solid!(),
    "(?:",
    line_char!(),
    "{0,198}",
    solid!(),
    ")?)?$"
);
/// A custom field's value: up to 1,000 characters, one line, or empty.
const FIELD: &str = concat!(
    "^(?:",
    solid!(),
    "(?:",
    line_char!(),
    "{0,998}",
    solid!(),
    ")?)?$"
);
/// Free text (a comment): up to 2,000 characters, line breaks allowed, or empty.
const TEXT: &str = concat!(
    "^(?:",
    solid!(),
    "(?:",
    text_char!(),
    "{0,1998}",
    solid!(),
    ")?)?$"
);
/// An email address (a plain one: dotted local part, host name with a top-level domain),
/// or empty.
const EMAIL: &str = r"^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,30}(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,30}){0,2}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?\.){1,4}[A-Za-z]{2,20})?$";
/// A date (every day of the calendar, 29 February in leap years only), optionally with a
/// local time (`T` or a space, minutes or seconds), optionally with fractions of a second
/// and an offset (RFC 3339).
const TIME: &str = concat!(
    "^(?:",
    r"[1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])",
    r"|[1-9][0-9]{3}-(?:0[13-9]|1[0-2])-(?:29|30)",
    r"|[1-9][0-9]{3}-(?:0[13578]|1[02])-31",
    r"|(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)-02-29",
    ")",
    r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:(?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]))?)?)?$"
);

fn pattern(holds: Holds, required: bool) -> Option<&'static str> {
    match holds {
        Holds::Id => Some(ID),
        Holds::Line if required => Some(ID),
        Holds::Line => Some(LINE),
        Holds::Text => Some(TEXT),
        Holds::Time => Some(TIME),
        Holds::Email => Some(EMAIL),
        Holds::Bool | Holds::Whole | Holds::Number | Holds::Word(_) => None,
    }
}

static COMPILED: LazyLock<Vec<(&'static str, Option<Regex>)>> = LazyLock::new(|| {
    [ID, LINE, FIELD, TEXT, EMAIL, TIME]
        .into_iter()
        .map(|p| (p, Regex::new(p).ok()))
        .collect()
});

/// Whether `s` matches `pattern` as a JSON Schema validator reads it (ECMA/Python `$`
/// also matches before one final line break; the parsers trim it).
fn matches(pattern: &str, s: &str) -> bool {
    let Some(Some(re)) = COMPILED.iter().find(|(p, _)| *p == pattern).map(|(_, r)| r) else {
        return false;
    };
    re.is_match(s) || s.strip_suffix('\n').is_some_and(|t| re.is_match(t))
}

/// What a field takes, in words, for the document and for refusals.
fn expected(holds: Holds, required: bool) -> String {
    match holds {
        Holds::Id => "an id: 1 to 200 characters on one line, no space at either end".into(),
        Holds::Line if required => {
            "1 to 200 characters on one line, no space at either end".into()
        }
        Holds::Line => "up to 200 characters on one line, no space at either end".into(),
        Holds::Text => {
            "up to 2,000 characters (line breaks allowed), no space at either end".into()
        }
        Holds::Time => "a date (2026-03-02, that day in the office's time zone), a local time (2026-03-02 09:00 or 2026-03-02T09:00:30) or RFC 3339 with its offset (2026-03-02T09:00:00+01:00)".into(),
        Holds::Email => "an email address such as ada@example.org, or empty".into(),
        Holds::Bool => "true or false (a JSON boolean)".into(),
        Holds::Whole => "a whole number, 0 or more (a JSON number)".into(),
        Holds::Number => "a number (a JSON number)".into(),
        Holds::Word(words) => format!("one of {}", crate::domain::one_of(words)),
    }
}

/// The fields a body of `kind` has: its columns but those the path gives, each with what
/// it holds and whether a body must have it (an email may be left out: no address).
fn fields(kind: Kind, from_path: &[&str]) -> Vec<(&'static str, Holds, bool)> {
    let required = kind.required().iter().map(|c| (*c, *c != "email"));
    let optional = kind.optional().iter().map(|c| (*c, false));
    required
        .chain(optional)
        .filter(|(c, _)| !from_path.contains(c))
        .map(|(c, r)| (c, kind.holds(c), r))
        .collect()
}

fn property(holds: Holds, required: bool) -> Value {
    let (ty, mut p) = match holds {
        Holds::Bool => ("boolean", json!({})),
        Holds::Whole => ("integer", json!({"minimum": 0, "maximum": u32::MAX})),
        Holds::Number => ("number", json!({})),
        Holds::Word(words) => ("string", json!({"enum": words})),
        h => (
            "string",
            json!({"pattern": pattern(h, required).unwrap_or(LINE)}),
        ),
    };
    p["description"] = json!(expected(holds, required));
    if required {
        p["type"] = json!(ty);
    } else {
        p["type"] = json!([ty, "null"]);
        if let Some(words) = p.get_mut("enum").and_then(Value::as_array_mut) {
            words.push(Value::Null);
        }
    }
    p
}

/// The schema of a body of `kind` whose path gives `from_path`.
pub fn body(kind: Kind, from_path: &[&str]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, holds, must) in fields(kind, from_path) {
        properties.insert(name.to_string(), property(holds, must));
        if must {
            required.push(name);
        }
    }
    if kind.has_fields() {
        properties.insert(
            "fields".into(),
            json!({"type": "object", "description": "custom fields: name -> text",
                   "propertyNames": {"pattern": ID},
                   "additionalProperties": {"type": "string", "pattern": FIELD}}),
        );
    }
    json!({"type": "object", "additionalProperties": false,
           "required": required, "properties": properties})
}

/// The schema of a path parameter that names a course, part or person.
pub fn id_parameter() -> Value {
    json!({"type": "string", "pattern": ID})
}

/// The body of a certification action: an optional `reason` (kept in the history); for
/// record_exam also `passed` (required) and `test_out`.
pub fn certification_action(exam: bool) -> Value {
    let mut properties = json!({"reason": property(Holds::Text, false)});
    let mut required: Vec<&str> = Vec::new();
    if exam {
        properties["passed"] = property(Holds::Bool, true);
        properties["test_out"] = property(Holds::Bool, false);
        required.push("passed");
    }
    json!({"type": "object", "additionalProperties": false, "required": required,
           "properties": properties})
}

/// A certification action's body checked against [`certification_action`]: the reason,
/// and for record_exam whether passed and whether by test-out.
pub fn certification_fields(
    body: &Value,
    exam: bool,
) -> Result<(String, Option<bool>, bool), Vec<Value>> {
    let Some(object) = body.as_object() else {
        return Err(vec![json!({"message": "the body must be a JSON object"})]);
    };
    let mut errors = Vec::new();
    let (mut reason, mut passed, mut test_out) = (String::new(), None, false);
    for (key, value) in object {
        let result = match key.as_str() {
            "reason" => cell(Holds::Text, value, false).map(|r| reason = r),
            "passed" if exam => cell(Holds::Bool, value, true).map(|b| passed = Some(b == "true")),
            "test_out" if exam => cell(Holds::Bool, value, false).map(|b| test_out = b == "true"),
            _ => Err(if exam {
                "is not a field of this body (reason, passed, test_out)".to_string()
            } else {
                "is not a field of this body (reason; passed and test_out belong to record_exam)"
                    .to_string()
            }),
        };
        if let Err(message) = result {
            errors.push(refusal(key, message));
        }
    }
    if exam && passed.is_none() && !object.contains_key("passed") {
        errors.push(refusal(
            "passed",
            "is required: record_exam needs \"passed\": true or false".into(),
        ));
    }
    if errors.is_empty() {
        Ok((reason, passed, test_out))
    } else {
        Err(errors)
    }
}

/// A refusal of one field: `{"field", "message"}`.
fn refusal(field: &str, message: String) -> Value {
    json!({"field": field, "message": message})
}

/// The text of `value` for the importer's parser, or why it does not fit `holds`.
pub fn cell(holds: Holds, value: &Value, required: bool) -> Result<String, String> {
    let wrong = || Err(format!("must be {}", expected(holds, required)));
    match (holds, value) {
        (_, Value::Null) if required => Err(format!(
            "must not be null: it must be {}",
            expected(holds, true)
        )),
        (_, Value::Null) => Ok(String::new()),
        (Holds::Bool, Value::Bool(b)) => Ok(b.to_string()),
        (Holds::Whole, Value::Number(n)) => match n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }) {
            Some(w) if w <= u64::from(u32::MAX) => Ok(w.to_string()),
            _ => wrong(),
        },
        (Holds::Number, Value::Number(n)) => Ok(n.to_string()),
        (Holds::Word(words), Value::String(s)) if words.contains(&s.as_str()) => Ok(s.clone()),
        (h, Value::String(s)) => match pattern(h, required) {
            Some(p) if matches(p, s) => Ok(s.clone()),
            _ => Err(why_not(h, s, required)
                .unwrap_or_else(|| format!("must be {}", expected(holds, required)))),
        },
        _ => wrong(),
    }
}

/// What exactly is wrong with a string that does not fit: the control character, the
/// length, the space at an end, or the parser's own reason.
fn why_not(holds: Holds, s: &str, required: bool) -> Option<String> {
    let (max, breaks) = match holds {
        Holds::Id | Holds::Line => (crate::domain::MAX_LINE, false),
        Holds::Text => (crate::domain::MAX_TEXT, true),
        Holds::Time => {
            let tz = chrono_tz::UTC;
            return crate::domain::time::parse_instant(s, tz, crate::domain::time::DayEdge::Start)
                .err();
        }
        Holds::Email => return crate::domain::EmailAddress::parse(s).err(),
        _ => return None,
    };
    if let Some(c) = crate::domain::control_in(s, breaks) {
        return Some(format!(
            "contains {c}; {}",
            if breaks {
                "a comment may hold line breaks and tabs, no other control character"
            } else {
                "a name or other line of text must be one line (it can end up in an email header)"
            }
        ));
    }
    if s.trim().chars().count() > max {
        return Some(format!("is longer than {max} characters"));
    }
    if s.trim().is_empty() && required {
        return Some("is empty".into());
    }
    if s.trim() != s {
        return Some("starts or ends with a space: leave it out".into());
    }
    None
}

/// An id from the path, checked like the body's ids.
pub fn path_id(name: &str, value: &str) -> Result<(), Value> {
    if matches(ID, value) {
        Ok(())
    } else {
        Err(refusal(
            name,
            format!("must be {} (from the URL)", expected(Holds::Id, true)),
        ))
    }
}

/// A body of `kind` as CSV header and cells, the path's ids added; every misfit field
/// (unknown, missing, of the wrong type or form) as a refusal.
pub fn row_cells(
    kind: Kind,
    object: &Map<String, Value>,
    ids: &[(&str, &str)],
) -> Result<(Vec<String>, Vec<String>), Vec<Value>> {
    let from_path: Vec<&str> = ids.iter().map(|(k, _)| *k).collect();
    let known = fields(kind, &from_path);
    let mut header = Vec::new();
    let mut cells = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in object {
        if from_path.contains(&key.as_str()) {
            errors.push(refusal(
                key,
                "is given by the URL; leave it out of the body".into(),
            ));
            continue;
        }
        if key == "fields" && kind.has_fields() {
            match value {
                Value::Object(fields) => {
                    for (name, v) in fields {
                        let field = format!("fields.{name}");
                        if !matches(ID, name) {
                            errors.push(refusal(
                                &field,
                                format!("the name must be {}", expected(Holds::Id, true)),
                            ));
                        } else if let Some(text) = v.as_str().filter(|t| matches(FIELD, t)) {
                            header.push(format!("field.{name}"));
                            cells.push(text.to_string());
                        } else {
                            errors.push(refusal(&field, "must be a string of up to 1,000 characters on one line, no space at either end".into()));
                        }
                    }
                }
                _ => errors.push(refusal(
                    "fields",
                    "must be an object of custom fields (name: text)".into(),
                )),
            }
            continue;
        }
        let Some((name, holds, required)) = known.iter().find(|(n, _, _)| *n == key) else {
            let names: Vec<&str> = known.iter().map(|(n, _, _)| *n).collect();
            let hint = match crate::suggest::nearest(key, names.iter().copied()) {
                Some(near) => format!(" (did you mean `{near}`?)"),
                None => format!(" (the fields are {})", names.join(", ")),
            };
            errors.push(refusal(key, format!("is not a field of this body{hint}")));
            continue;
        };
        match cell(*holds, value, *required) {
            Ok(text) => {
                header.push((*name).to_string());
                cells.push(text);
            }
            Err(message) => errors.push(refusal(key, message)),
        }
    }
    for (name, holds, required) in &known {
        if object.contains_key(*name) {
            continue;
        }
        if *required {
            errors.push(refusal(
                name,
                format!("is required: {}", expected(*holds, true)),
            ));
        } else if kind.required().contains(name) {
            // A column the file must have but the body may leave out (the email).
            header.push((*name).to_string());
            cells.push(String::new());
        }
    }
    for (k, v) in ids {
        if let Err(e) = path_id(k, v) {
            errors.push(e);
        }
        header.push((*k).to_string());
        cells.push((*v).to_string());
    }
    if errors.is_empty() {
        Ok((header, cells))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles_in_rust() {
        for (p, re) in COMPILED.iter() {
            assert!(re.is_some(), "{p} does not compile");
        }
    }

    #[test]
    fn a_time_the_pattern_accepts_is_one_the_parser_reads_and_the_other_way_round() {
        let tz = chrono_tz::Europe::Amsterdam;
        for s in [
            "2026-03-02",
            "2028-02-29",
            "2000-02-29",
            "2026-11-24 19:00",
            "2026-11-24T19:00:30",
            "2026-03-02T09:00:00+01:00",
            "2026-03-02 09:00:00Z",
            "2026-03-02T09:00:00.5-03:30",
            "2026-12-31T23:59:59+23:59",
        ] {
            assert!(matches(TIME, s), "{s} should match");
            assert!(
                crate::domain::time::parse_instant(s, tz, crate::domain::time::DayEdge::Start)
                    .is_ok(),
                "{s} should parse"
            );
        }
        for s in [
            "2026-02-29",
            "1900-02-29",
            "2026-04-31",
            "2026-13-01",
            "2026-11-24T19:00Z",
            "2026-11-24T24:00",
            " 2026-11-24",
            "2026-11-24 19:00:00.5",
        ] {
            assert!(!matches(TIME, s), "{s} should not match");
        }
    }

    #[test]
    fn wrong_json_types_are_refused_not_coerced() {
        assert!(cell(Holds::Line, &json!(false), true).is_err());
        assert!(cell(Holds::Line, &json!(0), true).is_err());
        assert!(cell(Holds::Bool, &json!(0), false).is_err());
        assert!(cell(Holds::Text, &json!(-224662), false).is_err());
        assert_eq!(
            cell(Holds::Bool, &json!(true), false).as_deref(),
            Ok("true")
        );
        assert_eq!(cell(Holds::Whole, &json!(90.0), false).as_deref(), Ok("90"));
        assert!(cell(Holds::Line, &json!(" Ada"), true).is_err());
        assert!(cell(Holds::Line, &json!("Ada\nLovelace"), true).is_err());
        assert_eq!(cell(Holds::Email, &json!(""), false).as_deref(), Ok(""));
        for ok in ["ada@example.org", "a.b+c@mail.example.co.uk"] {
            assert!(crate::domain::EmailAddress::parse(ok).is_ok());
            assert!(cell(Holds::Email, &json!(ok), false).is_ok(), "{ok}");
        }
    }
}
