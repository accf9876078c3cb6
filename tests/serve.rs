//! `registrar serve` as a service: changes by other processes are picked up at once,
//! SIGTERM drains, SIGHUP reloads (T5), a SIGKILL loses nothing (T3), and several
//! processes on one PostgreSQL database send each message once (T3).

mod common;

use common::office::Office;
use common::smtp::SmtpServer;
use common::welcome::{smtp_config, welcome_rules};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn serve(office: &Office) -> Child {
    office
        .command(None, &["serve"])
        .env("REGISTRAR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve")
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits (up to `limit`) for `done`; returns how long it took.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Stops `serve` with SIGTERM and returns its log.
fn stop(mut child: Child) -> String {
    signal(&child, "-TERM");
    let exited = wait_for(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(
        exited.is_some(),
        "serve did not exit within 15 s of SIGTERM"
    );
    let status = child.wait().expect("wait");
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    assert!(status.success(), "serve exited with {status}: {log}");
    log
}

#[test]
fn an_import_by_another_process_is_delivered_by_serve_within_two_seconds() {
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port)).welcome(5, false);
    office.import_own(None, &["courses"]);
    let child = serve(&office);
    // Let the first pass run and the loop start listening for changes.
    std::thread::sleep(Duration::from_millis(700));
    office.import_own(None, &["people", "enrolments"]);
    let took = wait_for(Duration::from_secs(10), || server.count() == 5);
    let log = stop(child);
    let took = took.unwrap_or_else(|| panic!("only {} of 5 delivered: {log}", server.count()));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        server
            .received()
            .iter()
            .all(|m| m.header("Subject").as_deref() == Some("Welcome to First aid January"))
    );
}

#[test]
fn sigterm_stops_serve_cleanly_and_t5_sighup_reloads_or_keeps_the_running_rules() {
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port)).welcome(1, false);
    office.import_own(None, &["courses", "people", "enrolments"]);
    let child = serve(&office);
    if wait_for(Duration::from_secs(10), || server.count() == 1).is_none() {
        panic!("nothing delivered: {}", stop(child));
    }

    // Imports check the rules too, so while the service's rules are broken they go
    // through a second config that has a valid copy (the same database).
    let valid = office.dir.path().join("rules-import");
    std::fs::create_dir_all(&valid).expect("dir");
    std::fs::write(valid.join("rules.yaml"), welcome_rules("x", false)).expect("write");
    let config = std::fs::read_to_string(office.config()).expect("config");
    let import_config = office.dir.path().join("config-import.yaml");
    std::fs::write(
        &import_config,
        config.replace("rules: rules", "rules: rules-import"),
    )
    .expect("write");
    let import_more = |range: std::ops::Range<usize>| {
        office.people(range);
        for kind in ["people", "enrolments"] {
            let file = office.dir.path().join(format!("{kind}.csv"));
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_registrar"))
                .arg("--config")
                .arg(&import_config)
                .args(["import", kind, &file.to_string_lossy()])
                .output()
                .expect("import");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };

    // A broken rule set is refused; the running one stays in force.
    let rules = office.dir.path().join("rules/rules.yaml");
    std::fs::write(
        &rules,
        welcome_rules("Hello {{course.nam}}", false).replace("offset: 0 days", "offset: 3 dayz"),
    )
    .expect("write");
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(500));
    import_more(1..2);
    assert!(wait_for(Duration::from_secs(10), || server.count() == 2).is_some());
    assert_eq!(
        server.received()[1].header("Subject").as_deref(),
        Some("Welcome to First aid January")
    );

    // A valid one replaces it.
    std::fs::write(
        &rules,
        welcome_rules("Hello {{participant.full_name}}", false),
    )
    .expect("write");
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(500));
    import_more(2..3);
    assert!(wait_for(Duration::from_secs(10), || server.count() == 3).is_some());
    assert_eq!(
        server.received()[2].header("Subject").as_deref(),
        Some("Hello Person 2")
    );

    let log = stop(child);
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("rules.yaml:"), "the refusal says where: {log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn t3_serve_killed_during_a_1000_message_run_and_restarted_delivers_every_message() {
    let server = SmtpServer::start();
    server.slow_down(Duration::from_millis(3));
    let office = Office::new(&smtp_config(server.port)).welcome(1000, false);
    office.import_own(None, &["courses", "people", "enrolments"]);
    let mut child = serve(&office);
    assert!(
        wait_for(Duration::from_secs(60), || server.count() >= 300).is_some(),
        "the run did not start"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let at_kill = server.count();
    assert!(at_kill < 1000, "the kill came too late to test anything");
    let in_flight: HashSet<String> = office
        .deliveries()
        .iter()
        .filter(|d| d["state"] == "sending")
        .map(|d| d["message_id"].as_str().unwrap_or_default().to_string())
        .collect();

    let child = serve(&office);
    let done = wait_for(Duration::from_secs(60), || {
        server
            .received()
            .iter()
            .map(|m| m.message_id())
            .collect::<HashSet<_>>()
            .len()
            == 1000
    });
    std::thread::sleep(Duration::from_millis(300));
    let log = stop(child);
    eprintln!("{log}");
    assert!(done.is_some(), "not every message arrived: {log}");

    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in server.received() {
        *copies.entry(m.message_id()).or_default() += 1;
    }
    let twice: Vec<&String> = copies
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    eprintln!(
        "killed after {at_kill} messages with {} in flight; {} message(s) arrived twice",
        in_flight.len(),
        twice.len()
    );
    assert!(copies.values().all(|n| *n <= 2));
    for id in &twice {
        assert!(
            in_flight.contains(*id),
            "{id} arrived twice but was not in flight at the kill"
        );
    }
    assert!(office.deliveries().iter().all(|d| d["state"] == "sent"));
}

#[tokio::test]
async fn t3_two_serve_processes_on_one_postgresql_database_deliver_each_message_once() {
    let server = SmtpServer::start();
    let Some(office) = Office::postgres(&smtp_config(server.port)).await else {
        return;
    };
    let office = office.welcome(2000, false);
    office.import_own(None, &["courses"]);
    let (a, b) = (serve(&office), serve(&office));
    std::thread::sleep(Duration::from_millis(700));
    office.import_own(None, &["people", "enrolments"]);
    let done = wait_for(Duration::from_secs(120), || server.count() >= 2000);
    std::thread::sleep(Duration::from_millis(500));
    let (log_a, log_b) = (stop(a), stop(b));
    assert!(
        done.is_some(),
        "{} of 2000 delivered:\n{log_a}\n{log_b}",
        server.count()
    );
    let received = server.received();
    let ids: HashSet<String> = received.iter().map(|m| m.message_id()).collect();
    assert_eq!(received.len(), 2000, "every message exactly once");
    assert_eq!(ids.len(), 2000);
    office.cleanup().await;
}

#[test]
fn sigterm_during_a_run_finishes_the_messages_in_flight_and_leaves_none_half_sent() {
    let server = SmtpServer::start();
    server.slow_down(Duration::from_millis(20));
    let office = Office::new(&smtp_config(server.port)).welcome(300, false);
    office.import_own(None, &["courses", "people", "enrolments"]);
    let child = serve(&office);
    assert!(wait_for(Duration::from_secs(30), || server.count() >= 20).is_some());
    let asked = Instant::now();
    let log = stop(child);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}",
        asked.elapsed()
    );
    assert!(log.contains("finishing the messages in flight"), "{log}");
    let deliveries = office.deliveries();
    let sent = deliveries.iter().filter(|d| d["state"] == "sent").count();
    assert!(
        deliveries
            .iter()
            .all(|d| d["state"] == "sent" || d["state"] == "queued"),
        "none left sending"
    );
    assert_eq!(
        sent,
        server.count(),
        "every message the server accepted is recorded as sent"
    );
    assert!(sent < 300, "stopped before the end of the run");
}

#[test]
fn serve_tells_systemd_ready_status_and_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let server = SmtpServer::start();
    let office = Office::new(&smtp_config(server.port)).welcome(1, false);
    office.import_own(None, &["courses", "people", "enrolments"]);
    let socket_path = office.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let child = office
        .command(None, &["serve"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10)
        && !(seen.contains("READY=1") && seen.contains("STATUS=") && seen.contains("WATCHDOG=1"))
    {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    stop(child);
    assert!(seen.contains("READY=1"), "{seen}");
    assert!(seen.contains("STATUS="), "{seen}");
    assert!(seen.contains("WATCHDOG=1"), "{seen}");
}
