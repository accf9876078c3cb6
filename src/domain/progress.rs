//! D1 attendance requirement and D2 passing obligation of one enrolment.

use super::Mark;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// What the rules need to know about a part (a session) of a course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRule {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub attendance_required: bool,
    pub passing_required: bool,
    pub min_minutes: Option<u32>,
}

/// One attendance mark as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenMark {
    pub mark: Mark,
    pub minutes: Option<u32>,
}

/// D1 for one enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AttendanceSummary {
    /// Required parts that count as attended.
    pub attended: u32,
    /// |R|: parts with `attendance_required`.
    pub required: u32,
    /// The course type's "attendance % before approval".
    pub percent_needed: u32,
    pub achieved: bool,
}

impl AttendanceSummary {
    /// Whole percentage of required parts attended; `None` when nothing is required.
    pub fn percent(&self) -> Option<u32> {
        (self.required > 0).then(|| self.attended * 100 / self.required)
    }
}

/// A part counts as attended when its mark is `attended` and, where the part has
/// `min_minutes` and minutes were given, the minutes reach it.
pub fn counts_as_attended(part: &PartRule, mark: Option<&GivenMark>) -> bool {
    match mark {
        Some(GivenMark {
            mark: Mark::Attended,
            minutes,
        }) => match (part.min_minutes, minutes) {
            (Some(min), Some(given)) => *given >= min,
            _ => true,
        },
        _ => false,
    }
}

/// D1: achieved when `attended × 100 ≥ percent × |R|`; an empty R is achieved.
pub fn attendance_requirement(
    parts: &[PartRule],
    marks: &HashMap<String, GivenMark>,
    percent_needed: u32,
) -> AttendanceSummary {
    let (mut required, mut attended) = (0u32, 0u32);
    for p in parts.iter().filter(|p| p.attendance_required) {
        required += 1;
        attended += u32::from(counts_as_attended(p, marks.get(&p.id)));
    }
    AttendanceSummary {
        attended,
        required,
        percent_needed,
        achieved: required == 0
            || u64::from(attended) * 100 >= u64::from(percent_needed) * u64::from(required),
    }
}

/// D2 for one enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PassingSummary {
    pub passed: u32,
    pub required: u32,
    pub met: bool,
}

/// D2: met when every part with `passing_required` has a result `passed: true`;
/// an empty set is met.
pub fn passing_obligation(parts: &[PartRule], results: &HashMap<String, bool>) -> PassingSummary {
    let (mut required, mut passed) = (0u32, 0u32);
    for p in parts.iter().filter(|p| p.passing_required) {
        required += 1;
        passed += u32::from(results.get(&p.id).copied().unwrap_or(false));
    }
    PassingSummary {
        passed,
        required,
        met: passed == required,
    }
}

/// The mark a part shows for one participant: the given one, else `pending` once the
/// part has ended, else `booked`.
pub fn shown_mark(part: &PartRule, mark: Option<&GivenMark>, now: DateTime<Utc>) -> &'static str {
    match mark {
        Some(m) => m.mark.as_str(),
        None if part.end <= now => "pending",
        None => Mark::Booked.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn part(id: &str, attendance: bool, passing: bool, min: Option<u32>) -> PartRule {
        PartRule {
            id: id.into(),
            start: Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap(),
            attendance_required: attendance,
            passing_required: passing,
            min_minutes: min,
        }
    }

    fn attended(ids: &[&str]) -> HashMap<String, GivenMark> {
        ids.iter()
            .map(|id| {
                (
                    id.to_string(),
                    GivenMark {
                        mark: Mark::Attended,
                        minutes: None,
                    },
                )
            })
            .collect()
    }

    fn parts(n: usize) -> Vec<PartRule> {
        (1..=n)
            .map(|i| part(&format!("p{i}"), true, false, None))
            .collect()
    }

    #[test]
    fn d1_four_parts_at_75_percent_need_three() {
        let ps = parts(4);
        assert!(!attendance_requirement(&ps, &attended(&["p1", "p2"]), 75).achieved);
        let s = attendance_requirement(&ps, &attended(&["p1", "p2", "p4"]), 75);
        assert!(s.achieved);
        assert_eq!((s.attended, s.required, s.percent()), (3, 4, Some(75)));
    }

    #[test]
    fn d1_five_parts_at_75_percent_need_four() {
        let ps = parts(5);
        assert!(!attendance_requirement(&ps, &attended(&["p1", "p2", "p3"]), 75).achieved);
        assert!(attendance_requirement(&ps, &attended(&["p1", "p2", "p3", "p5"]), 75).achieved);
    }

    #[test]
    fn d1_no_required_part_means_achieved() {
        let ps = vec![
            part("p1", false, false, None),
            part("p2", false, true, None),
        ];
        let s = attendance_requirement(&ps, &HashMap::new(), 100);
        assert!(s.achieved);
        assert_eq!((s.required, s.percent()), (0, None));
    }

    #[test]
    fn d1_default_100_percent_needs_every_required_part() {
        let ps = parts(3);
        assert!(!attendance_requirement(&ps, &attended(&["p1", "p2"]), 100).achieved);
        assert!(attendance_requirement(&ps, &attended(&["p1", "p2", "p3"]), 100).achieved);
    }

    #[test]
    fn d1_min_minutes_makes_a_short_attendance_not_count() {
        let ps = vec![part("p1", true, false, Some(180))];
        let short = HashMap::from([(
            "p1".to_string(),
            GivenMark {
                mark: Mark::Attended,
                minutes: Some(90),
            },
        )]);
        assert!(!attendance_requirement(&ps, &short, 100).achieved);
        let long = HashMap::from([(
            "p1".to_string(),
            GivenMark {
                mark: Mark::Attended,
                minutes: Some(180),
            },
        )]);
        assert!(attendance_requirement(&ps, &long, 100).achieved);
        // Minutes not given: the mark alone counts.
        assert!(attendance_requirement(&ps, &attended(&["p1"]), 100).achieved);
    }

    #[test]
    fn d1_booked_and_not_attended_do_not_count() {
        let ps = parts(1);
        for mark in [Mark::Booked, Mark::NotAttended] {
            let m = HashMap::from([(
                "p1".to_string(),
                GivenMark {
                    mark,
                    minutes: None,
                },
            )]);
            assert!(!attendance_requirement(&ps, &m, 100).achieved);
        }
    }

    #[test]
    fn d2_an_empty_passing_obligation_is_met() {
        let ps = parts(2);
        assert!(passing_obligation(&ps, &HashMap::new()).met);
    }

    #[test]
    fn d2_every_passing_part_must_be_passed() {
        let ps = vec![
            part("exam", false, true, None),
            part("practice", false, true, None),
        ];
        let one = HashMap::from([("exam".to_string(), true)]);
        assert!(!passing_obligation(&ps, &one).met);
        let failed = HashMap::from([("exam".to_string(), true), ("practice".to_string(), false)]);
        assert!(!passing_obligation(&ps, &failed).met);
        let both = HashMap::from([("exam".to_string(), true), ("practice".to_string(), true)]);
        assert!(passing_obligation(&ps, &both).met);
    }

    #[test]
    fn an_unmarked_part_is_pending_once_it_has_ended() {
        let p = part("p1", true, false, None);
        assert_eq!(shown_mark(&p, None, p.start), "booked");
        assert_eq!(shown_mark(&p, None, p.end), "pending");
    }
}
