//! T1: when an action is due. `due = anchor + offset`; with `at`, the due instant is that
//! local time on the due date in the office time zone (a local time that does not exist
//! moves forward by the gap; an ambiguous one takes the first).

use crate::domain::Period;
use crate::domain::time::local_to_utc;
use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// What the offset counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    CourseStart,
    CourseEnd,
    Event,
    CertificateExpiry,
}

/// A local time of day written as "HH:MM".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime(pub NaiveTime);

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NaiveTime::parse_from_str(s.trim(), "%H:%M")
            .map(LocalTime)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a time of day (expected HH:MM, e.g. \"09:00\")"
                ))
            })
    }
}

/// The due instant, or `None` when it falls outside the calendar chrono can represent.
pub fn due(
    anchor: DateTime<Utc>,
    offset: Period,
    at: Option<NaiveTime>,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let shifted = offset.add_to(anchor, tz)?;
    Some(match at {
        None => shifted,
        Some(time) => local_to_utc(shifted.with_timezone(&tz).date_naive().and_time(time), tz),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::Unit;
    use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
    use proptest::prelude::*;

    fn ams() -> Tz {
        chrono_tz::Europe::Amsterdam
    }

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        local_to_utc(
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(h, min, 0)
                .unwrap(),
            ams(),
        )
    }

    fn shown(t: DateTime<Utc>) -> String {
        t.with_timezone(&ams()).to_rfc3339()
    }

    fn p(s: &str) -> Period {
        s.parse().unwrap()
    }

    #[test]
    fn t1_offset_zero_after_course_end_is_the_end_itself() {
        let end = local(2026, 3, 23, 12, 0);
        assert_eq!(due(end, p("0 days"), None, ams()), Some(end));
    }

    #[test]
    fn t1_31_january_plus_one_month_is_the_end_of_february() {
        let jan31 = local(2027, 1, 31, 12, 0);
        assert_eq!(
            shown(due(jan31, p("1 month"), None, ams()).unwrap()),
            "2027-02-28T12:00:00+01:00"
        );
        let leap = local(2028, 1, 31, 12, 0);
        assert_eq!(
            shown(due(leap, p("1 month"), None, ams()).unwrap()),
            "2028-02-29T12:00:00+01:00"
        );
    }

    #[test]
    fn t1_negative_offsets_go_back() {
        let expiry = local(2028, 3, 2, 0, 0);
        let reminder = due(
            expiry,
            p("-60 days"),
            Some(NaiveTime::from_hms_opt(9, 0, 0).unwrap()),
            ams(),
        )
        .unwrap();
        assert_eq!(shown(reminder), "2028-01-02T09:00:00+01:00");
    }

    #[test]
    fn t1_at_is_local_time_on_the_due_date_across_both_dst_changes() {
        let at = Some(NaiveTime::from_hms_opt(10, 0, 0).unwrap());
        // Attended on Saturday 28 March 2026 (CET); one day later is after the spring change.
        let spring = due(local(2026, 3, 28, 15, 0), p("1 day"), at, ams()).unwrap();
        assert_eq!(shown(spring), "2026-03-29T10:00:00+02:00");
        let autumn = due(local(2026, 10, 24, 15, 0), p("1 day"), at, ams()).unwrap();
        assert_eq!(shown(autumn), "2026-10-25T10:00:00+01:00");
    }

    #[test]
    fn t1_a_nonexistent_local_time_moves_forward_and_an_ambiguous_one_takes_the_first() {
        let gap = due(
            local(2026, 3, 28, 12, 0),
            p("1 day"),
            Some(NaiveTime::from_hms_opt(2, 30, 0).unwrap()),
            ams(),
        )
        .unwrap();
        assert_eq!(shown(gap), "2026-03-29T03:30:00+02:00");
        let twice = due(
            local(2026, 10, 24, 12, 0),
            p("1 day"),
            Some(NaiveTime::from_hms_opt(2, 30, 0).unwrap()),
            ams(),
        )
        .unwrap();
        assert_eq!(shown(twice), "2026-10-25T02:30:00+02:00");
    }

    #[test]
    fn t1_hours_are_elapsed_time_even_across_a_dst_change() {
        let before = local(2026, 3, 29, 1, 0);
        assert_eq!(
            shown(due(before, p("2 hours"), None, ams()).unwrap()),
            "2026-03-29T04:00:00+02:00"
        );
    }

    fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2000-01-01 .. 2060-01-01
        (946_684_800i64..2_840_140_800i64).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
    }

    proptest! {
        #[test]
        fn t1_months_clamp_to_the_last_day_of_the_month(anchor in any_instant(), n in -60i64..60) {
            let tz = ams();
            let due = due(anchor, Period { amount: n, unit: Unit::Months }, Some(NaiveTime::from_hms_opt(9, 0, 0).unwrap()), tz).unwrap();
            let start = anchor.with_timezone(&tz).date_naive();
            let got = due.with_timezone(&tz);
            let months = start.year() * 12 + start.month0() as i32 + n as i32;
            prop_assert_eq!(got.year() * 12 + got.month0() as i32, months);
            let last = NaiveDate::from_ymd_opt(got.year(), got.month(), 1).unwrap()
                .checked_add_months(chrono::Months::new(1)).unwrap().pred_opt().unwrap().day();
            prop_assert_eq!(got.day(), start.day().min(last));
            prop_assert_eq!((got.hour(), got.minute()), (9, 0));
        }

        #[test]
        fn t1_days_keep_the_local_time_of_day(anchor in any_instant(), n in -400i64..400) {
            let tz = ams();
            let due = due(anchor, Period { amount: n, unit: Unit::Days }, None, tz).unwrap();
            let (a, d) = (anchor.with_timezone(&tz), due.with_timezone(&tz));
            prop_assert_eq!((d.date_naive() - a.date_naive()).num_days(), n);
            // The local time is kept unless it falls in a spring-forward gap on the due date.
            if tz.from_local_datetime(&d.date_naive().and_time(a.time())).single().is_some() {
                prop_assert_eq!(d.time(), a.time());
            }
        }

        #[test]
        fn t1_at_always_gives_that_local_time_or_later_in_a_gap(anchor in any_instant(), n in -400i64..400, h in 0u32..24, m in 0u32..60) {
            let tz = ams();
            let at = NaiveTime::from_hms_opt(h, m, 0).unwrap();
            let due = due(anchor, Period { amount: n, unit: Unit::Days }, Some(at), tz).unwrap();
            let d = due.with_timezone(&tz);
            // A time inside a spring-forward gap moves later, never earlier.
            prop_assert!(d.time() >= at);
            if tz.from_local_datetime(&d.date_naive().and_time(at)).single().is_some() {
                prop_assert_eq!(d.time(), at);
            }
        }
    }
}
