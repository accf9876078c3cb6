//! Validated inputs of state changes: what CSV rows and API bodies are parsed into.

use super::{CourseStatus, EmailAddress, Mark, Outcome};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct CourseInput {
    pub id: String,
    pub name: String,
    pub type_id: String,
    pub status: CourseStatus,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub location: Option<String>,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartInput {
    pub course_id: String,
    pub id: String,
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub attendance_required: bool,
    pub passing_required: bool,
    pub min_minutes: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PersonInput {
    pub id: String,
    pub full_name: String,
    pub email: Option<EmailAddress>,
    pub first_name: Option<String>,
    pub locale: Option<String>,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnrolmentInput {
    pub course_id: String,
    pub person_id: String,
    pub walk_in: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MarkInput {
    pub course_id: String,
    pub part_id: String,
    pub person_id: String,
    pub mark: Mark,
    pub minutes: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartResultInput {
    pub course_id: String,
    pub part_id: String,
    pub person_id: String,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResultInput {
    pub course_id: String,
    pub person_id: String,
    pub result: Outcome,
    pub score: Option<f64>,
    pub comment: Option<String>,
}
