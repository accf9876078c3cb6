//! Languages (T7): which language a recipient reads, dates written in it, and the
//! product's own words (the verify page, attachment names) in English and Dutch.
//!
//! A message is in the recipient's language: the participant's `locale` (BCP 47; `nl-BE`
//! falls back to `nl`), else `office.locale` (default `en`). Month names and date orders
//! come from the locale data of glibc, as chrono's `unstable-locales` carries them
//! (`pure-rust-locales`); only the long form's shape is ours ("23 maart 2026",
//! "23. März 2026").

use chrono::{DateTime, FixedOffset, Utc};
use chrono_tz::Tz;

/// A language tag, normalized: `nl`, `nl-BE`, `de`, `en-GB`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Lang(String);

impl Lang {
    /// Parses a BCP 47 tag (`nl`, `nl-BE`, `nl_be`, `de-DE`); `None` for anything else.
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().replace('_', "-");
        let mut parts = s.split('-');
        let language = parts.next()?.to_ascii_lowercase();
        if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_alphabetic())
        {
            return None;
        }
        match parts.next() {
            None => Some(Lang(language)),
            Some(region)
                if region.len() == 2 && region.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                Some(Lang(format!("{language}-{}", region.to_ascii_uppercase())))
            }
            // Script subtags and the like: the language is what we use.
            Some(_) => Some(Lang(language)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The language without its region: `nl` for `nl-BE`.
    pub fn base(&self) -> Lang {
        Lang(self.0.split('-').next().unwrap_or(&self.0).to_string())
    }

    /// This tag and, if it has a region, its language: `nl-BE`, `nl`.
    pub fn chain(&self) -> Vec<Lang> {
        let base = self.base();
        if base == *self {
            vec![base]
        } else {
            vec![self.clone(), base]
        }
    }

    pub fn english() -> Lang {
        Lang("en".into())
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The languages to try for a recipient, best first: the participant's (with its base
/// language), then the office's.
pub fn preferences(participant: Option<&str>, office: &Lang) -> Vec<Lang> {
    let mut out: Vec<Lang> = participant
        .and_then(Lang::parse)
        .map(|l| l.chain())
        .unwrap_or_default();
    for l in office.chain() {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

/// The locale whose names and date order a language uses: the tag's own (`nl_BE`), else
/// the language's usual country, else British English.
fn locale(lang: &Lang) -> chrono::Locale {
    let own = lang.as_str().replace('-', "_");
    if let Ok(l) = chrono::Locale::try_from(own.as_str()) {
        return l;
    }
    let base = lang.base();
    let usual = match base.as_str() {
        "en" => "en_GB",
        "nl" => "nl_NL",
        "de" => "de_DE",
        "fr" => "fr_FR",
        "es" => "es_ES",
        "it" => "it_IT",
        "pt" => "pt_PT",
        "da" => "da_DK",
        "sv" => "sv_SE",
        "pl" => "pl_PL",
        other => {
            return chrono::Locale::try_from(
                format!("{other}_{}", other.to_ascii_uppercase()).as_str(),
            )
            .unwrap_or(chrono::Locale::en_GB);
        }
    };
    chrono::Locale::try_from(usual).unwrap_or(chrono::Locale::en_GB)
}

/// The long date pattern: the day, the month's name, the year, as the language writes it.
fn long_pattern(lang: &Lang) -> &'static str {
    match lang.base().as_str() {
        "de" | "da" | "nb" | "no" | "fi" | "cs" | "sk" | "pl" => "%-d. %B %Y",
        "hu" => "%Y. %B %-d.",
        _ => "%-d %B %Y",
    }
}

/// The short date pattern: the locale's own order and separators, with a four-digit year.
fn short_pattern(locale: chrono::Locale) -> String {
    pure_rust_locales::locale_match!(locale => LC_TIME::D_FMT).replace("%y", "%Y")
}

/// "23 maart 2026", "23 March 2026", "23. März 2026", "23 mars 2026".
pub fn long_date_of<Z: chrono::TimeZone>(t: &DateTime<Z>, lang: &Lang) -> String
where
    Z::Offset: std::fmt::Display,
{
    t.format_localized(long_pattern(lang), locale(lang))
        .to_string()
}

/// "23-03-2026", "23/03/2026", "23.03.2026".
pub fn short_date_of<Z: chrono::TimeZone>(t: &DateTime<Z>, lang: &Lang) -> String
where
    Z::Offset: std::fmt::Display,
{
    let l = locale(lang);
    t.format_localized(&short_pattern(l), l).to_string()
}

/// The long date and the time of day: "23 maart 2026 17:00".
pub fn long_datetime_of<Z: chrono::TimeZone>(t: &DateTime<Z>, lang: &Lang) -> String
where
    Z::Offset: std::fmt::Display,
{
    format!("{} {}", long_date_of(t, lang), t.format("%H:%M"))
}

/// A moment as the office reads it, in `lang`.
pub fn long_date(t: DateTime<Utc>, tz: Tz, lang: &Lang) -> String {
    long_date_of(&t.with_timezone(&tz), lang)
}

/// Parses what templates get: RFC 3339 with an offset (the office's local time) or a date.
pub fn parse_moment(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .map(|n| n.and_utc().fixed_offset())
    })
}

/// The product's own words, in English and Dutch (other languages read English).
pub struct Words {
    pub valid: &'static str,
    pub expiring_soon: &'static str,
    pub expired: &'static str,
    pub revoked: &'static str,
    pub not_found: &'static str,
    pub not_found_text: &'static str,
    pub completed: &'static str,
    pub certificate: &'static str,
    pub issued_on: &'static str,
    /// "Issued" as a label.
    pub issued: &'static str,
    pub valid_until: &'static str,
    pub revoked_on: &'static str,
    pub expired_on: &'static str,
    pub course: &'static str,
    pub holder: &'static str,
    pub number: &'static str,
    pub course_type: &'static str,
    pub dates: &'static str,
    /// The PDF attachment's name: `certificate-COURSE-PERSON.pdf`.
    pub certificate_file: &'static str,
    pub verified_by: &'static str,
    /// The verify page's link to the signed credential.
    pub credential_link: &'static str,
}

const EN: Words = Words {
    valid: "Valid certificate",
    expiring_soon: "Valid certificate, expiring soon",
    expired: "Expired certificate",
    revoked: "Revoked certificate",
    not_found: "Not found",
    not_found_text: "No certificate has this verification code.",
    completed: "completed",
    certificate: "Certificate",
    issued_on: "issued on",
    issued: "Issued",
    valid_until: "valid until",
    revoked_on: "revoked on",
    expired_on: "expired on",
    course: "Course",
    holder: "Holder",
    number: "Number",
    course_type: "Type",
    dates: "Dates",
    certificate_file: "certificate",
    verified_by: "Verified by",
    credential_link: "Digital certificate (Open Badges 3.0, signed by the office)",
};

const NL: Words = Words {
    valid: "Geldig certificaat",
    expiring_soon: "Geldig certificaat, verloopt binnenkort",
    expired: "Verlopen certificaat",
    revoked: "Ingetrokken certificaat",
    not_found: "Niet gevonden",
    not_found_text: "Er is geen certificaat met deze verificatiecode.",
    completed: "heeft afgerond",
    certificate: "Certificaat",
    issued_on: "uitgegeven op",
    issued: "Uitgegeven",
    valid_until: "geldig tot",
    revoked_on: "ingetrokken op",
    expired_on: "verlopen op",
    course: "Cursus",
    holder: "Houder",
    number: "Nummer",
    course_type: "Soort",
    dates: "Data",
    certificate_file: "certificaat",
    verified_by: "Gecontroleerd door",
    credential_link: "Digitaal certificaat (Open Badges 3.0, ondertekend door het opleidingscentrum)",
};

/// The product's words in `lang` (English when we have none).
pub fn words(lang: &Lang) -> &'static Words {
    match lang.base().as_str() {
        "nl" => &NL,
        _ => &EN,
    }
}

/// The languages the product's own words exist in.
pub const WORDS: [&str; 2] = ["en", "nl"];

/// The reader's language from an `Accept-Language` header: the first (by weight) we have
/// words for, else `fallback`.
pub fn from_accept_language(header: Option<&str>, fallback: &Lang) -> Lang {
    let mut offered: Vec<(f32, Lang)> = header
        .unwrap_or_default()
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = Lang::parse(it.next()?)?;
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((q, tag))
        })
        .collect();
    offered.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    offered
        .into_iter()
        .map(|(_, l)| l)
        .find(|l| WORDS.contains(&l.base().as_str()))
        .unwrap_or_else(|| fallback.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> DateTime<FixedOffset> {
        parse_moment("2026-03-23T12:00:00+01:00").expect("moment")
    }

    fn lang(s: &str) -> Lang {
        Lang::parse(s).expect("lang")
    }

    #[test]
    fn t7_long_dates_in_four_languages() {
        assert_eq!(long_date_of(&day(), &lang("nl")), "23 maart 2026");
        assert_eq!(long_date_of(&day(), &lang("nl-BE")), "23 maart 2026");
        assert_eq!(long_date_of(&day(), &lang("en")), "23 March 2026");
        assert_eq!(long_date_of(&day(), &lang("de")), "23. März 2026");
        assert_eq!(long_date_of(&day(), &lang("fr")), "23 mars 2026");
    }

    #[test]
    fn t7_short_dates_follow_the_locale_with_a_four_digit_year() {
        assert_eq!(short_date_of(&day(), &lang("nl")), "23-03-2026");
        assert_eq!(short_date_of(&day(), &lang("de")), "23.03.2026");
        assert_eq!(short_date_of(&day(), &lang("fr")), "23/03/2026");
        assert_eq!(short_date_of(&day(), &lang("en")), "23/03/2026");
    }

    #[test]
    fn t7_a_regional_tag_falls_back_to_its_language_then_the_office() {
        let prefs = preferences(Some("nl_be"), &lang("en"));
        let tags: Vec<&str> = prefs.iter().map(Lang::as_str).collect();
        assert_eq!(tags, ["nl-BE", "nl", "en"]);
        let prefs = preferences(None, &lang("nl"));
        assert_eq!(prefs, [lang("nl")]);
        assert_eq!(Lang::parse("x1"), None);
    }

    #[test]
    fn accept_language_picks_the_first_language_we_speak() {
        let en = Lang::english();
        assert_eq!(
            from_accept_language(Some("de-DE,nl;q=0.8,en;q=0.5"), &en),
            lang("nl")
        );
        assert_eq!(from_accept_language(Some("fr"), &en), en);
        assert_eq!(from_accept_language(None, &lang("nl")), lang("nl"));
    }
}
