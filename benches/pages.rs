//! The office's pages at size (issue 19): `registrar serve` (release build, SQLite, the
//! example rules) with a course of 5,000 participants and an outbox of 1,000,000
//! deliveries; every page requested 20 times over one keep-alive connection, signed in;
//! prints each page's median and slowest answer.
//!
//! `cargo bench --bench pages` (REGISTRAR_BENCH_PARTICIPANTS, default 5,000;
//! REGISTRAR_BENCH_DELIVERIES, default 1,000,000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench password 123";
const ROUNDS: usize = 20;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let participants = env("REGISTRAR_BENCH_PARTICIPANTS", 5_000);
    let deliveries = env("REGISTRAR_BENCH_DELIVERIES", 1_000_000);
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
             mail:\n  transport: file\n  outbox: outbox\nhttp:\n  listen: 127.0.0.1:{port}\n",
            repo.join("rules").display(),
            repo.join("templates").display()
        ),
    )
    .expect("config");

    // The big course: four parts, the first two attended by everyone, the third by half.
    let setup = Instant::now();
    let mut parts =
        String::from("course_id,id,name,start,end,attendance_required,passing_required\n");
    for p in 0..4 {
        parts.push_str(&format!(
            "big,p{p},Part {p},2030-01-{:02}T09:00:00+01:00,2030-01-{:02}T17:00:00+01:00,true,{}\n",
            p + 7,
            p + 7,
            p == 3
        ));
    }
    let mut people = String::from("id,full_name,email\n");
    let mut enrolments = String::from("course_id,person_id\n");
    let mut attendance = String::from("course_id,part_id,person_id,status\n");
    for i in 0..participants {
        people.push_str(&format!("u{i:05},Person {i},u{i}@example.org\n"));
        enrolments.push_str(&format!("big,u{i:05}\n"));
        for p in 0..3 {
            let status = if p < 2 || i % 2 == 0 {
                "attended"
            } else {
                "not_attended"
            };
            attendance.push_str(&format!("big,p{p},u{i:05},{status}\n"));
        }
    }
    let bin = env!("CARGO_BIN_EXE_registrar");
    let registrar = |args: &[&str]| {
        let out = Command::new(bin)
            .arg("--config")
            .arg(d.join("config.yaml"))
            .args(["--now", "2029-12-01"])
            .args(args)
            .stdin(Stdio::piped())
            .output()
            .expect("registrar");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (kind, text) in [
        (
            "courses",
            "id,name,type,status,start,end\nbig,First aid (big),first-aid,final,2030-01-07,2030-01-10\n"
                .to_string(),
        ),
        ("parts", parts),
        ("people", people),
        ("enrolments", enrolments),
        ("attendance", attendance),
    ] {
        let file = d.join(format!("{kind}.csv"));
        std::fs::write(&file, text).expect("csv");
        registrar(&["import", kind, &file.to_string_lossy()]);
    }
    // The instances of the big course (a plan ingests the events; nothing is due).
    registrar(&["plan", "--format", "json"]);
    let mut add = Command::new(bin)
        .arg("--config")
        .arg(d.join("config.yaml"))
        .args(["office-user", "add", "bench", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("office-user");
    writeln!(add.stdin.take().expect("stdin"), "{PASSWORD}").expect("password");
    assert!(add.wait().expect("office-user").success());

    // The year before now of an office's outbox: a million deliveries (of earlier courses,
    // to the same people; 2,740 a day), one in a thousand failed, some retrying, a few
    // queued for later, and messages awaiting approval.
    let db = d.join("bench.db");
    let sql = format!(
        "BEGIN;
         INSERT INTO actions (id, rule_id, course_id, person_id, cycle, state, event_at, due_at, created_at, updated_at, recheck, subject_kind)
           WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {deliveries})
           SELECT 1000000 + i, CASE i % 3 WHEN 0 THEN 'certificate-on-completion' WHEN 1 THEN 'result-passed' ELSE 'survey-after-attendance' END,
             'old-' || (i % 2000), 'u' || substr('0000' || (i % {participants}), -5), i, CASE WHEN i % 500 = 7 THEN 'awaiting_approval' ELSE 'fired' END,
             strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i % 365) || ' days'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i % 365) || ' days'),
             strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i % 365) || ' days'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (i % 365) || ' days'), 0, 'course'
           FROM n;
         INSERT INTO deliveries (action_id, rule_id, course_id, person_id, cycle, state, recipients, subject, message_id, message, attempts,
             next_attempt_at, last_error, created_at, updated_at, sent_at, subject_kind)
           SELECT id, rule_id, course_id, person_id, cycle,
             CASE WHEN cycle % 1000 = 1 THEN 'failed' WHEN cycle % 5000 = 2 THEN 'retrying' WHEN cycle % 10000 = 3 THEN 'queued' ELSE 'sent' END,
             person_id || '@example.org', 'Uw certificaat', '<' || id || '@bench>', NULL, 1,
             CASE WHEN cycle % 5000 = 2 OR cycle % 10000 = 3 THEN '2031-01-01T00:00:00.000Z' END,
             CASE WHEN cycle % 1000 = 1 OR cycle % 5000 = 2 THEN '550 5.1.1 mailbox unavailable' END,
             created_at, updated_at, CASE WHEN cycle % 1000 > 3 THEN created_at END, 'course'
           FROM actions WHERE id > 1000000 AND state = 'fired';
         COMMIT;"
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .expect("db");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("outbox");
            pool.close().await;
        });
    println!(
        "setup: a course of {participants} participants, {deliveries} deliveries in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let mut serve = Command::new(bin)
        .arg("--config")
        .arg(d.join("config.yaml"))
        .arg("serve")
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
    let mut c = Conn::open(port);
    // Sign in as a browser does: the form's token, then the form.
    let (_, head, body) = c.request("GET", "/office/sign-in", None, "");
    let csrf = between(&body, "name=\"csrf\" value=\"", "\"");
    let cookie = between(&head, "registrar_office_signin=", ";");
    let (status, head, _) = c.request(
        "POST",
        "/office/sign-in",
        Some(&format!("registrar_office_signin={cookie}")),
        &format!(
            "csrf={csrf}&name=bench&password={}",
            PASSWORD.replace(' ', "+")
        ),
    );
    assert_eq!(status, 303, "signed in");
    let session = format!(
        "registrar_office={}",
        between(&head, "registrar_office=", ";")
    );
    // Let the first pass settle (it ingests and evaluates the big course).
    std::thread::sleep(Duration::from_secs(3));

    let (_, _, list) = c.request("GET", "/office/deliveries", Some(&session), "");
    let last_id = between(&list, "<a href=\"/office/deliveries/", "\"");
    let pages: Vec<(&str, String)> = vec![
        ("overview", "/office/".into()),
        ("deliveries (newest)", "/office/deliveries".into()),
        (
            "deliveries, page 1,000",
            format!(
                "/office/deliveries?before={}",
                last_id.parse::<i64>().unwrap_or(0) - 50_000
            ),
        ),
        (
            "deliveries failed",
            "/office/deliveries?state=failed".into(),
        ),
        (
            "deliveries failed, one rule",
            "/office/deliveries?state=failed&rule=result-passed".into(),
        ),
        (
            "deliveries of one rule",
            "/office/deliveries?rule=result-passed".into(),
        ),
        (
            "deliveries sent, one rule",
            "/office/deliveries?state=sent&rule=survey-after-attendance".into(),
        ),
        (
            "deliveries of a course",
            "/office/deliveries?course=old-17".into(),
        ),
        (
            "deliveries of a person",
            "/office/deliveries?person=u00042".into(),
        ),
        ("deliveries of one day", {
            let day = chrono::Utc::now() - chrono::Duration::days(100);
            format!(
                "/office/deliveries?from={}&until={}",
                day.format("%Y-%m-%d"),
                day.format("%Y-%m-%d")
            )
        }),
        ("one delivery", format!("/office/deliveries/{last_id}")),
        ("awaiting approval", "/office/approvals".into()),
        ("courses", "/office/courses".into()),
        ("course, first 50 of 5,000", "/office/courses/big".into()),
        (
            "course, later page",
            "/office/courses/big?after=u02500".into(),
        ),
        ("people", "/office/people".into()),
        ("people, search", "/office/people?q=Person+4242".into()),
        ("person", "/office/people/u00042".into()),
    ];
    println!(
        "{:<32} {:>9} {:>9}  (of {ROUNDS} requests each)",
        "page", "median", "slowest"
    );
    let mut worst = 0.0f64;
    for (name, path) in &pages {
        let mut times = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let (status, _, _) = c.request("GET", path, Some(&session), "");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200, "{path}");
        }
        times.sort_by(f64::total_cmp);
        let median = times[ROUNDS / 2];
        let slowest = times[ROUNDS - 1];
        worst = worst.max(slowest);
        println!("{name:<32} {median:>6.1} ms {slowest:>6.1} ms");
    }
    println!("slowest answer of any page: {worst:.1} ms (target: under 200 ms)");
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    if std::env::var_os("REGISTRAR_BENCH_KEEP").is_some() {
        println!("kept: {}", dir.keep().display());
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).map(|i| i + start.len()).expect(start);
    let rest = &text[from..];
    &rest[..rest.find(end).expect(end)]
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

    /// (status, head, body)
    fn request(
        &mut self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: &str,
    ) -> (u16, String, String) {
        let cookie = cookie
            .map(|c| format!("Cookie: {c}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(req.as_bytes()).expect("write");
        let (mut status, mut length, mut head) = (0, 0usize, String::new());
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
            head.push_str(&line);
        }
        let mut rest = vec![0; length];
        self.reader.read_exact(&mut rest).expect("body");
        (status, head, String::from_utf8_lossy(&rest).into_owned())
    }
}
