//! A real SMTP server in the test process, built on the `mailin` protocol crate: it
//! speaks SMTP over TCP on a free port, keeps every message it accepts, and can be told
//! to answer 4xx or 5xx for chosen recipients.

use mailin::{Action, Handler, Response, SessionBuilder};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    pub data: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }

    pub fn message_id(&self) -> String {
        self.header("Message-ID").unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Recipient substring -> SMTP code to answer at RCPT.
    refuse: Vec<(String, u16)>,
    /// A pause before accepting each message, to make a run last.
    delay: Duration,
    /// Takes the message and never answers the final "." (until switched off; the message
    /// is then not kept).
    blackhole: bool,
    /// AUTH PLAIN required with this password (535 otherwise).
    password: Option<String>,
}

#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
}

impl SmtpServer {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        Self::serve(listener)
    }

    /// Listens on `port` (for "the server comes up later").
    pub fn start_on(port: u16) -> SmtpServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> SmtpServer {
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let server = SmtpServer { port, shared };
        let s = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.session(stream));
            }
        });
        server
    }

    /// Answers `code` (e.g. 451 or 550) to RCPT for addresses containing `who`.
    pub fn refuse(&self, who: &str, code: u16) {
        self.lock().refuse.push((who.to_string(), code));
    }

    pub fn accept_everyone(&self) {
        self.lock().refuse.clear();
    }

    pub fn slow_down(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Stops answering after a message's data (or answers again).
    pub fn blackhole(&self, on: bool) {
        self.lock().blackhole = on;
    }

    /// Requires AUTH PLAIN with `password` (or no login).
    pub fn require_password(&self, password: Option<&str>) {
        self.lock().password = password.map(str::to_string);
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    pub fn count(&self) -> usize {
        self.lock().received.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn session(&self, stream: TcpStream) {
        let Ok(peer) = stream.peer_addr() else { return };
        // Each answer goes out at once (no Nagle wait for the client's delayed ACK).
        let _ = stream.set_nodelay(true);
        let Ok(mut out) = stream.try_clone() else {
            return;
        };
        let mut input = BufReader::new(stream);
        let mut builder = SessionBuilder::new("test.smtp");
        if self.lock().password.is_some() {
            builder
                .enable_auth(mailin::AuthMechanism::Plain)
                .insecure_enable_plaintext_auth();
        }
        let mut session = builder.build(
            peer.ip(),
            Session {
                server: self.clone(),
                to: Vec::new(),
                data: Vec::new(),
            },
        );
        if session.greeting().write_to(&mut out).is_err() {
            return;
        }
        let mut line = Vec::new();
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let res = session.process(&line);
            match res.action {
                Action::Reply => {
                    if res.write_to(&mut out).is_err() {
                        return;
                    }
                }
                Action::Close => {
                    let _ = res.write_to(&mut out);
                    return;
                }
                Action::UpgradeTls => return,
                Action::NoReply => {}
            }
            let _ = out.flush();
        }
    }
}

struct Session {
    server: SmtpServer,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        mailin::response::OK
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        self.to.clear();
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let refused = self
            .server
            .lock()
            .refuse
            .iter()
            .find(|(who, _)| to.contains(who.as_str()))
            .map(|(_, code)| *code);
        match refused {
            Some(code) => Response::custom(code, format!("test server refuses {to}")),
            None => {
                self.to.push(to.to_string());
                mailin::response::OK
            }
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        _authentication_id: &str,
        password: &str,
    ) -> Response {
        if self.server.lock().password.as_deref() == Some(password) {
            mailin::response::AUTH_OK
        } else {
            mailin::response::INVALID_CREDENTIALS
        }
    }

    fn data_end(&mut self) -> Response {
        if self.server.lock().blackhole {
            while self.server.lock().blackhole {
                std::thread::sleep(Duration::from_millis(50));
            }
            // The client gave up long ago: nothing was accepted.
            return Response::custom(451, "too late".to_string());
        }
        let delay = self.server.lock().delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let data = String::from_utf8_lossy(&self.data).into_owned();
        self.server.lock().received.push(Received {
            to: self.to.clone(),
            data,
        });
        mailin::response::OK
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
