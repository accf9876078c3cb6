//! D8: attendance expiry of a completed enrolment.

use super::{ExpiryStatus, Period};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// `valid` → `expiring_soon` (inside the window before the end) → `expired`, counted from
/// `completed_at`. `None` when the enrolment is not complete or the type sets no validity.
pub fn expiry_status(
    completed_at: Option<DateTime<Utc>>,
    validity: Option<Period>,
    expiring_soon: Period,
    now: DateTime<Utc>,
    tz: Tz,
) -> Option<ExpiryStatus> {
    let valid_until = validity?.add_to(completed_at?, tz)?;
    let window_start = Period {
        amount: -expiring_soon.amount,
        ..expiring_soon
    }
    .add_to(valid_until, tz)?;
    Some(if now >= valid_until {
        ExpiryStatus::Expired
    } else if now >= window_start {
        ExpiryStatus::ExpiringSoon
    } else {
        ExpiryStatus::Valid
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn d8_valid_then_expiring_soon_then_expired() {
        let tz: Tz = "Europe/Amsterdam".parse().unwrap();
        let done = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap();
        let two_years = Some("2 years".parse().unwrap());
        let soon: Period = "30 days".parse().unwrap();
        let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap();
        assert_eq!(
            expiry_status(Some(done), two_years, soon, at(2027, 3, 2), tz),
            Some(ExpiryStatus::Valid)
        );
        assert_eq!(
            expiry_status(Some(done), two_years, soon, at(2028, 2, 15), tz),
            Some(ExpiryStatus::ExpiringSoon)
        );
        assert_eq!(
            expiry_status(Some(done), two_years, soon, at(2028, 3, 2), tz),
            Some(ExpiryStatus::Expired)
        );
    }

    #[test]
    fn d8_no_status_without_completion_or_validity() {
        let tz: Tz = "Europe/Amsterdam".parse().unwrap();
        let now = Utc::now();
        let soon: Period = "30 days".parse().unwrap();
        assert_eq!(
            expiry_status(None, Some("1 year".parse().unwrap()), soon, now, tz),
            None
        );
        assert_eq!(expiry_status(Some(now), None, soon, now, tz), None);
    }
}
