//! The headers every email of the office carries (issue 17): `Auto-Submitted` (RFC 3834,
//! so that auto-responders stay quiet), `Reply-To` from `office.reply_to`, and a `Date`
//! in the office's time zone; read back by Python's `email` parser.

mod common;

use common::office::{OFFICE, Office};

fn headers_of(eml: &std::path::Path) -> String {
    let script = r#"
import email, sys
from email import policy
m = email.message_from_bytes(open(sys.argv[1], "rb").read(), policy=policy.default)
for k in ("Auto-Submitted", "Reply-To", "Date", "From"):
    print("%s: %s" % (k, m[k]))
print("offset: %s" % m["Date"].datetime.utcoffset())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(eml)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn emails_say_they_are_automatic_name_the_reply_address_and_carry_a_local_date() {
    let office = Office::new(&format!(
        "{OFFICE}  reply_to: \"Planning <planning@example.nl>\"\nmail:\n  transport: file\n  outbox: outbox\n"
    ));
    office.example("2026-03-24T09:00:00+01:00");
    office.run("2026-03-24T09:00:00+01:00", &["tick"]);
    let eml = office
        .dir
        .path()
        .join("outbox/result-passed__ehbo-2026-03__anne__1.eml");
    let h = headers_of(&eml);
    assert!(h.contains("Auto-Submitted: auto-generated"), "{h}");
    assert!(
        h.contains("Reply-To: Planning <planning@example.nl>"),
        "{h}"
    );
    // Europe/Amsterdam: +01:00 in winter, +02:00 in summer, never UTC.
    assert!(
        h.contains("offset: 1:00:00") || h.contains("offset: 2:00:00"),
        "{h}"
    );

    // A reply_to that is no address is refused by check, naming the key.
    office.edit_config(
        "reply_to: \"Planning <planning@example.nl>\"",
        "reply_to: planning",
    );
    let out = office.command(None, &["check"]).output().expect("check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("office.reply_to") && err.contains("is not an address"),
        "{err}"
    );
}
