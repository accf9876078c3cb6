//! `config.yaml`: loaded and validated in one place. Every error names its key; secrets
//! are only ever named (an environment variable or a file), never stored or printed.

use chrono_tz::Tz;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fully validated configuration. Paths are absolute or relative to the working
/// directory (resolved against the config file's folder).
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub database: DatabaseUrl,
    pub timezone: Tz,
    pub rules: PathBuf,
    pub templates: PathBuf,
    pub office: Office,
    pub mail: Mail,
    pub http: Http,
    pub scheduler: Scheduler,
}

/// Where the data lives; the scheme chooses the backend.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(url) => write!(f, "{}", redact_url(url)),
        }
    }
}

/// The URL with any password replaced, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct Office {
    pub name: String,
    pub from: String,
    pub verify_base_url: String,
    /// The language of a participant without a `locale`, and of the templates without a
    /// language in their name (T7).
    pub locale: crate::lang::Lang,
    /// The key that signs Open Badges credentials (`office.signing_key_file`), if any.
    pub signer: Option<std::sync::Arc<crate::credential::Signer>>,
    /// LinkedIn's id of the office's organisation page (`office.linkedin_organization_id`);
    /// without it, "add to profile" names the organisation by `name`.
    pub linkedin_organization_id: Option<String>,
    /// Where replies to the emails go (`office.reply_to`), when not to `from`.
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Smtp,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    None,
    Starttls,
    Tls,
}

/// Where a secret comes from. The value itself is read only when it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// Reads the secret; the error names the source, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mail {
    pub transport: Transport,
    pub outbox: PathBuf,
    pub smtp: Smtp,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub pool: u32,
    pub rate_per_second: u32,
    /// Bounds every SMTP step (connect, greeting, each command, the end of DATA).
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Http {
    pub listen: SocketAddr,
    pub token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    pub interval: Duration,
    pub max_attempts: u32,
}

// ---- the file as written ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: Option<String>,
    timezone: Option<String>,
    rules: Option<String>,
    templates: Option<String>,
    office: Option<RawOffice>,
    mail: Option<RawMail>,
    http: Option<RawHttp>,
    scheduler: Option<RawScheduler>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOffice {
    name: Option<String>,
    from: Option<String>,
    verify_base_url: Option<String>,
    locale: Option<String>,
    signing_key_file: Option<String>,
    retired_public_keys: Option<Vec<String>>,
    linkedin_organization_id: Option<String>,
    reply_to: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMail {
    transport: Option<Transport>,
    outbox: Option<String>,
    smtp: Option<RawSmtp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<Tls>,
    username: Option<String>,
    /// Accepted only to refuse it with a clear message.
    password: Option<serde::de::IgnoredAny>,
    password_env: Option<String>,
    password_file: Option<String>,
    pool: Option<u32>,
    rate_per_second: Option<u32>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    /// Accepted only to refuse it with a clear message.
    token: Option<serde::de::IgnoredAny>,
    token_env: Option<String>,
    token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    interval: Option<String>,
    max_attempts: Option<u32>,
}

/// Every problem found in a config file, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{shown}: config file not found (copy config.example.yaml to config.yaml, \
                     or pass --config PATH / set REGISTRAR_CONFIG)"
                )
            } else {
                format!("{shown}: cannot read the config file: {e}")
            }],
        })?;
        Config::from_yaml(&text, path)
    }

    /// Parses and validates config text; `path` names the file in messages and anchors
    /// relative paths.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let (raw, mistakes) = if text.trim().is_empty() {
            (Some(RawConfig::default()), Vec::new())
        } else {
            crate::rules::parse_past_mistakes::<RawConfig>(text)
        };
        let mut problems: Vec<String> = mistakes
            .into_iter()
            .map(|(line, column, message)| {
                let key = crate::rules::key_path_at(text, line)
                    .map(|k| format!("`{k}`: "))
                    .unwrap_or_default();
                format!("{shown}:{line}:{column}: {key}{message}")
            })
            .collect();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // The settings that could be read are checked too: every mistake at once.
        match raw.map(|raw| validate(raw, path, &base)) {
            Some(Ok(config)) if problems.is_empty() => Ok(config),
            Some(Err(e)) => {
                problems.extend(e.problems);
                Err(ConfigError { problems })
            }
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Every check in one function; each message names the setting.
fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let mut problems = Vec::new();
    let mut bad = |key: &str, why: String| problems.push(format!("{shown}: `{key}` {why}"));
    let rel = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let database = match raw.database.as_deref().unwrap_or("sqlite://registrar.db") {
        url if url.starts_with("sqlite://") => {
            let file = &url["sqlite://".len()..];
            if file.is_empty() {
                bad(
                    "database",
                    "names no file (expected sqlite://PATH, e.g. sqlite://registrar.db)".into(),
                );
            }
            DatabaseUrl::Sqlite(rel(file))
        }
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            if url.split_once("://").is_some_and(|(_, rest)| {
                rest.contains(':') && rest.contains('@') && rest.find(':') < rest.find('@')
            }) {
                bad("database", "contains a password; use trust/peer authentication, a .pgpass file or PGPASSWORD in the environment instead".into());
            }
            DatabaseUrl::Postgres(url.to_string())
        }
        other => {
            bad(
                "database",
                format!(
                    "{:?} is neither sqlite://PATH nor postgres://USER@HOST/DB",
                    redact_url(other)
                ),
            );
            DatabaseUrl::Sqlite(rel("registrar.db"))
        }
    };

    let timezone = match raw.timezone.as_deref().unwrap_or("UTC").parse::<Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            bad(
                "timezone",
                format!(
                    "{:?} is not an IANA time zone name (e.g. Europe/Amsterdam)",
                    raw.timezone.unwrap_or_default()
                ),
            );
            Tz::UTC
        }
    };

    let office_raw = raw.office.unwrap_or_default();
    let locale = match office_raw.locale.as_deref() {
        None => crate::lang::Lang::english(),
        Some(l) => crate::lang::Lang::parse(l).unwrap_or_else(|| {
            bad(
                "office.locale",
                format!("{l:?} is not a language tag (expected e.g. nl, en, de or nl-BE)"),
            );
            crate::lang::Lang::english()
        }),
    };
    let office = Office {
        locale,
        name: office_raw.name.unwrap_or_else(|| "Training Office".into()),
        from: office_raw
            .from
            .unwrap_or_else(|| "Training Office <training@example.org>".into()),
        verify_base_url: office_raw
            .verify_base_url
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_string(),
        signer: None,
        linkedin_organization_id: None,
        reply_to: office_raw.reply_to.clone(),
    };
    if !mailbox_ok(&office.from) {
        bad(
            "office.from",
            format!(
                "{:?} is not an address (expected \"Name <address@example.org>\" or address@example.org)",
                office.from
            ),
        );
    }
    if let Some(r) = office.reply_to.as_deref().filter(|r| !mailbox_ok(r)) {
        bad(
            "office.reply_to",
            format!(
                "{r:?} is not an address (expected \"Name <address@example.org>\" or address@example.org)"
            ),
        );
    }
    if !(office.verify_base_url.starts_with("https://")
        || office.verify_base_url.starts_with("http://"))
    {
        bad(
            "office.verify_base_url",
            format!(
                "{:?} must start with https:// or http://",
                office.verify_base_url
            ),
        );
    }
    let mut office = office;
    match office_raw.linkedin_organization_id {
        Some(id) if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) => bad(
            "office.linkedin_organization_id",
            format!(
                "{id:?} is not a LinkedIn organisation id (the digits in the company page's admin URL)"
            ),
        ),
        id => office.linkedin_organization_id = id,
    }
    let retired = office_raw.retired_public_keys.unwrap_or_default();
    match office_raw.signing_key_file {
        Some(file) => match crate::credential::Signer::load(
            &rel(&file),
            &office.verify_base_url,
            &office.name,
            retired,
        ) {
            Ok(signer) => office.signer = Some(std::sync::Arc::new(signer)),
            Err(why) => bad("office.signing_key_file", why),
        },
        None if !retired.is_empty() => bad(
            "office.retired_public_keys",
            "needs office.signing_key_file (the key in force)".into(),
        ),
        None => {}
    }

    let mail_raw = raw.mail.unwrap_or_default();
    let smtp_raw = mail_raw.smtp.unwrap_or_default();
    if smtp_raw.password.is_some() {
        bad("mail.smtp.password", "is not allowed: passwords never go in config files; use password_env (an environment variable) or password_file".into());
    }
    let password = secret(
        &mut bad,
        "mail.smtp.password",
        smtp_raw.password_env,
        smtp_raw.password_file,
        &rel,
    );
    let smtp = Smtp {
        host: smtp_raw.host.unwrap_or_else(|| "127.0.0.1".into()),
        port: smtp_raw.port.unwrap_or(587),
        tls: smtp_raw.tls.unwrap_or(Tls::Starttls),
        username: smtp_raw.username,
        password,
        pool: smtp_raw.pool.unwrap_or(4),
        rate_per_second: smtp_raw.rate_per_second.unwrap_or(50),
        timeout: parse_interval(smtp_raw.timeout.as_deref().unwrap_or("60s")).unwrap_or_else(
            |why| {
                bad("mail.smtp.timeout", why);
                Duration::from_secs(60)
            },
        ),
    };
    if smtp.host.trim().is_empty() {
        bad("mail.smtp.host", "is empty".into());
    }
    if smtp.port == 0 {
        bad("mail.smtp.port", "must be between 1 and 65535".into());
    }
    if smtp.pool == 0 || smtp.pool > 64 {
        bad(
            "mail.smtp.pool",
            format!("{} is out of range (1 to 64)", smtp.pool),
        );
    }
    if smtp.rate_per_second == 0 {
        bad("mail.smtp.rate_per_second", "must be at least 1".into());
    }
    let mail = Mail {
        transport: mail_raw.transport.unwrap_or(Transport::Smtp),
        outbox: rel(mail_raw.outbox.as_deref().unwrap_or("outbox")),
        smtp,
    };

    let http_raw = raw.http.unwrap_or_default();
    if http_raw.token.is_some() {
        bad(
            "http.token",
            "is not allowed: tokens never go in config files; use token_env or token_file".into(),
        );
    }
    let listen_text = http_raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        bad(
            "http.listen",
            format!("{listen_text:?} is not an address:port (e.g. 127.0.0.1:8080)"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let token = secret(
        &mut bad,
        "http.token",
        http_raw.token_env,
        http_raw.token_file,
        &rel,
    );

    let sched = raw.scheduler.unwrap_or_default();
    let interval_text = sched.interval.unwrap_or_else(|| "30s".into());
    let interval = parse_interval(&interval_text).unwrap_or_else(|why| {
        bad("scheduler.interval", why);
        Duration::from_secs(30)
    });
    let max_attempts = sched.max_attempts.unwrap_or(8);
    if max_attempts == 0 || max_attempts > 100 {
        bad(
            "scheduler.max_attempts",
            format!("{max_attempts} is out of range (1 to 100)"),
        );
    }

    let config = Config {
        path: path.to_path_buf(),
        database,
        timezone,
        rules: rel(raw.rules.as_deref().unwrap_or("rules")),
        templates: rel(raw.templates.as_deref().unwrap_or("templates")),
        office,
        mail,
        http: Http { listen, token },
        scheduler: Scheduler {
            interval,
            max_attempts,
        },
    };
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { problems })
    }
}

fn secret(
    bad: &mut impl FnMut(&str, String),
    key: &str,
    env: Option<String>,
    file: Option<String>,
    rel: &impl Fn(&str) -> PathBuf,
) -> Option<Secret> {
    match (env, file) {
        (Some(_), Some(_)) => {
            bad(
                key,
                format!("is given twice: set either {key}_env or {key}_file, not both"),
            );
            None
        }
        (Some(name), None) if name.is_empty() || name.contains(['=', '\0']) => {
            bad(
                &format!("{key}_env"),
                format!("{name:?} is not an environment variable name"),
            );
            None
        }
        (Some(name), None) => Some(Secret::Env(name)),
        (None, Some(file)) => Some(Secret::File(rel(&file))),
        (None, None) => None,
    }
}

/// `Name <addr>` or a bare address.
fn mailbox_ok(s: &str) -> bool {
    let addr = match (s.rfind('<'), s.rfind('>')) {
        (Some(l), Some(r)) if l < r && s[r + 1..].trim().is_empty() => &s[l + 1..r],
        (None, None) => s,
        _ => return false,
    };
    crate::domain::EmailAddress::parse(addr).is_ok()
}

/// `30s`, `5m`, `2h`, `30 seconds`, `5 minutes`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (expected e.g. 30s, 5m, 1h)"))?;
    let secs = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60,
        "h" | "hour" | "hours" => n * 3600,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit (expected s, m or h, e.g. 30s)"
            ));
        }
    };
    if secs == 0 || secs > 24 * 3600 {
        return Err(format!("{s:?} is out of range (1s to 24h)"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, Path::new("/etc/registrar/config.yaml"))
    }

    #[test]
    fn an_empty_file_gives_sensible_defaults() {
        let c = load("").unwrap();
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("/etc/registrar/registrar.db".into())
        );
        assert_eq!(c.rules, PathBuf::from("/etc/registrar/rules"));
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.scheduler.interval, Duration::from_secs(30));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = load("database: sqlite://x.db\ntimezon: Europe/Amsterdam\n").unwrap_err();
        assert!(e.to_string().contains("timezon"), "{e}");
        assert!(e.to_string().contains("config.yaml:2:1:"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key_and_all_are_listed() {
        let e = load("timezone: Mars/Olympus\nscheduler:\n  interval: 30 parsecs\nhttp:\n  listen: localhost\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`timezone`"), "{text}");
        assert!(text.contains("`scheduler.interval`"), "{text}");
        assert!(text.contains("`http.listen`"), "{text}");
        assert_eq!(e.problems.len(), 3);
    }

    #[test]
    fn an_inline_password_is_refused_without_echoing_it() {
        let e = load("mail:\n  smtp:\n    password: hunter2\n").unwrap_err();
        assert!(e.to_string().contains("password_env"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn a_password_in_the_database_url_is_refused_and_not_echoed() {
        let e = load("database: postgres://app:s3cret@db/registrar\n").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn secrets_are_read_from_the_named_source_only() {
        let c = load("mail:\n  smtp:\n    password_env: REGISTRAR_TEST_UNSET_VARIABLE\n").unwrap();
        let err = c.mail.smtp.password.unwrap().read().unwrap_err();
        assert!(err.contains("REGISTRAR_TEST_UNSET_VARIABLE"));
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let c = Config::from_yaml(
            include_str!("../config.example.yaml"),
            Path::new("config.example.yaml"),
        )
        .unwrap();
        assert_eq!(c.timezone, chrono_tz::Europe::Amsterdam);
        assert_eq!(
            c.mail.smtp.password,
            Some(Secret::Env("REGISTRAR_SMTP_PASSWORD".into()))
        );
        // The demo's signing key is written by demo.sh (never committed): give
        // the example config one of its own beside it.
        let dir = tempfile::tempdir().unwrap();
        crate::credential::keygen(&dir.path().join("office.key")).unwrap();
        let demo = Config::from_yaml(
            include_str!("../examples/config.yaml"),
            &dir.path().join("config.yaml"),
        )
        .unwrap();
        assert_eq!(demo.mail.transport, Transport::File);
    }

    #[test]
    fn redact_url_hides_the_password() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn a_type_error_names_the_setting_and_where() {
        let err = load("scheduler:\n  max_attempts: abc\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2:17: `scheduler.max_attempts`: expected a whole number, 0 or more"),
            "{err}"
        );
    }
}
