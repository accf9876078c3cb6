//! Email addresses, parsed once at the edge.

use std::fmt;

/// A syntactically plausible mailbox address (`local@domain`), trimmed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| Err(format!("{s:?} is not a valid email address: {why}"));
        if s.len() > 254 {
            return bad("longer than 254 characters");
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return bad("no @");
        };
        if local.is_empty() || local.len() > 64 {
            return bad("the part before @ is empty or too long");
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c))
        {
            return bad("it contains a space or one of <>,;\"()[]\\");
        }
        if local.contains('@') {
            return bad("more than one @");
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return bad("misplaced dot before @");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels
                .iter()
                .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-') || l.len() > 63)
        {
            return bad("the domain after @ is not a valid host name");
        }
        Ok(EmailAddress(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_accented_local_parts() {
        assert!(EmailAddress::parse("anne.de.vries@example.nl").is_ok());
        assert!(EmailAddress::parse(" zoë@example.org ").is_ok());
    }

    #[test]
    fn rejects_addresses_mail_servers_would_refuse() {
        for bad in [
            "",
            "jan",
            "jan@",
            "@example.org",
            "jan@localhost",
            "jan @x.nl",
            "a@b@c.nl",
            "jan@x..nl",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
