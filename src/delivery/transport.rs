//! Transports (SPEC §6): SMTP through lettre with a connection pool, or `file` (one .eml
//! per message in the outbox directory). Both take the stored message bytes as they are,
//! so a resend is the same message with the same Message-ID.

use crate::config::{Mail, Tls, Transport as Kind};
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
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
}

pub enum Transport {
    Smtp {
        mailer: AsyncSmtpTransport<Tokio1Executor>,
        from: Address,
        rate: Rate,
        pool: usize,
    },
    File {
        dir: PathBuf,
    },
}

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
                let builder = match s.tls {
                    Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
                    Tls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                        .map_err(|e| format!("mail.smtp.host {:?}: {e}", s.host))?,
                    Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
                        .map_err(|e| format!("mail.smtp.host {:?}: {e}", s.host))?,
                };
                let mut builder = builder
                    .port(s.port)
                    .timeout(Some(Duration::from_secs(30)))
                    .pool_config(PoolConfig::new().max_size(s.pool));
                if let Some(user) = &s.username {
                    let password = match &s.password {
                        Some(secret) => secret.read().map_err(|e| format!("mail.smtp.password: {e}"))?,
                        None => {
                            return Err("mail.smtp.username is set but there is no password_env or password_file".into());
                        }
                    };
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Ok(Arc::new(Transport::Smtp {
                    mailer: builder.build(),
                    from,
                    rate: Rate::new(s.rate_per_second),
                    pool: s.pool as usize,
                }))
            }
        }
    }

    /// How many messages go out at once.
    pub fn concurrency(&self) -> usize {
        match self {
            Transport::Smtp { pool, .. } => *pool,
            Transport::File { .. } => 4,
        }
    }

    /// One attempt to hand `message` over for `recipients` (comma-separated addresses).
    /// `name` is the file name the file transport uses (the same for a resend).
    pub async fn send(&self, recipients: &str, message: &[u8], name: &str) -> Outcome {
        match self {
            Transport::Smtp {
                mailer, from, rate, ..
            } => {
                let to: Result<Vec<Address>, _> =
                    recipients.split(',').map(|a| a.trim().parse::<Address>()).collect();
                let envelope = match to.map(|to| Envelope::new(Some(from.clone()), to)) {
                    Ok(Ok(e)) => e,
                    Ok(Err(e)) => return Outcome::Permanent(format!("invalid envelope: {e}")),
                    Err(e) => return Outcome::Permanent(format!("invalid address: {e}")),
                };
                rate.wait().await;
                match mailer.send_raw(&envelope, message).await {
                    Ok(_) => Outcome::Sent,
                    Err(e) if e.is_permanent() => Outcome::Permanent(smtp_error(&e)),
                    Err(e) => Outcome::Temporary(smtp_error(&e)),
                }
            }
            Transport::File { dir } => match write_file(dir, name, message).await {
                Ok(()) => Outcome::Sent,
                Err(e) => Outcome::Temporary(format!("cannot write to {}: {e}", dir.display())),
            },
        }
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

/// Written to a temporary name and renamed, so the outbox never holds half a message and
/// a resend replaces the file rather than adding a second one.
async fn write_file(dir: &std::path::Path, name: &str, message: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
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
        tokio::time::sleep_until(slot).await;
    }
}
