//! What the benchmarks share: free ports, postfix's smtp-sink, and whether a tool is there.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

/// Whether `tool` is on the PATH; if not, says so and how to install it.
pub fn have(tool: &str, install: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("skipping: {tool} is not installed ({install})");
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// postfix's smtp-sink on 127.0.0.1:`port`, accepting and discarding every message;
/// stopped when dropped (also when the benchmark panics).
pub struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_sink(port: u16) -> Sink {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut c = Command::new("smtp-sink");
    if root {
        c.args(["-u", "nobody"]);
    }
    let child = c
        .arg(format!("127.0.0.1:{port}"))
        .arg("1024")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink");
    std::thread::sleep(std::time::Duration::from_millis(300));
    Sink(child)
}

/// An office directory's config.yaml (SQLite `bench.db`, an empty `rules/` and
/// `templates/`), delivering by SMTP to 127.0.0.1:`port` with a pool of 8 connections
/// (REGISTRAR_BENCH_POOL changes it) and no rate cap.
pub fn write_config(dir: &std::path::Path, port: u16) {
    let pool: usize = std::env::var("REGISTRAR_BENCH_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    std::fs::create_dir_all(dir.join("rules")).expect("dir");
    std::fs::create_dir_all(dir.join("templates")).expect("dir");
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "database: sqlite://bench.db
timezone: Europe/Amsterdam
office:
  name: Opleidingscentrum
  from: \"Opleidingscentrum <opleidingen@example.nl>\"
mail:
  transport: smtp
  smtp:
    host: 127.0.0.1
    port: {port}
    tls: none
    pool: {pool}
    rate_per_second: 1000000
"
        ),
    )
    .expect("config");
}
