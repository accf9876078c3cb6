//! `kind: action`: an action template (SPEC §3) — which event creates it, when it is due,
//! the conditions that must hold, and the email it sends.

use super::timing::{Anchor, LocalTime};
use crate::domain::{CourseStatus, EmailAddress, Outcome, Period};
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRule {
    #[serde(rename = "kind")]
    _kind: String,
    pub id: Spanned<String>,
    pub name: Spanned<Texts>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub execution: Execution,
    pub data_group: DataGroup,
    pub event: RuleEvent,
    pub process: Process,
    pub email: Email,
    pub timing: Timing,
    #[serde(default)]
    pub conditions: Conditions,
    #[serde(default)]
    pub expires_after: Option<Period>,
    /// The file the rule came from, for messages.
    #[serde(skip)]
    pub file: std::path::PathBuf,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    #[default]
    Automatic,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataGroup {
    CourseParticipant,
    CertificationLearner,
}

/// The events that can create an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleEvent {
    ParticipantAdded,
    AttendanceMarked,
    ResultRecorded,
    Completed,
    CertificateIssued,
    CertificateExpiring,
    CertificationStatusChanged,
}

impl RuleEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleEvent::ParticipantAdded => "participant_added",
            RuleEvent::AttendanceMarked => "attendance_marked",
            RuleEvent::ResultRecorded => "result_recorded",
            RuleEvent::Completed => "completed",
            RuleEvent::CertificateIssued => "certificate_issued",
            RuleEvent::CertificateExpiring => "certificate_expiring",
            RuleEvent::CertificationStatusChanged => "certification_status_changed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    SendEmail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub template: Spanned<String>,
    pub subject: Spanned<Texts>,
    #[serde(default)]
    pub to: Recipients,
    #[serde(default)]
    pub attach: Vec<Attachment>,
}

/// A text in one language, or one per language: `subject: "Your certificate"` or
/// `subject: { en: "Your certificate", nl: "Uw certificaat" }` (T7).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Texts {
    One(String),
    Many(std::collections::BTreeMap<String, String>),
}

impl Texts {
    /// The text for `lang`: its own, its base language's, else the office language's.
    /// `None` when a map has none of them.
    pub fn pick(&self, lang: &crate::lang::Lang, office: &crate::lang::Lang) -> Option<&str> {
        match self {
            Texts::One(s) => Some(s),
            Texts::Many(map) => lang
                .chain()
                .into_iter()
                .chain(office.chain())
                .find_map(|l| {
                    map.iter()
                        .find(|(k, _)| crate::lang::Lang::parse(k).as_ref() == Some(&l))
                        .map(|(_, v)| v.as_str())
                }),
        }
    }

    /// The languages a map names (none for a single text).
    pub fn languages(&self) -> Vec<String> {
        match self {
            Texts::One(_) => Vec::new(),
            Texts::Many(map) => map.keys().cloned().collect(),
        }
    }

    /// Every text (for checks that look at all of them).
    pub fn all(&self) -> Vec<&str> {
        match self {
            Texts::One(s) => vec![s.as_str()],
            Texts::Many(map) => map.values().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attachment {
    CertificatePdf,
    /// The certificate as a signed Open Badges 3.0 credential (`certificate-COURSE-PERSON.json`).
    Credential,
}

/// `participant`, or a fixed list of addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Recipients {
    #[default]
    Participant,
    Fixed(Vec<EmailAddress>),
}

impl<'de> Deserialize<'de> for Recipients {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let bad = |s: String| serde::de::Error::custom(s);
        match Raw::deserialize(d)? {
            Raw::One(s) if s == "participant" => Ok(Recipients::Participant),
            Raw::One(s) => EmailAddress::parse(&s)
                .map(|a| Recipients::Fixed(vec![a]))
                .map_err(|e| {
                    bad(format!(
                        "{e} (expected `participant` or a list of addresses)"
                    ))
                }),
            Raw::Many(list) => list
                .iter()
                .map(|s| EmailAddress::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map(Recipients::Fixed)
                .map_err(bad),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    pub anchor: Anchor,
    #[serde(default = "zero")]
    pub offset: Period,
    #[serde(default)]
    pub at: Option<LocalTime>,
}

fn zero() -> Period {
    Period {
        amount: 0,
        unit: crate::domain::period::Unit::Days,
    }
}

/// All listed conditions must hold; an omitted key is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    #[serde(default)]
    pub course_status: Option<Vec<CourseStatus>>,
    #[serde(default)]
    pub course_type: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub attendance_requirement_achieved: Option<bool>,
    #[serde(default)]
    pub passing_obligation_passed: Option<bool>,
    #[serde(default)]
    pub result: Option<Vec<Outcome>>,
    /// certification_learner rules: the learner's new status must be one of these.
    #[serde(default)]
    pub certification_status: Option<Vec<crate::domain::certification::LearnerStatus>>,
    /// D3 completion of the current cycle (by requirements or equivalency).
    #[serde(default)]
    pub completed: Option<bool>,
}

impl ActionRule {
    /// Checks that need the whole document: which combinations make sense.
    pub fn validate(&self) -> Result<(), String> {
        crate::domain::parse_id(&self.id.value, "id")?;
        let learner = self.data_group == DataGroup::CertificationLearner;
        if learner != (self.event == RuleEvent::CertificationStatusChanged) {
            return Err(format!(
                "event {} does not go with data_group {} (certification_learner rules use \
                 certification_status_changed; course_participant rules use the other events)",
                self.event.as_str(),
                if learner {
                    "certification_learner"
                } else {
                    "course_participant"
                }
            ));
        }
        let c = &self.conditions;
        let participant_conditions = c.course_status.is_some()
            || c.course_type.is_some()
            || c.attendance_requirement_achieved.is_some()
            || c.passing_obligation_passed.is_some()
            || c.result.is_some()
            || c.completed.is_some();
        if learner && participant_conditions {
            return Err("conditions on courses, attendance and results need data_group course_participant; a certification_learner rule can use conditions.certification_status".into());
        }
        if !learner && c.certification_status.is_some() {
            return Err(
                "conditions.certification_status needs data_group certification_learner".into(),
            );
        }
        if learner && self.email.attach.contains(&Attachment::CertificatePdf) {
            return Err("attach: [certificate_pdf] needs data_group course_participant".into());
        }
        if learner && self.email.attach.contains(&Attachment::Credential) {
            return Err("attach: [credential] needs data_group course_participant".into());
        }
        if learner && matches!(self.timing.anchor, Anchor::CourseStart | Anchor::CourseEnd) {
            return Err(
                "timing.anchor course_start/course_end needs data_group course_participant".into(),
            );
        }
        if self.timing.anchor == Anchor::CertificateExpiry
            && !matches!(
                self.event,
                RuleEvent::CertificateIssued | RuleEvent::CertificateExpiring
            )
        {
            return Err("timing.anchor certificate_expiry needs event certificate_issued or certificate_expiring".into());
        }
        for (what, texts) in [
            ("email.subject", &self.email.subject.value),
            ("name", &self.name.value),
        ] {
            for l in texts.languages() {
                if crate::lang::Lang::parse(&l).is_none() {
                    return Err(format!(
                        "{what}: {l:?} is not a language tag (expected e.g. en, nl, de or nl-BE)"
                    ));
                }
            }
            if matches!(texts, Texts::Many(m) if m.is_empty()) {
                return Err(format!("{what} has no text"));
            }
        }
        if self.expires_after.is_some_and(|p| p.amount <= 0) {
            return Err("expires_after must be a positive period".into());
        }
        if self.email.template.value.trim().is_empty()
            || self.email.template.value.contains(['/', '\\'])
        {
            return Err(
                "email.template must be a template name such as `certificate` (no path)".into(),
            );
        }
        Ok(())
    }
}
