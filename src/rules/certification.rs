//! `kind: certification`: a multi-step programme with renewal (SPEC §2, seed 003).

use crate::domain::Period;
use crate::domain::certification::Terms;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certification {
    #[serde(rename = "kind")]
    _kind: String,
    pub id: String,
    pub name: String,
    /// The training steps: a completed course (D3) of each of these types.
    pub requires: Requires,
    #[serde(default)]
    pub exam: bool,
    #[serde(default)]
    pub payment_required: bool,
    #[serde(default)]
    pub approval_required: bool,
    pub validity: Period,
    pub grace_period: Period,
    pub recertification_window: Period,
    /// The file it came from, and the line of its document.
    #[serde(skip)]
    pub file: std::path::PathBuf,
    #[serde(skip)]
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    pub course_types: Vec<String>,
}

impl Certification {
    pub fn terms(&self) -> Terms {
        Terms {
            exam: self.exam,
            payment_required: self.payment_required,
            approval_required: self.approval_required,
            validity: self.validity,
            grace_period: self.grace_period,
            recertification_window: self.recertification_window,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        crate::domain::parse_id(&self.id, "id")?;
        if self.requires.course_types.is_empty() {
            return Err("requires.course_types is empty: name at least one course type".into());
        }
        for (key, p) in [
            ("validity", self.validity),
            ("grace_period", self.grace_period),
            ("recertification_window", self.recertification_window),
        ] {
            if p.amount <= 0 {
                return Err(format!("{key} must be a positive period"));
            }
        }
        Ok(())
    }
}
