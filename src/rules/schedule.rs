//! `schedule:` of a schedule-driven rule (SPEC §3, T6): a cron expression as people write
//! it — 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first;
//! numbers, `*`, lists, ranges, steps and names (MON, JAN) — evaluated in the office time
//! zone.
//!
//! The `cron` crate parses and walks the calendar, but in *local wall-clock time*: we hand
//! it a clock without DST (UTC read as local) and map each local time to an instant
//! ourselves, because with a real zone it ends its iteration at a time in a DST gap and
//! yields a repeated time twice, where T6 wants the gap's time moved forward (to the end of
//! the gap) and a repeated time once. Its days of the week are numbered 1 (Sunday) to 7,
//! where cron as people write it has 0 (or 7) for Sunday: we rewrite that field into names.
//! And as in every cron, a restricted day-of-month *or* a restricted day-of-week matches
//! when both are given (the crate would require both).

use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// A parsed schedule.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    /// One schedule, or two when day-of-month and day-of-week are both restricted (either
    /// matches).
    walks: Vec<cron::Schedule>,
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const EXPECTED: &str = "expected 5 fields (minute hour day-of-month month day-of-week, e.g. \
     \"0 8 * * MON\") or 6 with seconds first";

/// The value of one token of a field: a number in range, or a name where the field has names.
fn value(token: &str, field: usize) -> Result<u32, String> {
    let (name, min, max) = FIELDS[field];
    let names: &[&str] = match field {
        4 => &MONTHS,
        5 => &DAYS,
        _ => &[],
    };
    let upper = token.to_ascii_uppercase();
    let named = names
        .iter()
        .position(|n| upper == *n || (upper.len() > 3 && n.len() == 3 && upper.starts_with(n)))
        .map(|i| if field == 4 { i as u32 + 1 } else { i as u32 });
    if let Some(v) = named {
        return Ok(v);
    }
    match token.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{name} {v} is out of range ({min}-{max})")),
        Err(_) => Err(format!(
            "{name}: {token:?} is not a number{}",
            match field {
                4 => " or a month name (JAN-DEC)",
                5 => " or a day name (SUN-SAT)",
                _ => "",
            }
        )),
    }
}

/// The values a field allows (checked), or `None` for `*` / `?`.
fn values(text: &str, field: usize) -> Result<Option<Vec<u32>>, String> {
    let (name, min, max) = FIELDS[field];
    if text == "*" || text == "?" {
        return Ok(None);
    }
    let mut out = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{name}: an empty item in {text:?}"));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (from, to) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, field)?, value(b, field)?);
            if a > b {
                return Err(format!("{name}: range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range, field)?;
            // `5/15`: from 5 to the end, every 15.
            (a, if item.contains('/') { max } else { a })
        };
        out.extend((from..=to).step_by(step as usize));
    }
    Ok(Some(out))
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(s: &str) -> Result<CronSchedule, String> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let mut six: Vec<String> = match fields.len() {
            5 => std::iter::once("0")
                .chain(fields.iter().copied())
                .map(String::from)
                .collect(),
            6 => fields.iter().map(|f| f.to_string()).collect(),
            n => return Err(format!("{s:?} has {n} field(s): {EXPECTED}")),
        };
        let mut restricted = [false; 6];
        for i in 0..six.len() {
            let v = values(six.get(i).map_or("", String::as_str), i)?;
            restricted[i] = v.is_some();
            if i == 5
                && let Some(days) = v
            {
                // Names for the crate, whose numbers start at 1 for Sunday.
                let mut numbers: Vec<usize> = days.iter().map(|d| (*d % 7) as usize).collect();
                numbers.sort_unstable();
                numbers.dedup();
                restricted[5] = numbers.len() < 7;
                let names: Vec<&str> = numbers
                    .iter()
                    .filter_map(|d| DAYS.get(*d).copied())
                    .collect();
                if let Some(f) = six.get_mut(5) {
                    *f = names.join(",");
                }
            }
        }
        let walk = |fields: &[String]| {
            cron::Schedule::from_str(&fields.join(" "))
                .map_err(|e| format!("{s:?} is not a cron expression ({e}): {EXPECTED}"))
        };
        let walks = if restricted[3] && restricted[5] {
            let mut by_date = six.clone();
            by_date[5] = "*".into();
            let mut by_day = six.clone();
            by_day[3] = "*".into();
            vec![walk(&by_date)?, walk(&by_day)?]
        } else {
            vec![walk(&six)?]
        };
        // A schedule that never comes (31 February) is a mistake, not a quiet rule.
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if probe.is_some_and(|p| walks.iter().all(|w| w.after(&p).next().is_none())) {
            return Err(format!("{s:?} never happens"));
        }
        Ok(CronSchedule {
            text: s.to_string(),
            walks,
        })
    }
}

impl<'de> serde::Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Local wall-clock time as the crate's clock (UTC read as local: no DST).
fn wall(t: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t)
}

/// T6: the instant of a local time: a time in a DST gap moves forward to the end of the
/// gap; a time that occurs twice is its first occurrence.
fn instant(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let mut probe = local;
    // A gap is at most a few hours; look a day ahead at most.
    for _ in 0..=(24 * 60) {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return Some(t.with_timezone(&Utc));
        }
        // To the next whole minute.
        probe += chrono::TimeDelta::seconds(60 - i64::from(probe.second()));
    }
    None
}

/// DST moves the wall clock by at most a few hours; local times this far around an
/// instant cover every local time that maps near it.
const SLACK: chrono::TimeDelta = chrono::TimeDelta::hours(4);
/// Local times looked at per walk before giving up (a schedule that matches only far away).
const STEPS: usize = 100_000;

impl CronSchedule {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first scheduled instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = wall(after.with_timezone(&tz).naive_local() - SLACK);
        self.walks
            .iter()
            .filter_map(|w| {
                w.after(&start)
                    .take(STEPS)
                    .filter_map(|l| instant(l.naive_utc(), tz))
                    .find(|i| *i > after)
            })
            .min()
    }

    /// The latest scheduled instant at or before `at`.
    pub fn latest_until(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = wall(at.with_timezone(&tz).naive_local() + SLACK);
        self.walks
            .iter()
            .filter_map(|w| {
                w.after(&start)
                    .rev()
                    .take(STEPS)
                    .filter_map(|l| instant(l.naive_utc(), tz))
                    .find(|i| *i <= at)
            })
            .max()
    }

    /// The scheduled instant before `instant` (the start of a digest's period).
    pub fn previous(&self, instant: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.latest_until(instant - chrono::TimeDelta::seconds(1), tz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn ams() -> Tz {
        chrono_tz::Europe::Amsterdam
    }

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        crate::domain::time::local_to_utc(
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, min, 0)
                .unwrap(),
            ams(),
        )
    }

    fn shown(t: Option<DateTime<Utc>>) -> String {
        t.map(|t| t.with_timezone(&ams()).to_rfc3339())
            .unwrap_or_default()
    }

    fn s(text: &str) -> CronSchedule {
        text.parse().unwrap()
    }

    #[test]
    fn t6_five_fields_with_day_names_are_local_times() {
        // 2026-11-23 is a Monday.
        let weekly = s("0 8 * * MON");
        assert_eq!(
            shown(weekly.next_after(local(2026, 11, 20, 12, 0), ams())),
            "2026-11-23T08:00:00+01:00"
        );
        assert_eq!(
            shown(weekly.latest_until(local(2026, 11, 23, 8, 0), ams())),
            "2026-11-23T08:00:00+01:00"
        );
        assert_eq!(
            shown(weekly.latest_until(local(2026, 11, 23, 7, 59), ams())),
            "2026-11-16T08:00:00+01:00"
        );
        // Summer time: still 08:00 local.
        assert_eq!(
            shown(weekly.next_after(local(2026, 6, 2, 0, 0), ams())),
            "2026-06-08T08:00:00+02:00"
        );
    }

    #[test]
    fn t6_day_numbers_count_from_sunday_zero_as_people_write_them() {
        let monday = s("0 8 * * 1");
        assert_eq!(
            shown(monday.next_after(local(2026, 11, 20, 12, 0), ams())),
            "2026-11-23T08:00:00+01:00"
        );
        for sunday in ["0 8 * * 0", "0 8 * * 7", "0 8 * * sun"] {
            assert_eq!(
                shown(s(sunday).next_after(local(2026, 11, 20, 12, 0), ams())),
                "2026-11-22T08:00:00+01:00",
                "{sunday}"
            );
        }
        let weekdays = s("30 9 * * 1-5");
        assert_eq!(
            shown(weekdays.next_after(local(2026, 11, 21, 12, 0), ams())),
            "2026-11-23T09:30:00+01:00"
        );
    }

    #[test]
    fn t6_six_fields_take_seconds_first() {
        assert_eq!(
            shown(s("30 0 8 * * MON").next_after(local(2026, 11, 20, 12, 0), ams())),
            "2026-11-23T08:00:30+01:00"
        );
    }

    #[test]
    fn t6_day_of_month_or_day_of_week_as_in_every_cron() {
        // The 1st of the month, and every Monday.
        let either = s("0 8 1 * MON");
        assert_eq!(
            shown(either.next_after(local(2026, 11, 24, 12, 0), ams())),
            "2026-11-30T08:00:00+01:00"
        );
        assert_eq!(
            shown(either.next_after(local(2026, 11, 30, 12, 0), ams())),
            "2026-12-01T08:00:00+01:00"
        );
    }

    #[test]
    fn t6_a_time_in_the_spring_gap_fires_at_the_end_of_the_gap_once() {
        // 2026-03-29: 02:00 -> 03:00 in Amsterdam.
        let daily = s("30 2 * * *");
        let first = daily.next_after(local(2026, 3, 28, 12, 0), ams());
        assert_eq!(shown(first), "2026-03-29T03:00:00+02:00");
        assert_eq!(
            shown(daily.next_after(first.unwrap(), ams())),
            "2026-03-30T02:30:00+02:00"
        );
        assert_eq!(
            shown(daily.latest_until(local(2026, 3, 29, 3, 10), ams())),
            "2026-03-29T03:00:00+02:00"
        );
        // Every minute of the gap maps to 03:00: that instant comes once.
        let minutes = s("* 2-3 29 3 *");
        let a = minutes
            .next_after(local(2026, 3, 29, 1, 59), ams())
            .unwrap();
        let b = minutes.next_after(a, ams()).unwrap();
        assert_eq!(shown(Some(a)), "2026-03-29T03:00:00+02:00");
        assert_eq!(shown(Some(b)), "2026-03-29T03:01:00+02:00");
    }

    #[test]
    fn t6_a_repeated_time_in_autumn_fires_once() {
        // 2026-10-25: 03:00 -> 02:00 in Amsterdam; 02:30 happens twice.
        let daily = s("30 2 * * *");
        let first = daily.next_after(local(2026, 10, 24, 12, 0), ams()).unwrap();
        assert_eq!(shown(Some(first)), "2026-10-25T02:30:00+02:00");
        assert_eq!(
            shown(daily.next_after(first, ams())),
            "2026-10-26T02:30:00+01:00"
        );
        // After the second 02:30 the latest is still the first one.
        let second = first + chrono::TimeDelta::hours(1);
        assert_eq!(
            shown(daily.latest_until(second, ams())),
            "2026-10-25T02:30:00+02:00"
        );
    }

    #[test]
    fn t5_a_bad_expression_says_what_was_expected() {
        for (bad, says) in [
            ("0 8 * *", "4 field(s)"),
            ("0 8 * * MON 2026 x", "7 field(s)"),
            ("0 25 * * *", "hour 25 is out of range (0-23)"),
            ("0 8 * * MOX", "not a number or a day name"),
            ("0 8 * FOO *", "not a number or a month name"),
            ("0 8 31 2 *", "never happens"),
            ("0 8 5-1 * *", "runs backwards"),
            ("*/0 8 * * *", "not a positive number"),
        ] {
            let err = bad.parse::<CronSchedule>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!("0 8 * * MON-FRI".parse::<CronSchedule>().is_ok());
        assert!("*/15 * * JAN,jul *".parse::<CronSchedule>().is_ok());
    }
}
