//! Calendar periods such as `2 years`, `30 days` or `-3 hours` (validity, windows, offsets).

use chrono::{DateTime, Days, Months, Utc};
use chrono_tz::Tz;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

impl Unit {
    fn word(self) -> &'static str {
        match self {
            Unit::Minutes => "minutes",
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Weeks => "weeks",
            Unit::Months => "months",
            Unit::Years => "years",
        }
    }
}

/// `amount` units; negative amounts go back in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub amount: i64,
    pub unit: Unit,
}

const EXPECTED: &str = "expected a number and a unit, such as \"30 days\", \"2 years\" or \"-3 hours\" \
     (units: minutes, hours, days, weeks, months, years)";

impl FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let (Some(n), Some(u), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("{s:?}: {EXPECTED}"));
        };
        let amount: i64 = n
            .parse()
            .map_err(|_| format!("{s:?}: {n:?} is not a whole number; {EXPECTED}"))?;
        if amount.abs() > 100_000 {
            return Err(format!("{s:?}: {amount} is out of range"));
        }
        let unit = match u.to_ascii_lowercase().as_str() {
            "minute" | "minutes" => Unit::Minutes,
            "hour" | "hours" => Unit::Hours,
            "day" | "days" => Unit::Days,
            "week" | "weeks" => Unit::Weeks,
            "month" | "months" => Unit::Months,
            "year" | "years" => Unit::Years,
            _ => return Err(format!("{s:?}: unknown unit {u:?}; {EXPECTED}")),
        };
        Ok(Period { amount, unit })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.unit.word())
    }
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Period {
    /// Adds the period to an instant. Minutes and hours are elapsed time; days, weeks,
    /// months and years are calendar steps in the office time zone that keep the local
    /// time of day (months clamp to the month's end: 31 January + 1 month = 28/29 February).
    /// The same period backwards ("60 days" -> "-60 days").
    pub fn negated(self) -> Period {
        Period {
            amount: -self.amount,
            unit: self.unit,
        }
    }

    pub fn add_to(self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let n = self.amount;
        match self.unit {
            Unit::Minutes => at.checked_add_signed(chrono::TimeDelta::try_minutes(n)?),
            Unit::Hours => at.checked_add_signed(chrono::TimeDelta::try_hours(n)?),
            Unit::Days | Unit::Weeks | Unit::Months | Unit::Years => {
                let local = at.with_timezone(&tz).naive_local();
                let (date, time) = (local.date(), local.time());
                let date = match self.unit {
                    Unit::Days => shift_days(date, n)?,
                    Unit::Weeks => shift_days(date, n.checked_mul(7)?)?,
                    Unit::Months => shift_months(date, n)?,
                    _ => shift_months(date, n.checked_mul(12)?)?,
                };
                Some(super::time::local_to_utc(date.and_time(time), tz))
            }
        }
    }
}

fn shift_days(d: chrono::NaiveDate, n: i64) -> Option<chrono::NaiveDate> {
    if n >= 0 {
        d.checked_add_days(Days::new(n as u64))
    } else {
        d.checked_sub_days(Days::new(n.unsigned_abs()))
    }
}

fn shift_months(d: chrono::NaiveDate, n: i64) -> Option<chrono::NaiveDate> {
    let m = u32::try_from(n.unsigned_abs()).ok()?;
    if n >= 0 {
        d.checked_add_months(Months::new(m))
    } else {
        d.checked_sub_months(Months::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_offices_write() {
        assert_eq!(
            "2 years".parse::<Period>().unwrap(),
            Period {
                amount: 2,
                unit: Unit::Years
            }
        );
        assert_eq!(
            "1 day".parse::<Period>().unwrap(),
            Period {
                amount: 1,
                unit: Unit::Days
            }
        );
        assert_eq!(
            "-3 hours".parse::<Period>().unwrap(),
            Period {
                amount: -3,
                unit: Unit::Hours
            }
        );
    }

    #[test]
    fn rejects_malformed_periods_with_the_expected_form() {
        for bad in ["3 dayz", "days", "3", "three days", "3 days later"] {
            let e = bad.parse::<Period>().unwrap_err();
            assert!(
                e.contains("expected") || e.contains("unknown unit"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn months_clamp_to_the_end_of_the_month() {
        let tz: Tz = "Europe/Amsterdam".parse().unwrap();
        let jan31 = super::super::time::local_to_utc(
            chrono::NaiveDate::from_ymd_opt(2028, 1, 31)
                .unwrap()
                .and_hms_opt(9, 0, 0)
                .unwrap(),
            tz,
        );
        let feb = Period {
            amount: 1,
            unit: Unit::Months,
        }
        .add_to(jan31, tz)
        .unwrap();
        assert_eq!(
            feb.with_timezone(&tz).to_rfc3339(),
            "2028-02-29T09:00:00+01:00"
        );
    }
}
