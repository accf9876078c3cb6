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
    /// When an event rule is due. Schedule rules have none: they run at `schedule`.
    #[serde(default)]
    pub timing: Option<Timing>,
    /// `event: schedule`: the cron expression of the instants it runs at (T6).
    #[serde(default)]
    pub schedule: Option<Spanned<super::schedule::CronSchedule>>,
    /// A participant or learner schedule: the period around an anchor in which a subject
    /// is reached.
    #[serde(default)]
    pub window: Option<Window>,
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
    /// One subject, the office: schedule rules only (a digest).
    Office,
}

impl DataGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            DataGroup::CourseParticipant => "course_participant",
            DataGroup::CertificationLearner => "certification_learner",
            DataGroup::Office => "office",
        }
    }
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
    /// The instants of the rule's `schedule` (T6).
    Schedule,
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
            RuleEvent::Schedule => "schedule",
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

/// What a schedule window counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowAnchor {
    CourseStart,
    CourseEnd,
    /// The valid_until of the participant's certificate in force.
    CertificateExpiry,
    /// The valid_until of a certification learner.
    ValidUntil,
}

/// `window: { anchor: course_end, from: 0 days, to: 28 days }`: a subject is reached at
/// an instant between anchor + from and anchor + to (both included).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub anchor: WindowAnchor,
    #[serde(default = "zero")]
    pub from: Period,
    pub to: Period,
}

impl Window {
    /// Whether `instant` lies in the window of a subject whose anchor is `anchor`.
    pub fn contains(
        &self,
        anchor: chrono::DateTime<chrono::Utc>,
        instant: chrono::DateTime<chrono::Utc>,
        tz: chrono_tz::Tz,
    ) -> bool {
        match (self.from.add_to(anchor, tz), self.to.add_to(anchor, tz)) {
            (Some(from), Some(to)) => from <= instant && instant <= to,
            _ => false,
        }
    }
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
    /// When an event rule is due (a schedule rule: at its instants, as if anchored on them).
    pub fn timing(&self) -> Timing {
        self.timing.clone().unwrap_or(Timing {
            anchor: Anchor::Event,
            offset: zero(),
            at: None,
        })
    }

    /// The schedule of an `event: schedule` rule.
    pub fn cron(&self) -> Option<&super::schedule::CronSchedule> {
        self.schedule.as_ref().map(|s| &s.value)
    }

    /// The combinations a schedule rule allows.
    fn validate_schedule(&self) -> Result<(), String> {
        if self.schedule.is_none() {
            return Err("event: schedule needs schedule: a cron expression such as \"0 8 * * MON\" (minute hour day-of-month month day-of-week)".into());
        }
        if self.timing.is_some() {
            return Err("a schedule rule runs at its schedule's instants: leave timing out (bound it with window)".into());
        }
        if self.execution == Execution::Manual {
            return Err("execution: manual does not go with event: schedule (each instant is sent as it comes)".into());
        }
        if self.expires_after.is_some() {
            return Err("expires_after does not go with event: schedule (a subject not reached at an instant is reached at the next one)".into());
        }
        match self.data_group {
            DataGroup::Office => {
                if !matches!(&self.email.to, Recipients::Fixed(list) if !list.is_empty()) {
                    return Err(
                        "data_group office needs email.to with the addresses to send the digest to"
                            .into(),
                    );
                }
                if self.window.is_some() {
                    return Err(
                        "data_group office has no subjects to bound: leave window out".into(),
                    );
                }
                let c = &self.conditions;
                if c.course_status.is_some()
                    || c.course_type.is_some()
                    || c.attendance_requirement_achieved.is_some()
                    || c.passing_obligation_passed.is_some()
                    || c.result.is_some()
                    || c.completed.is_some()
                    || c.certification_status.is_some()
                {
                    return Err("data_group office takes no conditions (the digest lists what happened; an empty one is not sent)".into());
                }
                if !self.email.attach.is_empty() {
                    return Err(
                        "data_group office attaches nothing (certificates belong to participants)"
                            .into(),
                    );
                }
            }
            DataGroup::CourseParticipant | DataGroup::CertificationLearner => {
                let learner = self.data_group == DataGroup::CertificationLearner;
                let Some(w) = self.window else {
                    return Err(format!(
                        "a {} schedule needs a window that bounds it, e.g. window: {{ anchor: {}, from: 0 days, to: 28 days }}",
                        self.data_group.as_str(),
                        if learner { "valid_until" } else { "course_end" }
                    ));
                };
                let fits = if learner {
                    w.anchor == WindowAnchor::ValidUntil
                } else {
                    w.anchor != WindowAnchor::ValidUntil
                };
                if !fits {
                    return Err(if learner {
                        "window.anchor of a certification_learner schedule is valid_until".into()
                    } else {
                        "window.anchor of a course_participant schedule is course_start, course_end or certificate_expiry".into()
                    });
                }
                if w.to.add_to(chrono::DateTime::UNIX_EPOCH, chrono_tz::UTC)
                    < w.from.add_to(chrono::DateTime::UNIX_EPOCH, chrono_tz::UTC)
                {
                    return Err("window.to comes before window.from".into());
                }
            }
        }
        Ok(())
    }

    /// Checks that need the whole document: which combinations make sense.
    pub fn validate(&self) -> Result<(), String> {
        crate::domain::parse_id(&self.id.value, "id")?;
        let learner = self.data_group == DataGroup::CertificationLearner;
        let office = self.data_group == DataGroup::Office;
        let scheduled = self.event == RuleEvent::Schedule;
        if scheduled {
            self.validate_schedule()?;
        } else if self.schedule.is_some() || self.window.is_some() {
            return Err(
                "schedule and window need event: schedule (an event rule is timed with timing)"
                    .into(),
            );
        } else if self.timing.is_none() {
            return Err(
                "timing is missing (e.g. timing: { anchor: event, offset: 0 days })".into(),
            );
        }
        if office && !scheduled {
            return Err(
                "data_group office needs event: schedule (a digest runs on a schedule)".into(),
            );
        }
        if !scheduled && learner != (self.event == RuleEvent::CertificationStatusChanged) {
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
        if learner
            && matches!(
                self.timing().anchor,
                Anchor::CourseStart | Anchor::CourseEnd
            )
        {
            return Err(
                "timing.anchor course_start/course_end needs data_group course_participant".into(),
            );
        }
        if self.timing().anchor == Anchor::CertificateExpiry
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
