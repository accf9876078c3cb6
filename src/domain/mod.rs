//! The domain of a training office as pure types and rules (SPEC §2, D1–D10).
//! Nothing here does I/O: the store calls these functions inside its transactions,
//! so every way in (CSV, CLI, HTTP) applies the same rules.

pub mod email;
pub mod enrolment;
pub mod expiry;
pub mod input;
pub mod period;
pub mod progress;
pub mod time;

pub use email::EmailAddress;
pub use period::Period;

use std::fmt;

/// A refusal by a domain rule, worded for the person who asked for the change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);

/// Enums stored and typed as lower-case words: one definition gives parsing (with an
/// error listing the allowed words), display and the database form.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every word, in declaration order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.pad(self.as_str()) }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $($word => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {:?} (expected {})",
                        $what,
                        other,
                        crate::domain::one_of(&[$($word),+])
                    )),
                }
            }
        }
    };
}

/// "a, b or c" for error messages.
pub fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

word_enum!(
    /// The status of a course (a training).
    CourseStatus, "course status" {
        Draft => "draft", Final => "final", Completed => "completed", Cancelled => "cancelled",
    }
);

word_enum!(
    /// The result of an enrolment (SPEC §2, D4).
    Outcome, "result" {
        Registered => "registered", Passed => "passed", Failed => "failed",
        NotFinished => "not_finished", Deregistered => "deregistered",
    }
);

word_enum!(
    /// An attendance mark as given by the office. `pending` is derived, never given.
    Mark, "attendance status" {
        Booked => "booked", Attended => "attended", NotAttended => "not_attended",
    }
);

word_enum!(
    /// How an enrolment became complete (D3).
    CompletedVia, "completion" { Requirements => "requirements", Equivalency => "equivalency" }
);

word_enum!(
    /// D8: the expiry status of a completed enrolment whose course type sets a validity.
    ExpiryStatus, "expiry status" {
        Valid => "valid", ExpiringSoon => "expiring_soon", Expired => "expired",
    }
);

word_enum!(
    /// What happened to a subject; the rule engine consumes these from the event table.
    /// The first three, `completed` and the certificate events can trigger rules; the others
    /// tell the engine to re-evaluate or cancel (D9).
    EventKind, "event" {
        ParticipantAdded => "participant_added",
        AttendanceMarked => "attendance_marked",
        ResultRecorded => "result_recorded",
        Completed => "completed",
        CertificateIssued => "certificate_issued",
        CertificateExpiring => "certificate_expiring",
        CertificationStatusChanged => "certification_status_changed",
        PartResultRecorded => "part_result_recorded",
        ParticipantRemoved => "participant_removed",
        CycleStarted => "cycle_started",
        CourseChanged => "course_changed",
    }
);

word_enum!(
    /// The stored state of an action instance (T2). `waiting`: not fired yet; `approved`: a
    /// manual instance released by `registrar approve`; `fired`: its delivery is in the outbox.
    ActionState, "action state" {
        Waiting => "waiting", AwaitingApproval => "awaiting_approval", Approved => "approved",
        Fired => "fired", Cancelled => "cancelled", Expired => "expired",
    }
);

word_enum!(
    /// The state of a delivery in the outbox (SPEC §6).
    DeliveryState, "delivery state" {
        Queued => "queued", Sending => "sending", Sent => "sent", Retrying => "retrying",
        Failed => "failed",
    }
);

word_enum!(
    /// What an action instance is about: a participant of a course, or a learner of a
    /// certification. A course and a certification may share an id.
    SubjectKind, "subject kind" { Course => "course", Certification => "certification", Office => "office" }
);

/// FNV-1a, 64 bits: a stable digest (the same across runs and builds) for names and keys
/// that must not change, not for secrets.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Parses the booleans CSV files and forms use: true/false, yes/no, 1/0.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        other => Err(format!(
            "{other:?} is not a boolean (use true/false, yes/no or 1/0)"
        )),
    }
}

/// The longest id, name or other line of text accepted, in characters.
pub const MAX_LINE: usize = 200;
/// The longest free text (a comment) accepted, in characters.
pub const MAX_TEXT: usize = 2000;

/// The control character in `s` that a line of text may not hold, shown by name.
pub fn control_in(s: &str, allow_breaks: bool) -> Option<String> {
    s.chars()
        .find(|c| c.is_control() && *c != '\t' && !(allow_breaks && (*c == '\n' || *c == '\r')))
        .map(|c| match c {
            '\n' => "a line break".to_string(),
            '\r' => "a carriage return".to_string(),
            '\0' => "a NUL byte".to_string(),
            c => format!("the control character U+{:04X}", u32::from(c)),
        })
}

/// Checks an identifier supplied by the caller (the LMS's own key): ids end up in mail
/// headers, file names and URLs, so no control characters and at most 200 characters.
pub fn parse_id(s: &str, what: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if s.chars().count() > MAX_LINE {
        return Err(format!("{what} is longer than {MAX_LINE} characters"));
    }
    if let Some(c) = control_in(s, false) {
        return Err(format!("{what} contains {c}"));
    }
    Ok(s.to_string())
}

/// Checks a line of text (a name, a location, a custom field): it may reach a mail header
/// (`To:`, a subject), so no line breaks or other control characters but tab, and at most
/// `max` characters.
pub fn parse_line(s: &str, max: usize) -> Result<String, String> {
    let s = s.trim();
    if s.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    if let Some(c) = control_in(s, false) {
        return Err(format!(
            "contains {c}; a name or other line of text must be one line (it can end up in an email header)"
        ));
    }
    Ok(s.to_string())
}

/// Checks free text (a comment): line breaks allowed, other control characters not.
pub fn parse_text(s: &str, max: usize) -> Result<String, String> {
    let s = s.trim();
    if s.chars().count() > max {
        return Err(format!("is longer than {max} characters"));
    }
    if let Some(c) = control_in(s, true) {
        return Err(format!("contains {c}"));
    }
    Ok(s.to_string())
}

// After `word_enum!`, which it uses.
pub mod certification;
