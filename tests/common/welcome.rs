//! A generated office for delivery tests: one course, `n` participants, and one rule that
//! welcomes each participant when enrolled (due at once), over SMTP on a given port.

use super::office::{OFFICE, Office};

/// The office block and an SMTP transport to 127.0.0.1:`port`, no TLS, a pool of 4.
pub fn smtp_config(port: u16) -> String {
    format!(
        "{OFFICE}mail:
  transport: smtp
  smtp:
    host: 127.0.0.1
    port: {port}
    tls: none
    pool: 4
    rate_per_second: 10000
http:
  listen: 127.0.0.1:0
"
    )
}

/// A course type and the `welcome` rule with this subject.
pub fn welcome_rules(subject: &str, manual: bool) -> String {
    format!(
        "kind: course_type
id: first-aid
name: First aid
attendance_percent: 75
---
kind: action
id: welcome
name: Welcome
execution: {}
data_group: course_participant
event: participant_added
process: send_email
email:
  template: welcome
  subject: \"{subject}\"
  to: participant
timing:
  anchor: event
  offset: 0 days
",
        if manual { "manual" } else { "automatic" }
    )
}

impl Office {
    /// Turns this office into the welcome office with `people` participants (CSV files
    /// written, nothing imported yet).
    pub fn welcome(self, people: usize, manual: bool) -> Office {
        self.own_rules(
            &welcome_rules("Welcome to {{course.name}}", manual),
            &[(
                "welcome.html.hbs",
                "<p>Dear {{participant.full_name}}, welcome to {{course.name}}.</p>",
            )],
        );
        self.csv(
            "courses.csv",
            "id,name,type,status,start,end,location\nfa-1,First aid January,first-aid,final,2027-01-11T09:00:00+01:00,2027-01-11T17:00:00+01:00,Utrecht\n",
        );
        self.people(0..people);
        self
    }

    /// people.csv and enrolments.csv for participants p{i}, i in `range`.
    pub fn people(&self, range: std::ops::Range<usize>) {
        let mut p = String::from("id,full_name,email\n");
        let mut e = String::from("course_id,person_id\n");
        for i in range {
            p.push_str(&format!("p{i},Person {i},p{i}@example.org\n"));
            e.push_str(&format!("fa-1,p{i}\n"));
        }
        self.csv("people.csv", &p);
        self.csv("enrolments.csv", &e);
    }

    /// Imports the office's own CSV files of these kinds.
    pub fn import_own(&self, now: Option<&str>, kinds: &[&str]) {
        for kind in kinds {
            let file = self.dir.path().join(format!("{kind}.csv"));
            let out = self
                .command(now, &["import", kind, &file.to_string_lossy()])
                .output()
                .expect("import");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
