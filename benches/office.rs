//! registrar against the cron'd script an office would write instead (issue 18), in one
//! run, against one postfix `smtp-sink`:
//!
//! 1. `../shared/peer/gen_office.py DIR 500 20` makes the office: 500 courses of 20
//!    participants (10,000 enrolments, about 7,000 owed a certificate email).
//! 2. The peer (`cron_peer.py`: sqlite3 + Jinja2 + smtplib) loads the CSV files and sends
//!    the certificates; its run is timed.
//! 3. registrar imports the same files (timed apart) and runs one `tick` as a process:
//!    ingest the events, evaluate, render and queue, deliver (pool of 8). The whole tick
//!    is timed. Then the same imported database, copied before that tick, is ticked again
//!    with a pool of 20 connections (as many as smtp-source's sessions).
//! 4. postfix's `smtp-source -s 20` sends as many messages of the same size to the sink.
//!
//! `cargo bench --bench office` (REGISTRAR_BENCH_COURSES / REGISTRAR_BENCH_PER_COURSE to
//! change 500 x 20, REGISTRAR_BENCH_POOL for registrar's SMTP pool, 8 by default). Needs python3 with jinja2 (`pip install jinja2`), smtp-sink and
//! smtp-source (`apt-get install postfix`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let courses = env_or("REGISTRAR_BENCH_COURSES", 500);
    let per = env_or("REGISTRAR_BENCH_PER_COURSE", 20);
    if !common::have("smtp-sink", "apt-get install postfix")
        || !common::have("smtp-source", "apt-get install postfix")
        || !common::have("python3", "apt-get install python3")
    {
        return;
    }
    if !Command::new("python3")
        .args(["-c", "import jinja2"])
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("skipping: the peer needs Jinja2 (pip install jinja2)");
        return;
    }
    let peer_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peer");
    if !peer_dir.join("cron_peer.py").exists() {
        println!("skipping: ../shared/peer/cron_peer.py is not beside the repository");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("office");
    run(Command::new("python3")
        .arg(peer_dir.join("gen_office.py"))
        .arg(&data)
        .args([courses.to_string(), per.to_string()]));
    let port = common::free_port();
    let sink = common::start_sink(port);

    // The peer: load untimed, then the run that sends.
    let peer_work = dir.path().join("peer");
    std::fs::create_dir_all(&peer_work).expect("dir");
    run(Command::new("python3")
        .arg(peer_dir.join("cron_peer.py"))
        .arg("load")
        .arg(&data)
        .current_dir(&peer_work));
    let t = Instant::now();
    let out = run(Command::new("python3")
        .arg(peer_dir.join("cron_peer.py"))
        .args(["run", "127.0.0.1", &port.to_string()])
        .current_dir(&peer_work));
    let peer_time = t.elapsed();
    let peer_sent = number_after(&out, "peer: sent ");

    // registrar: the same files, then one tick.
    let office = dir.path().join("registrar");
    write_office(&office, port);
    let bin = env!("CARGO_BIN_EXE_registrar");
    let registrar = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--config").arg(office.join("config.yaml")).args(args);
        c
    };
    let t = Instant::now();
    for kind in [
        "courses",
        "parts",
        "people",
        "enrolments",
        "attendance",
        "part-results",
    ] {
        let file = data.join(format!("{kind}.csv"));
        run(&mut registrar(&["import", kind, &file.to_string_lossy()]));
    }
    let import_time = t.elapsed();
    // The same imported office with a pool of 20 connections, as many as smtp-source's
    // sessions below: a copy made before the first tick.
    let office20 = dir.path().join("registrar-20");
    std::fs::create_dir_all(&office20).expect("dir");
    for name in ["rules", "templates"] {
        copy_dir(&office.join(name), &office20.join(name));
    }
    std::fs::copy(office.join("bench.db"), office20.join("bench.db")).expect("copy");
    let config = std::fs::read_to_string(office.join("config.yaml")).expect("config");
    let pooled: String = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("pool:") {
                "    pool: 20\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(office20.join("config.yaml"), pooled).expect("config");
    let t = Instant::now();
    run(&mut registrar(&["tick"]));
    let tick_time = t.elapsed();
    let sent = registrar_sent(&office);
    let size = message_size(&office);
    let t = Instant::now();
    run(Command::new(bin)
        .arg("--config")
        .arg(office20.join("config.yaml"))
        .arg("tick"));
    let tick20_time = t.elapsed();
    let sent20 = registrar_sent(&office20);

    // postfix's own generator, as many messages of the same size.
    let t = Instant::now();
    run(Command::new("smtp-source")
        .args(["-s", "20", "-m", &sent.to_string(), "-l", &size.to_string()])
        .args(["-f", "bench@example.org", "-t", "sink@example.org"])
        .arg(format!("127.0.0.1:{port}")));
    let source_time = t.elapsed();
    drop(sink);

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let (peer, ours, ours20, source) = (
        rate(peer_sent, peer_time),
        rate(sent, tick_time),
        rate(sent20, tick20_time),
        rate(sent, source_time),
    );
    let pool = std::env::var("REGISTRAR_BENCH_POOL").unwrap_or_else(|_| "8".into());
    println!(
        "office benchmark: {courses} courses x {per} participants, SQLite, messages of {size} bytes, one smtp-sink on 127.0.0.1"
    );
    let line = |label: &str, n: usize, d: Duration, r: f64| {
        println!(
            "  {label:<58} {n:>6} in {:>6.2} s  {r:>7.0} msg/s",
            d.as_secs_f64()
        );
    };
    line(
        "peer (cron_peer.py run: evaluate, render, send):",
        peer_sent,
        peer_time,
        peer,
    );
    println!(
        "  {:<58} {:>6}    {:>6.2} s",
        "registrar import of the six files (apart):",
        "",
        import_time.as_secs_f64()
    );
    line(
        &format!("registrar tick, pool of {pool} (ingest, evaluate, render, send):"),
        sent,
        tick_time,
        ours,
    );
    line(
        "registrar tick, pool of 20 (smtp-source's 20 sessions):",
        sent20,
        tick20_time,
        ours20,
    );
    line(
        "smtp-source -s 20 (postfix's own generator):",
        sent,
        source_time,
        source,
    );
    println!(
        "  registrar / peer: {:.1}x (pool of {pool}), {:.1}x (pool of 20)   registrar / smtp-source: {:.2} (pool of {pool}), {:.2} (pool of 20)",
        ours / peer,
        ours20 / peer,
        ours / source,
        ours20 / source
    );
    assert_eq!(
        sent, peer_sent,
        "registrar and the peer disagree on who is owed a certificate"
    );
    assert_eq!(sent20, peer_sent, "the second tick sent a different number");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a command to its end; its standard output, or a panic with what it said.
fn run(c: &mut Command) -> String {
    let out = c.output().expect("runs");
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn number_after(text: &str, prefix: &str) -> usize {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
}

fn query(office: &Path, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", office.join("bench.db").display()))
                .await
                .expect("db");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .expect("query");
        pool.close().await;
        n
    })
}

fn registrar_sent(office: &Path) -> usize {
    query(
        office,
        "SELECT count(*) FROM deliveries WHERE state = 'sent'",
    ) as usize
}

fn message_size(office: &Path) -> usize {
    query(
        office,
        "SELECT coalesce(max(length(message)), 1000) FROM deliveries",
    ) as usize
}

/// registrar's office for the peer's data: course type t75 (75 % of the required parts,
/// the passing parts passed) and one certificate rule, the peer's texts, no PDF (the peer
/// sends none).
fn write_office(dir: &Path, port: u16) {
    common::write_config(dir, port);
    std::fs::write(
        dir.join("rules/rules.yaml"),
        "kind: course_type
id: t75
name: Training
attendance_percent: 75
---
kind: action
id: certificate
name: Certificate
data_group: course_participant
event: participant_added
process: send_email
email:
  template: certificate
  subject: \"Certificate {{course.name}} - {{participant.full_name}}\"
  to: participant
timing:
  anchor: course_end
  offset: 0 days
conditions:
  course_status: [final]
  completed: true
",
    )
    .expect("rules");
    std::fs::write(
        dir.join("templates/certificate.html.hbs"),
        "<p>Dear {{participant.full_name}},</p><p>Congratulations on completing {{course.name}}.</p>",
    )
    .expect("template");
    std::fs::write(
        dir.join("templates/certificate.txt.hbs"),
        "Dear {{participant.full_name}}, congratulations on completing {{course.name}}.\n",
    )
    .expect("template");
}
