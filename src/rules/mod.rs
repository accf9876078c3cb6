//! The rules directory: YAML documents (several per file, separated by `---`), each
//! with a `kind`. Every problem is reported with file, line and column, all at once.

pub mod action;
pub mod certification;
pub mod course_type;
pub mod schedule;
pub mod timing;

pub use action::ActionRule;
pub use course_type::{CertificateSpec, CourseType, IssueOn};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem of a rule set.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct RuleErrors(pub Vec<RuleError>);

/// The validated contents of the rules directory.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub course_types: BTreeMap<String, CourseType>,
    pub certifications: BTreeMap<String, certification::Certification>,
    /// Action templates in file order, ids unique.
    pub actions: Vec<ActionRule>,
    /// Where each course type names its certificate layout (`certificate.template`):
    /// file, line and column, for messages about the layout.
    pub layout_refs: BTreeMap<String, (PathBuf, u64, u64)>,
}

impl RuleSet {
    pub fn action(&self, id: &str) -> Option<&ActionRule> {
        self.actions.iter().find(|a| a.id.value == id)
    }
}

/// A serde-saphyr error as one line, without the source snippet and without
/// library-internal advice.
pub fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    text.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

pub fn location_of(e: &serde_saphyr::Error) -> (u64, u64) {
    e.location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1))
}

/// The dotted key at `line` (1-based) of a YAML text, from the indentation of the lines
/// above it (`scheduler.max_attempts`), for messages that name the setting.
pub fn key_path_at(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |l: &str| -> Option<(usize, String)> {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let indent = l.len() - trimmed.len();
        let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let (key, _) = body.split_once(':')?;
        let key = key.trim().trim_matches('"').trim_matches('\'');
        (!key.is_empty() && !key.contains(' ')).then(|| (indent, key.to_string()))
    };
    let (mut indent, key) = key_of(lines.get(index)?)?;
    let mut path = vec![key];
    for l in lines.get(..index)?.iter().rev() {
        if let Some((i, k)) = key_of(l)
            && i < indent
        {
            path.push(k);
            indent = i;
            if i == 0 {
                break;
            }
        }
    }
    path.reverse();
    Some(path.join("."))
}

/// The message without its "line L column C: " prefix (the location is reported apart).
pub fn bare_message(e: &serde_saphyr::Error) -> String {
    let m = yaml_message(e);
    let m = match m.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") => rest.to_string(),
        _ => m,
    };
    // The location is reported in front; drop the library's own " at line L, column C".
    let m = match m.rfind(" at line ") {
        Some(i) if m[i..].contains(", column ") => m[..i].to_string(),
        _ => m,
    };
    match m.as_str() {
        "invalid boolean" => "invalid boolean (expected true or false)".into(),
        "invalid u16" => "expected a whole number from 0 to 65535".into(),
        "invalid u32" | "invalid u64" => "expected a whole number, 0 or more".into(),
        _ => m,
    }
}

/// One mistake in a YAML text: line, column (1-based) and what is wrong.
pub type Mistake = (u64, u64, String);

/// Deserializes `text` and reports every mistake, not only the first: after each error
/// the line it points at (with the lines indented under it; for an item of a block list,
/// the whole list) is blanked and the text read again, so the errors further on are
/// found too; line numbers stay the file's. A "missing field" that only the blanking
/// caused is not reported; a second error at a line already reported, or one that no
/// blanking can get past, ends the search (at most 50 rounds).
pub fn parse_all<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Vec<Mistake>> {
    match parse_past_mistakes(text) {
        (Some(v), m) if m.is_empty() => Ok(v),
        (_, m) => Err(m),
    }
}

/// [`parse_all`]'s search: the value read from the text with its mistakes blanked (if
/// that was reached) and the mistakes.
pub fn parse_past_mistakes<T: serde::de::DeserializeOwned>(
    text: &str,
) -> (Option<T>, Vec<Mistake>) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut removed: Vec<String> = Vec::new();
    let mut mistakes: Vec<Mistake> = Vec::new();
    for _ in 0..50 {
        let mut current = lines.join("\n");
        current.push('\n');
        let e = match serde_saphyr::from_str::<T>(&current) {
            Ok(v) => return (Some(v), mistakes),
            Err(e) => e,
        };
        let (line, column) = location_of(&e);
        let message = crate::suggest::serde_message(&bare_message(&e));
        let caused = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
            .is_some_and(|f| removed.iter().any(|r| r == f));
        if caused || mistakes.iter().any(|m| m.0 == line) {
            break;
        }
        mistakes.push((line, column, message));
        let Some(index) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
            break;
        };
        match lines.get(index) {
            Some(l) if !l.trim().is_empty() => {}
            _ => break,
        }
        // An item of a block list: blank the list from its key on.
        let mut start = index;
        if lines[index].trim_start().starts_with("- ") {
            let item_indent = indent_of(&lines[index]);
            if let Some(key) = (0..index).rev().find(|&i| {
                let l = &lines[i];
                let t = l.trim_start();
                !t.is_empty()
                    && !t.starts_with('#')
                    && (indent_of(l) < item_indent || !t.starts_with("- "))
            }) && lines[key].trim_end().ends_with(':')
            {
                start = key;
            }
        }
        let indent = indent_of(&lines[start]);
        let body = lines[start].trim_start();
        let body = body.strip_prefix("- ").unwrap_or(body);
        if let Some((key, _)) = body.split_once(':') {
            removed.push(key.trim().trim_matches('"').trim_matches('\'').to_string());
        }
        lines[start].clear();
        let mut next = start + 1;
        while let Some(l) = lines.get_mut(next) {
            let t = l.trim_start();
            let deeper = indent_of(l) > indent
                || (t.starts_with("- ") && indent_of(l) == indent && start != index);
            if t.is_empty() {
                next += 1;
                continue;
            }
            if !deeper {
                break;
            }
            l.clear();
            next += 1;
        }
    }
    (None, mistakes)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[derive(Deserialize)]
struct KindOnly {
    kind: Option<String>,
}

/// A YAML document of a file: its text padded with blank lines so that the parser's
/// line numbers are the file's.
struct Document {
    text: String,
    first_line: u64,
}

fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    let mut has_content = false;
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let is_marker = line == "---"
            || line.starts_with("--- ")
            || line.starts_with("---\t")
            || line == "..."
            || line.starts_with("... ");
        if is_marker {
            if has_content {
                docs.push(Document {
                    text: std::mem::take(&mut current),
                    first_line,
                });
            }
            current = "\n".repeat(n as usize);
            first_line = n + 1;
            has_content = false;
            continue;
        }
        if !has_content && n > 1 && current.is_empty() {
            current = "\n".repeat(n as usize - 1);
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            has_content = true;
        }
        current.push_str(line);
        current.push('\n');
    }
    if has_content {
        docs.push(Document {
            text: current,
            first_line,
        });
    }
    docs
}

/// Loads the rules directory and checks what the rules refer to: course types, and the
/// templates in `templates`.
pub fn load(dir: &Path, templates: &Path) -> Result<RuleSet, RuleErrors> {
    let (set, errors) = load_all(dir, templates);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(RuleErrors(errors))
    }
}

/// Every rule that is valid, and every problem of the others.
pub fn load_all(dir: &Path, templates: &Path) -> (RuleSet, Vec<RuleError>) {
    let (set, mut errors) = read_dir(dir);
    errors.extend(check_references(&set, templates));
    (set, errors)
}

/// Problems that only show across documents: unknown course types, missing templates.
pub fn check_references(set: &RuleSet, templates: &Path) -> Vec<RuleError> {
    let mut errors = Vec::new();
    for c in set.certifications.values() {
        for t in &c.requires.course_types {
            if !set.course_types.contains_key(t) {
                let known: Vec<&str> = set.course_types.keys().map(String::as_str).collect();
                errors.push(RuleError {
                    file: c.file.clone(),
                    line: c.line,
                    column: 1,
                    message: format!(
                        "certification {}: requires.course_types names unknown course type {t:?} (known: {})",
                        c.id,
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    ),
                });
            }
        }
    }
    for rule in &set.actions {
        let at = |s: &serde_saphyr::Location| (s.line(), s.column());
        for t in rule.conditions.course_type.iter().flatten() {
            if !set.course_types.contains_key(&t.value) {
                let (line, column) = at(&t.referenced);
                let known: Vec<&str> = set.course_types.keys().map(String::as_str).collect();
                errors.push(RuleError {
                    file: rule.file.clone(),
                    line,
                    column,
                    message: format!(
                        "action {}: conditions.course_type names unknown course type {:?} (known: {})",
                        rule.id.value,
                        t.value,
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    ),
                });
            }
        }
        let name = &rule.email.template.value;
        let html = templates.join(format!("{name}.html.hbs"));
        if !html.is_file() {
            let (line, column) = at(&rule.email.template.referenced);
            errors.push(RuleError {
                file: rule.file.clone(),
                line,
                column,
                message: format!(
                    "action {}: email.template {name:?}: {} does not exist",
                    rule.id.value,
                    html.display()
                ),
            });
        }
    }
    errors
}

/// Every `*.yaml` / `*.yml` file of `dir`, in name order: the documents that parse, and
/// every problem of those that do not.
fn read_dir(dir: &Path) -> (RuleSet, Vec<RuleError>) {
    let mut errors = Vec::new();
    let mut set = RuleSet::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(RuleError {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the rules directory: {e}"),
            });
            return (set, errors);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => load_text(&text, &file, &mut set, &mut errors),
            Err(e) => errors.push(RuleError {
                file,
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    (set, errors)
}

/// Adds the documents of one file to `set`, collecting every problem.
pub fn load_text(text: &str, file: &Path, set: &mut RuleSet, errors: &mut Vec<RuleError>) {
    let err = |line, column, message: String| RuleError {
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    for doc in split_documents(text) {
        let kind = match serde_saphyr::from_str::<KindOnly>(&doc.text) {
            Ok(k) => k.kind,
            Err(e) => {
                let (l, c) = location_of(&e);
                errors.push(err(l, c, bare_message(&e)));
                continue;
            }
        };
        match kind.as_deref() {
            Some("course_type") => match parse_all::<CourseType>(&doc.text) {
                Ok(ct) => {
                    if let Err(m) = ct.validate() {
                        errors.push(err(
                            doc.first_line,
                            1,
                            format!("course type {}: {m}", ct.id),
                        ));
                    } else if set.course_types.contains_key(&ct.id) {
                        errors.push(err(
                            doc.first_line,
                            1,
                            format!("duplicate course type id {:?}", ct.id),
                        ));
                    } else {
                        if ct.certificate.is_some()
                            && let Some(at) = (doc.first_line..=doc.first_line + 200).find(|n| {
                                key_path_at(&doc.text, *n).as_deref()
                                    == Some("certificate.template")
                            })
                        {
                            let column = doc
                                .text
                                .lines()
                                .nth(usize::try_from(at).unwrap_or(1).saturating_sub(1))
                                .and_then(|l| l.find(':').map(|c| c as u64 + 3))
                                .unwrap_or(1);
                            set.layout_refs
                                .insert(ct.id.clone(), (file.to_path_buf(), at, column));
                        }
                        set.course_types.insert(ct.id.clone(), ct);
                    }
                }
                Err(mistakes) => errors.extend(mistakes.into_iter().map(|(l, c, m)| err(l, c, m))),
            },
            Some("action") => match parse_all::<ActionRule>(&doc.text) {
                Ok(mut rule) => {
                    rule.file = file.to_path_buf();
                    let at = (rule.id.referenced.line(), rule.id.referenced.column());
                    if let Err(m) = rule.validate() {
                        errors.push(err(
                            doc.first_line,
                            1,
                            format!("action {}: {m}", rule.id.value),
                        ));
                    } else if set.action(&rule.id.value).is_some() {
                        errors.push(err(
                            at.0,
                            at.1,
                            format!("duplicate action id {:?}", rule.id.value),
                        ));
                    } else {
                        set.actions.push(rule);
                    }
                }
                Err(mistakes) => errors.extend(mistakes.into_iter().map(|(l, c, m)| err(l, c, m))),
            },
            Some("certification") => match parse_all::<certification::Certification>(&doc.text) {
                Ok(mut c) => {
                    c.file = file.to_path_buf();
                    c.line = doc.first_line;
                    if let Err(m) = c.validate() {
                        errors.push(err(
                            doc.first_line,
                            1,
                            format!("certification {}: {m}", c.id),
                        ));
                    } else if set.certifications.contains_key(&c.id) {
                        errors.push(err(
                            doc.first_line,
                            1,
                            format!("duplicate certification id {:?}", c.id),
                        ));
                    } else {
                        set.certifications.insert(c.id.clone(), c);
                    }
                }
                Err(mistakes) => errors.extend(mistakes.into_iter().map(|(l, c, m)| err(l, c, m))),
            },
            Some(other) => errors.push(err(
                doc.first_line,
                1,
                format!("unknown kind {other:?} (expected action, course_type or certification)"),
            )),
            None => errors.push(err(
                doc.first_line,
                1,
                "missing `kind` (expected action, course_type or certification)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RuleSet, Vec<RuleError>> {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        load_text(text, Path::new("rules/types.yaml"), &mut set, &mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    #[test]
    fn several_course_types_per_file() {
        let set = load("kind: course_type\nid: a\nname: A\n---\nkind: course_type\nid: b\nname: B\nattendance_percent: 75\n").unwrap();
        assert_eq!(set.course_types.len(), 2);
        assert_eq!(set.course_types["a"].attendance_percent, 100);
        assert_eq!(set.course_types["b"].attendance_percent, 75);
    }

    #[test]
    fn an_unknown_key_in_the_second_document_has_its_file_line_and_column() {
        let e = load("kind: course_type\nid: a\nname: A\n---\nkind: course_type\nid: b\nname: B\nattendance_procent: 75\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column), (8, 1), "{}", e[0]);
        assert!(
            e[0].to_string().starts_with("rules/types.yaml:8:1: "),
            "{}",
            e[0]
        );
        assert!(e[0].message.contains("attendance_procent"), "{}", e[0]);
    }

    #[test]
    fn a_malformed_period_says_what_was_expected() {
        let e = load("kind: course_type\nid: a\nname: A\nexpiring_soon: 3 dayz\n").unwrap_err();
        assert_eq!(e[0].line, 4, "{}", e[0]);
        assert!(e[0].message.contains("unknown unit"), "{}", e[0]);
    }

    #[test]
    fn duplicate_keys_and_ids_are_errors() {
        let e = load("kind: course_type\nid: a\nid: b\nname: A\n").unwrap_err();
        assert!(e[0].message.contains("duplicate"), "{}", e[0]);
        let e =
            load("kind: course_type\nid: a\nname: A\n---\nkind: course_type\nid: a\nname: A2\n")
                .unwrap_err();
        assert!(
            e[0].message.contains("duplicate course type id"),
            "{}",
            e[0]
        );
        assert_eq!(e[0].line, 5);
    }

    #[test]
    fn unknown_kinds_are_errors() {
        let e = load("kind: curse_type\nid: a\n").unwrap_err();
        assert!(
            e[0].message
                .contains("expected action, course_type or certification")
        );
    }
}

#[cfg(test)]
mod never_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn t5_no_rule_file_makes_the_loader_panic(text in "(kind: (action|course_type)\n|id: [a-z]{1,5}\n|---\n|timing:\n  anchor: event\n|  offset: -?[0-9]{1,3} [a-z]{3,7}\n|name: .{0,10}\n|[ -~]{0,20}\n){0,12}") {
            let mut set = RuleSet::default();
            let mut errors = Vec::new();
            load_text(&text, Path::new("fuzz.yaml"), &mut set, &mut errors);
        }

        #[test]
        fn no_config_text_makes_the_config_loader_panic(text in "(database: [ -~]{0,20}\n|timezone: [A-Za-z/]{0,15}\n|mail:\n  smtp:\n    port: [0-9a-z]{0,6}\n|[ -~]{0,30}\n){0,8}") {
            let _ = crate::config::Config::from_yaml(&text, Path::new("config.yaml"));
        }
    }
}
