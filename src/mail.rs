//! Building the message that is sent: multipart text + HTML, with a Message-ID derived
//! from the delivery's dedup key (rule, subject, cycle), so a resend is recognisable.

use crate::render::Rendered;
use crate::rules::action::Recipients;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use serde_json::Value;

/// Who a rule's message goes to, given the participant's template context; or why it
/// cannot be sent, in words for the delivery list.
pub fn recipients(to: &Recipients, ctx: &Value) -> Result<Vec<Mailbox>, String> {
    match to {
        Recipients::Participant => {
            let p = &ctx["participant"];
            let who = p["id"].as_str().unwrap_or("the participant");
            let email = p["email"].as_str().unwrap_or_default().trim();
            if email.is_empty() {
                return Err(format!("{who} has no email address"));
            }
            let address = email
                .parse()
                .map_err(|e| format!("the email address {email:?} of {who} is not valid ({e})"))?;
            // Refused at the edge since; a name stored before that cannot go in a header.
            let name = p["full_name"].as_str().map(str::to_string);
            if let Some(n) = &name
                && n.chars().any(|c| c.is_control() && c != '\t')
            {
                return Err(format!(
                    "the name of {who} holds a line break or another control character, which an email header cannot; correct it (import people again) and retry"
                ));
            }
            Ok(vec![Mailbox::new(name, address)])
        }
        Recipients::Fixed(list) => list
            .iter()
            .map(|a| {
                a.as_str()
                    .parse()
                    .map(|addr| Mailbox::new(None, addr))
                    .map_err(|e| format!("the fixed recipient {:?} is not valid ({e})", a.as_str()))
            })
            .collect(),
    }
}

/// `<rule.course.person.cycle@domain>`, each part percent-encoded to a dot-atom; a schedule
/// rule's message adds its instant (`...cycle.instant@`), one Message-ID per instant.
pub fn message_id(
    rule: &str,
    course: &str,
    person: &str,
    cycle: i64,
    instant: i64,
    domain: &str,
) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let cycle = if instant == 0 {
        cycle.to_string()
    } else {
        format!("{cycle}.{instant}")
    };
    format!(
        "<{}.{}.{}.{cycle}@{}>",
        enc(rule),
        enc(course),
        enc(person),
        enc_domain(domain)
    )
}

fn enc_domain(d: &str) -> String {
    let d: String = d
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    if d.is_empty() {
        "registrar.invalid".into()
    } else {
        d
    }
}

/// The outbox file of a delivery: `rule__course__person__cycle.eml`, the same for a
/// resend (which replaces the file), and a different one for every dedup key. Ids of
/// letters, digits and `-` appear as they are; any other id is shown with `_` for what a
/// file name should not hold (and at most 60 characters), and the name ends in a digest of
/// the exact key, so `x y`, `x_y` and `x.y` get three files.
pub fn file_name(rule: &str, course: &str, person: &str, cycle: i64, instant: i64) -> String {
    if instant == 0 {
        format!("{}.eml", key_name(&[rule, course, person], Some(cycle)))
    } else {
        // A schedule rule's message: one file per instant (an office digest has no
        // course or person).
        let at = instant.to_string();
        if course.is_empty() && person.is_empty() {
            format!("{}.eml", key_name(&[rule, &at], None))
        } else {
            format!(
                "{}.eml",
                key_name(&[rule, course, person, &at], Some(cycle))
            )
        }
    }
}

/// `parts` joined by `__` (and the cycle), injective as [`file_name`] describes.
pub fn key_name(parts: &[&str], cycle: Option<i64>) -> String {
    const SHOWN: usize = 60;
    let plain = |p: &str| {
        p.chars().count() <= SHOWN && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let mut name = parts
        .iter()
        .map(|p| safe(&p.chars().take(SHOWN).collect::<String>()))
        .collect::<Vec<_>>()
        .join("__");
    if let Some(c) = cycle {
        name.push_str(&format!("__{c}"));
    }
    if !parts.iter().all(|p| plain(p)) {
        let key = format!("{}\u{0}{}", parts.join("\u{0}"), cycle.unwrap_or(0));
        name.push_str(&format!("__{:016x}", crate::domain::fnv64(key.as_bytes())));
    }
    name
}

/// A file name part as shown: ASCII letters, digits, `-` and `_` only.
pub fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The domain of an address such as `Training <training@example.org>`.
pub fn domain_of(from: &str) -> &str {
    from.rsplit('@')
        .next()
        .map(|d| d.trim_end_matches('>').trim())
        .unwrap_or("registrar.invalid")
}

/// A file attached to a message.
#[derive(Debug, Clone)]
pub struct Attached {
    pub filename: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// The headers every message of the office carries besides From, To and Subject.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub from: &'a str,
    /// `office.reply_to`: where replies go, when not to `from`.
    pub reply_to: Option<&'a str>,
    /// The `Date:` in the office's time zone (RFC 3834 and RFC 5322 let it carry any
    /// offset; a Dutch office reads +0100, not +0000).
    pub date: chrono::DateTime<chrono::FixedOffset>,
}

/// The bytes of [`build`]'s message. Never panics: whatever the builder cannot take
/// (a header value it refuses outright) is an error with its reason, for that one delivery.
pub fn build_bytes(
    envelope: &Envelope<'_>,
    to: &[Mailbox],
    rendered: &Rendered,
    message_id: &str,
    attachments: &[Attached],
) -> Result<Vec<u8>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        build(envelope.from, to, rendered, message_id, attachments).and_then(|mut m| {
            use lettre::message::header::{HeaderName, HeaderValue};
            if let Some(r) = envelope.reply_to {
                let mbox: Mailbox = r
                    .parse()
                    .map_err(|e| format!("office.reply_to {r:?} is not an address: {e}"))?;
                m.headers_mut()
                    .set(lettre::message::header::ReplyTo::from(lettre::message::Mailboxes::from(mbox)));
            }
            // RFC 3834: sent by a program, so that auto-responders do not answer it.
            m.headers_mut().insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ));
            m.headers_mut().insert_raw(HeaderValue::new(
                HeaderName::new_from_ascii_str("Date"),
                envelope.date.to_rfc2822(),
            ));
            Ok(m.formatted())
        })
    }))
    .unwrap_or_else(|_| {
        Err("the message could not be built: a name, subject or address holds something an email header cannot".into())
    })
}

/// The message for `to`, from the office, with the rendered subject and bodies (text +
/// HTML alternatives) and the attachments as real MIME parts.
pub fn build(
    from: &str,
    to: &[Mailbox],
    rendered: &Rendered,
    message_id: &str,
    attachments: &[Attached],
) -> Result<Message, String> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("office.from {from:?} is not an address: {e}"))?;
    let mut b = Message::builder()
        .from(from)
        .subject(rendered.subject.clone())
        .message_id(Some(message_id.to_string()));
    for m in to {
        b = b.to(m.clone());
    }
    let html = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .body(rendered.html.clone());
    let alternative = match &rendered.text {
        Some(text) => MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.clone()),
            )
            .singlepart(html),
        None => MultiPart::alternative().singlepart(html),
    };
    let body = if attachments.is_empty() {
        alternative
    } else {
        let mut mixed = MultiPart::mixed().multipart(alternative);
        for a in attachments {
            let content_type = ContentType::parse(a.content_type)
                .map_err(|e| format!("content type {}: {e}", a.content_type))?;
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(a.filename.clone())
                    .body(a.bytes.clone(), content_type),
            );
        }
        mixed
    };
    b.multipart(body)
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// `certificate-COURSE-PERSON.pdf` (`certificaat-...` in Dutch), safe characters only (the
/// name of an attachment).
pub fn certificate_file_name(course: &str, person: &str, lang: &crate::lang::Lang) -> String {
    format!(
        "{}-{}-{}.pdf",
        crate::lang::words(lang).certificate_file,
        safe(course),
        safe(person)
    )
}

/// The credential attachment's name: `certificate-COURSE-PERSON.json` (in every language:
/// wallets and verifiers read it, not people).
pub fn credential_file_name(course: &str, person: &str) -> String {
    format!("certificate-{}-{}.json", safe(course), safe(person))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t3_the_message_id_is_derived_from_the_dedup_key_only() {
        let a = message_id(
            "certificate-on-completion",
            "ehbo-2026-03",
            "zoë 1",
            2,
            0,
            "example.nl",
        );
        assert_eq!(
            a,
            "<certificate-on-completion.ehbo-2026-03.zo%C3%AB%201.2@example.nl>"
        );
        assert_eq!(
            a,
            message_id(
                "certificate-on-completion",
                "ehbo-2026-03",
                "zoë 1",
                2,
                0,
                "example.nl"
            )
        );
        assert_ne!(
            a,
            message_id(
                "certificate-on-completion",
                "ehbo-2026-03",
                "zoë 1",
                3,
                0,
                "example.nl"
            )
        );
    }

    #[test]
    fn t3_ids_that_differ_get_different_outbox_files() {
        let names: std::collections::HashSet<String> = ["x y", "x_y", "x.y", "x-y", "xy"]
            .iter()
            .map(|p| file_name("welcome", "c1", p, 1, 0))
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert_eq!(
            file_name("welcome", "c1", "anne", 2, 0),
            "welcome__c1__anne__2.eml"
        );
        let long = "a".repeat(200);
        assert!(file_name(&long, &long, &long, 1, 0).len() < 255);
    }

    #[test]
    fn the_domain_comes_from_the_office_address() {
        assert_eq!(
            domain_of("Training Office <training@example.org>"),
            "example.org"
        );
    }
}
