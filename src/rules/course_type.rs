//! `kind: course_type`: attendance percentage (D1), expiry (D8) and certificate (D5).

use crate::domain::Period;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseType {
    #[serde(rename = "kind")]
    _kind: String,
    pub id: String,
    pub name: String,
    /// "Attendance % before approval".
    #[serde(default = "hundred")]
    pub attendance_percent: u32,
    #[serde(default)]
    pub attendance_validity: Option<Period>,
    #[serde(default = "thirty_days")]
    pub expiring_soon: Period,
    #[serde(default)]
    pub certificate: Option<CertificateSpec>,
    /// What the certificate stands for, in the office's language (the Open Badges
    /// achievement's description; default: the name).
    #[serde(default)]
    pub description: Option<String>,
    /// What it takes to earn it (the achievement's criteria; default: a sentence from
    /// attendance_percent).
    #[serde(default)]
    pub criteria: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueOn {
    Passed,
    Completion,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSpec {
    pub issue_on: IssueOn,
    pub template: String,
    #[serde(default)]
    pub validity: Option<Period>,
    /// The first part of certificate numbers (`FA` in FA-2026-000123); default: the
    /// initials of the course type id (`first-aid` -> `FA`).
    #[serde(default)]
    pub number_prefix: Option<String>,
}

impl CertificateSpec {
    /// The number prefix in force for course type `type_id`.
    pub fn prefix(&self, type_id: &str) -> String {
        match &self.number_prefix {
            Some(p) => p.clone(),
            None => type_id
                .split(['-', '_', '.'])
                .filter_map(|w| w.chars().next())
                .flat_map(char::to_uppercase)
                .collect(),
        }
    }
}

fn hundred() -> u32 {
    100
}

fn thirty_days() -> Period {
    Period {
        amount: 30,
        unit: crate::domain::period::Unit::Days,
    }
}

impl CourseType {
    /// A course type made in code (tests, defaults).
    pub fn new(id: &str, name: &str, attendance_percent: u32) -> CourseType {
        CourseType {
            _kind: "course_type".into(),
            id: id.into(),
            name: name.into(),
            attendance_percent,
            attendance_validity: None,
            expiring_soon: thirty_days(),
            certificate: None,
            description: None,
            criteria: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        crate::domain::parse_id(&self.id, "id")?;
        if self.attendance_percent > 100 {
            return Err(format!(
                "attendance_percent {} is over 100",
                self.attendance_percent
            ));
        }
        for (key, p) in [
            ("attendance_validity", self.attendance_validity),
            ("expiring_soon", Some(self.expiring_soon)),
        ] {
            if p.is_some_and(|p| p.amount <= 0) {
                return Err(format!("{key} must be a positive period"));
            }
        }
        if let Some(c) = &self.certificate {
            if c.validity.is_some_and(|p| p.amount <= 0) {
                return Err("certificate.validity must be a positive period".into());
            }
            if c.template.trim().is_empty() {
                return Err("certificate.template is empty".into());
            }
            if let Some(p) = &c.number_prefix
                && (p.is_empty() || p.len() > 12 || !p.chars().all(|ch| ch.is_ascii_alphanumeric()))
            {
                return Err(format!(
                    "certificate.number_prefix {p:?} must be 1 to 12 letters or digits (e.g. FA)"
                ));
            }
        }
        Ok(())
    }
}
