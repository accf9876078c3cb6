//! Test helpers: a fresh database per test on each backend, and the example office.
#![allow(dead_code)]

pub mod daemon;
pub mod http;
pub mod office;
pub mod smtp;
pub mod welcome;

/// The CSV files of examples/office, in the order they import.
pub const EXAMPLE_KINDS: [&str; 7] = [
    "courses",
    "parts",
    "people",
    "enrolments",
    "attendance",
    "part-results",
    "results",
];

use chrono::{DateTime, Utc};
use registrar::rules::{CourseType, RuleSet};
use registrar::store::{Store, Tx};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A database for one test: an SQLite file in a temporary directory, or a PostgreSQL
/// schema of its own.
pub struct TestDb {
    pub store: Store,
    pub name: &'static str,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registrar.db");
        let store = Store::open(&registrar::config::DatabaseUrl::Sqlite(path))
            .await
            .expect("open sqlite");
        TestDb {
            store,
            name: "sqlite",
            _dir: Some(dir),
            schema: None,
        }
    }

    /// `None` (after one printed line) when REGISTRAR_TEST_POSTGRES_URL is not set.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(url) = std::env::var("REGISTRAR_TEST_POSTGRES_URL") else {
            eprintln!("skipping the PostgreSQL half: REGISTRAR_TEST_POSTGRES_URL is not set");
            return None;
        };
        let schema = unique("t");
        let admin = sqlx::PgPool::connect(&url)
            .await
            .expect("connect to REGISTRAR_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let opts = sqlx::postgres::PgConnectOptions::from_str(&url)
            .expect("url")
            .options([("search_path", schema.as_str())]);
        let store = Store::open_postgres(opts, "test")
            .await
            .expect("open postgres");
        Some(TestDb {
            store,
            name: "postgres",
            _dir: None,
            schema: Some((url, schema)),
        })
    }

    /// Both backends that are available here.
    pub async fn all() -> Vec<TestDb> {
        let mut v = vec![TestDb::sqlite().await];
        v.extend(TestDb::postgres().await);
        v
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((url, schema)) = self.schema
            && let Ok(admin) = sqlx::PgPool::connect(&url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}

pub fn rules() -> RuleSet {
    let mut set = RuleSet::default();
    set.course_types.insert(
        "first-aid".into(),
        CourseType::new("first-aid", "First aid", 75),
    );
    set.course_types
        .insert("fire".into(), CourseType::new("fire", "Fire safety", 100));
    set
}

pub fn tz() -> chrono_tz::Tz {
    chrono_tz::Europe::Amsterdam
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `dir/config.yaml` for the example office: its own SQLite database, the
/// repository's rules and templates, and `extra` appended.
pub fn office_config(dir: &std::path::Path, extra: &str) {
    let repo = repo();
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "database: sqlite://test.db\ntimezone: Europe/Amsterdam\nrules: {}\ntemplates: {}\n{extra}",
            repo.join("rules").display(),
            repo.join("templates").display()
        ),
    )
    .expect("config");
}

/// Runs a read in a transaction that is rolled back.
pub async fn read<T>(store: &Store, f: impl AsyncFnOnce(&mut Tx) -> Result<T, sqlx::Error>) -> T {
    let mut tx = store.begin().await.expect("tx");
    let out = f(&mut tx).await.expect("read");
    tx.rollback().await.expect("rollback");
    out
}

/// Copies a directory and its subdirectories.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// Whether the outside tool `command` (an independent oracle) is installed. Where it is
/// not, the test says so in one line and skips, except in CI (`CI` set), where a missing
/// oracle fails the test: `.ci/run` installs it (`install` says how).
pub fn tool(command: &str, install: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{command} is not installed, and CI must run this test ({install})"
        );
        eprintln!("skipping: {command} is not installed ({install})");
    }
    found
}
