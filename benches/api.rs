//! HTTP API load (issue 6): single attendance marks POSTed to a running `registrar serve`
//! (release build, SQLite, the example rules) over keep-alive connections; prints the
//! sustained rate and the latency percentiles.
//!
//! `cargo bench --bench api` (REGISTRAR_BENCH_MARKS=N, default 20,000;
//! REGISTRAR_BENCH_CONNECTIONS=C, default 16).
//!
//! With REGISTRAR_BENCH_FIRE=N (issue 18: 20,000), N failed results of another course are
//! imported before `serve` starts: its first pass fires and delivers N result notices
//! (file transport) while the marks arrive, over REGISTRAR_BENCH_CONNECTIONS (default 4
//! then); the marks go on until the N messages are out, and their latency is reported.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-token";
const PARTS: usize = 10;

fn main() {
    let marks: usize = env("REGISTRAR_BENCH_MARKS", 20_000);
    let fire: usize = env("REGISTRAR_BENCH_FIRE", 0);
    let connections: usize = env("REGISTRAR_BENCH_CONNECTIONS", if fire > 0 { 4 } else { 16 });
    let people = marks.div_ceil(PARTS);
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        d.join("config.yaml"),
        format!(
            "database: sqlite://bench.db\ntimezone: Europe/Amsterdam\nrules: {}\ntemplates: {}\n\
             office:\n  name: Bench\n  from: \"Bench <bench@example.org>\"\n  locale: nl\n\
             mail:\n  transport: file\n  outbox: outbox\nhttp:\n  listen: 127.0.0.1:{port}\n  token_env: BENCH_TOKEN\n",
            repo.join("rules").display(),
            repo.join("templates").display()
        ),
    )
    .expect("config");
    let mut courses = String::from(
        "id,name,type,status,start,end\nfa,First aid,first-aid,final,2030-01-07,2030-03-18\n",
    );
    if fire > 0 {
        courses.push_str("big,First aid,first-aid,final,2026-01-05,2026-01-09\n");
    }
    let mut parts =
        String::from("course_id,id,name,start,end,attendance_required,passing_required\n");
    for p in 0..PARTS {
        parts.push_str(&format!(
            "fa,p{p},Part {p},2030-01-{:02}T09:00:00+01:00,2030-01-{:02}T12:00:00+01:00,true,false\n",
            p + 7,
            p + 7
        ));
    }
    if fire > 0 {
        // A part nobody attended: the failed participants are not complete (no certificate
        // PDFs), each gets the one result notice.
        parts.push_str(
            "big,q0,Part,2026-01-05T09:00:00+01:00,2026-01-05T12:00:00+01:00,true,false\n",
        );
    }
    let mut ppl = String::from("id,full_name,email\n");
    let mut enr = String::from("course_id,person_id\n");
    for i in 0..people {
        ppl.push_str(&format!("u{i},Person {i},u{i}@example.org\n"));
        enr.push_str(&format!("fa,u{i}\n"));
    }
    let mut results = String::from("course_id,person_id,result\n");
    for i in 0..fire {
        ppl.push_str(&format!("b{i},Person {i},b{i}@example.org\n"));
        enr.push_str(&format!("big,b{i}\n"));
        results.push_str(&format!("big,b{i},failed\n"));
    }
    let bin = env!("CARGO_BIN_EXE_registrar");
    for (kind, text) in [
        ("courses", courses.trim_end().to_string() + "\n"),
        ("parts", parts),
        ("people", ppl),
        ("enrolments", enr),
        ("results", results),
    ] {
        if kind == "results" && fire == 0 {
            continue;
        }
        let file = d.join(format!("{kind}.csv"));
        std::fs::write(&file, text).expect("csv");
        let out = Command::new(bin)
            .arg("--config")
            .arg(d.join("config.yaml"))
            .args(["import", kind])
            .arg(&file)
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut serve = Command::new(bin)
        .arg("--config")
        .arg(d.join("config.yaml"))
        .arg("serve")
        .env("BENCH_TOKEN", TOKEN)
        .env("REGISTRAR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("serve");
    let up = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    // With a fire: marks until the outbox holds the N messages.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = (fire > 0).then(|| {
        let (outbox, done) = (d.join("outbox"), done.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            while std::fs::read_dir(&outbox).map_or(0, |r| r.count()) < fire {
                assert!(
                    t.elapsed() < Duration::from_secs(600),
                    "the fire did not finish"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            t.elapsed()
        })
    });
    let start = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0;
                let mut conn = Conn::open(port);
                let mut i = c;
                loop {
                    if fire == 0 && i >= marks
                        || fire > 0 && done.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        break;
                    }
                    // Round after round: attended, then not attended, ... (each a change).
                    let status = if (i / marks).is_multiple_of(2) {
                        "attended"
                    } else {
                        "not_attended"
                    };
                    let body = format!(
                        "{{\"part_id\":\"p{}\",\"person_id\":\"u{}\",\"status\":\"{status}\"}}",
                        i % PARTS,
                        (i % marks) / PARTS
                    );
                    let t = Instant::now();
                    let status = conn.post("/api/v1/courses/fa/attendance", &body);
                    lat.push(t.elapsed());
                    if !(200..300).contains(&status) {
                        errors += 1;
                    }
                    i += connections;
                }
                (lat, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().expect("thread");
        latencies.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let fired_in = watcher.map(|w| w.join().expect("watcher"));
    let marks = latencies.len();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "api benchmark: {marks} single attendance marks over {connections} keep-alive connections, SQLite, example rules"
    );
    if let Some(t) = fired_in {
        println!(
            "  while serve's first pass fired and delivered {fire} result notices (file transport) in {:.2} s",
            t.as_secs_f64()
        );
    }
    println!(
        "  {:.0} marks/s sustained ({secs:.2} s); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {errors} non-2xx",
        marks as f64 / secs,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().map_or(0.0, |l| l.as_secs_f64() * 1000.0)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    fn post(&mut self, path: &str, body: &str) -> u16 {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(req.as_bytes()).expect("write");
        let mut status = 0;
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("read");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if line.starts_with("HTTP/1.1 ") {
                status = line[9..12].parse().unwrap_or(0);
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut rest = vec![0; length];
        self.reader.read_exact(&mut rest).expect("body");
        status
    }
}
