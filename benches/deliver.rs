//! Delivery throughput (issue 4): N queued messages sent to a local postfix `smtp-sink`
//! with a pool of 8 connections, printed next to the rate postfix's own `smtp-source`
//! reaches against the same sink with 8 sessions and messages of the same size.
//!
//! `cargo bench --bench deliver` (REGISTRAR_BENCH_MESSAGES=N to change the 20,000).
//! Needs smtp-sink and smtp-source (Debian: `apt-get install postfix`).

mod common;

use registrar::config::Config;
use registrar::delivery::{self, Instance, Transport};
use registrar::engine::{self, fire};
use registrar::store::Store;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::var("REGISTRAR_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    if !["smtp-sink", "smtp-source"]
        .iter()
        .all(|tool| common::have(tool, "apt-get install postfix"))
    {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let port = common::free_port();
    write_office(dir.path(), port, n);
    let bin = env!("CARGO_BIN_EXE_registrar");
    for kind in ["courses", "people", "enrolments"] {
        let out = Command::new(bin)
            .arg("--config")
            .arg(dir.path().join("config.yaml"))
            .args(["import", kind])
            .arg(dir.path().join(format!("{kind}.csv")))
            .output()
            .expect("import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sink = common::start_sink(port);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (fire_time, deliver_time, size) = rt.block_on(async {
        let config = Config::load(&dir.path().join("config.yaml")).expect("config");
        let (rules, templates, problems) = registrar::render::load_checked(&config);
        assert!(problems.is_empty(), "{problems:?}");
        let store = Store::open(&config.database).await.expect("store");
        let now = chrono::Utc::now();
        let t = Instant::now();
        engine::ingest(&store, &rules, config.timezone, now)
            .await
            .expect("ingest");
        let env = fire::Env {
            rules: &rules,
            templates: &templates,
            office: &config.office,
            tz: config.timezone,
            locale: None,
        };
        let fired = fire::fire(&store, &env, now).await.expect("fire");
        assert_eq!(fired.queued as usize, n);
        let fire_time = t.elapsed();
        let size = message_size(&store).await;
        let transport =
            Transport::from_config(&config.mail, &config.office.from).expect("transport");
        let me = Instance::new();
        let t = Instant::now();
        let done = delivery::deliver(
            &store,
            &transport,
            &me,
            now,
            config.scheduler.max_attempts,
            &AtomicBool::new(false),
            &delivery::Health::default(),
            None,
        )
        .await
        .expect("deliver");
        let deliver_time = t.elapsed();
        assert_eq!(done.sent as usize, n, "{done:?}");
        store.close().await;
        (fire_time, deliver_time, size)
    });

    let t = Instant::now();
    let status = Command::new("smtp-source")
        .args(["-s", "8", "-m", &n.to_string(), "-l", &size.to_string()])
        .args(["-f", "bench@example.org", "-t", "sink@example.org"])
        .arg(format!("127.0.0.1:{port}"))
        .status()
        .expect("smtp-source");
    let source_time = t.elapsed();
    assert!(status.success());
    drop(sink);

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("delivery benchmark: {n} messages of {size} bytes, SQLite, smtp-sink on 127.0.0.1");
    println!(
        "  fire (ingest events, evaluate, render, queue): {:>8.2} s  {:>8.0} messages/s",
        fire_time.as_secs_f64(),
        rate(fire_time)
    );
    println!(
        "  registrar delivery (pool of 8):                {:>8.2} s  {:>8.0} messages/s",
        deliver_time.as_secs_f64(),
        rate(deliver_time)
    );
    println!(
        "  smtp-source -s 8 (postfix's own generator):    {:>8.2} s  {:>8.0} messages/s",
        source_time.as_secs_f64(),
        rate(source_time)
    );
    println!(
        "  registrar reaches {:.0} % of smtp-source's rate",
        100.0 * rate(deliver_time) / rate(source_time)
    );
}

async fn message_size(store: &Store) -> usize {
    match store {
        Store::Sqlite(p, _) => {
            sqlx::query_scalar::<_, i64>("SELECT length(message) FROM deliveries LIMIT 1")
                .fetch_one(p)
                .await
                .map(|v| v as usize)
                .unwrap_or(1000)
        }
        Store::Postgres(_) => 1000,
    }
}

fn write_office(dir: &std::path::Path, port: u16, n: usize) {
    common::write_config(dir, port);
    std::fs::write(
        dir.join("rules/rules.yaml"),
        "kind: course_type
id: first-aid
name: First aid
attendance_percent: 75
---
kind: action
id: welcome
name: Welcome
data_group: course_participant
event: participant_added
process: send_email
email:
  template: welcome
  subject: \"Welcome to {{course.name}}\"
  to: participant
timing:
  anchor: event
  offset: 0 days
",
    )
    .expect("rules");
    std::fs::write(
        dir.join("templates/welcome.html.hbs"),
        "<p>Dear {{participant.full_name}},</p><p>Welcome to {{course.name}} on {{course.start_date}} in {{course.location}}.</p><p>{{office.name}}</p>",
    )
    .expect("template");
    std::fs::write(
        dir.join("templates/welcome.txt.hbs"),
        "Dear {{participant.full_name}},\n\nWelcome to {{course.name}} on {{course.start_date}} in {{course.location}}.\n\n{{office.name}}\n",
    )
    .expect("template");
    let courses = "id,name,type,status,start,end,location\nfa-1,First aid,first-aid,final,2027-01-11T09:00:00+01:00,2027-01-11T17:00:00+01:00,Utrecht\n";
    std::fs::write(dir.join("courses.csv"), courses).expect("csv");
    let mut people = String::from("id,full_name,email\n");
    let mut enrolments = String::from("course_id,person_id\n");
    for i in 0..n {
        people.push_str(&format!("p{i},Person {i},p{i}@example.org\n"));
        enrolments.push_str(&format!("fa-1,p{i}\n"));
    }
    std::fs::write(dir.join("people.csv"), people).expect("csv");
    std::fs::write(dir.join("enrolments.csv"), enrolments).expect("csv");
}
