//! A stored RFC 5322 message taken apart for the pages: its text, its HTML and its
//! attachments, as the recipient's mail program sees them (mail-parser decodes the
//! transfer encodings and charsets).

/// One attachment: its file name, its media type and its bytes.
pub struct Attachment {
    pub name: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

pub struct Shown {
    pub subject: String,
    pub from: String,
    pub date: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// The parts of a message; `None` when the bytes are not a message at all.
pub fn show(bytes: &[u8]) -> Option<Shown> {
    use mail_parser::MimeHeaders;
    let m = mail_parser::MessageParser::default().parse(bytes)?;
    let attachments = m
        .attachments()
        .enumerate()
        .map(|(i, a)| Attachment {
            name: a
                .attachment_name()
                .map_or_else(|| format!("attachment-{}", i + 1), str::to_string),
            media_type: a.content_type().map_or_else(
                || "application/octet-stream".to_string(),
                |c| match c.subtype() {
                    Some(sub) => format!("{}/{sub}", c.ctype()),
                    None => c.ctype().to_string(),
                },
            ),
            bytes: a.contents().to_vec(),
        })
        .collect();
    Some(Shown {
        subject: m.subject().unwrap_or_default().to_string(),
        from: m.header_raw("From").unwrap_or_default().trim().to_string(),
        date: m.header_raw("Date").unwrap_or_default().trim().to_string(),
        text: m.body_text(0).map(|t| t.into_owned()),
        html: m.body_html(0).map(|t| t.into_owned()),
        attachments,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_multipart_message_gives_its_text_html_and_pdf() {
        let raw = b"From: Office <office@example.nl>\r\nTo: a@example.nl\r\nSubject: =?utf-8?q?Certificaat_E=C3=A9n?=\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nBeste Anna, =C3=A9=C3=A9n\r\n--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Beste Anna</p>\r\n--b2--\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"certificaat.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";
        let s = super::show(raw).expect("parsed");
        assert_eq!(s.subject, "Certificaat Eén");
        assert!(
            s.text
                .as_deref()
                .is_some_and(|t| t.contains("Beste Anna, één"))
        );
        assert!(
            s.html
                .as_deref()
                .is_some_and(|t| t.contains("<p>Beste Anna</p>"))
        );
        assert_eq!(s.attachments.len(), 1);
        let a = s.attachments.first().expect("pdf");
        assert_eq!(a.name, "certificaat.pdf");
        assert_eq!(a.media_type, "application/pdf");
        assert!(a.bytes.starts_with(b"%PDF-1.4"));
    }
}
