//! "Did you mean …?": the nearest of a list of names to what someone typed, for the
//! messages of `check`, the config, templates and the importer.

/// Levenshtein distance in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let (Some(&left), Some(&up)) = (row.get(j), row.get(j + 1)) else {
                break;
            };
            let value = (prev + usize::from(ca != *cb)).min(left + 1).min(up + 1);
            prev = up;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = value;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// The name nearest to `typed`: at most a third of its length away (one to three
/// edits); the alphabetically first of equally near names.
pub fn nearest<'a>(typed: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (typed.chars().count() / 3).clamp(1, 3);
    names
        .into_iter()
        .filter(|n| *n != typed)
        .map(|n| (edit_distance(typed, n), n))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, n)| n)
}

/// A serde message about an unknown field or variant (`unknown field `x`, expected one
/// of `a`, `b``) with the list replaced by the nearest name when one is near:
/// ``unknown field `attendence_minimum` (did you mean `attendance_minimum`?)``.
pub fn serde_message(message: &str) -> String {
    let Some((head, list)) = message.split_once(", expected one of ") else {
        return message.to_string();
    };
    let typed = head
        .strip_prefix("unknown field ")
        .or_else(|| head.strip_prefix("unknown variant "))
        .map(|t| t.trim_matches('`'));
    let Some(typed) = typed else {
        return message.to_string();
    };
    let names: Vec<&str> = list
        .split(", ")
        .map(|n| n.trim().trim_matches('`').trim_end_matches('.'))
        .filter(|n| !n.is_empty())
        .collect();
    match nearest(typed, names.iter().copied()) {
        Some(near) => format!("{head} (did you mean `{near}`?)"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_its_name_and_a_stranger_finds_none() {
        let names = ["first_name", "full_name", "email"];
        assert_eq!(nearest("fist_name", names), Some("first_name"));
        assert_eq!(nearest("telephone", names), None);
        assert_eq!(
            serde_message(
                "unknown field `attendence_minimum`, expected one of `attendance_minimum`, `completed`"
            ),
            "unknown field `attendence_minimum` (did you mean `attendance_minimum`?)"
        );
        assert_eq!(
            serde_message(
                "unknown variant `finale`, expected one of draft, final, completed, cancelled"
            ),
            "unknown variant `finale` (did you mean `final`?)"
        );
        let far = "unknown variant `zzz`, expected one of draft, final";
        assert_eq!(serde_message(far), far);
    }
}
