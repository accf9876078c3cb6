//! Transports (SPEC §6): SMTP through lettre with a connection pool, or `file` (one .eml
//! per message in the outbox directory). Both take the stored message bytes as they are,
//! so a resend is the same message with the same Message-ID.

use crate::config::{Mail, Tls, Transport as Kind};
use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// 4xx, refused connection, timeout: try again later.
    Temporary(String),
    /// 5xx, an invalid address: never going to work.
    Permanent(String),
    /// The server refused our login, or TLS failed (a certificate, a protocol): a problem
    /// of the configuration, not of this message. It stays queued; delivery pauses.
    Config(String),
}

pub enum Transport {
    Smtp(Box<Smtp>),
    File { dir: PathBuf },
}

/// SMTP through lettre's connection, with a pool of our own: lettre's pooled transport
/// leaves Nagle's algorithm on, which costs 40 ms a message on a fast link (the body and
/// the final "." go out as two writes and the second waits for the server's delayed ACK).
/// Our connections are opened with TCP_NODELAY and handed to lettre.
pub struct Smtp {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    from: Address,
    rate: Rate,
    size: usize,
    /// Bounds every step: connect, greeting, STARTTLS, AUTH, and each message exchange.
    timeout: Duration,
    /// Open connections not in use, with when each was last used.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

/// A pooled connection idle longer than this is tested (NOOP) before it is used: servers
/// close idle connections, and a message is never sent on one that may be closed.
const IDLE_TEST: Duration = Duration::from_secs(2);

impl Transport {
    /// The transport the config describes; the error names the key at fault.
    pub fn from_config(mail: &Mail, office_from: &str) -> Result<Arc<Transport>, String> {
        match mail.transport {
            Kind::File => Ok(Arc::new(Transport::File {
                dir: mail.outbox.clone(),
            })),
            Kind::Smtp => {
                let s = &mail.smtp;
                let from = office_from
                    .rsplit('<')
                    .next()
                    .unwrap_or(office_from)
                    .trim_end_matches('>')
                    .trim()
                    .parse::<Address>()
                    .map_err(|e| format!("office.from {office_from:?}: {e}"))?;
                let credentials = match (&s.username, &s.password) {
                    (Some(user), Some(secret)) => Some(Credentials::new(
                        user.clone(),
                        secret
                            .read()
                            .map_err(|e| format!("mail.smtp.password: {e}"))?,
                    )),
                    (Some(_), None) => {
                        return Err("mail.smtp.username is set but there is no password_env or password_file".into());
                    }
                    (None, _) => None,
                };
                Ok(Arc::new(Transport::Smtp(Box::new(Smtp {
                    host: s.host.clone(),
                    port: s.port,
                    tls: s.tls,
                    credentials,
                    from,
                    rate: Rate::new(s.rate_per_second),
                    size: s.pool as usize,
                    timeout: s.timeout,
                    idle: Mutex::new(Vec::new()),
                }))))
            }
        }
    }

    /// How many messages go out at once.
    pub fn concurrency(&self) -> usize {
        match self {
            Transport::Smtp(s) => s.size,
            // A file written again (after a kill before it was recorded) replaces itself:
            // its name is the message's, so many in flight cost no duplicate.
            Transport::File { .. } => 32,
        }
    }

    /// One attempt to hand `message` over for `recipients` (comma-separated addresses).
    /// `name` is the file name the file transport uses (the same for a resend).
    pub async fn send(&self, recipients: &str, message: &[u8], name: &str) -> Outcome {
        match self {
            Transport::Smtp(s) => s.send(recipients, message).await,
            Transport::File { dir } => match write_file(dir, name, message).await {
                Ok(()) => Outcome::Sent,
                Err(e) => Outcome::Temporary(format!("cannot write to {}: {e}", dir.display())),
            },
        }
    }
}

impl Smtp {
    async fn send(&self, recipients: &str, message: &[u8]) -> Outcome {
        let to: Result<Vec<Address>, _> = recipients
            .split(',')
            .map(|a| a.trim().parse::<Address>())
            .collect();
        let envelope = match to.map(|to| Envelope::new(Some(self.from.clone()), to)) {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => return Outcome::Permanent(format!("invalid envelope: {e}")),
            Err(e) => return Outcome::Permanent(format!("invalid address: {e}")),
        };
        self.rate.wait().await;
        let mut pooled = self.idle.lock().await.pop();
        if let Some((c, since)) = &mut pooled
            && since.elapsed() > IDLE_TEST
            && !matches!(
                tokio::time::timeout(self.timeout, c.test_connected()).await,
                Ok(true)
            )
        {
            pooled = None;
        }
        let mut conn = match pooled {
            Some((c, _)) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(o) => return o,
            },
        };
        // One exchange, never repeated here: a failure after the server may have taken the
        // message is a temporary failure, retried later (with the same Message-ID).
        let result = self.exchange(&mut conn, &envelope, message).await;
        // A connection that timed out may hold half an exchange: it is not reused.
        if !conn.has_broken() && !matches!(result, Err(Failure::Silent)) {
            self.idle.lock().await.push((conn, Instant::now()));
        }
        match result {
            Ok(()) => Outcome::Sent,
            // 530: the server wants a login we do not give.
            Err(Failure::Smtp(e)) if e.status().is_some_and(|c| c.to_string() == "530") => {
                Outcome::Config(format!(
                    "the SMTP server {}:{} requires a login: {} (set mail.smtp.username and password_env or password_file)",
                    self.host,
                    self.port,
                    smtp_error(&e)
                ))
            }
            Err(Failure::Smtp(e)) => classify(&e),
            Err(Failure::Silent) => Outcome::Temporary(format!(
                "the server {}:{} did not answer within {} s (mail.smtp.timeout)",
                self.host,
                self.port,
                self.timeout.as_secs()
            )),
        }
    }

    /// MAIL, RCPT, DATA and the message, within the timeout.
    async fn exchange(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), Failure> {
        match tokio::time::timeout(self.timeout, conn.send(envelope, message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Failure::Smtp(e)),
            Err(_) => Err(Failure::Silent),
        }
    }

    /// A new connection, or the failure as an outcome (refused, timed out: temporary; a
    /// refused login or a TLS failure: the configuration).
    async fn connect(&self) -> Result<AsyncSmtpConnection, Outcome> {
        self.open().await
    }

    /// `step` within the timeout; a silent server is a temporary failure.
    async fn bounded<T>(
        &self,
        what: &str,
        step: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, Outcome> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) if e.is_tls() => Err(Outcome::Config(format!(
                "TLS with {}:{} failed ({what}): {} (check mail.smtp.tls and the server's certificate)",
                self.host,
                self.port,
                smtp_error(&e)
            ))),
            // A client error while setting up (no STARTTLS offered, no login mechanism in
            // common) does not go away by itself.
            Ok(Err(e)) if e.is_client() => Err(Outcome::Permanent(smtp_error(&e))),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(Outcome::Temporary(format!(
                "the server {}:{} did not answer within {} s ({what}; mail.smtp.timeout)",
                self.host,
                self.port,
                self.timeout.as_secs()
            ))),
        }
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, Outcome> {
        let lettre_err = |e: lettre::transport::smtp::Error| classify(&e);
        let hello = ClientId::default();
        let tls = || TlsParameters::new(self.host.clone());
        let mut conn = if self.tls == Tls::Tls {
            // Implicit TLS: lettre opens the socket (without TCP_NODELAY).
            self.bounded(
                "connecting with TLS",
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &hello,
                    Some(tls().map_err(lettre_err)?),
                    None,
                ),
            )
            .await?
        } else {
            let tcp = tokio::time::timeout(
                self.timeout,
                tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
            )
            .await
            .map_err(|_| {
                Outcome::Temporary(format!(
                    "connecting to {}:{} timed out",
                    self.host, self.port
                ))
            })?
            .map_err(|e| {
                Outcome::Temporary(format!(
                    "cannot connect to {}:{}: {e}",
                    self.host, self.port
                ))
            })?;
            let _ = tcp.set_nodelay(true);
            let mut conn = self
                .bounded(
                    "greeting",
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello),
                )
                .await?;
            if self.tls == Tls::Starttls {
                match self
                    .bounded(
                        "STARTTLS",
                        conn.starttls(tls().map_err(lettre_err)?, &hello),
                    )
                    .await
                {
                    Ok(()) => {}
                    // "STARTTLS is not supported", a refused STARTTLS: the configuration.
                    Err(Outcome::Permanent(why)) => {
                        return Err(Outcome::Config(format!(
                            "STARTTLS with {}:{} failed: {why} (check mail.smtp.tls: none, starttls or tls)",
                            self.host, self.port
                        )));
                    }
                    Err(other) => return Err(other),
                }
            }
            conn
        };
        if let Some(c) = &self.credentials {
            match self
                .bounded("AUTH", conn.auth(&[Mechanism::Plain, Mechanism::Login], c))
                .await
            {
                Ok(_) => {}
                // 535 and the like, or no mechanism in common: the login is wrong,
                // whatever the message.
                Err(Outcome::Permanent(why)) => {
                    return Err(Outcome::Config(format!(
                        "the SMTP server {}:{} refused the login of mail.smtp.username: {why} (check the username and password_env / password_file)",
                        self.host, self.port
                    )));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(conn)
    }
}

/// Why an exchange on an open connection did not complete.
enum Failure {
    Smtp(lettre::transport::smtp::Error),
    /// No answer within the timeout.
    Silent,
}

fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    if e.is_permanent() {
        Outcome::Permanent(smtp_error(e))
    } else {
        Outcome::Temporary(smtp_error(e))
    }
}

/// lettre's message with its source chain ("permanent error (550): mailbox unavailable").
fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Written to a temporary name of its own (process, sequence) and renamed, so the outbox
/// never holds half a message, two writers never share a temporary file, and a resend
/// replaces the file rather than adding a second one.
async fn write_file(dir: &std::path::Path, name: &str, message: &[u8]) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    tokio::fs::create_dir_all(dir).await?;
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    tokio::fs::write(&tmp, message).await?;
    tokio::fs::rename(&tmp, dir.join(name)).await
}

/// `rate_per_second`: message starts are spaced evenly, whatever the pool size.
pub struct Rate {
    gap: Duration,
    next: Mutex<Instant>,
}

impl Rate {
    pub fn new(per_second: u32) -> Rate {
        Rate {
            gap: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.gap;
            slot
        };
        // Only when the slot is ahead: tokio's timer turns once a millisecond, so a sleep
        // until "now" would cost up to a millisecond a message at any rate.
        if slot > Instant::now() {
            tokio::time::sleep_until(slot).await;
        }
    }
}
