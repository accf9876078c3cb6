//! Instants as the office writes them: RFC 3339 with offset, or a date-only value that is
//! a local date in the office time zone.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The UTC instant of a local wall-clock time. A local time that does not exist (the
/// spring-forward gap) moves forward by the gap; an ambiguous one (autumn) takes the first.
pub fn local_to_utc(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Spring-forward gap: read the wall time with the offset in force just before
            // the gap, so 02:30 in a 02:00-03:00 gap becomes 03:30 (moved forward by the gap).
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe -= chrono::TimeDelta::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    let offset = chrono::TimeDelta::seconds(i64::from(
                        chrono::Offset::fix(t.offset()).local_minus_utc(),
                    ));
                    return Utc.from_utc_datetime(&(local - offset));
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// Which end of a date-only value is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayEdge {
    Start,
    End,
}

/// Parses a time as people type it: RFC 3339 (`2026-03-02T09:00:00+01:00`, also with a
/// space for the `T`), a local date-time in the office zone (`2026-11-24 19:00`,
/// `2026-11-24T19:00:30`; T1's rules: a time in a DST gap moves forward, one that occurs
/// twice is the first), or a local date (`2026-03-02`): the start of that day, or for
/// `DayEdge::End` its last second (23:59:59 local).
pub fn parse_instant(s: &str, tz: Tz, edge: DayEdge) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // RFC 3339 allows a space for the T; chrono's parser does not.
    if let Ok(t) = DateTime::parse_from_rfc3339(&s.replacen(' ', "T", 1)) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(local) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Ok(local_to_utc(local, tz));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let time = match edge {
            DayEdge::Start => chrono::NaiveTime::MIN,
            DayEdge::End => chrono::NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default(),
        };
        return Ok(local_to_utc(d.and_time(time), tz));
    }
    Err(format!(
        "{s:?} is not a date or time (expected a date, e.g. 2026-03-02, a local time in the office's time zone, e.g. 2026-03-02 09:00, or RFC 3339 with offset, e.g. 2026-03-02T09:00:00+01:00)"
    ))
}

/// Formats an instant for people: local time in the office zone, RFC 3339.
pub fn local_rfc3339(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ams() -> Tz {
        "Europe/Amsterdam".parse().unwrap()
    }

    #[test]
    fn a_date_only_value_is_a_local_date() {
        let start = parse_instant("2026-03-02", ams(), DayEdge::Start).unwrap();
        assert_eq!(start.to_rfc3339(), "2026-03-01T23:00:00+00:00");
        let end = parse_instant("2026-03-02", ams(), DayEdge::End).unwrap();
        assert_eq!(local_rfc3339(end, ams()), "2026-03-02T23:59:59+01:00");
    }

    #[test]
    fn a_nonexistent_local_time_moves_forward() {
        // 29 March 2026, 02:30 does not exist in Amsterdam (clocks jump 02:00 -> 03:00).
        let t = local_to_utc(
            NaiveDate::from_ymd_opt(2026, 3, 29)
                .unwrap()
                .and_hms_opt(2, 30, 0)
                .unwrap(),
            ams(),
        );
        assert_eq!(local_rfc3339(t, ams()), "2026-03-29T03:30:00+02:00");
    }

    #[test]
    fn an_ambiguous_local_time_takes_the_first() {
        let t = local_to_utc(
            NaiveDate::from_ymd_opt(2026, 10, 25)
                .unwrap()
                .and_hms_opt(2, 30, 0)
                .unwrap(),
            ams(),
        );
        assert_eq!(local_rfc3339(t, ams()), "2026-10-25T02:30:00+02:00");
    }

    #[test]
    fn garbage_is_refused_with_the_expected_forms() {
        let e = parse_instant("32-13-2026", ams(), DayEdge::Start).unwrap_err();
        assert!(e.contains("2026-03-02 09:00"), "{e}");
        assert!(e.contains("RFC 3339 with offset"));
    }

    #[test]
    fn t1_a_local_time_as_people_type_it_is_read_in_the_office_zone() {
        let shown = |s: &str| {
            parse_instant(s, ams(), DayEdge::Start)
                .map(|t| local_rfc3339(t, ams()))
                .unwrap()
        };
        assert_eq!(shown("2026-11-24 19:00"), "2026-11-24T19:00:00+01:00");
        assert_eq!(shown("2026-06-24T19:00:30"), "2026-06-24T19:00:30+02:00");
        assert_eq!(
            shown("2026-11-24 19:00:00+01:00"),
            "2026-11-24T19:00:00+01:00"
        );
        // The spring gap moves forward; the autumn overlap takes the first.
        assert_eq!(shown("2026-03-29 02:30"), "2026-03-29T03:30:00+02:00");
        assert_eq!(shown("2026-10-25 02:30"), "2026-10-25T02:30:00+02:00");
    }
}
