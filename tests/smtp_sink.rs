//! End to end through postfix's `smtp-sink` (T3): the example office's due emails reach a
//! real MTA-grade SMTP peer once each. Runs where smtp-sink is installed (CI installs
//! postfix); elsewhere it says so in one line and skips.

mod common;

use common::office::{OFFICE, Office};
use common::smtp::free_port;
use std::process::{Command, Stdio};
use std::time::Duration;

const NOW: &str = "2026-12-01T12:00:00+01:00";

#[test]
fn t3_the_example_office_is_delivered_to_smtp_sink_once_each() {
    let installed = Command::new("sh")
        .args(["-c", "command -v smtp-sink"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!(
            "skipping the smtp-sink test: smtp-sink is not installed (apt-get install postfix)"
        );
        return;
    }
    let dumps = tempfile::tempdir().expect("dir");
    // smtp-sink drops root privileges to `nobody`, which must be able to write the dumps.
    let _ = Command::new("chmod").arg("777").arg(dumps.path()).status();
    let port = free_port();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut sink = Command::new("smtp-sink");
    if root {
        sink.args(["-u", "nobody"]);
    }
    let mut sink = sink
        .arg("-d")
        .arg(dumps.path().join("m"))
        .arg(format!("127.0.0.1:{port}"))
        .arg("64")
        .spawn()
        .expect("smtp-sink");
    std::thread::sleep(Duration::from_millis(300));

    let office = Office::new(&format!(
        "{OFFICE}mail:\n  transport: smtp\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    pool: 4\n"
    ));
    office.example(NOW);
    let out = office.run(NOW, &["tick"]);
    let again = office.run(NOW, &["tick"]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = sink.kill();
    let _ = sink.wait();

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("18 sent"), "{stdout}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 sent"));
    let messages: Vec<String> = std::fs::read_dir(dumps.path())
        .expect("dumps")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert_eq!(messages.len(), 18, "one dump per message");
    let certificate = messages
        .iter()
        .find(|m| {
            m.contains("Message-ID: <certificate-on-completion.ehbo-2026-03.anne.1@example.nl>")
        })
        .expect("Anne's certificate reached smtp-sink");
    assert!(certificate.contains("X-Rcpt-Args: <anne.devries@example.nl>"));
    assert!(
        certificate.contains("Subject: Certificaat EHBO basiscursus maart 2026 - Anne de Vries")
    );
    assert!(certificate.contains("multipart/alternative"));
}
