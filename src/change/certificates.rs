//! D5: a certificate is issued once per enrolment cycle, the moment the course type's
//! `issue_on` first holds (`completion`: D3 completion; `passed`: the result is passed).
//! Numbers are PREFIX-YEAR-NNNNNN from a counter row per prefix and year, updated in the
//! issuing transaction (no gaps: a rolled-back issue rolls the counter back too);
//! verification codes are 128 random bits, base32, URL-safe.

use super::Work;
use crate::domain::{EventKind, Outcome};
use crate::rules::IssueOn;
use crate::store::catalogue::CourseInfo;
use crate::store::certificates::{self, NewCertificate};
use crate::store::enrolments::Enrolment;
use crate::store::{Change, Tx, j};
use chrono::Datelike;
use serde_json::json;
use std::collections::{HashMap, HashSet};

impl Work<'_> {
    /// Issues the certificates now due among `people` of `course`: those whose cycle
    /// meets `issue_on` (`completed` names who completed in this very change) and has no
    /// certificate yet.
    pub(super) async fn issue_certificates(
        &mut self,
        tx: &mut Tx,
        course: &CourseInfo,
        enrolments: &HashMap<String, Enrolment>,
        completed: &HashSet<&str>,
    ) -> Result<(), sqlx::Error> {
        let Some(spec) = self
            .rules
            .course_types
            .get(&course.type_id)
            .and_then(|t| t.certificate.clone())
        else {
            return Ok(());
        };
        let mut due: Vec<(&str, i64)> = enrolments
            .values()
            .filter(|e| match spec.issue_on {
                IssueOn::Completion => {
                    e.completed_at.is_some() || completed.contains(e.person_id.as_str())
                }
                IssueOn::Passed => e.result == Outcome::Passed,
            })
            .map(|e| (e.person_id.as_str(), e.cycle))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        due.sort_unstable();
        let people: Vec<String> = due.iter().map(|(p, _)| p.to_string()).collect();
        let existing = certificates::issued_among(tx, &course.id, &people).await?;
        due.retain(|(p, c)| !existing.contains(&(p.to_string(), *c)));
        if due.is_empty() {
            return Ok(());
        }
        let prefix = spec.prefix(&course.type_id);
        let year = i64::from(self.now.with_timezone(&self.tz).year());
        let count = due.len() as i64;
        let last = certificates::reserve_numbers(tx, &prefix, year, count).await?;
        let valid_until = spec.validity.and_then(|p| p.add_to(self.now, self.tz));
        for (i, (person, cycle)) in due.iter().enumerate() {
            let number = format!("{prefix}-{year}-{:06}", last - count + 1 + i as i64);
            let code = verification_code()?;
            certificates::insert(
                tx,
                &NewCertificate {
                    course: &course.id,
                    person,
                    cycle: *cycle,
                    number: &number,
                    code: &code,
                    issued_at: self.now,
                    valid_until,
                },
            )
            .await?;
            self.log.push(Change {
                entity: "certificate",
                course_id: Some(course.id.clone()),
                person_id: Some(person.to_string()),
                part_id: None,
                change: "issued",
                before: None,
                after: j(json!({"number": number, "cycle": cycle, "valid_until": valid_until})),
                event: Some((EventKind::CertificateIssued, Some(*cycle))),
            });
        }
        self.tally.certificates += count as u64;
        Ok(())
    }
}

/// 128 random bits from the operating system, as 26 lowercase base32 characters.
fn verification_code() -> Result<String, sqlx::Error> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        sqlx::Error::Protocol(format!("no randomness for a verification code: {e}"))
    })?;
    let bits = u128::from_be_bytes(bytes);
    Ok((0..26)
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::verification_code;

    #[test]
    fn d5_verification_codes_are_128_bit_url_safe_and_differ() {
        let a = verification_code().expect("code");
        let b = verification_code().expect("code");
        assert_eq!(a.len(), 26);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert_ne!(a, b);
    }
}
