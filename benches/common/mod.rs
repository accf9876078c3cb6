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

/// postfix's smtp-sink on 127.0.0.1:`port`, accepting and discarding every message.
pub fn start_sink(port: u16) -> Child {
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
        .spawn()
        .expect("smtp-sink");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child
}
